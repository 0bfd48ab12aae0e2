"""Top-k selection: numba heap primitives and the blocked exact k-NN search every index reuses.

Heap. A query's k best results live in two arrays, ``hd`` float32[k] (distances) and ``hi``
int64[k] (ids), arranged as a binary max-heap on the lexicographic key (distance, id): the root
``(hd[0], hi[0])`` is the worst result kept so far. Lower distance is better; among equal
distances the smaller id is better. A candidate (d, i) enters iff (d, i) < (hd[0], hi[0]), so the
heap always holds the k smallest keys seen, whatever order candidates arrive in. Empty slots are
(+inf, -1). For inner product, kernels push the *negated* similarity -<q, x> and `finalize`
flips the sign back, so one max-heap serves both metrics.

Reservoir (exact search with k > RESERVOIR_MIN_K, as faiss switches at k > 100). A heap
insertion costs O(log k) unpredictable branches, and with k = 200 over 60k candidates about
1,300 of them enter per query. A reservoir appends every candidate below a threshold key to a
buffer of 2k; when the buffer is full it keeps the entries with distance <= t, for a t found by
vectorised counting passes such that k to 1.5k entries remain (`_shrink`), and the largest kept
key becomes the threshold. At the end the buffer is sorted by (distance, id) and cut at k. Same
keys in, same k smallest keys out: results are identical to the heap's (tested), only faster.

Exact search, for queries q_i (nq, d) and database x_j (nb, d), float32:

    l2:  D_ij = ||q_i||^2 + ||x_j||^2 - 2 <q_i, x_j>,  clamped at 0      (faiss's BLAS form)
    ip:  D_ij = <q_i, x_j>, results sorted by decreasing D_ij

computed block by block (``Q_BLOCK`` queries x ``DB_BLOCK`` database rows, one BLAS GEMM per
block, so memory stays O(Q_BLOCK * DB_BLOCK)) and merged into the per-query heaps by a parallel
numba kernel. As in faiss (`knn_L2sqr` / `knn_inner_product`), small problems with
nq * d < ``BLAS_THRESHOLD`` skip BLAS and compute each distance directly
(sum_t (q_t - x_t)^2 or sum_t q_t x_t).

Direct sums and the norms of the BLAS form use `_simd.simd_sum`, the summation order of faiss's
AVX-512 `fvec_L2sqr` / `fvec_inner_product` (``_simd`` order 1).

faiss-identical: the distance formulas and the BLAS/direct switch; direct-path distances are
bit-identical to faiss where faiss dispatches to AVX-512 (other SIMD levels sum in another
order: last-bit differences); -1 / +-FLT_MAX padding; the returned order. Not bit-identical:
the GEMM itself (numpy's OpenBLAS vs the one faiss links; about 97 % of the products agree bit
for bit, the rest within float32 rounding), so BLAS-path distances agree to ~1e-6 relative
(more where the L2 form cancels, i.e. near-duplicates; as in faiss, equal database vectors can
get distances differing in the last bit). Ties: here always the smaller id first, for both
metrics. faiss does the same for L2 exact search, but for inner product it lists equal
similarities by *decreasing* id, and the members it keeps of a tie group cut at rank k depend
on heap history; compare such groups as sets (`adanns_ref.testing.assert_knn_equal`). faiss
also splits the *database* over threads when nq < threads; here a single query runs on one
thread (same results, lower single-query throughput).
"""
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import threadpoolctl

from ._simd import simd_sum, sq_norms
from ._validate import as_float32_matrix, as_k, check_metric

FLT_MAX = np.float32(np.finfo(np.float32).max)  # 3.4028235e38, faiss's "no result" distance
BLAS_THRESHOLD = 128000  # faiss `distance_compute_blas_threshold`: nq * d below it -> direct form
Q_BLOCK = 1024  # queries per GEMM block and worker (faiss: 4096; 1024 measured as fast or faster)
DB_BLOCK = 1024  # database rows per GEMM block (faiss: distance_compute_blas_database_bs)
MERGE_CHUNK = 128  # GEMM-block columns tested against a heap's root at once (SIMD)
RESERVOIR_MIN_K = 100  # larger k collect in reservoirs, not heaps (faiss: distance_compute_min_k_reservoir)
POOL_MIN_WORK = 1 << 27  # nq * nb * d multiply-adds (a few ms) below which one thread searches


@numba.njit(cache=True)
def heap_init(hd, hi):
    """Fill a heap with empty slots (+inf, -1)."""
    hd[:] = np.inf
    hi[:] = -1


