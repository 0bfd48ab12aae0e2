"""IVF + RaBitQ by residual: faiss 1.15.1 ``IndexIVFRaBitQ`` (flat coarse quantizer, by_residual).

Build: an `indices.IVFIndex` (d, nlist, metric, normalize = False) trains the coarse centroids
(our `KMeans`, identical to faiss's ``IndexIVF::train``) and routes each vector to its nearest
centroid c_l (faiss ``quantizer->assign``); the vector is coded against c_l
(`quantizer.RaBitQuantizer`: o = x - c_l, the list centroid plays the role of the flat index's
mean), and the codes are kept per list in insertion order (CSR, `indices.invlists`).

Search: the nprobe nearest centroids P(q) (faiss's coarse search: L2 ascending / IP
descending); each query scans its lists in that order, each list with its own query factors
(q - c_l quantized to qb bits, centred or not) and the same 1-bit / multi-bit two-stage estimate
as the flat index (`scan.search_ivf`), into one heap per query (faiss's IVF always keeps a heap,
for any k: L2 ties to the smaller id, IP ties to the larger id; a result enters only if
strictly better than the k-th).

faiss's ``qb`` field defaults to 4 and ``centered`` comes only from
``IVFRaBitQSearchParameters``; ours are constructor parameters (qb = 0 default, as issue #29
asks) and per-search overrides.

faiss-identical (tested against faiss-cpu 1.15.1): centroids (through `KMeans`), lists, code
bytes, ids and distances bit for bit where the coarse assignment is (see `search.assign`).
Shapes: codes (ntotal, code_size) uint8 in list order; ids (ntotal,) int64; offsets
(nlist + 1,) int64.
"""
import numpy as np

from ..core import topk
from ..core.persist import load_npz, save_npz
from ..core.threads import threads_for
from ..core.validate import as_float32_matrix, as_int, as_k, as_uint8_codes
from ..indices.invlists import append_to_lists, lists_are_consistent
from ..indices.ivf import IVFIndex
from ..search.assign import search_centroids
from . import scan
from .index import search_options
from .quantizer import RaBitQuantizer

_KIND, _VERSION = "IVFRaBitQIndex", 1


