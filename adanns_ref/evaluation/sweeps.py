"""Sweeps: one index family run over a grid of parameters, each configuration a row for
`evaluation.select` (pareto_front, best_under_budget, select_on_validation).

`hnsw_rows`: AdANNS-HNSW-D, one HNSW graph built once and searched at every (d_c, d_s, ef).
`adannsopq_sweep`: AdANNS-OPQ, (OPQ+)PQ at every byte budget M and admissible prefix d.
Timing lives here, not in the algorithm modules.
"""
import time

import numpy as np

from . import metrics, select
from ..core import cost
from ..core.validate import as_float32_matrix, as_int, as_k, as_labels, check_prefix_dim
from ..indices.hnsw import HNSWIndex
from ..indices.pqindex import PQIndex


def hnsw_rows(index, q, I_true, k, dims, ef_searches=(16, 64, 256)):
    """Rows for `select` (pareto_front, best_under_budget, select_on_validation): one AdANNS-HNSW-D
    search per (d_c, d_s, ef) of an index built once, dims a list of (d_c, d_s) pairs.

    I_true (nq, >= k): exact neighbour ids of q (e.g. `search.knn.knn_search` at full D). Each row:
    {"index": "hnsw" (d_c = d_s) or "adanns-hnsw", "config" (a unique key), "d_c", "d_s",
    "ef_search", "flops" (mean `cost.hnsw_flops` per query), "ndis" (mean distances per query),
    "bytes" (`cost.bytes_per_vector_hnsw` of the served form), "recall" (k-recall@k)}.
    """
    if not isinstance(index, HNSWIndex):
        raise TypeError(f"index must be an HNSWIndex, got {type(index).__name__}")
    rows = []
    for i, pair in enumerate(dims):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"dims[{i}] must be a (d_c, d_s) pair, got {pair!r}")
        for ef in ef_searches:
            _, I = index.search(q, k, ef_search=ef, d_c=pair[0], d_s=pair[1])
            name = "hnsw" if pair[0] == pair[1] else "adanns-hnsw"
            rows.append({"index": name, "config": f"{name} M={index.M} d_c={pair[0]} d_s={pair[1]} "
                         f"ef_search={ef}", "d_c": int(pair[0]), "d_s": int(pair[1]), "ef_search": int(ef),
                         "bytes": cost.bytes_per_vector_hnsw(pair[0], index.M, pair[1]),
                         "flops": index.last_search_flops,
                         "ndis": float(np.mean(index.last_search_ndis)) if len(q) else 0.0,
                         "recall": metrics.knn_recall(I_true, I, k, k)})
    return rows


def _default_dims(D):
    """Powers of two up to D, plus D."""
    dims, d = [], 1
    while d <= D:
        dims.append(d)
        d *= 2
    return sorted(set(dims + [D]))


def adannsopq_sweep(db, q, db_labels, q_labels, budgets=(4, 8, 16, 32, 64), dims=None, opq=True,
                    k=1, seed=1234, xt=None, allow_small=False, opq_niter=50):
    """AdANNS-OPQ: accuracy of (OPQ+)PQ at every byte budget M and admissible prefix d.

    db (N, D) database embeddings with labels db_labels (N,); q (nq, D) queries with labels
    q_labels; budgets: M values (bytes per vector, nbits = 8); dims: candidate prefix dims
    (default: powers of two up to D, plus D), of which each budget uses those with d >= M and
    d % M == 0; xt: training vectors (default db); k: neighbours searched; seed, allow_small,
    opq_niter: passed to every PQIndex.

    Returns one dict per (M, d), in budget then d order: M, d, bytes, flops, lookups, search_ms
    (wall-clock per query), top1, opq, and best (True for the d with the highest top1 at that M,
    ties to the smaller d: the AdANNS-OPQ choice). A budget with no admissible d raises ValueError.
    """
    db = as_float32_matrix(db, "db", min_rows=1)
    D = db.shape[1]
    q = as_float32_matrix(q, "q", d=D, min_rows=1)
    xt = db if xt is None else as_float32_matrix(xt, "xt", d=D)
    db_labels = as_labels(db_labels, "db_labels", n=db.shape[0])
    q_labels = as_labels(q_labels, "q_labels", n=q.shape[0])
    budgets = [as_int(M, "budget M", low=1) for M in budgets]
    dims = _default_dims(D) if dims is None else sorted({check_prefix_dim(d, D, "dims entry") for d in dims})
    if not budgets or not dims:
        raise ValueError(f"budgets and dims must be non-empty, got budgets={budgets}, dims={dims}")
    k = as_k(k, q.shape[0])
    rows = []
    for M in budgets:
        admissible = [d for d in dims if d >= M and d % M == 0]
        if not admissible:
            raise ValueError(f"budget M={M} has no admissible prefix dim among {dims} (need d >= M "
                             f"and d % M == 0); drop this budget or add dims")
        group = []
        for d in admissible:
            index = PQIndex(D, M, opq=opq, prefix_dim=d, seed=seed, allow_small=allow_small,
                            opq_niter=opq_niter)
            index.train(xt)
            index.add(db)
            t0 = time.perf_counter()
            _, I = index.search(q, k)
            elapsed = time.perf_counter() - t0
            group.append({"M": M, "d": d, "bytes": index.code_size, "flops": index.last_search_flops,
                          "lookups": index.last_search_lookups,
                          "search_ms": 1e3 * elapsed / q.shape[0],
                          "top1": metrics.top1_accuracy(I, db_labels, q_labels), "opq": bool(opq),
                          "best": False})
        best = select.best_under_budget(group, group[0]["bytes"], on="bytes", metric="top1")
        best["best"] = True
        rows.extend(group)
    return rows