@numba.njit(cache=True)
def _worse(d1, i1, d2, i2):
    """(d1, i1) > (d2, i2) lexicographically: the first result ranks after the second."""
    return d1 > d2 or (d1 == d2 and i1 > i2)


@numba.njit(cache=True)
def _sift_down(hd, hi, size, d, i):
    """Place (d, i) at the root of the heap hd[:size] and restore the max-heap property."""
    pos = 0
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        right = child + 1
        if right < size and _worse(hd[right], hi[right], hd[child], hi[child]):
            child = right
        if not _worse(hd[child], hi[child], d, i):
            break
        hd[pos] = hd[child]
        hi[pos] = hi[child]
        pos = child
    hd[pos] = d
    hi[pos] = i


@numba.njit(cache=True)
def heap_push(hd, hi, d, i):
    """Offer candidate (d, i); it replaces the root iff it ranks before it. Returns True if kept."""
    if _worse(d, i, hd[0], hi[0]) or (d == hd[0] and i == hi[0]):
        return False
    _sift_down(hd, hi, hd.shape[0], d, i)
    return True


@numba.njit(cache=True)
def heap_sort(hd, hi):
    """Sort a heap in place, ascending by (distance, id); empty slots (+inf, -1) end up last."""
    for end in range(hd.shape[0] - 1, 0, -1):
        d, i = hd[end], hi[end]
        hd[end], hi[end] = hd[0], hi[0]  # the root is the worst of hd[:end+1]
        _sift_down(hd, hi, end, d, i)


@numba.njit(cache=True, nogil=True)
def _count_at_most(vals, t):
    """How many of vals are <= t (vectorised)."""
    n = 0
    for j in range(vals.shape[0]):
        n += np.int32(vals[j] <= t)
    return n


@numba.njit(cache=True, nogil=True)
def push_chunk(dis, j0, hd, hi):
    """Offer candidates (dis[j], j0 + j) to heap (hd, hi), j ascending: one vectorised count
    against the root first, so a chunk with no candidate costs a single SIMD pass."""
    if _count_at_most(dis, hd[0]) == 0:
        return
    for j in range(dis.shape[0]):
        if dis[j] < hd[0]:  # ids only grow, so an equal distance never enters
            heap_push(hd, hi, dis[j], j0 + j)


@numba.njit(cache=True, nogil=True)
def _pivot(vals, lo, hi, start):
    """A value of vals strictly inside (lo, hi): the median of the first three found scanning
    from position `start` (cyclically), or NaN if there is none."""
    n = vals.shape[0]
    a = b = c = np.float32(np.nan)
    found = 0
    for s in range(n):
        v = vals[(start + s) % n]
        if lo < v < hi:
            if found == 0:
                a = v
            elif found == 1:
                b = v
            else:
                c = v
                break
            found += 1
    if found < 2:
        return a  # one value, or NaN
    if found == 2:
        return min(a, b)
    return max(min(a, b), min(max(a, b), c))


@numba.njit(cache=True, nogil=True)
def _sort_keys(bd, bi, n):
    """Positions of bd/bi[:n] in increasing (distance, id) order. Ids below 2^32 (always, but
    for databases of 4G rows) sort as one uint64 key per entry: the distance's bits mapped to an
    order-preserving unsigned integer (-0.0 counted as +0.0, as float comparison does) above the
    id; else a stable sort by id, then a stable one by distance."""
    ids = bi[:n]
    if n and ids.max() >= 1 << 32:
        by_id = np.argsort(ids, kind="mergesort")
        return by_id[np.argsort(bd[:n][by_id], kind="mergesort")]
    zero = np.float32(0.0)
    plus = np.empty(n, dtype=np.float32)
    for t in range(n):
        plus[t] = bd[t] + zero  # -0.0 -> +0.0
    bits = plus.view(np.uint32)
    keys = np.empty(n, dtype=np.uint64)
    for t in range(n):
        b = np.uint64(bits[t])
        b = (~b) & np.uint64(0xFFFFFFFF) if b >> np.uint64(31) else b | np.uint64(0x80000000)
        keys[t] = (b << np.uint64(32)) | np.uint64(ids[t])
    return np.argsort(keys)


