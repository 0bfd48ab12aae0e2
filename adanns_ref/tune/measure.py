"""Build one index of the grid, measure every search-time setting swept on it, on its faiss form.

Per configuration (one row):

- ``recall_val`` / ``recall_test``: k-recall@k (`metrics.knn_recall`) of the ids returned by the
  configuration's *faiss form* (`families.Searcher.faiss_form`, the object `--export` writes)
  against the exact top-k at full D, on the validation and test halves of the queries;
  ``numba_recall_test`` is the same on this project's search (equal but for near-ties);
- ``ms_1t`` / ``ms_all`` (and ``_min`` / ``_max`` / ``_q1``): the faiss form's ms/query
  (`latency.time_faiss`: 1 and all threads, batch and one query per call, median of >= 5
  passes after a warm-up, on a fixed sample of queries); ``numba_ms_1t`` / ``numba_ms_all``:
  this project's numba search, timed once on the same sample, for reference only;
- ``mflops``: FLOPs per query of the cost model (`cost.py`; IVF, PQ and HNSW measured from the
  lists / nodes actually visited), in millions;
- ``bytes``: stored bytes per database vector of the faiss form (`grid.bytes_per_vector`);
- ``build_s``: seconds to train and fill the index (shared by the rows of one build);
- ``peak_mb``: peak numpy heap (tracemalloc) during build and sweep; numba-internal buffers and
  faiss's C++ heap are not counted.

Search-time sweeps stop early where that is safe: along nprobe (IVF, IVFPQ), the shortlist k0
(funnels) and efSearch (HNSW) the cost grows, so once the validation recall is 1.0 the larger
settings are dominated and are skipped (counted as pruned).
"""
import time
import tracemalloc

import numba
import numpy as np

from ..core import cost
from ..core.threads import blas_single_thread
from ..core.truncate import prefix
from ..evaluation.metrics import knn_recall
from ..faiss_bridge import import_faiss, to_faiss
from ..faiss_bridge.serve import flat_prefix, funnel, hnsw, refine_prefix, set_nprobe
from ..funnel.funnel import rerank
from ..indices.flat import FlatIndex
from ..indices.hnsw.index import HNSWIndex
from ..indices.ivf import IVFIndex
from ..indices.ivfpq import IVFPQIndex
from ..indices.pqindex import PQIndex
from ..indices.sqindex import SQIndex
from ..search.knn import knn_search
from . import families, grid, latency
from .families import Refined, Searcher, training_sample

PQ_FULL_TRAIN = 39 * 256  # faiss's fewest training points for 256 centroids without a warning


class Setting:
    """What every builder gets: the base (N, D) float32 (PCA-rotated if pca is given), the search
    metric ("l2" | "ip"), normalize, k, seed, quick, and pca: None or (mean (D,) float32,
    A (D, D) float32, eigenvalues (D,)) from `data.fit_pca`, which the served form applies first."""

    def __init__(self, xb, metric, normalize, k, seed, quick, pca=None):
        self.xb, self.metric, self.normalize = xb, metric, normalize
        self.k, self.seed, self.quick, self.pca = k, seed, quick, pca
        self.N, self.D = xb.shape
        self.opq_niter = 3 if quick else 25


def pca_matrix(faiss, mean, A, eigenvalues):
    """faiss PCAMatrix (D -> D) applying y = A (x - mean): our fitted axes, nothing retrained."""
    d_out, D = A.shape
    pca = faiss.PCAMatrix(D, d_out, 0, False)
    faiss.copy_array_to_vector(np.ascontiguousarray(mean, np.float32), pca.mean)
    faiss.copy_array_to_vector(np.asarray(eigenvalues, np.float32), pca.eigenvalues)
    faiss.copy_array_to_vector(A.ravel(), pca.PCAMat)
    faiss.copy_array_to_vector(A.ravel(), pca.A)
    faiss.copy_array_to_vector(-(A @ mean).astype(np.float32), pca.b)
    pca.have_bias = True
    pca.is_trained = True
    return pca


def served(setting, form):
    """The faiss index a user gets: `form`, behind the PCAMatrix if the run used --pca."""
    if setting.pca is None:
        return form
    faiss = import_faiss()
    pca = pca_matrix(faiss, *setting.pca)
    wrapper = faiss.IndexPreTransform(pca, form)
    wrapper.referenced_objects = [pca, form]  # the wrapper does not own them: keep them alive
    return wrapper


class FlatSearcher(Searcher):
    def __init__(self, s, d):
        super().__init__(s)
        self.d = d
        self.index = FlatIndex(d, s.metric)
        self.index.add(prefix(s.xb, d, s.normalize))

    def search(self, q, k):
        D, I = self.index.search(prefix(q, self.d, self.s.normalize), k)
        return D, I, cost.exact_flops(self.d, self.s.N)

    def make_form(self, sweep):
        return flat_prefix(self.s.xb, self.d, self.s.metric, self.s.normalize)


