import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adanns_ref.faiss_bridge import FaissAdannsIVF, faiss_search, from_faiss, to_faiss
from adanns_ref.indices.flat import FlatIndex
from adanns_ref.indices.ivf import IVFIndex
from adanns_ref.indices.ivfpq import IVFPQIndex
from adanns_ref.indices.pqindex import PQIndex
from adanns_ref.testing import assert_knn_equal
from adanns_ref.core.truncate import prefix

faiss = pytest.importorskip("faiss")
from faiss.contrib.inspect_tools import get_invlist  # noqa: E402


def _data(n, d, seed):
    rng = np.random.default_rng(seed)
    centres = 3 * rng.standard_normal((8, d))
    return (centres[rng.integers(0, 8, n)] + rng.standard_normal((n, d))).astype(np.float32)


@pytest.fixture(scope="module")
def xb():
    return _data(1200, 20, 0)


@pytest.fixture(scope="module")
def xq():
    return _data(40, 20, 1)


def _ivf(xb, nlist=10, **kw):
    index = IVFIndex(xb.shape[1], nlist, **kw)
    index.train(xb)
    index.add(xb)
    return index


def _assert_same_ivf(ours, back, xq, nprobes=(1, 3)):
    assert back._params() == ours._params()
    np.testing.assert_array_equal(back.centroids, ours.centroids)
    for l in range(ours.nlist):
        np.testing.assert_array_equal(back.list_ids(l), ours.list_ids(l))
        np.testing.assert_array_equal(back.list_vectors(l), ours.list_vectors(l))
    for nprobe in nprobes:
        D, I = ours.search(xq, 8, nprobe=nprobe)
        D2, I2 = back.search(xq, 8, nprobe=nprobe)
        np.testing.assert_array_equal(I2, I)
        np.testing.assert_array_equal(D2, D)


def _faiss_visible_params(ours):
    """Our parameters as faiss can carry them: allow_small only silences a training warning and
    has no faiss counterpart, opq_niter travels with an OPQMatrix, so only when there is one."""
    params = dict(ours._params(), allow_small=False)
    if not params["opq"]:
        params["opq_niter"] = 50
    return params


def _assert_same_quantizers(back, ours):
    """Parameters, PQ codebooks and OPQ rotation of a PQIndex / IVFPQIndex read back from faiss."""
    assert back._params() == _faiss_visible_params(ours)
    np.testing.assert_array_equal(back.pq.codebooks, ours.pq.codebooks)
    assert (back.opq is None) == (ours.opq is None)
    if ours.opq is not None:
        np.testing.assert_array_equal(back.opq.A, ours.opq.A)


def _describe_chain(index):
    return [type(faiss.downcast_VectorTransform(index.chain.at(i))).__name__ for i in range(index.chain.size())]


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_flat_round_trip(xb, xq, metric):
    ours = FlatIndex(20, metric)
    ours.add(xb)
    exported = to_faiss(ours)
    assert type(exported) is (faiss.IndexFlatL2 if metric == "l2" else faiss.IndexFlatIP)
    assert_knn_equal(*exported.search(xq, 10), *ours.search(xq, 10))
    back = from_faiss(exported)
    assert back.metric == metric
    np.testing.assert_array_equal(back.xb, ours.xb)


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_raw_ivf_is_an_indexivfflat_with_our_lists_and_round_trips_alone(xb, xq, metric):
    ours = _ivf(xb, metric=metric, normalize=False, niter=7, seed=99, max_points_per_centroid=64)
    exported = to_faiss(ours)
    assert type(exported) is faiss.IndexIVFFlat and exported.metric_type == (
        faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT)
    np.testing.assert_array_equal(faiss.downcast_index(exported.quantizer).reconstruct_n(0, 10), ours.centroids)
    for l in range(10):
        ids, codes = get_invlist(exported.invlists, l)
        np.testing.assert_array_equal(ids, ours.list_ids(l))
        np.testing.assert_array_equal(codes.view(np.float32), ours.list_vectors(l))
    for nprobe in (1, 4, 10):
        assert_knn_equal(*faiss_search(exported, xq, 8, nprobe), *ours.search(xq, 8, nprobe=nprobe))
    assert exported.nprobe == 1  # faiss_search passes nprobe as a search parameter
    _assert_same_ivf(ours, from_faiss(exported), xq)


