"""Re-ranking a base index's shortlist with Panorama pruning: faiss 1.15.1's
`IndexRefinePanorama` over an `IndexFlatL2Panorama` / `IndexFlatIPPanorama` with batch size 1.

The maths: the base index proposes k' = floor(k * k_factor) candidates per query; each is
re-scored exactly, level by level (e_{l+1} = e_l - 2 <x, y>_l from e_0 = rho_0(y)^2 + rho_0(x)^2),
and abandoned as soon as its Cauchy-Schwarz bound e_{l+1} - 2 rho_{l+1}(y) rho_{l+1}(x) exceeds
the current k-th distance tau ("ip": e_{l+1} + rho rho < tau). Unlike the batch forms, tau is
the live heap root, updated after every candidate (faiss's "point-wise" Algorithm 2).

faiss's recipe (`IndexRefine.cpp` `IndexRefinePanorama::search`, `IndexFlat.cpp`
`IndexFlatPanorama::search_subset`): base search with k' (faiss refuses k' < k and labels
outside [-1, ntotal)); per query, candidates in the base's result order, -1 skipped; the level
dot product is `fvec_inner_product` over the level's dims (`_simd` order 1, AVX-512 machines);
a candidate that survives every level is offered to the heap (enters iff strictly below the
root); the heap is sorted at the end (ascending (distance, id); missing: (FLT_MAX, -1)).
A candidate proposed twice is scored twice, as in faiss.

faiss-identical: ids, distances (bit for bit where `_simd` order 1 is faiss's, i.e. when faiss
dispatches to AVX-512), ties, statistics (dims, not levels: d per candidate, the block width
per level entered). Deviations: none; extension: ``nesting=`` levels (statistics then count the
true level widths).

Shapes: add x (n, d) float32; search q (nq, d) -> D (nq, k) float32, I (nq, k) int64.
"""
import numpy as np

from ..core.validate import as_float32_matrix, as_int, as_k, check_metric
from . import kernels as K
from .flat import finish
from .levels import level_bounds, make_stats, stat_widths


def as_k_factor(k_factor):
    try:
        value = float(k_factor)
    except (TypeError, ValueError):
        raise TypeError(f"k_factor must be a number >= 1, got {k_factor!r}") from None
    if not np.isfinite(value) or value < 1:
        raise ValueError(f"k_factor must be a finite number >= 1 (the shortlist is k * k_factor "
                         f"candidates), got {k_factor!r}")
    return value


class _Empty:
    """A stand-in with the base's interface and no rows (used while building over a full base)."""

    def __init__(self, base):
        self.d, self.ntotal, self.add, self.search = base.d, 0, base.add, base.search


