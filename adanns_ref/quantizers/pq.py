"""Product quantization (Jégou, Douze & Schmid 2011) with faiss's exact conventions.

A vector x in R^d is cut into M sub-vectors x_m of dsub = d / M dims; subspace m has a codebook
of ksub = 2^nbits centroids c_{m,j}, trained by k-means on the training sub-vectors (the same
seed for every m, as faiss's ``ProductQuantizer.train``):

    encode:  q_m(x) = argmin_j ||x_m - c_{m,j}||^2        (ties -> smaller j)
    decode:  x_hat  = (c_{1,q_1}, ..., c_{M,q_M})
    ADC:     T[m, j] = ||y_m - c_{m,j}||^2 per query y (the distance table),
             d(y, x) ~ sum_m T[m, q_m(x)]                 (squared L2 to the reconstruction)

Storage: code_size = ceil(M * nbits / 8) bytes; sub-code m sits in bits [m*nbits, (m+1)*nbits) of
the code read as a little-endian integer (nbits 8: byte m; nbits 16: a little-endian uint16).
Shapes: x (n, d) float32; codebooks (M, ksub, dsub) float32 (faiss ``pq.centroids`` reshaped);
codes (n, code_size) uint8; tables (nq, M, ksub) float32; search -> D float32, I int64 (nq, k).

faiss-identical (faiss 1.15 ``impl/ProductQuantizer.cpp`` on AVX-512, the level the faiss-cpu
wheel dispatches to on such CPUs):
- codebooks (``KMeans`` per subspace with ``pq.cp``'s seed, niter, max_points_per_centroid);
- the distance form: dsub < 16 direct sums, dsub >= 16 BLAS (||x_m||^2 + ||c||^2) - 2 <x_m, c>,
  not clamped. Direct sums follow faiss's kernels (``core.simd`` order 2), so tables are
  bit-identical for every dsub < 16 but 12, and codes match exactly;
- `inner_product_table` (faiss ``compute_inner_prod_table``, one query at a time): direct sums
  for every dsub (order 2 below 16, order 1 from 16), bit-identical but at dsub 12;
- the ADC sum order (``core.simd`` order 3), so ADC distances are bit-identical wherever the tables
  are; LSB-first packing.
Not identical: BLAS tables (and dsub 12) differ in the last bits, so near-ties may resolve
differently; on an *exact* tie between two centroids faiss's SIMD argmin may keep the larger
index, we keep the smaller.

Small training sets, as faiss: n < ksub raises ValueError; ksub <= n < 39 * ksub trains and
emits `kmeans.SmallTrainingSetWarning` (faiss's stderr text, once per subspace k-means) unless
``allow_small=True``, which trains silently (faiss: ``pq.cp.min_points_per_centroid = 0``).
"""
import sys

import numba
import numpy as np

from ..core.simd import (SUM_GROUPS4, SUM_LANES16, SUM_SEQUENTIAL, code_distance,
                         code_distances_words, table_into)
from ..core.topk import finalize, heap_push, new_heaps, push_chunk, sort_heaps
from ..core.validate import as_bool, as_float32_matrix, as_int, as_k
from ..distributed import map_concat
from .kmeans import KMeans

MIN_POINTS_PER_CENTROID = 39  # faiss ClusteringParameters: fewer points per centroid -> warning
DIRECT_MAX_DSUB = 15  # faiss: dsub < 16 -> direct distances, else BLAS
ADC_CHUNK = 256  # codes whose ADC distances are buffered before one heap pre-test
_TABLE_BLOCK_FLOATS = 1 << 22  # tables held at once (16 MB): rows per block = this // (M * ksub)


@numba.njit(cache=True, parallel=True)
def _tables_direct(q, cbT, l2, fused, tables):
    """tables[i, m, :] = direct-form distances (l2) or inner products of q_i's sub-vector m with
    codebook m (`core.simd.table_into`)."""
    M, dsub, ksub = cbT.shape
    for i in numba.prange(q.shape[0]):
        acc = np.empty((16, ksub), dtype=np.float32)
        for m in range(M):
            table_into(q[i], m * dsub, cbT[m], l2, fused, acc, tables[i, m])


