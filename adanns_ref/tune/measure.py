"""Build one index of the grid and measure every search-time setting swept on it.

Per configuration (one row):

- ``recall_val`` / ``recall_test``: k-recall@k (`metrics.knn_recall`) of the returned ids against
  the exact top-k at full D, on the validation and test halves of the queries;
- ``mflops``: FLOPs per query of the cost model (`cost.py`; IVF and PQ measured from the lists
  actually probed), in millions;
- ``ms_1t`` / ``ms_all``: wall milliseconds per query, searching with numba and BLAS limited to
  one thread (on at most `n_timed_1t` queries) and with all threads (every query);
- ``bytes``: stored bytes per database vector of the faiss form (`grid.bytes_per_vector`);
- ``build_s``: seconds to train and fill the index (shared by the rows of one build);
- ``peak_mb``: peak numpy heap (tracemalloc) during build and sweep; numba-internal buffers are
  not counted.

Search-time sweeps stop early where that is safe: along nprobe (IVF, IVFPQ), the shortlist k0
(funnels) and efSearch (HNSW) the cost grows, so once the validation recall is 1.0 the larger settings are
dominated and are skipped (counted as pruned).
"""
import time
import tracemalloc

import numba
import numpy as np

from . import grid
from ..core import cost
from ..core.threads import blas_single_thread
from ..core.truncate import prefix
from ..evaluation.metrics import knn_recall
from ..faiss_bridge import to_faiss
from ..funnel.funnel import rerank
from ..indices.flat import FlatIndex
from ..indices.hnsw.index import HNSWIndex
from ..indices.ivf import IVFIndex
from ..indices.ivfpq import IVFPQIndex
from ..indices.pqindex import PQIndex
from ..indices.sqindex import SQIndex
from ..search.knn import knn_search

PQ_FULL_TRAIN = 39 * 256  # faiss's fewest training points for 256 centroids without a warning


def training_sample(xb, n, seed):
    """Up to n rows of xb (seeded, in file order, read through a memory map if xb is one)."""
    N = xb.shape[0]
    if N <= n:
        return np.ascontiguousarray(xb, dtype=np.float32)
    rows = np.sort(np.random.default_rng(seed).choice(N, n, replace=False))
    return np.ascontiguousarray(xb[rows], dtype=np.float32)


class Setting:
    """What every builder gets: the base (N, D), metric, normalize, k, seed, quick."""

    def __init__(self, xb, metric, normalize, k, seed, quick):
        self.xb, self.metric, self.normalize = xb, metric, normalize
        self.k, self.seed, self.quick = k, seed, quick
        self.N, self.D = xb.shape
        self.opq_niter = 3 if quick else 25


class FlatSearcher:
    def __init__(self, s, d):
        self.s, self.d = s, d
        self.index = FlatIndex(d, s.metric)
        self.index.add(prefix(s.xb, d, s.normalize))

    def search(self, q, k):
        D, I = self.index.search(prefix(q, self.d, self.s.normalize), k)
        return D, I, cost.exact_flops(self.d, self.s.N)

    def to_faiss(self, params):
        from ..faiss_bridge.serve import flat_prefix
        return flat_prefix(self.s.xb, self.d, self.s.metric, self.s.normalize)


class FunnelSearcher:
    """Shortlist k0 by exact search on the d0-prefixes (kept), re-rank at r from the base."""

    def __init__(self, s, d0, r):
        self.s, self.d0, self.r = s, d0, r
        self.z0 = prefix(s.xb, d0, s.normalize)

    def search(self, q, k, k0):
        _, I = knn_search(prefix(q, self.d0, self.s.normalize), self.z0, k0, self.s.metric)
        D, I = rerank(I, self.s.xb, q, self.r, k, self.s.metric, self.s.normalize)
        return D, I, cost.funnel_flops(self.d0, self.s.N, [(self.r, k0)])

    def to_faiss(self, params):
        from ..faiss_bridge.serve import funnel
        return funnel(self.s.xb, self.d0, params["k0"], self.r, self.s.k, self.s.metric,
                      self.s.normalize)


