"""IVF + 4-bit PQ fast-scan: faiss 1.15 ``IndexIVFPQFastScan``, by_residual False (default) or True.

Build: an `IVFPQIndex` (d, nlist, M, nbits = 4, by_residual, no normalisation) trains the
coarse centroids and the PQ exactly as faiss's ``IndexIVF::train`` does (coarse k-means, then the
PQ on at most 256 * 16 = 4096 sampled vectors, faiss ``train_encoder_num_vectors``), routes and
encodes; each inverted list's codes are then packed in blocks of 32 (`packing`), list by list.

Search (faiss ``search_implem_12``; implem 0 -> 12 for k <= 20, 13 for k > 20, bbs = 32):

    P(q)     = the nprobe nearest centroids (faiss's coarse ``IndexFlat`` search; -1 = none)
    T        = PQ table of q (L2 distances / inner products), one per query (no residual)
    Tq, a, b = quantize_LUT_and_bias without bias (`lut.quantize_lut_bounded`): a is also bounded
               by 65535 / sum_m span_m, so sums stay below 65536 up to rounding
    v(x)     = sum_m Tq[m, code_m(x)] mod 2^16, D = v * (1 / a) + b    (`scan`)

by_residual = True ("IVF{n},PQ{M}x4fsr"; codes encode x - c_l, the PQ trains on residuals):

    L2 (faiss ``use_precomputed_table`` 1, its choice below 2 GiB of table; `precomputed`):
       T_j  = term2[l_j] - 2 <y_m, c_mj>   one table per probe j (3-D LUT), term2 as IndexIVFPQ
              (`indices.ivfpq_kernels.precomputed_table`); x2 is exact, so FMA or not agrees
       beta_j = ||y - c_{l_j}||^2, the coarse search distance
       precomputed=False (faiss -1, and faiss's choice above 2 GiB): T_j = PQ table of the
       residual y - c_{l_j}, beta_j = 0
    IP: T = <y_m, c_mj> one table per query, beta_j = <y, c_{l_j}> (the coarse inner product)
    Tq, biasq, a, b = quantize_LUT_and_bias with bias (`lut.quantize_lut_3d` / `quantize_lut_bias`)
    v_j(x) = (sum_m Tq_j[m, code_m(x)] + biasq_j) mod 2^16,   D = v * (1 / a) + b

With by_residual the coarse search is not clamped to nlist (faiss asks its quantizer for nprobe
results; the missing ones come back as id -1 and +-FLT_MAX and still enter the bias range: for
IP the -FLT_MAX bias collapses a, as in faiss).

Each query scans its probed lists in ascending list number (faiss sorts the (query, list)
pairs by list number and groups them), each list in stored order, with the same handlers as
the flat index (`scan`: k = 1 single, k <= 20 heap, k > 20 reservoir; ids are the stored ids).

faiss-identical (tested against faiss-cpu 1.15.1): lists, packed codes, ids and distances bit
for bit at k <= 20 including ties where the float tables and the coarse assignment are (see
`pq`, `assign`); k > 20 as the flat index (distances bit for bit, ids up to ties).
by_residual = True: the same, on the 3-D tables and biases above (tested at k <= 20 ids and
distances bit for bit, k > 20 distances, L2 and IP). Not reproduced: faiss's HeapHandler for IP reads its initial threshold from the caller's
uninitialised output buffer (0 unless that memory holds FLT_MAX): we use 0.
"""
import numpy as np

