"""Scalar quantization: faiss `ScalarQuantizer` (train, encode, decode).

Each component x_t of a d-dim vector is coded on its own. For the range-based qtypes a value is
mapped to [0, 1] with a trained offset and width (vmin_t, vdiff_t), cut into 2^b - 1 cells and
stored as the cell number c_t (b = 8 or 4 bits); the reconstruction is the centre of the cell:

    encode:  u_t = clip((x_t - vmin_t) / vdiff_t, 0, 1)    (u_t = 0 where vdiff_t == 0)
             c_t = floor(255 u_t)  (8 bits)   or   floor(15 u_t)  (4 bits, u_t * 15.0 in double)
    decode:  x^_t = vmin_t + (c_t + 1/2) / (2^b - 1) * vdiff_t

"8bit" / "4bit" train one (vmin_t, vdiff_t) per dimension, "8bit_uniform" / "4bit_uniform" one
pair for all dimensions (trained on the n * d values as one sample). "fp16" stores IEEE half
floats rounded as faiss's `encode_fp16` does (to nearest, ties away from zero; numpy's float16
rounds ties to even), "bf16" the high 16 bits of the float32 after adding 0x8000 (to nearest,
ties away from zero) or, at d % 16 == 0, rounded to nearest even (faiss's AVX512_SPR build, on
CPUs with avx512_bf16, converts with vcvtneps2bf16; the two differ only at exact ties); neither
is trained. Codes: (n, code_size) uint8 with
code_size = d (8 bit), ceil(d / 2) (4 bit: component t in the low nibble of byte t / 2 when t is
even, the high nibble when odd) or 2 d (fp16 / bf16, little-endian uint16).

Range statistics (faiss `RangeStat`, argument r = rangestat_arg), on a sample v of n values:

    minmax:    [min v - e, max v + e],  e = (max v - min v) * r     (r = 0: the plain range)
    meanstd:   [mu - r sigma, mu + r sigma], mu, sigma^2 from float64 sums (sigma = 1 if <= 0)
    quantiles: [v_(o), v_(n-1-o)] of the sorted sample, o = int(float32(r) * float32(n)),
               o = n // 2 when o > n - o
    optim:     [b, b + a (L - 1)] of the least-squares grid b + a i, i = 0 .. L - 1 (L = 2^b
               levels; r unused), fitted in float32 by alternating cell assignment and the 2x2
               normal equations from (a, b) = ((max - min) / (L - 1), min), at most 2000 rounds;
               on large samples the float32 sums cancel and faiss gets NaN ranges, which faiss
               keeps and `train` here refuses (ValueError)

trained: vmin then vdiff (faiss's `trained` vector: [vmin, vdiff] uniform, [vmin_0..vmin_{d-1},
vdiff_0..vdiff_{d-1}] per dimension).

faiss-identical (faiss 1.15): `trained` and the codes bit for bit, including two faiss quirks of
per-dimension training with meanstd / quantiles: (1) faiss builds the per-dimension samples from
rows 1..n-1 and leaves row 0 at 0.0 (its transpose loop starts at i = 1), so the first training
vector counts as a zero vector; (2) faiss trains the dimensions in parallel threads that share
one 2-float scratch vector, so with several OpenMP threads faiss's ranges can mix dimensions (a
data race); the values here are those of a single-threaded faiss. `decode` equals faiss's
`sa_decode` / `reconstruct` bit for bit: vmin + u * vdiff with u = (c + 1/2) / L, one fused
multiply-add where faiss runs its AVX2 / AVX-512 build of the quantizer (d % 8 == 0), two
roundings in its scalar build (other d).

Searching the codes: `sqindex.SQIndex` (faiss `IndexScalarQuantizer`).

Shapes: x (n, d) float32 in, codes (n, code_size) uint8, decode -> (n, d) float32.
"""
import numba
import numpy as np

from ..core.simd import fma
from ..core.validate import as_dim, as_float32_matrix, as_uint8_codes

