"""The three heaps faiss's HNSW uses, reproduced literally because each breaks ties its own way.

Every function takes ``ip``: False for L2 (faiss's comparator ``CMax``: smaller is better,
neutral +FLT_MAX), True for inner product (``CMin``: larger is better, neutral -FLT_MAX).
``cmp(a, b)`` is faiss's ``C::cmp``: "b is strictly better than a". Heaps hold float32 values
and int64 ids in caller-owned arrays; sizes are passed in and returned (numba kernels, no objects).

1. ``pq_*``: ``std::priority_queue`` of (d, id) as libstdc++ implements it (``__push_heap``,
   ``__adjust_heap``), comparing **d only**, so equal distances come out in an order set by the
   sift paths. ``best_on_top`` selects faiss's ``NodeDistFarther`` (top = best, the candidate
   queue) or ``NodeDistCloser`` (top = worst, the result set) ordering (faiss ``HNSW.h``).
2. ``heap_*``: faiss's array heap (``utils/Heap.h``, 1-based internally) on the key (d, id):
   ``cmp2`` breaks ties by id in the same direction as d. Used for search results and for
   ``reorder_2_heaps`` (``IndexRefineFlat``); ``heap_reorder`` sorts best first, equal distances
   by ascending id for L2 and descending id for inner product.
3. ``mm_*``: ``MinimaxHeap`` (``impl/hnsw/MinimaxHeap.h``), the bounded candidate set of a
   search: a ``heap_*`` heap whose popped entries stay in place as ghosts with id -1
   (``pop_min`` scans linearly, ties to the largest slot; ``count_below`` counts the ghosts).

The functions allocate nothing and are compiled without numba's reference counting
(``_nrt=False``): with it, every call increments and decrements each array argument atomically,
which cost 5x the work of a rejected push.
"""
import numba
import numpy as np

FLT_MAX = np.float32(np.finfo(np.float32).max)


@numba.njit(cache=True, inline="always")
def cmp(a, b, ip):
    """faiss C::cmp(a, b): b is strictly better than a."""
    return a < b if ip else a > b


@numba.njit(cache=True, inline="always")
def cmp2(a1, b1, a2, b2, ip):
    """faiss C::cmp2: cmp on the values, ties broken by the ids in the same direction."""
    if ip:
        return a1 < b1 or (a1 == b1 and a2 < b2)
    return a1 > b1 or (a1 == b1 and a2 > b2)


@numba.njit(cache=True, inline="always")
def neutral(ip):
    return -FLT_MAX if ip else FLT_MAX


# ----------------------------------------------------------------------- 1. std::priority_queue

@numba.njit(cache=True, inline="always")
def _pq_less(a, b, best_on_top, ip):
    """operator< of NodeDistFarther (best_on_top) or NodeDistCloser."""
    return cmp(a, b, ip) if best_on_top else cmp(b, a, ip)


@numba.njit(cache=True, inline="always")
def _pq_sift_up(hd, hi, hole, top, d, i, best_on_top, ip):
    """libstdc++ __push_heap: move the hole up while its parent is less than (d, i)."""
    parent = (hole - 1) // 2
    while hole > top and _pq_less(hd[parent], d, best_on_top, ip):
        hd[hole] = hd[parent]
        hi[hole] = hi[parent]
        hole = parent
        parent = (hole - 1) // 2
    hd[hole] = d
    hi[hole] = i


@numba.njit(cache=True, _nrt=False)
def pq_push(hd, hi, n, d, i, best_on_top, ip):
    """priority_queue::push on hd/hi[:n]; returns the new size."""
    _pq_sift_up(hd, hi, n, 0, d, i, best_on_top, ip)
    return n + 1


@numba.njit(cache=True, _nrt=False)
def pq_pop(hd, hi, n, best_on_top, ip):
    """priority_queue::pop (libstdc++ __pop_heap + __adjust_heap); returns the new size."""
    if n > 1:
        d, i = hd[n - 1], hi[n - 1]
        hd[n - 1], hi[n - 1] = hd[0], hi[0]
        length = n - 1
        hole = child = 0
        while child < (length - 1) // 2:
            child = 2 * (child + 1)
            if _pq_less(hd[child], hd[child - 1], best_on_top, ip):
                child -= 1
            hd[hole], hi[hole] = hd[child], hi[child]
            hole = child
        if length % 2 == 0 and child == (length - 2) // 2:
            child = 2 * (child + 1)
            hd[hole], hi[hole] = hd[child - 1], hi[child - 1]
            hole = child - 1
        _pq_sift_up(hd, hi, hole, 0, d, i, best_on_top, ip)
    return n - 1


# ----------------------------------------------------------------------- 2. faiss array heap

