"""Result rows with per-query evidence, so that claims can use paired statistics.

Every evaluated configuration (per training seed) becomes one row (a dict of its parameters,
its seed, costs and accuracies) plus, in the stage's arrays, its per-query outcomes aligned with
the row's position:

    top1_per_query      uint8 (n_rows, nq)    1 if the query's first result has its label
    ap10_per_query      float32 (n_rows, nq)  AP@10 of the query (mAP@10 = their mean)
    recall10_per_query  float32 (n_rows, nq)  |exact top-10 at full D ∩ returned top-10| / 10,
                                              exact search on the same representation
    apr_per_query       float32 (n_rows, nq)  AP@R (mAP@R = their mean), R = the number of
    rprec_per_query     float32 (n_rows, nq)  database items of the query's class; R-precision.
                                              Only where the search returned >= max R ids
                                              (`evaluate(..., at_r=True)`: exp1 on the composite
                                              task, the deciding metric with headroom)

The accuracies in the rows come from `adanns_ref.evaluation.metrics`; the per-query vectors are checked to
average to the same values, so both always describe the same metric. Paired comparisons on the
same queries are far tighter than comparing two independent estimates, and per-query values let
`rules.hierarchical_interval` combine the query and the seed variance.
"""
import numpy as np

from adanns_ref.evaluation.metrics import (average_precision_at_r, knn_recall, map_at_k, map_at_r,
                                           r_precision, r_precision_per_query, top1_accuracy)

from .stage import StageResult

MAP_K = 10
RECALL_K = 10
METRICS = ("top1", "map10", "recall10", "mapr", "rprec")
VECTOR = {"top1": "top1_per_query", "map10": "ap10_per_query", "recall10": "recall10_per_query",
          "mapr": "apr_per_query", "rprec": "rprec_per_query"}


def _check_mean(per_query, expected, what):
    if not np.isclose(per_query.mean(), expected, rtol=0, atol=1e-9):
        raise RuntimeError(f"per-query {what} disagrees with adanns_ref.evaluation.metrics")


def correct_first(I, ytr, yte):
    """uint8 (nq,): the first result exists (id >= 0) and carries the query's label."""
    first = I[:, 0]
    ok = (first >= 0) & (ytr[np.where(first >= 0, first, 0)] == yte)
    _check_mean(ok, top1_accuracy(I, ytr, yte), "top-1")
    return ok.astype(np.uint8)


def average_precision(I, ytr, yte, k=MAP_K):
    """float64 (nq,): AP@k per query, divided by min(k, n_rel) (`metrics.map_at_k` standard)."""
    ids = I[:, :k]
    hits = (ids >= 0) & (ytr[np.where(ids >= 0, ids, 0)] == yte[:, None])
    precision = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    n_rel = np.bincount(ytr, minlength=int(max(ytr.max(), yte.max())) + 1)[yte]
    denom = np.minimum(k, n_rel)
    ap = np.divide((precision * hits).sum(axis=1), denom, out=np.zeros(len(yte)), where=denom > 0)
    _check_mean(ap, map_at_k(I, ytr, yte, k), "AP@10")
    return ap


def neighbour_recall(gt, I, k=RECALL_K):
    """float64 (nq,): |gt[:, :k] ∩ I[:, :k]| / k per query (`metrics.knn_recall` per query)."""
    found = (gt[:, :k, None] == I[:, None, :k]).any(axis=2).sum(axis=1) / k
    _check_mean(found, knn_recall(gt, I, k, k), "10-recall@10")
    return found


def at_r_vectors(I, ytr, yte):
    """{"apr_per_query", "rprec_per_query"}: float64 (nq,) AP@R and R-precision per query
    (`metrics.average_precision_at_r` / `r_precision_per_query`, R uncapped: I needs max R columns)."""
    ap, rp = average_precision_at_r(I, ytr, yte), r_precision_per_query(I, ytr, yte)
    _check_mean(ap, map_at_r(I, ytr, yte), "AP@R")
    _check_mean(rp, r_precision(I, ytr, yte), "R-precision")
    return {"apr_per_query": ap, "rprec_per_query": rp}


