"""Scalar quantization: faiss `ScalarQuantizer` and `IndexScalarQuantizer`.

Each component x_t of a d-dim vector is coded on its own. For the range-based qtypes a value is
mapped to [0, 1] with a trained offset and width (vmin_t, vdiff_t), cut into 2^b - 1 cells and
stored as the cell number c_t (b = 8 or 4 bits); the reconstruction is the centre of the cell:

    encode:  u_t = clip((x_t - vmin_t) / vdiff_t, 0, 1)    (u_t = 0 where vdiff_t == 0)
             c_t = floor(255 u_t)  (8 bits)   or   floor(15 u_t)  (4 bits, u_t * 15.0 in double)
    decode:  x^_t = vmin_t + (c_t + 1/2) / (2^b - 1) * vdiff_t

"8bit" / "4bit" train one (vmin_t, vdiff_t) per dimension, "8bit_uniform" / "4bit_uniform" one
pair for all dimensions (trained on the n * d values as one sample). "fp16" stores IEEE half
floats (round to nearest even), "bf16" the high 16 bits of the float32 after adding 0x8000
(round half away from zero in magnitude); neither is trained. Codes: (n, code_size) uint8 with
code_size = d (8 bit), ceil(d / 2) (4 bit: component t in the low nibble of byte t / 2 when t is
even, the high nibble when odd) or 2 d (fp16 / bf16, little-endian uint16).

Range statistics (faiss `RangeStat`, argument r = rangestat_arg), on a sample v of n values:

    minmax:    [min v - e, max v + e],  e = (max v - min v) * r     (r = 0: the plain range)
    meanstd:   [mu - r sigma, mu + r sigma], mu, sigma^2 from float64 sums (sigma = 1 if <= 0)
    quantiles: [v_(o), v_(n-1-o)] of the sorted sample, o = int(float32(r) * float32(n)),
               o = n // 2 when o > n - o

trained: vmin then vdiff (faiss's `trained` vector: [vmin, vdiff] uniform, [vmin_0..vmin_{d-1},
vdiff_0..vdiff_{d-1}] per dimension).

faiss-identical (faiss 1.15): `trained` and the codes bit for bit, including two faiss quirks of
per-dimension training with meanstd / quantiles: (1) faiss builds the per-dimension samples from
rows 1..n-1 and leaves row 0 at 0.0 (its transpose loop starts at i = 1), so the first training
vector counts as a zero vector; (2) faiss trains the dimensions in parallel threads that share
one 2-float scratch vector, so with several OpenMP threads faiss's ranges can mix dimensions (a
data race); the values here are those of a single-threaded faiss. `decode` equals faiss's
`sa_decode` / `reconstruct` (vmin + x * vdiff with one fused multiply-add, as faiss's AVX-512
build computes it).

Search (`SQIndex`): exact k-NN over the reconstructions, squared L2 or inner product, in faiss's
order. faiss scans with the SIMD kernels of its dispatch level; on AVX-512 machines:

    d % 16 == 0:  x^ = fma(fma(c, 1/255, 0.5/255), vdiff, vmin)  (1/15 for 4 bits), 16 lanes of
                  fma(q - x^, q - x^, acc) (or fma(q, x^, acc)), added by _mm512_reduce_add_ps
                  (`_simd.simd_sum` order)
    d % 8 == 0:   the same with 8 lanes (AVX2 kernel), lanes added as ((a0+a4)+(a2+a6)) +
                  ((a1+a5)+(a3+a7))
    otherwise:    scalar loop, x^ = vmin + ((c + 0.5) / 255) * vdiff and acc += (q - x^)^2, each
                  operation rounded

    bf16, d % 16 == 0: faiss's AVX512-BF16 kernel (CPUs with avx512_bf16, faiss level
                  AVX512_SPR) rounds the *query* to bf16 too (ties to even) and sums with
                  vdpbf16ps: lane l adds the products of pairs 2l + 1 then 2l of each
                  32-value block; l2 = |q|^2 + (|x|^2 - 2 <q, x>). This path is reproduced;
                  on CPUs without avx512_bf16 faiss keeps the float32 query (rtol 1e-2 apart)

Distances are therefore bit-identical to faiss's on AVX-512 machines (tested); elsewhere they
agree to float32 rounding. Ids: ties to the smaller id (faiss's scan keeps the first of equal
distances too; for "ip" faiss lists equal similarities in another order, compare tie groups as
sets, `testing.assert_knn_equal`).

Matryoshka: ``SQIndex(..., prefix_dim=d, normalize=True)`` trains, stores and searches the
re-normalised d-prefixes (`truncate.prefix`); the default (prefix_dim = D, normalize=False) is
faiss's `IndexScalarQuantizer` on the vectors as given.

Shapes: x (n, d) float32 in, codes (n, code_size) uint8, decode -> (n, d) float32.
"""
import numba
import numpy as np