@numba.njit(cache=True, _nrt=False)
def heap_push(k, hd, hi, d, i, ip):
    """faiss heap_push: (d, i) enters a heap whose new size is k (slots 1..k, 1-based)."""
    j = k
    while j > 1:
        parent = j >> 1
        if not cmp2(d, hd[parent - 1], i, hi[parent - 1], ip):
            break
        hd[j - 1], hi[j - 1] = hd[parent - 1], hi[parent - 1]
        j = parent
    hd[j - 1], hi[j - 1] = d, i


@numba.njit(cache=True, inline="always")
def _sift_down(k, hd, hi, d, i, ip):
    """The walk shared by heap_pop and heap_replace_top: returns the slot (1-based) for (d, i)."""
    j = 1
    while True:
        j1 = j << 1
        j2 = j1 + 1
        if j1 > k:
            break
        if j2 == k + 1 or cmp2(hd[j1 - 1], hd[j2 - 1], hi[j1 - 1], hi[j2 - 1], ip):
            c = j1
        else:
            c = j2
        if cmp2(d, hd[c - 1], i, hi[c - 1], ip):
            break
        hd[j - 1], hi[j - 1] = hd[c - 1], hi[c - 1]
        j = c
    return j


@numba.njit(cache=True, _nrt=False)
def heap_pop(k, hd, hi, ip):
    """faiss heap_pop on a heap of size k: the last element walks down from the root (the walk
    may select slot k itself)."""
    j = _sift_down(k, hd, hi, hd[k - 1], hi[k - 1], ip)
    hd[j - 1], hi[j - 1] = hd[k - 1], hi[k - 1]


@numba.njit(cache=True, _nrt=False)
def heap_replace_top(k, hd, hi, d, i, ip):
    """faiss heap_replace_top: (d, i) replaces the root of a heap of size k."""
    j = _sift_down(k, hd, hi, d, i, ip)
    hd[j - 1], hi[j - 1] = d, i


@numba.njit(cache=True, _nrt=False)
def heap_heapify(k, hd, hi, ip):
    """faiss heap_heapify with no initial elements: k empty slots (neutral, -1)."""
    for j in range(k):
        hd[j], hi[j] = neutral(ip), -1


@numba.njit(cache=True, _nrt=False)
def heap_reorder(k, hd, hi, ip):
    """faiss heap_reorder: sort a heap best first, slots with id -1 moved to the end as
    (neutral, -1). Returns the number of real entries."""
    kept = 0
    for j in range(k):
        d, i = hd[0], hi[0]
        heap_pop(k - j, hd, hi, ip)
        hd[k - kept - 1], hi[k - kept - 1] = d, i
        if i != -1:
            kept += 1
    for j in range(kept):  # memmove to the front (forward copy: source after target)
        hd[j], hi[j] = hd[k - kept + j], hi[k - kept + j]
    for j in range(kept, k):
        hd[j], hi[j] = neutral(ip), -1
    return kept


# ----------------------------------------------------------------------- 3. MinimaxHeap

@numba.njit(cache=True, _nrt=False)
def mm_push(cap, size, nvalid, hd, hi, i, d, ip):
    """MinimaxHeap::push of (i, d) into a heap of capacity cap holding `size` slots, `nvalid` of
    them not ghosts. When full, d must beat the root (which is dropped). Returns (size, nvalid)."""
    if np.isnan(d):
        d = neutral(ip)
    if size == cap:
        if not cmp(hd[0], d, ip):
            return size, nvalid
        if hi[0] != -1:
            nvalid -= 1
        heap_pop(size, hd, hi, ip)
        size -= 1
    size += 1
    heap_push(size, hd, hi, d, i, ip)
    return size, nvalid + 1


@numba.njit(cache=True, _nrt=False)
def mm_pop_min(size, hd, hi, ip):
    """MinimaxHeap::pop_min: the best non-ghost slot (ties: the largest slot) becomes a ghost in
    place; the caller decrements nvalid. Returns (id, d), or (-1, 0) if every slot is a ghost."""
    j = size - 1
    while j >= 0 and hi[j] == -1:
        j -= 1
    if j < 0:
        return -1, np.float32(0)
    best = j
    for j in range(best - 1, -1, -1):
        if hi[j] != -1 and cmp(hd[best], hd[j], ip):
            best = j
    i = hi[best]
    hi[best] = -1
    return i, hd[best]


@numba.njit(cache=True, _nrt=False)
def mm_count_below(size, hd, ip, t):
    """MinimaxHeap::count_below: slots (ghosts included) strictly better than t."""
    n = 0
    for j in range(size):
        if cmp(t, hd[j], ip):
            n += 1
    return n
