"""Exhaustive search over scalar-quantized vectors: faiss `IndexScalarQuantizer`.

The index stores the codes of `sq.ScalarQuantizer` and answers a query q by exact k-NN over the
reconstructions x^ of the codes, squared L2 ||q - x^||^2 or inner product <q, x^>, ties to the
smaller id, missing results -1 / +-FLT_MAX.

Summation order: faiss's. faiss scans with the SIMD kernels of its dispatch level; on AVX-512 machines:

    d % 16 == 0:  x^ = fma(fma(c, 1/255, 0.5/255), vdiff, vmin)  (1/15 for 4 bits), 16 lanes of
                  fma(q - x^, q - x^, acc) (or fma(q, x^, acc)), added by _mm512_reduce_add_ps
                  (`core.simd.simd_sum` order)
    d % 8 == 0:   the same with 8 lanes (AVX2 kernel), lanes added as ((a0+a4)+(a2+a6)) +
                  ((a1+a5)+(a3+a7))
    otherwise:    scalar loop, x^ = vmin + ((c + 0.5) / 255) * vdiff and acc += (q - x^)^2, each
                  operation rounded

    bf16, d % 16 == 0: faiss's AVX512-BF16 kernel (CPUs with avx512_bf16, faiss level
                  AVX512_SPR) rounds the *query* to bf16 too (ties to even) and sums with
                  vdpbf16ps: lane l adds the products of pairs 2l + 1 then 2l of each
                  32-value block; l2 = |q|^2 + (|x|^2 - 2 <q, x>). This path is reproduced;
                  on CPUs without avx512_bf16 faiss keeps the float32 query (rtol 1e-2 apart)

Distances are therefore bit-identical to faiss's on AVX-512 machines (tested), with one
exception: "4bit_uniform" with metric "l2" at d % 16 == 8 (faiss's AVX2 kernel) agrees only to
float32 rounding (measured |diff| <= 3.1e-7 of the largest distance at d = 8 and 24, same ids; the
folded-query order above matches faiss for "8bit_uniform" and for inner products, but not this
case, whose exact order is not reproduced). Elsewhere distances agree to float32 rounding.

fp16 overflow: values beyond +-65504 are stored as +-inf (faiss's `encode_fp16` does the same),
so such a row's L2 distance to every query is inf (or nan) and it is never returned, exactly as
in faiss; clip or rescale the data first if that matters. Ids: ties to the smaller id (faiss's scan keeps the first of equal
distances too; for "ip" faiss lists equal similarities in another order, compare tie groups as
sets, `testing.assert_knn_equal`).

Matryoshka: ``SQIndex(..., prefix_dim=d, normalize=True)`` trains, stores and searches the
re-normalised d-prefixes (`truncate.prefix`); the default (prefix_dim = D, normalize=False) is
faiss's `IndexScalarQuantizer` on the vectors as given.

Cost per query: N * d decode-and-multiply-adds over N * code_size bytes (`cost.mixed_funnel_cost`,
precision "int8" for 8-bit codes). The reference decodes a chunk of codes at a time (SCAN_CHUNK_BYTES
of float32, so the chunk stays in cache while every query scans it), in faiss's formula (faiss decodes per query and code: same
values, fewer decodes here).
"""
import numba
import numpy as np

from ..core.persist import load_npz, save_npz
from ..core.simd import tree16, fma, simd_sum
from ..core.topk import finalize, heap_push, new_heaps, sort_heaps
from ..core.truncate import prefix
from ..core.validate import (as_bool, as_dim, as_float32_matrix, as_k, check_metric,
                             check_prefix_dim, refuse_train_after_add)
from ..quantizers.sq import (DECODE_RAW, DECODE_ROUNDED, DECODE_SIMD, ScalarQuantizer, bf16_decode,
                             bf16_encode_rne, simd_lanes)

SCAN_CHUNK_BYTES = 1 << 20  # decoded float32 rows per chunk: about an L2 cache, re-read per query

_KIND, _VERSION = "SQIndex", 1


@numba.njit(cache=True, inline="always")
def _lanes8_sum(q, x, l2, a):
    """faiss's AVX2 SQ kernel: 8 lanes of fma chains, then its horizontal add (a: 8 floats of
    scratch, so the hot loop does not allocate)."""
    a[:] = 0
    for t0 in range(0, q.shape[0], 8):
        for l in range(8):
            if l2:
                diff = q[t0 + l] - x[t0 + l]
                a[l] = fma(diff, diff, a[l])
            else:
                a[l] = fma(q[t0 + l], x[t0 + l], a[l])
    return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))


