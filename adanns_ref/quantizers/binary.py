"""Binary codes: sign binarization, Hamming distance and Hamming k-NN (the kernels of faiss's
binary indices), and sentence-transformers' `quantize_embeddings`.

Sign binarization of the d-prefix of x in R^D keeps one bit per dimension, b_t = [x_t > 0]
(t < d), packed 8 per byte, most significant bit first (``numpy.packbits``'s "big" bit order,
the layout of sentence-transformers' "ubinary"). A prefix needs no re-normalisation: scaling by
a positive factor keeps every sign. Codes of d bits take d / 8 bytes; the distance between two
codes is the Hamming distance

    h(a, b) = popcount(a XOR b) = number of differing bits      (int32; ties -> smaller id)

computed here on little-endian uint64 words (rows zero-padded to whole words) with LLVM's
popcount instruction.

`quantize_embeddings(x, precision, ranges, calibration)`: sentence-transformers'
`sentence_transformers.quantization.quantize_embeddings` for "float32", "int8", "uint8",
"binary" and "ubinary", written from its documented rule (same numpy expressions, so the same
outputs on the same float arrays):

    ranges = given (2, d), else [min, max] over calibration rows, else over x's rows
    steps  = (ranges[1] - ranges[0]) / 255
    uint8:   ((x - ranges[0]) / steps).astype(uint8)
    int8:    ((x - ranges[0]) / steps - 128).astype(int8)
    ubinary: packbits(x > 0) over the *flattened* array, reshaped to (n, -1)
    binary:  (ubinary - 128).astype(int8)

Pitfalls kept for parity (and tested): values outside the ranges are not clipped, so numpy's
float-to-integer cast wraps them (or leaves them platform-defined); with d % 8 != 0 "ubinary"
packs bits across row boundaries (or the reshape fails). `binarize` packs row by row instead.

Shapes: x (n, D) float; codes (n, d / 8) uint8; Hamming k-NN -> (D int32 (nq, k), I int64 (nq, k)).
The indices over these codes are in `indices.binary`.
"""
import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from ..core.threads import serial_or_parallel
from ..core.topk import finalize, heap_push, new_heaps, sort_heaps
from ..core.validate import as_float32_matrix, as_int, as_uint8_codes, check_prefix_dim

INT32_MAX = np.int32(np.iinfo(np.int32).max)  # faiss's "no result" Hamming distance
PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")


@intrinsic
def popcount64(typingctx, w):
    """Number of set bits of a uint64 (llvm.ctpop: one popcnt instruction)."""
    if not isinstance(w, types.Integer) or w.bitwidth != 64:
        return None

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i64, [i64]), "llvm.ctpop.i64")
        return builder.call(fn, args)

    return types.int64(w), codegen


@numba.njit(cache=True, inline="always")
def hamming(a, b):
    """Hamming distance between two uint64 word rows of equal length."""
    h = 0
    for w in range(a.shape[0]):
        h += popcount64(a[w] ^ b[w])
    return h


@serial_or_parallel
def _scan_flat(qw, bw, hd, hi):
    """Push the Hamming distances of every query word row to every database word row, ids in
    order, into the (float32) heaps; a candidate enters only below the current k-th."""
    for r in numba.prange(qw.shape[0]):
        for j in range(bw.shape[0]):
            h = np.float32(hamming(qw[r], bw[j]))
            if h < hd[r, 0]:
                heap_push(hd[r], hi[r], h, j)


@numba.njit(cache=True, parallel=True)
def _rerank_codes(qw, bw, I, hd, hi):
    """Hamming distances of query r to its shortlist I[r] (-1 = empty) pushed into heap r; the
    shortlist is unordered, so equal distances go through the heap's (distance, id) rule."""
    for r in numba.prange(qw.shape[0]):
        for j in range(I.shape[1]):
            c = I[r, j]
            if c >= 0:
                heap_push(hd[r], hi[r], np.float32(hamming(qw[r], bw[c])), c)


def hamming_rerank(I, qcodes, codes, k):
    """Re-rank validated shortlists I (nq, s) int64 by Hamming distance -> (D float32, I int64),
    k best per row, ties to the smaller id, padding +FLT_MAX / -1 (funnel stages' convention)."""
    hd, hi = new_heaps(qcodes.shape[0], k)
    _rerank_codes(to_words(qcodes), to_words(codes), I, hd, hi)
    sort_heaps(hd, hi)
    return finalize(hd, hi, "l2")


