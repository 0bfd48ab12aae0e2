import numpy as np
import pytest
import scipy.linalg

from adanns_ref.core.mt19937 import rand_perm
from adanns_ref.quantizers.opq import GESDD_MIN_DIM, OPQ, float_randn, random_rotation, svd_driver
from adanns_ref.testing import QR_ATOL_ACROSS_KERNELS, blas_kernels, blas_kernels_agree

faiss = pytest.importorskip("faiss")


def _clustered(n, d, seed, k=20):
    """Blobs: OPQ's inner k-means has no near-ties, so faiss and we follow the same path."""
    rng = np.random.default_rng(seed)
    centres = 4 * rng.standard_normal((k, d))
    return (centres[rng.integers(0, k, n)] + 0.5 * rng.standard_normal((n, d))).astype(np.float32)


def _faiss_opq(x, M, d_out=None, niter=5, niter_pq_0=10, init=None, max_train_points=None):
    d = x.shape[1]
    ref = faiss.OPQMatrix(d, M, d_out or d)
    ref.niter, ref.niter_pq_0, ref.niter_pq = niter, niter_pq_0, 4
    if max_train_points is not None:
        ref.max_train_points = max_train_points
    if init is not None:
        faiss.copy_array_to_vector(init.ravel(), ref.A)
    ref.train(x)
    return faiss.vector_to_array(ref.A).reshape(d_out or d, d)


def _pq_mse(A, x, M):
    """Reconstruction MSE of a faiss PQ trained on x rotated by A (same trainer for both A's)."""
    y = np.ascontiguousarray(x @ A.T)
    pq = faiss.ProductQuantizer(A.shape[0], M, 8)
    pq.cp.niter = 10
    pq.train(y)
    return float(((pq.decode(pq.compute_codes(y)) - y) ** 2).sum() / len(y))


def _assert_same_random_rotation(ours, ref):
    """float_randn is ours and bit-exact; the QR runs in SciPy's LAPACK and in faiss's: the same
    bits where both OpenBLAS builds run one kernel, else within the documented QR tolerance."""
    if blas_kernels_agree(("scipy", "faiss")):
        np.testing.assert_array_equal(ours, ref)
    else:
        np.testing.assert_allclose(ours, ref, rtol=0, atol=QR_ATOL_ACROSS_KERNELS,
                                   err_msg=f"BLAS kernels {blas_kernels()}")
    np.testing.assert_allclose(ours @ ours.T, np.eye(len(ours)), rtol=0, atol=1e-5)


@pytest.mark.blas_kernel
@pytest.mark.parametrize("d", [8, 16, 64])
def test_random_start_is_faiss_float_randn_plus_qr(d):
    ref = faiss.OPQMatrix(d, 4)
    ref.niter = 0  # faiss then stops right after drawing its random rotation
    ref.train(_clustered(300, d, 0))
    _assert_same_random_rotation(random_rotation(d, 1234), faiss.vector_to_array(ref.A).reshape(d, d))


@pytest.mark.blas_kernel
@pytest.mark.parametrize("d,seed", [(40, 5), (33, 1234)])
def test_float_randn_blocks_match_faiss_random_rotation(d, seed):
    # d * d > 1024 values: faiss draws 1024 separately seeded blocks. RandomRotationMatrix.init
    # is the same float_randn + QR with a chosen seed.
    rr = faiss.RandomRotationMatrix(d, d)
    rr.init(seed)
    _assert_same_random_rotation(random_rotation(d, seed), faiss.vector_to_array(rr.A).reshape(d, d))
    gaussians = np.empty(d * d, np.float32)  # the input of the QR: bit for bit on any machine
    faiss.float_randn(faiss.swig_ptr(gaussians), d * d, seed)
    np.testing.assert_array_equal(float_randn(d * d, seed), gaussians)
    values = float_randn(200000, 3)
    assert abs(values.mean()) < 0.01 and abs(values.std() - 1) < 0.01


def test_rotation_matches_faiss_from_its_random_start():
    x = _clustered(600, 16, 1)
    ours = OPQ(16, 4, niter=5, niter_pq_0=10, niter_pq=4, allow_small=True).train(x)
    np.testing.assert_allclose(ours.A, _faiss_opq(x, 4), atol=1e-3, rtol=0)
    assert len(ours.mse) == 5 and ours.mse[-1] <= ours.mse[0]


def test_rotation_matches_faiss_from_the_same_given_start():
    x = _clustered(600, 16, 2)
    init = np.linalg.qr(np.random.default_rng(3).standard_normal((16, 16)))[0].astype(np.float32)
    ours = OPQ(16, 4, niter=5, niter_pq_0=10, init=init, allow_small=True).train(x)
    A_ref = _faiss_opq(x, 4, init=init)
    np.testing.assert_allclose(ours.A, A_ref, atol=1e-3, rtol=0)
    assert abs(_pq_mse(ours.A, x, 4) - _pq_mse(A_ref, x, 4)) <= 0.01 * _pq_mse(A_ref, x, 4)


def test_reduced_output_dim_matches_faiss():
    x = _clustered(600, 16, 4)
    one = OPQ(16, 4, d_out=8, niter=1, niter_pq_0=10, allow_small=True).train(x)
    assert one.A.shape == (8, 16)
    np.testing.assert_allclose(one.A @ one.A.T, np.eye(8), atol=1e-5)
    # One iteration pins the d_out < d algebra (padding, Procrustes shapes) to rounding; later
    # iterations amplify BLAS rounding through k-means near-ties (2-3 points per centroid here),
    # so there we require the same PQ error rather than the same matrix.
    np.testing.assert_allclose(one.A, _faiss_opq(x, 4, d_out=8, niter=1), atol=1e-5, rtol=0)
    ours = OPQ(16, 4, d_out=8, niter=4, niter_pq_0=10, allow_small=True).train(x)
    mse_ref = _pq_mse(_faiss_opq(x, 4, d_out=8, niter=4), x, 4)
    assert abs(_pq_mse(ours.A, x, 4) - mse_ref) <= 0.01 * mse_ref


