"""faiss_serve: AdANNS-IVF (d_c != d_s) and funnels as single faiss index files that answer
full-D queries as our indices do (ties aside)."""
import numpy as np
import pytest

import adanns_ref as ar
from adanns_ref.faiss_bridge import serve as faiss_serve
from adanns_ref.testing import assert_knn_equal

faiss = pytest.importorskip("faiss")

D = 24
XB = np.random.default_rng(0).standard_normal((1500, D)).astype(np.float32)
XQ = np.random.default_rng(1).standard_normal((40, D)).astype(np.float32)


def _round_trip(index, tmp_path):
    path = str(tmp_path / "x.faiss")
    faiss.write_index(index, path)
    return faiss.read_index(path)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("d_c,d_s", [(4, 12), (8, 24)] + [(12, 4)])
def test_adanns_ivf_file_matches_ours(tmp_path, normalize, metric, d_c, d_s):
    ivf = ar.IVFIndex(D, 16, d_c=d_c, d_s=d_s, metric=metric, normalize=normalize)
    ivf.train(XB)
    ivf.add(XB)
    if normalize and d_c > d_s:
        with pytest.raises(ValueError, match="d_c <= d_s"):
            ar.to_faiss(ivf, writable=True)
        return
    served = ar.to_faiss(ivf, writable=True)
    faiss_serve.set_nprobe(served, 5)
    loaded = _round_trip(served, tmp_path)
    D_ours, I_ours = ivf.search(XQ, 10, nprobe=5)
    D_f, I_f = loaded.search(XQ, 10)
    assert loaded.ntotal == XB.shape[0]
    assert_knn_equal(D_ours, I_ours, D_f, I_f, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_funnel_file_matches_funnel_search(tmp_path, normalize, metric):
    D_ours, I_ours, _ = ar.funnel_search(XB, XQ, [(6, 60), (20, 10)], metric, normalize)
    loaded = _round_trip(faiss_serve.funnel(XB, 6, 60, 20, 10, metric, normalize), tmp_path)
    D_f, I_f = loaded.search(XQ, 10)
    assert_knn_equal(D_ours, I_ours, D_f, I_f, rtol=1e-4, atol=1e-5)


def test_funnel_rejects_a_shortlist_shorter_than_k():
    with pytest.raises(ValueError, match="k0=5"):
        faiss_serve.funnel(XB, 6, 5, 20, 10)


def test_flat_prefix_serves_full_d_queries(tmp_path):
    flat = ar.FlatIndex(8)
    flat.add(ar.prefix(XB, 8))
    D_ours, I_ours = flat.search(ar.prefix(XQ, 8), 10)
    D_f, I_f = _round_trip(faiss_serve.flat_prefix(XB, 8), tmp_path).search(XQ, 10)
    assert_knn_equal(D_ours, I_ours, D_f, I_f, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("d_c,d_s,ef", [(8, 8, 16), (6, 20, 16), (8, 24, 5), (12, 4, 32)])
def test_hnsw_file_matches_adanns_hnsw_search(tmp_path, normalize, metric, d_c, d_s, ef):
    index = ar.HNSWIndex(D, M=8, ef_construction=20, metric=metric, normalize=normalize, d_c=d_c,
                         d_s=d_c)
    index.add(XB)
    D_ours, I_ours = index.search(XQ, 10, ef_search=ef, d_s=d_s)
    loaded = _round_trip(faiss_serve.hnsw(index, ef, 10, d_s), tmp_path)
    D_f, I_f = loaded.search(XQ, 10)
    assert_knn_equal(D_ours, I_ours, D_f, I_f, rtol=1e-4, atol=1e-5)
    if d_s != d_c:   # the re-score changed the answer, so the refine step is exercised
        assert not np.array_equal(I_ours, index.search(XQ, 10, ef_search=ef)[1])


def test_hnsw_serve_rejects_a_decoupled_build_and_other_indices():
    index = ar.HNSWIndex(D, M=8, d_c=8)   # d_s defaults to D
    with pytest.raises(ValueError, match="d_s = d_c"):
        faiss_serve.hnsw(index, 16, 10)
    with pytest.raises(TypeError, match="HNSWIndex"):
        faiss_serve.hnsw(ar.FlatIndex(D), 16, 10)
