"""Inverted-file index (IVF) and AdANNS-IVF: clusters built at d_c dims, candidates scored at d_s.

Let z_d denote the d-dim Matryoshka prefix of a vector (`truncate.prefix`: normalise at D,
truncate, normalise again; with ``normalize=False`` plain truncation). With N_C = nlist
centroids c_1..c_{N_C} (d_c dims, trained by k-means on the database prefixes x_{d_c}):

    build:  list(x) = argmin_l ||x_{d_c} - c_l||^2          (ties -> smaller l; "ip": argmax <.,.>)
    search: P(q)    = the nprobe nearest centroids of q_{d_c}  (nprobe clamped to N_C)
            result  = the k ids j in the lists of P(q) with the smallest ||q_{d_s} - x_{j,d_s}||^2
                      ("ip": largest <q_{d_s}, x_{j,d_s}>), ties -> smaller id

Rigid IVF is d_c = d_s; AdANNS-IVF decouples them (any order: d_s < d_c and d_s > d_c both
work). AdANNS-IVF-D: `search(..., d_c=, d_s=)` overrides both at query time on an index built
once, without rebuilding: the lists stay as assigned at build time, the stored full-D vectors
are re-prefixed at d_s, and for d_c below the build d_c the centroids are truncated to d_c
(and re-normalised when ``normalize=True``; at the build d_c they are used as trained).
Centroids only exist at the build d_c, so a query-time d_c cannot exceed it: build with
d_c = D (the default) to keep every d_c available.

Cost per query (`cost.ivf_flops`): d_c * N_C + d_s * (sum of the probed list sizes), averaged
over the queries of the last search in `last_search_flops`.

Storage (CSR): the full-D vectors as added, sorted by list, in `_data` (N, D) float32, their ids
in `_ids` (N,) int64, list l at rows `_offsets[l]:_offsets[l+1]`; ids keep insertion order inside
each list. Prefixes at a given d (and re-prefixed centroids) are computed once and cached until
the next `add`/`reset`; each cached d costs N * d float32 of memory.

faiss-identical (`IndexIVFFlat`) when d_c = d_s = D and ``normalize=False``: training (faiss's
coarse k-means, `Level1Quantizer`/`IndexIVF` defaults: niter=10, seed 1234, max 256 points per
centroid with subsampling, spherical k-means for "ip", via `kmeans.KMeans`), list assignment,
ids, the scan distances (faiss's direct sums, bit-identical on AVX-512 machines), -1 /
+-FLT_MAX padding; with ``normalize=True`` it is `IndexIVFFlat` on the normalised vectors.
Not faiss-identical: (1) ties: faiss scans the probed lists in probe order and drops a
candidate that merely ties the current k-th result, so the member of a tie group straddling
rank k it keeps depends on list order; we always keep the smaller id. (2) Routing near-ties:
faiss routes each thread's slice of the queries separately and picks direct or BLAS-form
distances per slice (`core.threads.BLAS_THRESHOLD`), we decide for the whole batch, so a query almost
equidistant from two centroids can probe a different list. Like faiss, training on fewer than
39 * nlist points warns (`kmeans.SmallTrainingSetWarning`, faiss's text) and trains; fewer than
nlist points raise ValueError.
"""
import copy

import numba
import numpy as np

from ..core import cost
from ..core.persist import load_npz, save_npz
from ..core.simd import simd_sum
from ..core.threads import serial_or_parallel
from ..core.topk import finalize, heap_push, heap_sort, new_heaps
from ..core.truncate import prefix
from ..core.validate import (as_bool, as_float32_matrix, as_int, as_k, as_nlist, check_metric,
                             check_prefix_dim, refuse_train_after_add)
from ..distributed import Executor, as_rows, map_concat
from ..quantizers.kmeans import KMeans
from ..search.assign import routing_plan, search_centroids
from .invlists import InvertedLists, append_to_lists, check_saved_nlist

