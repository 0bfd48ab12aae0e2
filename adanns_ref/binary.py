"""Binary codes and Hamming search: faiss `IndexBinaryFlat`, `IndexBinaryIVF`, and
sentence-transformers' `quantize_embeddings`.

Sign binarization of the d-prefix of x in R^D keeps one bit per dimension, b_t = [x_t > 0]
(t < d), packed 8 per byte, most significant bit first (``numpy.packbits``'s "big" bit order,
the layout of sentence-transformers' "ubinary"). A prefix needs no re-normalisation: scaling by
a positive factor keeps every sign. Codes of d bits take d / 8 bytes; the distance between two
codes is the Hamming distance

    h(a, b) = popcount(a XOR b) = number of differing bits      (int32; ties -> smaller id)

computed here on little-endian uint64 words (rows zero-padded to whole words) with LLVM's
popcount instruction.

`BinaryFlatIndex(d_bits)`: faiss `IndexBinaryFlat`: exhaustive scan, k smallest (h, id)
(faiss keeps the first of equal distances while scanning ids in order, then sorts by (h, id)),
missing results id -1 with distance INT32_MAX. Identical to faiss, ties included (tested).

`BinaryIVFIndex(d_bits, nlist)`: faiss `IndexBinaryIVF` with an `IndexBinaryFlat` coarse
quantizer. Training (faiss `IndexBinaryIVF::train`): unpack each code to d floats
(+1 for a set bit, -1 for a clear one; faiss reads bit t from byte t / 8 at position t % 8,
least significant first, whatever order the caller packed), run faiss's L2 k-means on them
(`kmeans.KMeans`, niter = 10, seed 1234, 256 points per centroid) and binarize the centroids
back (bit set where the centroid coordinate is > 0, same bit order). Adding: each code goes to
its Hamming-nearest centroid. Searching: the nprobe Hamming-nearest centroids (ties -> smaller
list), then the lists in that order, each in insertion order, a candidate entering the k best
only with a strictly smaller distance than the current k-th (faiss's heap): the same scan as
faiss, so the same results, tie members included.

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

Shapes: x (n, D) float; codes (n, d / 8) uint8; search -> (D int32 (nq, k), I int64 (nq, k)).
"""
import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from ._persist import load_npz, save_npz
from ._validate import (as_float32_matrix, as_int, as_k, as_nlist, as_uint8_codes, check_prefix_dim,
                        refuse_train_after_add)
from .kmeans import KMeans
from .topk import finalize, heap_push, new_heaps, sort_heaps

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


@numba.njit(cache=True, parallel=True)
def _scan_flat(qw, bw, hd, hi):
    """Push the Hamming distances of every query word row to every database word row, ids in
    order, into the (float32) heaps; a candidate enters only below the current k-th."""
    for r in numba.prange(qw.shape[0]):
        for j in range(bw.shape[0]):
            h = np.float32(hamming(qw[r], bw[j]))
            if h < hd[r, 0]:
                heap_push(hd[r], hi[r], h, j)


@numba.njit(cache=True, parallel=True)
def _scan_lists(qw, bw, ids, offsets, probes, hd, hi):
    """faiss's IVF scan: for query r, the lists probes[r, 0], probes[r, 1], ... in that order."""
    for r in numba.prange(qw.shape[0]):
        for p in range(probes.shape[1]):
            l = probes[r, p]
            if l < 0:
                continue
            for j in range(offsets[l], offsets[l + 1]):
                h = np.float32(hamming(qw[r], bw[j]))
                if h < hd[r, 0]:
                    heap_push(hd[r], hi[r], h, ids[j])


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


def _finalize(hd, hi):
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
    _scan_flat(to_words(qcodes), to_words(codes), hd, hi)
    sort_heaps(hd, hi)
    return _finalize(hd, hi)


def as_codes(codes, name, nbytes):
    """Validate binary codes: a uint8 array (n, nbytes) (C-contiguous copy if needed)."""
    return as_uint8_codes(codes, name, nbytes, f"{8 * nbytes}-bit codes packed by binarize")


def _check_bits(d_bits):
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


