"""4-bit PQ fast-scan over all vectors: faiss 1.15 ``IndexPQFastScan`` (bbs = 32, implem 12/13).

A PQ with M sub-quantizers of ksub = 16 centroids (nbits = 4, dsub = d / M; our
`ProductQuantizer`, whose codebooks and codes equal faiss's) encodes every vector; the codes are
packed in blocks of 32 (`packing`). A query y is answered by

    T[m, j]  = ||y_m - c_{m,j}||^2  (L2)  or  <y_m, c_{m,j}>  (IP)      float32 (nq, M, 16)
    Tq, a, b = round_uint8_per_column(T)                               (`lut`: flat, unbounded)
    v(x)     = sum_m Tq[m, code_m(x)] mod 2^16                         (`scan`: exact integers)
    D        = v * (1 / a) + b                                         (float32, one FMA)

keeping the k best v with faiss's handler for k (`scan`: k = 1 single, k <= 20 heap, k > 20
reservoir), vectors visited in id order. This is faiss's default implem 0 -> 12 (k <= 20) / 13
(k > 20) on bbs = 32; other implems (14/15 for bbs > 32, 2-4 with ``orig_codes``) are not
reproduced. Query batching (qbs) and threads do not change faiss's per-query results.

Overflow: with M >= 258 the sum of M uint8 entries can pass 65535 and faiss's uint16 accumulator
wraps: a far vector can then rank first. ``search(..., wrap=True)`` (default) returns faiss's
result, ``wrap=False`` ranks by the exact sum (the intended result); `last_overflow` reports
per query the largest exact sum and whether any sum wrapped (the study:
``experiments/fastscan_overflow.py``, ``experiments/results_fastscan_overflow.md``).

faiss-identical (tested against faiss-cpu 1.15.1, AVX512_SPR dispatch): packed codes, quantized
tables, a and b, ids and distances bit for bit at k <= 20 including ties, whenever the float
tables are (`pq`: dsub < 16 and not 12; BLAS tables at dsub >= 16 may differ in the last bit and
then, rarely, move a rounding of Tq by one). k > 20: distances bit for bit, ids equal up to the
order among equal distances and the choice among equal distances at the k-th place (`scan`).
Deviations: at dsub >= 16 both table kinds come from BLAS on each side (NumPy's vs faiss's
sgemm), equal to the last bit only where the kernels agree; k > 20 ids among ties (`scan`).
Searching an empty index returns the handler's padding (faiss 1.15.1 crashes there).
"""
import numpy as np

from ..core.persist import load_npz, save_npz
from ..core.validate import as_bool, as_float32_matrix, as_int, as_k, check_metric
from ..quantizers.pq import ProductQuantizer
from . import lut as lutmod
from . import packing, scan

_KIND, _VERSION = "PQFastScanIndex", 1


def float_tables(pq, y, metric):
    """The float tables faiss's fast-scan quantizes: (nq, M, 16) float32."""
    return pq.distance_table(y) if metric == "l2" else pq.inner_product_tables(y)


def search_output(hv, hid, k, is_max, wrap, a, b):
    """(D float32 (nq, k), I int64 (nq, k)) from the scanned heaps (`scan.finish`)."""
    nq = hv.shape[0]
    D = np.empty((nq, k), np.float32)
    I = np.empty((nq, k), np.int64)
    scan.finish(hv, hid, is_max, wrap, scan.handler_mode(k), a, b, D, I)
    return D, I


def overflow_report(stats):
    """{"max_sum": (nq,) int64 largest exact sum per query, "wrapped": (nq,) bool, "n_wrapped":
    (nq,) int64 number of scanned vectors whose sum passed 65535}."""
    return {"max_sum": stats[:, 0].copy(), "wrapped": stats[:, 1] > 0, "n_wrapped": stats[:, 1].copy()}


