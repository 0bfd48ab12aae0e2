"""Matryoshka prefixes: truncate to the first d dims and re-normalise.

For an embedding z in R^D, the d-prefix used by every retrieval path is

    z_d = t_d(z / ||z||) / ||t_d(z / ||z||)||,   t_d(z) = (z_1, ..., z_d)

i.e. L2-normalise at full D, truncate, L2-normalise again (SPEC §2). Forgetting the second
normalisation is the most common bug in Matryoshka tooling. A zero vector stays zero (no NaN).
Squared L2 between unit vectors is 2 - 2 cos, so L2 search on prefixes ranks like cosine.

In float32 the two scales s_1 = ||z|| and s_2 = ||t_d(z / s_1)|| are the NumPy `einsum` norms
of `row_norms`, and each entry is divided twice, (z_t / s_1) / s_2 (two roundings, never one
multiplication by 1 / (s_1 s_2)). Only the first d entries of z / s_1 are ever formed, block by
block: the same bits as normalising the whole row first (tested), for a read of the input and a
write of the (n, d) output. `prefix_scales` returns s_1 and s_2 so that a kernel can rebuild any
row's prefix bit for bit from the raw row (funnel re-ranking reads rows in place).
"""
import numpy as np

from ._validate import as_float32_matrix, check_prefix_dim

PREFIX_BLOCK = 1 << 22  # float32 values of one row block of the input (16 MiB of temporaries)


def row_norms(x):
    """||x_i|| per row of x (n, d) float32 (NumPy einsum order), zero norms replaced by 1."""
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float32))
    return np.where(norms > 0, norms, np.float32(1)).astype(np.float32)


def normalize_rows(x):
    """Row-wise L2 normalisation in float32; zero rows stay zero. Returns a new array."""
    return np.ascontiguousarray(x / row_norms(x)[:, None], dtype=np.float32)


def _row_blocks(n, width):
    rows = max(1, PREFIX_BLOCK // max(1, width))
    return ((i0, min(i0 + rows, n)) for i0 in range(0, n, rows))


def prefix_scales(x, d):
    """(s_1, s_2) float32 (n,) each: the two normalisation scales of the d-prefix of every row of
    x (n, D) float32 (validated), so that prefix(x, d)[i, t] == (x[i, t] / s_1[i]) / s_2[i]."""
    s1 = np.empty(x.shape[0], dtype=np.float32)
    s2 = np.empty(x.shape[0], dtype=np.float32)
    for i0, i1 in _row_blocks(x.shape[0], x.shape[1]):
        s1[i0:i1] = row_norms(x[i0:i1])
        s2[i0:i1] = row_norms(x[i0:i1, :d] / s1[i0:i1, None])
    return s1, s2


def prefix(x, d, normalize=True):
    """The d-dim Matryoshka prefix of each row of `x` (n, D) float32 -> (n, d) float32.

    normalize=True (default): normalise at D, truncate, normalise again.
    normalize=False: plain truncation (a contiguous copy).
    """
    x = as_float32_matrix(x, "x")
    d = check_prefix_dim(d, x.shape[1], "d")
    if not normalize:
        return np.ascontiguousarray(x[:, :d])
    out = np.empty((x.shape[0], d), dtype=np.float32)
    for i0, i1 in _row_blocks(x.shape[0], x.shape[1]):
        head = x[i0:i1, :d] / row_norms(x[i0:i1])[:, None]
        out[i0:i1] = head / row_norms(head)[:, None]
    return out
