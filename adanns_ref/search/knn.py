"""Exact k-NN, the validated public entry point `knn_search`, in this process or on Dask.

In this process it is `search.exact.exact_search` (blocked BLAS or direct sums into the heaps of
`core.topk`). With ``client=`` the database is cut into DB_BLOCK-aligned blocks (an array, a
vector file that each worker memory-maps, or a dask array), every block is searched on a worker
with the plan of the whole query batch (`search_plan`: the same GEMM shapes, so the same bits),
and the blocks' top-k are merged on the driver by the heaps' (distance, id) key: D and I equal
the in-process ones bit for bit (`distributed`'s module docstring gives the rules).
"""
import numpy as np

from ..core.topk import FLT_MAX
from ..core.validate import as_float32_matrix, as_k, check_metric
from ..distributed import MERGE_GROUP, Executor, as_rows, block_bounds, map_bounds
from .exact import DB_BLOCK, exact_search, search_plan


def knn_search(xq, xb, k, metric="l2", client=None):
    """Exact k-NN of each row of xq (nq, d) among the rows of xb (nb, d) -> (D float32 (nq, k),
    I int64 (nq, k)), faiss ``knn`` / ``IndexFlat.search``: the public, validated entry point.

    xq, xb: real 2-D arrays of equal width (float32 C-contiguous is used as is; anything else is
    converted once, `core.validate.as_float32_matrix`); NaN / Inf, a width mismatch or a non-numeric
    array raise ValueError / TypeError. k: int >= 1 (`core.validate.as_k` refuses a k whose results
    would exceed MAX_RESULT_BYTES); metric: "l2" or "ip". Results as `exact_search`.
    client: a ``distributed.Client``: blocks of the database (then also a vector file path or
    a dask array) are searched on its workers and merged by the heaps' rule (same D and I).
    """
    metric = check_metric(metric)
    if client is not None:
        from .knn import distributed_knn_search as knn_search_on
        xq = as_float32_matrix(xq, "xq")
        return knn_search_on(xq, xb, as_k(k, xq.shape[0]), metric, client)
    xb = as_float32_matrix(xb, "xb")
    xq = as_float32_matrix(xq, "xq", d=xb.shape[1])
    return exact_search(xq, xb, as_k(k, xq.shape[0]), metric)


def _knn_block(xb, xq, k, metric, plan):
    return exact_search(xq, xb, k, metric, plan=plan)


def distributed_knn_search(xq, xb, k, metric, client):
    """Exact k-NN (`knn_search`) with the database xb (array, vector file or dask array)
    cut into DB_BLOCK-aligned blocks on the workers and xq sent once; the blocks' results are
    merged by the heaps' (distance, id) key, so D and I equal the in-process ones bit for bit.
    Blocks run in groups of MERGE_GROUP per worker thread, each group merged into the running
    top-k before the next starts: driver memory O(nq * k * group). xq validated float32 (nq, d)."""
    nq, d = xq.shape
    ex = Executor(client)
    xb, nb = as_rows(xb, d)
    bounds = block_bounds(nb, DB_BLOCK, d, ex.n_threads)
    plan = search_plan(nq, d)
    xq_future = ex.put(xq)
    D = np.full((nq, k), -FLT_MAX if metric == "ip" else FLT_MAX, np.float32)  # empty: padding
    I = np.full((nq, k), -1, np.int64)
    group = MERGE_GROUP * ex.n_threads
    for g in range(0, len(bounds), group):
        parts = map_bounds(ex, xb, bounds[g:g + group], _knn_block, (xq_future, k, metric, plan), {})
        D = np.concatenate([D] + [r[0] for _, _, r in parts], axis=1)
        I = np.concatenate([I] + [np.where(r[1] >= 0, r[1] + i0, -1) for i0, _, r in parts], axis=1)
        key = np.where(I >= 0, -D if metric == "ip" else D, np.inf)  # the heaps' internal key
        order = np.lexsort((np.where(I >= 0, I, np.iinfo(np.int64).max), key), axis=1)[:, :k]
        D = np.take_along_axis(D, order, axis=1)
        I = np.take_along_axis(I, order, axis=1)
    return np.ascontiguousarray(D), np.ascontiguousarray(I)