class PQFastScanIndex:
    """faiss ``IndexPQFastScan(d, M, 4, metric, 32)`` (see the module docstring).

    Parameters:
        d: int, vector dimension (d % M == 0)
        M: int, sub-quantizers; code_size = ceil(M / 2) bytes
        metric: "l2" or "ip"
        seed: int, the PQ k-means seed (faiss's 1234)
        allow_small: bool, train silently on fewer than 39 * 16 points

    Attributes:
        pq: ProductQuantizer (M, 16, dsub) codebooks
        codes: (ceil(ntotal / 32), M2 / 2 * 32) uint8, the packed blocks (faiss ``codes``)
        ntotal: int
        last_overflow: dict of (nq,) arrays from the last search (`overflow_report`)
    """

    def __init__(self, d, M, metric="l2", seed=1234, allow_small=False):
        self.d = as_int(d, "d", low=1)
        self.metric = check_metric(metric)
        self.allow_small = as_bool(allow_small, "allow_small")
        self.pq = ProductQuantizer(self.d, M, 4, seed=seed, allow_small=self.allow_small)
        self.M, self.seed = self.pq.M, self.pq.seed
        self.M2 = self.M + (self.M & 1)
        self.ntotal = 0
        self.codes = np.zeros((0, self.M2 // 2 * packing.BBS), np.uint8)
        self.last_overflow = None

    @property
    def is_trained(self):
        return self.pq.codebooks is not None

    @property
    def code_size(self):
        return self.pq.code_size

    def _require_trained(self, verb):
        if not self.is_trained:
            raise ValueError(f"PQFastScanIndex.{verb} called before train(); call train(x) first")

    def train(self, x):
        """Train the PQ on x (n, d) float32 (faiss trains once: a trained index is left as is)."""
        x = as_float32_matrix(x, "x", d=self.d)
        if not self.is_trained:
            self.pq.train(x)
        return self

    def reset(self):
        self.ntotal = 0
        self.codes = np.zeros((0, self.M2 // 2 * packing.BBS), np.uint8)

    def sub_codes(self):
        """Sub-codes (ntotal, M) uint8 of the stored vectors, unpacked (faiss ``CodePackerPQ4``)."""
        return packing.unpack_codes(self.codes, self.ntotal, self.M)

    def add(self, x):
        """Encode x (n, d) and append it; ids ntotal .. ntotal + n - 1."""
        self._require_trained("add")
        x = as_float32_matrix(x, "x", d=self.d)
        sub = packing.split_nibbles(self.pq.encode(x), self.M)
        self.add_sub_codes(sub)

    def add_sub_codes(self, sub):
        """Append already computed sub-codes (n, M) uint8 (values < 16)."""
        sub = np.asarray(sub)
        if sub.dtype != np.uint8 or sub.ndim != 2 or sub.shape[1] != self.M or (sub > 15).any():
            raise ValueError(f"sub-codes must be uint8 (n, M={self.M}) with values < 16, got "
                             f"{sub.dtype} {sub.shape}")
        allsub = np.concatenate([self.sub_codes(), sub])
        self.codes = packing.pack_codes(allsub)
        self.ntotal = allsub.shape[0]

    def quantized_tables(self, q):
        """(Tq (nq, M2, 16) uint8, a (nq,) float32, b (nq,) float32) of the queries q (nq, d)."""
        self._require_trained("quantized_tables")
        q = as_float32_matrix(q, "q", d=self.d)
        return lutmod.quantize_lut_per_column(float_tables(self.pq, q, self.metric))

    def search(self, q, k, wrap=True):
        """k best of each query (nq, d) -> (D float32 (nq, k), I int64 (nq, k)), faiss's order.

        wrap=True: faiss's uint16 sums (default); wrap=False: exact sums (see the docstring)."""
        self._require_trained("search")
        q = as_float32_matrix(q, "q", d=self.d)
        k = as_k(k, q.shape[0])
        wrap = as_bool(wrap, "wrap")
        lutq, a, b = lutmod.quantize_lut_per_column(float_tables(self.pq, q, self.metric))
        is_max = self.metric == "l2"
        hv, hid = scan.new_heaps(q.shape[0], k, is_max, wrap)
        stats = np.zeros((q.shape[0], 2), np.int64)
        scan.scan_flat(lutq, self.codes, self.ntotal, is_max, wrap, hv, hid, stats,
                       *scan.scratch(self.M2))
        self.last_overflow = overflow_report(stats)
        return search_output(hv, hid, k, is_max, wrap, a, b)

    def _params(self):
        return {"d": self.d, "M": self.M, "metric": self.metric, "seed": self.seed,
                "allow_small": self.allow_small}

    def save(self, path):
        """Write parameters, codebooks and packed codes to a versioned .npz file (atomic)."""
        cb = self.pq.codebooks
        cb = cb if cb is not None else np.empty((0, 16, self.pq.dsub), np.float32)
        save_npz(path, _KIND, _VERSION, self._params(),
                 {"codebooks": cb, "codes": self.codes, "ntotal": np.array([self.ntotal], np.int64)})

    @classmethod
    def load(cls, path):
        """Read an index written by `save`; a corrupt or foreign file raises ValueError."""
        params, arr = load_npz(path, _KIND, _VERSION, {
            "codebooks": (np.float32, 3), "codes": (np.uint8, 2), "ntotal": (np.int64, 1)})
        try:
            index = cls(**params)
            if arr["codebooks"].size:
                index.pq.set_codebooks(arr["codebooks"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: invalid PQFastScanIndex contents ({exc})") from exc
        n = int(arr["ntotal"][0]) if arr["ntotal"].shape == (1,) else -1
        codes = arr["codes"]
        want = (-(-n // packing.BBS), index.M2 // 2 * packing.BBS) if n >= 0 else None
        if want is None or codes.shape != want or (n and not index.is_trained):
            raise ValueError(f"{path}: codes of shape {codes.shape} and ntotal {n} do not fit a "
                             f"{'trained' if index.is_trained else 'untrained'} index with M={index.M}")
        index.codes, index.ntotal = np.ascontiguousarray(codes), n
        return index

    def __repr__(self):
        return f"PQFastScanIndex(d={self.d}, M={self.M}, metric={self.metric!r}, ntotal={self.ntotal})"
