"""Top-k selection: the numba heaps and reservoirs every search keeps its k best results in.

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
vectorised counting passes such that k to 1.5k entries remain (`shrink`), and the largest kept
key becomes the threshold. At the end the buffer is sorted by (distance, id) and cut at k. Same
keys in, same k smallest keys out: results are identical to the heap's (tested), only faster.

The blocked exact k-NN search that fills them is `search.exact.exact_search` (validated entry
point: `search.knn.knn_search`).
"""
import numba
import numpy as np

from .threads import serial_or_parallel

FLT_MAX = np.float32(np.finfo(np.float32).max)  # 3.4028235e38, faiss's "no result" distance
RESERVOIR_MIN_K = 100  # larger k collect in reservoirs, not heaps (faiss: distance_compute_min_k_reservoir)


@numba.njit(cache=True)
def heap_init(hd, hi):
    """Fill a heap with empty slots (+inf, -1)."""
    hd[:] = np.inf
    hi[:] = -1


@numba.njit(cache=True)
def worse(d1, i1, d2, i2):
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
        if right < size and worse(hd[right], hi[right], hd[child], hi[child]):
            child = right
        if not worse(hd[child], hi[child], d, i):
            break
        hd[pos] = hd[child]
        hi[pos] = hi[child]
        pos = child
    hd[pos] = d
    hi[pos] = i


@numba.njit(cache=True)
def heap_push(hd, hi, d, i):
    """Offer candidate (d, i); it replaces the root iff it ranks before it. Returns True if kept."""
    if worse(d, i, hd[0], hi[0]) or (d == hd[0] and i == hi[0]):
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
def empty_heap(k, sentinel_id):
    """A heap of k empty slots (+inf, sentinel_id), for `select_sorted` (np.empty and a fill:
    np.full would compile one more numba overload per caller)."""
    kd, ki = np.empty(k, dtype=np.float32), np.empty(k, dtype=np.int64)
    kd[:] = np.inf
    ki[:] = sentinel_id
    return kd, ki


@numba.njit(cache=True, nogil=True)
def select_sorted(bd, bi, n, kd, ki):
    """The len(kd) smallest (distance, id) keys of bd/bi[:n], ascending, into kd/ki, which come
    in as an empty heap: every slot a key above all of bd/bi[:n] ((+inf, -1) when every distance
    is below +inf, (+inf, INT64_MAX) otherwise); slots past n keep it. Pushed into that heap,
    then heap_sort. For distinct keys (a reservoir offers each id once) this is the sorted prefix
    of the keys whatever their order, so it is what a stable sort by (distance, id) gives.
    A heap rather than numpy's sorts, which numba compiles once per dtype and order."""
    for t in range(n):
        heap_push(kd, ki, bd[t], bi[t])
    heap_sort(kd, ki)


@numba.njit(cache=True, nogil=True)
def counting_order(key, perm, nkeys):
    """perm (m,) int64 re-ordered stably by key[perm[u]], keys in 0..nkeys-1 (a counting sort)."""
    start = np.zeros(nkeys + 1, np.int64)
    for t in perm:
        start[key[t] + 1] += 1
    for v in range(nkeys):
        start[v + 1] += start[v]
    out = np.empty(perm.shape[0], np.int64)
    for t in perm:
        out[start[key[t]]] = t
        start[key[t]] += 1
    return out


@numba.njit(cache=True, nogil=True)
def shrink(bd, bi, n, k):
    """Cut a full reservoir bd/bi[:n] (n = 2k) to between k and (n + k) // 2 entries holding its
    k smallest (distance, id) keys; the largest kept key becomes the threshold bd/bi[n].
    Returns the new count.

    The cut is a distance t taken from the buffer with k <= #{d <= t} <= (n + k) // 2, found by
    vectorised counting passes around sampled pivots (no per-element branches); every entry
    with d <= t is kept, in order. With too many entries tied at one distance no such t exists,
    and the k smallest keys are kept, sorted (`select_sorted`).
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
        kd, ki = empty_heap(k, np.int64(-1))
        select_sorted(bd, bi, n, kd, ki)  # reservoir keys are below its first threshold (+inf, -1)
        for j in range(k):  # a loop: a slice assignment compiles numba's shape-error path
            bd[j], bi[j] = kd[j], ki[j]
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
    appended; a full buffer is cut by `shrink`. O(1) amortised per candidate, against O(log k)
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
        if not worse(bd[cap], bi[cap], d, i):  # (d, i) must rank before the threshold key
            continue
        bd[n], bi[n] = d, i
        n += 1
        if n == cap:
            n = shrink(bd, bi, n, cap // 2)
    count[0] = n


@numba.njit(cache=True, nogil=True)
def reservoir_to_row(bd, bi, count, hd, hi):
    """The k = hd.shape[0] best keys of a reservoir, sorted, into an empty heap row (hd, hi)
    (slots past the kept count stay (+inf, -1))."""
    select_sorted(bd, bi, count[0], hd, hi)


def new_reservoirs(n, k):
    """Reservoirs for n queries and k results: 2k + 1 slots each, empty, threshold (+inf, -1) (an
    empty heap slot's key: nothing at +inf enters, as with heaps); counts (n, 1)."""
    bd = np.full((n, 2 * k + 1), np.inf, dtype=np.float32)
    bi = np.full((n, 2 * k + 1), -1, dtype=np.int64)
    return bd, bi, np.zeros((n, 1), dtype=np.int64)


@serial_or_parallel
def _sort_heap_rows(hd, hi):
    """heap_sort every row of (n, k) heap arrays (in parallel over rows: `sort_heaps`)."""
    for r in numba.prange(hd.shape[0]):
        heap_sort(hd[r], hi[r])


def sort_heaps(hd, hi):
    """heap_sort every row of (n, k) heap arrays, in parallel over rows when there are many."""
    _sort_heap_rows.for_work(hd.size * max(1, hd.shape[1]).bit_length() * 4)(hd, hi)


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
