"""Golden test vectors: small deterministic cases any implementation can load and compare.

    python -m adanns_ref.golden --out DIR     write the cases (one .npz each) and manifest.json
    python -m adanns_ref.golden --check DIR   recompute every case with the current code; list
                                              each mismatch; exit 1 on any (2: unusable manifest)

Directory layout (format FORMAT, version VERSION):

- ``<case>.npz``: a plain zip of ``.npy`` members (no pickle, uncompressed, fixed timestamps, so
  the bytes depend only on the arrays): ``in_<name>`` inputs, ``out_<name>`` expected outputs and
  ``params``, a 0-d unicode array holding the case parameters as JSON (the same object as in the
  manifest).
- ``manifest.json`` (sorted keys): ``format``, ``version``, ``files`` {file: SHA-256}, ``blas``
  {library: {internal_api, version, architecture}} (the BLAS kernels of NumPy and SciPy that
  computed the set, e.g. openblas 0.3.31 Haswell; null where unknown), and per case ``name``,
  ``component``, ``file``, ``description``, ``exact_path``, ``params``, ``inputs``
  {name: {dtype, shape}} and ``outputs`` {name: {dtype, shape, compare, rtol, atol}} where
  compare is "exact" (ids, codes, list layout, counts) or "close" (|got - want| <= atol + rtol *
  |want| elementwise, for floating-point results).
- ``README.md``: this format, in short, for readers in other languages.

The cases, their deterministic inputs and the component functions (params, inputs) -> outputs
live in ``golden.cases``; generating and checking run the same functions, which call the library.

Bit stability. Cases with ``exact_path: true`` avoid GEMM and LAPACK: n * d stays below faiss's
BLAS threshold (128000), so k-means, IVF routing and scanning, flat search, PQ tables (dsub < 16)
and codes and the funnel all use the direct, fixed-order sums of ``core.simd.simd_sum`` / ``kmeans`` /
``pq``, and metrics are NumPy float64 reductions; their outputs are the same bits on any x86-64
machine with AVX-512 (prefix normalisation uses NumPy's einsum, stable for a given NumPy build).
OPQ (and anything rotated by it) uses GEMM and LAPACK (QR, SVD): those outputs are the same
bits only for the BLAS kernels recorded in ``blas``; on another kernel they agree to the stored
tolerances (measured: <= 1.2e-6 for these cases), and codes and ids could change at near-ties.
``--check`` applies the tolerances, so it passes on any CPU. The regeneration test
(tests/test_golden.py) demands identical bytes for the exact-path cases everywhere and for the
OPQ cases where ``testing.blas_kernels_match(manifest["blas"])``, the tolerances otherwise.
"""
import argparse
import hashlib
import io
import json
import os
import re
import sys
import zipfile

import numpy as np

from ..core.persist import atomic_write, atomic_write_text, read_npz, sha256_file
from ..testing import blas_kernels
from .cases import COMPONENTS, cases, tolerance

FORMAT, VERSION = "adanns-ref-golden", 1
RECORDED_BLAS = ("numpy", "scipy")  # whose kernels the OPQ cases' bits depend on (GEMM; QR, SVD)
MANIFEST = "manifest.json"
README = "README.md"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest zip timestamp: bytes must not depend on the clock
_NAME = re.compile(r"^[a-z0-9_]+$")  # case names (and so file names)
_ARRAY = re.compile(r"^[A-Za-z0-9_]+$")
_SHA = re.compile(r"^[0-9a-f]{64}$")
# a JSON list of numbers as json.dumps(indent=...) lays it out: "[" then a newline (a string
# value cannot hold a raw newline, so text inside descriptions never matches)
_NUMBER_LIST = re.compile(r"\[\n\s*(-?[0-9.eE+-]+(?:,\s*-?[0-9.eE+-]+)*)\s*\]")


# --------------------------------------------------------------------- writing

def _npz_bytes(arrays):
    """A deterministic, uncompressed .npz (zip of .npy members in name order)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            member = io.BytesIO()
            # np.ascontiguousarray would turn 0-d scalars into shape (1,); copy(order="C") keeps them
            np.lib.format.write_array(member, np.asarray(arrays[name]).copy(order="C"), version=(1, 0),
                                      allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=_ZIP_DATE)
            info.create_system = 3  # "unix" whatever the host, so the header bytes do not vary
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def _describe(arr, rule=None):
    entry = {"dtype": arr.dtype.str, "shape": list(arr.shape)}
    return {**entry, **rule} if rule is not None else entry


def _params_json(params):
    return json.dumps(params, sort_keys=True)


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _compute(component, params, inputs):
    outputs = COMPONENTS[component](params, inputs)
    return {name: np.asarray(v) for name, v in outputs.items()}


def _build(case):
    """(file bytes, manifest entry) of one case: run the component on its inputs."""
    outputs = _compute(case["component"], case["params"], case["inputs"])
    arrays = {f"in_{n}": a for n, a in case["inputs"].items()}
    arrays.update({f"out_{n}": a for n, a in outputs.items()})
    arrays["params"] = np.array(_params_json(case["params"]))
    data = _npz_bytes(arrays)
    entry = {key: case[key] for key in ("name", "component", "description", "exact_path", "params")}
    entry["file"] = case["name"] + ".npz"
    entry["inputs"] = {n: _describe(a) for n, a in case["inputs"].items()}
    entry["outputs"] = {n: _describe(a, tolerance(a, case["exact_path"])) for n, a in outputs.items()}
    return data, entry


_README_TEXT = f"""# adanns-ref golden test vectors (format {FORMAT}, version {VERSION})

