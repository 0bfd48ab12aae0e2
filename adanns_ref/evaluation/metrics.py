"""Retrieval metrics: label metrics of the MRL/AdANNS papers and k-recall@N of ANN search.

Notation (SPEC §3): query i has label y_i; its returned ids I[i, 0..k-1] have database labels
l_i1..l_ik. A hit at rank r is [l_ir == y_i]; an id -1 (missing result) is always a miss
(the original notebooks indexed ``labels[-1]`` and so scored a missing result with the label of
the last database item). n_rel(y) = number of database items with label y.

- top-1 accuracy     mean_i [l_i1 == y_i]                       (1-NN label accuracy)
- hit-rate@k         mean_i [any_r l_ir == y_i]                 ("top-k" in the repos)
- precision@k        mean_i hits_i / k
- AP@k               sum_{r: hit} precision@r / min(k, n_rel(y_i)); mAP@k = mean_i AP@k
- recall@k           mean_i hits_i / n_rel(y_i)  (fraction of the relevant database items that
                     the top k found, so at most k / n_rel)
- k-recall@N         mean_i |exact top-k ids ∩ returned top-N ids| / k
- mAP@R              mean_i (1 / R_i) sum_{r <= R_i, hit} precision@r   (Musgrave, Belongie & Lim,
                     "A Metric Learning Reality Check", 2020), R_i = n_rel(y_i), optionally capped:
                     R_i = min(n_rel(y_i), max_r)
- R-precision        mean_i hits_i(R_i) / R_i  (hits among the first R_i results)

mAP@R and R-precision need I to hold at least max_i R_i columns (search with
k = `r_values(...).max()`); fewer raise ValueError instead of silently scoring a shorter list.
Unlike mAP@10 they do not saturate when the first 10 results are right: with ~60 relevant
items a query scores 1 only if all 60 come first. Ties: every metric scores the ranked list I
as given; equal distances are ordered by the search (the project's exact search and faiss put
the smaller id first), so a metric is deterministic for a deterministic search.

A query whose label has no relevant database item scores AP = recall = AP@R = R-precision = 0
(it cannot have hits).

mode="adanns" reproduces the numbers of the RAIVNLab AdANNS/MRL notebooks (compat only): AP@k
divides by k (one hit at rank 1 scores 1/k) and recall@k divides hits by a hard-coded 1300
(ImageNet-1K training images per class), whatever the database holds.

All metrics are vectorised NumPy and return Python floats; an empty query set raises ValueError
(a mean over zero queries is undefined).
"""
import numbers

import numpy as np

from ..core.validate import as_float32_matrix, as_ids, as_int, as_labels, check_metric

ADANNS_RECALL_DENOMINATOR = 1300
FLT_MAX = float(np.finfo(np.float32).max)


def _check_k(k, width, name="k", what="I"):
    k = as_int(k, name, 1)
    if k > width:
        raise ValueError(f"{name}={k} exceeds the {width} columns of {what}; search with a larger k "
                         f"or lower {name}")
    return k


def _require_queries(nq, name):
    if nq == 0:
        raise ValueError(f"{name} has no rows: a metric averaged over zero queries is undefined")


def _check_mode(mode):
    if mode not in ("standard", "adanns"):
        raise ValueError(f"mode must be 'standard' or 'adanns', got {mode!r}")
    return mode


def _hits(I, db_labels, query_labels, k):
    """Validate; return the boolean hit matrix (nq, k) and the int64 query and database labels."""
    db_labels = as_labels(db_labels, "db_labels")
    I = as_ids(I, "I", n_db=len(db_labels))
    _require_queries(I.shape[0], "I")
    query_labels = as_labels(query_labels, "query_labels", n=I.shape[0])
    k = _check_k(k, I.shape[1])
    ids = I[:, :k]
    valid = ids >= 0
    # np.where keeps -1 from indexing labels[-1]; `valid` then marks it a miss.
    neighbour_labels = db_labels[np.where(valid, ids, 0)]
    return valid & (neighbour_labels == query_labels[:, None]), query_labels, db_labels


def _n_relevant(query_labels, db_labels):
    """n_rel(y_i): how many database items carry each query's label (0 if none)."""
    values, counts = np.unique(db_labels, return_counts=True)
    if values.size == 0:
        return np.zeros(len(query_labels), np.int64)
    pos = np.minimum(np.searchsorted(values, query_labels), values.size - 1)
    return np.where(values[pos] == query_labels, counts[pos], 0)


def _mean(per_query):
    return float(per_query.mean())


def top1_accuracy(I, db_labels, query_labels):
    """Fraction of queries whose first result has the query's label (k = 1)."""
    hits, _, _ = _hits(I, db_labels, query_labels, 1)
    return _mean(hits[:, 0])


