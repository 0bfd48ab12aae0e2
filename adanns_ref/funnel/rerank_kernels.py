"""Re-rank kernels of the funnel (`funnel.py`, `funnel.index.py`): score shortlisted database
rows at a larger prefix, reading only those rows, in place.

Re-ranking (`rerank_rows_sorted`; `rerank_rows` reads query by query): every (query, candidate)
pair of a batch is scored in ascending row order, so a memory-mapped database is read forward
once per batch and a row shortlisted by several queries is read back to back. Candidate c of
query r is scored against the d-prefix rebuilt from the raw database row in place,

    z_ct = (x_ct / n_1[c]) / n_2[c]   for t < d      (`truncate.prefix_scales`)

each quotient rounded to float32, bit-identical to `truncate.prefix`, so only k' * d floats per
query are read from a database that may be a memory map, and nothing of size N * D is ever
copied. The distance is faiss's direct form, sum_t (q_t - z_t)^2 or -sum_t q_t z_t in
`core.simd` order 1, the order of faiss's `fvec_L2sqr` / `fvec_inner_product` that
IndexRefineFlat and `knn_L2sqr_by_idx` run.

The quotients are not divisions: x / a is computed as float32(float64(x) * (1 / a)), which is
the correctly rounded float32 quotient for every float32 x and a (proof at
`core.simd.simd_sum_scaled`; ~3x faster than a division over a row), and z is never stored: `core.simd.simd_sum_scaled` rounds each loaded x_ct through the
two products and feeds it to the order-1 sums. A division by exactly 1 changes no bit and is
skipped. A scale that is not a float32 value (rows whose float32 norm over- or underflows) takes
float64 divisions into a buffer, as `truncate.divide_rows` does.
"""
import numba
import numpy as np

from ..core.simd import inner, l2sqr, simd_sum_scaled
from ..core.threads import serial_or_parallel
from ..core.topk import heap_push


@numba.njit(cache=True, inline="always")
def pair_distance(xq, r, db, c, s1, s2, use_ip, buf):
    """dist(xq[r], prefix of db[c]) as a heap key (-<.,.> for ip), the prefix rebuilt from the raw
    row with the scales s1[c], s2[c] (empty s1: no normalisation); buf: float32 (d,) scratch."""
    d = xq.shape[1]
    a64, b64 = (s1[c], s2[c]) if s1.shape[0] > 0 else (1.0, 1.0)
    if np.float32(a64) != a64 or np.float32(b64) != b64:  # an out-of-range row: float64 divisions
        x = db[c]
        for t in range(d):
            buf[t] = np.float32(np.float64(np.float32(np.float64(x[t]) / a64)) / b64)
        return -inner(xq[r], buf, d) if use_ip else l2sqr(xq[r], buf, d)
    if a64 == 1.0 and b64 == 1.0:  # no quotient changes a bit (unit rows: s_2 == 1 is common)
        return -inner(xq[r], db[c], d) if use_ip else l2sqr(xq[r], db[c], d)
    # z_t = (x_t / a) / b through float64 reciprocals (same bits), summed as it is loaded; one
    # product where a scale is 1
    if a64 == 1.0 or b64 == 1.0:
        inv = 1.0 / (b64 if a64 == 1.0 else a64)
        return (-simd_sum_scaled(xq[r], db[c], inv, None, False) if use_ip else
                simd_sum_scaled(xq[r], db[c], inv, None, True))
    ia, ib = 1.0 / a64, 1.0 / b64
    return (-simd_sum_scaled(xq[r], db[c], ia, ib, False) if use_ip else
            simd_sum_scaled(xq[r], db[c], ia, ib, True))


@numba.njit(cache=True, parallel=True)
def rerank_rows(xq, db, ids, s1, s2, use_ip, hd, hi):
    """Push (dist(xq[r], prefix of db[c]), c) into heap r for every id c = ids[r, j] >= 0, query
    by query (rows read in shortlist order).

    xq (nq, d) query prefixes; db (N, D) raw rows (a memory map is read in place); s1, s2 (N,)
    float64, the `truncate.prefix_scales` at d (empty: no normalisation, the prefix is db[c, :d]);
    each division is rounded once to float32 (float32 division where the scale is a float32
    value, as `truncate.divide_rows`).
    Heaps are left unsorted. No `dis < root` shortcut: shortlist ids are unordered, so an equal
    distance with a smaller id must still reach heap_push's tie rule."""
    for r in numba.prange(ids.shape[0]):
        buf = np.empty(xq.shape[1], dtype=np.float32)
        for j in range(ids.shape[1]):
            c = ids[r, j]
            if c >= 0:
                heap_push(hd[r], hi[r], pair_distance(xq, r, db, c, s1, s2, use_ip, buf), c)


def rerank_rows_sorted(xq, db, ids, order, s1, s2, use_ip, hd, hi):
    """`rerank_rows` with the rows read in ascending row order across the whole batch: order
    (m,) int64 lists the flat positions p = r * s + j of the valid shortlist entries sorted by
    their row ids[r, j] (`shortlist_order`); each thread takes a contiguous run of it, so it
    reads a contiguous, increasing range of database rows (a row shortlisted by several queries
    is read back to back), and writes the distance of each pair to its position. The heaps then
    take each query's pairs in shortlist order. Same distances (same `pair_distance`), same
    heaps: results identical to rerank_rows. Extra memory: nq * s float32."""
    # the number of parts is chosen here, in Python: numba.get_num_threads() inside an njit
    # function is a dynamic global, which keeps numba from caching the kernel
    n_parts = min(numba.get_num_threads() * 4, max(1, order.shape[0] // 64))
    kernel = _rerank_sorted.for_work(order.shape[0] * xq.shape[1])
    kernel(xq, db, ids, order, s1, s2, use_ip, hd, hi, n_parts)


@serial_or_parallel
def _rerank_sorted(xq, db, ids, order, s1, s2, use_ip, hd, hi, n_parts):
    """rerank_rows_sorted's kernel, with the batch split into n_parts runs of `order`."""
    nq, s = ids.shape
    dist = np.empty(nq * s, dtype=np.float32)
    m = order.shape[0]
    for part in numba.prange(n_parts):
        buf = np.empty(xq.shape[1], dtype=np.float32)
        t0, t1 = part * m // n_parts, (part + 1) * m // n_parts
        for t in range(t0, t1):
            p = order[t]
            r, j = p // s, p % s
            dist[p] = pair_distance(xq, r, db, ids[r, j], s1, s2, use_ip, buf)
    for r in numba.prange(nq):
        for j in range(s):
            c = ids[r, j]
            if c >= 0:
                heap_push(hd[r], hi[r], dist[r * s + j], c)


def shortlist_order(ids):
    """Flat positions of the valid (>= 0) entries of ids (nq, s), sorted by row id (stable)."""
    flat = ids.ravel()
    pos = np.flatnonzero(flat >= 0)
    return pos[np.argsort(flat[pos], kind="stable")]
