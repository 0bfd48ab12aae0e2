"""Exact integer scan of 4-bit fast-scan codes and faiss 1.15's result handlers.

Accumulation (faiss ``kernel_accumulate_block`` / ``pq4_kernel_qbs_256`` / the AVX-512 kernels):
for a query with quantized table Tq (M2, 16) uint8 and a vector with sub-codes c_m,

    s = sum_{m < M2} Tq[m, c_m]   (exact integer),   faithful value  v = s mod 2^16   (uint16)

faiss adds 16-bit lanes with wrapping adds and a lo/hi byte trick (accu0 - (accu1 << 8)); every
step is mod 2^16, so its value is exactly s mod 2^16 whatever the SIMD level. Our scalar scan
reads each packed byte once: a per-query `pair_table` maps a byte to the entries of its two
vectors, packed in two lanes of one integer (16-bit lanes in a uint32 while 255 M2 < 65536, so
no lane can carry into the other; 32-bit lanes in a uint64 beyond), and the lanes are summed
over the block's sub-quantizer pairs, then split into the 32 exact sums of the block. IVF L2 with a
bias adds the uint16 bias the same way (mod 2^16). The kernels here compute s in int32 beside v:
``wrap=True`` (default, faiss's result) ranks by v, ``wrap=False`` (the mathematically intended
result) by s; both report max s per query and whether any s exceeded 65535.

Handlers (``simd_result_handlers.h``), keyed by faiss's comparator C = CMax (L2: keep the
smallest) or CMin (IP: keep the largest), vectors visited in scan order (flat: ids ascending; IVF:
probed lists in ascending list number, each list in stored order):

- k == 1, ``SingleResultHandler``: best starts at C's neutral value (65535 / 0), a vector enters
  iff v is strictly better than best; the kept value sits in an **int16** (faiss's
  ``std::vector<int16_t> idis``), so a kept v >= 32768 is output as v - 65536, and no result
  outputs b + (-1)/a for L2 (neutral 65535 read as int16 -1) with id -1.
- k <= 20 (implem 12), ``HeapHandler``: a k-heap of (v, id) keyed by faiss's cmp2 (value, then
  id). The threshold is the root's value; a vector enters iff v is strictly better than it (a
  tie with the root never enters), replacing the root. Empty slots start at (neutral, -1), so a
  vector with v == 65535 (L2) or v == 0 (IP) is never returned. Output sorted by cmp2 (L2:
  (v, id) ascending; IP: (v, id) descending), missing results as (neutral * (1/a) + b, -1).
- k > 20 (implem 13), ``ReservoirHandler``: capacity 2k rounded up to 16; entries strictly
  better than the threshold are kept, the reservoir is cut by faiss's SIMD ``partition_fuzzy``
  when full and the survivors sorted by value with ``std::sort``. The returned values (the
  multiset of the k best v) are deterministic and reproduced; which ids faiss returns among
  equal values at the cut, and their order among equal values (``std::sort`` is not stable),
  are NOT reproduced: we keep the heap's rule and cmp2 order. Missing results: (+-FLT_MAX, -1).

Output scaling: distance = v * (1 / a) + b in float32 with one fused multiply-add (faiss's
handlers compile ``heap_dis_in[j] * one_a + b`` into an FMA in its AVX2/AVX-512 units; tests
check this bit for bit), with one_a = float32(1 / a).

Shapes: lut (nq, M2, 16) uint8; blocks (nblocks, M2 / 2 * 32) uint8; heaps hv (nq, k) int64
(transformed values, see `_key`) and hid (nq, k) int64.
"""
import numba
import numpy as np

from ..core.topk import FLT_MAX
from ..core.simd import fma

U16_NEUTRAL_MAX = 65535
INTENDED_NEUTRAL_MAX = np.int64(1) << 40  # wrap=False: no value reaches it


@numba.njit(cache=True, nogil=True)
def pair_table(lut, shift, out):
    """out[m, byte] = lut[m, byte & 15] + (lut[m, byte >> 4] << shift): one look-up of a packed
    byte yields the entries of both vectors it holds (vector perm(j) in the low lane, perm(j) + 16
    in the high one), so the scan reads each byte once. lut (M2, 16) uint8; out (M2, 256) uint32
    with shift 16 (lanes exact while 255 M2 < 65536) or uint64 with shift 32 (any M2 < 2^24)."""
    for m in range(lut.shape[0]):
        for b in range(256):
            out[m, b] = (np.uint64(lut[m, b & 15]) | (np.uint64(lut[m, b >> 4]) << np.uint64(shift)))