class FunnelSearcher(Refined):
    """Shortlist k0 by exact search on the d0-prefixes (kept), re-rank at r from the base."""

    def __init__(self, s, d0, r):
        super().__init__(s)
        self.d0, self.r = d0, r
        self.z0 = prefix(s.xb, d0, s.normalize)

    def search(self, q, k, k0):
        _, I = knn_search(prefix(q, self.d0, self.s.normalize), self.z0, k0, self.s.metric)
        D, I = rerank(I, self.s.xb, q, self.r, k, self.s.metric, self.s.normalize)
        return D, I, cost.funnel_flops(self.d0, self.s.N, [(self.r, k0)])

    def make_form(self, sweep):
        return funnel(self.s.xb, self.d0, sweep["k0"], self.r, self.s.k, self.s.metric,
                      self.s.normalize)


class IVFSearcher(Searcher):
    """IVF routed at d_c, storing the D-dim vectors so that d_s is chosen per search; the faiss
    form of a d_s stores only the d_s-prefixes (same centroids, lists re-filled)."""

    def __init__(self, s, nlist, d_c, d_s=None):
        super().__init__(s)
        self.nlist, self.d_c = nlist, d_c
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

    def form_key(self, sweep):
        return sweep["d_s"]

    def make_form(self, sweep):
        if sweep["d_s"] == self.index.d_s:
            return to_faiss(self.index, writable=True)
        at = IVFIndex(self.s.D, self.nlist, d_c=self.d_c, d_s=sweep["d_s"], metric=self.s.metric,
                      normalize=self.s.normalize, seed=self.s.seed)
        at.set_centroids(self.index.centroids)
        at.add(self.s.xb)
        return to_faiss(at, writable=True)

    def set_params(self, form, sweep):
        set_nprobe(form, sweep["nprobe"])


def _pq_kwargs(s):
    return dict(normalize=s.normalize, seed=s.seed, allow_small=s.N < PQ_FULL_TRAIN,
                opq_niter=s.opq_niter)


class PQSearcher(Searcher):
    def __init__(self, s, d, M):
        super().__init__(s)
        self.index = PQIndex(s.D, M, 8, opq=True, prefix_dim=d, **_pq_kwargs(s))
        self.index.train(training_sample(s.xb, 256 * 256, s.seed))
        self.index.add(s.xb)

    def search(self, q, k):
        D, I = self.index.search(q, k)
        return D, I, self.index.last_search_flops

    def make_form(self, sweep):
        return to_faiss(self.index)


class IVFPQSearcher(Searcher):
    def __init__(self, s, nlist, d, M):
        super().__init__(s)
        self.index = IVFPQIndex(s.D, nlist, M, 8, d_c=d, d_s=d, opq=True, metric=s.metric,
                                **_pq_kwargs(s))
        self.index.train(training_sample(s.xb, max(256 * nlist, 256 * 256), s.seed))
        self.index.add(s.xb)

    def search(self, q, k, nprobe):
        D, I = self.index.search(q, k, nprobe=nprobe)
        return D, I, self.index.last_search_flops

    def make_form(self, sweep):
        return to_faiss(self.index)

    def set_params(self, form, sweep):
        set_nprobe(form, sweep["nprobe"])


def _sq_index(s, d, qtype):
    """SQIndex on the d-prefixes, ranges trained on a sample (faiss's QT_8bit minmax)."""
    index = SQIndex(s.D, qtype, s.metric, prefix_dim=d, normalize=s.normalize)
    index.train(training_sample(s.xb, 65536, s.seed))
    index.add(s.xb)
    return index


class SQSearcher(Searcher):
    """faiss IndexScalarQuantizer (8bit / fp16) on the d-prefix."""

    def __init__(self, s, d, qtype):
        super().__init__(s)
        self.d = d
        self.index = _sq_index(s, d, qtype)

    def search(self, q, k):
        D, I = self.index.search(q, k)
        return D, I, cost.exact_flops(self.d, self.s.N)

    def make_form(self, sweep):
        return to_faiss(self.index)


class SQFunnelSearcher(Refined):
    """Shortlist k0 with SQ8 at d0, re-rank exactly at r (faiss IndexRefine over the SQ index)."""

    def __init__(self, s, d0, r):
        super().__init__(s)
        self.d0, self.r = d0, r
        self.index = _sq_index(s, d0, "8bit")

    def search(self, q, k, k0):
        _, I = self.index.search(q, k0)
        D, I = rerank(I, self.s.xb, q, self.r, k, self.s.metric, self.s.normalize)
        return D, I, cost.funnel_flops(self.d0, self.s.N, [(self.r, k0)])

    def make_form(self, sweep):
        return refine_prefix(to_faiss(self.index), self.s.xb, sweep["k0"], self.r, self.s.k,
                             self.s.metric, self.s.normalize)


