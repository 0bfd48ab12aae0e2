"""Look-up-table quantization of 4-bit fast-scan: faiss 1.15 ``utils/quantize_lut.cpp``, exactly.

A fast-scan query holds a float table T[m, j] (M sub-quantizers x ksub = 16 centroids: the PQ
distance table for L2, the inner-product table for IP). The kernels add uint8 entries into
uint16 accumulators, so each row m is shifted by its minimum t_m = min_j T[m, j] and scaled by
one factor a shared by all rows:

    Tq[m, j] = floor((T[m, j] - t_m) * a + 0.5)          (float32 ops, then floor; uint8)
    b        = sum_m t_m                                  (float32, m = 0, 1, ..., M - 1)
    distance ~ b + (sum_m Tq[m, code_m]) / a              (the output scaling, `scan`)

Two rules for a, as faiss:

- flat (``round_uint8_per_column``, used by ``IndexPQFastScan``): a = 255 / max_m span_m with
  span_m = max_j T[m, j] - t_m (a = 0 when every span is 0). Every entry is at most 255, but the
  sum over M rows is NOT bounded: it can reach 255 M, past 65535 for M >= 258, and the uint16
  accumulator then wraps (the overflow study: `experiments/fastscan_overflow.py`).
- IVF without bias (``quantize_LUT_and_bias`` with bias == nullptr, used by
  ``IndexIVFPQFastScan`` with ``by_residual = False``, its default):
  a = min(255 / max_m span_m, 65535 / sum_m span_m) (each ratio +inf where its span is 0, then
  a = 0 if not finite): the bound keeps every sum <= 65535 up to the +0.5 rounding of the rows
  (M / 2 at most above 65535; the study measures it).

- IVF with a bias (``quantize_LUT_and_bias`` with a bias, ``by_residual = True``; P = nprobe
  probes with float biases beta_j, the coarse distances or inner products of the probed lists):
  * one table per query (IP: T = <y_m, c_mj>, beta_j = <y, c_{l_j}>; `quantize_lut_bias`):
    a = min(255 / max_m span_m, 65535 / ((max_j beta_j - min_j beta_j) + sum_m span_m)),
    b = sum_m t_m + min_j beta_j, biasq_j = floor((beta_j - min_j beta_j) * a + 0.5);
  * one table per probe (L2, 3-D: T_j = term2[l_j] - 2 <y_m, c_mj>, beta_j = ||y - c_{l_j}||^2;
    `quantize_lut_3d`): per probe t_jm = min T_j[m, :], B_j = beta_j + sum_m t_jm (float32, from
    beta_j, m ascending), a = min(255 / max_jm span_jm, 65535 / max_j ((beta_j - min beta) +
    sum_m span_jm)), b = min_j B_j, Tq_j[m, c] = floor((T_j[m, c] - t_jm) * a + 0.5) and
    biasq_j = floor((B_j - b) * a + 0.5) (uint16, taken mod 2^16 as faiss's cast does on x86).
  The scan adds biasq_j to every sum of probe j (mod 2^16), so v = sum_m Tq + biasq_j <= 65535
  up to the roundings. Probes with no list (id -1, nprobe > nlist): faiss fills their L2 table
  with NaN, which every min / max ignores, and their bias is +FLT_MAX (L2: never the minimum) or
  -FLT_MAX (IP: it IS the minimum, so a collapses; reproduced by passing the padded biases).

Order of float32 operations, reproduced: spans and mins in row order, span sums and b summed
left to right in float32; the rounding computes (T - t_m) * a in float32, then adds 0.5 in
double (C's ``+ 0.5`` literal) and rounds back to float for ``floorf``: for values < 2^22 that
double sum is exact and equals the float32 one, which is what we compute. Rows past M up to
M2 = M rounded up to even are zero (the kernels read column pairs).

Shapes: tables (nq, M, 16) float32 -> lut (nq, M2, 16) uint8, a (nq,) float32, b (nq,) float32.
Deviation: faiss ignores NaN entries in the min/max (its loops compare); NaN tables are refused
here (our tables come from finite vectors).
"""
import numpy as np

__all__ = ["quantize_lut_per_column", "quantize_lut_bounded", "quantize_lut_bias", "quantize_lut_3d",
           "round_rows"]


def _spans(tables):
    """Row minima t (nq, M) and spans (nq, M), float32, as faiss's tab_min / tab_max."""
    mins = tables.min(axis=2)
    return mins, tables.max(axis=2) - mins


def _sum_rows(v):
    """Left-to-right float32 sum over axis 1 (faiss's scalar ``b += mins[i]`` loop)."""
    acc = np.zeros(v.shape[0], np.float32)
    for m in range(v.shape[1]):
        acc = acc + v[:, m]
    return acc


def round_rows(tables, mins, a):
    """Tq = floor((T - t_m) * a + 0.5) as uint8, padded to an even number of rows with zeros."""
    nq, M, ksub = tables.shape
    x = (tables - mins[:, :, None]) * a[:, None, None]
    q = np.floor(x + np.float32(0.5)).astype(np.int64)
    M2 = M + (M & 1)
    out = np.zeros((nq, M2, ksub), np.uint8)
    out[:, :M] = (q & 0xFF).astype(np.uint8)  # faiss: uint8_t(int(value)), modulo 256
    return out


