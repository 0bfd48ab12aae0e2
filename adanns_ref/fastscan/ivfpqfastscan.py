"""IVF + 4-bit PQ fast-scan: faiss 1.15 ``IndexIVFPQFastScan`` (by_residual = False, its default).

Build: an `IVFPQIndex` (d, nlist, M, nbits = 4, by_residual = False, no normalisation) trains the
coarse centroids and the PQ exactly as faiss's ``IndexIVF::train`` does (coarse k-means, then the
PQ on at most 256 * 16 = 4096 sampled vectors, faiss ``train_encoder_num_vectors``), routes and
encodes; each inverted list's codes are then packed in blocks of 32 (`packing`), list by list.

Search (faiss ``search_implem_12``; implem 0 -> 12 for k <= 20, 13 for k > 20, bbs = 32):

    P(q)     = the nprobe nearest centroids (faiss's coarse ``IndexFlat`` search; -1 = none)
    T        = PQ table of q (L2 distances / inner products), one per query (no residual)
    Tq, a, b = quantize_LUT_and_bias without bias (`lut.quantize_lut_bounded`): a is also bounded
               by 65535 / sum_m span_m, so sums stay below 65536 up to rounding
    v(x)     = sum_m Tq[m, code_m(x)] mod 2^16, D = v * (1 / a) + b    (`scan`)

Each query scans its probed lists in ascending list number (faiss sorts the (query, list)
pairs by list number and groups them), each list in stored order, with the same handlers as
the flat index (`scan`: k = 1 single, k <= 20 heap, k > 20 reservoir; ids are the stored ids).

faiss-identical (tested against faiss-cpu 1.15.1): lists, packed codes, ids and distances bit
for bit at k <= 20 including ties where the float tables and the coarse assignment are (see
`pq`, `assign`); k > 20 as the flat index (distances bit for bit, ids up to ties).
Not reproduced: ``by_residual = True`` ("...x4fsr": 3-D tables, uint16 biases) and
precomputed tables; faiss's HeapHandler for IP reads its initial threshold from the caller's
uninitialised output buffer (0 unless that memory holds FLT_MAX): we use 0.
"""
import numpy as np

from ..core.persist import load_npz, save_npz
from ..core.validate import as_bool, as_float32_matrix, as_int, as_k, check_metric
from ..search.assign import search_centroids
from ..indices.ivfpq import IVFPQIndex
from . import lut as lutmod
from . import packing, scan
from .pqfastscan import float_tables, overflow_report, search_output

_KIND, _VERSION = "IVFPQFastScanIndex", 1
REPACK_ROWS = 32 * 4096  # rows packed per step (a multiple of packing.BBS)


