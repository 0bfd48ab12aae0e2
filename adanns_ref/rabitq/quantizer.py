"""RaBitQ (Gao & Long, SIGMOD 2024; extended RaBitQ, Gao et al. 2025): faiss 1.15.1's ``RaBitQuantizer``.

Maths (paper symbols). A data vector o_r, a centroid c (the mean of the training set in the flat
index, the list centroid in IVF) and a rotation P applied beforehand (faiss: none inside the
quantizer; an ``HR`` / random rotation goes in front as a pre-transform). With o = o_r - c and
x_b = sign bits of o (bit 1 iff o_i > 0), the 1-bit code is x_b and the quantized unit vector is
x_bar = (2 x_b - 1) / sqrt(d). Two float32 factors are kept per vector:

    or_minus_c_l2sqr = ||o_r - c||^2              (L2)   or  ||o_r - c||^2 - ||o_r||^2   (IP)
    dp_multiplier    = ||o_r - c|| / <x_bar, o / ||o||> = ||o||^2 sqrt(d) / sum_i |o_i|

and, when nb_bits > 1, f_error = 1.9 ||o|| sqrt((ratio - 1) / (d - 1)) with ratio =
||o||^2 (d / 4) / (sum |o_i| / 2)^2 (times 2 for L2), the paper's error bound. For a query q_r
with q = q_r - c, <x_bar, q> = (2 <x_b, q> - sum_i q_i) / sqrt(d), and

    pre             = or_minus_c_l2sqr + ||q||^2 - 2 dp_multiplier <x_bar, q>
    ||o_r - q_r||^2 ~ max(0, pre)                                    (L2)
    <o_r, q_r>      ~ -(pre - ||q_r||^2) / 2                         (IP: pre ~ ||o_r - q_r||^2 - ||o_r||^2)

Query quantization (qb = 1..8 bits; qb = 0 keeps q in float32):
- not centred: q_bar_i = round((q_i - v_min) / Delta) with v_min, v_max the extremes of q and
  Delta = (v_max - v_min) / (2^qb - 1); <x_b, q> = Delta <x_b, q_bar> + v_min popcount(x_b),
  an integer dot product;
- centred: v_max = -v_min = Z_MAX[qb] ||q|| / sqrt(d) (faiss's radii per qb), and the signed odd
  integers 2 q_bar - (2^qb - 1) are dotted with 2 x_b - 1 through an XOR popcount, rescaled by
  sqrt(||q||^2 / (d sum (2 q_bar - 2^qb + 1)^2)).
Rounding is faiss's AVX-512 path, deterministic: blocks of 16 dims compute q_i / Delta - v_min /
Delta with one rounding, the tail (q_i - v_min) / Delta; both clamp to [0, 2^qb - 1] and round
half up (truncate x + 0.5).

Multi-bit (nb_bits = 2..9, ex_bits = nb_bits - 1): each |o_i| / ||o|| is also coded on ex_bits
bits as floor(t |o_i| / ||o|| + 1e-5) (clamped), with the scale t maximising the cosine between
the code + 1/2 and |o| (found by visiting the breakpoints t = (k + 1) / |o_i| in increasing
order, from t_end kTightStart[ex_bits] to t_end = (2^ex_bits + 9) / max |o_i|); the o_i whose
sign bit is 0 (o_i <= 0) store the complement 2^ex_bits - 1 - code. (faiss's source reads
``residual[i] < 0``, but faiss-cpu 1.15.1 measurably complements o_i = 0 too, consistently with
its sign bit; we follow the measured behaviour, tested with exact-zero coordinates.) Then the reconstruction y_i = (x_b,i 2^ex_bits + ex_i) - 2^ex_bits + 1/2 gives

    ||o_r - q_r||^2 ~ ||q||^2 + ||o||^2 - 2 ||o|| <y, q> / <code + 1/2, |o| / ||o||>   (L2)
    <o_r, q_r>      ~ <q_r, c> + <c, o> + ||o|| <y, q> / <code + 1/2, |o| / ||o||>     (IP)

with f_add_ex and f_rescale_ex stored per vector. Search is two-stage: the 1-bit estimate with
its bound (est - f_error ||q||, clamped at 0, for L2; est + f_error ||q|| for IP) decides whether
the code can beat the current k-th result; only then the multi-bit estimate is computed and
offered (the float query is used there, whatever qb).

Code layout (bytes, little-endian; faiss's): sign bits ((d + 7) / 8, bit i of byte i / 8 is dim
i, LSB first), or_minus_c_l2sqr, dp_multiplier (float32), then for nb_bits > 1: f_error, the
ex-bit codes (ceil(d ex_bits / 8) bytes, dim i at bits i ex_bits .. i ex_bits + ex_bits - 1, LSB
first), f_add_ex, f_rescale_ex. code_size = (d + 7) / 8 + 8 (1 bit) or (d + 7) / 8 + 12 +
ceil(d ex_bits / 8) + 8.

faiss-identical (tested against faiss-cpu 1.15.1, AVX512_SPR dispatch): the centroid, the code
bytes, ids and distances bit for bit at nb_bits 1..9, qb 0..8, centred or not, L2 and IP, d odd
and even. Floating-point orders: ``fvec_*`` reductions in `core.simd` order 1; faiss's scalar
loops left to right, unfused (its generic translation units are compiled without FMA); the
multi-bit inner product as `scan.ex_inner_product` documents (the wheel's AVX-512 unit lacks
BMI2, so ex_bits 2..7 run the scalar loop; a BMI2 build sums 8 fma lanes and differs in the last
bits: `ex_inner_product(..., bmi2=True)`, tested within 8 eps 2^ex_bits sum |q_i|).
Result handlers: faiss's, reproduced because the refinement reads their threshold: a heap for
k < 100, the reservoir (`reservoir`) for k >= 100 in the flat index, a heap for any k in IVF.
Not a deviation but a caveat: faiss's ``decode`` is the IP-preserving reconstruction, not an
L2 one (kept as is).
"""
import numpy as np