from ._persist import load_npz, save_npz
from ._simd import _tree16, fma, simd_sum
from ._validate import as_bool, as_float32_matrix, as_int, check_metric, check_prefix_dim
from .topk import finalize, heap_push, new_heaps, sort_heaps
from .truncate import prefix

QTYPES = ("8bit", "8bit_uniform", "4bit", "4bit_uniform", "fp16", "bf16")
RANGESTATS = ("minmax", "meanstd", "quantiles")
_BITS = {"8bit": 8, "8bit_uniform": 8, "4bit": 4, "4bit_uniform": 4, "fp16": 16, "bf16": 16}
_KIND_OF = {"8bit": 0, "8bit_uniform": 0, "4bit": 1, "4bit_uniform": 1, "fp16": 2, "bf16": 3}
SCAN_CHUNK = 4096  # codes decoded at once before the queries scan them

_KIND, _VERSION = "SQIndex", 1


# ------------------------------------------------------------------------------ training

@numba.njit(cache=True)
def _train_uniform(v, rs, arg, out):
    """(vmin, vdiff) of the 1-D float32 sample v with range statistic rs (0 minmax, 1 meanstd,
    2 quantiles) into out[0], out[1]: faiss `train_Uniform`."""
    n = v.shape[0]
    if rs == 0:
        lo, hi = v[0], v[0]
        for i in range(n):
            lo = min(lo, v[i])
            hi = max(hi, v[i])
        e = np.float32((hi - lo) * arg)
        lo = np.float32(lo - e)
        hi = np.float32(hi + e)
    elif rs == 1:
        s, s2 = 0.0, 0.0
        for i in range(n):
            s += np.float64(v[i])
            s2 += np.float64(np.float32(v[i] * v[i]))
        mean = np.float32(s / n)
        var = np.float32(s2 / n - np.float64(np.float32(mean * mean)))
        std = np.float32(1.0) if var <= 0 else np.float32(np.sqrt(var))
        lo = np.float32(mean - np.float32(std * arg))
        hi = np.float32(mean + np.float32(std * arg))
    else:
        o = np.int64(np.float32(arg) * np.float32(n))
        o = max(o, 0)
        if o > n - o:
            o = n // 2
        srt = np.sort(v)
        lo, hi = srt[o], srt[n - 1 - o]
    out[0] = lo
    out[1] = np.float32(hi - lo)


@numba.njit(cache=True)
def _train_per_dim(x, rs, arg, vmin, vdiff):
    """faiss `train_NonUniform`: one (vmin_t, vdiff_t) per column of x (n, d)."""
    n, d = x.shape
    col = np.zeros(n, dtype=np.float32)
    pair = np.empty(2, dtype=np.float32)
    for t in range(d):
        if rs == 0:
            col[:] = x[:, t]
        else:
            col[1:] = x[1:, t]  # faiss's transpose skips row 0, which stays 0.0
        _train_uniform(col, rs, arg, pair)
        vmin[t] = pair[0]
        vdiff[t] = pair[1]


# ------------------------------------------------------------------------ encode / decode

@numba.njit(cache=True, parallel=True)
def _encode_cells(x, vmin, vdiff, per_dim, bits, codes):
    """Range-based codes of the rows of x: u = clip((x - vmin) / vdiff, 0, 1), c = trunc(u * L)."""
    n, d = x.shape
    for i in numba.prange(n):
        for t in range(d):
            lo = vmin[t] if per_dim else vmin[0]
            w = vdiff[t] if per_dim else vdiff[0]
            u = np.float32(0.0)
            if w != 0:
                u = np.float32((x[i, t] - lo) / w)
                u = max(u, np.float32(0.0))
                u = min(u, np.float32(1.0))
            if bits == 8:
                codes[i, t] = np.uint8(np.int32(np.float32(255.0) * u))
            else:  # faiss computes x * 15.0 in double before truncating
                codes[i, t >> 1] |= np.uint8(np.int32(np.float64(u) * 15.0) << ((t & 1) << 2))


