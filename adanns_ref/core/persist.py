"""Versioned `.npz` files for saved indices and models, and atomic file writes.

Schema of every file we write: the arrays of the object plus three 0-d fields,
``__kind__`` (e.g. "IVFIndex"), ``__version__`` (int) and ``__params__`` (JSON text of the
constructor parameters). Loading never unpickles and checks kind, version and that every
required array is present with the expected dtype and ndim, so a truncated, tampered or foreign
file raises ``ValueError`` naming the file instead of giving a broken object.

Reading an ``.npz`` (``read_npz``; numpy's ``np.load`` is not used) costs at most the memory of
the arrays it returns plus one READ_CHUNK, whatever the file claims (each member is
decompressed in chunks straight into its array, with a running size check):

- the zip directory is checked first: only the member names the caller expects are accepted
  (an unknown or duplicated name is refused before anything is decompressed); encrypted
  members and compression methods other than stored/deflate are refused; a stored member's
  size must equal its compressed size and a deflated one may claim at most 1032 times its
  compressed size (deflate's maximum ratio), so sizes cannot outgrow the file;
- each member's ``.npy`` header is read and its shape x itemsize must equal the member's
  uncompressed size before the payload is read; object, structured and zero-width dtypes are
  refused (nothing is ever unpickled);
- arrays come back in native byte order and C order (big-endian or Fortran-ordered members are
  converted once).

Atomic writes go to ``.tmp-adanns-<pid>-<random><suffix>`` in the target's directory and are
renamed onto the target. A run killed mid-write leaves such a file behind; every successful
write removes the stale ones of the same directory: those whose writer process no longer runs
on this machine and that have not been modified for ``STALE_SECONDS`` (a live writer on another
machine sharing the directory keeps its file fresh; any other file is never touched).
"""
import hashlib
import json
import math
import os
import re
import stat
import struct
import tempfile
import time
import tokenize
import zipfile
import zlib

import numpy as np

SCHEMA_FIELDS = ("__kind__", "__version__", "__params__")
_DEFLATE_MAX_RATIO = 1032  # deflate emits at least 2 bits per 258-byte match: 258 * 8 / 2 = 1032
_NPY_MAX_HEADER = 10000    # numpy's own default limit on .npy header text
READ_CHUNK = 1 << 20       # bytes decompressed per step when reading a member
_TMP_PREFIX = ".tmp-adanns-"
_TMP_NAME = re.compile(r"^\.tmp-adanns-(\d+)-")
STALE_SECONDS = 60.0
# what a corrupt zip or .npy header can raise from zipfile, zlib and numpy's header parser
_READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError,
                KeyError, NotImplementedError, RuntimeError, struct.error, SyntaxError,
                tokenize.TokenError, TypeError, OverflowError)


def sha256_file(path):
    """Hex SHA-256 of a file, read in 1 MiB blocks (bounded memory for large files)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def regular_file_size(path):
    """Size in bytes of `path`, which must be a regular file (not a device, pipe or directory).

    A missing file raises FileNotFoundError (it names the path)."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{path}: not a regular file (a device, directory or pipe); "
                         f"pass the path of a file written to disk")
    return st.st_size


# ---------------------------------------------------------------- atomic writes

def output_path_problem(path):
    """'' if `atomic_write` can create or replace the file `path`, else what is wrong (for a CLI
    to refuse before its work starts): a directory, a non-regular file, or no writable directory
    to put it in."""
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        return "is a directory; give a file path"
    if os.path.lexists(path) and not os.path.isfile(path):
        return "exists and is not a regular file"
    parent = os.path.dirname(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        return f"{parent} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"directory {parent} is not writable"
    return ""


def _pid_running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        return True
    except (OverflowError, ValueError):  # not a possible pid
        return False
    return True


def remove_stale_temp_files(directory, now=None):
    """Remove our own temp files in `directory` left by killed runs (see the module docstring).

    Returns the names removed."""
    now = time.time() if now is None else now
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        m = _TMP_NAME.match(name)
        if m is None or int(m.group(1)) == os.getpid() or _pid_running(int(m.group(1))):
            continue
        path = os.path.join(directory, name)
        try:
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode) and now - st.st_mtime > STALE_SECONDS:
                os.remove(path)
                removed.append(name)
        except OSError:  # removed meanwhile by another run's cleanup: fine
            continue
    return removed