def test_large_procrustes_uses_gesdd_with_the_same_polar_factor():
    # faiss's gesvd takes ~55 s at d = 2048 in OpenBLAS; from GESDD_MIN_DIM up gesdd replaces it.
    assert (svd_driver((GESDD_MIN_DIM - 1,) * 2), svd_driver((8, GESDD_MIN_DIM))) == ("gesvd", "gesdd")
    m = np.random.default_rng(6).standard_normal((GESDD_MIN_DIM, GESDD_MIN_DIM)).astype(np.float32)
    polar = {}
    for driver in ("gesvd", "gesdd"):
        u, _, vt = scipy.linalg.svd(m, full_matrices=False, lapack_driver=driver)
        polar[driver] = u @ vt
    np.testing.assert_allclose(polar["gesdd"], polar["gesvd"], atol=1e-5, rtol=0)
    assert np.abs(polar["gesdd"] - polar["gesvd"]).max() > 0  # two real drivers, not one twice


def test_rotation_at_the_gesdd_size_matches_faiss():
    x = _clustered(1024, GESDD_MIN_DIM, 7)
    ours = OPQ(GESDD_MIN_DIM, 8, niter=1, niter_pq_0=4, allow_small=True).train(x)
    A_ref = _faiss_opq(x, 8, niter=1, niter_pq_0=4)
    # Measured here (NumPy and faiss on different OpenBLAS kernels, 4 points per centroid): the
    # gesvd route is 1.5e-3 max-abs from faiss, the gesdd route 3.6e-3; same PQ error to 0.01 %.
    np.testing.assert_allclose(ours.A, A_ref, atol=1e-2, rtol=0)
    np.testing.assert_allclose(ours.A @ ours.A.T, np.eye(GESDD_MIN_DIM), atol=1e-4)
    assert abs(_pq_mse(ours.A, x, 8) - _pq_mse(A_ref, x, 8)) <= 0.002 * _pq_mse(A_ref, x, 8)


def test_subsampling_uses_faiss_rand_perm():
    x = _clustered(1200, 8, 5)
    ours = OPQ(8, 2, niter=2, niter_pq_0=5, max_train_points=600, allow_small=True).train(x)
    subset = OPQ(8, 2, niter=2, niter_pq_0=5, allow_small=True).train(x[rand_perm(1200, 1234)[:600]])
    np.testing.assert_array_equal(ours.A, subset.A)
    ref = _faiss_opq(x, 2, niter=2, niter_pq_0=5, max_train_points=600)
    np.testing.assert_allclose(ours.A, ref, atol=1e-3, rtol=0)


def test_opq_lowers_pq_error_and_apply_reverse_are_inverse():
    rng = np.random.default_rng(6)
    # Correlated dims spread over the subspaces: a rotation helps PQ a lot.
    x = (rng.standard_normal((800, 3)) @ rng.standard_normal((3, 16))
         + 0.2 * rng.standard_normal((800, 16))).astype(np.float32)
    opq = OPQ(16, 4, niter=4, niter_pq_0=10, allow_small=True).train(x)
    assert _pq_mse(opq.A, x, 4) < 0.8 * _pq_mse(np.eye(16, dtype=np.float32), x, 4)
    np.testing.assert_allclose(opq.reverse(opq.apply(x)), x, atol=1e-4)
    ref = faiss.OPQMatrix(16, 4)
    faiss.copy_array_to_vector(opq.A.ravel(), ref.A)
    ref.is_trained = True
    np.testing.assert_allclose(opq.apply(x), ref.apply(x), rtol=1e-6, atol=1e-6)


def test_training_is_deterministic():
    x = _clustered(600, 8, 7)
    a = OPQ(8, 2, niter=2, niter_pq_0=5, allow_small=True).train(x).A
    b = OPQ(8, 2, niter=2, niter_pq_0=5, allow_small=True).train(x).A
    np.testing.assert_array_equal(a, b)


def test_bad_inputs():
    with pytest.raises(ValueError, match="d_out=10 is not divisible by M=4"):
        OPQ(16, 4, d_out=10)
    with pytest.raises(ValueError, match="init must be a rotation of shape"):
        OPQ(16, 4, init=np.eye(8, dtype=np.float32))
    with pytest.raises(ValueError, match="niter must be >= 1"):
        OPQ(16, 4, niter=0)
    opq = OPQ(8, 2, niter=1, niter_pq_0=2, allow_small=True)
    with pytest.raises(ValueError, match="before train"):
        opq.apply(np.zeros((2, 8), np.float32))
    with pytest.raises(ValueError, match="before train"):
        opq.reverse(np.zeros((2, 8), np.float32))
    with pytest.raises(ValueError, match="9 columns but 8 were expected"):
        opq.train(np.zeros((300, 9), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        opq.train(np.full((300, 8), np.nan, np.float32))
    with pytest.raises(ValueError, match="needs at least 256 points"):
        opq.train(_clustered(100, 8, 0))
    opq.train(_clustered(400, 8, 0))
    with pytest.raises(ValueError, match="7 columns but 8 were expected"):
        opq.apply(np.zeros((2, 7), np.float32))
