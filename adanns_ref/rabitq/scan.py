"""numba kernels of RaBitQ search: query factors, the 1-bit and multi-bit estimates, the scan.

Orders (faiss 1.15.1, AVX512_SPR dispatch; see `quantizer` for the maths):
- ||q - c||^2, ||q||^2, <q, c>: ``fvec_*`` (order 1 of `core.simd`);
- the 1-bit estimate: integer popcounts (exact), then float32 in the source's order, unfused;
- the multi-bit inner product <q - c, code + cb> (faiss ``compute_inner_product<AVX512>``):
  ex_bits = 1: 16 fma lanes over full blocks of 16, ``_mm512_reduce_add_ps``'s tree, then the
  tail; ex_bits 2..7: 8 fma lanes over blocks of 8, ``hsum_avx2``'s tree, then the tail;
  ex_bits = 8: the scalar loop. The faiss-cpu 1.15.1 wheel compiles its AVX-512 unit without
  BMI2, so ex_bits 2..7 take the scalar loop too (``bmi2=True`` gives the 8-lane path of a build
  with BMI2); the scalar loop and the tails are not contracted to fma (measured: bit for bit).
"""
import numba
import numpy as np

from ..core.simd import fma, simd_sum, tree16
from ..core.topk import heap_push
from . import reservoir
from .kernels import quantize_query

# query factors, indices into the (nq, 8) float32 array `prepare_queries` fills
QR_TO_C, QR_NORM, Q_DOT_C, C1, C2, C34, INT_DOT_SCALE, G_ERROR = range(8)


@numba.njit(cache=True, error_model="numpy")
def prepare_query(q, c, ip, qb, centered, rq, qq, f):
    """Query factors of q (d,) against centroid c into f (8,) float32; rq = q - c, qq its
    qb-bit codes (qb > 0). faiss ``set_query`` of RaBitQDistanceComputer(Not)Q."""
    d = q.shape[0]
    for j in range(d):
        rq[j] = q[j] - c[j]
    f[QR_TO_C] = simd_sum(q, c, True)
    f[G_ERROR] = np.sqrt(f[QR_TO_C])
    inv_sqrt_d = np.float32(1) / np.sqrt(np.float32(d))
    if qb == 0:
        s = np.float32(0)
        for j in range(d):
            s += rq[j]
        f[C1], f[C2], f[C34], f[INT_DOT_SCALE] = np.float32(2) * inv_sqrt_d, 0, s * inv_sqrt_d, 1
    else:
        v_min, delta, sum_qq, sum2 = quantize_query(rq, qb, centered, f[QR_TO_C], qq)
        f[C1] = np.float32(2) * delta * inv_sqrt_d
        f[C2] = np.float32(2) * v_min * inv_sqrt_d
        f[C34] = inv_sqrt_d * (delta * np.float32(sum_qq) + np.float32(d) * v_min)
        f[INT_DOT_SCALE] = np.sqrt(f[QR_TO_C] / np.float32(sum2 * d)) if centered else np.float32(1)
    f[QR_NORM], f[Q_DOT_C] = 0, 0
    if ip:
        f[QR_NORM] = simd_sum(q, q, False)
        f[Q_DOT_C] = simd_sum(q, c, False)


@numba.njit(cache=True, error_model="numpy")
def estimate_1bit(bits, fac, rq, qq, f, qb, centered, ip):
    """The 1-bit RaBitQ estimate of one code: bits ((d+7)/8,) uint8, fac (>= 2,) float32."""
    d = rq.shape[0]
    if qb == 0:
        dot, ones = np.float32(0), 0
        for i in range(d):
            if (bits[i >> 3] >> (i & 7)) & 1:
                dot += rq[i]
                ones += 1
        final = f[C1] * dot + f[C2] * np.float32(ones) - f[C34]
    elif centered:
        max_code = (1 << qb) - 1
        xor = 0  # sum_i sum_j (bit j of qq_i xor b_i) 2^j
        for i in range(d):
            xor += (max_code - qq[i]) if (bits[i >> 3] >> (i & 7)) & 1 else qq[i]
        final = np.float32(max_code * d - 2 * xor) * f[INT_DOT_SCALE]
    else:
        dot, ones = 0, 0
        for i in range(d):
            if (bits[i >> 3] >> (i & 7)) & 1:
                dot += qq[i]
                ones += 1
        final = f[C1] * np.float32(dot) + f[C2] * np.float32(ones) - f[C34]
    pre = fac[0] + f[QR_TO_C] - np.float32(2) * fac[1] * final
    if ip:
        return np.float32(-0.5) * (pre - f[QR_NORM])
    return max(np.float32(0), pre)