class IVFSearcher:
    """IVF routed at d_c, storing the D-dim vectors so that d_s is chosen per search."""

    def __init__(self, s, nlist, d_c, d_s=None):
        self.index = IVFIndex(s.D, nlist, d_c=d_c, d_s=d_s, metric=s.metric, normalize=s.normalize,
                              seed=s.seed)
        self.index.train(training_sample(s.xb, nlist * self.index.max_points_per_centroid, s.seed))
        self.index.add(s.xb)
        self._last_d_s = None

    def search(self, q, k, d_s, nprobe):
        if self._last_d_s not in (None, d_s):
            # the sweep runs d_s by d_s: drop the N x d_s prefixes IVFIndex cached for the last
            # one, so at most one cached copy lives beside the stored vectors (1M x 768: 3 GB)
            self.index.drop_prefix_cache(self._last_d_s)
        self._last_d_s = d_s
        D, I = self.index.search(q, k, nprobe=nprobe, d_s=d_s)
        return D, I, self.index.last_search_flops

    def to_faiss(self, params):
        return to_faiss(self.index, writable=True)


def _pq_kwargs(s):
    return dict(normalize=s.normalize, seed=s.seed, allow_small=s.N < PQ_FULL_TRAIN,
                opq_niter=s.opq_niter)


class PQSearcher:
    def __init__(self, s, d, M):
        self.index = PQIndex(s.D, M, 8, opq=True, prefix_dim=d, **_pq_kwargs(s))
        self.index.train(training_sample(s.xb, 256 * 256, s.seed))
        self.index.add(s.xb)

    def search(self, q, k):
        D, I = self.index.search(q, k)
        return D, I, self.index.last_search_flops

    def to_faiss(self, params):
        return to_faiss(self.index)


class IVFPQSearcher:
    def __init__(self, s, nlist, d, M):
        self.index = IVFPQIndex(s.D, nlist, M, 8, d_c=d, d_s=d, opq=True, metric=s.metric,
                                **_pq_kwargs(s))
        self.index.train(training_sample(s.xb, max(256 * nlist, 256 * 256), s.seed))
        self.index.add(s.xb)

    def search(self, q, k, nprobe):
        D, I = self.index.search(q, k, nprobe=nprobe)
        return D, I, self.index.last_search_flops

    def to_faiss(self, params):
        return to_faiss(self.index)


def _sq_index(s, d, qtype):
    """SQIndex on the d-prefixes, ranges trained on a sample (faiss's QT_8bit minmax)."""
    index = SQIndex(s.D, qtype, s.metric, prefix_dim=d, normalize=s.normalize)
    index.train(training_sample(s.xb, 65536, s.seed))
    index.add(s.xb)
    return index


class SQSearcher:
    """faiss IndexScalarQuantizer (8bit / fp16) on the d-prefix."""

    def __init__(self, s, d, qtype):
        self.s, self.d = s, d
        self.index = _sq_index(s, d, qtype)

    def search(self, q, k):
        D, I = self.index.search(q, k)
        return D, I, cost.exact_flops(self.d, self.s.N)

    def to_faiss(self, params):
        return to_faiss(self.index)


class SQFunnelSearcher:
    """Shortlist k0 with SQ8 at d0, re-rank exactly at r (faiss IndexRefine over the SQ index)."""

    def __init__(self, s, d0, r):
        self.s, self.d0, self.r = s, d0, r
        self.index = _sq_index(s, d0, "8bit")

    def search(self, q, k, k0):
        _, I = self.index.search(q, k0)
        D, I = rerank(I, self.s.xb, q, self.r, k, self.s.metric, self.s.normalize)
        return D, I, cost.funnel_flops(self.d0, self.s.N, [(self.r, k0)])

    def to_faiss(self, params):
        from ..faiss_bridge.serve import refine_prefix
        return refine_prefix(to_faiss(self.index), self.s.xb, params["k0"], self.r, self.s.k,
                             self.s.metric, self.s.normalize)


