"""Level layouts of Panorama, pruning statistics, and the energy share of Matryoshka prefixes.

A layout is the vector of level bounds b (L + 1,) int64, 0 = b_0 < b_1 < ... < b_L = d; level l
holds dims [b_l, b_{l+1}).

faiss's layout (`Panorama::set_derived_values`): equal blocks of w = ceil(d / n_levels) dims,
b_l = min(l w, d); when fewer than n_levels blocks are needed (ceil(d / w) < n_levels, e.g.
d = 10, n_levels = 6 gives w = 2 and 5 levels) faiss prints "WARNING truncating nlevels" and
uses ceil(d / w) levels: we warn with the same numbers and do the same.

Matryoshka layout (our extension, not in faiss): the levels end at the nesting sizes m_1 < m_2
< ... (e.g. 8, 16, 32, ..., D), so level l is the slice a Matryoshka model adds to prefix m_l.
With energy concentrated in the first dims, the tail norms rho_l shrink fast and the bound
prunes after the first short levels. Any layout gives the same exact top-k; only the work
differs.

Statistics (faiss `PanoramaStats`, global `faiss.cvar.indexPanorama_stats`): for the batch forms
(flat, IVF), total_dims += (rows scanned) * L and total_dims_scanned += (rows entering level l)
for every level, so both count *levels*, not dims, despite their names; for the refine form
they count dims (d per candidate, and the full-block width w per level entered, even for a
shorter last level). ratio_dims_scanned = total_dims_scanned / total_dims as float32 (1 when
nothing was scanned).
"""
import warnings
from typing import NamedTuple

import numpy as np

from ..core.validate import as_float32_matrix, as_int


class PanoramaStats(NamedTuple):
    """Counters of one search (faiss `PanoramaStats`, plus the per-level breakdown).

    total_dims: int, faiss's total_dims
    total_dims_scanned: int, faiss's total_dims_scanned
    ratio_dims_scanned: float, total_dims_scanned / total_dims in float32, as faiss
    rows_per_level: (L,) int64, candidates entering each level, summed over the queries
        (batch forms; empty for the refine form)
    per_query: (nq, L) int64, the same per query (batch forms; None for the refine form)
    """
    total_dims: int
    total_dims_scanned: int
    ratio_dims_scanned: float
    rows_per_level: np.ndarray
    per_query: np.ndarray = None

    def pruning_rate_per_level(self):
        """(L,) float64: the fraction of the candidates entering level l that level l prunes
        (the last entry: pruned by the final bound, which is the exact distance)."""
        rows = self.rows_per_level.astype(np.float64)
        nxt = np.append(rows[1:], np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(rows > 0, 1.0 - nxt / rows, np.nan)
        return out


def make_stats(total, scanned, rows_per_level, per_query=None):
    ratio = float(np.float32(scanned) / np.float32(total)) if total > 0 else 1.0
    return PanoramaStats(int(total), int(scanned), ratio, np.asarray(rows_per_level, np.int64),
                         per_query)


def faiss_bounds(d, n_levels):
    """faiss's equal-block layout -> bounds (L + 1,) int64 (see the module docstring)."""
    d = as_int(d, "d", 1)
    n_levels = as_int(n_levels, "n_levels", 1)
    if n_levels > d:
        raise ValueError(f"n_levels={n_levels} exceeds d={d}: a level needs at least one dim "
                         f"(faiss: 'Panorama: n_levels must be <= d'); use n_levels <= {d}")
    w = -(-d // n_levels)
    real = -(-d // w)
    if real != n_levels:
        warnings.warn(f"truncating nlevels from {n_levels} to {real} (d={d} in blocks of {w} "
                      f"dims, as faiss does)", stacklevel=3)
    return np.minimum(np.arange(real + 1, dtype=np.int64) * w, d)


def nesting_bounds(d, nesting):
    """Matryoshka layout: levels ending at the nesting sizes (increasing, each in [1, d]); d is
    appended when the last size is below d -> bounds (L + 1,) int64."""
    d = as_int(d, "d", 1)
    sizes = [as_int(m, "nesting size", 1, d) for m in np.asarray(nesting).ravel().tolist()]
    if not sizes:
        raise ValueError("nesting must list at least one prefix size, e.g. (8, 16, 32, ..., d)")
    if any(b <= a for a, b in zip(sizes, sizes[1:])):
        raise ValueError(f"nesting sizes must increase strictly, got {sizes}")
    if sizes[-1] != d:
        sizes.append(d)
    return np.array([0] + sizes, dtype=np.int64)


def level_bounds(d, n_levels=None, nesting=None):
    """bounds from exactly one of n_levels (faiss) or nesting (Matryoshka extension)."""
    if (n_levels is None) == (nesting is None):
        raise ValueError("give exactly one of n_levels (faiss's equal blocks) or nesting "
                         "(levels ending at the Matryoshka sizes)")
    return faiss_bounds(d, n_levels) if nesting is None else nesting_bounds(d, nesting)


def stat_widths(bounds, faiss_layout):
    """Per-level dims the refine form counts: faiss's block width w for every level of its own
    layout (also the last, shorter one), the true width for a nesting layout."""
    widths = np.diff(bounds)
    return np.full_like(widths, widths[0]) if faiss_layout else widths


def energy_share(x, sizes):
    """Mean over the rows of x (n, d) of ||x_{:m}||^2 / ||x||^2 for each prefix size m in sizes
    -> (len(sizes),) float64 (zero rows skipped). How much of a row a prefix holds: the tail
    norm rho at m is sqrt(1 - share) ||x||."""
    x = as_float32_matrix(x, "x", min_rows=1).astype(np.float64)
    sizes = [as_int(m, "prefix size", 1, x.shape[1]) for m in sizes]
    total = (x * x).sum(1)
    keep = total > 0
    cum = np.cumsum(x[keep] ** 2, axis=1)
    return np.array([float(np.mean(cum[:, m - 1] / total[keep])) if keep.any() else np.nan
                     for m in sizes])
