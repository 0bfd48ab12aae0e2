"""numba kernels of RaBitQ: encoding (sign bits, factors, ex-bits) and the query-side estimates.

Every float32 operation is written in faiss 1.15.1's order (see `quantizer` for the maths and
the faiss deviations). Kernels take C-contiguous arrays of known dtype and do no validation.
Summation orders: `core.simd` order 1 where faiss calls ``fvec_L2sqr`` / ``fvec_norm_L2sqr`` /
``fvec_inner_product`` (AVX-512 dispatch); plain left-to-right float32 loops where faiss writes
a scalar loop in a generic translation unit (no fused multiply-add there). Division follows
IEEE as in C++ (error_model="numpy"): a residual coordinate of exactly 0 gives 1 / 0 = inf in
the ex-bits scale search, as in faiss, instead of Python's ZeroDivisionError.
"""
import math

import numba
import numpy as np

from ..core.simd import fma, simd_sum

F32_EPS = np.float32(np.finfo(np.float32).eps)
F32_MIN_NORMAL = np.float32(np.finfo(np.float32).tiny)
# faiss Z_MAX_BY_QB: the centred query quantizer's radius in units of ||q - c|| / sqrt(d)
Z_MAX_BY_QB = np.array([0.79688, 1.49375, 2.05078, 2.50938, 2.91250, 3.26406, 3.59844, 3.91016],
                       np.float32)
# faiss kTightStart: where the search for the ex-bits scale t starts, as a fraction of t_end
TIGHT_START = np.array([0.0, 0.15, 0.20, 0.52, 0.59, 0.71, 0.75, 0.77, 0.81], np.float32)
EX_EPS = 1e-5  # faiss kEps (a double: t * |o_i| + 1e-5 is rounded in float64, then truncated)


@numba.njit(cache=True, error_model="numpy")
def column_mean(x):
    """faiss IndexRaBitQ::train's centroid: per column, a left-to-right float32 sum / n."""
    n, d = x.shape
    c = np.zeros(d, np.float32)
    for i in range(n):
        for j in range(d):
            c[j] += x[i, j]
    if n:
        for j in range(d):
            c[j] /= np.float32(n)
    return c


@numba.njit(cache=True, error_model="numpy")
def sign_factors(r, x, ip, with_error):
    """(or_minus_c_l2sqr, dp_multiplier, f_error) of one residual r = x - c (faiss
    ``compute_vector_factors``)."""
    d = r.shape[0]
    norm2, x2, dp = np.float32(0), np.float32(0), np.float32(0)
    for j in range(d):
        norm2 += r[j] * r[j]
        x2 += x[j] * x[j]
        dp += r[j] if r[j] > 0 else -r[j]
    inv_sqrt_d = np.float32(1) / np.sqrt(np.float32(d))
    sqrt_norm = np.sqrt(norm2)
    inv_norm = np.float32(1) if norm2 < F32_EPS else np.float32(1) / sqrt_norm
    ndp = dp * inv_norm * inv_sqrt_d
    inv_dp = np.float32(1) if abs(ndp) < F32_EPS else np.float32(1) / ndp
    or_c = norm2 - x2 if ip else norm2
    f_error = np.float32(0)
    if with_error:
        xu = np.float32(d) * np.float32(0.25)
        ipr = np.float32(0.5) * dp
        if abs(ipr) > F32_EPS:
            ratio = (norm2 * xu) / (ipr * ipr)
            if ratio > np.float32(1):
                den = np.float32(1) if d == 1 else np.float32(d - 1)
                f_error = sqrt_norm * np.float32(1.9) * np.sqrt((ratio - np.float32(1)) / den)
        if not ip:
            f_error = np.float32(2) * f_error
    return or_c, inv_dp * sqrt_norm, f_error


@numba.njit(cache=True, error_model="numpy")
def _heap_less(ht, hi, a, b):
    return ht[a] < ht[b] or (ht[a] == ht[b] and hi[a] < hi[b])