class HNSWSearcher:
    """HNSW graph on the d_c-prefixes (faiss's build, `hnsw.HNSWIndex`, graph seed 12345 + seed);
    the re-scoring dims d_s and efSearch are chosen per search (AdANNS-HNSW-D)."""

    def __init__(self, s, M, d_c):
        self.s = s
        self.index = HNSWIndex(s.D, M, ef_construction=grid.HNSW_EF_CONSTRUCTION, metric=s.metric,
                               normalize=s.normalize, d_c=d_c, d_s=d_c, seed=12345 + s.seed)
        self.index.add(s.xb)

    def search(self, q, k, d_s, ef_search):
        D, I = self.index.search(q, k, ef_search=ef_search, d_s=d_s)
        return D, I, self.index.last_search_flops

    def to_faiss(self, params):
        from ..faiss_bridge.serve import hnsw
        return hnsw(self.index, params["ef_search"], self.s.k, params["d_s"])


# family -> searcher class; a new family adds its searcher here (see grid.py)
BUILDERS = {"flat": FlatSearcher, "funnel": FunnelSearcher, "ivf": IVFSearcher,
            "pq": PQSearcher, "ivfpq": IVFPQSearcher, "sq": SQSearcher, "sqfunnel": SQFunnelSearcher,
            "hnsw": HNSWSearcher}
# sweep axis along which cost grows, so a recall of 1.0 ends the sweep (see the docstring)
MONOTONE = {"funnel": "k0", "ivf": "nprobe", "ivfpq": "nprobe", "sqfunnel": "k0", "hnsw": "ef_search"}


def build(setting, family, build_params):
    if family == "pq" and setting.metric != "l2":
        raise ValueError("PQ in adanns_ref serves metric 'l2' only; drop 'pq' from the families")
    return BUILDERS[family](setting, **build_params)


def export_searcher(setting, config):
    """Rebuild the searcher of one chosen configuration as it will be served (an IVF gets its
    query-time d_s as build d_s, so the faiss form stores only the d_s-prefixes)."""
    params = dict(config["build"])
    if config["family"] == "ivf":
        params["d_s"] = config["sweep"]["d_s"]
    return build(setting, config["family"], params)


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def time_one_thread(fn, q):
    """Seconds per query of fn(q) with numba and BLAS limited to one thread."""
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with blas_single_thread():
            _, sec = _timed(lambda: fn(q))
    finally:
        numba.set_num_threads(threads)
    return sec / max(1, q.shape[0])


def config_key(family, params):
    return family + " " + " ".join(f"{name}={value}" for name, value in params.items())


def measure_build(setting, spec, xq, gt, split, n_timed_1t=100):
    """Build spec's index and run its sweep -> (rows, n_pruned). gt: (nq, >= k) exact ids;
    split: dict with "val" and "test" query row indices."""
    k, family = setting.k, spec["family"]
    tracemalloc.start()
    try:
        searcher, build_s = _timed(lambda: build(setting, family, spec["build"]))
        rows, pruned, done_axis = [], 0, set()
        axis = MONOTONE.get(family)
        for sweep in spec["sweep"]:
            group = tuple((a, v) for a, v in sweep.items() if a != axis)
            if group in done_axis:
                pruned += 1
                continue
            searcher.search(xq[:1], k, **sweep)  # warm-up: loads numba kernels, fills caches
            (D, I, flops), sec = _timed(lambda: searcher.search(xq, k, **sweep))
            ms_1t = 1e3 * time_one_thread(lambda q: searcher.search(q, k, **sweep), xq[:n_timed_1t])
            params = {**spec["build"], **sweep}
            row = {"config": config_key(family, params), "family": family, **params,
                   "recall_val": knn_recall(gt[split["val"]], I[split["val"]], k, k),
                   "recall_test": knn_recall(gt[split["test"]], I[split["test"]], k, k),
                   "mflops": float(np.mean(flops)) / 1e6, "ms_1t": ms_1t,
                   "ms_all": 1e3 * sec / max(1, xq.shape[0]),
                   "bytes": grid.bytes_per_vector(family, params), "build_s": build_s,
                   "build": dict(spec["build"]), "sweep": dict(sweep)}
            rows.append(row)
            if axis is not None and row["recall_val"] >= 1.0:
                done_axis.add(group)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    for row in rows:
        row["peak_mb"] = peak / 2**20
    return rows, pruned
