"""Vector files of the ANN field: read, write and validate them, optionally memory-mapped.

Formats (all little-endian, n vectors of dimension d):

- TEXMEX ``.fvecs`` / ``.ivecs`` / ``.bvecs`` (Jegou et al., SIFT1M/GIST1M): every row is an
  int32 d followed by d float32 / int32 / uint8 values, so a record is 4 + d * itemsize bytes.
- big-ann ``.fbin`` / ``.ibin`` / ``.u8bin`` (big-ann-benchmarks): one header, uint32 n and
  uint32 d, then n * d float32 / int32 / uint8 values, row-major.
- ``.npy``: a 2-D real numeric array, read with ``allow_pickle=False``.
- ann-benchmarks ``.hdf5``: datasets ``train`` (N, D), ``test`` (Q, D), ``neighbors`` (Q, k) ids,
  ``distances`` (Q, k), and the attribute ``distance`` ("euclidean" = true L2, "angular", ...).
  Needs h5py (the ``hdf5`` extra); ``load_vectors`` returns its ``train`` set. Read and written
  by `io.hdf5` (``adanns_ref.io.read_hdf5`` / ``write_hdf5``).

Validation: every reader checks the whole structure before returning and raises ``ValueError``
naming the file and the byte offset where it stops making sense (dim <= 0, a row whose dim
differs from row 0, a truncated last record, a header n * d that disagrees with the payload,
trailing bytes). It never returns part of a file and never allocates on the word of a header
before checking it against the file size. A path that is not a regular file (``/dev/zero``, a
pipe, a directory) is a ``ValueError``; a missing file is ``FileNotFoundError``. Every error
names the path. Edge cases, chosen deliberately:

- a 0-byte TEXMEX file is a valid file of 0 vectors and reads as shape (0, 0) (the format
  stores d only inside rows, so it is unknown); writing an (0, d) array gives a 0-byte file;
- a big-ann file must have its 8-byte header, so a 0-byte ``.fbin`` is an error; n = 0 with
  d > 0 reads as (0, d); d = 0 is an error.

Non-finite values: the writers refuse NaN and Inf, and so do the readers: a float file (``.fvecs``,
``.fbin``, a float ``.npy``, the float datasets of ``.hdf5``) holding NaN or Inf raises
``ValueError`` naming the file and the first bad row. Pass ``check_finite=False`` to read such a
file anyway (e.g. to find and clean the rows). The check reads the values once, in blocks
(bounded extra memory, also under mmap).

``mmap=True`` maps the file read-only instead of loading it (``np.memmap``). For TEXMEX the
result is a strided view that skips the per-row dims (not C-contiguous); checking that every row
has the same d reads those 4-byte fields, which pages through the file once in O(1) extra memory.
Without mmap, readers return C-contiguous arrays in native byte order: float32, int32 or uint8
for the binary formats, the stored dtype for ``.npy`` (a big-endian or Fortran-ordered ``.npy``
is converted once, on reading). Such an ``.npy`` cannot be mapped as native C order, so
``mmap=True`` refuses it with ``ValueError`` (read it with mmap=False, or rewrite it with
``write_npy``) rather than silently copying it.

Writers validate their input (2-D, at least one column, values representable in the format:
finite floats, int32 range, 0..255 for bytes) and write atomically (temp file + rename).
"""
import math
import os

import numpy as np

from ..core.persist import atomic_write, read_npy_header, regular_file_size
from ..core.validate import as_float32_matrix

_TEXMEX = {".fvecs": np.float32, ".ivecs": np.int32, ".bvecs": np.uint8}
_BIN = {".fbin": np.float32, ".ibin": np.int32, ".u8bin": np.uint8}
KNOWN_EXTENSIONS = (*_TEXMEX, *_BIN, ".npy", ".hdf5", ".h5")
_DIM_CHECK_ROWS = 1 << 16  # rows per block when checking TEXMEX dims: bounded extra memory
_FINITE_BLOCK_BYTES = 1 << 24  # bytes per block when checking values are finite
INT32 = (-(2 ** 31), 2 ** 31 - 1)
_UINT8 = (0, 255)
_UINT32_MAX = 2 ** 32 - 1


def _empty(shape, dtype, mmap):
    out = np.empty(shape, dtype=dtype)
    out.flags.writeable = not mmap  # a mapped result is read-only; keep the empty one consistent
    return out