@numba.njit(cache=True, error_model="numpy")
def _heap_push(ht, hi, size, t, i):
    """Push (t, i) on the min-heap ht/hi[:size] (std::priority_queue with std::greater)."""
    pos = size
    ht[pos], hi[pos] = t, i
    while pos > 0:
        parent = (pos - 1) // 2
        if not _heap_less(ht, hi, pos, parent):
            break
        ht[pos], ht[parent] = ht[parent], ht[pos]
        hi[pos], hi[parent] = hi[parent], hi[pos]
        pos = parent
    return size + 1


@numba.njit(cache=True, error_model="numpy")
def _heap_pop(ht, hi, size):
    """Remove the root of the min-heap ht/hi[:size]; returns the new size."""
    size -= 1
    ht[0], hi[0] = ht[size], hi[size]
    pos = 0
    while True:
        small, left = pos, 2 * pos + 1
        if left < size and _heap_less(ht, hi, left, small):
            small = left
        if left + 1 < size and _heap_less(ht, hi, left + 1, small):
            small = left + 1
        if small == pos:
            return size
        ht[pos], ht[small] = ht[small], ht[pos]
        hi[pos], hi[small] = hi[small], hi[pos]
        pos = small


@numba.njit(cache=True, error_model="numpy")
def best_scale(o_abs, ex_bits):
    """faiss ``compute_optimal_scaling_factor``: the t maximising <round(t |o|) + 1/2, |o|> /
    ||round(t |o|) + 1/2||, visiting the breakpoints t = (k + 1) / |o_i| in increasing (t, i)."""
    d = o_abs.shape[0]
    max_code = (1 << ex_bits) - 1
    t_end = np.float32(max_code + 10) / o_abs.max()
    t_start = t_end * TIGHT_START[ex_bits]
    inv_o = np.empty(d, np.float32)
    cur = np.empty(d, np.int64)
    den = np.float32(d) * np.float32(0.25)
    num = np.float32(0)
    for i in range(d):
        inv_o[i] = np.float32(1) / o_abs[i]
        c = int(np.float64(t_start * o_abs[i]) + EX_EPS)
        cur[i] = c
        den += np.float32(c * c + c)
        num += (np.float32(c) + np.float32(0.5)) * o_abs[i]
    inv_sqrt_den = np.float32(1) / np.sqrt(den)
    ht = np.empty(d, np.float32)
    hi = np.empty(d, np.int64)
    size = 0
    for i in range(d):
        tn = np.float32(cur[i] + 1) * inv_o[i]
        if tn < t_end:
            size = _heap_push(ht, hi, size, tn, i)
    max_ip, t = np.float32(0), np.float32(0)
    while size:
        cur_t, u = ht[0], hi[0]
        size = _heap_pop(ht, hi, size)
        cur[u] += 1
        c = cur[u]
        delta = np.float32(2) * np.float32(c)
        den += delta
        num += o_abs[u]
        old = den - delta
        inv_sqrt_den = inv_sqrt_den * (np.float32(1) - np.float32(0.5) * delta / (old + delta * np.float32(0.5)))
        cur_ip = num * inv_sqrt_den
        if cur_ip > max_ip:
            max_ip, t = cur_ip, cur_t
        if c < max_code:
            tn = np.float32(c + 1) * inv_o[u]
            if tn < t_end:
                size = _heap_push(ht, hi, size, tn, u)
    return t


