"""HNSW (Malkov & Yashunin 2018) graph index, built and searched exactly as faiss 1.15.1's
``IndexHNSWFlat``, and AdANNS-HNSW: the graph navigated at d_c dims, candidates re-scored at d_s.

Graph. Every node i gets a top level l_i; at each level l <= l_i it keeps a list of at most
M_l neighbours (M_0 = 2M, M_l = M above). A search descends greedily from the entry point
through the upper levels, then runs a best-first search at level 0 with a candidate set of
size ef = max(ef_search, k):

    P(l_i = l) = p_l = exp(-l / m_L) (1 - exp(-1 / m_L)),  m_L = 1 / ln M   (levels with p_l >= 1e-9)
    dis(q, x) = ||q - x||^2  ("l2")  or  <q, x>  ("ip", larger is better)

AdANNS-HNSW (Matryoshka prefixes z_d, `truncate.prefix`): the graph is built on the d_c-prefixes
x_{d_c}; a query walks it with q_{d_c}; with d_s != d_c the max(ef, k) best candidates found are
re-scored with dis(q_{d_s}, x_{d_s}) and the k best returned (faiss ``IndexRefineFlat`` with
k_factor = max(ef, k) / k over an HNSW base). Rigid HNSW is d_c = d_s. AdANNS-HNSW-D: build
once at d_c = D and pass d_c / d_s to `search`; any 1 <= d_c, d_s <= D is allowed (the graph is
only a set of edges, walked with whatever distance the query uses).

Cost per query (`cost.hnsw_flops`): ndis * d_c + n_rescored * d_s, with ndis the distances the
search computed (faiss's ``hnsw_stats.ndis``: upper-level scans plus level-0 evaluations; the
entry point's distance is not counted), and n_rescored <= max(ef, k) (0 without re-scoring).
`last_search_ndis` (nq,) and `last_search_flops` (mean) hold them for the last search.

faiss recipe (SPEC_HNSW; the 1.15.1 wheel, whose add() always runs the deterministic build):

1. Levels: p_l as above in faiss's float/double mix (`level_probabilities`); per new point
   l = random_level() from an mt19937 seeded with `seed` (faiss: 12345) that persists across
   add() calls; faiss ``rand_float`` is float32(u) / float32(2^32 - 1).
2. add(x): new ids bucketed by level (ascending id inside a bucket); buckets from the highest
   level down, each shuffled by a fresh mt19937(789) per add() call (one draw per position).
   The first point of a bucket above max_level becomes the entry point after its own
   sub-batch (faiss 1.15.1 defers the promotion); an empty graph takes it at once.
3. Inside a bucket, sub-batches of sizes 1, 1, 2, 4, ... capped at theta = max(1, floor(0.02 *
   ntotal)). Phase A, against the graph frozen at the sub-batch start: greedy descent to
   level l_p + 1, then at each level min(l_p, max_level)..0 a search with efConstruction from
   the same (nearest, distance), the neighbour heuristic down to M_l (only when at least M_l
   candidates were found), the list written worst first. Phase B: every (level, node) that
   received links merges the new sources (ascending, not already present); an overflowing list
   is sorted by (distance best first, id) and pruned by the heuristic to
   keep = int(float32(M_l) - float32(M_l) * 0.2f) entries (51 / 25 for M = 32).
4. search: greedy descent, then the level-0 search with faiss's MinimaxHeap and result heap;
   it stops early only when k > ef_search; ties in the output: ascending id for "l2",
   descending id for "ip"; missing results are (+FLT_MAX, -1) for "l2", (-FLT_MAX, -1) for "ip".
   Every tie rule of faiss's three heaps is reproduced (`indices.hnsw.heaps`).

faiss-identical (``IndexHNSWFlat(d, M, metric)`` with efConstruction, efSearch set, any number of
faiss and numba threads) when d_c = d_s = D, normalize=False and seed=12345: levels, every
neighbour list in stored order, entry point, max_level, search ids and distances (bit for bit
where faiss dispatches to its AVX-512 kernels, see `core.simd`; elsewhere last-bit differences can
change the graph at near-ties) and ndis per query. With d_s != d_c: ``IndexRefineFlat`` over
that base, same ids and distances. With normalize=True: faiss on our normalised prefixes.
Not reproduced: faiss's lock-based v1.15.0 build (source builds of the tag), the unbounded-queue
and no-relative-distance search variants, and faiss's reset of the level RNG to 12345 on
deserialisation (`load` continues the saved stream, so save + load + add equals add).

Shapes: x (n, D) float32; search -> D (nq, k) float32, I (nq, k) int64; `levels` (n,) int64
top level per node; `neighbors(i, l)` (<= M_l,) int64. The graph is faiss's layout: one int32
array, node i at level l at ``[offsets[i] + cum[l], offsets[i] + cum[l + 1])``, -1 padded.
"""
import math

