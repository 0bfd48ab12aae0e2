"""Input validation shared by every public function of adanns_ref.

The rule for vectors: a float32, C-contiguous, finite 2-D array is used as it is (no copy).
Anything else that is real-valued (other float widths, integers, bools, nested lists) is
converted **once** with ``np.ascontiguousarray(x, dtype=np.float32)``. Complex, object and
string arrays are refused with ``TypeError``; NaN/Inf, wrong ndim and wrong width are refused
with ``ValueError`` naming what was expected. Kernels below the public boundary never check again.
"""
import numbers
import operator

import numpy as np


def as_float32_matrix(x, name="x", d=None, min_rows=0, check_finite=True):
    """Return `x` as a C-contiguous float32 array of shape (n, d).

    `d`: required number of columns (None: any >= 1). `min_rows`: smallest n accepted.
    """
    arr = np.asarray(x)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        hint = f"; for a single vector use {name}.reshape(1, -1)" if arr.ndim == 1 else ""
        raise ValueError(f"{name} must be 2-D (n, d), got shape {arr.shape}{hint}")
    if arr.dtype != np.float32 or not arr.flags.c_contiguous:
        with np.errstate(over="ignore"):  # float64 beyond float32 range becomes inf, caught below
            arr = np.ascontiguousarray(arr, dtype=np.float32)
    n, dim = arr.shape
    if dim < 1:
        raise ValueError(f"{name} must have at least one column, got shape {arr.shape}")
    if d is not None and dim != d:
        raise ValueError(f"{name} has {dim} columns but {d} were expected (dimension mismatch)")
    if n < min_rows:
        raise ValueError(f"{name} has {n} rows but at least {min_rows} are needed")
    if check_finite and arr.size and not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
        raise ValueError(f"{name} contains NaN or Inf (first in row {bad}); clean or drop those rows")
    return arr


def as_int(value, name, low=None, high=None):
    """Return `value` as a Python int in [low, high]; bools and non-integers raise TypeError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    value = operator.index(value)
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return value


MAX_RESULT_BYTES = 1 << 32  # 4 GiB: the largest (D, I) result one search call may allocate
RESULT_BYTES_PER_ENTRY = 12  # float32 distance + int64 id


def as_k(k, nq, name="k"):
    """Return k (>= 1) for a search of nq queries, refusing a k whose results (nq x k float32
    distances + int64 ids = nq * k * 12 bytes; at least one query's worth, so a huge k is refused
    even for nq = 0) would exceed MAX_RESULT_BYTES, instead of failing with MemoryError."""
    k = as_int(k, name, low=1)
    need = max(nq, 1) * k * RESULT_BYTES_PER_ENTRY
    if need > MAX_RESULT_BYTES:
        raise ValueError(f"{name}={k} for {nq} queries needs {need / 2**30:.3g} GiB for the results "
                         f"(nq * k * {RESULT_BYTES_PER_ENTRY} bytes), above the "
                         f"{MAX_RESULT_BYTES / 2**30:.3g} GiB limit "
                         f"(adanns_ref.core.validate.MAX_RESULT_BYTES); lower {name} or search fewer "
                         f"queries per call")
    return k


def as_bool(value, name):
    """Return `value` (a Python or numpy bool) as a Python bool; anything else raises TypeError,
    0 and 1 included: an int where a flag belongs is usually an argument in the wrong place."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_prefix_dim(d, full_dim, name="d"):
    """A prefix size must satisfy 1 <= d <= full_dim."""
    return as_int(d, name, 1, full_dim) if d is not None else full_dim


def check_metric(metric):
    if metric not in ("l2", "ip"):
        raise ValueError(f"metric must be 'l2' or 'ip', got {metric!r}")
    return metric


def as_uint8_codes(codes, name, code_size, hint=""):
    """Validate code rows: a uint8 array (n, code_size), returned C-contiguous (copied if needed).
    `hint` says what determines code_size, e.g. "qtype '8bit' at d=16"."""
    c = np.asarray(codes)
    if c.dtype != np.uint8:
        raise TypeError(f"{name} must be uint8 codes (as encode returns), got dtype {c.dtype}")
    if c.ndim != 2 or c.shape[1] != code_size:
        raise ValueError(f"{name} must have shape (n, {code_size}){' for ' + hint if hint else ''}, "
                         f"got {c.shape}")
    return np.ascontiguousarray(c)


def as_labels(y, name="labels", n=None):
    """1-D integer label array (int64), optionally of length n."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integers, got dtype {arr.dtype}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries but {n} were expected")
    return arr.astype(np.int64, copy=False)


def as_ids(I, name, n_db=None):
    """2-D integer id array (int64) with values in [-1, n_db)."""
    arr = np.asarray(I)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_queries, k), got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer ids (int64 as faiss returns), got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < -1:
            raise ValueError(f"{name} contains id {lo}; ids must be >= 0, or -1 for a missing result")
        if n_db is not None and hi >= n_db:
            raise ValueError(f"{name} contains id {hi} but the database has only {n_db} items "
                             f"(labels for ids 0..{n_db - 1}); pass the labels of the searched database")
    return arr