@numba.njit(cache=True, inline="always")
def _scalar_sum(q, x, l2):
    """faiss's scalar SQ kernel: acc += (q - x)^2 or q * x, multiply and add rounded apart."""
    s = np.float32(0.0)
    for t in range(q.shape[0]):
        if l2:
            diff = q[t] - x[t]
            s = s + np.float32(diff * diff)
        else:
            s = s + np.float32(q[t] * x[t])
    return s


@numba.njit(cache=True, parallel=True)
def _scan_chunk(xq, rec, j0, lanes, use_ip, scale, bias, hd, hi):
    """Push the distances of every query to the decoded rows rec (ids j0 ..) into the heaps.

    The kernel's sum is mapped to fma(scale, sum, bias[r]) when scale != 1 (AVX2 uniform path)."""
    l2 = not use_ip
    affine = scale != np.float32(1.0)
    for r in numba.prange(xq.shape[0]):
        q = xq[r]
        lanes8 = np.empty(8, dtype=np.float32)
        for j in range(rec.shape[0]):
            if lanes == 16:
                dis = simd_sum(q, rec[j], l2)
            elif lanes == 8:
                dis = _lanes8_sum(q, rec[j], l2, lanes8)
            else:
                dis = _scalar_sum(q, rec[j], l2)
            if affine:
                dis = fma(scale, dis, bias[r])
            if use_ip:
                dis = -dis
            if dis < hd[r, 0]:  # ids grow along the scan: an equal distance never enters
                heap_push(hd[r], hi[r], dis, j0 + j)


@numba.njit(cache=True, inline="always")
def _bf16_dot(a, b, acc):
    """faiss's SPR bf16 dot product: vdpbf16ps over 32-value blocks (lane l adds the product of
    pair 2l + 1, then of pair 2l, each add rounded; bf16 products are exact in float32), then
    _mm512_reduce_add_ps. a, b: float32 holding bf16 values, len % 16 == 0; acc: 16 floats of
    scratch, so the hot loop does not allocate."""
    acc[:] = 0
    for t0 in range(0, a.shape[0], 32):
        for l in range(16):
            t = t0 + 2 * l
            if t < a.shape[0]:
                acc[l] = acc[l] + a[t + 1] * b[t + 1]
                acc[l] = acc[l] + a[t] * b[t]
    return tree16(acc[0], acc[1], acc[2], acc[3], acc[4], acc[5], acc[6], acc[7], acc[8],
                   acc[9], acc[10], acc[11], acc[12], acc[13], acc[14], acc[15])


@numba.njit(cache=True, parallel=True)
def _scan_bf16(qb, rec, j0, use_ip, hd, hi):
    """faiss's SPR bf16 scan (query rounded to bf16): ip = dot(q, x), l2 = |q|^2 + (|x|^2 - 2 dot)."""
    for r in numba.prange(qb.shape[0]):
        q = qb[r]
        acc = np.empty(16, dtype=np.float32)
        qn = _bf16_dot(q, q, acc)
        for j in range(rec.shape[0]):
            dot = _bf16_dot(q, rec[j], acc)
            if use_ip:
                dis = -dot
            else:
                dis = qn + (np.float32(-2.0) * dot + _bf16_dot(rec[j], rec[j], acc))
            if dis < hd[r, 0]:
                heap_push(hd[r], hi[r], dis, j0 + j)


@numba.njit(cache=True)
def _sequential_sums(x):
    """float32 row sums of x, left to right."""
    out = np.zeros(x.shape[0], dtype=np.float32)
    for i in range(x.shape[0]):
        for t in range(x.shape[1]):
            out[i] += x[i, t]
    return out