class BinaryFlatIndex:
    """faiss `IndexBinaryFlat(d_bits)`: exhaustive Hamming search over uint8 codes.

    Attributes: `d_bits`, `code_size` (= d_bits / 8), `ntotal`, `codes` (ntotal, code_size) uint8.
    """

    def __init__(self, d_bits):
        self.d_bits = _check_bits(d_bits)
        self.code_size = self.d_bits // 8
        self.codes = np.empty((0, self.code_size), dtype=np.uint8)

    @property
    def ntotal(self):
        return int(self.codes.shape[0])

    def add(self, codes):
        """Append code rows (n, code_size) uint8; they get ids ntotal .. ntotal + n - 1."""
        self.codes = np.concatenate([self.codes, as_codes(codes, "codes", self.code_size)])

    def search(self, qcodes, k):
        """k Hamming-nearest codes of each query code -> (D int32 (nq, k), I int64 (nq, k))."""
        q = as_codes(qcodes, "qcodes", self.code_size)
        return hamming_knn(q, self.codes, as_k(k, q.shape[0]))

    def reset(self):
        self.codes = np.empty((0, self.code_size), dtype=np.uint8)

    def save(self, path):
        save_npz(path, "BinaryFlatIndex", 1, {"d_bits": self.d_bits}, {"codes": self.codes})

    @classmethod
    def load(cls, path):
        """Read an index written by `save`; a corrupt or foreign file raises ValueError."""
        params, arrays = load_npz(path, "BinaryFlatIndex", 1, {"codes": (np.uint8, 2)})
        try:
            index = cls(params["d_bits"])
            index.codes = as_codes(arrays["codes"], "codes", index.code_size)  # no second copy
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: invalid BinaryFlatIndex ({exc})") from exc
        return index

    def __repr__(self):
        return f"BinaryFlatIndex(d_bits={self.d_bits}, ntotal={self.ntotal})"


