"""Matryoshka prefixes: truncate to the first d dims and re-normalise.

For an embedding z in R^D, the d-prefix used by every retrieval path is

    z_d = t_d(z / ||z||) / ||t_d(z / ||z||)||,   t_d(z) = (z_1, ..., z_d)

i.e. L2-normalise at full D, truncate, L2-normalise again (SPEC §2). Forgetting the second
normalisation is the most common bug in Matryoshka tooling. A zero vector stays zero (no NaN).
Squared L2 between unit vectors is 2 - 2 cos, so L2 search on prefixes ranks like cosine.
"""
import numpy as np

from ._validate import as_float32_matrix, check_prefix_dim


def normalize_rows(x):
    """Row-wise L2 normalisation in float32; zero rows stay zero. Returns a new array."""
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float32))
    safe = np.where(norms > 0, norms, np.float32(1)).astype(np.float32)
    return np.ascontiguousarray(x / safe[:, None], dtype=np.float32)


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