@numba.njit(cache=True)
def _argmin_nonneg(dist, bits):
    """First index of the minimum of dist (>= 0, no NaN); bits = dist.view(int32).

    Non-negative float32 values order like their int32 bit patterns, so the int64 key
    (bits << 32 | j) orders by (distance, j): one integer min, which vectorises (a float argmin
    is a chain of dependent compares), gives the smallest j among equal minima.
    """
    best = np.int64(bits[0]) << 32
    for j in range(1, bits.shape[0]):
        best = min(best, (np.int64(bits[j]) << 32) | j)
    return best & 0xFFFFFFFF


@numba.njit(cache=True, parallel=True)
def _encode_direct(x, cbT, sub):
    """sub[i, m] = argmin_j ||x_im - c_mj||^2 (first minimum), direct form; parallel over chunks
    of rows so each thread reuses one distance buffer."""
    n = x.shape[0]
    M, dsub, ksub = cbT.shape
    chunk = 256
    for c in numba.prange((n + chunk - 1) // chunk):
        dist = np.empty(ksub, dtype=np.float32)
        bits = dist.view(np.int32)
        acc = np.empty((16, ksub), dtype=np.float32)
        for i in range(c * chunk, min(n, (c + 1) * chunk)):
            for m in range(M):
                table_into(x[i], m * dsub, cbT[m], True, True, acc, dist)
                sub[i, m] = _argmin_nonneg(dist, bits)


def _tables_blas(q, codebooks, c_norms):
    """faiss pairwise_L2sqr per subspace: (||q_m||^2 + ||c||^2) - 2 <q_m, c>, not clamped."""
    M, ksub, dsub = codebooks.shape
    tables = np.empty((q.shape[0], M, ksub), dtype=np.float32)
    for m in range(M):
        qm = q[:, m * dsub:(m + 1) * dsub]
        q_norms = np.einsum("ij,ij->i", qm, qm, dtype=np.float32)
        tables[:, m, :] = (q_norms[:, None] + c_norms[m][None, :]) - np.float32(2) * (qm @ codebooks[m].T)
    return tables


@numba.njit(cache=True, parallel=True)
def _pack(sub, nbits, codes):
    """LSB-first bit packing: sub-code m of row i into bits [m*nbits, (m+1)*nbits) of codes[i]."""
    M = sub.shape[1]
    for i in numba.prange(sub.shape[0]):
        acc = np.uint64(0)
        filled = 0
        pos = 0
        for m in range(M):
            acc |= np.uint64(sub[i, m]) << np.uint64(filled)
            filled += nbits
            while filled >= 8:
                codes[i, pos] = np.uint8(acc & np.uint64(0xFF))
                acc >>= np.uint64(8)
                filled -= 8
                pos += 1
        if filled > 0:
            codes[i, pos] = np.uint8(acc & np.uint64(0xFF))


@numba.njit(cache=True, parallel=True)
def _unpack(codes, nbits, sub):
    """Inverse of _pack: sub[i, m] = bits [m*nbits, (m+1)*nbits) of codes[i]."""
    M = sub.shape[1]
    mask = np.uint64((1 << nbits) - 1)
    for i in numba.prange(codes.shape[0]):
        acc = np.uint64(0)
        avail = 0
        pos = 0
        for m in range(M):
            while avail < nbits:
                acc |= np.uint64(codes[i, pos]) << np.uint64(avail)
                avail += 8
                pos += 1
            sub[i, m] = np.uint16(acc & mask)
            acc >>= np.uint64(nbits)
            avail -= nbits


@numba.njit(cache=True, parallel=True)
def _adc_scan(tables, sub, order, hd, hi):
    """Push the ADC distance of every code j into query r's heap (hd[r], hi[r])."""
    for r in numba.prange(tables.shape[0]):
        T = tables[r]
        rd, ri = hd[r], hi[r]
        for j in range(sub.shape[0]):
            s = code_distance(T, sub[j], order)
            if s < rd[0]:  # ids only grow, so an equal distance never displaces a kept one
                heap_push(rd, ri, s, j)


@numba.njit(cache=True, parallel=True)
def _adc_scan_words(tables, words, hd, hi):
    """_adc_scan for nbits 8 and M % 16 == 0: tables flattened to (nq, M * 256), codes viewed as
    uint64 words (n, M / 8). The distances of ADC_CHUNK codes go to a buffer, then into the heap
    through one SIMD pre-test."""
    n = words.shape[0]
    for r in numba.prange(tables.shape[0]):
        buf = np.empty(ADC_CHUNK, dtype=np.float32)
        for j0 in range(0, n, ADC_CHUNK):
            blk = words[j0:j0 + ADC_CHUNK]
            dis = buf[:blk.shape[0]]
            code_distances_words(tables[r], blk, dis)
            push_chunk(dis, j0, hd[r], hi[r])


class ProductQuantizer:
    """faiss ``ProductQuantizer(d, M, nbits)``: per-subspace k-means codebooks, encode/decode, ADC.

    Parameters
        d                        int, = M * dsub: vector width
        M                        int: sub-quantizers
        nbits                    int in 1..16: bits per sub-code (ksub = 2^nbits)
        seed                     int: each subspace's k-means seed (faiss ``pq.cp``)
        niter                    int: k-means iterations (faiss ``pq.cp``)
        max_points_per_centroid  int: k-means subsampling (faiss ``pq.cp``)
        allow_small              bool: train on ksub <= n < 39 * ksub points without faiss's
                                 `SmallTrainingSetWarning` (training happens either way); n < ksub
                                 always raises

    Attributes
        dsub         int, = d / M
        ksub         int, = 2^nbits
        code_size    int, = ceil(M * nbits / 8) bytes
        codebooks    (M, ksub, dsub) float32, or None before training
        codebooks_t  (M, dsub, ksub) float32: the layout the kernels read
        sum_order    int: the `core.simd` order ADC sums the M table entries in
    """

    def __init__(self, d, M, nbits=8, seed=1234, niter=25, max_points_per_centroid=256,
                 allow_small=False):
        self.d = as_int(d, "d", low=1)
        self.M = as_int(M, "M", low=1)
        if self.d % self.M:
            raise ValueError(f"d={self.d} is not divisible by M={self.M}; choose M among the "
                             f"divisors of d (each sub-vector has d / M dims)")
        self.nbits = as_int(nbits, "nbits", low=1, high=16)
        self.seed = as_int(seed, "seed", low=0, high=2**31 - 1)
        self.niter = as_int(niter, "niter", low=1)
        self.max_points_per_centroid = as_int(max_points_per_centroid, "max_points_per_centroid", low=1)
        self.allow_small = as_bool(allow_small, "allow_small")
        self.dsub = self.d // self.M
        self.ksub = 1 << self.nbits
        self.code_size = (self.M * self.nbits + 7) // 8
        self.codebooks = None
        self._block_rows = max(1, _TABLE_BLOCK_FLOATS // (self.M * self.ksub))
        self._sum_order = (SUM_LANES16 if self.nbits == 8 else
                           SUM_GROUPS4 if self.nbits == 16 and self.M % 4 == 0 else SUM_SEQUENTIAL)

    def train(self, x, init_codebooks=None):
        """Learn the M codebooks from x (n, d). init_codebooks (M, ksub, dsub): warm start each
        subspace's k-means there (faiss ``Train_hot_start``, used by OPQ). Returns self."""
        x = as_float32_matrix(x, "x", d=self.d)
        if init_codebooks is not None:
            init_codebooks = self._check_codebooks(init_codebooks, "init_codebooks")
        n = x.shape[0]
        if n < self.ksub:
            raise ValueError(f"PQ training needs at least ksub = 2^{self.nbits} = {self.ksub} points "
                             f"(faiss refuses fewer too), got n={n}; add points or lower nbits")
        codebooks = np.empty((self.M, self.ksub, self.dsub), dtype=np.float32)
        for m in range(self.M):
            km = KMeans(self.ksub, niter=self.niter, seed=self.seed,
                        max_points_per_centroid=self.max_points_per_centroid,
                        min_points_per_centroid=0 if self.allow_small else MIN_POINTS_PER_CENTROID)
            xm = np.ascontiguousarray(x[:, m * self.dsub:(m + 1) * self.dsub])
            km.fit(xm, init_centroids=None if init_codebooks is None else init_codebooks[m])
            codebooks[m] = km.centroids
        self.set_codebooks(codebooks)
        return self

    def _check_codebooks(self, codebooks, name):
        cb = np.asarray(codebooks)
        shape = (self.M, self.ksub, self.dsub)
        if cb.shape != shape:
            raise ValueError(f"{name} must have shape (M, ksub, dsub) = {shape}, got {cb.shape}")
        return as_float32_matrix(cb.reshape(-1, self.dsub), name).reshape(shape)

    def set_codebooks(self, codebooks):
        """Install codebooks (M, ksub, dsub), e.g. faiss's ``pq.centroids`` reshaped. Returns self."""
        cb = self._check_codebooks(codebooks, "codebooks")
        self.codebooks = np.ascontiguousarray(cb)
        self._cbT = np.ascontiguousarray(cb.transpose(0, 2, 1))  # (M, dsub, ksub) for the kernels
        self._c_norms = np.einsum("mjt,mjt->mj", cb, cb, dtype=np.float32)
        return self

    def _require_trained(self, what):
        if self.codebooks is None:
            raise ValueError(f"ProductQuantizer.{what} called before train(); train it first "
                             f"(or set_codebooks)")

    def encode(self, x, client=None):
        """codes (n, code_size) uint8 of x (n, d): nearest centroid per subspace, bit-packed.
        client: a ``distributed.Client``: x may then also be a vector file path or a dask array;
        blocks are encoded on the workers, cut where the table blocks start (same codes)."""
        self._require_trained("encode")
        if client is not None:
            return map_concat(client, self, "encode", x, self.d, self.encode_alignment,
                              empty=np.empty((0, self.code_size), np.uint8))
        x = as_float32_matrix(x, "x", d=self.d)
        sub = np.empty((x.shape[0], self.M), dtype=np.uint16)
        if self.dsub <= DIRECT_MAX_DSUB:
            _encode_direct(x, self._cbT, sub)
        else:
            b = self._block_rows
            for i0 in range(0, x.shape[0], b):
                sub[i0:i0 + b] = _tables_blas(x[i0:i0 + b], self.codebooks, self._c_norms).argmin(axis=2)
        return self._pack(sub)

    @property
    def encode_alignment(self):
        """Rows of x whose codes `encode` computes together (its BLAS table blocks; 1 for the
        direct form): a part of x starting at a multiple of it gets the codes it gets in x."""
        return self._block_rows if self.dsub > DIRECT_MAX_DSUB else 1

    def _pack(self, sub):
        if self.nbits == 8:
            return sub.astype(np.uint8)
        codes = np.zeros((sub.shape[0], self.code_size), dtype=np.uint8)
        _pack(sub, self.nbits, codes)
        return codes

    def _check_codes(self, codes):
        codes = np.asarray(codes)
        if codes.dtype != np.uint8:
            raise TypeError(f"codes must be uint8 (as returned by encode), got dtype {codes.dtype}")
        if codes.ndim != 2 or codes.shape[1] != self.code_size:
            raise ValueError(f"codes must have shape (n, code_size={self.code_size}) for M={self.M}, "
                             f"nbits={self.nbits}, got {codes.shape}")
        return np.ascontiguousarray(codes)

    def unpack(self, codes):
        """Sub-codes (n, M): uint8 for nbits = 8 (the codes themselves), else uint16."""
        codes = self._check_codes(codes)
        if self.nbits == 8:
            return codes
        sub = np.empty((codes.shape[0], self.M), dtype=np.uint16)
        _unpack(codes, self.nbits, sub)
        return sub

    def _as_words(self, sub):
        """The codes as little-endian uint64 words (n, M / 8) for the fast ADC scan (nbits 8,
        M % 16 == 0), 8-byte aligned; None where that scan does not apply."""
        if self.nbits != 8 or self.M % 16 or sys.byteorder != "little":
            return None
        if sub.ctypes.data % 8:
            sub = sub.copy()  # a fresh numpy buffer is aligned
        return sub.view(np.uint64)

    def decode(self, codes):
        """x_hat (n, d) float32: the concatenated centroids the codes name."""
        self._require_trained("decode")
        sub = self.unpack(codes)
        out = np.empty((sub.shape[0], self.d), dtype=np.float32)
        for m in range(self.M):
            out[:, m * self.dsub:(m + 1) * self.dsub] = self.codebooks[m][sub[:, m]]
        return out

    def distance_table(self, q):
        """T (nq, M, ksub) float32, T[i, m, j] = ||q_im - c_mj||^2 (faiss compute_distance_tables)."""
        self._require_trained("distance_table")
        q = as_float32_matrix(q, "q", d=self.d)
        return self._tables(q)

    @property
    def codebooks_t(self):
        """The codebooks as the kernels read them, (M, dsub, ksub) float32, C-contiguous; None
        before training. The array itself, not a copy (a read-only view would be another numba
        type, compiled once more): do not modify it."""
        return None if self.codebooks is None else self._cbT

    @property
    def sum_order(self):
        """The `core.simd` order (SUM_LANES16, SUM_GROUPS4 or SUM_SEQUENTIAL) in which ADC sums
        the M table entries of a code: faiss's, which depends on nbits and M."""
        return self._sum_order

    def inner_product_table(self, q):
        """T (nq, M, ksub) float32, T[i, m, j] = <q_im, c_mj> (faiss compute_inner_prod_table, per
        query: direct sums whatever dsub; used by IVFPQ's "ip" metric and precomputed tables)."""
        self._require_trained("inner_product_table")
        q = as_float32_matrix(q, "q", d=self.d)
        return self._ip_tables(q)

    def _ip_tables(self, q):
        tables = np.empty((q.shape[0], self.M, self.ksub), dtype=np.float32)
        _tables_direct(q, self._cbT, False, True, tables)
        return tables

    def _tables(self, q):
        if self.dsub > DIRECT_MAX_DSUB:
            return _tables_blas(q, self.codebooks, self._c_norms)
        tables = np.empty((q.shape[0], self.M, self.ksub), dtype=np.float32)
        _tables_direct(q, self._cbT, True, not (self.dsub == 2 and self.nbits < 8), tables)
        return tables

    def search(self, codes, q, k):
        """ADC k-NN of each query among the encoded vectors -> (D (nq, k) float32, I (nq, k) int64).

        D = sum_m T[m, code_m] (squared L2 to the reconstruction), sorted ascending, ties to the
        smaller id; fewer than k codes pad with id -1 and distance FLT_MAX (faiss IndexPQ.search).
        """
        self._require_trained("search")
        sub = self.unpack(codes)
        q = as_float32_matrix(q, "q", d=self.d)
        k = as_k(k, q.shape[0])
        hd, hi = new_heaps(q.shape[0], k)
        words = self._as_words(sub)
        b = self._block_rows
        for i0 in range(0, q.shape[0], b):
            tables, heaps = self._tables(q[i0:i0 + b]), (hd[i0:i0 + b], hi[i0:i0 + b])
            if words is not None:
                _adc_scan_words(tables.reshape(tables.shape[0], -1), words, *heaps)
            else:
                _adc_scan(tables, sub, self._sum_order, *heaps)
        sort_heaps(hd, hi)
        return finalize(hd, hi, "l2")