from ..core.persist import load_npz, save_npz
from ..core.validate import as_bool, as_float32_matrix, as_int, as_k, check_metric
from ..search.assign import search_centroids
from ..indices.ivfpq import PRECOMPUTED_TABLE_MAX_BYTES, IVFPQIndex
from ..indices.ivfpq_kernels import precomputed_table
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
        by_residual: bool, encode x - c_l (faiss "...x4fsr"); faiss's default False
        precomputed: bool, L2 by_residual tables from faiss's precomputed term2 (faiss 1; False:
            faiss's use_precomputed_table = -1, residual tables)

    Attributes:
        ivf: IVFPQIndex (coarse centroids (nlist, d) float32, pq, lists)
        codes: (nblocks, M2 / 2 * 32) uint8, all lists' packed blocks, list by list
        block_offsets: (nlist + 1,) int64, list l in codes[block_offsets[l]:block_offsets[l + 1]]
        offsets: (nlist + 1,) int64, ids: (ntotal,) int64 (list l at ids[offsets[l]:offsets[l + 1]])
        last_overflow: dict of (nq,) arrays from the last search (`pqfastscan.overflow_report`)
    """

    def __init__(self, d, nlist, M, metric="l2", niter=10, seed=1234, allow_small=False,
                 by_residual=False, precomputed=True):
        self.metric = check_metric(metric)
        self.by_residual = as_bool(by_residual, "by_residual")
        self.precomputed = as_bool(precomputed, "precomputed")
        self.ivf = IVFPQIndex(d, nlist, M, nbits=4, by_residual=self.by_residual, metric=self.metric,
                              normalize=False, niter=niter, seed=seed, allow_small=allow_small)
        self._term2 = None
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
        self._term2 = None
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
        self._term2 = None
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

    def _uses_precomputed(self):
        """faiss's table choice for L2 by_residual: precomputed term2 below 2 GiB (faiss 1)."""
        return self.precomputed and 4 * self.nlist * self.M * 16 <= PRECOMPUTED_TABLE_MAX_BYTES

    def _term2_table(self):
        """term2 (nlist, M, 16) of the codebooks and centroids, built once (dropped by train and
        repack, which every change of `ivf` goes through)."""
        if self._term2 is None:
            self._term2 = precomputed_table(self.pq, self.ivf.centroids)
        return self._term2

    def _probes(self, q, nprobe):
        """Coarse (distances, ids) (nq, P): P = nprobe by_residual (faiss's padding), else clamped."""
        p = nprobe if self.by_residual else min(nprobe, self.nlist)
        return search_centroids(q, self.ivf.centroids, p, self.metric)

    def quantized_tables(self, q):
        """(Tq (nq, M2, 16) uint8, a (nq,), b (nq,)) of the queries, 65535-bounded (by_residual
        False: one table per query and no bias; else see `probe_tables`)."""
        q = as_float32_matrix(q, "q", d=self.d)
        if not self.is_trained:
            raise ValueError("IVFPQFastScanIndex.quantized_tables called before train()")
        if self.by_residual:
            raise ValueError("by_residual tables depend on the probes: call probe_tables(q, nprobe)")
        return lutmod.quantize_lut_bounded(float_tables(self.pq, q, self.metric))

    def probe_tables(self, q, nprobe=1):
        """(Tq (nq, P, M2, 16) uint8, biasq (nq, nprobe or 0) int64, a (nq,), b (nq,), probes
        (nq, nprobe) int64) of the queries: P = nprobe for L2 by_residual (3-D), else 1."""
        q = as_float32_matrix(q, "q", d=self.d)
        if not self.is_trained:
            raise ValueError("IVFPQFastScanIndex.probe_tables called before train()")
        nprobe = as_int(nprobe, "nprobe", low=1)
        coarse, probes = self._probes(q, nprobe)
        if not self.by_residual:
            lutq, a, b = lutmod.quantize_lut_bounded(float_tables(self.pq, q, self.metric))
            return lutq[:, None], np.zeros((q.shape[0], 0), np.int64), a, b, probes
        if self.metric == "ip":
            lutq, biasq, a, b = lutmod.quantize_lut_bias(self.pq.inner_product_tables(q), coarse)
            return lutq[:, None], biasq, a, b, probes
        valid = probes >= 0
        lists = np.where(valid, probes, 0)
        if self._uses_precomputed():
            ip = self.pq.inner_product_tables(q)
            tables = self._term2_table()[lists] + np.float32(-2) * ip[:, None]
            bias = coarse
        else:
            res = (q[:, None, :] - self.ivf.centroids[lists]).reshape(-1, self.d)
            tables = self.pq.distance_table(res).reshape(q.shape[0], probes.shape[1], self.M, 16)
            bias = np.zeros(probes.shape, np.float32)
        lutq, biasq, a, b = lutmod.quantize_lut_3d(tables, bias, valid)
        return lutq, biasq, a, b, probes

    def search(self, q, k, nprobe=1, wrap=True):
        """k best of each query over its nprobe lists -> (D float32 (nq, k), I int64 (nq, k))."""
        if not self.is_trained:
            raise ValueError("IVFPQFastScanIndex.search called before train(); call train(x) first")
        q = as_float32_matrix(q, "q", d=self.d)
        k = as_k(k, q.shape[0])
        nprobe = as_int(nprobe, "nprobe", low=1)
        wrap = as_bool(wrap, "wrap")
        lutq, biasq, a, b, probes = self.probe_tables(q, nprobe)
        is_max = self.metric == "l2"
        hv, hid = scan.new_heaps(q.shape[0], k, is_max, wrap)
        stats = np.zeros((q.shape[0], 2), np.int64)
        scan.scan_ivf(lutq, biasq, self.codes, self.block_offsets, self.offsets, self.ids,
                      np.ascontiguousarray(probes, dtype=np.int64), is_max, wrap, hv, hid, stats,
                      *scan.scratch(self.M2))
        self.last_overflow = overflow_report(stats)
        return search_output(hv, hid, k, is_max, wrap, a, b)

    def save(self, path):
        """Write the IVFPQ state (centroids, codebooks, lists) to a versioned .npz file (atomic)."""
        trained = self.is_trained
        params = {"d": self.d, "nlist": self.nlist, "M": self.M, "metric": self.metric,
                  "niter": self.niter, "seed": self.seed, "allow_small": self.allow_small,
                  "by_residual": self.by_residual, "precomputed": self.precomputed}
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
                f"metric={self.metric!r}, by_residual={self.by_residual}, ntotal={self.ntotal})")