# Reconstruction formulas of faiss's kernels (L = 255 or 15 levels, c the cell number):
DECODE_ROUNDED = 0  # vmin + ((c + 0.5) / L) * vdiff, each operation rounded (scalar build)
DECODE_FUSED = 1    # fma((c + 0.5) / L, vdiff, vmin)    (decode in the AVX2 / AVX-512 builds)
DECODE_SIMD = 2     # fma(u, vdiff, vmin), u = fma(c, 1/L, 0.5/L)   (AVX2 / AVX-512 scans)
DECODE_RAW = 3      # u only, in [0, 1]                  (AVX2 uniform scan kernel)
# with avx2=True and 4 bits, u = (c + 0.5) * (1/L), rounded twice (faiss's AVX2 4-bit codec)


@numba.njit(cache=True, parallel=True)
def _decode_cells(codes, vmin, vdiff, per_dim, bits, mode, avx2, out):
    """Reconstructions of range-based codes into out (n, d) with formula `mode` (above)."""
    n, d = out.shape
    levels = np.float32(255.0) if bits == 8 else np.float32(15.0)
    step, half = np.float32(1.0) / levels, np.float32(0.5) / levels
    for i in numba.prange(n):
        for t in range(d):
            lo = vmin[t] if per_dim else vmin[0]
            w = vdiff[t] if per_dim else vdiff[0]
            if bits == 8:
                c = np.float32(codes[i, t])
            else:
                c = np.float32((codes[i, t >> 1] >> ((t & 1) << 2)) & 15)
            if mode == DECODE_SIMD or mode == DECODE_RAW:
                if avx2 and bits == 4:
                    u = np.float32((c + np.float32(0.5)) * step)
                else:
                    u = fma(c, step, half)
                out[i, t] = fma(u, w, lo) if mode == DECODE_SIMD else u
            else:
                u = np.float32((c + np.float32(0.5)) / levels)
                out[i, t] = fma(u, w, lo) if mode == DECODE_FUSED else lo + np.float32(u * w)


def _bf16_encode(x):
    """faiss `encode_bf16`: the high half of the float32 bits after adding 0x8000."""
    bits = x.view(np.uint32).astype(np.uint64) + 0x8000
    return (bits >> 16).astype(np.uint16)


def _bf16_encode_rne(x):
    """bfloat16 rounded to nearest even (the AVX512-BF16 instruction vcvtneps2bf16)."""
    bits = x.view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


_FP16_MAX_SCALED = np.array([(31 << 23) - 0x1000], dtype=np.uint32).view(np.float32)[0]


def _fp16_encode(x):
    """faiss `encode_fp16` (F. Giesen's branch-free conversion): float32 x -> IEEE half bits.

    The low 12 mantissa bits are dropped, the exponent rebased by a multiply with 2^-112, and
    0x1000 added before the shift: round to nearest with ties away from zero (not numpy's ties
    to even); overflow gives +-inf."""
    u = x.view(np.uint32)
    sign = u & np.uint32(0x80000000)
    a = u ^ sign
    scaled = (a & np.uint32(0xFFFFF000)).view(np.float32) * np.float32(2.0 ** -112)
    scaled = np.minimum(scaled, _FP16_MAX_SCALED)
    o = (scaled.view(np.uint32) + np.uint32(0x1000)) >> np.uint32(13)
    infty = np.uint32(255 << 23)
    o = np.where(a < infty, o, np.where(a > infty, np.uint32(0x7E00), np.uint32(0x7C00)))
    return (o | (sign >> np.uint32(16))).astype(np.uint16)


def _bf16_decode(h):
    return (h.astype(np.uint32) << 16).view(np.float32)


# ------------------------------------------------------------------------------ scanning

@numba.njit(cache=True, inline="always")
def _lanes8_sum(q, x, l2):
    """faiss's AVX2 SQ kernel: 8 lanes of fma chains, then its horizontal add."""
    a = np.zeros(8, dtype=np.float32)
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
        for j in range(rec.shape[0]):
            if lanes == 16:
                dis = simd_sum(q, rec[j], l2)
            elif lanes == 8:
                dis = _lanes8_sum(q, rec[j], l2)
            else:
                dis = _scalar_sum(q, rec[j], l2)
            if affine:
                dis = fma(scale, dis, bias[r])
            if use_ip:
                dis = -dis
            if dis < hd[r, 0]:  # ids grow along the scan: an equal distance never enters
                heap_push(hd[r], hi[r], dis, j0 + j)


@numba.njit(cache=True, inline="always")
def _bf16_dot(a, b):
    """faiss's SPR bf16 dot product: vdpbf16ps over 32-value blocks (lane l adds the product of
    pair 2l + 1, then of pair 2l, each add rounded; bf16 products are exact in float32), then
    _mm512_reduce_add_ps. a, b: float32 holding bf16 values, len % 16 == 0."""
    acc = np.zeros(16, dtype=np.float32)
    for t0 in range(0, a.shape[0], 32):
        for l in range(16):
            t = t0 + 2 * l
            if t < a.shape[0]:
                acc[l] = acc[l] + a[t + 1] * b[t + 1]
                acc[l] = acc[l] + a[t] * b[t]
    return _tree16(acc[0], acc[1], acc[2], acc[3], acc[4], acc[5], acc[6], acc[7], acc[8],
                   acc[9], acc[10], acc[11], acc[12], acc[13], acc[14], acc[15])