_KIND, _VERSION = "IVFIndex", 1


@numba.njit(cache=True)
def _queries_by_list(probes, r0, r1, nlist):
    """The (query, list) pairs of queries r0..r1-1 grouped by list (a counting sort): queries of
    list l are members[start[l]:start[l + 1]], in increasing order. Negative probes are skipped."""
    start = np.zeros(nlist + 1, dtype=np.int64)
    for r in range(r0, r1):
        for p in range(probes.shape[1]):
            if probes[r, p] >= 0:
                start[probes[r, p] + 1] += 1
    for lst in range(nlist):
        start[lst + 1] += start[lst]
    fill = start[:-1].copy()
    members = np.empty(start[nlist], dtype=np.int64)
    for r in range(r0, r1):
        for p in range(probes.shape[1]):
            lst = probes[r, p]
            if lst >= 0:
                members[fill[lst]] = r
                fill[lst] += 1
    return start, members


@serial_or_parallel
def _scan_lists(qs, xb, d_s, ids, offsets, probes, use_ip, hd, hi, n_parts):
    """For each query r, score every vector of the lists probes[r] on its first d_s dims.

    qs (nq, d_s) query prefixes; xb (N, >= d_s) stored vectors in list order; ids (N,);
    offsets (nlist + 1,); probes (nq, nprobe) list numbers; hd/hi (nq, k) heaps, filled in place
    and sorted (in the same parallel loop: one thread-pool wake-up per search, not two).

    n_parts (numba.get_num_threads(), at most nq): each thread takes a contiguous part of the
    queries and walks its probed lists list by list, scoring every query that probes a list
    while the list is in cache (a list is read once per part, not once per query: 2-3x fewer
    cache misses at nprobe 1). The heap keeps the k
    smallest (distance, id) keys whatever the order candidates arrive in, so results do not
    depend on the grouping or the number of threads.
    """
    nq, nlist = qs.shape[0], offsets.shape[0] - 1
    for part in numba.prange(n_parts):
        r0, r1 = part * nq // n_parts, (part + 1) * nq // n_parts
        start, members = _queries_by_list(probes, r0, r1, nlist)
        for lst in range(nlist):
            for m in range(start[lst], start[lst + 1]):
                r = members[m]
                q, rd, ri = qs[r], hd[r], hi[r]
                for j in range(offsets[lst], offsets[lst + 1]):
                    dis = simd_sum(q, xb[j, :d_s], not use_ip)
                    heap_push(rd, ri, -dis if use_ip else dis, ids[j])
        for r in range(r0, r1):
            heap_sort(hd[r], hi[r])


