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
"""
import numpy as np

from ._validate import as_float32_matrix, check_prefix_dim

_FLT_MIN = np.finfo(np.float32).tiny  # smallest normal float32, ~1.2e-38


def normalize_rows(x):
    """Row-wise L2 normalisation of x (n, d) float32; zero rows stay zero. Returns a new array.

    float32 (x / sqrt(sum x^2)) for rows whose squared norm is a normal float32, float64 for the
    rows whose squared norm over- or underflows in float32 (see the module docstring)."""
    with np.errstate(over="ignore", under="ignore"):
        sq = np.einsum("ij,ij->i", x, x, dtype=np.float32)
    norms = np.sqrt(sq)
    safe = np.where(norms > 0, norms, np.float32(1)).astype(np.float32)
    out = np.ascontiguousarray(x / safe[:, None], dtype=np.float32)
    out_of_range = ~((sq >= _FLT_MIN) & (sq < np.inf))
    if out_of_range.any():
        rows = np.flatnonzero(out_of_range & (x != 0).any(axis=1))  # zero rows stay zero
        x64 = x[rows].astype(np.float64)
        out[rows] = x64 / np.sqrt(np.einsum("ij,ij->i", x64, x64))[:, None]
    return out


def prefix(x, d, normalize=True):
    """The d-dim Matryoshka prefix of each row of `x` (n, D) float32 -> (n, d) float32.

    normalize=True (default): normalise at D, truncate, normalise again.
    normalize=False: plain truncation (a contiguous copy).
    """
    x = as_float32_matrix(x, "x")
    d = check_prefix_dim(d, x.shape[1], "d")
    if not normalize:
        return np.ascontiguousarray(x[:, :d])
    return normalize_rows(normalize_rows(x)[:, :d])