def require_finite(x, path, check):
    """Refuse NaN / Inf in a float (n, d) array, reading it in blocks of rows (x may be a map)."""
    if not check or x.dtype.kind != "f" or x.size == 0:
        return x
    rows = max(1, _FINITE_BLOCK_BYTES // (x.shape[1] * x.dtype.itemsize))
    for start in range(0, x.shape[0], rows):
        ok = np.isfinite(x[start:start + rows]).all(axis=1)
        if not ok.all():
            bad = start + int(np.flatnonzero(~ok)[0])
            raise ValueError(f"{path}: row {bad} holds NaN or Inf (the writers refuse them); pass "
                             f"check_finite=False to read the file anyway")
    return x


def as_int_matrix(x, name, bounds, dtype):
    """Integer (n, d >= 1) array with values in `bounds`, converted to `dtype`."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array, got dtype {arr.dtype}; convert explicitly "
                        f"(e.g. x.astype(np.{np.dtype(dtype).name})) after checking the values")
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise ValueError(f"{name} must be 2-D (n, d) with d >= 1, got shape {arr.shape}")
    if arr.size:
        low, high = int(arr.min()), int(arr.max())
        if low < bounds[0] or high > bounds[1]:
            bad = low if low < bounds[0] else high
            raise ValueError(f"{name} holds {bad}, outside the {np.dtype(dtype).name} range "
                             f"{bounds[0]}..{bounds[1]} of this format")
    return arr.astype(dtype, copy=False)


# ---------------------------------------------------------------- TEXMEX: per-row dim
def _texmex_record(d, dtype):
    """One TEXMEX row as a packed numpy record: int32 dim then d values."""
    return np.dtype([("d", "<i4"), ("v", np.dtype(dtype).newbyteorder("<"), (d,))])


def _read_texmex(path, dtype, mmap, check_finite=True):
    path = os.fspath(path)
    size = regular_file_size(path)
    if size == 0:
        return _empty((0, 0), dtype, mmap)
    if size < 4:
        raise ValueError(f"{path}: {size} bytes, too short for the int32 dim at byte offset 0")
    with open(path, "rb") as f:
        d = int.from_bytes(f.read(4), "little", signed=True)
    if d <= 0:
        raise ValueError(f"{path}: dim {d} at byte offset 0 must be > 0; is this really a "
                         f"{os.path.splitext(path)[1] or 'TEXMEX'} file?")
    record = 4 + d * np.dtype(dtype).itemsize
    n = size // record
    if n:
        rows = np.memmap(path, dtype=_texmex_record(d, dtype), mode="r", shape=(n,))
        for start in range(0, n, _DIM_CHECK_ROWS):
            bad = np.flatnonzero(rows["d"][start:start + _DIM_CHECK_ROWS] != d)
            if bad.size:
                i = start + int(bad[0])
                raise ValueError(f"{path}: row {i} at byte offset {i * record} has dim "
                                 f"{int(rows['d'][i])}, row 0 has dim {d}; all rows must share one dim")
    if size % record:
        raise ValueError(f"{path}: {size - n * record} bytes at byte offset {n * record} are not a "
                         f"whole record of {record} bytes (dim {d}); the file is truncated or corrupt")
    if n == 0:
        return _empty((0, d), dtype, mmap)
    return require_finite(rows["v"] if mmap else np.array(rows["v"], dtype=dtype), path, check_finite)


def _write_texmex(path, x, dtype):
    n, d = x.shape
    if d > INT32[1]:
        raise ValueError(f"dim {d} does not fit the int32 dim field of TEXMEX files")
    rows = np.empty(n, dtype=_texmex_record(d, dtype))
    rows["d"] = d
    rows["v"] = x
    atomic_write(path, rows.tofile)


# ---------------------------------------------------------------- big-ann: one n, d header
def _read_bin(path, dtype, mmap, check_finite=True):
    path = os.fspath(path)
    size = regular_file_size(path)
    if size < 8:
        raise ValueError(f"{path}: {size} bytes, too short for the 8-byte header (uint32 n, uint32 d) "
                         "at byte offset 0")
    n, d = (int(v) for v in np.fromfile(path, dtype="<u4", count=2))
    if d == 0:
        raise ValueError(f"{path}: header dim d = 0 at byte offset 4 must be > 0")
    expected = 8 + n * d * np.dtype(dtype).itemsize
    if size < expected:
        raise ValueError(f"{path}: header n={n}, d={d} needs {expected} bytes but the file ends at "
                         f"byte offset {size}; the file is truncated or the header is wrong")
    if size > expected:
        raise ValueError(f"{path}: {size - expected} trailing bytes at byte offset {expected}, after "
                         f"the n*d = {n * d} values announced by the header (n={n}, d={d})")
    if n == 0:
        return _empty((0, d), dtype, mmap)
    file_dtype = np.dtype(dtype).newbyteorder("<")
    if mmap:
        return require_finite(np.memmap(path, dtype=file_dtype, mode="r", offset=8, shape=(n, d)),
                              path, check_finite)
    values = np.fromfile(path, dtype=file_dtype, count=n * d, offset=8).reshape(n, d)
    return require_finite(values.astype(dtype, copy=False), path, check_finite)


def _write_bin(path, x, dtype):
    n, d = x.shape
    if n > _UINT32_MAX or d > _UINT32_MAX:
        raise ValueError(f"shape {x.shape} does not fit the uint32 n, d header of big-ann files")

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(np.array([n, d], dtype="<u4").tobytes())
            f.write(np.ascontiguousarray(x, dtype=np.dtype(dtype).newbyteorder("<")).tobytes())
    atomic_write(path, write)


def read_fvecs(path, mmap=False, check_finite=True):
    """TEXMEX .fvecs -> float32 (n, d); NaN / Inf raise unless check_finite=False."""
    return _read_texmex(path, np.float32, mmap, check_finite)


def read_ivecs(path, mmap=False):
    """TEXMEX .ivecs -> int32 (n, d) (e.g. ground-truth neighbour ids)."""
    return _read_texmex(path, np.int32, mmap)


def read_bvecs(path, mmap=False):
    """TEXMEX .bvecs -> uint8 (n, d) (e.g. SIFT1B)."""
    return _read_texmex(path, np.uint8, mmap)


def write_fvecs(path, x):
    """Write real (n, d) values as float32 .fvecs (finite values only)."""
    _write_texmex(path, as_float32_matrix(x, "x"), np.float32)


def write_ivecs(path, x):
    """Write integer (n, d) values in the int32 range as .ivecs."""
    _write_texmex(path, as_int_matrix(x, "x", INT32, np.int32), np.int32)


def write_bvecs(path, x):
    """Write integer (n, d) values in 0..255 as .bvecs."""
    _write_texmex(path, as_int_matrix(x, "x", _UINT8, np.uint8), np.uint8)


def read_fbin(path, mmap=False, check_finite=True):
    """big-ann .fbin -> float32 (n, d); NaN / Inf raise unless check_finite=False."""
    return _read_bin(path, np.float32, mmap, check_finite)


def read_ibin(path, mmap=False):
    """big-ann .ibin -> int32 (n, d)."""
    return _read_bin(path, np.int32, mmap)


def read_u8bin(path, mmap=False):
    """big-ann .u8bin -> uint8 (n, d)."""
    return _read_bin(path, np.uint8, mmap)


def write_fbin(path, x):
    """Write real (n, d) values as float32 .fbin (finite values only)."""
    _write_bin(path, as_float32_matrix(x, "x"), np.float32)


def write_ibin(path, x):
    """Write integer (n, d) values in the int32 range as .ibin."""
    _write_bin(path, as_int_matrix(x, "x", INT32, np.int32), np.int32)


def write_u8bin(path, x):
    """Write integer (n, d) values in 0..255 as .u8bin."""
    _write_bin(path, as_int_matrix(x, "x", _UINT8, np.uint8), np.uint8)


# ---------------------------------------------------------------- .npy
def read_npy(path, mmap=False, check_finite=True):
    """A 2-D real numeric .npy array (never unpickles) in native byte order and C order;
    mmap=True maps it read-only (refused for a big-endian or Fortran-ordered file)."""
    path = os.fspath(path)
    size = regular_file_size(path)
    with open(path, "rb") as f:
        shape, fortran, dtype = read_npy_header(f, path)
        offset = f.tell()
    if dtype.kind not in "biuf":
        raise ValueError(f"{path}: dtype {dtype} is not a real numeric vector type")
    if len(shape) != 2:
        raise ValueError(f"{path}: array of shape {shape}, expected 2-D (n, d)")
    # checking the size first means a lying header can neither trigger a huge allocation nor
    # be silently accepted
    expected = offset + math.prod(shape) * dtype.itemsize
    if size != expected:
        raise ValueError(f"{path}: header shape {shape} {dtype} needs {expected} bytes but the file "
                         f"has {size}: {'truncated' if size < expected else 'trailing bytes'} at "
                         f"byte offset {min(size, expected)}")
    order = "F" if fortran else "C"
    if mmap:
        if not math.prod(shape):
            return _empty(shape, dtype.newbyteorder("="), mmap)
        out = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order=order)
        if not (out.dtype.isnative and out.flags.c_contiguous):
            raise ValueError(f"{path}: stored {'big-endian' if not out.dtype.isnative else 'Fortran-ordered'}"
                             f", so it cannot be mapped as a native C-order array; read it with "
                             f"mmap=False (one converted copy) or rewrite it with write_npy")
        return require_finite(out, path, check_finite)
    values = np.fromfile(path, dtype=dtype, count=math.prod(shape), offset=offset)
    out = np.ascontiguousarray(values.reshape(shape, order=order), dtype=dtype.newbyteorder("="))
    return require_finite(out, path, check_finite)


def write_npy(path, x):
    """Write a 2-D real numeric array as .npy, keeping its dtype."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"x must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"x must be 2-D (n, d), got shape {arr.shape}")

    def write(tmp):
        with open(tmp, "wb") as f:  # a file object stops np.save from appending ".npy"
            np.save(f, arr, allow_pickle=False)
    atomic_write(path, write)