QTYPES = ("8bit", "8bit_uniform", "4bit", "4bit_uniform", "fp16", "bf16")
RANGESTATS = ("minmax", "meanstd", "quantiles", "optim")
_BITS = {"8bit": 8, "8bit_uniform": 8, "4bit": 4, "4bit_uniform": 4, "fp16": 16, "bf16": 16}

# ------------------------------------------------------------------------------ training

@numba.njit(cache=True, error_model="numpy")  # x / 0 gives inf / nan, as in faiss's C++
def _train_optim(v, k):
    """faiss's RS_optim: least-squares fit of the k-level grid b + a * i to v, alternating the
    cell assignment n_i = clip(floor((v_i - b) / a + 1/2), 0, k - 1) and the 2x2 normal
    equations for (a, b), all in float32 as faiss (at most 2000 rounds; stops when the error
    repeats 16 times). Returns (vmin, vmax) = (b, b + a (k - 1))."""
    n = v.shape[0]
    lo, hi, sx = np.float32(np.inf), np.float32(-np.inf), np.float32(0.0)
    for i in range(n):
        lo = min(lo, v[i])
        hi = max(hi, v[i])
        sx = np.float32(sx + v[i])
    b = lo
    a = np.float32((hi - lo) / np.float32(k - 1))
    top, nf = np.float32(k - 1), np.float32(n)
    last_err, repeats = np.float32(-1.0), 0
    for _ in range(2000):
        sn, sn2, sxn, err = np.float32(0.0), np.float32(0.0), np.float32(0.0), np.float32(0.0)
        for i in range(n):
            xi = v[i]
            ni = np.float32(np.floor(np.float64(np.float32((xi - b) / a)) + 0.5))
            ni = min(max(ni, np.float32(0.0)), top)
            r = np.float32(xi - np.float32(np.float32(ni * a) + b))
            err = np.float32(err + np.float32(r * r))
            sn = np.float32(sn + ni)
            sn2 = np.float32(sn2 + np.float32(ni * ni))
            sxn = np.float32(sxn + np.float32(ni * xi))
        if err == last_err:
            repeats += 1
            if repeats == 16:
                break
        else:
            last_err, repeats = err, 0
        det = np.float32(np.float32(sn * sn) - np.float32(sn2 * nf))
        b = np.float32(np.float32(np.float32(sn * sxn) - np.float32(sn2 * sx)) / det)
        a = np.float32(np.float32(np.float32(sn * sx) - np.float32(nf * sxn)) / det)
    return b, np.float32(b + np.float32(a * top))


@numba.njit(cache=True)
def _train_uniform(v, rs, arg, k, out):
    """(vmin, vdiff) of the 1-D float32 sample v with range statistic rs (0 minmax, 1 meanstd,
    2 quantiles, 3 optim with k levels) into out[0], out[1]: faiss `train_Uniform`."""
    n = v.shape[0]
    if rs == 3:
        lo, hi = _train_optim(v, k)
    elif rs == 0:
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
def _train_per_dim(x, rs, arg, k, vmin, vdiff):
    """faiss `train_NonUniform`: one (vmin_t, vdiff_t) per column of x (n, d)."""
    n, d = x.shape
    col = np.zeros(n, dtype=np.float32)
    pair = np.empty(2, dtype=np.float32)
    for t in range(d):
        if rs == 0:
            col[:] = x[:, t]
        else:
            col[1:] = x[1:, t]  # faiss's transpose skips row 0, which stays 0.0
        _train_uniform(col, rs, arg, k, pair)
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


def bf16_encode(x):
    """faiss `encode_bf16`: the high half of the float32 bits after adding 0x8000."""
    bits = x.view(np.uint32).astype(np.uint64) + 0x8000
    return (bits >> 16).astype(np.uint16)


def bf16_encode_rne(x):
    """bfloat16 rounded to nearest even (the AVX512-BF16 instruction vcvtneps2bf16)."""
    bits = x.view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


