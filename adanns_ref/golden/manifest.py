"""The golden directory's manifest: reading and validating ``manifest.json`` (`load_manifest`)
and the rules a manifest must keep (format in `golden`'s module docstring).

What a manifest may ask for is bounded, so a tampered directory cannot pass ``--check`` by
loosening the rules, or make it hang: integer and boolean outputs (ids, codes, counts) must be
compared "exact"; rtol and atol must be finite numbers in [0, MAX_TOLERANCE]; every number in a
case's params must be finite with |value| <= MAX_PARAM (seeds up to 2^32 - 1, max_train_points up
to MAX_TRAIN_POINTS), so no case asks for 10^9 k-means iterations; every listed file must be a
regular file inside the directory (`file_problem`: a symlink, FIFO, device or directory is
reported, never opened).
"""
import json
import math
import os
import re
import stat

import numpy as np

from .cases import COMPONENTS

FORMAT, VERSION = "adanns-ref-golden", 1
MANIFEST = "manifest.json"
README = "README.md"
_NAME = re.compile(r"^[a-z0-9_]+$")  # case names (and so file names)
_ARRAY = re.compile(r"^[A-Za-z0-9_]+$")
_SHA = re.compile(r"^[0-9a-f]{64}$")
MAX_TOLERANCE = 1e-3  # largest rtol / atol a manifest may set (the cases use <= 1e-4)
MAX_PARAM = 4096  # largest |number| in a case's params (the cases use <= 320)
MAX_TRAIN_POINTS = 1 << 20
_PARAM_LIMITS = {"seed": 2**32 - 1, "hr_seed": 2**32 - 1, "max_train_points": MAX_TRAIN_POINTS}


def params_json(params):
    """The canonical JSON text of a case's params (stored in the case file and compared)."""
    return json.dumps(params, sort_keys=True)


class ManifestError(ValueError):
    """manifest.json is missing, unreadable, of another format/version, or malformed."""


def require(cond, where, message):
    if not cond:
        raise ManifestError(f"manifest.json: {where}: {message}")


def check_arrays_spec(spec, where, outputs):
    require(isinstance(spec, dict), where, "must be an object {name: {dtype, shape, ...}}")
    for name, entry in spec.items():
        at = f"{where}.{name}"
        require(isinstance(entry, dict) and _ARRAY.match(name), at, "must be an object named by "
                 "letters, digits and _")
        require(isinstance(entry.get("dtype"), str), at, "needs a dtype string, e.g. '<f4'")
        shape = entry.get("shape")
        require(isinstance(shape, list) and all(isinstance(s, int) and s >= 0 for s in shape), at,
                 f"shape must be a list of non-negative ints, got {shape!r}")
        try:
            kind = np.dtype(entry["dtype"]).kind
        except (TypeError, ValueError, SyntaxError):
            kind = None
        require(kind is not None and kind in "biuf", at,
                 f"dtype must be a numeric dtype string such as '<f4' or '<i8', got {entry['dtype']!r}")
        if outputs:
            require(entry.get("compare") in ("exact", "close"), at,
                     f"compare must be 'exact' or 'close', got {entry.get('compare')!r}")
            require(kind == "f" or entry["compare"] == "exact", at,
                     f"{entry['dtype']} outputs (ids, codes, counts) must be compared 'exact'")
            if entry["compare"] == "close":
                for tol in ("rtol", "atol"):
                    v = entry.get(tol)
                    require(isinstance(v, (int, float)) and not isinstance(v, bool)
                             and 0 <= v <= MAX_TOLERANCE, at,
                             f"{tol} must be a finite number in [0, {MAX_TOLERANCE:g}], got {v!r}")