class BinaryIVFIndex:
    """faiss `IndexBinaryIVF(IndexBinaryFlat(d_bits), d_bits, nlist)` (see the module docstring).

    Parameters: d_bits (multiple of 8), nlist, niter (faiss sets 10), seed (faiss's 1234),
    max_points_per_centroid (faiss's 256). Attributes: `centroids` (nlist, code_size) uint8 or
    None, `ntotal`, `list_sizes`, `list_ids(l)`.
    """

    def __init__(self, d_bits, nlist, niter=10, seed=1234, max_points_per_centroid=256):
        self.d_bits = _check_bits(d_bits)
        self.code_size = self.d_bits // 8
        self.nlist = as_nlist(nlist)
        self.niter = as_int(niter, "niter", 1)
        self.seed = as_int(seed, "seed", 0, 2**31 - 1)
        self.max_points_per_centroid = as_int(max_points_per_centroid, "max_points_per_centroid", 1)
        self.centroids = None
        self.reset()

    @property
    def ntotal(self):
        return int(self._ids.shape[0])

    @property
    def is_trained(self):
        return self.centroids is not None

    @property
    def list_sizes(self):
        return np.diff(self._offsets)

    def list_ids(self, l):
        l = as_int(l, "l", 0, self.nlist - 1)
        return self._ids[self._offsets[l]:self._offsets[l + 1]].copy()

    def train(self, codes):
        """k-means on the codes' +-1 floats, centroids binarized (faiss's recipe). Returns self.
        An index holding codes refuses (they sit in the old centroids' lists): reset() first."""
        refuse_train_after_add("BinaryIVFIndex", self.ntotal)
        codes = as_codes(codes, "codes", self.code_size)
        if codes.shape[0] < self.nlist:
            raise ValueError(f"train needs at least nlist={self.nlist} codes, got {codes.shape[0]}")
        km = KMeans(self.nlist, niter=self.niter, seed=self.seed,
                    max_points_per_centroid=self.max_points_per_centroid)
        self.centroids = pack_lsb(km.fit(unpack_lsb(codes, self.d_bits)).centroids)
        return self

    def set_centroids(self, centroids):
        """Install binary centroids (nlist, code_size) uint8, e.g. faiss's quantizer codes. An
        index holding codes refuses (they sit in the old centroids' lists): reset() first."""
        refuse_train_after_add("BinaryIVFIndex", self.ntotal)
        centroids = as_codes(centroids, "centroids", self.code_size)
        if centroids.shape[0] != self.nlist:
            raise ValueError(f"centroids has {centroids.shape[0]} rows, nlist is {self.nlist}")
        self.centroids = centroids.copy()

    def _require_trained(self, verb):
        if not self.is_trained:
            raise ValueError(f"BinaryIVFIndex.{verb} called before train(); call train(codes) first")

    def add(self, codes):
        """Append code rows to their Hamming-nearest lists; ids ntotal .. ntotal + n - 1."""
        self._require_trained("add")
        codes = as_codes(codes, "codes", self.code_size)
        assign = hamming_knn(codes, self.centroids, 1)[1][:, 0]
        ids = np.arange(self.ntotal, self.ntotal + codes.shape[0], dtype=np.int64)
        all_codes = np.concatenate([self._codes, codes])
        all_ids = np.concatenate([self._ids, ids])
        lists = np.concatenate([np.repeat(np.arange(self.nlist), self.list_sizes), assign])
        order = np.argsort(lists, kind="stable")  # insertion order inside each list
        self._set_lists(all_codes[order], all_ids[order],
                        np.concatenate([[0], np.cumsum(np.bincount(lists, minlength=self.nlist))]))

    def _set_lists(self, codes, ids, offsets):
        """Install CSR lists: list l holds rows offsets[l]:offsets[l + 1] of codes / ids, scanned
        in that order (the faiss bridge keeps faiss's order)."""
        self._codes, self._ids = np.ascontiguousarray(codes), np.ascontiguousarray(ids, dtype=np.int64)
        self._offsets = np.asarray(offsets, dtype=np.int64)
        self._words = to_words(self._codes)

    def search(self, qcodes, k, nprobe=1):
        """k Hamming-nearest stored codes among the nprobe nearest lists -> (D int32, I int64)."""
        self._require_trained("search")
        q = as_codes(qcodes, "qcodes", self.code_size)
        k = as_k(k, q.shape[0])
        nprobe = min(as_int(nprobe, "nprobe", 1), self.nlist)  # faiss clamps too
        probes = hamming_knn(q, self.centroids, nprobe)[1]
        hd, hi = new_heaps(q.shape[0], k)
        _scan_lists(to_words(q), self._words, self._ids, self._offsets, probes, hd, hi)
        sort_heaps(hd, hi)
        return _finalize(hd, hi)

    def reset(self):
        """Remove all codes (the centroids stay)."""
        self._codes = np.empty((0, self.code_size), dtype=np.uint8)
        self._words = to_words(self._codes)
        self._ids = np.empty(0, dtype=np.int64)
        self._offsets = np.zeros(self.nlist + 1, dtype=np.int64)

    def _params(self):
        return {"d_bits": self.d_bits, "nlist": self.nlist, "niter": self.niter, "seed": self.seed,
                "max_points_per_centroid": self.max_points_per_centroid}

    def save(self, path):
        """Write parameters, centroids and lists (codes in insertion order) to a .npz file."""
        cent = self.centroids if self.centroids is not None else np.empty((0, self.code_size), np.uint8)
        order = np.argsort(self._ids)
        save_npz(path, "BinaryIVFIndex", 1, self._params(),
                 {"centroids": cent, "codes": self._codes[order]})

    @classmethod
    def load(cls, path):
        """Read an index written by `save` (lists rebuilt by re-assignment); ValueError if corrupt."""
        params, arrays = load_npz(path, "BinaryIVFIndex", 1,
                                  {"centroids": (np.uint8, 2), "codes": (np.uint8, 2)})
        try:
            index = cls(**params)
            if arrays["centroids"].shape[0]:
                index.set_centroids(arrays["centroids"])
            if arrays["codes"].shape[0]:
                index.add(arrays["codes"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: invalid BinaryIVFIndex ({exc})") from exc
        return index

    def __repr__(self):
        return f"BinaryIVFIndex(d_bits={self.d_bits}, nlist={self.nlist}, ntotal={self.ntotal})"


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