_FP16_MAX_SCALED = np.array([(31 << 23) - 0x1000], dtype=np.uint32).view(np.float32)[0]


def fp16_encode(x):
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


def bf16_decode(h):
    return (h.astype(np.uint32) << 16).view(np.float32)


def simd_lanes(d):
    """Lanes of the faiss SQ scan kernel used at dimension d on an AVX-512 machine: 16, 8 or 1."""
    return 16 if d % 16 == 0 else 8 if d % 8 == 0 else 1


def _check_choice(value, name, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


class ScalarQuantizer:
    """faiss `ScalarQuantizer(d, qtype)` with `rangestat` / `rangestat_arg`.

    Parameters
        d               int >= 1: vector width
        qtype           str: one of QTYPES ("8bit", "8bit_uniform", "4bit", "4bit_uniform",
                        "fp16", "bf16")
        rangestat       str: one of RANGESTATS ("minmax", "meanstd", "quantiles", "optim")
        rangestat_arg   float: its argument

    Attributes
        bits            int, 8, 4 or 16
        code_size       int: bytes per code
        rangestat_arg   float32
        trained         float32: [vmin, vdiff] (2,) for uniform qtypes, [vmin (d), vdiff (d)]
                        (2d,) per dimension, empty for fp16 / bf16 or before training
        is_trained      bool
    """

    def __init__(self, d, qtype="8bit", rangestat="minmax", rangestat_arg=0.0):
        self.d = as_dim(d)
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
            _train_per_dim(x, rs, self.rangestat_arg, 1 << self.bits, vmin, vdiff)
            trained = np.concatenate([vmin, vdiff])
        else:
            trained = np.empty(2, np.float32)
            _train_uniform(x.ravel(), rs, self.rangestat_arg, 1 << self.bits, trained)
        if not np.isfinite(trained).all():  # faiss would store them and encode garbage
            raise ValueError(f"rangestat {self.rangestat!r} gave non-finite ranges on this data (its "
                             f"float32 normal equations break down on large samples, in faiss too); "
                             f"use 'minmax', 'meanstd' or 'quantiles'")
        self.trained = trained
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
            if self.qtype == "fp16":
                half = fp16_encode(x)
            else:
                half = bf16_encode_rne(x) if self.d % 16 == 0 else bf16_encode(x)
            return np.ascontiguousarray(half).view(np.uint8).reshape(x.shape[0], self.code_size)
        vmin, vdiff = self._ranges()
        x = as_float32_matrix(x, "x", d=self.d)
        codes = np.zeros((x.shape[0], self.code_size), dtype=np.uint8)
        _encode_cells(x, vmin, vdiff, self.per_dim, self.bits, codes)
        return codes

    def reconstruct(self, codes, mode=None):
        """Validated codes -> (n, d) float32 with decode formula `mode` (default: faiss's decode,
        fused where faiss's build at this d is the AVX2 / AVX-512 one)."""
        if self.bits == 16:
            h = codes.view(np.uint16)
            return (h.view(np.float16).astype(np.float32) if self.qtype == "fp16"
                    else bf16_decode(h))
        vmin, vdiff = self._ranges()
        if mode is None:
            mode = DECODE_FUSED if simd_lanes(self.d) > 1 else DECODE_ROUNDED
        out = np.empty((codes.shape[0], self.d), dtype=np.float32)
        _decode_cells(codes, vmin, vdiff, self.per_dim, self.bits, mode, simd_lanes(self.d) == 8, out)
        return out

    def decode(self, codes):
        """Reconstructions of codes (n, code_size) uint8 -> (n, d) float32 (faiss `decode`)."""
        return self.reconstruct(as_uint8_codes(codes, "codes", self.code_size,
                                               f"qtype {self.qtype!r} at d={self.d}"))

    def __repr__(self):
        return (f"ScalarQuantizer(d={self.d}, qtype={self.qtype!r}, rangestat={self.rangestat!r}, "
                f"rangestat_arg={float(self.rangestat_arg)!r})")
