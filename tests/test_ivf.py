import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adanns_ref.core.simd import faiss_runs_avx512
from adanns_ref.indices.flat import FlatIndex
from adanns_ref.indices.ivf import IVFIndex
from adanns_ref.testing import assert_centroids_equal, assert_knn_equal
from adanns_ref.core.truncate import prefix

faiss = pytest.importorskip("faiss")
from faiss.contrib.inspect_tools import get_invlist  # noqa: E402
from faiss.contrib.ivf_tools import add_preassigned, search_preassigned  # noqa: E402

FLT_MAX = np.float32(3.4028235e38)


def _data(n, d, seed):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def _faiss_metric(metric):
    return faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT


def _faiss_ivf(centroids, metric):
    """IndexIVFFlat whose quantizer holds the given centroids (already trained)."""
    nlist, d = centroids.shape
    quantizer = (faiss.IndexFlatL2 if metric == "l2" else faiss.IndexFlatIP)(d)
    quantizer.add(centroids)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, _faiss_metric(metric))
    index.own_fields = True  # keep the quantizer alive with the index
    quantizer.this.disown()
    assert index.is_trained
    return index


def _assert_same_lists(ref, ours):
    for l in range(ours.nlist):
        np.testing.assert_array_equal(get_invlist(ref.invlists, l)[0], ours.list_ids(l), err_msg=f"list {l}")


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_training_lists_and_search_match_faiss_ivfflat(metric):
    xb, xq = _data(3000, 32, 0), _data(150, 32, 1)
    quantizer = (faiss.IndexFlatL2 if metric == "l2" else faiss.IndexFlatIP)(32)
    ref = faiss.IndexIVFFlat(quantizer, 32, 16, _faiss_metric(metric))
    ref.train(xb)
    ref.add(xb)
    ours = IVFIndex(32, 16, metric=metric, normalize=False)
    ours.train(xb)
    ours.add(xb)
    assert_centroids_equal(quantizer.reconstruct_n(0, 16), ours.centroids, exact=False, rtol=1e-6, atol=1e-7)
    _assert_same_lists(ref, ours)
    for nprobe in (1, 3, 16):
        ref.nprobe = nprobe
        D_ref, I_ref = ref.search(xq, 10)
        D, I = ours.search(xq, 10, nprobe=nprobe)
        np.testing.assert_array_equal(I, I_ref)
        np.testing.assert_allclose(D, D_ref, rtol=1e-5, atol=1e-6)