def atomic_write(path, write_fn, suffix=""):
    """Call write_fn(tmp_path) then rename tmp_path onto `path` (same directory => atomic)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f"{_TMP_PREFIX}{os.getpid()}-",
                               suffix=suffix or os.path.splitext(path)[1])
    os.close(fd)
    try:
        write_fn(tmp)
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    remove_stale_temp_files(directory)


def atomic_write_text(path, text):
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    atomic_write(path, write)


# ---------------------------------------------------------------- reading .npy / .npz safely

def read_npy_header(f, where):
    """(shape, fortran_order, dtype) of the .npy header at f's position, checked: no object,
    structured or zero-width dtype, non-negative dims. Leaves f at the payload."""
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f, max_header_size=_NPY_MAX_HEADER)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f, max_header_size=_NPY_MAX_HEADER)
        else:  # 3.0 only exists for non-latin-1 structured field names, which we never write
            raise ValueError(f"unsupported .npy format version {version}")
    except _READ_ERRORS as exc:
        raise ValueError(f"{where}: not a readable .npy file: bad header ({type(exc).__name__}: {exc})") from exc
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None or dtype.kind not in "biufcSU":
        raise ValueError(f"{where}: dtype {dtype} is not a plain numeric or text array (object and "
                         f"structured arrays are refused; nothing is unpickled)")
    # numpy cannot even describe an array whose nonzero dims multiply past the address space
    if dtype.itemsize == 0 or any(s < 0 for s in shape) or \
            math.prod(max(s, 1) for s in shape) * dtype.itemsize > np.iinfo(np.intp).max:
        raise ValueError(f"{where}: invalid header shape {shape} with dtype {dtype}")
    return shape, fortran, dtype


class NpzReader:
    """A checked .npz opened for reading member by member (use as a context manager).

    Opening checks the zip directory (see the module docstring); `names` lists the members
    (without ".npy"); `read(name)` checks one member's header against its size, then reads it;
    `refuse_unknown(allowed)` raises for any name outside `allowed` (nothing is decompressed).
    Every error is a ValueError naming the file.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        size = regular_file_size(self.path)
        try:
            self._zf = zipfile.ZipFile(self.path)
        except _READ_ERRORS as exc:
            raise ValueError(f"{self.path}: not a readable .npz file ({type(exc).__name__}: {exc})") from exc
        try:
            self._infos = self._check_directory(size)
        except BaseException:
            self._zf.close()
            raise
        self.names = list(self._infos)

    def _check_directory(self, file_size):
        infos, stored = {}, 0
        for info in self._zf.infolist():
            name = info.filename
            if not name.endswith(".npy"):
                raise ValueError(f"{self.path}: entry {name!r} is not an .npy array")
            if name[:-4] in infos:
                raise ValueError(f"{self.path}: entry {name!r} appears twice")
            if info.flag_bits & 0x1:
                raise ValueError(f"{self.path}: entry {name!r} is encrypted; saved files never are")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise ValueError(f"{self.path}: entry {name!r} uses zip compression method "
                                 f"{info.compress_type}; only stored and deflate are read")
            if info.compress_type == zipfile.ZIP_STORED:
                limit = info.compress_size
            else:
                limit = info.compress_size * _DEFLATE_MAX_RATIO + 64
            if info.file_size > limit:
                raise ValueError(f"{self.path}: entry {name!r} claims {info.file_size} bytes from "
                                 f"{info.compress_size} compressed bytes, more than its compression allows")
            stored += info.compress_size
            infos[name[:-4]] = info
        if stored > file_size:
            raise ValueError(f"{self.path}: entries claim {stored} compressed bytes but the file has {file_size}")
        return infos

    def refuse_unknown(self, allowed):
        for name in self.names:
            if not allowed(name):
                raise ValueError(f"{self.path}: unexpected entry {name!r}; this file should only "
                                 f"hold the arrays its loader reads")

    def read(self, name):
        """Member `name` as a writable native-byte-order C-order array.

        The payload is decompressed in READ_CHUNK pieces straight into the array's own buffer
        (allocated once from the checked header), with a running count against the header's
        size: peak memory is the array plus one chunk, whatever the compression. Big-endian
        members are swapped in place; Fortran-ordered members (never written by `save_npz`)
        cost one transient copy to C order."""
        info, at = self._infos[name], f"{self.path}: array {name!r}"
        try:
            with self._zf.open(info) as f:
                shape, fortran, dtype = read_npy_header(f, at)
                nbytes = math.prod(shape) * dtype.itemsize
                payload = info.file_size - f.tell()
                if nbytes != payload:
                    raise ValueError(f"{at}: header shape {shape} {dtype} needs {nbytes} bytes but "
                                     f"the entry holds {payload}")
                buf = np.empty(nbytes, dtype=np.uint8)
                view, got = memoryview(buf), 0
                while got < nbytes:
                    chunk = f.read(min(READ_CHUNK, nbytes - got))
                    if not chunk:
                        break
                    view[got:got + len(chunk)] = chunk
                    got += len(chunk)
                if got == nbytes and f.read(1):  # zipfile stops at file_size; never more
                    raise ValueError(f"{at}: holds more than its header's {nbytes} bytes")
        except ValueError as exc:
            if str(exc).startswith(f"{self.path}: "):
                raise
            raise ValueError(f"{at}: unreadable ({exc})") from exc
        except _READ_ERRORS as exc:
            raise ValueError(f"{at}: unreadable ({type(exc).__name__}: {exc})") from exc
        if got != nbytes:
            raise ValueError(f"{at}: truncated ({got} of {nbytes} bytes)")
        arr = buf.view(dtype).reshape(shape, order="F" if fortran else "C")
        if not dtype.isnative:
            arr = arr.byteswap(inplace=True).view(dtype.newbyteorder("="))
        return np.ascontiguousarray(arr) if fortran and arr.ndim > 1 else arr

    def close(self):
        self._zf.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_npz(path, allowed):
    """{name: array} of a zip of .npy members (as np.savez writes), checked as the module
    docstring says. allowed(name) -> bool says which member names may appear (without ".npy");
    any other name is refused before it is decompressed. Raises ValueError naming `path`."""
    with NpzReader(path) as z:
        z.refuse_unknown(allowed)
        return {name: z.read(name) for name in z.names}