def test_prefix_ivf_gets_a_chain_that_mirrors_prefix(xb, xq):
    ours = _ivf(xb, d_c=12, d_s=12)
    exported = to_faiss(ours)
    assert _describe_chain(exported) == ["NormalizationTransform", "RemapDimensionsTransform",
                                         "NormalizationTransform"]
    inner = faiss.extract_index_ivf(exported)
    stored = np.concatenate([get_invlist(inner.invlists, l)[1] for l in range(10)]).view(np.float32)
    order = np.concatenate([ours.list_ids(l) for l in range(10)])
    np.testing.assert_array_equal(stored, prefix(xb, 12)[order])  # faiss holds exactly our prefixes
    for nprobe in (1, 3):
        assert_knn_equal(*faiss_search(exported, xq, 8, nprobe), *ours.search(xq, 8, nprobe=nprobe))
    _assert_same_ivf(ours, from_faiss(exported, xb=xb), xq)


def test_full_dim_normalized_ivf_and_raw_prefix_ivf_chains(xb, xq):
    normalized = to_faiss(_ivf(xb))
    assert _describe_chain(normalized) == ["NormalizationTransform", "NormalizationTransform"]
    raw = _ivf(xb, d_c=8, d_s=8, normalize=False)
    exported = to_faiss(raw)
    assert _describe_chain(exported) == ["RemapDimensionsTransform"]
    _assert_same_ivf(raw, from_faiss(exported, xb=xb), xq)


def test_prefix_ivf_needs_the_full_vectors_and_checks_them(xb):
    exported = to_faiss(_ivf(xb, d_c=12, d_s=12))
    with pytest.raises(ValueError, match="pass xb="):
        from_faiss(exported)
    wrong = xb.copy()
    wrong[5] += 1
    with pytest.raises(ValueError, match="xb row 5 does not give the vector"):
        from_faiss(exported, xb=wrong)
    with pytest.raises(ValueError, match="xb has 1199 rows"):
        from_faiss(exported, xb=xb[:-1])


def test_written_and_read_by_faiss_still_round_trips(xb, xq, tmp_path):
    ours = _ivf(xb, d_c=10, d_s=10)
    faiss.write_index(to_faiss(ours), str(tmp_path / "ivf.faiss"))
    _assert_same_ivf(ours, from_faiss(faiss.read_index(str(tmp_path / "ivf.faiss")), xb=xb), xq)
    pq = IVFPQIndex(20, 6, 3, nbits=4, d_c=12, d_s=12, opq=True, opq_niter=2, allow_small=True)
    pq.train(xb)
    pq.add(xb)
    faiss.write_index(to_faiss(pq), str(tmp_path / "ivfpq.faiss"))
    served = faiss.read_index(str(tmp_path / "ivfpq.faiss"))
    # faiss's files keep an OPQMatrix as a LinearTransform: the rotation, not its niter
    assert _describe_chain(served) == ["NormalizationTransform", "RemapDimensionsTransform",
                                       "NormalizationTransform", "LinearTransform"]
    assert_knn_equal(*faiss_search(served, xq, 8, 2), *pq.search(xq, 8, nprobe=2), rtol=1e-5, atol=1e-5)
    back = from_faiss(served)
    assert back.opq_niter == 50
    back.opq_niter = pq.opq_niter
    _assert_same_quantizers(back, pq)
    np.testing.assert_array_equal(back.scoring_centroids, pq.scoring_centroids)
    np.testing.assert_array_equal(back.list_codes(3), pq.list_codes(3))


@pytest.mark.parametrize("d_c,d_s,metric,normalize", [(8, 16, "l2", True), (16, 6, "ip", True),
                                                      (20, 5, "l2", False), (4, 20, "ip", False)])
def test_adanns_ivf_wrapper_searches_like_ours_and_round_trips(xb, xq, d_c, d_s, metric, normalize):
    ours = _ivf(xb, d_c=d_c, d_s=d_s, metric=metric, normalize=normalize)
    exported = to_faiss(ours)
    assert isinstance(exported, FaissAdannsIVF)
    assert (exported.nlist, exported.ntotal, exported.quantizer.d, exported.ivf.d) == (10, 1200, d_c, d_s)
    for nprobe in (1, 3, 50):
        assert_knn_equal(*exported.search(xq, 8, nprobe), *ours.search(xq, 8, nprobe=nprobe))
    needs_xb = normalize or d_s < 20
    back = from_faiss(exported, xb=xb if needs_xb else None)
    _assert_same_ivf(ours, back, xq)
    assert "FaissAdannsIVF(d=20" in repr(exported)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**16), D=st.integers(3, 17), nlist=st.integers(1, 9),
       dims=st.tuples(st.floats(0, 1), st.floats(0, 1)), metric=st.sampled_from(["l2", "ip"]),
       normalize=st.booleans())
