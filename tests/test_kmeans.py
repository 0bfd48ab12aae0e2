"""Tests for adanns_ref.quantizers.kmeans and adanns_ref.core.mt19937: bit-exact agreement with faiss 1.15
on the direct-distance path, close agreement on the GEMM path, invariants, bad inputs."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from adanns_ref.core import mt19937 as mt
from adanns_ref.core.threads import PARALLEL_MIN_WORK
from adanns_ref.search import assign
from adanns_ref.core.simd import faiss_runs_avx512
from adanns_ref.quantizers import kmeans as km
from adanns_ref.quantizers.kmeans import KMeans

try:
    import faiss
except ImportError:  # the faiss comparisons are skipped, the rest still runs
    faiss = None


needs_faiss = pytest.mark.skipif(faiss is None, reason="faiss-cpu not installed")
# Bit-identity of the direct path holds where faiss dispatches to its AVX-512 kernels.
bit_exact = pytest.mark.skipif(faiss is None or not faiss_runs_avx512(faiss),
                               reason="needs faiss dispatching to AVX-512 (its summation order)")


def blobs(n, d, centers, seed, spread=0.3):
    """Gaussian blobs around `centers` random centres: separated, no exact distance ties."""
    rng = np.random.default_rng(seed)
    mu = rng.standard_normal((centers, d)).astype(np.float32) * 3
    lab = rng.integers(0, centers, n)
    return (mu[lab] + spread * rng.standard_normal((n, d))).astype(np.float32)


def faiss_kmeans(x, k, init_centroids=None, **kw):
    f = faiss.Kmeans(x.shape[1], k, **kw)
    f.train(x, init_centroids=init_centroids)
    return f


def faiss_clustering_ip(x, k, niter):
    """faiss Clustering with an IndexFlatIP (what IVF uses for metric IP), not spherical."""
    cp = faiss.ClusteringParameters()
    cp.niter = niter
    clus = faiss.Clustering(x.shape[1], k, cp)
    clus.train(x, faiss.IndexFlatIP(x.shape[1]))
    stats = clus.iteration_stats
    obj = np.array([stats.at(i).obj for i in range(stats.size())], np.float32)
    return faiss.vector_to_array(clus.centroids).reshape(k, x.shape[1]), obj


def assert_same_as_faiss(ours, f):
    np.testing.assert_array_equal(ours.centroids, f.centroids)
    np.testing.assert_array_equal(ours.obj, f.obj.astype(np.float32))
    np.testing.assert_array_equal(ours.nsplit, [s["nsplit"] for s in f.iteration_stats])


# ---------------------------------------------------------------- RNG

@needs_faiss
@pytest.mark.parametrize("n,seed", [(1, 3), (2, 0), (1000, 1234), (4097, 2**31 - 1), (300, 1235 + 15486557)])
def test_rand_perm_matches_faiss(n, seed):
    ref = np.zeros(n, dtype=np.int32)
    faiss.rand_perm(faiss.swig_ptr(ref), n, seed)
    np.testing.assert_array_equal(mt.rand_perm(n, seed), ref)


@needs_faiss
def test_mt_stream_matches_numpy_across_twists_and_faiss_rand_float():
    state = mt.MTState(1234)
    ours = np.array([mt.mt_next(state.key, state.pos) for _ in range(2000)], dtype=np.uint64)
    np.testing.assert_array_equal(ours, mt.rand_uint32(2000, 1234))
    state, ref = mt.MTState(1234), faiss.RandomGenerator(1234)
    floats = [mt.mt_rand_float(state.key, state.pos) for _ in range(700)]
    np.testing.assert_array_equal(np.float32(floats), np.float32([ref.rand_float() for _ in range(700)]))


# ---------------------------------------------------------------- bit-exact vs faiss (direct path)

EXACT_CASES = [
    # n, d, k, kwargs
    (600, 8, 10, {}),
    (900, 13, 12, dict(niter=15, seed=5)),  # odd d (SIMD tail)
    (1200, 33, 8, dict(max_points_per_centroid=40)),  # subsampling to 320 points
    (800, 16, 20, dict(nredo=2, niter=6)),  # best run kept, obj history as faiss keeps it
    (700, 5, 25, dict(niter=1)),
    (500, 40, 6, dict(seed=0)),
    (500, 40, 6, dict(seed=987654)),
    (900, 31, 12, dict(spherical=True)),
    (400, 64, 100, dict(niter=40)),  # early stop before niter
]


@bit_exact
@pytest.mark.parametrize("n,d,k,kw", EXACT_CASES)
def test_bit_identical_to_faiss_kmeans(n, d, k, kw):
    x = blobs(n, d, max(3, k // 2), seed=n + d)
    assert n * d < km.BLAS_THRESHOLD
    assert_same_as_faiss(KMeans(k, **kw).fit(x), faiss_kmeans(x, k, **kw))


@needs_faiss
def test_subsampled_training_set_and_init_match_faiss():
    x = blobs(3000, 6, 4, seed=1)
    ours = KMeans(5, niter=1, max_points_per_centroid=20).fit(x)
    assert ours.n_train_ == 100
    keep = mt.rand_perm(3000, 1234)[:100]
    init = x[keep][mt.rand_perm(100, 1235)[:5]]
    f = faiss_kmeans(x, 5, niter=1, max_points_per_centroid=20)
    np.testing.assert_array_equal(ours.centroids, f.centroids)
    # one Lloyd step from that init, recomputed with numpy, gives the same centroids
    assign = np.argmin(((x[keep][:, None, :] - init[None]) ** 2).sum(-1), axis=1)
    expect = np.stack([x[keep][assign == j].mean(0) for j in range(5)])
    np.testing.assert_allclose(ours.centroids, expect, rtol=1e-5, atol=1e-6)


def test_early_stop_when_objective_is_unchanged():
    x = blobs(400, 64, 100, seed=3)
    ours = KMeans(100, niter=40).fit(x)
    assert ours.n_iter_ < 40 and ours.obj[-1] == ours.obj[-2]
    full = KMeans(100, niter=40, early_stop=False).fit(x)
    assert len(full.obj) == 40
    np.testing.assert_array_equal(full.centroids, ours.centroids)


@bit_exact
@pytest.mark.parametrize("k,seed", [(40, 0), (60, 2), (45, 4)])
def test_empty_cluster_splits_match_faiss(k, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((30, 9)).astype(np.float32)[rng.integers(0, 30, 900)]  # duplicates
    ours = KMeans(k, niter=10, seed=seed).fit(x)
    assert ours.nsplit.sum() > 0  # duplicated init centroids leave clusters empty
    assert_same_as_faiss(ours, faiss_kmeans(x, k, niter=10, seed=seed))


def test_split_falls_back_to_largest_cluster_after_10k_rejections():
    # every p = (n_j - 1) / (n - k) <= 0: no draw can accept, faiss 1.15 takes the largest
    cent = np.arange(12, dtype=np.float32).reshape(4, 3) + 1
    counts = np.float32([0, 0.5, 1.0, 0.75])
    state = mt.MTState(1234)
    assert km._split_clusters(cent, counts, 10, state.key, state.pos) == 1
    np.testing.assert_array_equal(cent[0], np.float32([7, 8, 9]) * np.float32([1 + 1 / 1024, 1 - 1 / 1024, 1 + 1 / 1024]))
    np.testing.assert_array_equal(counts, [0.5, 0.5, 0.5, 0.75])
    assert state.pos[0] == 40  # exactly 10 * k draws were consumed


@bit_exact
def test_inner_product_metric_matches_faiss_flat_ip_clustering():
    x = blobs(800, 12, 6, seed=7)
    cent, obj = faiss_clustering_ip(x, 10, niter=12)
    ours = KMeans(10, niter=12, metric="ip").fit(x)
    np.testing.assert_array_equal(ours.centroids, cent)
    np.testing.assert_array_equal(ours.obj, obj)


@bit_exact
@pytest.mark.parametrize("m,kw", [(20, {}), (7, {}), (20, dict(nredo=3, niter=4)), (5, dict(nredo=2, niter=6, spherical=True))])
def test_warm_start_matches_faiss_init_centroids(m, kw):
    x = blobs(1500, 10, 15, seed=m)
    c0 = np.random.default_rng(m).standard_normal((m, 10)).astype(np.float32)
    assert_same_as_faiss(KMeans(20, **kw).fit(x, init_centroids=c0), faiss_kmeans(x, 20, c0, **kw))


@bit_exact
def test_n_equal_k_copies_points_like_faiss():
    x = blobs(50, 4, 5, seed=0)
    ours, f = KMeans(50).fit(x), faiss_kmeans(x, 50)
    np.testing.assert_array_equal(ours.centroids, x)
    assert_same_as_faiss(ours, f)
    # after subsampling to k points faiss copies the caller's first k rows, not the sample
    ours = KMeans(30, max_points_per_centroid=1).fit(blobs(600, 4, 5, seed=1))
    np.testing.assert_array_equal(ours.centroids, blobs(600, 4, 5, seed=1)[:30])


@bit_exact
def test_assign_matches_faiss_assign():
    x = blobs(700, 10, 8, seed=11)
    ours, f = KMeans(8).fit(x), faiss_kmeans(x, 8)
    D, I = ours.assign(x)
    Df, If = f.assign(x)
    assert D.shape == I.shape == (700,) and D.dtype == np.float32 and I.dtype == np.int64
    np.testing.assert_array_equal(I, If)
    np.testing.assert_array_equal(D, Df)


# ---------------------------------------------------------------- GEMM path

@needs_faiss
@pytest.mark.parametrize("n,d,k,kw", [(16000, 16, 40, dict(niter=8)), (9000, 24, 30, dict(niter=6, spherical=True))])
def test_gemm_path_close_to_faiss(n, d, k, kw):
    x = blobs(n, d, k, seed=d, spread=1.0)
    assert n * d >= km.BLAS_THRESHOLD
    ours, f = KMeans(k, **kw).fit(x), faiss_kmeans(x, k, **kw)
    _, I = ours.assign(x)
    _, If = f.assign(x)
    assert (I == If).mean() >= 0.999
    assert abs(ours.obj[-1] - f.obj[-1]) <= 1e-5 * abs(f.obj[-1])


def test_results_do_not_depend_on_thread_count():
    numba = pytest.importorskip("numba")
    x = blobs(20000, 32, 64, seed=8, spread=1.0)
    assert 20000 * 32 * 128 >= PARALLEL_MIN_WORK  # the parallel kernels really run
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = KMeans(128, niter=3).fit(x)
        numba.set_num_threads(max(2, before) if numba.config.NUMBA_NUM_THREADS >= 2 else 1)
        many = KMeans(128, niter=3).fit(x)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one.centroids, many.centroids)
    np.testing.assert_array_equal(one.obj, many.obj)


# ---------------------------------------------------------------- invariants

@settings(deadline=None, max_examples=25)
@given(n=st.integers(20, 200), d=st.integers(1, 9), k=st.integers(1, 20), seed=st.integers(0, 2**31 - 1),
       ip=st.booleans())
def test_invariants(n, d, k, seed, ip):
    k = min(k, n)
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    a = KMeans(k, niter=6, seed=seed, metric="ip" if ip else "l2").fit(x)
    b = KMeans(k, niter=6, seed=seed, metric="ip" if ip else "l2").fit(x)
    np.testing.assert_array_equal(a.centroids, b.centroids)  # deterministic
    assert a.centroids.shape == (k, d) and np.isfinite(a.centroids).all()
    D, I = a.assign(x)
    x64, c64 = x.astype(np.float64), a.centroids.astype(np.float64)
    score = x64 @ c64.T if ip else ((x64[:, None] - c64[None]) ** 2).sum(-1)
    best = score.max(1) if ip else score.min(1)
    chosen = score[np.arange(n), I]
    assert np.all(np.abs(chosen - best) <= 1e-4 * (1 + np.abs(best)))  # nearest up to rounding
    if not ip and a.n_iter_ > 1 and a.nsplit.sum() == 0:
        assert np.all(np.diff(a.obj) <= 1e-5 * a.obj[:-1])  # Lloyd never increases the L2 objective


def test_kmeanspp_is_seeded_and_reasonable():
    x = blobs(2000, 8, 10, seed=9)
    a = KMeans(10, init="k-means++", seed=3).fit(x)
    b = KMeans(10, init="k-means++", seed=3).fit(x)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    assert not np.array_equal(a.centroids, KMeans(10, init="k-means++", seed=4).fit(x).centroids)
    assert a.obj[-1] <= 1.5 * KMeans(10).fit(x).obj[-1]


def test_nredo_keeps_highest_objective_for_ip():
    x = blobs(900, 6, 8, seed=2)
    runs = [KMeans(8, niter=5, seed=5, metric="ip", nredo=r).fit(x) for r in (1, 3)]
    assert runs[1].obj[-1] >= runs[0].obj[-1]


# ---------------------------------------------------------------- bad inputs

def test_too_few_points():
    with pytest.raises(ValueError, match="at least 10 training points"):
        KMeans(10).fit(np.zeros((9, 2), np.float32))


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(k=0), ValueError, "k must be >= 1"),
    (dict(k=2.5), TypeError, "k must be an integer"),
    (dict(k=3, niter=0), ValueError, "niter must be >= 1"),
    (dict(k=3, nredo=0), ValueError, "nredo must be >= 1"),
    (dict(k=3, seed=-1), ValueError, "seed must be >= 0"),
    (dict(k=3, max_points_per_centroid=0), ValueError, "max_points_per_centroid"),
    (dict(k=3, init="kmeans++"), ValueError, "init must be one of"),
    (dict(k=3, metric="cosine"), ValueError, "metric must be"),
    (dict(k=3, spherical="yes"), TypeError, "spherical must be True or False"),
    (dict(k=3, early_stop=1), TypeError, "early_stop must be True or False"),
])
def test_bad_constructor_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        KMeans(**kwargs)


def test_bad_training_data():
    with pytest.raises(ValueError, match="2-D"):
        KMeans(2).fit(np.zeros(10, np.float32))
    x = np.ones((10, 3), np.float32)
    x[4, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        KMeans(2).fit(x)


def test_bad_init_centroids():
    x = blobs(100, 4, 3, seed=0)
    with pytest.raises(ValueError, match="columns but 4 were expected"):
        KMeans(3).fit(x, init_centroids=np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match="pass at most k"):
        KMeans(3).fit(x, init_centroids=np.zeros((4, 4), np.float32))


def test_assign_before_fit_and_wrong_width():
    with pytest.raises(ValueError, match="before fit"):
        KMeans(2).assign(np.zeros((3, 2), np.float32))
    model = KMeans(2).fit(blobs(50, 3, 2, seed=0))
    with pytest.raises(ValueError, match="dimension mismatch"):
        model.assign(np.zeros((3, 4), np.float32))

