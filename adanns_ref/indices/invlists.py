"""Inverted lists in CSR form, shared by `indices.ivf`, `indices.ivfpq` and `indices.binary`.

The N stored entries (vectors or codes) are kept in list order: list l holds rows
offsets[l]:offsets[l + 1] of the payload and of ids (N,) int64, in insertion order inside a list
(faiss's scan order). Appending is a stable sort by list (`append_to_lists`), so old entries
stay before new ones.
"""
import numpy as np

from ..core.validate import as_int


def append_to_lists(offsets, stored, assign, new):
    """CSR append, shared with `indices.ivfpq`: row i of every array in the tuple `new` goes to list
    assign[i] (n,) int64, after the entries already `stored` (a tuple of arrays in list order, as
    described by offsets (nlist + 1,)). Returns (merged arrays, new offsets). A stable sort keeps
    old entries before new ones and insertion order inside each list."""
    nlist = offsets.shape[0] - 1
    all_lists = np.concatenate([np.repeat(np.arange(nlist), np.diff(offsets)), assign])
    order = np.argsort(all_lists, kind="stable")
    merged = tuple(np.ascontiguousarray(np.concatenate([a, b])[order]) for a, b in zip(stored, new))
    new_offsets = np.zeros(nlist + 1, dtype=np.int64)
    np.cumsum(np.bincount(all_lists, minlength=nlist), out=new_offsets[1:])
    return merged, new_offsets


def lists_are_consistent(offsets, ids, n, nlist):
    """True iff offsets (nlist + 1,) and ids (n,) describe n entries in nlist CSR lists: offsets
    run from 0 to n without decreasing and ids are a permutation of 0..n-1 (loaded files)."""
    return (offsets.shape == (nlist + 1,) and offsets[0] == 0 and offsets[-1] == n
            and not (np.diff(offsets) < 0).any() and ids.shape == (n,)
            and np.array_equal(np.sort(ids), np.arange(n)))


class InvertedLists:
    """State shared by `IVFIndex`, `IVFPQIndex` and `BinaryIVFIndex`: coarse centroids
    `_centroids` (nlist, ...) or None, and CSR lists: ids `_ids` (N,) int64, list l at rows
    `_offsets[l]:_offsets[l+1]` of `_ids` and of the stored payload `_<PAYLOAD>`: "data"
    (vectors) or "codes". Subclasses define `_set_lists(payload, ids, offsets)`; the lists are
    saved and loaded here, in one layout for every family (`lists_state`, `restore_lists`)."""

    PAYLOAD = "codes"

    @property
    def ntotal(self):
        return int(self._ids.shape[0])

    @property
    def is_trained(self):
        return self._centroids is not None

    @property
    def centroids(self):
        return None if self._centroids is None else self._centroids.copy()

    def list_sizes(self):
        """Number of vectors in each list, (nlist,) int64."""
        return np.diff(self._offsets)

    def _rows(self, l):
        l = as_int(l, "l", 0, self.nlist - 1)
        return slice(self._offsets[l], self._offsets[l + 1])

    def list_ids(self, l):
        """Ids stored in list l, in insertion order, (size,) int64 (a copy)."""
        return self._ids[self._rows(l)].copy()

    def lists_state(self):
        """The arrays a saved file holds for the lists: {PAYLOAD: (N, width) in list order,
        "ids": (N,) int64, "offsets": (nlist + 1,) int64} (views, not copies)."""
        return {self.PAYLOAD: getattr(self, "_" + self.PAYLOAD), "ids": self._ids,
                "offsets": self._offsets}

    @classmethod
    def lists_schema(cls, dtype):
        """`core.persist.load_npz` requirements of the arrays of `lists_state`."""
        return {cls.PAYLOAD: (dtype, 2), "ids": (np.int64, 1), "offsets": (np.int64, 1)}

    def restore_lists(self, path, arrays, width, dtype):
        """Install the lists of a saved file (`lists_state`'s arrays in `arrays`), refusing with
        a ValueError that names `path` lists that are inconsistent or held by an untrained index."""
        n = arrays[self.PAYLOAD].shape[0]
        if n and not self.is_trained:
            raise ValueError(f"{path}: holds {n} stored rows but no centroids")
        try:
            lists = check_lists(arrays[self.PAYLOAD], arrays["ids"], arrays["offsets"], self.nlist,
                                width, dtype)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}") from exc
        self._set_lists(*lists)


def check_saved_nlist(path, params, offsets):
    """A saved file's nlist against its offsets (nlist + 1,), checked before the constructor
    allocates nlist + 1 offsets on the word of the header."""
    if params.get("nlist") != offsets.shape[0] - 1:
        raise ValueError(f"{path}: nlist={params.get('nlist')!r} but offsets has {offsets.shape[0]} "
                         f"entries (nlist + 1 expected)")


def list_means(z, lists, nlist):
    """Mean of the rows of z (n, d) per list (float32 sums in input order, times 1 / count);
    lists without rows get the mean of all rows."""
    sums = np.zeros((nlist, z.shape[1]), dtype=np.float32)
    np.add.at(sums, lists, z)
    counts = np.bincount(lists, minlength=nlist)
    means = sums * (np.float32(1) / np.maximum(counts, 1).astype(np.float32))[:, None]
    means[counts == 0] = z.sum(axis=0, dtype=np.float32) * np.float32(1 / z.shape[0])
    return means


def check_lists(payload, ids, offsets, nlist, width, dtype):
    """Validated CSR lists (e.g. read back from faiss): payload (N, width) of `dtype` (vectors or
    codes) in list order, ids (N,) a permutation of 0..N-1, offsets (nlist + 1,) with list l at
    rows offsets[l]:offsets[l+1]. Returns (payload C-contiguous, ids int64, offsets int64);
    TypeError / ValueError saying what is inconsistent."""
    payload, ids, offsets = np.asarray(payload), np.asarray(ids), np.asarray(offsets)
    what = "codes" if np.dtype(dtype) == np.uint8 else "vectors"
    if payload.dtype != dtype or ids.dtype.kind not in "iu" or offsets.dtype.kind not in "iu":
        raise TypeError(f"{what} must be {np.dtype(dtype).name} and ids / offsets integers, got "
                        f"{payload.dtype}, {ids.dtype}, {offsets.dtype}")
    n = payload.shape[0] if payload.ndim == 2 else -1
    if payload.ndim != 2 or payload.shape[1] != width or not lists_are_consistent(offsets, ids, n, nlist):
        raise ValueError(f"inconsistent inverted lists: {what} {payload.shape}, ids {ids.shape} and "
                         f"offsets {offsets.shape} do not describe N rows of width {width} "
                         f"with ids 0..N-1 in {nlist} lists")
    return np.ascontiguousarray(payload), ids.astype(np.int64), offsets.astype(np.int64)
