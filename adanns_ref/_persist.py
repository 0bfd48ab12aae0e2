"""Versioned `.npz` files for saved indices and models, and atomic file writes.

Schema of every file we write: the arrays of the object plus three 0-d fields,
``__kind__`` (e.g. "IVFIndex"), ``__version__`` (int) and ``__params__`` (JSON text of the
constructor parameters). Loading never unpickles (``allow_pickle=False``) and checks kind,
version and that every required array is present with the expected dtype and ndim, so a
truncated, tampered or foreign file raises ``ValueError`` instead of giving a broken object.
"""
import hashlib
import json
import os
import tempfile
import zipfile
import zlib

import numpy as np


def sha256_file(path):
    """Hex SHA-256 of a file, read in 1 MiB blocks (bounded memory for large files)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write(path, write_fn, suffix=""):
    """Call write_fn(tmp_path) then rename tmp_path onto `path` (same directory => atomic)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=suffix or os.path.splitext(path)[1])
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


def atomic_write_text(path, text):
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    atomic_write(path, write)


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


def load_npz(path, kind, version, required):
    """Load and validate a file written by save_npz.

    required: dict name -> (dtype or None, ndim or None). Returns (params, arrays).
    """
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError, NotImplementedError) as exc:
        raise ValueError(f"{path}: not a readable .npz index file ({exc})") from exc
    for field in ("__kind__", "__version__", "__params__"):
        if field not in arrays:
            raise ValueError(f"{path}: missing schema field {field}; not written by adanns_ref")
    found_kind = str(arrays.pop("__kind__"))
    if found_kind != kind:
        raise ValueError(f"{path}: holds a {found_kind!r}, expected a {kind!r}")
    found_version = int(arrays.pop("__version__"))
    if found_version != version:
        raise ValueError(f"{path}: format version {found_version}, this code reads version {version}")
    try:
        params = json.loads(str(arrays.pop("__params__")))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: corrupt __params__ ({exc})") from exc
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
