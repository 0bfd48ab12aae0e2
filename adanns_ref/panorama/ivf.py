"""IVF with Panorama pruning inside the probed lists: faiss 1.15.1's `IndexIVFFlatPanorama`.

The maths: an inverted file over N_C = nlist k-means cells (`ivf.IVFIndex`, faiss-identical
coarse quantizer and list assignment); a query probes its nprobe nearest centroids and scans
their lists exactly as `flat` scans its single list: batches of `batch_size` rows per list,
level-major inside a batch, the threshold tau = the heap root when the batch starts, rows
dropped once their Cauchy-Schwarz bound reaches tau, survivors offered to the heap in position
order (strictly better than the root enters). The lists are scanned in probe order (nearest
centroid first) and each list's batches in storage order (insertion order), so the heap, its
ties and the pruning statistics follow faiss's exactly.

faiss's recipe (`IndexIVFFlatPanorama.cpp`, `invlists/InvertedLists.cpp`
`ArrayInvertedListsPanorama`): train = `IndexIVFFlat` training (k-means, niter 10, seed 1234,
at most 256 points per centroid); add = assign each row to its nearest centroid, append it to
that list (list storage padded to whole batches, level layout and tail norms per list);
search = `IndexIVF::search_preassigned` with `IVFFlatScannerPanorama::scan_codes`.
Unlike the flat form, k may exceed batch_size (faiss does not check it here either).

faiss-identical: centroids, lists, ids, ties, statistics; distances bit for bit except at level
widths 8..64 (multiples of 8), see `kernels`. Deviations: routing near-ties as in
`ivf.IVFIndex` (faiss picks direct or BLAS-form centroid distances per thread slice of the
queries); no IDSelector, range_search, remove_ids. Extension: ``nesting=`` levels.

Shapes: train / add x (n, d) float32; search q (nq, d) -> D (nq, k) float32, I (nq, k) int64.
"""
import numpy as np

from ..core.validate import as_float32_matrix, as_int, as_k, check_metric
from ..search.assign import search_centroids
from ..indices.ivf import IVFIndex
from . import kernels as K
from .flat import DEFAULT_BATCH_SIZE, check_batch_size, finish
from .levels import level_bounds, make_stats


