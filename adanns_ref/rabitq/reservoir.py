"""faiss's ``ReservoirTopN`` for float keys (``partition_fuzzy_median3``), as its flat searches use
it for k >= 100 (``distance_compute_min_k_reservoir``).

Why reproduce it: RaBitQ's multi-bit refinement asks the result handler for its threshold, and
a reservoir's threshold is not the k-th best key: it stays FLT_MAX until the buffer of
capacity = (2k + 15) & ~15 entries fills, then drops to the key that `partition` keeps
between k and (capacity + k) / 2 entries below. Which codes get refined, hence the results,
depend on it.

Keys are "lower is better" (L2 distances, or negated inner products: faiss's ``CMin`` over
similarities is ``CMax`` over their negations, and every step below commutes with the
negation). faiss's rules, ``CMax``:
- add(key, id): kept iff key < threshold; when the buffer is full it is first shrunk, then the
  entry is appended without a second test;
- shrink: threshold t = median of 3 of (v_0, v_{n/2}, v_{n-1}); up to 200 times count n_lt
  (v < t) and n_eq (v == t): n_lt <= k and n_lt + n_eq >= k -> keep k; n_lt <= k -> raise t;
  n_lt <= q_max -> keep n_lt; else lower t; a new t is the median of the first 3 values in
  (t_inf, t_sup) visited in the order i * 6700417 mod n (stop when there is none); when more
  than the kept count sits at t, t = nextafter(t, -inf). The kept entries are compacted in
  their buffer order (the ties at t first come, first kept).
- the end: the buffer, in order, offered to a k-heap (`core.topk`), as faiss's ``to_result``.
"""
import numba
import numpy as np

FLT_MAX = np.float32(np.finfo(np.float32).max)
FLT_LOWEST = -FLT_MAX
BIG_PRIME = 6700417


def capacity(k):
    """faiss's reservoir capacity for k results: 2k rounded up to a multiple of 16."""
    return (2 * k + 15) & ~15


@numba.njit(cache=True, error_model="numpy")
def _median3(a, b, c):
    if a > b:
        a, b = b, a
    if c > b:
        return b
    if c > a:
        return c
    return a


@numba.njit(cache=True, error_model="numpy")
def _sample_median3(vals, n, t_inf, t_sup):
    v3 = np.empty(3, np.float32)
    m = 0
    for i in range(n):
        v = vals[(i * BIG_PRIME) % n]
        if v > t_inf and t_sup > v:
            v3[m] = v
            m += 1
            if m == 3:
                return _median3(v3[0], v3[1], v3[2])
    return v3[0] if m else t_inf


@numba.njit(cache=True, error_model="numpy")
def partition(vals, ids, n, q_min, q_max):
    """faiss ``partition_fuzzy_median3<CMax>``: keep between q_min and q_max of the n smallest
    keys at the front of vals / ids (in buffer order); returns (threshold, kept count)."""
    t = _median3(vals[0], vals[n // 2], vals[n - 1])
    t_inf, t_sup = FLT_LOWEST, FLT_MAX
    n_lt, n_eq, q = 0, 0, 0
    for _ in range(200):
        n_lt, n_eq = 0, 0
        for i in range(n):
            if t > vals[i]:
                n_lt += 1
            elif vals[i] == t:
                n_eq += 1
        if n_lt <= q_min:
            if n_lt + n_eq >= q_min:
                q = q_min
                break
            t_inf = t
        elif n_lt <= q_max:
            q = n_lt
            break
        else:
            t_sup = t
        new = _sample_median3(vals, n, t_inf, t_sup)
        if new == t_inf:
            break
        t = new
    n_eq_keep = q - n_lt
    if n_eq_keep < 0:
        q = q_min
        t = np.nextafter(t, np.float32(-np.inf))
        n_eq_keep = q
    w = 0
    for i in range(n):
        keep = t > vals[i]
        if not keep and n_eq_keep > 0 and vals[i] == t:
            keep = True
            n_eq_keep -= 1
        if keep:
            vals[w], ids[w] = vals[i], ids[i]
            w += 1
    return t, q


@numba.njit(cache=True, error_model="numpy")
def add(vals, ids, count, threshold, k, key, rid):
    """ReservoirTopN::add_result: returns the new (count, threshold)."""
    if threshold > key:
        cap = vals.shape[0]
        if count == cap:
            threshold, count = partition(vals, ids, cap, k, (cap + k) // 2)
        vals[count], ids[count] = key, rid
        count += 1
    return count, threshold