import numba
import numpy as np

from . import kernels as K
from ...core import cost
from ...core.mt19937 import MTState
from ...core.persist import load_npz, save_npz
from ...core.truncate import prefix
from ...core.validate import (as_bool, as_float32_matrix, as_int, as_k, check_metric,
                              check_prefix_dim, check_result_size)

_KIND, _VERSION = "HNSWIndex", 1
SHUFFLE_SEED = 789  # faiss: RandomGenerator rng2(789) in hnsw_add_vertices_deterministic
PRUNE_HEADROOM = np.float32(0.2)  # faiss HNSW::prune_headroom


def level_probabilities(M):
    """faiss HNSW::set_default_probas(M, 1 / ln M): (probas (L,) float64, cum (L + 1,) int64),
    cum[l] = slots of the levels below l (2M at level 0, M above)."""
    m_l = np.float32(1.0 / math.log(M))
    tail = 1.0 - math.exp(float(np.float32(-1.0) / m_l))
    probas, cum = [], [0]
    while True:
        p = np.float32(math.exp(float(np.float32(-len(probas)) / m_l)) * tail)
        if p < 1e-9:
            return np.array(probas, np.float64), np.array(cum, np.int64)
        cum.append(cum[-1] + (2 * M if not probas else M))
        probas.append(float(p))


def pruned_size(capacity):
    """Entries kept when an overflowing list is pruned: faiss size_t -= size_t * 0.2f."""
    cap = np.float32(capacity)
    return max(1, int(cap - cap * PRUNE_HEADROOM))


def _parts(n):
    return max(1, min(numba.get_num_threads(), n))