class PanoramaIVFIndex:
    """IVF-Flat with Panorama pruning (see the module docstring).

    d: int, the vector dimension
    nlist: int, number of k-means cells N_C
    n_levels: int, equal levels, faiss's layout (or None with nesting)
    metric: "l2" or "ip"
    batch_size: int, rows per storage batch inside each list (faiss default 1024)
    nesting: sequence of int or None, levels ending at these prefix sizes (extension)
    niter, seed, max_points_per_centroid: the coarse k-means (faiss's IVF defaults)
    bounds: (L + 1,) int64 level bounds
    centroids: (nlist, d) float32 or None before training
    ntotal: int; last_search_stats: `levels.PanoramaStats` of the last search
    """

    def __init__(self, d, nlist, n_levels=None, metric="l2", batch_size=DEFAULT_BATCH_SIZE,
                 nesting=None, niter=10, seed=1234, max_points_per_centroid=256):
        self.d = as_int(d, "d", 1)
        self.metric = check_metric(metric)
        self.batch_size = check_batch_size(batch_size)
        self.bounds = level_bounds(self.d, n_levels, nesting)
        self.n_levels = self.bounds.shape[0] - 1
        self.faiss_layout = nesting is None
        self.ivf = IVFIndex(self.d, nlist, metric=self.metric, normalize=False, niter=niter,
                            seed=seed, max_points_per_centroid=max_points_per_centroid)
        self.nlist = self.ivf.nlist
        self.last_search_stats = None
        self._packed = None

    ntotal = property(lambda self: self.ivf.ntotal)
    is_trained = property(lambda self: self.ivf.is_trained)
    centroids = property(lambda self: self.ivf.centroids)

    def train(self, x):
        """Coarse k-means on x (n, d), n >= nlist (faiss `IndexIVFFlat.train`)."""
        self.ivf.train(x)
        self._packed = None

    def set_centroids(self, c):
        """Use the given centroids (nlist, d) instead of training (e.g. faiss's)."""
        self.ivf.set_centroids(c)
        self._packed = None

    def add(self, x):
        """Append the rows of x (n, d) to the lists of their nearest centroids; ids continue
        from ntotal."""
        self.ivf.add(x)
        self._packed = None

    def add_preassigned(self, x, lists):
        """Append row i of x to list lists[i] (the bridge rebuilds faiss's lists with it)."""
        self.ivf.add_preassigned(x, lists)
        self._packed = None

    def reset(self):
        self.ivf.reset()
        self._packed = None

    def list_ids(self, l):
        """ids of list l in storage order, (size,) int64."""
        return self.ivf.list_ids(l)

    def list_vectors(self, l):
        """rows of list l in storage order, (size, d) float32."""
        return self.ivf.list_vectors(l)

    def list_sizes(self):
        return self.ivf.list_sizes()

    def list_layout(self, l):
        """(level codes, tail norms) of list l in faiss's layout (`ArrayInvertedListsPanorama`
        codes read as float32, and its cum_sums), padded to whole batches."""
        codes, cums, pos, _, _ = self._pack()
        n0, n1 = pos[l], pos[l + 1]
        return (codes[n0 * self.d:n1 * self.d].copy(),
                cums[n0 * (self.n_levels + 1):n1 * (self.n_levels + 1)].copy())

    def _pack(self):
        """All lists in the level layout, each starting at a batch boundary -> (codes, cums,
        list start positions (nlist + 1,), ids per position, list sizes)."""
        if self._packed is None:
            bs, sizes = self.batch_size, self.ivf.list_sizes().astype(np.int64)
            pos = np.zeros(self.nlist + 1, dtype=np.int64)
            np.cumsum(-(-sizes // bs) * bs, out=pos[1:])
            codes = np.zeros(pos[-1] * self.d, dtype=np.float32)
            cums = np.zeros(pos[-1] * (self.n_levels + 1), dtype=np.float32)
            ids = np.full(pos[-1], -1, dtype=np.int64)
            for l in np.flatnonzero(sizes):
                K.write_level_layout(self.ivf.list_vectors(l), self.bounds, bs, codes, cums, pos[l])
                ids[pos[l]:pos[l] + sizes[l]] = self.ivf.list_ids(l)
            self._packed = codes, cums, pos, ids, sizes
        return self._packed

    def search(self, q, k, nprobe=1):
        """k best rows among the nprobe nearest lists of each query -> (D (nq, k) float32,
        I (nq, k) int64); nprobe above nlist is clamped, as in faiss."""
        q = as_float32_matrix(q, "q", d=self.d)
        k = as_k(k, q.shape[0])
        nprobe = min(as_int(nprobe, "nprobe", 1), self.nlist)
        if not self.is_trained:
            raise ValueError("PanoramaIVFIndex.search called before training; call train(x) or "
                             "set_centroids(c) first")
        probes = search_centroids(q, self.centroids, nprobe, self.metric)[1]
        codes, cums, pos, ids, sizes = self._pack()
        nq, ip = q.shape[0], self.metric == "ip"
        hd = np.full((nq, k), K.FLT_MAX, dtype=np.float32)
        hi = np.full((nq, k), -1, dtype=np.int64)
        scanned = np.zeros((nq, self.n_levels), dtype=np.int64)
        K.run_search(codes, cums, ids, pos, sizes, np.ascontiguousarray(probes, np.int64),
                     self.batch_size, self.bounds, q, ip, hd, hi, scanned)
        visited = sizes[probes[probes >= 0]].sum()
        rows = scanned.sum(0)
        self.last_search_stats = make_stats(int(visited) * self.n_levels, int(rows.sum()), rows,
                                            scanned)
        return finish(hd, hi, ip)

    def __repr__(self):
        return (f"PanoramaIVFIndex(d={self.d}, nlist={self.nlist}, n_levels={self.n_levels}, "
                f"metric={self.metric!r}, ntotal={self.ntotal})")