@numba.njit(cache=True, nogil=True)
def block_sums(table, block, acc):
    """acc[j] = the two exact lane sums sum_m lut[m, c_m] of vectors perm(j) (low lane) and
    perm(j) + 16 (high lane) of one packed block, j < 16; table from `pair_table`."""
    for j in range(16):
        acc[j] = 0
    for p in range(table.shape[0] // 2):
        t0 = table[2 * p]
        t1 = table[2 * p + 1]
        base = 32 * p
        for j in range(16):
            acc[j] += t0[block[base + j]] + t1[block[base + 16 + j]]


@numba.njit(cache=True, nogil=True)
def _sift_root(hv, hid, k, v, i):
    """faiss heap_replace_top on a max-heap of (value, id) keys (cmp2: value, then id)."""
    pos = 0
    while True:
        c = 2 * pos + 1
        if c >= k:
            break
        r = c + 1
        if r < k and (hv[r] > hv[c] or (hv[r] == hv[c] and hid[r] > hid[c])):
            c = r
        if v > hv[c] or (v == hv[c] and i > hid[c]):
            break
        hv[pos] = hv[c]
        hid[pos] = hid[c]
        pos = c
    hv[pos] = v
    hid[pos] = i


@numba.njit(cache=True, nogil=True)
def scan_list(table, shift, blocks, n, ids, bias, is_max, wrap, hv, hid, stats, acc, sums):
    """Scan the n vectors of `blocks` (ids[j] their ids, or j when ids is empty) for one query
    (its `pair_table`) and push them into its heap (hv, hid) of transformed keys, in faiss's
    order (vector 0..31 of each block); stats[0] = max unwrapped sum, stats[1] += number of sums
    > 65535. Scratch: acc (16,) of table's dtype, sums (32,) int64."""
    mask = (np.int64(1) << shift) - 1
    for b in range(blocks.shape[0]):
        block_sums(table, blocks[b], acc)
        for j in range(16):
            v = (j >> 1) + 8 * (j & 1)
            sums[v] = np.int64(acc[j] & mask) + bias
            sums[v + 16] = np.int64(acc[j] >> shift) + bias
        j0 = 32 * b
        for v in range(min(32, n - j0)):  # written out here: numba does not inline a call
            s = sums[v]
            if s > stats[0]:
                stats[0] = s
            if s > 65535:
                stats[1] += 1
            val = (s & 0xFFFF) if wrap else s
            key = val if is_max else -val
            if key < hv[0]:  # faiss: strictly better than the root's value
                j = j0 + v
                i = ids[j] if ids.shape[0] else np.int64(j)
                _sift_root(hv, hid, hv.shape[0], key, i if is_max else -i)


def table_dtype(M2):
    """(dtype, shift) of `pair_table` for M2 rows: 16-bit lanes while 255 M2 < 65536."""
    return (np.uint32, np.int64(16)) if 255 * M2 < 65536 else (np.uint64, np.int64(32))


@numba.njit(cache=True, parallel=True)
def scan_flat(luts, blocks, n, is_max, wrap, hv, hid, stats, tables, shift, acc, sums):
    """Every query of luts (nq, M2, 16) against all n vectors of blocks (flat index). Per-thread
    scratch (`scratch`): tables (T, M2, 256), acc (T, 16), sums (T, 32)."""
    none = np.empty(0, np.int64)
    for q in numba.prange(luts.shape[0]):
        t = numba.get_thread_id()
        pair_table(luts[q], shift, tables[t])
        scan_list(tables[t], shift, blocks, n, none, np.int64(0), is_max, wrap, hv[q], hid[q],
                  stats[q], acc[t], sums[t])


@numba.njit(cache=True, parallel=True)
def scan_ivf(luts, biasq, blocks, block_offsets, offsets, ids, probes, is_max, wrap, hv, hid, stats,
             tables, shift, acc, sums):
    """Every query against its probed lists, in ascending list number (probes (nq, nprobe),
    -1 = none); list l holds ids[offsets[l]:offsets[l+1]] in blocks[block_offsets[l]:...].
    luts (nq, P, M2, 16): P = 1, one table per query, or P = nprobe, one per probe (3-D, faiss
    by_residual L2); biasq (nq, nprobe) int64 uint16 biases added to the sums of each probe, or
    (nq, 0) for none. Per-thread scratch as `scan_flat`."""
    for q in numba.prange(luts.shape[0]):
        t = numba.get_thread_id()
        if luts.shape[1] == 1:
            pair_table(luts[q, 0], shift, tables[t])
        order = np.argsort(probes[q], kind="mergesort")
        for u in range(order.shape[0]):
            r = order[u]
            l = probes[q, r]
            if l < 0 or (u > 0 and probes[q, order[u - 1]] == l):
                continue
            n = offsets[l + 1] - offsets[l]
            if n == 0:
                continue
            if luts.shape[1] > 1:
                pair_table(luts[q, r], shift, tables[t])
            bias = biasq[q, r] if biasq.shape[1] else np.int64(0)
            scan_list(tables[t], shift, blocks[block_offsets[l]:block_offsets[l + 1]], n,
                      ids[offsets[l]:offsets[l + 1]], bias, is_max, wrap, hv[q], hid[q], stats[q],
                      acc[t], sums[t])


def scratch(M2):
    """Per-thread buffers of the scans: (tables, shift, acc, sums) for numba's thread count."""
    T = numba.get_num_threads()
    dtype, shift = table_dtype(M2)
    return (np.empty((T, M2, 256), dtype), shift, np.empty((T, 16), dtype),
            np.empty((T, 32), np.int64))


@numba.njit(cache=True)
def _scale(v, one_a, b):
    """float32 v * one_a + b with one rounding (faiss's contracted handler output)."""
    return fma(np.float32(v), one_a, b)


@numba.njit(cache=True, parallel=True)
def finish(hv, hid, is_max, wrap, mode, a, b, D, I):
    """Sorted output of the heaps: mode 0 = SingleResultHandler, 1 = HeapHandler, 2 = Reservoir."""
    nq, k = hv.shape
    for q in numba.prange(nq):
        one_a = np.float32(1) / a[q]
        sub = np.empty(k, np.int64)
        nreal = 0
        for t in range(k):
            if hid[q, t] != (-1 if is_max else 1):
                # insertion by (key value, key id) ascending = faiss's heap_reorder order
                u = nreal
                while u > 0 and (hv[q, sub[u - 1]] > hv[q, t] or
                                 (hv[q, sub[u - 1]] == hv[q, t] and hid[q, sub[u - 1]] > hid[q, t])):
                    sub[u] = sub[u - 1]
                    u -= 1
                sub[u] = t
                nreal += 1
        for t in range(nreal):
            u = sub[t]
            val = hv[q, u] if is_max else -hv[q, u]
            ident = hid[q, u] if is_max else -hid[q, u]
            if mode == 0 and wrap and val >= 32768:
                val -= 65536  # faiss SingleResultHandler stores the value in an int16
            D[q, t] = _scale(val, one_a, b[q])
            I[q, t] = ident
        for t in range(nreal, k):
            I[q, t] = -1
            if mode == 2:
                D[q, t] = FLT_MAX if is_max else -FLT_MAX
            else:
                neutral = (U16_NEUTRAL_MAX if wrap else INTENDED_NEUTRAL_MAX) if is_max else 0
                if mode == 0 and wrap and is_max:
                    neutral = -1
                D[q, t] = _scale(neutral, one_a, b[q])


def new_heaps(nq, k, is_max, wrap):
    """Empty transformed heaps: keys (neutral, -1) for CMax, (-0, +1) for CMin."""
    neutral = (U16_NEUTRAL_MAX if wrap else INTENDED_NEUTRAL_MAX) if is_max else 0
    hv = np.full((nq, k), neutral if is_max else -neutral, np.int64)
    hid = np.full((nq, k), -1 if is_max else 1, np.int64)
    return hv, hid


def handler_mode(k):
    """faiss's handler choice for implem 12 / 13: 0 single (k = 1), 1 heap (k <= 20), 2 reservoir."""
    return 0 if k == 1 else (1 if k <= 20 else 2)