@numba.njit(cache=True, inline="always", error_model="numpy")
def _recon(bits, ex, i, ex_bits, cb):
    """(sign_i << ex_bits) + ex_code_i + cb, float32 (exact: small integers plus a half)."""
    sb = (bits[i >> 3] >> (i & 7)) & 1
    pos = i * ex_bits
    v = 0
    for b in range(ex_bits):
        v |= ((ex[(pos + b) >> 3] >> ((pos + b) & 7)) & 1) << b
    return np.float32((sb << ex_bits) + v) + cb


@numba.njit(cache=True, error_model="numpy")
def _tail(bits, ex, rq, start, ex_bits, cb):
    s = np.float32(0)
    for i in range(start, rq.shape[0]):
        s += rq[i] * _recon(bits, ex, i, ex_bits, cb)
    return s


@numba.njit(cache=True, error_model="numpy")
def ex_inner_product(bits, ex, rq, ex_bits, bmi2):
    """sum_i rq_i ((sign_i << ex_bits) + ex_i - 2^ex_bits + 1/2) in faiss's AVX-512 order (bmi2: the
    8-lane kernel faiss runs at ex_bits 2..7 when built with BMI2)."""
    d = rq.shape[0]
    cb = -(np.float32(1 << ex_bits) - np.float32(0.5))
    if ex_bits == 1:
        acc = np.zeros(16, np.float32)
        d16 = d - d % 16
        for i0 in range(0, d16, 16):
            for l in range(16):
                acc[l] = fma(rq[i0 + l], _recon(bits, ex, i0 + l, ex_bits, cb), acc[l])
        s = tree16(acc[0], acc[1], acc[2], acc[3], acc[4], acc[5], acc[6], acc[7], acc[8], acc[9],
                   acc[10], acc[11], acc[12], acc[13], acc[14], acc[15])
        return s + _tail(bits, ex, rq, d16, ex_bits, cb)
    if ex_bits <= 7 and bmi2:
        acc = np.zeros(8, np.float32)
        d8 = d - d % 8
        for i0 in range(0, d8, 8):
            for l in range(8):
                acc[l] = fma(rq[i0 + l], _recon(bits, ex, i0 + l, ex_bits, cb), acc[l])
        s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
        return s + _tail(bits, ex, rq, d8, ex_bits, cb)
    return _tail(bits, ex, rq, 0, ex_bits, cb)


@numba.njit(cache=True, error_model="numpy")
def estimate_full(bits, ex, exfac, rq, f, ex_bits, ip):
    """The multi-bit estimate: base + f_add_ex + f_rescale_ex * <rq, code + cb> (faiss
    ``compute_full_multibit_distance``); base = <q, c> (IP) or ||q - c||^2 (L2)."""
    base = f[Q_DOT_C] if ip else f[QR_TO_C]
    dist = base + exfac[0] + exfac[1] * ex_inner_product(bits, ex, rq, ex_bits, False)
    return dist if ip else max(np.float32(0), dist)