@numba.njit(cache=True, error_model="numpy")
def ex_codes(r, c, ip, ex_bits, out, exfac):
    """faiss ``quantize_ex_bits``: the ex_bits-bit magnitude codes of residual r into `out` (packed
    LSB first, d * ex_bits bits) and (f_add_ex, f_rescale_ex) into exfac."""
    d = r.shape[0]
    out[:] = 0
    norm = np.sqrt(simd_sum(r, r, False))
    if norm < np.float32(1e-10):
        exfac[0], exfac[1] = 0, 0
        return
    o_abs = np.empty(d, np.float32)
    for i in range(d):
        o_abs[i] = abs(r[i] / norm)
    t = best_scale(o_abs, ex_bits)
    max_code = (1 << ex_bits) - 1
    ipnorm = 0.0
    pos = 0
    for i in range(d):
        code = min(int(np.float64(t * o_abs[i]) + EX_EPS), max_code)
        ipnorm += (code + 0.5) * np.float64(o_abs[i])
        if not r[i] > 0:  # measured on faiss-cpu 1.15.1: o_i = 0 is flipped too (see quantizer)
            code = max_code - code
        for b in range(ex_bits):
            if code & (1 << b):
                out[pos >> 3] |= np.uint8(1 << (pos & 7))
            pos += 1
    inv = np.float32(1.0 / ipnorm)
    if not (math.isfinite(inv) and abs(inv) >= F32_MIN_NORMAL):
        inv = np.float32(1)
    if ip:
        exfac[0] = simd_sum(r, c, False)
        exfac[1] = inv * norm
    else:
        exfac[0] = norm * norm
        exfac[1] = inv * np.float32(-2) * norm


@numba.njit(cache=True, error_model="numpy")
def encode(x, c, ip, ex_bits, bits, fac, ex, exfac):
    """Encode rows x (n, d) against centroid c (d,): sign bits (n, (d+7)/8), factors (n, 3),
    ex-bit codes (n, (d*ex_bits+7)/8) and ex factors (n, 2) (faiss ``compute_codes_core``)."""
    n, d = x.shape
    r = np.empty(d, np.float32)
    for i in range(n):
        for j in range(d):
            r[j] = x[i, j] - c[j]
        fac[i, 0], fac[i, 1], fac[i, 2] = sign_factors(r, x[i], ip, ex_bits > 0)
        bits[i, :] = 0
        for j in range(d):
            if r[j] > 0:
                bits[i, j >> 3] |= np.uint8(1 << (j & 7))
        if ex_bits > 0:
            ex_codes(r, c, ip, ex_bits, ex[i], exfac[i])


@numba.njit(cache=True, error_model="numpy")
def quantize_query(rq, qb, centered, qr_to_c, qq):
    """faiss ``compute_query_factors`` (AVX-512 path): rq quantized to qb bits into qq; returns
    (v_min, delta, sum_qq, sum2_signed_odd). Blocks of 16 compute (rq * inv_delta) - v_min *
    inv_delta with one rounding (``_mm512_fmsub_ps``), the tail (rq - v_min) * inv_delta; both
    clamp to [0, 2^qb - 1] and round half up by truncating x + 0.5."""
    d = rq.shape[0]
    max_code = (1 << qb) - 1
    fmax = np.float32(max_code)
    if centered:
        v_max = Z_MAX_BY_QB[qb - 1] * np.sqrt(qr_to_c / np.float32(d))
        v_min = -v_max
    else:
        v_min, v_max = rq.min(), rq.max()
    delta = (v_max - v_min) / fmax
    sum_qq, sum2 = 0, 0
    if delta <= 0:
        qq[:] = 0
        return v_min, delta, 0, (d * max_code * max_code if centered else 0)
    inv_delta = np.float32(1) / delta
    neg_off = -(v_min * inv_delta)
    d16 = d - d % 16
    for i in range(d):
        if i < d16:
            s = min(max(fma(rq[i], inv_delta, neg_off), np.float32(0)), fmax)
            v = int(s + np.float32(0.5))
        else:
            s = (rq[i] - v_min) * inv_delta
            v = 0 if s <= 0 else (max_code if s >= fmax else int(s + np.float32(0.5)))
        qq[i] = v
        sum_qq += v
        odd = 2 * v - max_code
        sum2 += odd * odd
    return v_min, delta, sum_qq, (sum2 if centered else 0)
