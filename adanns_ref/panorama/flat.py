"""Exact k-NN search with level-by-level pruning: faiss 1.15.1's `IndexFlatL2Panorama` /
`IndexFlatIPPanorama` (Panorama, arXiv 2510.00566).

The maths (notation in `kernels`): the d dims are split into levels [b_l, b_{l+1}); a row's
distance is accumulated level by level, e_{l+1} = e_l - 2 <x, y>_l from e_0 = ||y||^2 + ||x||^2,
and after each level the Cauchy-Schwarz lower bound LB = e_{l+1} - 2 rho_{l+1}(y) rho_{l+1}(x)
(rho: the norm of the remaining dims) is compared with the current k-th distance tau: the row
is dropped iff LB >= tau. The result is the exact top-k; the pruning only saves work, and it
saves most when the energy sits in the first dims, as in Matryoshka embeddings.

faiss's recipe, step by step (`IndexFlat.cpp` `flat_pano_search_core`, `impl/Panorama.h`):
1. add: rows are stored in batches of `batch_size` (default 1024) rows, level-major inside a
   batch; the tail norms rho_0..rho_L of each row likewise (`levels`, `kernels`).
2. search, per query: rho_l(x); the heap holds (FLT_MAX, -1) k times.
3. per batch, in order: tau = the heap root at the start of the batch (fixed for the batch);
   every row of the batch enters level 0; at each level, for the active rows in position order,
   e += level term, LB computed, kept iff tau > LB ("ip": tau < LB), active list compacted
   keeping order; after the last level the survivors (exact distances) are offered to the heap
   in position order: a survivor enters iff its distance < the root (strict, so a tie with the
   k-th result never displaces it); the heap ranks equal distances by id: for "l2" the smaller
   id ranks first (`CMax`), for "ip" the larger id does (`CMin`), unlike the rest of this
   package, which ranks the smaller id first for both metrics.
4. the heap is sorted, best first (ties as in 3); missing results are (FLT_MAX, -1) ("ip":
   descending similarity, (-FLT_MAX, -1)).
faiss requires 1 <= k <= batch_size; so do we (ValueError naming both).

faiss-identical: the layout (the bridge copies faiss's `codes` / `cum_sums` arrays as they
are), ids and their order, ties, the statistics (`last_search_stats`, faiss's global
`indexPanorama_stats` of the same search), and the distances bit for bit, except at level
widths 8, 16, ..., 64 where faiss's compiler unrolls the dot product in an association we do
not reproduce (last-bit differences; `kernels` documents the orders). Deviations: none
otherwise; range_search, remove_ids and IDSelectors are not implemented.

Extension (not in faiss): ``nesting=(8, 16, 32, ...)`` makes the levels end at the Matryoshka
prefix sizes instead of equal blocks (`levels.nesting_bounds`); `to_faiss` refuses it.

Shapes: add x (n, d) float32; search q (nq, d) -> D (nq, k) float32, I (nq, k) int64.
"""
import numpy as np

from ..core.validate import as_float32_matrix, as_int, as_k, check_metric
from . import kernels as K
from .levels import level_bounds, make_stats

DEFAULT_BATCH_SIZE = 1024  # faiss Panorama::kDefaultBatchSize since 1.15.1 (128 before)


def check_batch_size(batch_size):
    return as_int(batch_size, "batch_size", 1, 2**31 - 1)