@numba.njit(cache=True, inline="always", error_model="numpy")
def score(i, bits, fac, ex, exfac, rq, qq, f, qb, centered, ex_bits, ip, thr):
    """The key of code i: the distance (L2) or -similarity (IP), lower is better; +inf when, at
    nb_bits > 1, its 1-bit bound (est -/+ f_error * g_error) cannot beat the handler's threshold
    thr (a key), so faiss skips the multi-bit refinement (its two-stage search)."""
    est = estimate_1bit(bits[i], fac[i], rq, qq, f, qb, centered, ip)
    if ex_bits > 0:
        err = fac[i, 2] * f[G_ERROR]
        if ip:
            if not (est + err > -thr):
                return np.float32(np.inf)
        elif not (max(np.float32(0), est - err) < thr):
            return np.float32(np.inf)
        est = estimate_full(bits[i], ex[i], exfac[i], rq, f, ex_bits, ip)
    return -est if ip else est


@numba.njit(cache=True, inline="always", error_model="numpy")
def offer(h, hid, key, rid, ip):
    """faiss's heap ``add_result``: (key, id rid) enters only if strictly better than the k-th.
    IP pushes (-similarity, -(id + 2)) since faiss's ``CMin`` heap ranks equal similarities by
    decreasing id (`heap_ids` undoes it); L2 pushes (distance, id)."""
    if key < h[0]:
        heap_push(h, hid, key, -(rid + 2) if ip else rid)


@numba.njit(cache=True, parallel=True, error_model="numpy")
def search_flat(Q, c, bits, fac, ex, exfac, ip, qb, centered, ex_bits, reservoir_cap, hd, hi):
    """Scan every code for every query (ids in order) into the heaps hd / hi (`core.topk`).
    reservoir_cap > 0 (faiss at k >= 100): collect in faiss's reservoir first (`reservoir`),
    whose threshold gates the refinement, then offer its entries in order to the heap."""
    nq, d = Q.shape
    k = hd.shape[1]
    for qi in numba.prange(nq):
        rq = np.empty(d, np.float32)
        qq = np.zeros(d, np.int64)
        f = np.zeros(8, np.float32)
        prepare_query(Q[qi], c, ip, qb, centered, rq, qq, f)
        h, hid = hd[qi], hi[qi]
        if reservoir_cap == 0:
            for i in range(bits.shape[0]):
                offer(h, hid, score(i, bits, fac, ex, exfac, rq, qq, f, qb, centered, ex_bits, ip, h[0]), i, ip)
            continue
        rv = np.empty(reservoir_cap, np.float32)
        ri = np.empty(reservoir_cap, np.int64)
        count, thr = 0, reservoir.FLT_MAX
        for i in range(bits.shape[0]):
            key = score(i, bits, fac, ex, exfac, rq, qq, f, qb, centered, ex_bits, ip, thr)
            count, thr = reservoir.add(rv, ri, count, thr, k, key, i)
        for j in range(count):
            offer(h, hid, rv[j], ri[j], ip)

def heap_ids(hd, hi, ip):
    """The ids of sorted heaps (in place): IP's -(id + 2) back to id; empty slots stay -1."""
    if ip:
        full = hi != -1
        hi[full] = -hi[full] - 2
    return hi


@numba.njit(cache=True, parallel=True, error_model="numpy")
def search_ivf(Q, centroids, probes, offsets, ids, bits, fac, ex, exfac, ip, qb, centered, ex_bits,
               hd, hi):
    """IVF by residual: each query scans its probed lists in probe order (faiss's coarse result
    order; -1 and empty lists skipped), each list in stored order, with the list's centroid as
    c; one heap per query across its lists (faiss ``HeapResultHandler``, any k)."""
    nq, d = Q.shape
    for qi in numba.prange(nq):
        rq = np.empty(d, np.float32)
        qq = np.zeros(d, np.int64)
        f = np.zeros(8, np.float32)
        h, hid = hd[qi], hi[qi]
        for key in probes[qi]:
            if key < 0 or offsets[key] == offsets[key + 1]:
                continue
            prepare_query(Q[qi], centroids[key], ip, qb, centered, rq, qq, f)
            for i in range(offsets[key], offsets[key + 1]):
                offer(h, hid, score(i, bits, fac, ex, exfac, rq, qq, f, qb, centered, ex_bits, ip, h[0]),
                      ids[i], ip)
