"""Vector files: TEXMEX .fvecs/.ivecs/.bvecs, big-ann .fbin/.ibin/.u8bin, .npy (`io.vecs`) and
ann-benchmarks .hdf5 (`io.hdf5`); `load_vectors` picks the reader by extension.

The formats, the checks (sizes, dims, finite values) and the atomic writes are described in
`io.vecs`'s module docstring; HDF5 needs h5py (the ``hdf5`` extra), imported only when such a
file is read or written.
"""
import os

from .hdf5 import AnnBenchmarksData, read_hdf5, write_hdf5
from .vecs import (KNOWN_EXTENSIONS, read_bvecs, read_fbin, read_fvecs, read_ibin, read_ivecs,
                   read_npy, read_u8bin, write_bvecs, write_fbin, write_fvecs, write_ibin, write_ivecs,
                   write_npy, write_u8bin)

__all__ = ["AnnBenchmarksData", "KNOWN_EXTENSIONS", "load_vectors", "read_bvecs", "read_fbin",
           "read_fvecs", "read_hdf5", "read_ibin", "read_ivecs", "read_npy", "read_u8bin",
           "write_bvecs", "write_fbin", "write_fvecs", "write_hdf5", "write_ibin", "write_ivecs",
           "write_npy", "write_u8bin"]

_READERS = {".fvecs": read_fvecs, ".ivecs": read_ivecs, ".bvecs": read_bvecs,
            ".fbin": read_fbin, ".ibin": read_ibin, ".u8bin": read_u8bin, ".npy": read_npy}
_FLOAT_READERS = (".fvecs", ".fbin", ".npy")


def load_vectors(path, mmap=False, check_finite=True):
    """Read vectors, choosing the reader by extension (case-insensitive).

    .fvecs .ivecs .bvecs .fbin .ibin .u8bin .npy -> the (n, d) array; .hdf5 / .h5 -> the
    ann-benchmarks ``train`` set (use read_hdf5 for test/neighbors/distances). mmap=True is
    refused for HDF5 (h5py datasets are not numpy memory maps). check_finite: see the module
    docstring (ignored by the integer formats).
    """
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext in (".hdf5", ".h5"):
        if mmap:
            raise ValueError(f"{path}: mmap=True is not supported for HDF5; use mmap=False or read_hdf5")
        return read_hdf5(path, check_finite=check_finite).train
    if ext not in _READERS:
        raise ValueError(f"{path}: unknown vector file extension {ext!r}; known: {', '.join(KNOWN_EXTENSIONS)}")
    if ext in _FLOAT_READERS:
        return _READERS[ext](path, mmap=mmap, check_finite=check_finite)
    return _READERS[ext](path, mmap=mmap)