def test_any_ivf_round_trips_exactly(seed, D, nlist, dims, metric, normalize):
    d_c, d_s = (max(1, round(f * D)) for f in dims)
    x = np.random.default_rng(seed).standard_normal((60, D)).astype(np.float32)
    x[30:40] = x[:10]  # duplicates: tie groups
    ours = IVFIndex(D, nlist, d_c=d_c, d_s=d_s, metric=metric, normalize=normalize)
    ours.train(x)
    ours.add(x)
    exported = to_faiss(ours)
    q = x[:7] + 0.01
    if d_c > 1:  # at d_c = 1 centroids collide: exact routing ties, which faiss's IP breaks the other way
        assert_knn_equal(*faiss_search(exported, q, 5, 2), *ours.search(q, 5, nprobe=2), rtol=1e-5, atol=1e-5)
    _assert_same_ivf(ours, from_faiss(exported, xb=x), q, nprobes=(1, nlist))


@pytest.mark.parametrize("kw", [dict(normalize=False), dict(prefix_dim=10, nbits=4),
                                dict(opq=True, opq_niter=2), dict(opq=True, prefix_dim=12, normalize=False)])
def test_pq_index_round_trips(xb, xq, kw):
    ours = PQIndex(20, 2, allow_small=True, seed=77, **kw)
    ours.train(xb)
    ours.add(xb)
    exported = to_faiss(ours)
    inner = faiss.downcast_index(exported.index) if isinstance(exported, faiss.IndexPreTransform) else exported
    assert type(inner) is faiss.IndexPQ and inner.pq.cp.seed == 77
    assert_knn_equal(*faiss_search(exported, xq, 10), *ours.search(xq, 10))
    back = from_faiss(exported)
    _assert_same_quantizers(back, ours)
    np.testing.assert_array_equal(back.codes, ours.codes)
    D, I = ours.search(xq, 10)
    D2, I2 = back.search(xq, 10)
    np.testing.assert_array_equal(I2, I)
    np.testing.assert_array_equal(D2, D)


IVFPQ_CASES = [dict(normalize=False), dict(metric="ip", normalize=False, nbits=8), dict(by_residual=False),
               dict(d_c=12, d_s=12), dict(opq=True, normalize=False), dict(d_c=8, d_s=16),
               dict(d_c=16, d_s=8, metric="ip", opq=True), dict(d_c=20, d_s=12, opq=True, by_residual=False)]


