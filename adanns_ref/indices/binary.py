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

from ..core.persist import load_npz, npz_version, save_npz
from ..core.topk import heap_push, new_heaps, sort_heaps
from ..core.validate import as_int, as_k, as_nlist, refuse_train_after_add
from ..quantizers.binary import (as_codes, check_bits, hamming, hamming_finalize, hamming_knn, pack_lsb,
                                 to_words, unpack_lsb)
from ..quantizers.kmeans import KMeans
from .invlists import InvertedLists, append_to_lists, check_lists, check_saved_nlist

_KIND = "BinaryIVFIndex"
_VERSION = 2  # 1: codes in id order, lists rebuilt by re-assignment on load


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
            index.codes = as_codes(arrays["codes"], "codes", index.code_size)  # no second copy
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: invalid BinaryFlatIndex ({exc})") from exc
        return index

    def __repr__(self):
        return f"BinaryFlatIndex(d_bits={self.d_bits}, ntotal={self.ntotal})"


class BinaryIVFIndex(InvertedLists):
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
        is_trained   bool
    Lists (`indices.invlists.InvertedLists`): `list_sizes()` (nlist,) int64, `list_ids(l)`
    (size,) int64 and `list_codes(l)` (size, code_size) uint8 in scan
    order; `set_lists(codes, ids, offsets)` installs CSR lists (e.g. read from faiss).
    """

    def __init__(self, d_bits, nlist, niter=10, seed=1234, max_points_per_centroid=256):
        self.d_bits = check_bits(d_bits)
        self.code_size = self.d_bits // 8
        self.nlist = as_nlist(nlist)
        self.niter = as_int(niter, "niter", 1)
        self.seed = as_int(seed, "seed", 0, 2**31 - 1)
        self.max_points_per_centroid = as_int(max_points_per_centroid, "max_points_per_centroid", 1)
        self._centroids = None
        self.reset()

    def list_codes(self, l):
        """Codes (size, code_size) uint8 of list l in scan order (a copy)."""
        return self._codes[self._rows(l)].copy()

    def train(self, codes):
        """k-means on the codes' +-1 floats, centroids binarized (faiss's recipe). Returns self.
        An index holding codes refuses (they sit in the old centroids' lists): reset() first."""
        refuse_train_after_add("BinaryIVFIndex", self.ntotal)
        codes = as_codes(codes, "codes", self.code_size)
        if codes.shape[0] < self.nlist:
            raise ValueError(f"train needs at least nlist={self.nlist} codes, got {codes.shape[0]}")
        km = KMeans(self.nlist, niter=self.niter, seed=self.seed,
                    max_points_per_centroid=self.max_points_per_centroid)
        self._centroids = pack_lsb(km.fit(unpack_lsb(codes, self.d_bits)).centroids)
        return self

    def set_centroids(self, centroids):
        """Install binary centroids (nlist, code_size) uint8, e.g. faiss's quantizer codes. An
        index holding codes refuses (they sit in the old centroids' lists): reset() first."""
        refuse_train_after_add("BinaryIVFIndex", self.ntotal)
        centroids = as_codes(centroids, "centroids", self.code_size)
        if centroids.shape[0] != self.nlist:
            raise ValueError(f"centroids has {centroids.shape[0]} rows, nlist is {self.nlist}")
        self._centroids = centroids.copy()

    def _require_trained(self, verb):
        if not self.is_trained:
            raise ValueError(f"BinaryIVFIndex.{verb} called before train(); call train(codes) first")

    def add(self, codes):
        """Append code rows to their Hamming-nearest lists; ids ntotal .. ntotal + n - 1."""
        self._require_trained("add")
        codes = as_codes(codes, "codes", self.code_size)
        assign = hamming_knn(codes, self._centroids, 1)[1][:, 0]
        ids = np.arange(self.ntotal, self.ntotal + codes.shape[0], dtype=np.int64)
        (all_codes, all_ids), offsets = append_to_lists(self._offsets, (self._codes, self._ids), assign,
                                                        (codes, ids))
        self._set_lists(all_codes, all_ids, offsets)

    def set_lists(self, codes, ids, offsets):
        """Install CSR lists (e.g. read from faiss, whose scan order they keep): codes (N,
        code_size) uint8 in list order, ids (N,) a permutation of 0..N-1, offsets (nlist + 1,)
        int64 with list l at rows offsets[l]:offsets[l+1]; TypeError / ValueError otherwise."""
        self._set_lists(*check_lists(codes, ids, offsets, self.nlist, self.code_size, np.uint8))

    def _set_lists(self, codes, ids, offsets):
        self._codes, self._ids, self._offsets = codes, ids, offsets
        self._words = to_words(codes)

    def search(self, qcodes, k, nprobe=1):
        """k Hamming-nearest stored codes among the nprobe nearest lists -> (D int32, I int64)."""
        self._require_trained("search")
        q = as_codes(qcodes, "qcodes", self.code_size)
        k = as_k(k, q.shape[0])
        nprobe = min(as_int(nprobe, "nprobe", 1), self.nlist)  # faiss clamps too
        probes = hamming_knn(q, self._centroids, nprobe)[1]
        hd, hi = new_heaps(q.shape[0], k)
        _scan_lists(to_words(q), self._words, self._ids, self._offsets, probes, hd, hi)
        sort_heaps(hd, hi)
        return hamming_finalize(hd, hi)

    def reset(self):
        """Remove all codes (the centroids stay)."""
        self._set_lists(np.empty((0, self.code_size), dtype=np.uint8), np.empty(0, dtype=np.int64),
                      np.zeros(self.nlist + 1, dtype=np.int64))

    def _params(self):
        return {"d_bits": self.d_bits, "nlist": self.nlist, "niter": self.niter, "seed": self.seed,
                "max_points_per_centroid": self.max_points_per_centroid}

    def save(self, path):
        """Write parameters, centroids and the lists (codes in scan order, ids, offsets) to a
        versioned .npz file (atomic)."""
        cent = self._centroids if self.is_trained else np.empty((0, self.code_size), np.uint8)
        save_npz(path, _KIND, _VERSION, self._params(), {"centroids": cent, **self.lists_state()})

    @classmethod
    def load(cls, path):
        """Read an index written by `save`: the lists as saved (version 2), or, from a version-1
        file (codes in id order), rebuilt by re-assignment; ValueError if corrupt."""
        if npz_version(path, _KIND) == 1:
            return cls._load_v1(path)
        params, a = load_npz(path, _KIND, _VERSION, {"centroids": (np.uint8, 2),
                                                     **cls.lists_schema(np.uint8)})
        check_saved_nlist(path, params, a["offsets"])
        index = cls._from_params(path, params, a["centroids"])
        index.restore_lists(path, a, index.code_size, np.uint8)
        return index

    @classmethod
    def _from_params(cls, path, params, centroids):
        try:
            index = cls(**params)
            if centroids.shape[0]:
                index.set_centroids(centroids)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: invalid BinaryIVFIndex ({exc})") from exc
        return index

    @classmethod
    def _load_v1(cls, path):
        params, arrays = load_npz(path, _KIND, 1, {"centroids": (np.uint8, 2), "codes": (np.uint8, 2)})
        index = cls._from_params(path, params, arrays["centroids"])
        try:
            if arrays["codes"].shape[0]:
                index.add(arrays["codes"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: invalid BinaryIVFIndex ({exc})") from exc
        return index

    def __repr__(self):
        return f"BinaryIVFIndex(d_bits={self.d_bits}, nlist={self.nlist}, ntotal={self.ntotal})"