def pack_rows(x, bounds, bs):
    """Rows x (n, d) in the level-major batch layout -> (codes (ceil(n/bs) bs d,) float32,
    tail norms (ceil(n/bs) bs (L+1),) float32), padding rows zero."""
    n, d = x.shape
    slots = -(-n // bs) * bs
    codes = np.zeros(slots * d, dtype=np.float32)
    cums = np.zeros(slots * (bounds.shape[0]), dtype=np.float32)
    K.write_level_layout(x, bounds, bs, codes, cums, 0)
    return codes, cums


def finish(hd, hi, ip):
    """Sorted heaps -> faiss output (D, I) in place."""
    (K.sort_results if hd.shape[0] >= K.PARALLEL_MIN_QUERIES else K.sort_results_serial)(hd, hi, ip)
    if ip:
        np.negative(hd, out=hd)
    return hd, hi


class PanoramaFlatIndex:
    """Exact flat search with Panorama pruning (see the module docstring).

    d: int, the vector dimension
    n_levels: int, number of equal levels, faiss's layout (or None with nesting)
    metric: "l2" (squared L2, faiss IndexFlatL2Panorama) or "ip" (IndexFlatIPPanorama)
    batch_size: int, rows per storage batch (faiss default 1024); k may not exceed it
    nesting: sequence of int or None, levels ending at these prefix sizes (extension)
    bounds: (L + 1,) int64 level bounds; n_levels is L after faiss's truncation
    ntotal: int, rows stored
    last_search_stats: `levels.PanoramaStats` of the last search (None before)
    """

    def __init__(self, d, n_levels=None, metric="l2", batch_size=DEFAULT_BATCH_SIZE, nesting=None):
        self.d = as_int(d, "d", 1)
        self.metric = check_metric(metric)
        self.batch_size = check_batch_size(batch_size)
        self.bounds = level_bounds(self.d, n_levels, nesting)
        self.n_levels = self.bounds.shape[0] - 1
        self.faiss_layout = nesting is None
        self.last_search_stats = None
        self.reset()

    @property
    def ntotal(self):
        return self._ntotal

    def reset(self):
        """Remove every row."""
        self._ntotal = 0
        self._codes = np.zeros(0, dtype=np.float32)
        self._cums = np.zeros(0, dtype=np.float32)
        self._ids = np.zeros(0, dtype=np.int64)  # the id of each position: the position itself

    def add(self, x):
        """Append the rows of x (n, d); their ids continue from ntotal."""
        x = as_float32_matrix(x, "x", d=self.d)
        if x.shape[0] == 0:
            return
        n0, bs = self._ntotal, self.batch_size
        slots = -(-(n0 + x.shape[0]) // bs) * bs
        codes = np.zeros(slots * self.d, dtype=np.float32)
        cums = np.zeros(slots * (self.n_levels + 1), dtype=np.float32)
        codes[:self._codes.shape[0]] = self._codes
        cums[:self._cums.shape[0]] = self._cums
        K.write_level_layout(x, self.bounds, bs, codes, cums, n0)
        self._codes, self._cums, self._ntotal = codes, cums, n0 + x.shape[0]
        self._ids = np.arange(self._ntotal, dtype=np.int64)

    def level_codes(self):
        """The stored rows in faiss's level-major batch layout (batches * batch_size * d,) float32
        (faiss `IndexFlatPanorama.codes` read as float32); a copy."""
        return self._codes.copy()

    def tail_norms(self):
        """rho_l of every stored row in faiss's layout (batches * batch_size * (L + 1),) float32
        (faiss `IndexFlatPanorama.cum_sums`); a copy."""
        return self._cums.copy()

    def reconstruct_n(self, i0=0, n=None):
        """Rows i0 .. i0 + n - 1 as added -> (n, d) float32."""
        i0 = as_int(i0, "i0", 0, self._ntotal)
        n = self._ntotal - i0 if n is None else as_int(n, "n", 0, self._ntotal - i0)
        out = np.empty((n, self.d), dtype=np.float32)
        K.read_level_layout(self._codes, self.bounds, self.batch_size, i0, n, out)
        return out

    def search(self, q, k):
        """Exact k nearest rows of each query -> (D (nq, k) float32, I (nq, k) int64)."""
        q = as_float32_matrix(q, "q", d=self.d)
        k = as_k(k, q.shape[0])
        if k > self.batch_size:
            raise ValueError(f"k={k} exceeds batch_size={self.batch_size}; faiss's Panorama "
                             f"requires k <= batch_size: build the index with a larger batch_size")
        nq, ip = q.shape[0], self.metric == "ip"
        hd = np.full((nq, k), K.FLT_MAX, dtype=np.float32)
        hi = np.full((nq, k), -1, dtype=np.int64)
        scanned = np.zeros((nq, self.n_levels), dtype=np.int64)
        one = np.zeros(1, dtype=np.int64)
        K.run_search(self._codes, self._cums, self._ids, one, np.array([self._ntotal]),
                     np.zeros((nq, 1), dtype=np.int64), self.batch_size, self.bounds, q, ip,
                     hd, hi, scanned)
        rows = scanned.sum(0)
        total = nq * self._ntotal * self.n_levels
        self.last_search_stats = make_stats(total, int(rows.sum()), rows, scanned)
        return finish(hd, hi, ip)

    def __repr__(self):
        return (f"PanoramaFlatIndex(d={self.d}, n_levels={self.n_levels}, metric={self.metric!r}, "
                f"batch_size={self.batch_size}, ntotal={self._ntotal})")