class SQIndex:
    """faiss `IndexScalarQuantizer`: exhaustive search over scalar-quantized vectors.

    Parameters
        d               int, = D: input width
        qtype           str: one of `quantizers.sq.QTYPES` (see `ScalarQuantizer`)
        metric          str, "l2" or "ip"
        rangestat       str: one of `quantizers.sq.RANGESTATS`
        rangestat_arg   float: its argument
        prefix_dim      int in 1..D: indexed prefix (default D)
        normalize       bool: Matryoshka prefixes (see the module docstring)

    Attributes
        dim             int, = prefix_dim
        sq              ScalarQuantizer at dim
        codes           (ntotal, code_size) uint8
        ntotal          int
        is_trained      bool
    """

    def __init__(self, d, qtype="8bit", metric="l2", rangestat="minmax", rangestat_arg=0.0,
                 prefix_dim=None, normalize=False):
        self.d = as_dim(d)
        self.dim = check_prefix_dim(prefix_dim, self.d, "prefix_dim")
        self.normalize = as_bool(normalize, "normalize")
        self.metric = check_metric(metric)
        self.sq = ScalarQuantizer(self.dim, qtype, rangestat, rangestat_arg)
        self.codes = np.empty((0, self.sq.code_size), dtype=np.uint8)

    @property
    def ntotal(self):
        return int(self.codes.shape[0])

    @property
    def is_trained(self):
        return self.sq.is_trained

    def _prefix(self, x, name):
        x = as_float32_matrix(x, name, d=self.d)
        if self.dim == self.d and not self.normalize:
            return x
        return prefix(x, self.dim, self.normalize)

    def _require_trained(self, verb):
        if not self.is_trained:
            raise ValueError(f"SQIndex.{verb} called before train(); call train(x) first")

    def train(self, x):
        """Learn the quantizer's ranges from x (n, D), n >= 1. Returns self. An index holding codes
        refuses (they were encoded with the old ranges): reset() first."""
        refuse_train_after_add("SQIndex", self.ntotal)
        self.sq.train(as_float32_matrix(self._prefix(x, "x"), "x", min_rows=1))
        return self

    def add(self, x):
        """Encode and append the rows of x (n, D); they get ids ntotal .. ntotal + n - 1."""
        self._require_trained("add")
        self.codes = np.concatenate([self.codes, self.sq.encode(self._prefix(x, "x"))])

    def search(self, q, k):
        """k nearest reconstructions of each query (nq, D) -> (D float32 (nq, k), I int64 (nq, k))."""
        self._require_trained("search")
        q = self._prefix(q, "q")
        k = as_k(k, q.shape[0])
        hd, hi = new_heaps(q.shape[0], k)
        sq, lanes, use_ip = self.sq, simd_lanes(self.dim), self.metric == "ip"
        mode, scale, bias = DECODE_ROUNDED if lanes == 1 else DECODE_SIMD, np.float32(1), q[:, 0]
        if sq.qtype == "bf16" and lanes == 16:
            q = bf16_decode(bf16_encode_rne(q))
        elif sq.qtype in ("8bit_uniform", "4bit_uniform") and lanes == 8:
            # faiss's AVX2 kernel folds vmin / vdiff into the query and decodes codes to [0, 1]
            mode, (vmin, vdiff) = DECODE_RAW, sq.trained
            if use_ip:
                scale, bias = vdiff, vmin * _sequential_sums(q)
            else:
                inv = np.float32(1) / vdiff if vdiff != 0 else np.float32(0)
                scale, bias, q = vdiff * vdiff, np.zeros(q.shape[0], np.float32), (q - vmin) * inv
        chunk = max(64, SCAN_CHUNK_BYTES // (4 * self.dim))
        for j0 in range(0, self.ntotal, chunk):
            rec = sq.reconstruct(self.codes[j0:j0 + chunk], mode)
            if sq.qtype == "bf16" and lanes == 16:
                _scan_bf16(q, rec, j0, use_ip, hd, hi)
            else:
                _scan_chunk(q, rec, j0, lanes, use_ip, scale, bias, hd, hi)
        sort_heaps(hd, hi)
        return finalize(hd, hi, self.metric)

    def reset(self):
        """Remove all codes; the trained ranges stay (faiss ``IndexScalarQuantizer.reset``)."""
        self.codes = np.empty((0, self.sq.code_size), dtype=np.uint8)

    def _params(self):
        return {"d": self.d, "qtype": self.sq.qtype, "metric": self.metric,
                "rangestat": self.sq.rangestat, "rangestat_arg": float(self.sq.rangestat_arg),
                "prefix_dim": self.dim, "normalize": self.normalize}

    def save(self, path):
        """Write parameters, trained ranges and codes to a versioned .npz file (atomic)."""
        save_npz(path, _KIND, _VERSION, self._params(),
                 {"trained": self.sq.trained, "codes": self.codes})

    @classmethod
    def load(cls, path):
        """Read an index written by `save`; a corrupt or foreign file raises ValueError."""
        params, arrays = load_npz(path, _KIND, _VERSION,
                                  {"trained": (np.float32, 1), "codes": (np.uint8, 2)})
        try:
            index = cls(**params)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: invalid SQIndex parameters {params!r} ({exc})") from exc
        trained, codes = arrays["trained"], arrays["codes"]
        if trained.size:
            try:
                index.sq.set_trained(trained)
            except ValueError as exc:
                raise ValueError(f"{path}: {exc}") from exc
        if codes.shape[1] != index.sq.code_size:
            raise ValueError(f"{path}: codes have {codes.shape[1]} bytes per vector, qtype "
                             f"{index.sq.qtype!r} at d={index.dim} needs {index.sq.code_size}")
        if codes.shape[0] and not index.is_trained:
            raise ValueError(f"{path}: holds codes but no trained ranges")
        index.codes = np.ascontiguousarray(codes)
        return index

    def __repr__(self):
        return (f"SQIndex(d={self.d}, qtype={self.sq.qtype!r}, metric={self.metric!r}, "
                f"ntotal={self.ntotal})")