class HNSWIndex:
    """HNSW / AdANNS-HNSW index over D-dim float32 vectors (see the module docstring).

    Parameters
        d                 int, = D: vector width
        M                 int >= 2: neighbours per node and level (2M at level 0)
        ef_construction   int >= 1: candidate list size while building
        metric            str, "l2" or "ip"
        normalize         bool: Matryoshka re-normalised prefixes (default False: plain
                          truncation, faiss's behaviour at d_c = D)
        d_c               int in 1..D: dims the graph is built and walked on (default D)
        d_s               int in 1..D: dims the candidates are re-scored at (default D)
        seed              int: level generator seed (faiss's is 12345)

    Attributes
        ntotal            int: stored vectors
        levels            (ntotal,) int64: top level of each node (a copy)
        entry_point       int: the entry node (-1 when empty)
        max_level         int: its level (-1 when empty)
        last_search_ndis  (nq,) int64: distances computed per query by the last search
        last_search_flops float: mean FLOPs per query of the last search
    State: `graph()` (levels, offsets, neighbours, entry point, max level), `vectors()` (the
    stored (ntotal, D) float32 or their (ntotal, d_c) prefixes); `set_graph` installs one.
    """

    def __init__(self, d, M=32, ef_construction=40, metric="l2", normalize=False, d_c=None,
                 d_s=None, seed=12345):
        self.d = as_int(d, "d", 1)
        self.M = as_int(M, "M", 2, 1 << 20)
        self.ef_construction = as_int(ef_construction, "ef_construction", 1, 1 << 24)
        self.metric = check_metric(metric)
        self.normalize = as_bool(normalize, "normalize")
        self.d_c = check_prefix_dim(d_c, self.d, "d_c")
        self.d_s = check_prefix_dim(d_s, self.d, "d_s")
        self.seed = as_int(seed, "seed", 0, 2**32 - 1)
        self._probas, self._cum = level_probabilities(self.M)
        self._keeps = np.array([pruned_size(c) for c in np.diff(self._cum)], np.int64)
        self._rng = MTState(self.seed)
        self.reset()
        self.last_search_ndis = np.empty(0, np.int64)
        self.last_search_flops = 0.0

    # ----------------------------------------------------------------------- state

    def _set_graph(self, data, levels, offsets, nbrs, entry_point, max_level, xb=None):
        """Install vectors and graph; xb: the d_c-prefixes of data if already known (prefix
        works row by row, so add() prefixes only the new rows)."""
        self._data, self._levels, self._offsets, self._nbrs = data, levels, offsets, nbrs
        self.entry_point, self.max_level = int(entry_point), int(max_level)
        if self.d_c == self.d and not self.normalize:
            self._xb = data
        else:
            self._xb = prefix(data, self.d_c, self.normalize) if xb is None else xb
        self._prefix_cache = {}

    @property
    def ntotal(self):
        return int(self._data.shape[0])

    @property
    def levels(self):
        """Top level of each node, (ntotal,) int64 (faiss's hnsw.levels minus 1)."""
        return self._levels.copy()

    def _graph(self):
        return self._nbrs, self._offsets, self._cum

    def graph(self):
        """The graph as faiss stores it, read-only views: (levels (ntotal,) int64 top level per
        node, offsets (ntotal + 1,) int64 start of each node's slots, neighbors (offsets[-1],)
        int32 neighbour ids padded with -1, entry_point int, max_level int)."""
        views = [a.view() for a in (self._levels, self._offsets, self._nbrs)]
        for v in views:
            v.flags.writeable = False
        return (*views, self.entry_point, self.max_level)

    def vectors(self, prefixed=False):
        """The added vectors, a read-only view: (ntotal, D) float32, or with prefixed=True the
        (ntotal, d_c) prefixes the graph is walked on (`core.truncate.prefix` of each row)."""
        v = (self._xb if prefixed else self._data).view()
        v.flags.writeable = False
        return v

    def set_graph(self, data, levels, offsets, nbrs, entry_point, max_level):
        """Install vectors data (n, D) float32 and a graph in `graph()`'s layout (e.g. read from
        faiss); ValueError naming the problem unless `check_graph` accepts it."""
        data = as_float32_matrix(data, "data", d=self.d)
        levels = np.ascontiguousarray(levels, dtype=np.int64)
        offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        nbrs = np.ascontiguousarray(nbrs, dtype=np.int32)
        problem = self.check_graph(data.shape[0], levels, offsets, nbrs, int(entry_point), int(max_level))
        if problem:
            raise ValueError(f"not a graph this HNSWIndex can hold: {problem}")
        self._set_graph(data, levels, offsets, nbrs, int(entry_point), int(max_level))

    def set_level_rng(self, key, pos):
        """Set the level generator's std::mt19937 state: key (624,) uint32, pos (next word)."""
        self._rng.key[:] = np.asarray(key, dtype=np.uint32)
        self._rng.pos[0] = int(pos)

    def neighbors(self, i, level):
        """Neighbour ids of node i at `level` in stored order, without padding, (<= M_l,) int64."""
        i = as_int(i, "i", 0, self.ntotal - 1)
        level = as_int(level, "level", 0)
        if level > self._levels[i]:
            raise ValueError(f"node {i} lives on levels 0..{self._levels[i]}, not {level}")
        lst = self._nbrs[self._offsets[i] + self._cum[level]:self._offsets[i] + self._cum[level + 1]]
        stop = np.flatnonzero(lst < 0)
        return lst[:stop[0] if stop.size else lst.size].astype(np.int64)

    # ----------------------------------------------------------------------- build

    def add(self, x):
        """Insert the rows of x (n, D) with ids ntotal.. (faiss's deterministic batched build)."""
        x = as_float32_matrix(x, "x", d=self.d)
        n0, n = self.ntotal, x.shape[0]
        if n == 0:
            return
        if n0 + n >= 2**31:
            raise ValueError(f"HNSW ids are int32 (as in faiss): {n0} + {n} vectors exceed 2^31 - 1")
        new_levels = K.random_levels(self._rng.key, self._rng.pos, self._probas, n)
        slots = self._cum[new_levels + 1]
        offsets = np.concatenate([self._offsets, self._offsets[-1] + np.cumsum(slots)])
        nbrs = np.concatenate([self._nbrs, np.full(int(slots.sum()), -1, np.int32)])
        xb = np.concatenate([self._xb, prefix(x, self.d_c, self.normalize)])
        self._set_graph(np.concatenate([self._data, x]), np.concatenate([self._levels, new_levels]),
                        offsets, nbrs, self.entry_point, self.max_level, xb)
        self._add_vertices(n0, new_levels)

    def _add_vertices(self, n0, new_levels):
        """faiss hnsw_add_vertices_deterministic: level buckets, top down, in sub-batches."""
        order = n0 + np.argsort(new_levels, kind="stable")
        hist = np.bincount(new_levels)
        theta = max(1, int(0.02 * self.ntotal))
        rng2 = MTState(SHUFFLE_SEED)
        i1 = new_levels.shape[0]
        for level in range(hist.shape[0] - 1, -1, -1):
            i0 = i1 - int(hist[level])
            if i0 == i1:
                continue
            K.shuffle_segment(order, i0, i1, rng2.key, rng2.pos)
            promote = -1
            if self.entry_point == -1:
                self.entry_point, self.max_level = int(order[i0]), level
            elif level > self.max_level:
                promote = int(order[i0])
            s = i0
            while s < i1:
                e = min(i1, s + min(1 if s == i0 else s - i0, theta))
                self._insert_batch(order[s:e])
                if promote >= 0:
                    self.entry_point, self.max_level, promote = promote, level, -1
                s = e
            i1 = i0

    def _insert_batch(self, pts):
        """Phase A (forward links, parallel over points) then Phase B (reverse links, parallel
        over the (level, node) lists that received links); serial kernels for small batches."""
        ip, g = self.metric == "ip", self._graph()
        # ~distances the batch computes (ef_construction candidates x 2M neighbours each) x d_c
        work = pts.shape[0] * self.ef_construction * int(self._cum[1]) * self.d_c
        K.forward_links_batch.for_work(work)(pts, self._levels, self._xb, g, self.entry_point,
                                             self.max_level, self.ef_construction, ip,
                                             _parts(pts.shape[0]))
        starts, lvl, dest, srcs = K.reverse_edges(pts, self._levels, g)
        K.merge_reverse_batch.for_work(work)(starts, lvl, dest, srcs, self._keeps, self._xb, g, ip)

    def reset(self):
        """Remove every vector and the graph; parameters stay, and so does the level RNG's state,
        as in faiss ``IndexHNSWFlat.reset`` (a graph rebuilt after reset() equals faiss's)."""
        self._set_graph(np.empty((0, self.d), np.float32), np.empty(0, np.int64),
                        np.zeros(1, np.int64), np.empty(0, np.int32), -1, -1)

    # ----------------------------------------------------------------------- search

    def _database_at(self, d):
        """Stored vectors whose first d columns are the d-prefixes."""
        if d == self.d_c:
            return self._xb
        if not self.normalize:
            return self._data
        if d not in self._prefix_cache:
            self._prefix_cache[d] = prefix(self._data, d, True)
        return self._prefix_cache[d]

    def search(self, xq, k, ef_search=16, d_c=None, d_s=None):
        """k best ids of each query row -> (D float32 (nq, k), I int64 (nq, k)).

        ef_search: faiss's efSearch (>= 1; the candidate set holds max(ef_search, k)).
        d_c / d_s: query-time overrides (AdANNS-HNSW-D), default the build values, 1..D each.
        With d_s != d_c the max(ef_search, k) candidates found at d_c are re-scored at d_s.
        """
        xq = as_float32_matrix(xq, "xq", d=self.d)
        k = as_k(k, xq.shape[0])
        ef = as_int(ef_search, "ef_search", 1, 1 << 24)
        d_c = self.d_c if d_c is None else check_prefix_dim(d_c, self.d, "d_c")
        d_s = self.d_s if d_s is None else check_prefix_dim(d_s, self.d, "d_s")
        nq, ip = xq.shape[0], self.metric == "ip"
        kb = check_result_size(nq, max(ef, k), "max(ef_search, k)") if d_s != d_c else k
        D, I = np.empty((nq, kb), np.float32), np.empty((nq, kb), np.int64)
        ndis = np.zeros(nq, np.int64)
        work = nq * max(ef, k) * int(self._cum[1]) * d_c  # ~distances a search computes, x d_c
        K.search_batch.for_work(work)(prefix(xq, d_c, self.normalize), self._database_at(d_c),
                                      self._graph(), self.entry_point, self.max_level, ef, ip, D, I,
                                      ndis, _parts(nq))
        n_rescored = 0
        if d_s != d_c:
            n_rescored = (I >= 0).sum(axis=1)
            Ib, D, I = I, np.empty((nq, k), np.float32), np.empty((nq, k), np.int64)
            K.rescore_batch.for_work(nq * kb * d_s)(prefix(xq, d_s, self.normalize),
                                                    self._database_at(d_s), Ib, ip, D, I)
        self.last_search_ndis = ndis
        flops = cost.hnsw_flops(ndis, d_c, d_s, n_rescored)
        self.last_search_flops = float(np.mean(flops)) if nq else 0.0
        return D, I

    # ----------------------------------------------------------------------- persistence

    def _params(self):
        return {"d": self.d, "M": self.M, "ef_construction": self.ef_construction,
                "metric": self.metric, "normalize": self.normalize, "d_c": self.d_c,
                "d_s": self.d_s, "seed": self.seed}

    def save(self, path):
        """Write parameters, vectors, graph and level-RNG state to a versioned .npz (atomic)."""
        state = np.array([self.entry_point, self.max_level, self._rng.pos[0]], np.int64)
        save_npz(path, _KIND, _VERSION, self._params(),
                 {"data": self._data, "levels": self._levels, "offsets": self._offsets,
                  "neighbors": self._nbrs, "rng_key": self._rng.key, "state": state})

    @classmethod
    def load(cls, path):
        """Read an index written by `save`; a corrupt or inconsistent file raises ValueError."""
        params, a = load_npz(path, _KIND, _VERSION, {
            "data": (np.float32, 2), "levels": (np.int64, 1), "offsets": (np.int64, 1),
            "neighbors": (np.int32, 1), "rng_key": (np.uint32, 1), "state": (np.int64, 1)})
        try:
            index = cls(**params)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: invalid HNSWIndex parameters {params!r} ({exc})") from exc
        data = as_float32_matrix(a["data"], f"{path}: data", d=index.d)
        if a["state"].shape != (3,) or a["rng_key"].shape != (624,) or not 0 <= a["state"][2] <= 624:
            raise ValueError(f"{path}: corrupt state or rng_key arrays")
        entry_point, max_level, pos = (int(v) for v in a["state"])
        problem = index.check_graph(data.shape[0], a["levels"], a["offsets"], a["neighbors"],
                                    entry_point, max_level)
        if problem:
            raise ValueError(f"{path}: inconsistent HNSW graph: {problem}")
        index._set_graph(data, a["levels"], a["offsets"], a["neighbors"], entry_point, max_level)
        index._rng.key[:] = a["rng_key"]
        index._rng.pos[0] = pos
        return index

    def check_graph(self, n, levels, offsets, nbrs, entry_point, max_level):
        """'' if the arrays describe a valid graph of n nodes for this M, else what is wrong."""
        n_levels = self._probas.shape[0]
        if levels.shape != (n,) or (n and (levels.min() < 0 or levels.max() >= n_levels)):
            return f"levels must be {n} values in [0, {n_levels})"
        expected = np.concatenate([[0], np.cumsum(self._cum[levels + 1])])
        if offsets.shape != (n + 1,) or not np.array_equal(offsets, expected):
            return "offsets do not match the levels"
        if nbrs.shape != (expected[-1],):
            return f"neighbors must hold {expected[-1]} slots, got {nbrs.shape[0]}"
        if n == 0:
            return "" if (entry_point, max_level) == (-1, -1) else "an empty graph has no entry point"
        if not 0 <= entry_point < n or max_level != levels[entry_point] or max_level != levels.max():
            return f"entry point {entry_point} / max_level {max_level} is not a top-level node"
        bad = K.first_bad_node(nbrs, offsets, self._cum, levels)
        return "" if bad < 0 else f"node {bad} has an invalid neighbour list"

    def __repr__(self):
        return (f"HNSWIndex(d={self.d}, M={self.M}, ef_construction={self.ef_construction}, "
                f"metric={self.metric!r}, normalize={self.normalize}, d_c={self.d_c}, "
                f"d_s={self.d_s}, ntotal={self.ntotal})")