@numba.njit(cache=True, nogil=True)
def _shrink(bd, bi, n, k):
    """Cut a full reservoir bd/bi[:n] (n = 2k) to between k and (n + k) // 2 entries holding its
    k smallest (distance, id) keys; the largest kept key becomes the threshold bd/bi[n].
    Returns the new count.

    The cut is a distance t taken from the buffer with k <= #{d <= t} <= (n + k) // 2, found by
    vectorised counting passes around sampled pivots (no per-element branches); every entry
    with d <= t is kept, in order. With too many entries tied at one distance no such t exists,
    and the buffer is sorted by key and cut at exactly k.
    """
    q_max = (n + k) // 2
    vals = bd[:n]
    lo, hi = np.float32(-np.inf), np.float32(np.inf)  # count(lo) < k, count(hi) > q_max
    t = np.float32(np.nan)
    for it in range(64):
        p = _pivot(vals, lo, hi, (it * 7919) % n)
        if np.isnan(p):
            break
        c = _count_at_most(vals, p)
        if c < k:
            lo = p
        elif c > q_max:
            hi = p
        else:
            t = p
            break
    if np.isnan(t):  # massive ties (or no convergence): the exact cut
        order = _sort_keys(bd, bi, n)
        kd, ki = bd[order[:k]], bi[order[:k]]
        bd[:k], bi[:k] = kd, ki
        bd[n], bi[n] = kd[k - 1], ki[k - 1]
        return k
    m = 0
    for j in range(n):  # stable, branch-free compaction of the entries with d <= t
        d, i = bd[j], bi[j]
        bd[m], bi[m] = d, i
        m += np.int32(d <= t)
    ti = np.int64(-1)
    for j in range(m):
        if bd[j] == t and bi[j] > ti:
            ti = bi[j]
    bd[n], bi[n] = t, ti
    return m


