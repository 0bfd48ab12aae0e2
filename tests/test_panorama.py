"""Panorama (adanns_ref.panorama) against faiss 1.15.1's IndexFlatL2/IPPanorama,
IndexIVFFlatPanorama and IndexRefinePanorama: ids, distances, ties, statistics, bad inputs."""
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adanns_ref import FlatIndex
from adanns_ref.core.simd import faiss_runs_avx512
from adanns_ref.panorama import PanoramaFlatIndex, PanoramaIVFIndex, PanoramaRefineIndex
from adanns_ref.panorama.levels import energy_share, faiss_bounds, nesting_bounds
from adanns_ref.testing import assert_knn_equal

faiss = pytest.importorskip("faiss")
if not hasattr(faiss, "IndexFlatL2Panorama"):
    pytest.skip("faiss without Panorama (needs >= 1.15)", allow_module_level=True)

MT = {"l2": faiss.METRIC_L2, "ip": faiss.METRIC_INNER_PRODUCT}


def unrolled(bounds):
    """faiss compiles level widths 8, 16, ..., 64 as unrolled kernels whose float association we
    do not reproduce (see panorama.kernels): distances then agree to a few ulps only."""
    w = np.diff(bounds)
    return bool(np.any((w % 8 == 0) & (w <= 64)))


def data(seed, n, d, ties):
    rng = np.random.default_rng(seed)
    if ties:  # small integers: many exactly equal distances, every sum exact
        return rng.integers(-2, 3, (n, d)).astype(np.float32)
    return (rng.standard_normal((n, d)) * (np.arange(1, d + 1) ** -0.5)).astype(np.float32)


def quiet(make):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make()