from ..core.validate import as_float32_matrix, as_int, as_uint8_codes, check_metric
from . import kernels


def code_layout(d, nb_bits):
    """(bytes of sign bits, number of float32 factors after them, bytes of ex-bit codes)."""
    ex_bits = nb_bits - 1
    return (d + 7) // 8, (2 if ex_bits == 0 else 3), (d * ex_bits + 7) // 8


def code_size(d, nb_bits):
    """Bytes per vector (faiss ``RaBitQuantizer::compute_code_size``)."""
    nbits, nfac, nex = code_layout(d, nb_bits)
    return nbits + 4 * nfac + (nex + 8 if nb_bits > 1 else 0)


class RaBitQuantizer:
    """faiss ``RaBitQuantizer(d, metric, nb_bits)``: codes against a caller-given centroid.

    Parameters:
        d: int, vector dimension
        metric: "l2" or "ip" (the IP factors differ)
        nb_bits: int in 1..9, bits per dimension (1 sign bit + nb_bits - 1 ex-bits)

    Attributes:
        code_size: int, bytes per code (see the module docstring for the layout)
    """

    def __init__(self, d, metric="l2", nb_bits=1):
        self.d = as_int(d, "d", low=1)
        self.metric = check_metric(metric)
        self.nb_bits = as_int(nb_bits, "nb_bits", low=1, high=9)
        self.code_size = code_size(self.d, self.nb_bits)

    @property
    def ex_bits(self):
        return self.nb_bits - 1

    def _centroid(self, centroid):
        if centroid is None:
            return np.zeros(self.d, np.float32)
        return as_float32_matrix(np.asarray(centroid).reshape(1, -1), "centroid", d=self.d)[0]

    def encode(self, x, centroid=None):
        """Codes (n, code_size) uint8 of x (n, d) against centroid (d,) (None: zeros)."""
        x = as_float32_matrix(x, "x", d=self.d)
        c = self._centroid(centroid)
        n = x.shape[0]
        nbits, nfac, nex = code_layout(self.d, self.nb_bits)
        bits = np.zeros((n, nbits), np.uint8)
        fac = np.zeros((n, 3), np.float32)
        ex = np.zeros((n, max(nex, 1)), np.uint8)
        exfac = np.zeros((n, 2), np.float32)
        kernels.encode(x, c, self.metric == "ip", self.ex_bits, bits, fac, ex, exfac)
        parts = [bits, np.ascontiguousarray(fac[:, :nfac]).view(np.uint8)]
        if self.ex_bits:
            parts += [ex[:, :nex], exfac.view(np.uint8)]
        return np.ascontiguousarray(np.concatenate(parts, axis=1))

    def split(self, codes):
        """The parts of codes (n, code_size): (bits (n, nbits) uint8, fac (n, 3) float32 with
        f_error 0 at 1 bit, ex (n, max(nex, 1)) uint8, exfac (n, 2) float32), C-contiguous."""
        codes = as_uint8_codes(codes, "codes", self.code_size, f"d={self.d}, nb_bits={self.nb_bits}")
        n = codes.shape[0]
        nbits, nfac, nex = code_layout(self.d, self.nb_bits)
        bits = np.ascontiguousarray(codes[:, :nbits])
        fac = np.zeros((n, 3), np.float32)
        fac[:, :nfac] = np.ascontiguousarray(codes[:, nbits:nbits + 4 * nfac]).view(np.float32)
        o = nbits + 4 * nfac
        if self.ex_bits:
            ex = np.ascontiguousarray(codes[:, o:o + nex])
            exfac = np.ascontiguousarray(codes[:, o + nex:]).view(np.float32)
        else:
            ex, exfac = np.zeros((n, 1), np.uint8), np.zeros((n, 2), np.float32)
        return bits, fac, ex, exfac

    def decode(self, codes, centroid=None):
        """faiss ``decode_core``: (2 x_b - 1) dp_multiplier / sqrt(d) + c, float32 (n, d). It keeps
        inner products, not L2 distances (faiss's own caveat); the ex-bits are not used."""
        bits, fac, _, _ = self.split(codes)
        c = self._centroid(centroid)
        b = np.unpackbits(bits, axis=1, bitorder="little")[:, :self.d].astype(np.float32)
        inv_sqrt_d = np.float32(1) / np.sqrt(np.float32(self.d))
        return (b - np.float32(0.5)) * fac[:, 1:2] * np.float32(2) * inv_sqrt_d + c

    def __repr__(self):
        return f"RaBitQuantizer(d={self.d}, metric={self.metric!r}, nb_bits={self.nb_bits})"