class IVFPQFastScanIndex:
    """faiss ``IndexIVFPQFastScan(IndexFlat, d, nlist, M, 4, metric, 32)`` (module docstring).

    Parameters:
        d: int, vector dimension (d % M == 0)
        nlist: int, inverted lists
        M: int, sub-quantizers (code_size = ceil(M / 2) bytes)
        metric: "l2" or "ip"
        niter: int, coarse k-means iterations (faiss 10)
        seed: int, k-means and sampling seed (faiss 1234)
        allow_small: bool, train the PQ silently on fewer than 39 * 16 points

    Attributes:
        ivf: IVFPQIndex (coarse centroids (nlist, d) float32, pq, lists)
        codes: (nblocks, M2 / 2 * 32) uint8, all lists' packed blocks, list by list
        block_offsets: (nlist + 1,) int64, list l in codes[block_offsets[l]:block_offsets[l + 1]]
        offsets: (nlist + 1,) int64, ids: (ntotal,) int64 (list l at ids[offsets[l]:offsets[l + 1]])
        last_overflow: dict of (nq,) arrays from the last search (`pqfastscan.overflow_report`)
    """

    def __init__(self, d, nlist, M, metric="l2", niter=10, seed=1234, allow_small=False):
        self.metric = check_metric(metric)
        self.ivf = IVFPQIndex(d, nlist, M, nbits=4, by_residual=False, metric=self.metric,
                              normalize=False, niter=niter, seed=seed, allow_small=allow_small)
        self.d, self.nlist, self.M = self.ivf.d, self.ivf.nlist, self.ivf.M
        self.niter, self.seed, self.allow_small = as_int(niter, "niter", 1), self.ivf.seed, allow_small
        self.M2 = self.M + (self.M & 1)
        self.last_overflow = None
        self.repack()

    @property
    def is_trained(self):
        return self.ivf.is_trained

    @property
    def ntotal(self):
        return self.ivf.ntotal

    @property
    def pq(self):
        return self.ivf.pq

    def train(self, x):
        """Coarse centroids and PQ from x (n, d) float32, n >= nlist."""
        self.ivf.train(x)
        return self

    def reset(self):
        self.ivf.reset()
        self.repack()

    def add(self, x):
        """Route, encode and append x (n, d); ids ntotal .. ntotal + n - 1."""
        self.ivf.add(x)
        self.repack()

    def repack(self):
        """Re-pack every list's blocks from the IVFPQ lists (faiss packs at add time); call it
        after changing `ivf`'s lists directly (e.g. ``ivf.set_lists``). The blocks are written
        into one preallocated array, REPACK_ROWS rows at a time, so a load or an add peaks at
        the packed codes + a few MiB, not at a second copy of them."""
        state = self.ivf.lists_state()  # views: codes and ids in list order, offsets
        codes, offsets = state["codes"], state["offsets"]
        sizes = np.diff(offsets)
        self.block_offsets = np.concatenate([[0], np.cumsum(-(-sizes // packing.BBS))]).astype(np.int64)
        self.codes = np.zeros((int(self.block_offsets[-1]), self.M2 // 2 * packing.BBS), np.uint8)
        for l in range(self.nlist):
            for r0 in range(0, int(sizes[l]), REPACK_ROWS):
                rows = codes[offsets[l] + r0: offsets[l] + min(r0 + REPACK_ROWS, int(sizes[l]))]
                b0 = int(self.block_offsets[l]) + r0 // packing.BBS
                blocks = packing.pack_codes(packing.split_nibbles(rows, self.M))
                self.codes[b0: b0 + blocks.shape[0]] = blocks
        self.ids = np.array(state["ids"], dtype=np.int64)  # a copy: ivf's lists may change
        self.offsets = np.array(offsets, np.int64)

    def quantized_tables(self, q):
        """(Tq (nq, M2, 16) uint8, a (nq,), b (nq,)) of the queries, 65535-bounded."""
        q = as_float32_matrix(q, "q", d=self.d)
        if not self.is_trained:
            raise ValueError("IVFPQFastScanIndex.quantized_tables called before train()")
        return lutmod.quantize_lut_bounded(float_tables(self.pq, q, self.metric))

    def search(self, q, k, nprobe=1, wrap=True):
        """k best of each query over its nprobe lists -> (D float32 (nq, k), I int64 (nq, k))."""
        if not self.is_trained:
            raise ValueError("IVFPQFastScanIndex.search called before train(); call train(x) first")
        q = as_float32_matrix(q, "q", d=self.d)
        k = as_k(k, q.shape[0])
        nprobe = as_int(nprobe, "nprobe", low=1)
        wrap = as_bool(wrap, "wrap")
        _, probes = search_centroids(q, self.ivf.centroids, min(nprobe, self.nlist), self.metric)
        lutq, a, b = lutmod.quantize_lut_bounded(float_tables(self.pq, q, self.metric))
        is_max = self.metric == "l2"
        hv, hid = scan.new_heaps(q.shape[0], k, is_max, wrap)
        stats = np.zeros((q.shape[0], 2), np.int64)
        scan.scan_ivf(lutq, self.codes, self.block_offsets, self.offsets, self.ids,
                      np.ascontiguousarray(probes, dtype=np.int64), is_max, wrap, hv, hid, stats)
        self.last_overflow = overflow_report(stats)
        return search_output(hv, hid, k, is_max, wrap, a, b)

    def save(self, path):
        """Write the IVFPQ state (centroids, codebooks, lists) to a versioned .npz file (atomic)."""
        trained = self.is_trained
        params = {"d": self.d, "nlist": self.nlist, "M": self.M, "metric": self.metric,
                  "niter": self.niter, "seed": self.seed, "allow_small": self.allow_small}
        sub = packing.unpack_codes(self.codes, self.codes.shape[0] * packing.BBS, self.M)
        save_npz(path, _KIND, _VERSION, params, {
            "centroids": self.ivf.centroids if trained else np.empty((0, self.d), np.float32),
            "codebooks": self.pq.codebooks if trained else np.empty((0, 16, self.pq.dsub), np.float32),
            "codes": self._flat_codes(sub), "ids": self.ids, "offsets": self.offsets})

    def _flat_codes(self, sub_padded):
        """Stored codes in faiss's flat layout (ntotal, ceil(M / 2)), list by list."""
        rows = [sub_padded[32 * self.block_offsets[l]: 32 * self.block_offsets[l]
                           + self.offsets[l + 1] - self.offsets[l]] for l in range(self.nlist)]
        sub = np.concatenate(rows) if rows else np.empty((0, self.M), np.uint8)
        return packing.join_nibbles(sub)

    @classmethod
    def load(cls, path):
        """Read an index written by `save`; a corrupt or foreign file raises ValueError."""
        params, arr = load_npz(path, _KIND, _VERSION, {
            "centroids": (np.float32, 2), "codebooks": (np.float32, 3), "codes": (np.uint8, 2),
            "ids": (np.int64, 1), "offsets": (np.int64, 1)})
        try:
            index = cls(**params)
            if arr["centroids"].size:
                index.ivf.set_quantizers(arr["centroids"], arr["centroids"], arr["codebooks"])
                index.ivf.set_lists(arr["codes"], arr["ids"], arr["offsets"])
            elif arr["codes"].size or arr["ids"].size:
                raise ValueError("codes stored in an untrained index")
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: invalid IVFPQFastScanIndex contents ({exc})") from exc
        index.repack()
        return index

    def __repr__(self):
        return (f"IVFPQFastScanIndex(d={self.d}, nlist={self.nlist}, M={self.M}, "
                f"metric={self.metric!r}, ntotal={self.ntotal})")