def check_params_bounds(value, where, key=None):
    """Every number in a case's params finite and within its bound (see the module docstring)."""
    if isinstance(value, dict):
        for k, v in value.items():
            check_params_bounds(v, f"{where}.{k}", k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            check_params_bounds(v, f"{where}[{i}]", key)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        limit = _PARAM_LIMITS.get(key, MAX_PARAM)
        require(math.isfinite(value) and abs(value) <= limit, where,
                 f"must be finite with |value| <= {limit}, got {value!r} (golden cases are small)")


def file_problem(directory, name):
    """'' if DIR/name is a regular file (not a symlink), else what it is instead."""
    try:
        st = os.lstat(os.path.join(directory, name))
    except FileNotFoundError:
        return f"{name}: missing"
    except OSError as exc:
        return f"{name}: unreadable ({type(exc).__name__}: {exc})"
    if not stat.S_ISREG(st.st_mode):
        what = "a symlink" if stat.S_ISLNK(st.st_mode) else "a directory" if stat.S_ISDIR(st.st_mode) \
            else "a FIFO, socket or device"
        return f"{name}: {what}, not a regular file inside the directory; golden files are plain files"
    return ""


def load_manifest(directory):
    """Read and validate DIR/manifest.json; raises ManifestError naming the first problem."""
    path = os.path.join(os.fspath(directory), MANIFEST)
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise ManifestError(f"{path} not found; is {directory!r} a golden directory "
                            f"(written by python -m adanns_ref.golden --out)?") from None
    except (ValueError, OSError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ManifestError(f"{path}: not readable JSON ({type(exc).__name__}: {str(exc)[:200]})") from exc
    require(isinstance(manifest, dict), "top level", "must be a JSON object")
    require(manifest.get("format") == FORMAT, "format", f"expected {FORMAT!r}, got {manifest.get('format')!r}")
    version = manifest.get("version")
    require(version == VERSION and not isinstance(version, bool), "version",
             f"this code reads version {VERSION}, got {version!r}; regenerate with --out")
    files = manifest.get("files")
    require(isinstance(files, dict) and files, "files", "must be a non-empty object {file: sha256}")
    for name, sha in files.items():
        require(name != MANIFEST and os.path.basename(name) == name and not name.startswith("."),
                 f"files.{name}", "must be a plain file name inside the directory")
        require(isinstance(sha, str) and _SHA.match(sha), f"files.{name}",
                 f"must be a 64-hex-digit SHA-256, got {sha!r}")
    blas = manifest.get("blas", {})
    require(isinstance(blas, dict) and all(k is None or isinstance(k, dict) for k in blas.values()),
             "blas", f"must be an object {{library: {{internal_api, version, architecture}} or null}}, "
             f"got {blas!r}")
    cases_ = manifest.get("cases")
    require(isinstance(cases_, list) and cases_, "cases", "must be a non-empty list")
    seen = set()
    for i, case in enumerate(cases_):
        where = f"cases[{i}]"
        require(isinstance(case, dict), where, "must be an object")
        fields = ("name", "component", "file", "description", "exact_path", "params", "inputs", "outputs")
        missing = [f for f in fields if f not in case]
        require(not missing, where, f"missing fields {missing}")
        name = case["name"]
        require(isinstance(name, str) and _NAME.match(name) and name not in seen, where,
                 f"name must be a unique lower-case identifier, got {name!r}")
        seen.add(name)
        where = f"case {name}"
        require(isinstance(case["component"], str) and case["component"] in COMPONENTS, where,
                 f"unknown component {case['component']!r}; known: {sorted(COMPONENTS)}")
        require(case["file"] == name + ".npz" and case["file"] in files, where,
                 f"file must be {name + '.npz'!r} and listed in files, got {case['file']!r}")
        require(isinstance(case["exact_path"], bool), where, "exact_path must be true or false")
        require(isinstance(case["params"], dict), where, "params must be an object")
        try:
            params_json(case["params"])  # the check compares this text with the case file's
        except (ValueError, RecursionError) as exc:
            raise ManifestError(f"manifest.json: {where}: params cannot be serialised "
                                f"({type(exc).__name__})") from exc
        check_params_bounds(case["params"], f"{where} params")
        check_arrays_spec(case["inputs"], f"{where} inputs", outputs=False)
        check_arrays_spec(case["outputs"], f"{where} outputs", outputs=True)
    return manifest