def _check(tables):
    t = np.asarray(tables)
    if t.dtype != np.float32 or t.ndim != 3:
        raise ValueError(f"tables must be a float32 array (nq, M, ksub), got {t.dtype} {t.shape}")
    if not np.isfinite(t).all():
        raise ValueError("tables contain NaN or infinity; quantize finite tables only")
    return np.ascontiguousarray(t)


def quantize_lut_per_column(tables):
    """faiss ``round_uint8_per_column`` (flat fast-scan): -> (lut uint8 (nq, M2, ksub), a, b)."""
    t = _check(tables)
    mins, spans = _spans(t)
    max_span = spans.max(axis=1)
    with np.errstate(divide="ignore"):
        a = np.where(max_span > 0, np.float32(255) / max_span, np.float32(0)).astype(np.float32)
    return round_rows(t, mins, a), a, _sum_rows(mins)


def quantize_lut_bounded(tables):
    """faiss ``quantize_LUT_and_bias`` without bias (IVF fast-scan): a also bounds the sum of the
    spans by 65535 -> (lut uint8 (nq, M2, ksub), a, b)."""
    t = _check(tables)
    mins, spans = _spans(t)
    max_span = spans.max(axis=1)
    span_sum = _sum_rows(spans)
    with np.errstate(divide="ignore"):
        a1 = np.where(max_span > 0, np.float32(255) / max_span, np.float32(np.inf))
        a2 = np.where(span_sum > 0, np.float32(65535) / span_sum, np.float32(np.inf))
    a = np.minimum(a1, a2).astype(np.float32)
    a[~np.isfinite(a)] = 0
    return round_rows(t, mins, a), a, _sum_rows(mins)


def _scale_factor(max_span, span_dis):
    """a = min(255 / max_span, 65535 / span_dis), each +inf where its span is <= 0, 0 if not finite."""
    with np.errstate(divide="ignore", over="ignore"):
        a1 = np.where(max_span > 0, np.float32(255) / max_span, np.float32(np.inf))
        a2 = np.where(span_dis > 0, np.float32(65535) / span_dis, np.float32(np.inf))
    a = np.minimum(a1, a2).astype(np.float32)
    a[~np.isfinite(a)] = 0
    return a


def _round_bias(beta, ref, a):
    """biasq = floor((beta - ref) * a + 0.5) as faiss's uint16 cast (mod 2^16), int64 (nq, P)."""
    with np.errstate(invalid="ignore", over="ignore"):
        x = np.floor((beta - ref[:, None]) * a[:, None] + np.float32(0.5))
    x = np.where(np.isfinite(x), x, 0)  # probes without a list: never scanned
    return x.astype(np.int64) & 0xFFFF


def quantize_lut_bias(tables, bias):
    """faiss ``quantize_LUT_and_bias`` with a bias and a 2-D LUT (IVF IP by_residual): tables
    (nq, M, ksub), bias (nq, P) float32 -> (lut (nq, M2, ksub), biasq (nq, P) int64, a, b)."""
    t = _check(tables)
    beta = np.asarray(bias, np.float32)
    mins, spans = _spans(t)
    bmin = beta.min(axis=1)
    acc = beta.max(axis=1) - bmin
    for m in range(spans.shape[1]):
        acc = acc + spans[:, m]
    a = _scale_factor(spans.max(axis=1), acc)
    b = _sum_rows(mins) + bmin
    return round_rows(t, mins, a), _round_bias(beta, bmin, a), a, b


def quantize_lut_3d(tables, bias, valid):
    """faiss ``quantize_LUT_and_bias`` with a bias and a 3-D LUT (IVF L2 by_residual): tables
    (nq, P, M, ksub), bias (nq, P) float32, valid (nq, P) bool (False: probe without a list, its
    table ignored) -> (lut (nq, P, M2, ksub), biasq (nq, P) int64, a (nq,), b (nq,))."""
    nq, P, M, ksub = tables.shape
    t = _check(np.where(valid[:, :, None, None], tables, 0).reshape(nq * P, M, ksub))
    beta = np.asarray(bias, np.float32)
    mins, spans = _spans(t)
    mins, spans = mins.reshape(nq, P, M), spans.reshape(nq, P, M)
    bmin = np.where(valid, beta, np.inf).min(axis=1).astype(np.float32)
    span_dis = beta - bmin[:, None]
    B = beta.copy()
    for m in range(M):
        span_dis = span_dis + spans[:, :, m]
        B = B + mins[:, :, m]
    span_dis = np.where(valid, span_dis, -np.inf).max(axis=1).astype(np.float32)
    B = np.where(valid, B, np.inf).astype(np.float32)
    max_span = np.where(valid[:, :, None], spans, -np.inf).max(axis=(1, 2)).astype(np.float32)
    a = _scale_factor(max_span, span_dis)
    b = B.min(axis=1)
    lutq = round_rows(t, mins.reshape(nq * P, M), np.repeat(a, P))
    return lutq.reshape(nq, P, -1, ksub), _round_bias(B, b, a), a, b