def hit_rate_at_k(I, db_labels, query_labels, k):
    """Fraction of queries with at least one correct label among the first k results."""
    hits, _, _ = _hits(I, db_labels, query_labels, k)
    return _mean(hits.any(axis=1))


def precision_at_k(I, db_labels, query_labels, k):
    """Mean over queries of (number of correct labels in the first k) / k."""
    hits, _, _ = _hits(I, db_labels, query_labels, k)
    return _mean(hits.sum(axis=1) / k)


def map_at_k(I, db_labels, query_labels, k, mode="standard"):
    """mAP@k. standard: AP divided by min(k, n_rel); "adanns": divided by k (repo quirk)."""
    mode = _check_mode(mode)
    hits, query_labels, db_labels = _hits(I, db_labels, query_labels, k)
    precision_at_rank = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    summed = (precision_at_rank * hits).sum(axis=1)
    if mode == "adanns":
        return _mean(summed / k)
    denom = np.minimum(k, _n_relevant(query_labels, db_labels))
    return _mean(np.divide(summed, denom, out=np.zeros_like(summed), where=denom > 0))


def recall_at_k(I, db_labels, query_labels, k, mode="standard"):
    """recall@k. standard: hits / n_rel (fraction of relevant items found); "adanns": hits / 1300."""
    mode = _check_mode(mode)
    hits, query_labels, db_labels = _hits(I, db_labels, query_labels, k)
    n_hits = hits.sum(axis=1).astype(np.float64)
    if mode == "adanns":
        return _mean(n_hits / ADANNS_RECALL_DENOMINATOR)
    n_rel = _n_relevant(query_labels, db_labels)
    return _mean(np.divide(n_hits, n_rel, out=np.zeros_like(n_hits), where=n_rel > 0))


def knn_recall(I_exact, I_ann, k, n):
    """k-recall@n = mean_i |I_exact[i, :k] ∩ I_ann[i, :n]| / k  (set intersection).

    I_exact: (nq, >= k) ids of exact search (the ground truth; for MRs, exact search at full D).
    I_ann: (nq, >= n) ids returned by the index. -1 entries of I_ann never match. The ground
    truth must be complete: a -1 among I_exact[:, :k] raises ValueError (k exceeds the database).
    """
    I_exact = as_ids(I_exact, "I_exact")
    I_ann = as_ids(I_ann, "I_ann")
    if I_exact.shape[0] != I_ann.shape[0]:
        raise ValueError(f"I_exact has {I_exact.shape[0]} rows but I_ann has {I_ann.shape[0]}; "
                         f"pass results for the same queries")
    k = _check_k(k, I_exact.shape[1], "k", "I_exact")
    n = _check_k(n, I_ann.shape[1], "n", "I_ann")
    truth, returned = I_exact[:, :k], I_ann[:, :n]
    if (truth < 0).any():
        q = int(np.flatnonzero((truth < 0).any(axis=1))[0])
        raise ValueError(f"I_exact row {q} has -1 among its first k={k} ids (the database holds "
                         f"fewer than k items); lower k")
    nq = truth.shape[0]
    _require_queries(nq, "I_exact")
    # Each row's distinct ids from both sides, as (row, id) pairs; a pair present in both sets
    # appears exactly twice and sorts next to its twin. No arithmetic on ids (any int64 id works).
    rows_t, ids_t = _row_sets(truth)
    rows_r, ids_r = _row_sets(returned)
    rows, ids = np.concatenate([rows_t, rows_r]), np.concatenate([ids_t, ids_r])
    order = np.lexsort((ids, rows))
    rows, ids = rows[order], ids[order]
    found = int(((rows[1:] == rows[:-1]) & (ids[1:] == ids[:-1])).sum())
    return float(found / (nq * k))


def _row_sets(ids):
    """(row, id) of the distinct ids >= 0 of each row (set semantics), as two 1-D int64 arrays."""
    srt = np.sort(ids, axis=1)
    keep = srt >= 0
    keep[:, 1:] &= srt[:, 1:] != srt[:, :-1]
    rows = np.broadcast_to(np.arange(len(ids), dtype=np.int64)[:, None], srt.shape)
    return rows[keep], srt[keep]