@numba.njit(cache=True, nogil=True)
def reservoir_push_chunk(dis, j0, bd, bi, count, sel):
    """Offer candidates (dis[j], j0 + j) to a reservoir for k = (bd.shape[0] - 1) // 2 results:
    bd/bi (2k + 1,) hold up to 2k kept keys and, in the last slot, the threshold key; count
    (1,) the number kept; sel: int32 scratch of dis.shape[0]. A key below the threshold is
    appended; a full buffer is cut by `_shrink`. O(1) amortised per candidate, against O(log k)
    unpredictable branches for a heap insertion (faiss's ReservoirTopN idea)."""
    cap = bd.shape[0] - 1
    n = count[0]
    thr = bd[cap]
    if _count_at_most(dis, thr) == 0:  # vectorised count first: most chunks have no candidate
        return
    m = 0
    for j in range(dis.shape[0]):  # branch-free compaction of the candidates
        sel[m] = j
        m += np.int32(dis[j] <= thr)
    for t in range(m):
        j = sel[t]
        d, i = dis[j], j0 + j
        if not _worse(bd[cap], bi[cap], d, i):  # (d, i) must rank before the threshold key
            continue
        bd[n], bi[n] = d, i
        n += 1
        if n == cap:
            n = _shrink(bd, bi, n, cap // 2)
    count[0] = n


@numba.njit(cache=True, nogil=True)
def reservoir_to_row(bd, bi, count, hd, hi):
    """The k = hd.shape[0] best keys of a reservoir, sorted, into an empty heap row (hd, hi)
    (slots past the kept count stay (+inf, -1))."""
    n = count[0]
    order = _sort_keys(bd, bi, n)
    for t in range(min(n, hd.shape[0])):
        hd[t], hi[t] = bd[order[t]], bi[order[t]]


def new_reservoirs(n, k):
    """Reservoirs for n queries and k results: 2k + 1 slots each, empty, threshold (+inf, -1) (an
    empty heap slot's key: nothing at +inf enters, as with heaps); counts (n, 1)."""
    bd = np.full((n, 2 * k + 1), np.inf, dtype=np.float32)
    bi = np.full((n, 2 * k + 1), -1, dtype=np.int64)
    return bd, bi, np.zeros((n, 1), dtype=np.int64)


@numba.njit(cache=True, nogil=True)
def _l2_count_at_most(ip, qn, x_norms, thr):
    """How many of max(qn + x_norms[j] - 2 ip[j], 0) are <= thr (a vectorised pre-test)."""
    two = np.float32(2.0)
    zero = np.float32(0.0)
    n = 0
    for j in range(ip.shape[0]):  # a range from 0 over a slice: LLVM vectorises this loop
        n += np.int32(max(qn + x_norms[j] - two * ip[j], zero) <= thr)
    return n


@numba.njit(cache=True, nogil=True)
def _ip_count_at_most(ip, thr):
    """How many of -ip[j] are <= thr (vectorised pre-test)."""
    n = 0
    for j in range(ip.shape[0]):
        n += np.int32(-ip[j] <= thr)
    return n


@numba.njit(cache=True, nogil=True)
def _l2_into(ip, qn, x_norms, out):
    """out[j] = max(qn + x_norms[j] - 2 ip[j], 0), the operations of `_l2_count_at_most`."""
    two = np.float32(2.0)
    zero = np.float32(0.0)
    for j in range(ip.shape[0]):
        out[j] = max(qn + x_norms[j] - two * ip[j], zero)


@numba.njit(cache=True, nogil=True)
def _neg_into(ip, out):
    """out[j] = -ip[j]."""
    for j in range(ip.shape[0]):
        out[j] = -ip[j]


@numba.njit(cache=True, nogil=True)
def _merge_block(ip, q_norms, x_norms, j0, use_ip, hd, hi, bd, bi, count):
    """Turn a GEMM block ip[r, j] = <q_r, x_{j0+j}> into distances and offer them to query r's
    heap (hd, hi), or to its reservoir (bd, bi, count) when those are given (k >
    RESERVOIR_MIN_K; else they are empty arrays).

    l2: D_rj = max(||q_r||^2 + ||x_j||^2 - 2 ip_rj, 0) (faiss's BLAS form; cancellation can make
    identical vectors slightly negative); ip: -ip_rj. Chunks of MERGE_CHUNK columns are first
    counted against the threshold in SIMD without storing anything; only a chunk with a
    candidate is computed into a buffer (same operations, same bits) and offered. After the
    first blocks almost no chunk has one, so the merge costs one vectorised read of the block.
    """
    zero = np.float32(0.0)
    buf = np.empty(MERGE_CHUNK, dtype=np.float32)
    sel = np.empty(MERGE_CHUNK, dtype=np.int32)
    use_res = bd.shape[0] > 0
    n = ip.shape[1]
    for r in range(ip.shape[0]):
        row = ip[r]
        qn = zero if use_ip else q_norms[r]
        thr_row = bd[r, bd.shape[1] - 1:] if use_res else hd[r, :1]  # the threshold's slot
        for c in range(0, n, MERGE_CHUNK):
            e = min(c + MERGE_CHUNK, n)
            if use_ip:
                if _ip_count_at_most(row[c:e], thr_row[0]) == 0:
                    continue
                dis = buf[:e - c]
                _neg_into(row[c:e], dis)
            else:
                if _l2_count_at_most(row[c:e], qn, x_norms[c:e], thr_row[0]) == 0:
                    continue
                dis = buf[:e - c]
                _l2_into(row[c:e], qn, x_norms[c:e], dis)
            if use_res:
                reservoir_push_chunk(dis, j0 + c, bd[r], bi[r], count[r], sel)
            else:
                push_chunk(dis, j0 + c, hd[r], hi[r])


@numba.njit(cache=True, parallel=True)
def _scan_direct(xq, xb, use_ip, hd, hi):
    """Direct-form exact search for small query batches: every (q, x) pair, heaps filled and
    sorted in place."""
    for r in numba.prange(xq.shape[0]):
        rd, ri = hd[r], hi[r]
        for j in range(xb.shape[0]):
            dis = simd_sum(xq[r], xb[j], not use_ip)
            if use_ip:
                dis = -dis
            if dis < rd[0]:
                heap_push(rd, ri, dis, j)
        heap_sort(rd, ri)


@numba.njit(cache=True, nogil=True)
def _finish_rows(hd, hi, bd, bi, count):
    """Sort every heap row, or fill it from its reservoir, on the calling thread (a worker of
    `_blas_search`)."""
    for r in range(hd.shape[0]):
        if bd.shape[0]:
            reservoir_to_row(bd[r], bi[r], count[r], hd[r], hi[r])
        else:
            heap_sort(hd[r], hi[r])


@numba.njit(cache=True, parallel=True)
def sort_heaps(hd, hi):
    """heap_sort every row of (n, k) heap arrays, in parallel over rows."""
    for r in numba.prange(hd.shape[0]):
        heap_sort(hd[r], hi[r])


def new_heaps(n, k):
    """(n, k) float32 distances and int64 ids, all slots empty (+inf, -1)."""
    return np.full((n, k), np.inf, dtype=np.float32), np.full((n, k), -1, dtype=np.int64)


def finalize(D, I, metric):
    """Turn sorted internal heaps into faiss output, in place; returns (D, I).

    Internal distances are lower-is-better (negated similarity for "ip"). Output: "l2" keeps
    them, "ip" flips the sign back (so rows read in decreasing similarity); slots with id -1 get
    +FLT_MAX for "l2" and -FLT_MAX for "ip", as faiss pads missing results.
    """
    if metric == "ip":
        np.negative(D, out=D)
        D[I < 0] = -FLT_MAX
    else:
        D[I < 0] = FLT_MAX
    return D, I


_blas_controller = None


def blas_single_thread():
    """Context limiting every BLAS library to one thread (numba's or our own threads parallelise
    instead). The controller is built once, at the first call (scanning the loaded libraries
    costs about 1 ms); numpy's BLAS is loaded by then, a BLAS loaded later is not limited."""
    global _blas_controller
    if _blas_controller is None:
        _blas_controller = threadpoolctl.ThreadpoolController()
    return _blas_controller.limit(limits=1, user_api="blas")


def _blas_search(xq, xb, use_ip, hd, hi):
    """BLAS-form search filling heaps hd/hi (nq, k): GEMM block by block, then merge.

    Each worker thread takes whole query blocks and runs GEMM with single-threaded BLAS and the
    merge kernel (which releases the GIL). One pool of numba.get_num_threads() workers, rather
    than multi-threaded BLAS alternating with a parallel numba merge: numpy's OpenBLAS threads
    spin after each call and starve numba's threads (measured 5x slower on 2 cores).
    """
    nq, nb = xq.shape[0], xb.shape[0]
    empty = np.empty(0, dtype=np.float32)
    x_norms = empty if use_ip else sq_norms(xb)
    q_norms = empty if use_ip else sq_norms(xq)
    k = hd.shape[1]
    workers = numba.get_num_threads()
    n_blocks = workers * -(-nq // (workers * Q_BLOCK))  # a multiple of workers: balanced load
    q_block = -(-nq // n_blocks)
    db_block = min(nb, DB_BLOCK)

    def search_block(i0):
        q = xq[i0:i0 + q_block]
        heaps = hd[i0:i0 + q_block], hi[i0:i0 + q_block]
        reservoirs = new_reservoirs(q.shape[0] if k > RESERVOIR_MIN_K else 0, k)
        qn = q_norms[i0:i0 + q_block]
        buf = np.empty(q.shape[0] * db_block, dtype=np.float32)
        for j0 in range(0, nb, db_block):
            x = xb[j0:j0 + db_block]
            ip = buf[:q.shape[0] * x.shape[0]].reshape(q.shape[0], x.shape[0])
            np.matmul(q, x.T, out=ip)
            _merge_block(ip, qn, x_norms[j0:j0 + db_block], j0, use_ip, *heaps, *reservoirs)
        _finish_rows(*heaps, *reservoirs)

    if workers == 1 or nq * nb * xq.shape[1] < POOL_MIN_WORK:
        for i0 in range(0, nq, q_block):  # the thread pool's setup would cost more than it saves
            search_block(i0)
        return
    with blas_single_thread(), ThreadPoolExecutor(workers) as pool:
        list(pool.map(search_block, range(0, nq, q_block)))  # list() re-raises worker errors


def knn_search(xq, xb, k, metric="l2"):
    """Exact k-NN of each row of xq (nq, d) among the rows of xb (nb, d) -> (D float32 (nq, k),
    I int64 (nq, k)), faiss ``knn`` / ``IndexFlat.search``: the public, validated entry point.

    xq, xb: real 2-D arrays of equal width (float32 C-contiguous is used as is; anything else is
    converted once, `_validate.as_float32_matrix`); NaN / Inf, a width mismatch or a non-numeric
    array raise ValueError / TypeError. k: int >= 1 (`_validate.as_k` refuses a k whose results
    would exceed MAX_RESULT_BYTES); metric: "l2" or "ip". Results as `exact_search`.
    """
    metric = check_metric(metric)
    xb = as_float32_matrix(xb, "xb")
    xq = as_float32_matrix(xq, "xq", d=xb.shape[1])
    return exact_search(xq, xb, as_k(k, xq.shape[0]), metric)


def exact_search(xq, xb, k, metric="l2"):
    """Exact k-NN of each row of xq among the rows of xb -> (D float32 (nq, k), I int64 (nq, k)).

    Inputs must already be validated (`knn_search` is the checked entry point): float32,
    C-contiguous, 2-D, equal widths, finite; k >= 1, metric "l2" or "ip". Results are sorted best first; with fewer than k database rows the tail is
    padded with id -1 and distance +FLT_MAX ("l2") / -FLT_MAX ("ip"). Uses
    numba.get_num_threads() threads.
    """
    nq, d = xq.shape
    hd, hi = new_heaps(nq, k)
    use_ip = metric == "ip"
    if nq == 0 or xb.shape[0] == 0:
        pass
    elif nq * d < BLAS_THRESHOLD:
        _scan_direct(xq, xb, use_ip, hd, hi)
    else:
        _blas_search(xq, xb, use_ip, hd, hi)
    return finalize(hd, hi, metric)