# ---------------------------------------------------------------- the versioned schema

def save_npz(path, kind, version, params, arrays):
    """Write `arrays` (dict name -> ndarray) and `params` (JSON-able dict) atomically."""
    for name in arrays:
        if name.startswith("__"):
            raise ValueError(f"array name {name!r} is reserved")
    payload = {k: np.asarray(v) for k, v in arrays.items()}
    payload["__kind__"] = np.array(kind)
    payload["__version__"] = np.array(int(version), dtype=np.int64)
    payload["__params__"] = np.array(json.dumps(params, sort_keys=True))

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **payload)
    atomic_write(path, write, suffix=".npz")


def _schema_field(z, field, kinds):
    a = z.read(field)
    if a.ndim != 0 or a.dtype.kind not in kinds:
        raise ValueError(f"{z.path}: schema field {field} must be a single "
                         f"{'integer' if kinds == 'iu' else 'text'} value, got {a.dtype} of shape {a.shape}")
    return a.item()


def _schema_version(z, path, kind):
    """The __version__ of an open save_npz file holding a `kind`; ValueError otherwise."""
    for field in SCHEMA_FIELDS:
        if field not in z.names:
            raise ValueError(f"{path}: missing schema field {field}; not written by adanns_ref")
    found_kind = _schema_field(z, "__kind__", "U")
    if found_kind != kind:
        raise ValueError(f"{path}: holds a {found_kind!r}, expected a {kind!r}")
    return _schema_field(z, "__version__", "iu")


def npz_version(path, kind):
    """The format version of a file written by save_npz for `kind` (to pick a reader before
    loading); ValueError if it is not such a file."""
    path = os.fspath(path)
    with NpzReader(path) as z:
        return _schema_version(z, path, kind)


def load_npz(path, kind, version, required, optional=(), extra=None):
    """Load and validate a file written by save_npz.

    required: dict name -> (dtype or None, ndim or None); optional: names that may also appear;
    extra: a compiled regex of further allowed names (fullmatch), e.g. ``param_[0-9]+``. Any
    other array name is refused unread. Returns (params, arrays).
    """
    path = os.fspath(path)
    known = set(SCHEMA_FIELDS) | set(required) | set(optional)
    with NpzReader(path) as z:
        found_version = _schema_version(z, path, kind)
        if found_version != version:
            raise ValueError(f"{path}: format version {found_version}, this code reads version {version}")
        text = _schema_field(z, "__params__", "U")
        z.refuse_unknown(lambda n: n in known or (extra is not None and extra.fullmatch(n) is not None))
        arrays = {name: z.read(name) for name in z.names if name not in SCHEMA_FIELDS}
    try:
        params = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError; deep nesting recurses
        raise ValueError(f"{path}: corrupt __params__ ({type(exc).__name__}: {str(exc)[:200]})") from exc
    if not isinstance(params, dict):
        raise ValueError(f"{path}: __params__ must be a JSON object")
    for name, (dtype, ndim) in required.items():
        if name not in arrays:
            raise ValueError(f"{path}: missing array {name!r}")
        a = arrays[name]
        if dtype is not None and a.dtype != np.dtype(dtype):
            raise ValueError(f"{path}: array {name!r} has dtype {a.dtype}, expected {np.dtype(dtype)}")
        if ndim is not None and a.ndim != ndim:
            raise ValueError(f"{path}: array {name!r} has ndim {a.ndim}, expected {ndim}")
    return params, arrays