@pytest.fixture(autouse=True)
def faiss_one_thread():
    """faiss adds each query's counters to one global struct without a lock ("not robust to
    internal threading", PanoramaStats.h): compare them on one thread."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def faiss_stats():
    s = faiss.cvar.indexPanorama_stats
    return int(s.total_dims), int(s.total_dims_scanned)


def check_same(ours, ref, D, I, Df, If, bounds):
    if unrolled(bounds):
        assert_knn_equal(Df, If, D, I, rtol=1e-5, atol=1e-4)
        return
    np.testing.assert_array_equal(I, If)
    np.testing.assert_array_equal(D, Df)
    assert (ours.last_search_stats.total_dims, ours.last_search_stats.total_dims_scanned) == ref


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(d=st.integers(1, 40), lv=st.integers(1, 40), n=st.integers(0, 300), bs=st.integers(1, 70),
       k=st.integers(1, 70), nq=st.integers(1, 25), metric=st.sampled_from(["l2", "ip"]),
       ties=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_flat_matches_faiss(d, lv, n, bs, k, nq, metric, ties, seed):
    lv, k = min(lv, d), min(k, bs)
    xb, xq = data(seed, n, d, ties), data(seed + 1, nq, d, ties)
    ours = quiet(lambda: PanoramaFlatIndex(d, lv, metric, batch_size=bs))
    ref = faiss.IndexFlatPanorama(d, MT[metric], lv, bs)
    ours.add(xb[: n // 2])
    ours.add(xb[n // 2:])
    ref.add(xb)
    np.testing.assert_array_equal(ours.level_codes(), faiss.vector_to_array(ref.codes).view(np.float32))
    np.testing.assert_array_equal(ours.tail_norms(), faiss.vector_to_array(ref.cum_sums))
    if n:  # faiss keeps the requested n_levels; its storage holds the truncated count + 1
        assert ours.n_levels + 1 == ref.cum_sums.size() // (-(-n // bs) * bs)
    D, I = ours.search(xq, k)
    faiss.cvar.indexPanorama_stats.reset()
    Df, If = ref.search(xq, k)
    check_same(ours, faiss_stats(), D, I, Df, If, ours.bounds)
    np.testing.assert_array_equal(ours.reconstruct_n(), xb)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(d=st.integers(2, 30), lv=st.integers(1, 30), nlist=st.integers(1, 12),
       n=st.integers(12, 400), bs=st.integers(1, 64), k=st.integers(1, 120),
       nprobe=st.integers(1, 14), metric=st.sampled_from(["l2", "ip"]), ties=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_ivf_matches_faiss(d, lv, nlist, n, bs, k, nprobe, metric, ties, seed):
    lv = min(lv, d)
    xb, xq = data(seed, n, d, ties), data(seed + 1, 17, d, ties)
    ours = quiet(lambda: PanoramaIVFIndex(d, nlist, lv, metric, batch_size=bs))
    cq = faiss.IndexFlat(d, MT[metric])
    ref = faiss.IndexIVFFlatPanorama(cq, d, nlist, lv, MT[metric], True, bs)
    quiet(lambda: ref.train(xb))
    ours.set_centroids(faiss.vector_to_array(cq.codes).view(np.float32).reshape(nlist, d))
    ref.add(xb)
    ours.add(xb)
    ref.nprobe = nprobe
    for l in range(nlist):
        np.testing.assert_array_equal(ours.list_ids(l), faiss.rev_swig_ptr(
            ref.invlists.get_ids(l), ref.invlists.list_size(l)))
    D, I = ours.search(xq, k, nprobe)
    faiss.cvar.indexPanorama_stats.reset()
    Df, If = ref.search(xq, k)
    check_same(ours, faiss_stats(), D, I, Df, If, ours.bounds)


@pytest.mark.skipif(not faiss_runs_avx512(faiss), reason="refine dots follow faiss's AVX-512 order")
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(d=st.integers(1, 40), lv=st.integers(1, 40), n=st.integers(1, 300), k=st.integers(1, 30),
       kf=st.floats(1, 12), metric=st.sampled_from(["l2", "ip"]), ties=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_refine_matches_faiss(d, lv, n, k, kf, metric, ties, seed):
    lv = min(lv, d)
    xb, xq = data(seed, n, d, ties), data(seed + 1, 9, d, ties)
    ours = quiet(lambda: PanoramaRefineIndex(FlatIndex(d, metric), lv, metric, k_factor=kf))
    refine = faiss.IndexFlatPanorama(d, MT[metric], lv, 1)
    ref = faiss.IndexRefinePanorama(faiss.IndexFlat(d, MT[metric]), refine)
    ref.k_factor = kf
    ours.add(xb)
    ref.add(xb)
    np.testing.assert_array_equal(ours.tail_norms().ravel(), faiss.vector_to_array(refine.cum_sums))
    # the same shortlist for both: faiss's base search (ours agrees up to ties)
    k_base = int(k * kf)
    _, labels = ref.base_index.search(xq, k_base)
    D, I = ours.search_subset(xq, k, labels)
    faiss.cvar.indexPanorama_stats.reset()
    Df, If = ref.search(xq, k)
    np.testing.assert_array_equal(I, If)
    np.testing.assert_array_equal(D, Df)
    s = ours.last_search_stats
    assert (s.total_dims, s.total_dims_scanned) == faiss_stats()


def test_refine_search_uses_the_base_shortlist():
    xb, xq = data(3, 500, 24, False), data(4, 10, 24, False)
    ours = PanoramaRefineIndex(FlatIndex(24), 4, k_factor=3)
    ours.add(xb)
    D, I = ours.search(xq, 5)
    Dx, Ix = FlatIndex(24).__class__(24), None
    flat = FlatIndex(24)
    flat.add(xb)
    Dx, Ix = flat.search(xq, 5)
    assert_knn_equal(Dx, Ix, D, I, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("nesting", [(8,), (4, 8, 16), (1, 2, 4, 8, 16, 32, 48)])
def test_nesting_levels_give_exact_top_k(nesting):
    d = 48
    xb, xq = data(5, 2000, d, False), data(6, 30, d, False)
    pano = PanoramaFlatIndex(d, nesting=nesting, batch_size=256)
    pano.add(xb)
    D, I = pano.search(xq, 10)
    flat = faiss.IndexFlatL2(d)
    flat.add(xb)
    Df, If = flat.search(xq, 10)
    assert_knn_equal(Df, If, D, I, rtol=1e-5, atol=1e-4)
    assert pano.bounds.tolist() == [0, *nesting] + ([d] if nesting[-1] != d else [])
    rate = pano.last_search_stats.pruning_rate_per_level()
    assert rate.shape == (pano.n_levels,) and np.all((rate[:-1] >= 0) & (rate[:-1] <= 1))
    rows = pano.last_search_stats.rows_per_level
    assert rows[0] == 30 * 2000 and np.all(np.diff(rows) <= 0)


def test_matryoshka_like_data_prunes_more_with_energy_up_front():
    rng = np.random.default_rng(7)
    d = 64
    flat_energy = rng.standard_normal((3000, d)).astype(np.float32)
    front = (flat_energy * np.arange(1, d + 1) ** -1.0).astype(np.float32)
    ratios = []
    for x in (flat_energy, front):
        p = PanoramaFlatIndex(d, nesting=(4, 8, 16, 32), batch_size=512)
        p.add(x[100:])
        p.search(x[:100], 10)
        ratios.append(p.last_search_stats.ratio_dims_scanned)
    assert ratios[1] < 0.5 * ratios[0]


def test_energy_share_and_bounds():
    x = np.array([[3, 4, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], np.float32)
    np.testing.assert_allclose(energy_share(x, [1, 2, 4]), [(9 / 25 + 1 / 4) / 2, (1 + 0.5) / 2, 1])
    assert faiss_bounds(10, 4).tolist() == [0, 3, 6, 9, 10]
    with pytest.warns(UserWarning, match="truncating nlevels from 6 to 5"):
        assert faiss_bounds(10, 6).tolist() == [0, 2, 4, 6, 8, 10]
    assert nesting_bounds(10, [2, 5]).tolist() == [0, 2, 5, 10]


def test_padding_when_fewer_rows_than_k():
    for metric in ("l2", "ip"):
        ours = PanoramaFlatIndex(6, 2, metric, batch_size=16)
        ref = faiss.IndexFlatPanorama(6, MT[metric], 2, 16)
        xb = data(1, 3, 6, False)
        ours.add(xb)
        ref.add(xb)
        D, I = ours.search(xb, 10)
        Df, If = ref.search(xb, 10)
        np.testing.assert_array_equal(I, If)
        np.testing.assert_array_equal(D, Df)


@pytest.mark.parametrize("make, match", [
    (lambda: PanoramaFlatIndex(4, 5), "n_levels=5 exceeds d=4"),
    (lambda: PanoramaFlatIndex(4, 0), "n_levels"),
    (lambda: PanoramaFlatIndex(4), "exactly one of n_levels"),
    (lambda: PanoramaFlatIndex(4, 2, nesting=(2,)), "exactly one of n_levels"),
    (lambda: PanoramaFlatIndex(8, nesting=(4, 2)), "increase strictly"),
    (lambda: PanoramaFlatIndex(8, nesting=(4, 9)), "nesting size"),
    (lambda: PanoramaFlatIndex(8, nesting=()), "at least one prefix size"),
    (lambda: PanoramaFlatIndex(8, 2, metric="cos"), "metric"),
    (lambda: PanoramaFlatIndex(8, 2, batch_size=0), "batch_size"),
    (lambda: PanoramaIVFIndex(8, 0, 2), "nlist"),
    (lambda: PanoramaRefineIndex(FlatIndex(8), 2, k_factor=0.5), "k_factor"),
    (lambda: PanoramaRefineIndex(FlatIndex(8), 2, k_factor=float("nan")), "k_factor"),
])
def test_bad_construction(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_calls():
    p = PanoramaFlatIndex(8, 2, batch_size=4)
    with pytest.raises(ValueError, match="columns"):
        p.add(np.zeros((3, 7), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        p.add(np.full((3, 8), np.nan, np.float32))
    p.add(np.ones((3, 8), np.float32))
    with pytest.raises(ValueError, match="k=5 exceeds batch_size=4"):
        p.search(np.ones((1, 8)), 5)
    with pytest.raises(ValueError, match="k"):
        p.search(np.ones((1, 8)), 0)
    with pytest.raises(TypeError, match="real numeric"):
        p.search(np.array([["a"] * 8]), 1)
    ivf = PanoramaIVFIndex(8, 2, 2)
    with pytest.raises(ValueError, match="before training"):
        ivf.search(np.ones((1, 8)), 1)
    with pytest.raises(ValueError, match="at least nlist"):
        ivf.train(np.ones((1, 8)))
    with pytest.raises(TypeError, match="base must be an index"):
        PanoramaRefineIndex(object(), 2)
    base = FlatIndex(8)
    base.add(np.ones((2, 8), np.float32))
    with pytest.raises(ValueError, match="already holds 2 rows"):
        PanoramaRefineIndex(base, 2)
    r = PanoramaRefineIndex(FlatIndex(8), 2)
    r.add(np.eye(8, dtype=np.float32))
    with pytest.raises(ValueError, match=r"\[-1, ntotal=8\)"):
        r.search_subset(np.ones((1, 8)), 1, np.array([[9]]))
    with pytest.raises(ValueError, match="fewer than k=3"):
        r.search_subset(np.ones((1, 8)), 3, np.array([[1, 2]]))
    with pytest.raises(ValueError, match="integer array"):
        r.search_subset(np.ones((1, 8)), 1, np.array([[1.0]]))
    with pytest.raises(TypeError, match="k_factor"):
        r.search(np.ones((1, 8)), 1, k_factor="x")


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_bridge_round_trips(metric):
    from adanns_ref import IVFIndex, from_faiss, to_faiss
    xb, xq = data(11, 700, 19, False), data(12, 13, 19, False)
    flat = PanoramaFlatIndex(19, 4, metric, batch_size=64)
    ivf = PanoramaIVFIndex(19, 8, 3, metric, batch_size=32)
    ivf.train(xb)
    refine = PanoramaRefineIndex(IVFIndex(19, 8, metric=metric, normalize=False), 5, metric,
                                 k_factor=4)
    refine.base.train(xb)
    for ours in (flat, ivf, refine):
        ours.add(xb)
        twin = to_faiss(ours)
        back = from_faiss(twin)
        assert type(back) is type(ours) and back.ntotal == ours.ntotal
        kw = {"nprobe": 3} if ours is ivf else {}
        if ours is ivf:
            twin.nprobe = 3
        if ours is refine:
            kw = {"nprobe": 2}
            faiss.extract_index_ivf(twin.base_index).nprobe = 2
        D, I = ours.search(xq, 7, **kw)
        Df, If = twin.search(xq, 7)
        np.testing.assert_array_equal(I, If)
        np.testing.assert_array_equal(D, Df)
        Db, Ib = back.search(xq, 7, **kw)
        np.testing.assert_array_equal(Ib, I)
        np.testing.assert_array_equal(Db, D)


def test_bridge_refuses_nesting_and_foreign_ids():
    from adanns_ref import from_faiss, to_faiss
    with pytest.raises(ValueError, match="nesting levels"):
        to_faiss(PanoramaFlatIndex(16, nesting=(4, 8)))
    ref = faiss.IndexIVFFlatPanorama(faiss.IndexFlatL2(4), 4, 2, 2, faiss.METRIC_L2, True, 8)
    xb = data(1, 40, 4, False)
    ref.train(xb)
    ref.add_with_ids(xb, np.arange(40, 80))
    with pytest.raises(ValueError, match="ids 0 .. ntotal-1"):
        from_faiss(ref)


def lane_sums_of(q, q0, y, base, rows, stride, m):
    """panorama.lanes.lane_sums called from Python (an intrinsic needs a jitted caller)."""
    import numba
    from adanns_ref.panorama.lanes import lane_sums
    return numba.njit(lambda *a: lane_sums(*a))(q, q0, y, base, rows, stride, m)


@pytest.mark.parametrize("m", [0, 4, 24, 64])
def test_lane_sums_are_the_float32_lane_chains(m):
    # order P4's lanes: a_{r,j} = ((0 + p_j) + p_{j+4}) + ..., each product and each add rounded
    # to float32, for every row of the tuple at its own offset
    rng = np.random.default_rng(m)
    q = rng.standard_normal(m + 7).astype(np.float32)
    y = (rng.standard_normal(40 * 9 + m) * 1e3).astype(np.float32)
    rows, base, stride, q0 = (3, 0, 7, 5), 11, 40, 5
    got = np.array(lane_sums_of(q, q0, y, base, rows, stride, m), dtype=np.float32)
    want = np.zeros(4 * len(rows), dtype=np.float32)
    for r, i in enumerate(rows):
        for j in range(4):
            s = np.float32(0.0)
            for t in range(j, m, 4):
                s = np.float32(s + np.float32(q[q0 + t] * y[base + i * stride + t]))
            want[4 * r + j] = s
    assert got.view(np.uint32).tolist() == want.view(np.uint32).tolist()
    one = np.array(lane_sums_of(q, q0, y, base, (rows[2],), stride, m), dtype=np.float32)
    assert one.view(np.uint32).tolist() == want[8:12].view(np.uint32).tolist()