class IVFIndex(InvertedLists):
    """IVF / AdANNS-IVF index over D-dim float32 vectors (see the module docstring).

    Parameters
        d                        int, = D: the full dimension
        nlist                    int >= 1: cells N_C
        d_c                      int in 1..D: build / routing dims (default D)
        d_s                      int in 1..D: scoring dims (default D)
        metric                   str, "l2" or "ip"
        normalize                bool: Matryoshka re-normalised prefixes (default True)
        niter                    int: coarse k-means iterations (faiss's IVF default 10)
        seed                     int: coarse k-means seed (1234)
        max_points_per_centroid  int: coarse k-means subsampling (256)

    Attributes
        centroids           (nlist, d_c) float32, or None before training (a copy)
        ntotal              int: stored vectors
        is_trained          bool
        last_search_flops   float: mean FLOPs per query of the last search
    Lists (`indices.invlists.InvertedLists`): `list_sizes()` (nlist,) int64, `list_ids(l)`
    (size,) int64, `list_vectors(l)` (size, D) float32.
    """

    PAYLOAD = "data"  # the lists hold the full-D vectors (`indices.invlists`)

    def __init__(self, d, nlist, d_c=None, d_s=None, metric="l2", normalize=True, niter=10,
                 seed=1234, max_points_per_centroid=256):
        self.d = as_int(d, "d", 1)
        self.nlist = as_nlist(nlist)
        self.d_c = check_prefix_dim(d_c, self.d, "d_c")
        self.d_s = check_prefix_dim(d_s, self.d, "d_s")
        self.metric = check_metric(metric)
        self.normalize = as_bool(normalize, "normalize")
        self.niter = as_int(niter, "niter", 1)
        self.seed = as_int(seed, "seed", 0, 2**31 - 1)
        self.max_points_per_centroid = as_int(max_points_per_centroid, "max_points_per_centroid", 1)
        self._centroids = None
        self.last_search_flops = 0.0
        self._set_lists(np.empty((0, self.d), np.float32), np.empty(0, np.int64),
                        np.zeros(self.nlist + 1, np.int64))

    # ----------------------------------------------------------------------- state

    def _set_lists(self, data, ids, offsets):
        self._data, self._ids, self._offsets = data, ids, offsets
        self._prefix_cache = {}

    def list_vectors(self, l):
        """The full-D vectors stored in list l, as added, (size, D) float32 (a copy)."""
        return self._data[self._rows(l)].copy()

    def _require_trained(self, verb):
        if not self.is_trained:
            raise ValueError(f"IVFIndex.{verb} called before training; "
                             f"call train(x) or set_centroids(c) first")

    # ----------------------------------------------------------------------- build

    def train(self, x, client=None):
        """k-means on the d_c prefixes of x (n, D), n >= nlist; sets `centroids`.
        client: a ``distributed.Client``: x may then also be a vector file path or a dask
        array; the workers read the k-means training rows and assign them (`distributed`;
        same centroids as in-process). An index holding vectors refuses: reset() first."""
        refuse_train_after_add("IVFIndex", self.ntotal)
        km = KMeans(self.nlist, niter=self.niter, seed=self.seed,
                    max_points_per_centroid=self.max_points_per_centroid,
                    spherical=self.metric == "ip", metric=self.metric)
        if client is None:
            x = as_float32_matrix(x, "x", d=self.d)
            n = x.shape[0]
        else:
            x, n = as_rows(x, self.d, client)
        if n < self.nlist:
            raise ValueError(f"training needs at least nlist={self.nlist} vectors, got {n}; "
                             f"lower nlist or train on more data")
        if client is None:
            km.fit(prefix(x, self.d_c, self.normalize))
        else:  # prefix is per row: the prefixes of the training rows are the rows of the prefixes
            rows = km.training_rows(n)
            sample = Executor(client).rows(x, np.arange(n) if rows is None else rows)
            km.fit_training_rows(prefix(sample, self.d_c, self.normalize), client=client,
                                 n_total=n)
        self.set_centroids(km.centroids)

    def set_centroids(self, c):
        """Use given centroids c (nlist, d_c) instead of training (e.g. faiss's, for conformance)."""
        c = as_float32_matrix(c, "centroids", d=self.d_c)
        if c.shape[0] != self.nlist:
            raise ValueError(f"centroids has {c.shape[0]} rows but nlist={self.nlist}")
        refuse_train_after_add("IVFIndex", self.ntotal)
        self._centroids = c.copy()
        self._prefix_cache = {}

    def add(self, x, client=None):
        """Assign each row of x (n, D) to the list of its nearest centroid (at d_c) and store it;
        ids continue from ntotal. Repacks the CSR arrays: O(ntotal) per call, so add in batches.
        client: a ``distributed.Client``: x may then also be a vector file path or a dask array;
        blocks of rows are assigned on the workers and merged in input order (same lists)."""
        if client is not None:
            self._require_trained("add")
            x, n = as_rows(x, self.d, client)
            plan, align = routing_plan(n, self.d_c, self.nlist, 1)
            local = isinstance(x, np.ndarray)
            lists, rows = map_concat(client, self._without_lists(), "_lists_of", x, self.d, align, plan,
                                     not local, empty=(None, None))
            if n:
                self._append(x if local else rows, lists)
            return
        x = as_float32_matrix(x, "x", d=self.d)
        self._require_trained("add")
        if x.shape[0] == 0:
            return
        self._append(x, self._lists_of(x)[0])

    def _lists_of(self, x, plan=None, with_rows=False):
        """(list of each row of validated x (n, D): its nearest centroid at d_c, x or None);
        plan: the routing plan of the whole batch when x is a block of it (`distributed`)."""
        lists = search_centroids(prefix(x, self.d_c, self.normalize), self._centroids, 1,
                                 self.metric, plan)[1][:, 0]
        return lists, (x if with_rows else None)

    def _without_lists(self):
        """A copy sharing the trained state but holding no vectors (what a worker needs to
        assign rows)."""
        index = copy.copy(self)
        index.reset()
        return index

    def add_preassigned(self, x, lists):
        """Store row i of x (n, D) in list lists[i] (n,) instead of its nearest centroid's (faiss
        `ivf_tools.add_preassigned`; `faiss_bridge.from_faiss` rebuilds faiss's lists with it).
        ids continue from ntotal; inside a list, entries keep insertion order."""
        x = as_float32_matrix(x, "x", d=self.d)
        self._require_trained("add_preassigned")
        lists = np.asarray(lists)
        if lists.dtype.kind not in "iu":
            raise TypeError(f"lists must hold integer list numbers, got dtype {lists.dtype}")
        if lists.shape != (x.shape[0],):
            raise ValueError(f"lists must have shape ({x.shape[0]},), one list number per row of x, "
                             f"got {lists.shape}")
        if lists.size and (lists.min() < 0 or lists.max() >= self.nlist):
            raise ValueError(f"lists holds list numbers in [{lists.min()}, {lists.max()}]; "
                             f"they must lie in [0, nlist={self.nlist})")
        if x.shape[0]:
            self._append(x, lists.astype(np.int64))

    def _append(self, x, assign):
        """Store the rows of x in the lists `assign` (n,) int64 and give them the next ids."""
        new_ids = np.arange(self.ntotal, self.ntotal + x.shape[0], dtype=np.int64)
        (data, ids), offsets = append_to_lists(self._offsets, (self._data, self._ids), assign, (x, new_ids))
        self._set_lists(data, ids, offsets)

    def reset(self):
        """Remove all vectors; the centroids are kept (faiss `IndexIVF.reset`)."""
        self._set_lists(np.empty((0, self.d), np.float32), np.empty(0, np.int64),
                        np.zeros(self.nlist + 1, np.int64))

    # ----------------------------------------------------------------------- search

    def _cached(self, key, make):
        if key not in self._prefix_cache:
            self._prefix_cache[key] = make()
        return self._prefix_cache[key]

    def drop_prefix_cache(self, d_s=None):
        """Forget the normalised d_s-prefixes of the stored vectors that search caches (all of
        them when d_s is None): a sweep over d_s keeps at most one N x d_s copy alive."""
        if d_s is None:
            self._prefix_cache = {}
        else:
            self._prefix_cache.pop(("data", d_s), None)

    def _centroids_at(self, d_c):
        if d_c == self.d_c:
            return self._centroids
        return self._cached(("centroids", d_c), lambda: prefix(self._centroids, d_c, self.normalize))

    def _database_at(self, d_s):
        """Stored vectors whose first d_s columns are the d_s prefixes (no copy without normalize)."""
        if not self.normalize:
            return self._data
        return self._cached(("data", d_s), lambda: prefix(self._data, d_s, True))

    def search(self, q, k, nprobe=1, d_c=None, d_s=None, client=None):
        """k best ids of each query row -> (D float32 (nq, k), I int64 (nq, k)).

        nprobe: lists probed per query (>= 1; values above nlist are clamped, as in faiss).
        d_c / d_s: query-time overrides (AdANNS-IVF-D), default the build values;
        1 <= d_c <= build d_c, 1 <= d_s <= D. client: a ``distributed.Client``: shards of the
        queries are searched on the workers against a broadcast copy of the index (same results).
        """
        q = as_float32_matrix(q, "q", d=self.d)
        k = as_k(k, q.shape[0])
        nprobe = min(as_int(nprobe, "nprobe", 1), self.nlist)
        d_s = self.d_s if d_s is None else check_prefix_dim(d_s, self.d, "d_s")
        d_c = self.d_c if d_c is None else check_prefix_dim(d_c, self.d, "d_c")
        if d_c > self.d_c:
            raise ValueError(f"d_c={d_c} exceeds the d_c={self.d_c} the centroids were trained at; "
                             f"build the index with d_c=D (the default) to search at any d_c <= D")
        self._require_trained("search")
        if client is None or q.shape[0] == 0:
            D, I, probes = self._search_rows(q, k, nprobe, d_c, d_s)
        else:
            plan, align = routing_plan(q.shape[0], d_c, self.nlist, nprobe)
            D, I, probes = map_concat(client, self, "_search_rows", q, self.d, align, k, nprobe, d_c, d_s,
                                      plan)
        flops = cost.ivf_flops(d_c, self.nlist, d_s, self.list_sizes()[probes])
        self.last_search_flops = float(np.mean(flops)) if q.shape[0] else 0.0
        return D, I

    def _search_rows(self, q, k, nprobe, d_c, d_s, plan=None):
        """`search` of validated queries q -> (D, I, probes (nq, nprobe)); plan: the routing
        plan of the whole batch when q is a block of it (`distributed`)."""
        probes = search_centroids(prefix(q, d_c, self.normalize), self._centroids_at(d_c), nprobe,
                                  self.metric, plan)[1]
        hd, hi = new_heaps(q.shape[0], k)
        work = int(np.diff(self._offsets)[probes[probes >= 0]].sum()) * d_s
        _scan_lists.for_work(work)(prefix(q, d_s, self.normalize), self._database_at(d_s), d_s,
                                   self._ids, self._offsets, probes, self.metric == "ip", hd, hi,
                                   max(1, min(numba.get_num_threads(), q.shape[0])))
        return (*finalize(hd, hi, self.metric), probes)

    # ----------------------------------------------------------------------- persistence

    def _params(self):
        return {"d": self.d, "nlist": self.nlist, "d_c": self.d_c, "d_s": self.d_s,
                "metric": self.metric, "normalize": self.normalize, "niter": self.niter,
                "seed": self.seed, "max_points_per_centroid": self.max_points_per_centroid}

    def save(self, path):
        """Write the index (parameters, centroids, lists) to a versioned .npz file (atomic)."""
        centroids = self._centroids if self.is_trained else np.empty((0, self.d_c), np.float32)
        save_npz(path, _KIND, _VERSION, self._params(), {"centroids": centroids, **self.lists_state()})

    @classmethod
    def load(cls, path):
        """Read an index written by `save`; a corrupt or inconsistent file raises ValueError."""
        params, a = load_npz(path, _KIND, _VERSION, {"centroids": (np.float32, 2),
                                                     **cls.lists_schema(np.float32)})
        check_saved_nlist(path, params, a["offsets"])
        try:
            index = cls(**params)
            if a["centroids"].shape[0]:
                index.set_centroids(a["centroids"])
            as_float32_matrix(a["data"], "data", d=index.d)  # finite vectors of width d
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: invalid IVFIndex contents (params {params!r}: {exc})") from exc
        index.restore_lists(path, a, index.d, np.float32)
        return index

    def __repr__(self):
        return (f"IVFIndex(d={self.d}, nlist={self.nlist}, d_c={self.d_c}, d_s={self.d_s}, "
                f"metric={self.metric!r}, normalize={self.normalize}, ntotal={self.ntotal})")