class RowCollector:
    """Accumulates rows and their per-query arrays for one experiment table."""

    def __init__(self, ytr, yte, val_idx, test_idx):
        self.ytr, self.yte = ytr, yte
        self.val_idx, self.test_idx = val_idx, test_idx
        self.rows, self.per_query = [], {}

    def _push(self, row, vectors):
        if self.rows and set(vectors) != set(self.per_query):
            raise RuntimeError(f"row {row} has per-query arrays {sorted(vectors)}, the table has "
                               f"{sorted(self.per_query)}")
        for name, v in vectors.items():
            self.per_query.setdefault(name, []).append(v)
        self.rows.append(row)
        return row

    def evaluate(self, I, gt=None, prefix="", at_r=False):
        """Metrics and per-query vectors of a search result I (nq, k): top-1 and mAP@10, and
        10-recall@10 against the exact ids gt when given, mAP@R and R-precision when at_r (I
        then needs max R columns), on all, validation and test queries. Keys get `prefix`."""
        vectors = {"top1_per_query": correct_first(I, self.ytr, self.yte),
                   "ap10_per_query": average_precision(I, self.ytr, self.yte).astype(np.float32)}
        if at_r:
            vectors.update({k: v.astype(np.float32) for k, v in at_r_vectors(I, self.ytr, self.yte).items()})
        if gt is not None:
            vectors["recall10_per_query"] = neighbour_recall(gt, I).astype(np.float32)
        metrics = {}
        for name, vec in VECTOR.items():
            if vec in vectors:
                v = vectors[vec].astype(np.float64)
                metrics.update({name: float(v.mean()), f"{name}_val": float(v[self.val_idx].mean()),
                                f"{name}_test": float(v[self.test_idx].mean())})
        return ({prefix + k: v for k, v in metrics.items()},
                {prefix + k: v for k, v in vectors.items()})

    def add_retrieval(self, row, I, gt=None):
        metrics, vectors = self.evaluate(I, gt)
        return self._push(dict(row, **metrics), vectors)

    def add_vectors(self, row, vectors):
        """Row whose per-query vectors were computed by the caller (e.g. linear heads)."""
        return self._push(dict(row), vectors)

    def add_copy(self, source, **changes):
        """A second row for the same result (e.g. listed under another method name)."""
        i = next(j for j, r in enumerate(self.rows) if r is source)
        return self._push(dict(source, **changes), {n: v[i] for n, v in self.per_query.items()})

    def result(self, table, info=None):
        arrays = {n: np.stack(v) for n, v in self.per_query.items()} if self.rows else {}
        return StageResult(tables={table: self.rows}, arrays=arrays, info=info)


def attach_evidence(rows, arrays):
    """Copies of rows with their per-query arrays under "_pq" (for the claims, never saved)."""
    out = []
    for i, r in enumerate(rows):
        out.append(dict(r, _pq={n: a[i] for n, a in arrays.items()}))
    return out


def seed_mean(rows, key=("method", "config"), metrics=None):
    """One row per configuration `key` with every numeric field averaged over its seeds, plus
    `<metric>_sd` (sample sd over seeds, 0 for one seed) for the accuracy fields and "n_seeds".
    Non-numeric fields come from the first seed's row."""
    groups = {}
    for r in rows:
        groups.setdefault(tuple(r.get(k) for k in key), []).append(r)
    acc = set(metrics or [m + s for m in METRICS for s in ("", "_val", "_test")])
    out = []
    for rs in groups.values():
        row = dict(rs[0], n_seeds=len(rs))
        row.pop("seed", None)
        for f, v in rs[0].items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and f not in key and f != "seed":
                vals = np.array([r[f] for r in rs if r.get(f) is not None], dtype=np.float64)
                if np.any(vals != vals[0]):
                    row[f] = float(vals.mean())
                if f in acc:
                    row[f + "_sd"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
        out.append(row)
    return out