class IVFRaBitQIndex:
    """faiss ``IndexIVFRaBitQ(IndexFlat(d, metric), d, nlist, metric, nb_bits)`` (module docstring).

    Parameters:
        d: int, vector dimension
        nlist: int, inverted lists
        metric: "l2" or "ip"
        nb_bits: int in 1..9, bits per dimension
        qb: int in 0..8, query quantizer bits (0: float32 query)
        centered: bool, the zero-centred query quantizer
        niter: int, coarse k-means iterations (faiss 10)
        seed: int, coarse k-means seed (faiss 1234)

    Attributes:
        ivf: IVFIndex, the coarse centroids (nlist, d) float32 (its own lists stay empty)
        rabitq: RaBitQuantizer
        codes: (ntotal, code_size) uint8, list by list; ids: (ntotal,) int64;
        offsets: (nlist + 1,) int64, list l at rows offsets[l]:offsets[l + 1]
    """

    def __init__(self, d, nlist, metric="l2", nb_bits=1, qb=0, centered=False, niter=10, seed=1234):
        self.rabitq = RaBitQuantizer(d, metric, nb_bits)
        self.ivf = IVFIndex(self.rabitq.d, nlist, metric=metric, normalize=False, niter=niter, seed=seed)
        self.d, self.nlist, self.metric = self.rabitq.d, self.ivf.nlist, self.rabitq.metric
        self.nb_bits, self.niter, self.seed = self.rabitq.nb_bits, self.ivf.niter, self.ivf.seed
        self.qb, self.centered = search_options(qb, centered)
        self._c = None  # the coarse centroids (nlist, d) float32, once trained
        self.reset()

    @property
    def ntotal(self):
        return int(self.ids.shape[0])

    @property
    def is_trained(self):
        return self.ivf.is_trained

    @property
    def code_size(self):
        return self.rabitq.code_size

    @property
    def centroids(self):
        return self.ivf.centroids

    def _require_trained(self, verb):
        if not self.is_trained:
            raise ValueError(f"IVFRaBitQIndex.{verb} called before train(); call train(x) first")

    def train(self, x):
        """Coarse centroids from x (n, d), n >= nlist (faiss trains once; we refuse after add)."""
        if self.ntotal:
            raise ValueError(f"IVFRaBitQIndex.train after add ({self.ntotal} codes); call reset() first")
        self.ivf.train(x)
        self._c = self.ivf.centroids
        return self

    def set_centroids(self, c):
        """Use given coarse centroids c (nlist, d) instead of training (e.g. faiss's)."""
        if self.ntotal:
            raise ValueError(f"IVFRaBitQIndex.set_centroids after add ({self.ntotal} codes); call reset() first")
        self.ivf.set_centroids(c)
        self._c = self.ivf.centroids
        return self

    def set_lists(self, codes, ids, offsets):
        """Replace the lists: codes (n, code_size) uint8 in list order, ids (n,) int64 (a
        permutation of 0..n-1), offsets (nlist + 1,) int64 (list l at rows offsets[l]:offsets[l + 1])."""
        self._require_trained("set_lists")
        codes = as_uint8_codes(codes, "codes", self.code_size, f"d={self.d}, nb_bits={self.nb_bits}")
        ids, offsets = np.asarray(ids), np.asarray(offsets)
        if ids.dtype != np.int64 or offsets.dtype != np.int64 or not lists_are_consistent(
                offsets, ids, codes.shape[0], self.nlist):
            raise ValueError(f"ids {ids.dtype} {ids.shape} and offsets {offsets.dtype} {offsets.shape} "
                             f"do not describe {codes.shape[0]} codes in {self.nlist} lists")
        self.codes, self.ids, self.offsets = codes, np.ascontiguousarray(ids), np.ascontiguousarray(offsets)

    def reset(self):
        self.codes = np.zeros((0, self.code_size), np.uint8)
        self.ids = np.zeros(0, np.int64)
        self.offsets = np.zeros(self.nlist + 1, np.int64)

    def assign(self, x):
        """The list of each row of x (n, d): its nearest centroid, (n,) int64."""
        self._require_trained("assign")
        x = as_float32_matrix(x, "x", d=self.d)
        return search_centroids(x, self._c, 1, self.metric)[1][:, 0].astype(np.int64)

    def add(self, x):
        """Route, encode against the list centroid, and append x (n, d); ids ntotal .. ntotal + n - 1."""
        self._require_trained("add")
        x = as_float32_matrix(x, "x", d=self.d)
        lists = self.assign(x)
        codes = np.empty((x.shape[0], self.code_size), np.uint8)
        for l in np.unique(lists):
            rows = np.flatnonzero(lists == l)
            codes[rows] = self.rabitq.encode(x[rows], self._c[l])
        ids = np.arange(self.ntotal, self.ntotal + x.shape[0], dtype=np.int64)
        (self.codes, self.ids), self.offsets = append_to_lists(self.offsets, (self.codes, self.ids),
                                                               lists, (codes, ids))

    def list_codes(self, l):
        """Codes (size, code_size) uint8 of list l, in stored order (a copy)."""
        l = as_int(l, "list", low=0, high=self.nlist - 1)
        return self.codes[self.offsets[l]:self.offsets[l + 1]].copy()

    def list_ids(self, l):
        l = as_int(l, "list", low=0, high=self.nlist - 1)
        return self.ids[self.offsets[l]:self.offsets[l + 1]].copy()

    def search(self, q, k, nprobe=1, qb=None, centered=None):
        """k best of q (nq, d) over its nprobe lists -> (D float32 (nq, k), I int64 (nq, k))."""
        self._require_trained("search")
        q = as_float32_matrix(q, "q", d=self.d)
        k = as_k(k, q.shape[0])
        nprobe = as_int(nprobe, "nprobe", low=1)
        qb, centered = search_options(self.qb if qb is None else qb,
                                      self.centered if centered is None else centered)
        _, probes = search_centroids(q, self._c, min(nprobe, self.nlist), self.metric)
        bits, fac, ex, exfac = self.rabitq.split(self.codes)
        hd, hi = topk.new_heaps(q.shape[0], k)
        with threads_for(q.shape[0] * max(self.ntotal, 1) * self.d * nprobe // self.nlist):
            scan.search_ivf(q, self._c, np.ascontiguousarray(probes, dtype=np.int64), self.offsets,
                            self.ids, bits, fac, ex, exfac, self.metric == "ip", qb, centered,
                            self.rabitq.ex_bits, hd, hi)
            topk.sort_heaps(hd, hi)
        return topk.finalize(hd, scan.heap_ids(hd, hi, self.metric == "ip"), self.metric)

    def _params(self):
        return {"d": self.d, "nlist": self.nlist, "metric": self.metric, "nb_bits": self.nb_bits,
                "qb": self.qb, "centered": self.centered, "niter": self.niter, "seed": self.seed}

    def save(self, path):
        """Write parameters, centroids and lists to a versioned .npz file (atomic)."""
        c = self._c if self.is_trained else np.zeros((0, self.d), np.float32)
        save_npz(path, _KIND, _VERSION, self._params(),
                 {"centroids": c, "codes": self.codes, "ids": self.ids, "offsets": self.offsets})

    @classmethod
    def load(cls, path):
        """Read an index written by `save`; a corrupt or foreign file raises ValueError."""
        params, arr = load_npz(path, _KIND, _VERSION, {
            "centroids": (np.float32, 2), "codes": (np.uint8, 2), "ids": (np.int64, 1),
            "offsets": (np.int64, 1)})
        try:
            index = cls(**params)
            if arr["centroids"].size:
                index.set_centroids(arr["centroids"])
                index.set_lists(arr["codes"], arr["ids"], arr["offsets"])
            elif arr["codes"].size or arr["ids"].size:
                raise ValueError("codes stored in an untrained index")
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: invalid IVFRaBitQIndex contents ({exc})") from exc
        return index

    def __repr__(self):
        return (f"IVFRaBitQIndex(d={self.d}, nlist={self.nlist}, metric={self.metric!r}, "
                f"nb_bits={self.nb_bits}, qb={self.qb}, centered={self.centered}, ntotal={self.ntotal})")