def knn_recall_tie_aware(D_exact, D_ann, k, n, metric="l2", rtol=1e-5, atol=1e-6):
    """Tie-aware k-recall@n from distances alone.

    For query i let t_i = D_exact[i, k-1] (the k-th exact distance). A returned item j < n counts
    if its distance is within t_i + tol (l2; for "ip" similarity >= t_i - tol), tol = atol +
    rtol * |t_i|; the count is capped at k and divided by k, then averaged over queries. Items
    tied with the k-th neighbour are therefore not penalised, as faiss's
    ``contrib.evaluation.check_ref_knn_with_draws`` allows.

    D_exact: (nq, >= k) distances of exact search, sorted best first (faiss order).
    D_ann: (nq, >= n) the *true* distances (at the ground-truth representation) of the ids the
    index returned. An approximate index (PQ) returns approximate distances: recompute them first,
    e.g. ``funnel.rerank(I_ann, xb, xq, dim=D, k=n, normalize=False)``. Missing results carry
    +FLT_MAX (l2) / -FLT_MAX (ip) and never count. A ground truth with a missing k-th result
    raises ValueError.
    """
    metric = check_metric(metric)
    D_exact = as_float32_matrix(D_exact, "D_exact").astype(np.float64)
    D_ann = as_float32_matrix(D_ann, "D_ann").astype(np.float64)
    if D_exact.shape[0] != D_ann.shape[0]:
        raise ValueError(f"D_exact has {D_exact.shape[0]} rows but D_ann has {D_ann.shape[0]}; "
                         f"pass results for the same queries")
    k = _check_k(k, D_exact.shape[1], "k", "D_exact")
    n = _check_k(n, D_ann.shape[1], "n", "D_ann")
    for name, value in (("rtol", rtol), ("atol", atol)):
        if not isinstance(value, numbers.Real) or not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    _require_queries(D_exact.shape[0], "D_exact")
    kth = D_exact[:, k - 1]
    if (np.abs(kth) >= FLT_MAX).any():
        q = int(np.flatnonzero(np.abs(kth) >= FLT_MAX)[0])
        raise ValueError(f"D_exact row {q} has no k-th result (distance +-FLT_MAX, the database holds "
                         f"fewer than k={k} items); lower k")
    tol = atol + rtol * np.abs(kth)
    returned = D_ann[:, :n]
    if metric == "l2":
        counted = returned <= (kth + tol)[:, None]
    else:
        counted = returned >= (kth - tol)[:, None]
    counted &= np.abs(returned) < FLT_MAX
    return float(np.minimum(counted.sum(axis=1), k).mean() / k)


def r_values(db_labels, query_labels, max_r=None):
    """R_i = n_rel(y_i) (database items with query i's label), or min(n_rel(y_i), max_r):
    int64 (nq,). The k to search with for `map_at_r` / `r_precision` is their maximum."""
    db_labels = as_labels(db_labels, "db_labels")
    query_labels = as_labels(query_labels, "query_labels")
    r = _n_relevant(query_labels, db_labels).astype(np.int64)
    if max_r is not None:
        r = np.minimum(r, as_int(max_r, "max_r", 1))
    return r


def _hits_at_r(I, db_labels, query_labels, max_r):
    """(hit matrix (nq, max R) restricted to ranks r <= R_i, R (nq,)) after validation."""
    db_labels = as_labels(db_labels, "db_labels")
    I = as_ids(I, "I", n_db=len(db_labels))
    _require_queries(I.shape[0], "I")
    query_labels = as_labels(query_labels, "query_labels", n=I.shape[0])
    r = r_values(db_labels, query_labels, max_r)
    width = max(int(r.max()), 1)
    if width > I.shape[1]:
        q = int(np.argmax(r))
        raise ValueError(f"query {q} has R = {width} relevant database items but I has only "
                         f"{I.shape[1]} columns; search with k = {width} (r_values(...).max()) or "
                         f"cap R with max_r")
    ids = I[:, :width]
    valid = ids >= 0
    hits = valid & (db_labels[np.where(valid, ids, 0)] == query_labels[:, None])
    hits &= np.arange(width)[None, :] < r[:, None]
    return hits, r


def average_precision_at_r(I, db_labels, query_labels, max_r=None):
    """AP@R per query, float64 (nq,): (1 / R_i) sum_{r <= R_i} [hit at r] * hits_i(r) / r.
    I: (nq, >= max R) ranked ids, -1 = missing (a miss). 0 for a query with R_i = 0."""
    hits, r = _hits_at_r(I, db_labels, query_labels, max_r)
    precision = np.cumsum(hits, axis=1) / np.arange(1, hits.shape[1] + 1)
    summed = (precision * hits).sum(axis=1)
    return np.divide(summed, r, out=np.zeros(len(r)), where=r > 0)


def map_at_r(I, db_labels, query_labels, max_r=None):
    """mAP@R: the mean over queries of `average_precision_at_r`."""
    return _mean(average_precision_at_r(I, db_labels, query_labels, max_r))


def r_precision_per_query(I, db_labels, query_labels, max_r=None):
    """R-precision per query, float64 (nq,): hits among the first R_i results / R_i (0 if R_i = 0)."""
    hits, r = _hits_at_r(I, db_labels, query_labels, max_r)
    return np.divide(hits.sum(axis=1).astype(np.float64), r, out=np.zeros(len(r)), where=r > 0)


def r_precision(I, db_labels, query_labels, max_r=None):
    """R-precision: the mean over queries of `r_precision_per_query`."""
    return _mean(r_precision_per_query(I, db_labels, query_labels, max_r))
