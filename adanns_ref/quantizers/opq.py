"""Optimized product quantization, non-parametric variant (Ge, He, Ke & Sun 2013; faiss ``OPQMatrix``).

OPQ learns a rotation A (d_out x d_in, orthonormal rows) such that PQ with M sub-quantizers of
the rotated vectors y = A x loses as little as possible:

    min_{A, codebooks}  sum_i || A x_i - x_hat_i ||^2,   x_hat_i = decode(encode(A x_i)),  A A^T = I

by alternating, niter times (X = training rows centred by their mean, n x d_in):

    1. Y = X A^T                                   (project)
    2. train a PQ on Y (niter_pq_0 k-means iterations the first time, niter_pq afterwards,
       warm-started from the previous codebooks; at most 1000 points per centroid; nbits = 8)
    3. Y_hat = decode(encode(Y))                    (reconstruct)
    4. A = U V^T with U S V^T = svd(Y_hat^T X)      (orthogonal Procrustes)

The mean is used for training only: ``apply(x) = x @ A.T`` has no bias, like faiss.

Shapes: x (n, d_in) float32; A (d_out, d_in) float32; apply -> (n, d_out); reverse -> (n, d_in).

faiss-identical (faiss 1.15 ``VectorTransform.cpp``): the subsample (rows perm[:max_train_points]
of rand_perm(n, seed)), the float32 column mean, the zero padding to max(d_in, d_out), the
random start (faiss's ``float_randn`` Marsaglia generator, bit for bit, and LAPACK QR: the same
bits where SciPy's and faiss's OpenBLAS run one kernel, ``testing.blas_kernels_agree``, within
2.7e-6 max-abs up to d = 128 on other kernels), the PQ steps (``ProductQuantizer`` reproduces
faiss's codebooks and codes) and the Procrustes SVD (LAPACK ``gesvd`` in float32, as faiss)
below GESDD_MIN_DIM.
Deviation: from a d_out x d_pad cross-product of GESDD_MIN_DIM up, the SVD runs LAPACK's
divide-and-conquer ``gesdd`` instead: OpenBLAS's ``sgesvd`` falls off a cliff there (measured
single-threaded: 0.6 s at 512, 6 s at 1024, 55 s at 2048, against 0.08 / 0.34 / 2.8 s). The
Procrustes factor U V^T is the same matrix whichever driver finds it (it is unique when Y_hat^T X
has full rank); the two drivers' U V^T agree within ~1e-6 max-abs (tested), the size of the
BLAS differences below, and faiss-identity is not claimed at these sizes anyway.
Not identical: the GEMMs and the SVD run in another
OpenBLAS build, so one iteration leaves A within ~1e-6 of faiss's, but the next k-means can
resolve a near-tie differently and the two trajectories then drift apart (measured on blob data
with 2-10 points per centroid: 1e-6..3e-6 max-abs after 5-10 iterations at d = 16, up to ~1e-3
at d = 32 or d_out < d_in, ~0.1 after 30 iterations on low-rank data whose rotation is barely
determined; the PQ reconstruction error stayed within 0.5 % of faiss's in all these cases).
"""
import numba
import numpy as np
import scipy.linalg

from ..core.mt19937 import MTState, mt_next, rand_perm
from ..core.threads import blas_single_thread
from ..core.validate import as_bool, as_float32_matrix, as_int
from .pq import ProductQuantizer

OPQ_MAX_POINTS_PER_CENTROID = 1000  # faiss OPQMatrix::train sets pq.cp.max_points_per_centroid
OPQ_NBITS = 8  # faiss OPQMatrix trains an 8-bit PQ unless given another one
GESDD_MIN_DIM = 512  # from this size of the Procrustes SVD up, gesdd replaces faiss's gesvd


def svd_driver(shape):
    """The LAPACK driver of the Procrustes SVD of a (d_out, d_pad) matrix: faiss's "gesvd",
    or "gesdd" from GESDD_MIN_DIM up (module docstring)."""
    return "gesdd" if max(shape) >= GESDD_MIN_DIM else "gesvd"