@numba.njit(cache=True, parallel=True)
def _scan_bf16(qb, rec, j0, use_ip, hd, hi):
    """faiss's SPR bf16 scan (query rounded to bf16): ip = dot(q, x), l2 = |q|^2 + (|x|^2 - 2 dot)."""
    for r in numba.prange(qb.shape[0]):
        q = qb[r]
        qn = _bf16_dot(q, q)
        for j in range(rec.shape[0]):
            dot = _bf16_dot(q, rec[j])
            if use_ip:
                dis = -dot
            else:
                dis = qn + (np.float32(-2.0) * dot + _bf16_dot(rec[j], rec[j]))
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


def simd_lanes(d):
    """Lanes of the faiss SQ scan kernel used at dimension d on an AVX-512 machine: 16, 8 or 1."""
    return 16 if d % 16 == 0 else 8 if d % 8 == 0 else 1


def _check_choice(value, name, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


class ScalarQuantizer:
    """faiss `ScalarQuantizer(d, qtype)` with `rangestat` / `rangestat_arg`.

    Attributes: `d`, `qtype`, `bits` (8, 4 or 16), `code_size`, `rangestat`, `rangestat_arg`
    (float32), `trained` (float32: [vmin, vdiff] for uniform qtypes, [vmin (d), vdiff (d)] per
    dimension, empty for fp16 / bf16 or before training), `is_trained`.
    """

    def __init__(self, d, qtype="8bit", rangestat="minmax", rangestat_arg=0.0):
        self.d = as_int(d, "d", 1)
        self.qtype = _check_choice(qtype, "qtype", QTYPES)
        self.rangestat = _check_choice(rangestat, "rangestat", RANGESTATS)
        if isinstance(rangestat_arg, (bool, np.bool_)) or not np.isscalar(rangestat_arg) \
                or not np.isreal(rangestat_arg) or not np.isfinite(rangestat_arg):
            raise ValueError(f"rangestat_arg must be a finite real number, got {rangestat_arg!r}")
        self.rangestat_arg = np.float32(rangestat_arg)  # faiss stores a float
        self.bits = _BITS[qtype]
        self.code_size = self.d if self.bits == 8 else (self.d + 1) // 2 if self.bits == 4 else 2 * self.d
        self.trained = np.empty(0, dtype=np.float32)

    @property
    def per_dim(self):
        return self.qtype in ("8bit", "4bit")

    @property
    def is_trained(self):
        if self.bits == 16:
            return True
        return self.trained.shape[0] == (2 * self.d if self.per_dim else 2)

    def train(self, x):
        """Learn the ranges from x (n, d), n >= 1 (fp16 / bf16: nothing to learn). Returns self."""
        x = as_float32_matrix(x, "x", d=self.d, min_rows=1)
        rs = RANGESTATS.index(self.rangestat)
        if self.bits == 16:
            return self
        if self.per_dim:
            vmin, vdiff = np.empty(self.d, np.float32), np.empty(self.d, np.float32)
            _train_per_dim(x, rs, self.rangestat_arg, vmin, vdiff)
            self.trained = np.concatenate([vmin, vdiff])
        else:
            self.trained = np.empty(2, np.float32)
            _train_uniform(x.ravel(), rs, self.rangestat_arg, self.trained)
        return self

    def set_trained(self, trained):
        """Install faiss's `trained` vector (or a saved one) after checking its length."""
        t = np.ascontiguousarray(trained, dtype=np.float32).ravel()
        want = 0 if self.bits == 16 else 2 * self.d if self.per_dim else 2
        if t.shape[0] != want:
            raise ValueError(f"trained has {t.shape[0]} values but qtype {self.qtype!r} at d={self.d} "
                             f"needs {want}")
        if not np.isfinite(t).all():
            raise ValueError("trained contains NaN or Inf")
        self.trained = t
        return self

    def _ranges(self):
        if not self.is_trained:
            raise ValueError(f"ScalarQuantizer({self.qtype!r}) used before train(); call train(x) first")
        half = self.d if self.per_dim else 1
        return self.trained[:half], self.trained[half:]

    def encode(self, x):
        """Codes of the rows of x (n, d) -> (n, code_size) uint8 (faiss `compute_codes`)."""
        if self.bits == 16:
            x = as_float32_matrix(x, "x", d=self.d)
            half = _fp16_encode(x) if self.qtype == "fp16" else _bf16_encode(x)
            return np.ascontiguousarray(half).view(np.uint8).reshape(x.shape[0], self.code_size)
        vmin, vdiff = self._ranges()
        x = as_float32_matrix(x, "x", d=self.d)
        codes = np.zeros((x.shape[0], self.code_size), dtype=np.uint8)
        _encode_cells(x, vmin, vdiff, self.per_dim, self.bits, codes)
        return codes

    def _codes(self, codes):
        c = np.asarray(codes)
        if c.dtype != np.uint8:
            raise TypeError(f"codes must be uint8 (as encode returns), got dtype {c.dtype}")
        if c.ndim != 2 or c.shape[1] != self.code_size:
            raise ValueError(f"codes must have shape (n, {self.code_size}) for qtype {self.qtype!r} "
                             f"at d={self.d}, got {c.shape}")
        return np.ascontiguousarray(c)

    def reconstruct(self, codes, mode=None):
        """Validated codes -> (n, d) float32 with decode formula `mode` (default: faiss's decode,
        fused where faiss's build at this d is the AVX2 / AVX-512 one)."""
        if self.bits == 16:
            h = codes.view(np.uint16)
            return (h.view(np.float16).astype(np.float32) if self.qtype == "fp16"
                    else _bf16_decode(h))
        vmin, vdiff = self._ranges()
        if mode is None:
            mode = DECODE_FUSED if simd_lanes(self.d) > 1 else DECODE_ROUNDED
        out = np.empty((codes.shape[0], self.d), dtype=np.float32)
        _decode_cells(codes, vmin, vdiff, self.per_dim, self.bits, mode, simd_lanes(self.d) == 8, out)
        return out

    def decode(self, codes):
        """Reconstructions of codes (n, code_size) uint8 -> (n, d) float32 (faiss `decode`)."""
        return self.reconstruct(self._codes(codes))

    def __repr__(self):
        return (f"ScalarQuantizer(d={self.d}, qtype={self.qtype!r}, rangestat={self.rangestat!r}, "
                f"rangestat_arg={float(self.rangestat_arg)!r})")


class SQIndex:
    """faiss `IndexScalarQuantizer`: exhaustive search over scalar-quantized vectors.

    Parameters: d = D (input width); qtype, rangestat, rangestat_arg (see `ScalarQuantizer`);
    metric "l2" or "ip"; prefix_dim (default D) and normalize (Matryoshka prefixes, see the
    module docstring). Attributes: `sq` (ScalarQuantizer at `dim` = prefix_dim), `codes`
    (ntotal, code_size) uint8, `ntotal`, `is_trained`.
    """

    def __init__(self, d, qtype="8bit", metric="l2", rangestat="minmax", rangestat_arg=0.0,
                 prefix_dim=None, normalize=False):
        self.d = as_int(d, "d", 1)
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
        """Learn the quantizer's ranges from x (n, D), n >= 1. Returns self."""
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
        k = as_int(k, "k", 1)
        hd, hi = new_heaps(q.shape[0], k)
        sq, lanes, use_ip = self.sq, simd_lanes(self.dim), self.metric == "ip"
        mode, scale, bias = DECODE_ROUNDED if lanes == 1 else DECODE_SIMD, np.float32(1), q[:, 0]
        if sq.qtype == "bf16" and lanes == 16:
            q = _bf16_decode(_bf16_encode_rne(q))
        elif sq.qtype in ("8bit_uniform", "4bit_uniform") and lanes == 8:
            # faiss's AVX2 kernel folds vmin / vdiff into the query and decodes codes to [0, 1]
            mode, (vmin, vdiff) = DECODE_RAW, sq.trained
            if use_ip:
                scale, bias = vdiff, vmin * _sequential_sums(q)
            else:
                inv = np.float32(1) / vdiff if vdiff != 0 else np.float32(0)
                scale, bias, q = vdiff * vdiff, np.zeros(q.shape[0], np.float32), (q - vmin) * inv
        for j0 in range(0, self.ntotal, SCAN_CHUNK):
            rec = sq.reconstruct(self.codes[j0:j0 + SCAN_CHUNK], mode)
            if sq.qtype == "bf16" and lanes == 16:
                _scan_bf16(q, rec, j0, use_ip, hd, hi)
            else:
                _scan_chunk(q, rec, j0, lanes, use_ip, scale, bias, hd, hi)
        sort_heaps(hd, hi)
        return finalize(hd, hi, self.metric)

    def reset(self):
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