@pytest.mark.parametrize("kw", IVFPQ_CASES, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_ivfpq_index_round_trips(xb, xq, kw):
    kw = dict(dict(nbits=4, opq_niter=2), **kw)
    ours = IVFPQIndex(20, 8, 4, allow_small=True, seed=5, niter=6, **kw)
    ours.train(xb)
    ours.add(xb)
    exported = to_faiss(ours)
    rigid = ours.d_c == ours.d_s
    assert isinstance(exported, FaissAdannsIVF) != rigid
    inner = faiss.downcast_index(faiss.extract_index_ivf(exported.ivf if not rigid else exported))
    assert type(inner) is faiss.IndexIVFPQ and inner.pq.cp.seed == 5 and inner.cp.niter == 6
    if ours.by_residual and ours.metric == "l2":
        assert inner.use_precomputed_table == 1  # precompute_table() ran
    for l in range(8):
        ids, codes = get_invlist(inner.invlists, l)
        np.testing.assert_array_equal(ids, ours.list_ids(l))
        np.testing.assert_array_equal(codes, ours.list_codes(l))
    for nprobe in (1, 3, 8):
        assert_knn_equal(*faiss_search(exported, xq, 8, nprobe), *ours.search(xq, 8, nprobe=nprobe),
                         rtol=1e-5, atol=1e-5)
    back = from_faiss(exported)
    _assert_same_quantizers(back, ours)
    np.testing.assert_array_equal(back.scoring_centroids, ours.scoring_centroids)
    for l in range(8):
        np.testing.assert_array_equal(back.list_ids(l), ours.list_ids(l))
        np.testing.assert_array_equal(back.list_codes(l), ours.list_codes(l))
    D, I = ours.search(xq, 8, nprobe=3)
    D2, I2 = back.search(xq, 8, nprobe=3)
    if rigid and ours.opq is not None:
        # faiss holds R c_l; c_l = (R c_l) R comes back to float32 rounding, routing to near-ties
        np.testing.assert_allclose(back.centroids, ours.centroids, rtol=0, atol=1e-5)
        assert_knn_equal(D, I, D2, I2)
    else:
        np.testing.assert_array_equal(back.centroids, ours.centroids)
        np.testing.assert_array_equal(I2, I)
        np.testing.assert_array_equal(D2, D)


def test_from_faiss_reads_a_faiss_trained_ivfpq(xb, xq):
    quantizer = faiss.IndexFlatL2(20)
    ref = faiss.IndexIVFPQ(quantizer, 20, 6, 5, 4)
    ref.train(xb)
    ref.add(xb)
    ref.nprobe = 2
    ours = from_faiss(ref)
    assert ours.d_c == ours.d_s == 20 and not ours.normalize
    assert_knn_equal(*ref.search(xq, 10), *ours.search(xq, 10, nprobe=2), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- bad inputs

def test_to_faiss_rejects_unknown_types():
    with pytest.raises(TypeError, match="to_faiss takes a FlatIndex"):
        to_faiss(np.zeros((3, 3)))


def test_to_faiss_rejects_untrained_indices():
    with pytest.raises(ValueError, match="needs a trained index"):
        to_faiss(IVFIndex(8, 4))
    with pytest.raises(ValueError, match="needs a trained index"):
        to_faiss(PQIndex(8, 2))
    with pytest.raises(ValueError, match="needs a trained index"):
        to_faiss(IVFPQIndex(8, 4, 2))


def test_from_faiss_rejects_polysemous_ivfpq(xb):
    ivf = faiss.IndexIVFPQ(faiss.IndexFlatL2(20), 20, 4, 5, 4)
    ivf.train(xb)
    ivf.polysemous_ht = 10
    with pytest.raises(ValueError, match="polysemous_ht=10"):
        from_faiss(ivf)


def test_from_faiss_rejects_unsupported_index_types():
    with pytest.raises(TypeError, match="got IndexLSH"):
        from_faiss(faiss.IndexLSH(8, 16))


def test_from_faiss_rejects_foreign_ids(xb):
    quantizer = faiss.IndexFlatL2(20)
    ivf = faiss.IndexIVFFlat(quantizer, 20, 4)
    ivf.train(xb)
    ivf.add_with_ids(xb[:10], np.arange(100, 110))
    with pytest.raises(ValueError, match="not 0..9"):
        from_faiss(ivf)


def test_from_faiss_rejects_transforms_that_are_not_a_rotation(xb):
    pca = faiss.PCAMatrix(20, 20)  # a LinearTransform with a bias
    index = faiss.IndexPreTransform(pca, faiss.IndexPQ(20, 4, 4))
    index.train(xb)
    with pytest.raises(ValueError, match="only square rotations without bias"):
        from_faiss(index)


def test_from_faiss_rejects_unknown_chains(xb):
    spread = faiss.RemapDimensionsTransform(20, 8, True)  # uniform: keeps dims 0, 2, 5, ..., not a prefix
    index = faiss.IndexPreTransform(spread, faiss.IndexIVFFlat(faiss.IndexFlatL2(8), 8, 2))
    index.train(xb)
    with pytest.raises(ValueError, match="unsupported transform chain"):
        from_faiss(index)


def test_from_faiss_rejects_a_flat_index_behind_a_chain():
    index = faiss.IndexPreTransform(faiss.NormalizationTransform(8, 2.0), faiss.IndexFlatL2(8))
    index.prepend_transform(faiss.NormalizationTransform(8, 2.0))  # the chain of a normalized index
    with pytest.raises(ValueError, match="a FlatIndex has no transforms"):
        from_faiss(index)


def test_from_faiss_rejects_approximate_quantizers(xb):
    ivf = faiss.IndexIVFFlat(faiss.IndexHNSWFlat(20, 4), 20, 4)
    ivf.train(xb)
    with pytest.raises(ValueError, match="only IndexFlat quantizers"):
        from_faiss(ivf)


def test_from_faiss_rejects_inner_product_pq(xb):
    ip = faiss.IndexPQ(8, 2, 4, faiss.METRIC_INNER_PRODUCT)
    ip.train(np.ascontiguousarray(xb[:, :8]))
    with pytest.raises(ValueError, match="METRIC_L2 and search_type ST_PQ"):
        from_faiss(ip)


@pytest.mark.parametrize("make", [
    lambda: faiss.IndexPQ(16, 4, 8),
    lambda: faiss.IndexIVFFlat(faiss.IndexFlatL2(16), 16, 4),
    lambda: faiss.IndexIVFPQ(faiss.IndexFlatL2(16), 16, 4, 4, 8),
    lambda: faiss.IndexPreTransform(faiss.NormalizationTransform(16, 2.0), faiss.IndexPQ(16, 4, 8)),
])
def test_from_faiss_refuses_untrained_indices(make):
    """An untrained faiss index holds all-zero codebooks / centroids: reading it used to give an
    'is_trained' index that encodes every vector to the same code."""
    with pytest.raises(ValueError, match="needs a trained faiss index, got an untrained"):
        from_faiss(make())


@pytest.mark.parametrize("obj, caller", [(None, "from_faiss"), ("IndexPQ", "from_faiss"),
                                         (np.zeros((2, 2)), "faiss_search"), (None, "faiss_search")])
def test_non_faiss_objects_raise_type_error(obj, caller):
    with pytest.raises(TypeError, match=f"{caller} takes a faiss Index"):
        from_faiss(obj) if caller == "from_faiss" else faiss_search(obj, np.zeros((1, 2)), 1)


def test_faiss_search_validates_k_and_nprobe(xb, xq):
    exported = [to_faiss(FlatIndex(20)), to_faiss(_ivf(xb)), to_faiss(_ivf(xb, d_c=5, d_s=10))]
    exported[0].add(xb[:10])
    for index in exported:
        for k in (0, -3):
            with pytest.raises(ValueError, match="k must be >= 1"):
                faiss_search(index, xq, k)
        with pytest.raises(TypeError, match="k must be an integer"):
            faiss_search(index, xq, 2.5)
        with pytest.raises(ValueError, match=r"needs 447 GiB for the results \(nq \* k \* 12 bytes\)"):
            faiss_search(index, xq, 10**9)
        with pytest.raises(ValueError, match="nprobe must be >= 1"):
            faiss_search(index, xq, 3, nprobe=0)
        D, I = faiss_search(index, xq, 3)
        assert D.shape == I.shape == (xq.shape[0], 3)
    untrained = faiss.IndexIVFFlat(faiss.IndexFlatL2(20), 20, 4)
    with pytest.raises(ValueError, match="untrained IndexIVFFlat"):
        faiss_search(untrained, xq, 3)


def test_from_faiss_rejects_other_metrics():
    with pytest.raises(ValueError, match="metric_type"):
        from_faiss(faiss.IndexFlat(8, faiss.METRIC_L1))


def test_wrapper_search_validates_queries(xb):
    exported = to_faiss(_ivf(xb, d_c=5, d_s=10))
    with pytest.raises(ValueError, match="dimension mismatch"):
        exported.search(np.zeros((2, 10), np.float32), 3)
    with pytest.raises(ValueError, match="nprobe must be >= 1"):
        exported.search(np.zeros((2, 20), np.float32), 3, nprobe=0)


def test_missing_faiss_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(ImportError, match=r"pip install faiss-cpu==1\.15\.\*"):
        to_faiss(FlatIndex(4))


def test_add_preassigned_hook_validates_lists(xb):
    index = IVFIndex(20, 4)
    index.train(xb)
    with pytest.raises(ValueError, match=r"must lie in \[0, nlist=4\)"):
        index.add_preassigned(xb[:3], np.array([0, 4, 1]))
    with pytest.raises(ValueError, match=r"must have shape \(3,\)"):
        index.add_preassigned(xb[:3], np.array([0, 1]))
    with pytest.raises(TypeError, match="integer list numbers"):
        index.add_preassigned(xb[:3], np.array([0.0, 1.0, 2.0]))
    index.add_preassigned(xb[:3], np.array([3, 0, 3]))
    np.testing.assert_array_equal(index.list_ids(3), [0, 2])