Generated by `python -m adanns_ref.golden --out DIR`; verify with `--check DIR`.
Do not edit by hand: `manifest.json` holds the SHA-256 of every file.

Each `<case>.npz` is a zip of `.npy` arrays (no pickled objects): `in_*` inputs, `out_*`
expected outputs, and `params` (JSON text, identical to the case's `params` in the manifest).
`manifest.json` lists per case its component, parameters, input and output dtypes and shapes,
and how to compare each output: `exact` (ids, codes, inverted lists, counts) or `close`
(|got - want| <= atol + rtol * |want| elementwise). Ids are int64 with -1 for a missing result
(distance +FLT_MAX for L2, -FLT_MAX for inner product); ties rank the smaller id first.
`exact_path: false` marks cases computed through GEMM/LAPACK (OPQ): expect last-bit differences
unless your BLAS runs the kernels named in the manifest's `blas` (the tolerances cover them).
The semantics of every component are documented in the adanns_ref module of the same name.
"""


def _listed_files(directory):
    """Files named by an existing golden manifest in `directory` (empty if none)."""
    try:
        with open(os.path.join(directory, MANIFEST), encoding="utf-8") as f:
            manifest = json.load(f)
        return set(manifest["files"]) if manifest.get("format") == FORMAT else None
    except FileNotFoundError:
        return set()
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def generate(directory):
    """Write every case, README.md and manifest.json into `directory`; returns the manifest.

    The directory must be absent, empty, or a golden directory written earlier (its listed files
    are replaced; anything else in it makes this refuse rather than delete unknown files).
    """
    directory = os.fspath(directory)
    built = [_build(case) for case in cases()]  # compute everything before touching the directory
    if os.path.exists(directory):
        if not os.path.isdir(directory):
            raise ValueError(f"--out {directory!r} is a file; pass a directory")
        listed = _listed_files(directory)
        present = set(os.listdir(directory)) - {MANIFEST}
        if listed is None or present - listed:
            raise ValueError(f"{directory!r} holds files not written by adanns_ref.golden "
                             f"({sorted(present - (listed or set()))[:5]}); choose an empty or new directory")
        for name in present:
            os.remove(os.path.join(directory, name))
    os.makedirs(directory, exist_ok=True)
    files, entries = {}, []
    for data, entry in built:
        atomic_write(os.path.join(directory, entry["file"]), lambda tmp, b=data: _write_bytes(tmp, b))
        files[entry["file"]] = _sha256(data)
        entries.append(entry)
    atomic_write_text(os.path.join(directory, README), _README_TEXT)
    files[README] = _sha256(_README_TEXT.encode("utf-8"))
    manifest = {"format": FORMAT, "version": VERSION, "files": files, "cases": entries,
                "blas": blas_kernels(RECORDED_BLAS)}
    atomic_write_text(os.path.join(directory, MANIFEST), _manifest_text(manifest))
    return manifest


def _manifest_text(manifest):
    """JSON with sorted keys, one field per line, but lists of numbers (shapes) on one line."""
    text = json.dumps(manifest, indent=1, sort_keys=True)
    one_line = lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]"
    return _NUMBER_LIST.sub(one_line, text) + "\n"


def _write_bytes(path, data):
    with open(path, "wb") as f:
        f.write(data)


# --------------------------------------------------------------------- checking

class ManifestError(ValueError):
    """manifest.json is missing, unreadable, of another format/version, or malformed."""


def _require(cond, where, message):
    if not cond:
        raise ManifestError(f"manifest.json: {where}: {message}")


def _check_arrays_spec(spec, where, outputs):
    _require(isinstance(spec, dict), where, "must be an object {name: {dtype, shape, ...}}")
    for name, entry in spec.items():
        at = f"{where}.{name}"
        _require(isinstance(entry, dict) and _ARRAY.match(name), at, "must be an object named by "
                 "letters, digits and _")
        _require(isinstance(entry.get("dtype"), str), at, "needs a dtype string, e.g. '<f4'")
        shape = entry.get("shape")
        _require(isinstance(shape, list) and all(isinstance(s, int) and s >= 0 for s in shape), at,
                 f"shape must be a list of non-negative ints, got {shape!r}")
        if outputs:
            _require(entry.get("compare") in ("exact", "close"), at,
                     f"compare must be 'exact' or 'close', got {entry.get('compare')!r}")
            if entry["compare"] == "close":
                for tol in ("rtol", "atol"):
                    v = entry.get(tol)
                    _require(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0, at,
                             f"{tol} must be a number >= 0, got {v!r}")


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
    _require(isinstance(manifest, dict), "top level", "must be a JSON object")
    _require(manifest.get("format") == FORMAT, "format", f"expected {FORMAT!r}, got {manifest.get('format')!r}")
    version = manifest.get("version")
    _require(version == VERSION and not isinstance(version, bool), "version",
             f"this code reads version {VERSION}, got {version!r}; regenerate with --out")
    files = manifest.get("files")
    _require(isinstance(files, dict) and files, "files", "must be a non-empty object {file: sha256}")
    for name, sha in files.items():
        _require(name != MANIFEST and os.path.basename(name) == name and not name.startswith("."),
                 f"files.{name}", "must be a plain file name inside the directory")
        _require(isinstance(sha, str) and _SHA.match(sha), f"files.{name}",
                 f"must be a 64-hex-digit SHA-256, got {sha!r}")
    blas = manifest.get("blas", {})
    _require(isinstance(blas, dict) and all(k is None or isinstance(k, dict) for k in blas.values()),
             "blas", f"must be an object {{library: {{internal_api, version, architecture}} or null}}, "
             f"got {blas!r}")
    cases_ = manifest.get("cases")
    _require(isinstance(cases_, list) and cases_, "cases", "must be a non-empty list")
    seen = set()
    for i, case in enumerate(cases_):
        where = f"cases[{i}]"
        _require(isinstance(case, dict), where, "must be an object")
        fields = ("name", "component", "file", "description", "exact_path", "params", "inputs", "outputs")
        missing = [f for f in fields if f not in case]
        _require(not missing, where, f"missing fields {missing}")
        name = case["name"]
        _require(isinstance(name, str) and _NAME.match(name) and name not in seen, where,
                 f"name must be a unique lower-case identifier, got {name!r}")
        seen.add(name)
        where = f"case {name}"
        _require(isinstance(case["component"], str) and case["component"] in COMPONENTS, where,
                 f"unknown component {case['component']!r}; known: {sorted(COMPONENTS)}")
        _require(case["file"] == name + ".npz" and case["file"] in files, where,
                 f"file must be {name + '.npz'!r} and listed in files, got {case['file']!r}")
        _require(isinstance(case["exact_path"], bool), where, "exact_path must be true or false")
        _require(isinstance(case["params"], dict), where, "params must be an object")
        try:
            _params_json(case["params"])  # the check compares this text with the case file's
        except (ValueError, RecursionError) as exc:
            raise ManifestError(f"manifest.json: {where}: params cannot be serialised "
                                f"({type(exc).__name__})") from exc
        _check_arrays_spec(case["inputs"], f"{where} inputs", outputs=False)
        _check_arrays_spec(case["outputs"], f"{where} outputs", outputs=True)
    return manifest


def load_case(directory, name):
    """(params, inputs, outputs) of case `name` of a golden directory, after checking the
    manifest and the file's SHA-256 (ValueError otherwise); arrays keyed without in_/out_."""
    directory = os.fspath(directory)
    manifest = load_manifest(directory)
    case = next((c for c in manifest["cases"] if c["name"] == name), None)
    if case is None:
        raise ValueError(f"no case {name!r} in {directory}; cases: {[c['name'] for c in manifest['cases']]}")
    path = os.path.join(directory, case["file"])
    if sha256_file(path) != manifest["files"][case["file"]]:
        raise ValueError(f"{path}: SHA-256 differs from the manifest (modified or corrupt)")
    arrays = read_npz(path, lambda n: n == "params" or n.startswith(("in_", "out_")))
    try:
        inputs = {n: arrays[f"in_{n}"] for n in case["inputs"]}
        outputs = {n: arrays[f"out_{n}"] for n in case["outputs"]}
    except KeyError as exc:
        raise ValueError(f"{path}: no array {exc} although the manifest lists it") from exc
    return case["params"], inputs, outputs


def _compare(name, got, want, spec):
    """A list of problems (empty if `got` matches `want` under spec's rule)."""
    if got.dtype != want.dtype or got.shape != want.shape:
        return [f"out_{name}: recomputed {got.dtype}{got.shape}, stored {want.dtype}{want.shape}"]
    if spec["compare"] == "exact":
        bad = got != want
        rule = "(exact comparison)"
    else:
        g, w = got.astype(np.float64), want.astype(np.float64)
        bad = ~(np.abs(g - w) <= spec["atol"] + spec["rtol"] * np.abs(w))
        rule = f"beyond rtol={spec['rtol']:g} atol={spec['atol']:g}"
    bad = np.atleast_1d(bad)
    if not bad.any():
        return []
    g, w = np.atleast_1d(got), np.atleast_1d(want)
    diff = np.abs(g.astype(np.float64) - w.astype(np.float64))
    first = np.unravel_index(int(np.argmax(bad)), bad.shape)
    worst = float(diff[bad].max())
    return [f"out_{name}: {int(bad.sum())} of {bad.size} values differ {rule}; max |diff| "
            f"{worst:.3g}; first at {tuple(int(i) for i in first)}: recomputed {g[first].item()!r}, "
            f"stored {w[first].item()!r}"]


def _check_case(directory, case):
    """Problems of one case: file contents vs manifest, then recomputed vs stored outputs."""
    path = os.path.join(directory, case["file"])
    expected = ({"params"} | {f"in_{n}" for n in case["inputs"]} | {f"out_{n}" for n in case["outputs"]})
    try:
        arrays = read_npz(path, expected.__contains__)
    except (OSError, ValueError) as exc:
        return [f"{case['file']}: not a readable .npz ({type(exc).__name__}: {exc})"]
    problems = []
    if set(arrays) != expected:
        problems.append(f"{case['file']}: arrays {sorted(set(arrays) ^ expected)} are missing or "
                        f"not in the manifest")
    for prefix_, spec in (("in_", case["inputs"]), ("out_", case["outputs"])):
        for n, entry in spec.items():
            a = arrays.get(prefix_ + n)
            if a is not None and (a.dtype.str != entry["dtype"] or list(a.shape) != entry["shape"]):
                problems.append(f"{prefix_}{n}: stored {a.dtype.str}{list(a.shape)}, manifest says "
                                f"{entry['dtype']}{entry['shape']}")
    stored_params = arrays.get("params")
    if stored_params is None or stored_params.dtype.kind != "U" or str(stored_params) != _params_json(case["params"]):
        problems.append(f"{case['file']}: params differ from the manifest's params")
    if problems:
        return problems
    inputs = {n: arrays[f"in_{n}"] for n in case["inputs"]}
    try:
        got = _compute(case["component"], case["params"], inputs)
    except Exception as exc:  # report any failure of the library on this case, then go on
        return [f"recompute failed: {type(exc).__name__}: {exc}"]
    if set(got) != set(case["outputs"]):
        problems.append(f"outputs recomputed {sorted(got)} but stored {sorted(case['outputs'])}")
    for n, spec in case["outputs"].items():
        if n in got:
            problems.extend(_compare(n, got[n], arrays[f"out_{n}"], spec))
    return problems


def check(directory):
    """Re-verify a golden directory -> {case name or file: [problems]} (every case appears;
    an empty list means it passed). Raises ManifestError for an unusable manifest."""
    directory = os.fspath(directory)
    manifest = load_manifest(directory)
    report = {}
    by_file = {case["file"]: case["name"] for case in manifest["cases"]}
    for name, sha in manifest["files"].items():
        key = by_file.get(name, name)
        try:
            with open(os.path.join(directory, name), "rb") as f:
                found = _sha256(f.read())
        except FileNotFoundError:
            report.setdefault(key, []).append(f"{name}: missing")
            continue
        if found != sha:
            report.setdefault(key, []).append(f"{name}: SHA-256 {found} but the manifest says {sha}")
    for extra in sorted(set(os.listdir(directory)) - set(manifest["files"]) - {MANIFEST}):
        report.setdefault(extra, []).append(f"{extra}: not listed in the manifest")
    for case in manifest["cases"]:
        problems = report.setdefault(case["name"], [])
        if not any(p.endswith(": missing") for p in problems):
            problems.extend(_check_case(directory, case))
    return report


# --------------------------------------------------------------------- command line

def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m adanns_ref.golden", description=__doc__.split("\n")[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--out", metavar="DIR", help="write the golden cases into DIR")
    group.add_argument("--check", metavar="DIR", help="recompute the cases of DIR and compare")
    args = parser.parse_args(argv)
    if args.out is not None:
        try:
            manifest = generate(args.out)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        size = sum(os.path.getsize(os.path.join(args.out, f)) for f in manifest["files"])
        print(f"wrote {len(manifest['cases'])} cases ({size} bytes) to {args.out}")
        return 0
    try:
        report = check(args.check)
    except ManifestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = [name for name, problems in report.items() if problems]
    for name, problems in report.items():
        print(f"{'FAIL' if problems else 'ok  '}  {name}")
        for p in problems:
            print(f"      {p}")
    print(f"{len(report) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0
