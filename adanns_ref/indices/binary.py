"""Binary indices over the codes of `quantizers.binary`: faiss `IndexBinaryFlat` and
`IndexBinaryIVF`.

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

Shapes: codes (n, d_bits / 8) uint8; search -> (D int32 (nq, k), I int64 (nq, k)).
"""
import numba
import numpy as np

from ..core.persist import load_npz, save_npz
from ..core.topk import heap_push, new_heaps, sort_heaps
from ..core.validate import as_int, as_k
from ..quantizers.binary import (as_codes, check_bits, hamming, hamming_finalize, hamming_knn, pack_lsb,
                                 to_words, unpack_lsb)
from ..quantizers.kmeans import KMeans


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



class BinaryFlatIndex:
    """faiss `IndexBinaryFlat(d_bits)`: exhaustive Hamming search over uint8 codes.

    Parameters
        d_bits       int, a multiple of 8: bits per code

    Attributes
        d_bits       int
        code_size    int, = d_bits / 8 bytes
        ntotal       int: stored codes
        codes        (ntotal, code_size) uint8: the stored codes, id = row
    """

    def __init__(self, d_bits):
        self.d_bits = check_bits(d_bits)
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
            index.add(arrays["codes"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: invalid BinaryFlatIndex ({exc})") from exc
        return index

    def __repr__(self):
        return f"BinaryFlatIndex(d_bits={self.d_bits}, ntotal={self.ntotal})"


class BinaryIVFIndex:
    """faiss `IndexBinaryIVF(IndexBinaryFlat(d_bits), d_bits, nlist)` (see the module docstring).

    Parameters
        d_bits                   int, a multiple of 8: bits per code
        nlist                    int >= 1: inverted lists
        niter                    int: k-means iterations (faiss sets 10)
        seed                     int: k-means seed (faiss's 1234)
        max_points_per_centroid  int: k-means subsampling (faiss's 256)

    Attributes
        centroids    (nlist, code_size) uint8, or None before training
        code_size    int, = d_bits / 8 bytes
        ntotal       int: stored codes
        list_sizes   (nlist,) int64: codes per list
        is_trained   bool
    Lists: `list_ids(l)` (size,) int64 and `list_codes(l)` (size, code_size) uint8 in scan
    order; `set_lists(codes, ids, offsets)` installs CSR lists (e.g. read from faiss).
    """

    def __init__(self, d_bits, nlist, niter=10, seed=1234, max_points_per_centroid=256):
        self.d_bits = check_bits(d_bits)
        self.code_size = self.d_bits // 8
        self.nlist = as_int(nlist, "nlist", 1)
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
        """Ids (int64) of list l in scan order (a copy)."""
        l = as_int(l, "l", 0, self.nlist - 1)
        return self._ids[self._offsets[l]:self._offsets[l + 1]].copy()

    def list_codes(self, l):
        """Codes (size, code_size) uint8 of list l in scan order (a copy)."""
        l = as_int(l, "l", 0, self.nlist - 1)
        return self._codes[self._offsets[l]:self._offsets[l + 1]].copy()

    def train(self, codes):
        """k-means on the codes' +-1 floats, centroids binarized (faiss's recipe). Returns self."""
        codes = as_codes(codes, "codes", self.code_size)
        if codes.shape[0] < self.nlist:
            raise ValueError(f"train needs at least nlist={self.nlist} codes, got {codes.shape[0]}")
        km = KMeans(self.nlist, niter=self.niter, seed=self.seed,
                    max_points_per_centroid=self.max_points_per_centroid)
        self.centroids = pack_lsb(km.fit(unpack_lsb(codes, self.d_bits)).centroids)
        return self

    def set_centroids(self, centroids):
        """Install binary centroids (nlist, code_size) uint8, e.g. faiss's quantizer codes."""
        self.centroids = as_codes(centroids, "centroids", self.code_size)
        if self.centroids.shape[0] != self.nlist:
            raise ValueError(f"centroids has {self.centroids.shape[0]} rows, nlist is {self.nlist}")
        self.reset()

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
        self.set_lists(all_codes[order], all_ids[order],
                        np.concatenate([[0], np.cumsum(np.bincount(lists, minlength=self.nlist))]))

    def set_lists(self, codes, ids, offsets):
        """Install CSR lists: list l holds rows offsets[l]:offsets[l + 1] of codes (n, code_size)
        uint8 / ids (n,) int64, scanned in that order (the faiss bridge keeps faiss's order).
        offsets: (nlist + 1,) int64, non-decreasing from 0 to n; ValueError otherwise."""
        codes = as_codes(codes, "codes", self.code_size)
        offsets = np.asarray(offsets, dtype=np.int64)
        if (offsets.shape != (self.nlist + 1,) or offsets[0] != 0 or offsets[-1] != codes.shape[0]
                or np.any(np.diff(offsets) < 0) or np.shape(ids) != (codes.shape[0],)):
            raise ValueError(f"set_lists needs offsets (nlist + 1,) = ({self.nlist + 1},) rising from 0 to "
                             f"n = {codes.shape[0]} and ids (n,), got offsets {offsets.shape}, "
                             f"ids {np.shape(ids)}")
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
        return hamming_finalize(hd, hi)

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
