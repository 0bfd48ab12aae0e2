"""exact: blocked exact k-NN search against faiss (both paths, ties, padding, reservoirs, bad input)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adanns_ref.search import exact
from adanns_ref.search.knn import knn_search
from adanns_ref.core.simd import faiss_runs_avx512
from adanns_ref.testing import assert_knn_equal

faiss = pytest.importorskip("faiss")

FLT_MAX = np.float32(3.4028235e38)


def _data(nq, nb, d, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((nq, d)).astype(np.float32),
            rng.standard_normal((nb, d)).astype(np.float32))


def _faiss_flat(xb, metric):
    index = (faiss.IndexFlatL2 if metric == "l2" else faiss.IndexFlatIP)(xb.shape[1])
    index.add(xb)
    return index


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("nq,nb,d,k", [(7, 300, 16, 10),      # direct path (nq * d < 128000)
                                       (2100, 1500, 64, 5),   # BLAS path, several blocks
                                       (3, 40, 8, 1)])
def test_knn_search_matches_faiss(metric, nq, nb, d, k):
    xq, xb = _data(nq, nb, d)
    D_ref, I_ref = _faiss_flat(xb, metric).search(xq, k)
    D, I = knn_search(xq, xb, k, metric)
    assert D.dtype == np.float32 and I.dtype == np.int64 and D.shape == (nq, k)
    np.testing.assert_array_equal(I, I_ref)
    np.testing.assert_allclose(D, D_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_knn_search_result_independent_of_block_sizes(metric, monkeypatch):
    xq, xb = _data(2500, 700, 64, seed=3)
    D1, I1 = knn_search(xq, xb, 9, metric)
    monkeypatch.setattr(exact, "Q_BLOCK", 333)
    monkeypatch.setattr(exact, "DB_BLOCK", 50)
    D2, I2 = knn_search(xq, xb, 9, metric)
    np.testing.assert_array_equal(I1, I2)
    np.testing.assert_allclose(D1, D2, rtol=1e-6)  # GEMM rounding depends on the block shape


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("nq", [5, 2100])  # direct and BLAS paths
def test_knn_search_pads_when_k_exceeds_database(metric, nq):
    xq, xb = _data(nq, 6, 64, seed=1)
    D_ref, I_ref = _faiss_flat(xb, metric).search(xq, 10)
    D, I = knn_search(xq, xb, 10, metric)
    np.testing.assert_array_equal(I, I_ref)
    pad = FLT_MAX if metric == "l2" else -FLT_MAX
    assert (I[:, 6:] == -1).all() and (D[:, 6:] == pad).all()
    np.testing.assert_allclose(D[:, :6], D_ref[:, :6], rtol=1e-5, atol=1e-5)


def test_knn_search_empty_database_gives_all_missing():
    xq, _ = _data(4, 0, 8)
    D, I = knn_search(xq, np.empty((0, 8), np.float32), 3, "ip")
    assert (I == -1).all() and (D == -FLT_MAX).all()


def _tripled(nq, seed=2):
    xq, xb = _data(nq, 40, 64, seed=seed)
    return xq, np.concatenate([xb, xb, xb])  # ids j, j + 40, j + 80 are equal vectors


def test_knn_search_exact_ties_go_to_smaller_id():
    xq, xb = _tripled(5)  # direct path: equal vectors give bit-equal distances
    D, I = knn_search(xq, xb, 8, "l2")
    for row in I:  # each tie group holds the smallest ids of its vector, ascending
        base = row % 40
        for b in np.unique(base):
            assert row[base == b].tolist() == [b + 40 * t for t in range((base == b).sum())]


@pytest.mark.parametrize("nq", [5, 2100])
def test_knn_search_ties_match_faiss_as_sets(nq):
    # on the BLAS path equal vectors may differ in the last bit (GEMM edge kernels), as in faiss
    xq, xb = _tripled(nq)
    D, I = knn_search(xq, xb, 8, "l2")
    D_ref, I_ref = _faiss_flat(xb, "l2").search(xq, 8)
    assert_knn_equal(D_ref, I_ref, D, I, rtol=1e-5, atol=1e-4)


def test_knn_search_identical_vectors_have_zero_distance_on_blas_path():
    rng = np.random.default_rng(5)
    xb = (rng.standard_normal((50, 64)) * 100).astype(np.float32)
    xq = np.repeat(xb, 50, axis=0)  # 2500 * 64 >= BLAS_THRESHOLD
    D, I = knn_search(xq, xb, 1, "l2")
    assert (D[:, 0] >= 0).all()  # the BLAS form is clamped at zero like faiss's
    np.testing.assert_array_equal(I[:, 0], np.repeat(np.arange(50), 50))


@pytest.mark.skipif(not faiss_runs_avx512(faiss),
                    reason="bit-identity holds where faiss dispatches to AVX-512")
@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_direct_path_is_bit_identical_to_faiss(metric):
    xq, xb = _data(20, 700, 100, seed=9)
    D_ref, I_ref = _faiss_flat(xb, metric).search(xq, 700)
    D, I = knn_search(xq, xb, 700, metric)
    np.testing.assert_array_equal(I, I_ref)
    np.testing.assert_array_equal(D, D_ref)


def test_knn_search_accepts_read_only_inputs():
    xq, xb = _data(3, 50, 8, seed=4)
    xq.flags.writeable = False
    xb.flags.writeable = False
    D, I = knn_search(xq, xb, 2, "l2")
    assert I[:, 0].tolist() == np.argmin(((xq[:, None] - xb[None]) ** 2).sum(-1), axis=1).tolist()


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_thread_pool_and_serial_blas_paths_agree(metric, monkeypatch):
    xq, xb = _data(2100, 300, 64, seed=6)
    monkeypatch.setattr(exact, "POOL_MIN_WORK", 0)  # worker pool (when numba has > 1 thread)
    D1, I1 = knn_search(xq, xb, 6, metric)
    monkeypatch.setattr(exact, "POOL_MIN_WORK", 1 << 62)  # one thread
    D2, I2 = knn_search(xq, xb, 6, metric)
    np.testing.assert_array_equal(I1, I2)
    np.testing.assert_allclose(D1, D2, rtol=1e-6)
    D_ref, I_ref = _faiss_flat(xb, metric).search(xq, 6)
    np.testing.assert_array_equal(I1, I_ref)


def _heap_mode(monkeypatch):
    monkeypatch.setattr(exact, "RESERVOIR_MIN_K", 1 << 62)


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("k", [101, 250, 1200])  # 1200 > nb: padding from a reservoir
def test_reservoir_gives_the_heap_results_with_ties(metric, k, monkeypatch):
    xq, xb = _data(2100, 1100, 64, seed=8)
    xb[500:700] = xb[7]  # 201 equal vectors: tied distances across the cut at k
    xq[:50] = xb[7]
    D, I = knn_search(xq, xb, k, metric)  # k > RESERVOIR_MIN_K: reservoirs
    _heap_mode(monkeypatch)
    D_h, I_h = knn_search(xq, xb, k, metric)
    np.testing.assert_array_equal(I, I_h)
    np.testing.assert_array_equal(D, D_h)  # heaps are checked against faiss above


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_reservoir_matches_faiss_reservoir(metric):
    xq, xb = _data(2100, 3000, 64, seed=9)  # k > 100: faiss collects in reservoirs too
    D_ref, I_ref = _faiss_flat(xb, metric).search(xq, 180)
    D, I = knn_search(xq, xb, 180, metric)
    assert_knn_equal(D_ref, I_ref, D, I, rtol=1e-5, atol=1e-5)  # GEMM rounding: near-ties may swap


def test_reservoir_cut_with_every_distance_tied(monkeypatch):
    # no distance t splits a buffer of equal keys: the exact (distance, id) cut must keep ids 0..k-1
    xb = np.ones((3000, 50), np.float32)
    xq = np.ones((2600, 50), np.float32)
    D, I = knn_search(xq, xb, 150, "l2")
    assert (I == np.arange(150)).all() and (D == 0).all()


@settings(deadline=None, max_examples=25)
@given(seed=st.integers(0, 2**16), k=st.integers(1, 90), nb=st.integers(1, 400),
       n_dup=st.integers(0, 60), metric=st.sampled_from(["l2", "ip"]))
def test_reservoir_equals_heap_on_random_inputs(seed, k, nb, n_dup, metric):
    rng = np.random.default_rng(seed)
    xb = rng.integers(-2, 3, (nb, 6)).astype(np.float32)  # small integers: many exact ties
    xb[: min(n_dup, nb)] = xb[0]
    xq = rng.integers(-2, 3, (40, 6)).astype(np.float32)
    results = []
    for min_k in (0, 1 << 62):  # every k through reservoirs, then through heaps
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(exact, "RESERVOIR_MIN_K", min_k)
            mp.setattr(exact, "BLAS_THRESHOLD", 0)  # the merge path even for tiny inputs
            mp.setattr(exact, "DB_BLOCK", 37)
            results.append(knn_search(xq, xb, k, metric))
    np.testing.assert_array_equal(results[0][1], results[1][1])
    np.testing.assert_array_equal(results[0][0], results[1][0])


# --- knn_search, the public entry point, validates like the indices --------------------------

def test_knn_search_converts_float64_and_fortran_once():
    xq, xb = _data(7, 40, 6, seed=3)
    D, I = knn_search(xq, xb, 5)
    for q, b in ((xq.astype(np.float64), xb), (np.asfortranarray(xq), np.asfortranarray(xb)),
                 (xq.tolist(), xb[:, :].astype(np.float64))):
        D2, I2 = knn_search(q, b, 5)
        np.testing.assert_array_equal(I2, I)
        np.testing.assert_array_equal(D2, D)


@pytest.mark.parametrize("change, error, match", [
    (lambda q, b: (np.where(q == q.max(), np.nan, q), b), ValueError, "xq contains NaN or Inf"),
    (lambda q, b: (q, np.where(b == b.min(), -np.inf, b)), ValueError, "xb contains NaN or Inf"),
    (lambda q, b: (q[:, :5], b), ValueError, "xq has 5 columns but 6 were expected"),
    (lambda q, b: (q[0], b), ValueError, "xq must be 2-D"),
    (lambda q, b: (q.astype(np.complex64), b), TypeError, "xq must be a real numeric array"),
    (lambda q, b: (q, None), TypeError, "xb must be a real numeric array"),
])
def test_knn_search_rejects_bad_arrays(change, error, match):
    q, b = change(*_data(3, 20, 6))
    with pytest.raises(error, match=match):
        knn_search(q, b, 2)


@pytest.mark.parametrize("k, metric, error, match", [
    (0, "l2", ValueError, "k must be >= 1, got 0"),
    (-1, "ip", ValueError, "k must be >= 1"),
    (2.0, "l2", TypeError, "k must be an integer"),
    (True, "l2", TypeError, "k must be an integer"),
    (2, "cos", ValueError, "metric must be 'l2' or 'ip', got 'cos'"),
    (2, None, ValueError, "metric must be"),
    (10**9, "l2", ValueError, r"k=1000000000 for 3 queries needs 33\.5 GiB"),
])
def test_knn_search_rejects_bad_k_and_metric(k, metric, error, match):
    with pytest.raises(error, match=match):
        knn_search(*_data(3, 20, 6), k, metric)