class HNSWSearcher(Searcher):
    """HNSW graph on the d_c-prefixes (faiss's build, `hnsw.HNSWIndex`, graph seed 12345 + seed);
    the re-scoring dims d_s and efSearch are chosen per search (AdANNS-HNSW-D)."""

    def __init__(self, s, M, d_c):
        super().__init__(s)
        self.index = HNSWIndex(s.D, M, ef_construction=grid.HNSW_EF_CONSTRUCTION, metric=s.metric,
                               normalize=s.normalize, d_c=d_c, d_s=d_c, seed=12345 + s.seed)
        self.index.add(s.xb)

    def search(self, q, k, d_s, ef_search):
        D, I = self.index.search(q, k, ef_search=ef_search, d_s=d_s)
        return D, I, self.index.last_search_flops

    def form_key(self, sweep):
        return sweep["d_s"]

    def make_form(self, sweep):
        return hnsw(self.index, sweep["ef_search"], self.s.k, sweep["d_s"])

    def set_params(self, form, sweep):
        faiss = import_faiss()
        ef = sweep["ef_search"]
        faiss.ParameterSpace().set_index_parameter(form, "efSearch", ef)
        if isinstance(faiss.downcast_index(form), faiss.IndexRefine):
            form.k_factor = (max(ef, self.s.k) + 0.5) / self.s.k   # as faiss_serve.hnsw


# family -> searcher class; a new family adds its searcher here (see grid.py)
BUILDERS = {"flat": FlatSearcher, "funnel": FunnelSearcher, "ivf": IVFSearcher,
            "pq": PQSearcher, "ivfpq": IVFPQSearcher, "sq": SQSearcher,
            "sqfunnel": SQFunnelSearcher, "hnsw": HNSWSearcher, **families.BUILDERS}
# sweep axis along which cost grows, so a recall of 1.0 ends the sweep (see the docstring)
MONOTONE = {"funnel": "k0", "ivf": "nprobe", "ivfpq": "nprobe", "sqfunnel": "k0",
            "hnsw": "ef_search", **families.MONOTONE}


def build(setting, family, build_params):
    if family == "pq" and setting.metric != "l2":
        raise ValueError("PQ in adanns_ref serves metric 'l2' only; drop 'pq' from the families")
    return BUILDERS[family](setting, **build_params)


def export_searcher(setting, config):
    """Build the searcher of one chosen configuration (its `faiss_form(config["sweep"])` is what
    `--export` writes)."""
    return build(setting, config["family"], dict(config["build"]))


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


def _row(setting, spec, sweep, searcher, queries, gt, split, timing, repeats):
    """One configuration's row: numba search (recall for reference, MFLOPs, numba ms), then its
    faiss form (recall, latency) on the user's own (un-rotated) queries."""
    k, family, faiss = setting.k, spec["family"], import_faiss()
    xq, xq_raw = queries
    xt = xq[timing]
    searcher.search(xt[:1], k, **sweep)  # warm-up: loads numba kernels, fills caches
    (_, I, flops), sec = _timed(lambda: searcher.search(xq, k, **sweep))
    numba_1t = time_one_thread(lambda q: searcher.search(q, k, **sweep), xt)
    form = served(setting, searcher.faiss_form(sweep))
    _, I_f = form.search(xq_raw, k)
    params = {**spec["build"], **sweep}
    row = {"config": config_key(family, params), "family": family, **params,
           "recall_val": knn_recall(gt[split["val"]], I_f[split["val"]], k, k),
           "recall_test": knn_recall(gt[split["test"]], I_f[split["test"]], k, k),
           "numba_recall_test": knn_recall(gt[split["test"]], I[split["test"]], k, k),
           "mflops": float(np.mean(flops)) / 1e6,
           "numba_ms_1t": 1e3 * numba_1t, "numba_ms_all": 1e3 * sec / max(1, xq.shape[0]),
           "bytes": grid.bytes_per_vector(family, params),
           "build": dict(spec["build"]), "sweep": dict(sweep)}
    row.update(latency.time_faiss(faiss, form, xq_raw[timing], k, repeats))
    return row


def measure_build(setting, spec, queries, gt, split, timing, repeats=latency.REPEATS):
    """Build spec's index and run its sweep -> (rows, n_pruned). queries: (xq as the indices
    see it (PCA-rotated with --pca), xq as the user has it), each (nq, D) float32; gt: (nq, >= k)
    exact ids; split: dict with "val" and "test" query row indices; timing: the rows timed."""
    family = spec["family"]
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
            row = _row(setting, spec, sweep, searcher, queries, gt, split, timing, repeats)
            row["build_s"] = build_s
            rows.append(row)
            if axis is not None and row["recall_val"] >= 1.0:
                done_axis.add(group)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    for row in rows:
        row["peak_mb"] = peak / 2**20
    return rows, pruned
