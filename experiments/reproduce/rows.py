"""Result rows with per-query evidence, so that claims can use paired statistics.

Every evaluated configuration becomes one row (a dict of its parameters, costs and accuracies)
plus, in the stage's arrays, its per-query outcomes aligned with the row's position:

    <metric>_per_query   uint8 (n_rows, nq)    1 if the query's first result (or the linear
                                               head's argmax) has the query's label
    map10_batches_val    float64 (n_rows, B)   mAP@10 on B seeded, equal-sized batches of the
    map10_batches_test                         validation (test) half of the queries

The accuracies in the rows come from `adanns_ref.metrics`; the per-query vectors are checked to
average to the same value, so both always describe the same metric. Paired comparisons on the
same queries are far tighter than comparing two independent binomial estimates.
"""
import numpy as np

from adanns_ref.metrics import map_at_k, top1_accuracy

from .stage import StageResult

MAP_K = 10
MAP_BATCHES = 10  # per half of the queries


def correct_first(I, ytr, yte):
    """uint8 (nq,): the first result exists (id >= 0) and carries the query's label."""
    first = I[:, 0]
    ok = (first >= 0) & (ytr[np.where(first >= 0, first, 0)] == yte)
    if not np.isclose(ok.mean(), top1_accuracy(I, ytr, yte), rtol=0, atol=1e-12):
        raise RuntimeError("per-query top-1 disagrees with adanns_ref.metrics.top1_accuracy")
    return ok.astype(np.uint8)


def query_batches(idx, seed, n_batches=MAP_BATCHES):
    """Seeded partition of the query indices `idx` into n_batches equal batches (a remainder
    of fewer than n_batches queries is dropped)."""
    size = len(idx) // n_batches
    perm = np.random.default_rng(seed + 1).permutation(np.asarray(idx))
    return perm[: size * n_batches].reshape(n_batches, size)


class RowCollector:
    """Accumulates rows and their per-query arrays for one experiment table."""

    def __init__(self, ytr, yte, val_idx, test_idx, seed):
        self.ytr, self.yte = ytr, yte
        self.val_idx, self.test_idx = val_idx, test_idx
        self.batches = {"val": query_batches(val_idx, seed), "test": query_batches(test_idx, seed)}
        self.rows, self.per_query = [], {}

    def _push(self, row, vectors):
        if self.rows and set(vectors) != set(self.per_query):
            raise RuntimeError(f"row {row} has per-query arrays {sorted(vectors)}, the table has "
                               f"{sorted(self.per_query)}")
        for name, v in vectors.items():
            self.per_query.setdefault(name, []).append(v)
        self.rows.append(row)
        return row

    def evaluate(self, I, with_map=False, prefix=""):
        """Metrics and per-query vectors of a search result I (nq, k): top-1 on all, validation
        and test queries, and if with_map mAP@10 on the same three sets plus per batch of each
        half. Keys get `prefix`."""
        ytr, yte, vi, ti = self.ytr, self.yte, self.val_idx, self.test_idx
        metrics = {"top1": top1_accuracy(I, ytr, yte), "top1_val": top1_accuracy(I[vi], ytr, yte[vi]),
                   "top1_test": top1_accuracy(I[ti], ytr, yte[ti])}
        vectors = {"top1_per_query": correct_first(I, ytr, yte)}
        if with_map:
            metrics["map10"] = map_at_k(I, ytr, yte, MAP_K)
            for half, idx in (("val", vi), ("test", ti)):
                metrics[f"map10_{half}"] = map_at_k(I[idx], ytr, yte[idx], MAP_K)
                vectors[f"map10_batches_{half}"] = np.array(
                    [map_at_k(I[b], ytr, yte[b], MAP_K) for b in self.batches[half]])
        return ({prefix + k: v for k, v in metrics.items()},
                {prefix + k: v for k, v in vectors.items()})

    def add_retrieval(self, row, I, with_map=False):
        metrics, vectors = self.evaluate(I, with_map)
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