class PanoramaRefineIndex:
    """A base index's candidates re-ranked exactly with Panorama pruning (module docstring).

    base: an index with `d`, `ntotal`, `add(x)` and `search(q, k, **kw) -> (D, I)` (e.g.
        `FlatIndex`, `IVFIndex(normalize=False)`, `PQIndex`); it must not be shared: `add`
        adds to both
    n_levels: int, equal levels, faiss's layout (or None with nesting)
    metric: "l2" or "ip", the refine metric
    k_factor: float >= 1, the shortlist size k' = floor(k * k_factor) (faiss default 1)
    nesting: sequence of int or None, levels ending at these prefix sizes (extension)
    bounds: (L + 1,) int64; ntotal: int; last_search_stats: `levels.PanoramaStats`
    """

    def __init__(self, base, n_levels=None, metric="l2", k_factor=1.0, nesting=None):
        for attr in ("d", "ntotal", "add", "search"):
            if not hasattr(base, attr):
                raise TypeError(f"base must be an index with d, ntotal, add and search; "
                                f"{type(base).__name__} has no {attr!r}")
        self.base = base
        self.d = as_int(base.d, "base.d", 1)
        self.metric = check_metric(metric)
        self.k_factor = as_k_factor(k_factor)
        self.bounds = level_bounds(self.d, n_levels, nesting)
        self.n_levels = self.bounds.shape[0] - 1
        self.faiss_layout = nesting is None
        self.last_search_stats = None
        if base.ntotal:
            raise ValueError(f"base already holds {base.ntotal} rows; give an empty base: "
                             f"PanoramaRefineIndex.add adds to both so their ids agree")
        self.reset()

    @property
    def ntotal(self):
        return self._xb.shape[0]

    def reset(self):
        self._xb = np.zeros((0, self.d), dtype=np.float32)
        self._cums = np.zeros((0, self.n_levels + 1), dtype=np.float32)

    def add(self, x):
        """Append x (n, d) to the base and to the refine store."""
        x = as_float32_matrix(x, "x", d=self.d)
        self.base.add(x)
        self._store(x)

    def _store(self, x):
        cums = np.zeros(x.shape[0] * (self.n_levels + 1), dtype=np.float32)
        K.write_level_layout(x, self.bounds, 1, np.zeros(x.size, np.float32), cums, 0)
        self._xb = np.concatenate([self._xb, x])
        self._cums = np.concatenate([self._cums, cums.reshape(-1, self.n_levels + 1)])

    @classmethod
    def over_filled_base(cls, base, n_levels=None, metric="l2", k_factor=1.0, nesting=None):
        """An index over a base that already holds rows; fill the refine store with
        `add_rows_only` (the faiss bridge rebuilds faiss's refine index this way)."""
        out = cls(_Empty(base), n_levels, metric, k_factor, nesting)
        out.base = base
        return out

    def add_rows_only(self, x):
        """Store x (n, d) in the refine store only, for a base that already holds these rows
        with the same ids; raises ValueError if the counts then disagree."""
        x = as_float32_matrix(x, "x", d=self.d)
        if self.ntotal + x.shape[0] != self.base.ntotal:
            raise ValueError(f"the base holds {self.base.ntotal} rows; the refine store would "
                             f"hold {self.ntotal + x.shape[0]}: they must hold the same rows")
        self._store(x)

    def rows(self):
        """The stored rows (ntotal, d) float32, a copy."""
        return self._xb.copy()

    def tail_norms(self):
        """(ntotal, L + 1) float32 rho_l of each row (faiss's refine index `cum_sums`)."""
        return self._cums.copy()

    def search(self, q, k, k_factor=None, **base_params):
        """Base search for floor(k * k_factor) candidates, then the pruned exact re-rank ->
        (D (nq, k) float32, I (nq, k) int64). base_params go to base.search (e.g. nprobe)."""
        q = as_float32_matrix(q, "q", d=self.d)
        k = as_k(k, q.shape[0])
        kf = self.k_factor if k_factor is None else as_k_factor(k_factor)
        k_base = int(k * kf)
        as_k(k_base, q.shape[0], "k * k_factor")
        _, labels = self.base.search(q, k_base, **base_params)
        return self.search_subset(q, k, labels)

    def search_subset(self, q, k, labels):
        """The re-rank alone: the rows labels (nq, k') int64 (-1 = none) of each query ->
        (D, I) (faiss `IndexFlatPanorama.search_subset`)."""
        q = as_float32_matrix(q, "q", d=self.d)
        k = as_k(k, q.shape[0])
        labels = np.asarray(labels)
        if labels.dtype.kind not in "iu" or labels.ndim != 2 or labels.shape[0] != q.shape[0]:
            raise ValueError(f"labels must be an integer array (nq={q.shape[0]}, k'), got "
                             f"{labels.dtype} {labels.shape}")
        if labels.shape[1] < k:
            raise ValueError(f"the shortlist has {labels.shape[1]} candidates per query, fewer "
                             f"than k={k} (faiss: k_base >= k); raise k_factor")
        labels = np.ascontiguousarray(labels, dtype=np.int64)
        if labels.size and (labels.min() < -1 or labels.max() >= self.ntotal):
            raise ValueError(f"labels hold ids in [{labels.min()}, {labels.max()}]; they must "
                             f"lie in [-1, ntotal={self.ntotal})")
        nq, ip = q.shape[0], self.metric == "ip"
        hd = np.full((nq, k), K.FLT_MAX, dtype=np.float32)
        hi = np.full((nq, k), -1, dtype=np.int64)
        stats = np.zeros((nq, 2), dtype=np.int64)
        widths = stat_widths(self.bounds, self.faiss_layout)
        K.refine_subset(self._xb, self._cums, self.bounds, widths, q, labels, ip, hd, hi, stats)
        total, scanned = stats.sum(0)
        self.last_search_stats = make_stats(int(total), int(scanned), np.zeros(0, np.int64))
        return finish(hd, hi, ip)

    def __repr__(self):
        return (f"PanoramaRefineIndex(base={type(self.base).__name__}, d={self.d}, "
                f"n_levels={self.n_levels}, k_factor={self.k_factor}, ntotal={self.ntotal})")
