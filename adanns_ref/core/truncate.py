"""Matryoshka prefixes: truncate to the first d dims and re-normalise.

For an embedding z in R^D, the d-prefix used by every retrieval path is

    z_d = t_d(z / ||z||) / ||t_d(z / ||z||)||,   t_d(z) = (z_1, ..., z_d)

i.e. L2-normalise at full D, truncate, L2-normalise again (SPEC §2). Forgetting the second
normalisation is the most common bug in Matryoshka tooling. A zero vector stays zero (no NaN).
Squared L2 between unit vectors is 2 - 2 cos, so L2 search on prefixes ranks like cosine.

Range. ||z|| is computed as sqrt of the float32 sum of squares, so ||z||^2 overflows to inf for
norms above ~1.8e19 and loses its bits (subnormal or 0) below ~1.1e-19; faiss's
``fvec_renorm_L2`` has the same limits (it would return a zero or an unscaled vector). Rows
whose float32 ||z||^2 falls outside [FLT_MIN, inf) are normalised in float64 instead, where
the squares of float32 values neither overflow nor underflow; every other row takes the
float32 route, bit for bit what it always was (golden files and faiss comparisons rely on it).

Scales. Each normalisation divides row i by one scale n_i (`row_scales`: the float32 norm, or
the float64 one for out-of-range rows), each quotient rounded once (`divide_rows`), so
z_d = (t_d(z) / n_1) / n_2 with n_1, n_2 from `prefix_scales`: a funnel re-rank rebuilds a
candidate's prefix bit for bit from its raw row (`funnel.rerank_kernels.rerank_rows`).
"""
import numpy as np

from .validate import as_bool, as_float32_matrix, check_prefix_dim

_FLT_MIN = np.finfo(np.float32).tiny  # smallest normal float32, ~1.2e-38
PREFIX_BLOCK = 1 << 22  # float32 values of one row block in prefix_scales (16 MiB)


def row_scales(x):
    """The scale n_i (float64, (n,)) by which `normalize_rows` divides row i of x (n, d) float32:
    its float32 norm (exactly representable), its float64 norm where the float32 squared norm
    over- or underflows, 1 for a zero row."""
    with np.errstate(over="ignore", under="ignore"):
        sq = np.einsum("ij,ij->i", x, x, dtype=np.float32)
    norms = np.sqrt(sq)
    scales = np.where(norms > 0, norms, np.float32(1)).astype(np.float64)
    out_of_range = ~((sq >= _FLT_MIN) & (sq < np.inf))
    if out_of_range.any():
        rows = np.flatnonzero(out_of_range & (x != 0).any(axis=1))  # zero rows stay zero
        x64 = x[rows].astype(np.float64)
        scales[rows] = np.sqrt(np.einsum("ij,ij->i", x64, x64))
    return scales


def divide_rows(x, scales):
    """float32 x[i] / scales[i], each quotient rounded once to float32: a float32 division where
    the scale is a float32 value, a float64 one (then rounded) elsewhere; both give the correctly
    rounded quotient, so the bits do not depend on the route."""
    s32 = scales.astype(np.float32)
    out = np.ascontiguousarray(x / s32[:, None], dtype=np.float32)
    wide = np.flatnonzero(s32.astype(np.float64) != scales)
    if wide.size:
        out[wide] = x[wide].astype(np.float64) / scales[wide, None]
    return out


def normalize_rows(x):
    """Row-wise L2 normalisation of x (n, d) float32; zero rows stay zero. Returns a new array.

    float32 (x / sqrt(sum x^2)) for rows whose squared norm is a normal float32, float64 for the
    rows whose squared norm over- or underflows in float32 (see the module docstring)."""
    return divide_rows(x, row_scales(x))


def prefix_scales(x, d):
    """(n_1, n_2) float64 (n,) each: the two scales of the d-prefix of every row of x (n, D)
    float32 (validated): prefix(x, d)[i] == divide_rows(divide_rows(x[:, :d], n_1), n_2)[i],
    so a kernel can rebuild any row's prefix bit for bit from the raw row. Row blocks of
    PREFIX_BLOCK floats keep the temporaries small."""
    n1 = np.empty(x.shape[0], dtype=np.float64)
    n2 = np.empty(x.shape[0], dtype=np.float64)
    rows = max(1, PREFIX_BLOCK // x.shape[1])
    for i0 in range(0, x.shape[0], rows):
        n1[i0:i0 + rows] = row_scales(x[i0:i0 + rows])
        n2[i0:i0 + rows] = row_scales(divide_rows(x[i0:i0 + rows, :d], n1[i0:i0 + rows]))
    return n1, n2


def prefix(x, d, normalize=True):
    """The d-dim Matryoshka prefix of each row of `x` (n, D) float32 -> (n, d) float32.

    normalize=True (default): normalise at D, truncate, normalise again.
    normalize=False: plain truncation (a contiguous copy).
    """
    x = as_float32_matrix(x, "x")
    d = check_prefix_dim(d, x.shape[1], "d")
    if not as_bool(normalize, "normalize"):
        return np.ascontiguousarray(x[:, :d])
    # normalize_rows(normalize_rows(x)[:, :d]), dividing only the d columns that are kept: the
    # same quotients, bit for bit, without an (n, D) temporary (d = 8 of D = 2048: 256x fewer)
    return normalize_rows(divide_rows(x[:, :d], row_scales(x)))
