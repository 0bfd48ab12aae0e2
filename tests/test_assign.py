"""Tests for adanns_ref.search.assign: nearest_centroids is faiss IndexFlat.search(x, 1), bit for bit on
the direct path, to near-ties on the GEMM path; both paths agree; overflow is reported."""
import numpy as np
import pytest

from adanns_ref.search import assign
from adanns_ref.core.simd import faiss_runs_avx512

faiss = pytest.importorskip("faiss")


def _flat(c, ip):
    index = (faiss.IndexFlatIP if ip else faiss.IndexFlatL2)(c.shape[1])
    index.add(c)
    return index


@pytest.mark.skipif(not faiss_runs_avx512(faiss),
                    reason="bit-identity holds where faiss dispatches to AVX-512")
@pytest.mark.parametrize("ip", [False, True])
def test_direct_path_is_faiss_flat_search_bit_for_bit(ip):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((700, 37)).astype(np.float32)
    c = rng.standard_normal((50, 37)).astype(np.float32)
    assert x.shape[0] * x.shape[1] < assign.BLAS_THRESHOLD
    D, I = assign.nearest_centroids(x, c, ip)
    D_ref, I_ref = _flat(c, ip).search(x, 1)
    np.testing.assert_array_equal(I, I_ref[:, 0])
    np.testing.assert_array_equal(D, D_ref[:, 0])


@pytest.mark.parametrize("ip", [False, True])
def test_gemm_path_agrees_with_direct_path_and_faiss(ip):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((9000, 20)).astype(np.float32)
    c = rng.standard_normal((1100, 20)).astype(np.float32)  # > 1024: two faiss column blocks
    assert x.shape[0] * x.shape[1] >= assign.BLAS_THRESHOLD
    Dg, Ig = assign.nearest_centroids(x, c, ip)
    Dd, Id = assign._assign_direct(x, np.ascontiguousarray(c.T), ip)
    assert (Ig == Id).mean() >= 0.999
    np.testing.assert_allclose(Dg, Dd, rtol=1e-5, atol=1e-4)
    D_ref, I_ref = _flat(c, ip).search(x, 1)
    assert (Ig == I_ref[:, 0]).mean() >= 0.999
    np.testing.assert_allclose(Dg, D_ref[:, 0], rtol=1e-5, atol=1e-4)


def test_ties_go_to_the_smaller_centroid_index():
    c = np.float32([[1, 0], [0, 1], [1, 0]])  # centroids 0 and 2 coincide
    x = np.float32([[2, 0], [0, 3]])
    for ip in (False, True):
        _, I = assign.nearest_centroids(x, c, ip)
        assert I.tolist() == [0, 1]


def test_overflowing_distances_are_reported():
    x = np.float32([[3e38, 0], [-3e38, 0], [0, 1], [0, 2]])
    with pytest.raises(ValueError, match="overflow"):
        assign.nearest_centroids(x, np.float32([[-3e38, 0]]))