def hamming_finalize(hd, hi):
    """Sorted float heaps -> faiss's (int32 D, int64 I) with INT32_MAX / -1 padding."""
    D = np.where(hi < 0, INT32_MAX, hd).astype(np.int32)
    return D, hi


def to_words(codes):
    """uint8 codes (n, nbytes) -> little-endian uint64 words (n, ceil(nbytes / 8)), zero-padded."""
    n, nbytes = codes.shape
    nw = -(-nbytes // 8)
    padded = np.zeros((n, nw * 8), dtype=np.uint8)
    padded[:, :nbytes] = codes
    return padded.view("<u8")


def hamming_knn(qcodes, codes, k):
    """Exact Hamming k-NN of validated uint8 code rows -> (D int32 (nq, k), I int64 (nq, k))."""
    hd, hi = new_heaps(qcodes.shape[0], k)
    qw, bw = to_words(qcodes), to_words(codes)
    _scan_flat.for_work(2 * qw.shape[0] * bw.shape[0] * bw.shape[1])(qw, bw, hd, hi)
    sort_heaps(hd, hi)
    return hamming_finalize(hd, hi)


def as_codes(codes, name, nbytes):
    """Validate binary codes: a uint8 array (n, nbytes) (C-contiguous copy if needed)."""
    return as_uint8_codes(codes, name, nbytes, f"{8 * nbytes}-bit codes packed by binarize")


def check_bits(d_bits):
    d_bits = as_int(d_bits, "d_bits", 8)
    if d_bits % 8:
        raise ValueError(f"d_bits must be a multiple of 8 (faiss stores whole bytes), got {d_bits}")
    return d_bits


def binarize(x, d=None):
    """Sign bits [x_t > 0] of the d-prefix of each row of x (n, D) -> (n, ceil(d / 8)) uint8,
    8 bits per byte, first dimension in the most significant bit (numpy.packbits)."""
    x = as_float32_matrix(x, "x")
    d = check_prefix_dim(d, x.shape[1], "d")
    return np.packbits(x[:, :d] > 0, axis=1)


def unpack_lsb(codes, d_bits):
    """faiss's `binary_to_real`: bit t of a code (byte t / 8, bit t % 8, LSB first) -> +1 / -1."""
    bits = np.unpackbits(codes, axis=1, bitorder="little")[:, :d_bits]
    return (2 * bits.astype(np.float32) - 1).astype(np.float32)


def pack_lsb(x):
    """faiss's `real_to_binary`: a set bit where x > 0, bit t in byte t / 8 at position t % 8."""
    return np.packbits(x > 0, axis=1, bitorder="little")


def quantize_embeddings(x, precision, ranges=None, calibration=None):
    """sentence-transformers' `quantize_embeddings` (see the module docstring for the rule).

    x: (n, d) real float array, used in its own dtype (as sentence-transformers does);
    int8 / uint8 inputs are refused (TypeError: they are already quantized). ranges: (2, d)
    [min; max]; calibration: (m, d) rows to take the ranges from. Returns the same arrays as
    sentence-transformers for the same float inputs.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    x = np.asarray(x)
    if x.dtype in (np.uint8, np.int8):
        raise TypeError("embeddings to quantize must be float, not int8 or uint8")
    if x.dtype.kind != "f" or x.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D float array (n, d), got dtype {x.dtype} shape {x.shape}")
    if precision == "float32":
        return x.astype(np.float32)
    if precision in ("int8", "uint8"):
        if ranges is None:
            src = x if calibration is None else np.asarray(calibration)
            if src.ndim != 2 or src.shape[1] != x.shape[1] or src.shape[0] == 0:
                raise ValueError(f"calibration must have shape (m >= 1, {x.shape[1]}), got {src.shape}")
            ranges = np.vstack((np.min(src, axis=0), np.max(src, axis=0)))
        ranges = np.asarray(ranges)
        if ranges.shape != (2, x.shape[1]):
            raise ValueError(f"ranges must have shape (2, {x.shape[1]}) ([min; max] per dimension), "
                             f"got {ranges.shape}")
        starts = ranges[0, :]
        steps = (ranges[1, :] - ranges[0, :]) / 255
        with np.errstate(invalid="ignore", divide="ignore"):  # out-of-range casts: see docstring
            if precision == "uint8":
                return ((x - starts) / steps).astype(np.uint8)
            return ((x - starts) / steps - 128).astype(np.int8)
    packed = np.packbits(x > 0).reshape(x.shape[0], -1)
    return packed if precision == "ubinary" else (packed - 128).astype(np.int8)