@numba.njit(cache=True)
def _randn_block(key, pos, out):
    """Gaussian float32 values by Marsaglia's polar method, two per accepted pair (faiss float_randn)."""
    a = b = s = 0.0
    second = False
    for i in range(out.shape[0]):
        if not second:
            while True:
                a = 2.0 * (np.float64(mt_next(key, pos)) / 4294967295.0) - 1.0
                b = 2.0 * (np.float64(mt_next(key, pos)) / 4294967295.0) - 1.0
                s = a * a + b * b
                if s < 1.0:
                    break
            out[i] = np.float32(a * np.sqrt(-2.0 * np.log(s) / s))
        else:
            out[i] = np.float32(b * np.sqrt(-2.0 * np.log(s) / s))
        second = not second


def float_randn(n, seed):
    """faiss ``float_randn(x, n, seed)``: n Gaussian float32 values, generated in 1024 blocks (one
    block below 1024 values), block j from mt19937(a0 + j * b0) with a0, b0 the first two
    31-bit draws of mt19937(seed)."""
    nblock = 1 if n < 1024 else 1024
    root = MTState(seed)
    a0 = int(mt_next(root.key, root.pos)) & 0x7FFFFFFF
    b0 = int(mt_next(root.key, root.pos)) & 0x7FFFFFFF
    out = np.empty(n, dtype=np.float32)
    for j in range(nblock):
        block = MTState((a0 + j * b0) & 0xFFFFFFFF)
        _randn_block(block.key, block.pos, out[j * n // nblock:(j + 1) * n // nblock])
    return out


def random_rotation(d, seed):
    """faiss's random orthogonal d x d matrix: Q^T of the QR of G^T, G = float_randn(d*d) rows.

    (faiss runs LAPACK QR on the row-major buffer, which LAPACK reads as G^T, column-major.)
    """
    g = float_randn(d * d, seed).reshape(d, d)
    q, _ = scipy.linalg.qr(g.T)
    return np.ascontiguousarray(q.T, dtype=np.float32)


class OPQ:
    """faiss ``OPQMatrix(d, M, d_out)``: learn a rotation for PQ with M sub-quantizers.

    Parameters
        d                 int, = d_in: input width
        M                 int: sub-quantizers of the rotated space, d_out % M == 0
        d_out             int: output width (default d)
        niter             int: outer iterations
        niter_pq          int: k-means iterations of the inner PQ
        niter_pq_0        int: the same in the first iteration
        max_train_points  int: subsample size
        seed              int: subsample, inner PQ and random start (faiss uses 1234 for all three)
        init              (d_out, max(d, d_out)) float32 or None: start rotation instead of the
                          random one (faiss: fill ``opq.A`` before ``train``)
        allow_small       bool: passed to the inner ``ProductQuantizer`` (True: no
                          `SmallTrainingSetWarning` below 39 * 256 training points; OPQ trains
                          either way, faiss warns)

    Attributes (after ``train``)
        A      (d_out, d) float32: the rotation, y = x A^T
        mse    list of float: per-iteration PQ reconstruction error sum_i ||y_i - y_hat_i||^2 / n
               (faiss's verbose "obj")
        pq     ProductQuantizer: the inner PQ of the last iteration, trained on the data rotated
               by the previous A
    """

    def __init__(self, d, M, d_out=None, niter=50, niter_pq=4, niter_pq_0=40,
                 max_train_points=65536, seed=1234, init=None, allow_small=False):
        self.d_in = as_int(d, "d", low=1)
        self.M = as_int(M, "M", low=1)
        self.d_out = self.d_in if d_out is None else as_int(d_out, "d_out", low=1)
        if self.d_out % self.M:
            raise ValueError(f"d_out={self.d_out} is not divisible by M={self.M}; the PQ after OPQ "
                             f"cuts the rotated vector into M equal parts")
        self.niter = as_int(niter, "niter", low=1)
        self.niter_pq = as_int(niter_pq, "niter_pq", low=1)
        self.niter_pq_0 = as_int(niter_pq_0, "niter_pq_0", low=1)
        self.max_train_points = as_int(max_train_points, "max_train_points", low=1)
        self.seed = as_int(seed, "seed", low=0, high=2**31 - 1)
        self.allow_small = as_bool(allow_small, "allow_small")
        self._d_pad = max(self.d_in, self.d_out)  # faiss pads inputs with zeros when d_out > d_in
        self.init = None
        if init is not None:
            shape = (self.d_out, self._d_pad)
            if np.shape(init) != shape:
                raise ValueError(f"init must be a rotation of shape (d_out, max(d, d_out)) = {shape}, "
                                 f"got {np.shape(init)}")
            self.init = as_float32_matrix(init, "init").copy()
        self.A = None
        self.mse = None
        self.pq = None

    def train(self, x):
        """Learn A from x (n, d). Returns self."""
        x = as_float32_matrix(x, "x", d=self.d_in)
        n = x.shape[0]
        if n < 1 << OPQ_NBITS:
            raise ValueError(f"OPQ training needs at least {1 << OPQ_NBITS} points (its inner PQ has "
                             f"{1 << OPQ_NBITS} centroids per subspace), got n={n}")
        if n > self.max_train_points:
            x = x[rand_perm(n, self.seed)[:self.max_train_points]]
            n = self.max_train_points
        # Training only: centre. numpy's axis-0 sum adds rows in order, as faiss's loop.
        mean = x.sum(axis=0, dtype=np.float32) / np.float32(n)
        xtrain = np.zeros((n, self._d_pad), dtype=np.float32)
        xtrain[:, :self.d_in] = x - mean
        if self.init is None:
            A = random_rotation(self._d_pad, self.seed)[:self.d_out]
        else:
            A = self.init.copy()
        mse, pq = [], None  # pq.codebooks warm-start the next iteration's PQ
        for it in range(self.niter):
            y = xtrain @ A.T
            previous = None if pq is None else pq.codebooks
            pq = ProductQuantizer(self.d_out, self.M, OPQ_NBITS, seed=self.seed,
                                  niter=self.niter_pq_0 if it == 0 else self.niter_pq,
                                  max_points_per_centroid=OPQ_MAX_POINTS_PER_CENTROID,
                                  allow_small=self.allow_small)
            pq.train(y, init_codebooks=previous)
            y_hat = pq.decode(pq.encode(y))
            mse.append(float(np.sum((y_hat - y) ** 2, dtype=np.float32)) / n)
            # Procrustes: min ||X A^T - Y_hat|| over orthonormal A is A = U V^T, U S V^T = Y_hat^T X.
            yx = y_hat.T @ xtrain
            with blas_single_thread():  # a d x d SVD gains nothing from threads, and OpenBLAS
                # threads competing with numba's spinning workers made it 10x slower
                u, _, vt = scipy.linalg.svd(yx, full_matrices=False, lapack_driver=svd_driver(yx.shape))
            A = np.ascontiguousarray(u @ vt, dtype=np.float32)
        self.A = np.ascontiguousarray(A[:, :self.d_in])
        self.mse = mse
        self.pq = pq
        return self

    def _require_trained(self, what):
        if self.A is None:
            raise ValueError(f"OPQ.{what} called before train(); train it first")

    def apply(self, x):
        """y = x @ A.T: (n, d) -> (n, d_out) float32."""
        self._require_trained("apply")
        x = as_float32_matrix(x, "x", d=self.d_in)
        return x @ self.A.T

    def reverse(self, y):
        """x = y @ A: (n, d_out) -> (n, d); the inverse of apply when d_out == d (A orthonormal)."""
        self._require_trained("reverse")
        y = as_float32_matrix(y, "y", d=self.d_out)
        return y @ self.A