def test_normalized_index_is_faiss_on_normalized_vectors():
    xb, xq = _data(2000, 24, 2), _data(50, 24, 3)
    xbn, xqn = prefix(xb, 24), prefix(xq, 24)
    quantizer = faiss.IndexFlatL2(24)
    ref = faiss.IndexIVFFlat(quantizer, 24, 8)
    ref.train(xbn)
    ref.add(xbn)
    ref.nprobe = 2
    ours = IVFIndex(24, 8)  # normalize=True by default
    ours.train(xb)
    ours.add(xb)
    D_ref, I_ref = ref.search(xqn, 5)
    D, I = ours.search(xq, 5, nprobe=2)
    np.testing.assert_array_equal(I, I_ref)
    np.testing.assert_allclose(D, D_ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("nprobe", [1, 3, 12])
def test_given_centroids_match_faiss_with_empty_lists_and_padding(metric, nprobe):
    d = 16
    centroids = _data(12, d, 4)
    if metric == "l2":
        centroids[8:] += 50.0  # far away: lists 8..11 stay empty
    else:
        centroids[8:] = 0.01 * centroids[:4]  # always beaten by the unscaled copy: empty
    xb, xq = _data(400, d, 5), _data(60, d, 6)
    ref = _faiss_ivf(centroids, metric)
    ref.add(xb)
    ref.nprobe = nprobe
    ours = IVFIndex(d, 12, metric=metric, normalize=False)
    ours.set_centroids(centroids)
    ours.add(xb)
    assert (ours.list_sizes()[8:] == 0).all()
    _assert_same_lists(ref, ours)
    k = 120  # more than the probed lists hold for nprobe 1: padded with -1
    D_ref, I_ref = ref.search(xq, k)
    D, I = ours.search(xq, k, nprobe=nprobe)
    assert_knn_equal(D_ref, I_ref, D, I, rtol=1e-5, atol=1e-6)
    pad = FLT_MAX if metric == "l2" else -FLT_MAX
    assert (D[I == -1] == pad).all() and (D_ref[I_ref == -1] == pad).all()
    if nprobe == 1:
        assert (I == -1).any()


def _reference_adanns(xb, xq, centroids_dc, lists, d_c, d_s, k, nprobe):
    """Brute force in float64: route q at d_c to the nprobe nearest centroids, score at d_s."""
    qc, qs, bs = (prefix(a, dim).astype(np.float64) for a, dim in ((xq, d_c), (xq, d_s), (xb, d_s)))
    c = centroids_dc.astype(np.float64)
    probe_d = ((qc[:, None, :] - c[None]) ** 2).sum(-1)
    I = np.full((len(xq), k), -1)
    D = np.full((len(xq), k), np.inf)
    for r in range(len(xq)):
        probes = np.argsort(probe_d[r], kind="stable")[:nprobe]
        cand = np.concatenate([lists[l] for l in probes])
        dist = ((bs[cand] - qs[r]) ** 2).sum(-1)
        order = np.lexsort((cand, dist))[:k]
        I[r, :len(order)], D[r, :len(order)] = cand[order], dist[order]
    return D, I


@pytest.mark.parametrize("d_c,d_s", [(8, 32), (32, 8), (16, 16)])
def test_adanns_ivf_matches_bruteforce_reference(d_c, d_s):
    xb, xq = _data(1500, 48, 7), _data(40, 48, 8)
    ours = IVFIndex(48, 10, d_c=d_c, d_s=d_s)
    ours.train(xb)
    ours.add(xb)
    lists = [ours.list_ids(l) for l in range(10)]
    D_ref, I_ref = _reference_adanns(xb, xq, ours.centroids, lists, d_c, d_s, 7, 3)
    D, I = ours.search(xq, 7, nprobe=3)
    np.testing.assert_array_equal(I, I_ref)
    np.testing.assert_allclose(D, D_ref, rtol=1e-5, atol=1e-6)


def test_adanns_ivf_d_query_time_override_matches_reference():
    xb, xq = _data(1500, 48, 9), _data(40, 48, 10)
    ours = IVFIndex(48, 10)  # built at full D
    ours.train(xb)
    ours.add(xb)
    lists = [ours.list_ids(l) for l in range(10)]
    c8 = prefix(ours.centroids, 8)  # centroids sliced to d_c and re-normalised
    D_ref, I_ref = _reference_adanns(xb, xq, c8, lists, 8, 24, 5, 2)
    D, I = ours.search(xq, 5, nprobe=2, d_c=8, d_s=24)
    np.testing.assert_array_equal(I, I_ref)
    np.testing.assert_allclose(D, D_ref, rtol=1e-5, atol=1e-6)
    probed = [np.argsort(((prefix(xq, 8)[r] - c8) ** 2).sum(1))[:2] for r in range(40)]
    scanned = np.mean([sum(len(lists[l]) for l in p) for p in probed])
    assert ours.last_search_flops == pytest.approx(8 * 10 + 24 * scanned)


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("d_c,d_s", [(8, 32), (32, 8)])
def test_adanns_ivf_matches_faiss_search_preassigned(metric, d_c, d_s):
    xb, xq = _data(1200, 32, 11), _data(50, 32, 12)
    ours = IVFIndex(32, 8, d_c=d_c, d_s=d_s, metric=metric)
    ours.train(xb)
    ours.add(xb)
    assign = np.empty(ours.ntotal, np.int64)
    for l in range(8):
        assign[ours.list_ids(l)] = l
    ref = _faiss_ivf(np.zeros((8, d_s), np.float32), metric)  # coarse quantizer unused
    add_preassigned(ref, prefix(xb, d_s), assign)
    ref.nprobe = 3
    router = (faiss.IndexFlatL2 if metric == "l2" else faiss.IndexFlatIP)(d_c)
    router.add(ours.centroids)
    _, probes = router.search(prefix(xq, d_c), 3)
    D_ref, I_ref = search_preassigned(ref, prefix(xq, d_s), 6, probes)
    D, I = ours.search(xq, 6, nprobe=3)
    np.testing.assert_array_equal(I, I_ref)
    np.testing.assert_allclose(D, D_ref, rtol=1e-5, atol=1e-6)


@settings(deadline=None, max_examples=15)
@given(seed=st.integers(0, 2**16), nlist=st.integers(1, 9), d_s=st.integers(1, 12),
       k=st.integers(1, 30), metric=st.sampled_from(["l2", "ip"]))
def test_full_probe_equals_exact_search_and_results_are_sorted_unique(seed, nlist, d_s, k, metric):
    xb, xq = _data(60, 12, seed), _data(5, 12, seed + 1)
    ours = IVFIndex(12, nlist, d_c=6, d_s=d_s, metric=metric)
    ours.train(xb)
    ours.add(xb)
    D, I = ours.search(xq, k, nprobe=nlist + 3)  # clamped to nlist: every list is scanned
    flat = FlatIndex(d_s, metric)
    flat.add(prefix(xb, d_s))
    D_ref, I_ref = flat.search(prefix(xq, d_s), k)
    assert_knn_equal(D_ref, I_ref, D, I, rtol=1e-5, atol=1e-6)
    valid = I >= 0
    step = np.diff(D, axis=1)
    assert ((step >= 0) if metric == "l2" else (step <= 0)).all()
    for row, ok in zip(I, valid):
        assert len(set(row[ok].tolist())) == ok.sum()


def test_repeated_adds_keep_insertion_order_within_lists():
    xb = _data(900, 16, 13)
    one = IVFIndex(16, 6)
    one.train(xb)
    many = IVFIndex(16, 6)
    many.set_centroids(one.centroids)
    one.add(xb)
    for chunk in np.array_split(xb, 4):
        many.add(chunk)
    for l in range(6):
        ids = many.list_ids(l)
        np.testing.assert_array_equal(ids, one.list_ids(l))
        assert (np.diff(ids) > 0).all()
        np.testing.assert_array_equal(many.list_vectors(l), xb[ids])
    assert many.list_sizes().sum() == many.ntotal == 900


def test_empty_trained_index_returns_all_missing():
    ours = IVFIndex(8, 4, metric="ip")
    ours.train(_data(20, 8, 14))
    D, I = ours.search(_data(3, 8, 15), 4, nprobe=4)
    assert (I == -1).all() and (D == -FLT_MAX).all()


def test_reset_keeps_centroids():
    xb = _data(100, 8, 16)
    ours = IVFIndex(8, 4)
    ours.train(xb)
    ours.add(xb)
    c = ours.centroids
    ours.reset()
    assert ours.ntotal == 0 and ours.is_trained
    np.testing.assert_array_equal(ours.centroids, c)


def test_save_load_roundtrip(tmp_path):
    xb, xq = _data(500, 16, 17), _data(10, 16, 18)
    ours = IVFIndex(16, 5, d_c=8, d_s=12, metric="ip")
    ours.train(xb)
    ours.add(xb)
    ours.save(tmp_path / "ivf.npz")
    loaded = IVFIndex.load(tmp_path / "ivf.npz")
    assert repr(loaded) == repr(ours)
    for a, b in zip(ours.search(xq, 5, nprobe=2), loaded.search(xq, 5, nprobe=2)):
        np.testing.assert_array_equal(a, b)


def test_load_rejects_inconsistent_lists(tmp_path):
    from adanns_ref.core.persist import save_npz
    ours = IVFIndex(4, 2)
    ours.train(_data(10, 4, 19))
    path = tmp_path / "bad.npz"
    save_npz(path, "IVFIndex", 1, ours._params(),
             {"centroids": ours.centroids, "data": np.zeros((3, 4), np.float32),
              "ids": np.array([0, 1, 1]), "offsets": np.array([0, 2, 3])})
    with pytest.raises(ValueError, match="inconsistent inverted lists"):
        IVFIndex.load(path)


def test_load_rejects_foreign_file(tmp_path):
    FlatIndex(4).save(tmp_path / "flat.npz")
    with pytest.raises(ValueError, match="expected a 'IVFIndex'"):
        IVFIndex.load(tmp_path / "flat.npz")


# ---------------------------------------------------------------- one test per bad input

def _trained(d=8, nlist=4, **kw):
    index = IVFIndex(d, nlist, **kw)
    index.train(_data(40, d, 20))
    return index


def test_d_c_larger_than_d():
    with pytest.raises(ValueError, match="d_c must be <= 8"):
        IVFIndex(8, 4, d_c=9)


def test_d_c_below_one():
    with pytest.raises(ValueError, match="d_c must be >= 1"):
        IVFIndex(8, 4, d_c=0)


def test_d_s_larger_than_d():
    with pytest.raises(ValueError, match="d_s must be <= 8"):
        IVFIndex(8, 4, d_s=9)


def test_nlist_below_one():
    with pytest.raises(ValueError, match="nlist must be >= 1"):
        IVFIndex(8, 0)


def test_bad_metric():
    with pytest.raises(ValueError, match="metric"):
        IVFIndex(8, 4, metric="cos")


def test_normalize_not_bool():
    with pytest.raises(TypeError, match="normalize"):
        IVFIndex(8, 4, normalize="yes")


def test_train_with_fewer_points_than_lists():
    with pytest.raises(ValueError, match="at least nlist=4"):
        IVFIndex(8, 4).train(_data(3, 8, 21))


def test_train_with_nan():
    x = _data(20, 8, 22)
    x[5, 1] = np.inf
    with pytest.raises(ValueError, match="NaN or Inf"):
        IVFIndex(8, 4).train(x)


def test_add_before_train():
    with pytest.raises(ValueError, match="before training"):
        IVFIndex(8, 4).add(_data(5, 8, 23))


def test_search_before_train():
    with pytest.raises(ValueError, match="before training"):
        IVFIndex(8, 4).search(_data(5, 8, 24), 1)


def test_add_wrong_width():
    with pytest.raises(ValueError, match="dimension mismatch"):
        _trained().add(_data(5, 7, 25))


def test_search_query_dim_mismatch():
    with pytest.raises(ValueError, match="dimension mismatch"):
        _trained().search(_data(5, 9, 26), 1)


def test_search_nan_query():
    q = _data(2, 8, 27)
    q[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        _trained().search(q, 1)


def test_search_k_below_one():
    with pytest.raises(ValueError, match="k must be >= 1"):
        _trained().search(_data(2, 8, 28), 0)


def test_search_nprobe_below_one():
    with pytest.raises(ValueError, match="nprobe must be >= 1"):
        _trained().search(_data(2, 8, 29), 1, nprobe=0)


def test_search_d_s_override_out_of_range():
    with pytest.raises(ValueError, match="d_s must be <= 8"):
        _trained().search(_data(2, 8, 30), 1, d_s=9)


def test_search_d_c_above_build_d_c():
    with pytest.raises(ValueError, match="build the index with d_c=D"):
        _trained(d_c=4).search(_data(2, 8, 31), 1, d_c=6)


def test_set_centroids_wrong_shape():
    with pytest.raises(ValueError, match="rows but nlist=4"):
        IVFIndex(8, 4).set_centroids(_data(3, 8, 32))


def test_set_centroids_after_add():
    index = _trained()
    index.add(_data(5, 8, 33))
    with pytest.raises(ValueError, match="reset"):
        index.set_centroids(_data(4, 8, 34))


def test_list_ids_out_of_range():
    with pytest.raises(ValueError, match="l must be <= 3"):
        _trained().list_ids(4)


@pytest.mark.skipif(not faiss_runs_avx512(faiss),
                    reason="bit-identity holds where faiss dispatches to AVX-512")
@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_scan_distances_are_bit_identical_to_faiss(metric):
    centroids, xb, xq = _data(10, 40, 35), _data(800, 40, 36), _data(30, 40, 37)
    ref = _faiss_ivf(centroids, metric)
    ref.add(xb)
    ref.nprobe = 3
    ours = IVFIndex(40, 10, metric=metric, normalize=False)
    ours.set_centroids(centroids)
    ours.add(xb)
    D_ref, I_ref = ref.search(xq, 20)
    D, I = ours.search(xq, 20, nprobe=3)
    np.testing.assert_array_equal(I, I_ref)
    np.testing.assert_array_equal(D, D_ref)


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_list_scan_does_not_depend_on_how_queries_are_split(metric):
    # _scan_lists groups each part's queries by list; the heaps must not see the difference
    # (several lists per query, lists shared by many queries, more parts than lists).
    from adanns_ref.indices.ivf import _scan_lists
    from adanns_ref.core.topk import new_heaps
    xb, xq = _data(900, 10, 21), _data(57, 10, 22)
    index = IVFIndex(10, 6, metric=metric, normalize=False)
    index.train(xb)
    index.add(xb)
    probes = np.argsort(np.random.default_rng(3).random((57, 6)), axis=1)[:, :3]  # 3 distinct lists
    results = []
    for n_parts in (1, 2, 7, 57):
        hd, hi = new_heaps(57, 12)
        _scan_lists(xq, index._database_at(10), 10, index._ids, index._offsets, probes,
                    metric == "ip", hd, hi, n_parts)
        results.append((hd, hi))
    for hd, hi in results[1:]:
        np.testing.assert_array_equal(hi, results[0][1])
        np.testing.assert_array_equal(hd, results[0][0])


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("n", [300, 9000])  # direct and GEMM paths of the top-1 route
def test_routing_with_one_probe_is_faiss_quantizer_search(metric, n):
    from adanns_ref.search.assign import search_centroids
    x, c = _data(n, 24, 31), _data(300, 24, 32)
    D, I = search_centroids(x, c, 1, metric)
    quantizer = (faiss.IndexFlatL2 if metric == "l2" else faiss.IndexFlatIP)(24)
    quantizer.add(c)
    D_ref, I_ref = quantizer.search(x, 1)
    assert D.shape == I.shape == (n, 1)
    assert (I == I_ref).mean() >= 0.999
    np.testing.assert_allclose(D, D_ref, rtol=1e-5, atol=1e-4)
    D4, I4 = search_centroids(x, c, 4, metric)  # nprobe > 1: the exact k-NN, best first
    assert D4.shape == I4.shape == (n, 4)
    assert (I4[:, 0] == I[:, 0]).mean() >= 0.999
