"""ann-benchmarks ``.hdf5`` files (Aumüller et al.): read and write them, checked like every
format of `io.vecs`.

A file holds the datasets ``train`` (N, D), ``test`` (Q, D), ``neighbors`` (Q, k) ids and
``distances`` (Q, k), and the text attribute ``distance`` ("euclidean" = true L2, "angular",
...). Needs h5py (the ``hdf5`` extra), imported only when a file is read or written. A dataset is
read only after its claimed size fits the file; NaN / Inf are refused as in `io.vecs` (see its
docstring); `io.load_vectors` dispatches ``.hdf5`` / ``.h5`` here and returns the ``train`` set.
"""
import dataclasses
import math
import os

import numpy as np

from ..core.persist import atomic_write, regular_file_size
from ..core.validate import as_float32_matrix
from .vecs import INT32, as_int_matrix, require_finite


@dataclasses.dataclass(frozen=True)
class AnnBenchmarksData:
    """An ann-benchmarks dataset. train (N, D), test (Q, D) floats; neighbors (Q, k) ids and
    distances (Q, k) as stored (the ground truth under `distance`, e.g. "euclidean")."""
    train: np.ndarray
    test: np.ndarray
    neighbors: np.ndarray
    distances: np.ndarray
    distance: str


_HDF5_DATASETS = ("train", "test", "neighbors", "distances")
_HDF5_METRICS = ("euclidean", "angular", "hamming", "jaccard")


def _h5py():
    try:
        import h5py
    except ImportError as exc:
        raise ImportError("reading/writing ann-benchmarks .hdf5 files needs h5py: "
                          "`pip install h5py` or `pip install adanns-ref[hdf5]`") from exc
    return h5py


def _h5_dataset(f, name, h5py, path, file_size):
    """The ann-benchmarks dataset `name`, read only after its claimed size fits the file."""
    dset = f.get(name)
    if not isinstance(dset, h5py.Dataset):
        raise ValueError(f"{path}: no dataset {name!r}; an ann-benchmarks file has "
                         f"{', '.join(_HDF5_DATASETS)}")
    if dset.ndim != 2 or dset.dtype.kind not in "iuf":
        raise ValueError(f"{path}: {name!r} has shape {dset.shape} and dtype {dset.dtype}, expected "
                         f"a 2-D numeric array")
    nbytes = math.prod(dset.shape) * dset.dtype.itemsize
    # uncompressed data must be stored in full; compressed data can expand by deflate's ratio at most
    limit = file_size * (1032 if dset.compression is not None else 1)
    if nbytes > limit or (dset.compression is None and nbytes > dset.id.get_storage_size()):
        raise ValueError(f"{path}: dataset {name!r} claims shape {dset.shape} ({nbytes} bytes) but "
                         f"the file stores {dset.id.get_storage_size()} bytes for it")
    return np.asarray(dset[()])


def read_hdf5(path, check_finite=True):
    """An ann-benchmarks .hdf5 file -> AnnBenchmarksData (whole arrays in memory); NaN / Inf
    in train, test or distances raise unless check_finite=False."""
    h5py = _h5py()
    path = os.fspath(path)
    size = regular_file_size(path)
    try:
        with h5py.File(path, "r") as f:
            arrays = {name: _h5_dataset(f, name, h5py, path, size) for name in _HDF5_DATASETS}
            distance = f.attrs.get("distance")
    except (OSError, KeyError, RuntimeError, TypeError) as exc:
        raise ValueError(f"{path}: not a readable HDF5 file ({exc})") from exc
    if isinstance(distance, bytes):
        distance = distance.decode("utf-8", "replace")
    if not isinstance(distance, str):
        raise ValueError(f"{path}: missing or non-text attribute 'distance' (got {distance!r})")
    _check_ann_arrays(arrays, path)
    for name in ("train", "test", "distances"):
        require_finite(arrays[name], f"{path}: {name}", check_finite)
    return AnnBenchmarksData(distance=distance, **arrays)


def _check_ann_arrays(arrays, where):
    for name, kinds in (("train", "f"), ("test", "f"), ("neighbors", "iu"), ("distances", "f")):
        a = arrays[name]
        if a.ndim != 2 or a.dtype.kind not in kinds:
            raise ValueError(f"{where}: {name!r} has shape {a.shape} and dtype {a.dtype}, "
                             f"expected a 2-D {'integer' if kinds == 'iu' else 'float'} array")
    train, test, neighbors, distances = (arrays[k] for k in _HDF5_DATASETS)
    if train.shape[1] != test.shape[1]:
        raise ValueError(f"{where}: train has dim {train.shape[1]} but test has dim {test.shape[1]}")
    if neighbors.shape != distances.shape or neighbors.shape[0] != test.shape[0]:
        raise ValueError(f"{where}: neighbors {neighbors.shape} and distances {distances.shape} "
                         f"must both be (Q, k) with Q = {test.shape[0]} test rows")


def write_hdf5(path, train, test, neighbors, distances, distance="euclidean"):
    """Write an ann-benchmarks .hdf5 file (float32 train/test/distances, int32 neighbors)."""
    h5py = _h5py()
    if distance not in _HDF5_METRICS:
        raise ValueError(f"distance must be one of {_HDF5_METRICS}, got {distance!r}")
    arrays = {
        "train": as_float32_matrix(train, "train"),
        "test": as_float32_matrix(test, "test"),
        "neighbors": as_int_matrix(neighbors, "neighbors", INT32, np.int32),
        "distances": as_float32_matrix(distances, "distances"),
    }
    _check_ann_arrays(arrays, "write_hdf5")

    def write(tmp):
        with h5py.File(tmp, "w") as f:
            for name, a in arrays.items():
                f.create_dataset(name, data=a)
            f.attrs["distance"] = distance
    atomic_write(path, write)
