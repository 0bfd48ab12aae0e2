"""Fuzzing every loader: the .npz of every saved class, the reproduction cache manifest, golden
manifests and case files, and the vector files of every format io.py reads.

The contract asserted on every generated file: the load succeeds, or raises ValueError whose
message names the file (never another exception type, never numpy's "allow_pickle" hint), and
it allocates at most the file size + 64 MiB (`_loader_files.check_load`, traced by
tracemalloc). Bounded example counts keep the whole module well under a minute.
"""
import json
import os
import shutil
import zipfile

import numpy as np
import pytest
from _loader_files import (LOADERS, check_load, lying_npy, members, npy_bytes, params_of, with_params,
                           write_valid_files, write_zip)
from hypothesis import HealthCheck, given, settings, strategies as st

from adanns_ref.golden import store as golden
from adanns_ref import io

FUZZ = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
GOLDEN = os.path.join(os.path.dirname(__file__), "golden")
CLASSES = sorted(LOADERS)


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    return write_valid_files(str(tmp_path_factory.mktemp("valid")))


# JSON values that stress parameter checks: wrong types, huge and negative sizes, nesting
JSON = st.recursive(
    st.none() | st.booleans() | st.sampled_from([0, -1, 1, 3, 2 ** 31, 10 ** 10, 2 ** 64, 10 ** 30])
    | st.integers(-5, 40) | st.floats(allow_nan=True) | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8)
ARRAYS = st.one_of(
    st.builds(lambda shape, dt: np.zeros(shape, dt),
              st.lists(st.integers(0, 5), max_size=3).map(tuple),
              st.sampled_from(["<f4", ">f4", "<f8", "<i8", ">i8", "<i4", "|u1", "|b1", "<c8", "<U3", "|S2"])),
    st.sampled_from([np.array(1), np.array(1.7), np.array("FlatIndex"), np.array([1, 1])]))
SHAPES = st.lists(st.sampled_from([0, 1, 3, 2 ** 20, 2 ** 40, 2 ** 62]), min_size=0, max_size=3).map(tuple)


def _mutations(draw, entries, params):
    """Apply one or two structural lies to a valid file's members."""
    entries = dict(entries)
    for _ in range(draw(st.integers(1, 2))):
        kind = draw(st.sampled_from(["param", "params_text", "array", "header", "extra", "drop"]))
        name = draw(st.sampled_from(sorted(entries)))
        if kind == "param":
            params = dict(params)
            params[draw(st.sampled_from(sorted(params)) | st.text(max_size=3))] = draw(JSON)
            entries = with_params(entries, json.dumps(params))
        elif kind == "params_text":
            entries = with_params(entries, draw(st.sampled_from(
                ["[" * 50_000, "{", "null", "[]", "1e999", "{\"d\": NaN}", "\ud800"]) | st.text(max_size=20)))
        elif kind == "array":
            entries[name] = npy_bytes(draw(ARRAYS))
        elif kind == "header":
            payload = entries[name][128:] if len(entries[name]) > 128 else b""
            entries[name] = lying_npy(draw(SHAPES), draw(st.sampled_from(["<f4", "<i8", "|u1"])),
                                      payload[:draw(st.integers(0, 64))])
        elif kind == "extra":
            entries[draw(st.sampled_from(["junk.npy", "a/../b.npy", "x.txt", "__kind__.npy.npy"]))] = \
                npy_bytes(np.zeros(draw(st.integers(0, 4096)), np.uint8))
        else:
            del entries[name]
    return entries


@pytest.mark.parametrize("cls", CLASSES)
@FUZZ
@given(data=st.data())
def test_npz_structural_lies(valid, tmp_path, cls, data):
    entries = _mutations(data.draw, members(valid[cls]), params_of(valid[cls]))
    compression = data.draw(st.sampled_from([zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED]))
    encrypt = data.draw(st.sets(st.sampled_from(sorted(entries)), max_size=1)) if entries else set()
    path = write_zip(tmp_path / f"{cls}.npz", entries, compression, encrypt)
    check_load(LOADERS[cls], path)


@pytest.mark.parametrize("cls", CLASSES)
@FUZZ
@given(cut=st.floats(0, 1), flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=4))
def test_npz_damaged_bytes(valid, tmp_path, cls, cut, flips):
    raw = bytearray(open(valid[cls], "rb").read())
    for where, value in flips:
        raw[min(int(where * len(raw)), len(raw) - 1)] = value
    path = tmp_path / f"{cls}.npz"
    path.write_bytes(bytes(raw[:max(1, int(cut * len(raw)))] if cut < 1 else raw))
    check_load(LOADERS[cls], path)


@FUZZ
@given(data=st.binary(max_size=400), prefix=st.sampled_from([b"", b"PK\x03\x04", b"PK\x05\x06", b"\x93NUMPY"]))
def test_npz_random_bytes(tmp_path, data, prefix):
    path = tmp_path / "r.npz"
    path.write_bytes(prefix + data)
    for cls in CLASSES:
        assert check_load(LOADERS[cls], path) is not None


# ------------------------------------------------------------------ reproduction cache manifest

def _toy(out, calls):
    from experiments.reproduce.stage import Pipeline, StageResult

    def compute(ctx):
        calls.append(1)
        return StageResult(tables={"toy": [{"v": 1}]}, arrays={"a": np.arange(3)})
    return Pipeline(out).run("toy", {"v": 1}, compute)


@FUZZ
@given(data=st.data())
def test_repro_cache_manifest_never_crashes_a_rerun(tmp_path, data):
    out = tmp_path / "run"
    shutil.rmtree(out, ignore_errors=True)
    calls = []
    _toy(out, calls)
    path = out / "cache" / "toy" / "manifest.json"
    manifest = json.loads(path.read_text())
    how = data.draw(st.sampled_from(["key", "whole", "bytes"]))
    if how == "key":
        manifest[data.draw(st.sampled_from(sorted(manifest)))] = data.draw(JSON)
        path.write_text(json.dumps(manifest))
    elif how == "whole":
        path.write_text(json.dumps(data.draw(JSON)))
    else:
        path.write_bytes(data.draw(st.binary(max_size=200)))
    result = _toy(out, calls)  # any exception fails the test
    if len(calls) == 2:  # recomputed (a consistent edit, e.g. "tables": [], may be taken as it says)
        assert result.tables["toy"] == [{"v": 1}] and result.arrays["a"].tolist() == [0, 1, 2]
    if how != "key":  # a manifest that is not a valid object always recomputes
        assert len(calls) == 2


# ------------------------------------------------------------------ golden manifests and case files

@pytest.fixture(scope="module")
def golden_manifest():
    with open(os.path.join(GOLDEN, golden.MANIFEST), encoding="utf-8") as f:
        return json.load(f)


def _set_path(obj, keys, value):
    for k in keys[:-1]:
        obj = obj[k]
    obj[keys[-1]] = value


def _paths(obj, prefix=(), depth=0):
    """Every key path into a JSON document, up to depth 4."""
    out = [prefix] if prefix else []
    if depth < 4:
        items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
        for k, v in items:
            out += _paths(v, prefix + (k,), depth + 1)
    return out


@FUZZ
@given(data=st.data())
def test_golden_manifest_is_valid_or_a_manifest_error(tmp_path, golden_manifest, data):
    manifest = json.loads(json.dumps(golden_manifest))
    how = data.draw(st.sampled_from(["path", "whole", "bytes", "deep"]))
    path = tmp_path / golden.MANIFEST
    if how == "deep":  # nesting beyond the recursion limit, in the document or in one case's params
        deep = data.draw(st.integers(1, 3)) * 40_000
        manifest["cases"][0]["params"] = "<deep>"
        path.write_text(json.dumps(manifest).replace('"<deep>"', "[" * deep + "]" * deep)
                        if data.draw(st.booleans()) else "[" * deep)
    elif how == "path":
        _set_path(manifest, data.draw(st.sampled_from(_paths(manifest))), data.draw(JSON))
        path.write_text(json.dumps(manifest))
    elif how == "whole":
        path.write_text(json.dumps(data.draw(JSON)))
    else:
        path.write_bytes(data.draw(st.binary(max_size=200)))
    try:
        golden.load_manifest(tmp_path)
    except golden.ManifestError as exc:
        assert "manifest.json" in str(exc)


@FUZZ
@given(data=st.data())
def test_golden_case_file_is_valid_or_a_value_error(tmp_path, golden_manifest, data):
    name = "flat_ip"
    shutil.copy(os.path.join(GOLDEN, golden.MANIFEST), tmp_path / golden.MANIFEST)
    entries = members(os.path.join(GOLDEN, f"{name}.npz"))
    member = data.draw(st.sampled_from(sorted(entries)))
    how = data.draw(st.sampled_from(["array", "header", "extra"]))
    if how == "array":
        entries[member] = npy_bytes(data.draw(ARRAYS))
    elif how == "header":
        payload = entries[member][128:][:data.draw(st.integers(0, 64))]
        entries[member] = lying_npy(data.draw(SHAPES), "<f4", payload)
    else:
        entries["junk.npy"] = npy_bytes(np.zeros(1000))
    path = write_zip(tmp_path / f"{name}.npz", entries, zipfile.ZIP_STORED)
    files = dict(golden_manifest["files"], **{f"{name}.npz": golden._sha256(path.read_bytes())})
    manifest = dict(golden_manifest, files=files)
    (tmp_path / golden.MANIFEST).write_text(json.dumps(manifest))
    check_load(lambda p: golden.load_case(tmp_path, name), path)
    case = next(c for c in manifest["cases"] if c["name"] == name)
    problems = golden._check_case(str(tmp_path), case)  # the --check path: a list, never a crash
    assert isinstance(problems, list)


# hostile values for the bounded fields of a manifest (issue 26, items 9 and 16)
HOSTILE_NUMBERS = (st.floats(allow_nan=True, allow_infinity=True)
                   | st.sampled_from([0, -1, 1e-3, 1e-3 + 1e-12, 1, 2 ** 31, 10 ** 9, 10 ** 30, True])
                   | JSON)
CHEAP_CASES = ["flat_ip", "flat_l2_padding", "binary_flat", "sq_8bit_l2", "ivf_flat_l2"]


def _leaves(obj, prefix=()):
    """Key paths of the leaves of a JSON value."""
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else None
    if items is None:
        return [prefix]
    return [p for k, v in items for p in _leaves(v, prefix + (k,))]


def _numbers(obj):
    if isinstance(obj, dict):
        return [n for v in obj.values() for n in _numbers(v)]
    if isinstance(obj, list):
        return [n for v in obj for n in _numbers(v)]
    return [obj] if isinstance(obj, (int, float)) and not isinstance(obj, bool) else []


@FUZZ
@given(data=st.data())
def test_golden_manifest_bounds_hold_or_a_manifest_error(tmp_path, golden_manifest, data):
    """Tolerances, comparison modes and case parameters set to hostile values: load_manifest
    refuses the manifest, or every documented bound holds in what it accepted (ids, codes and
    counts compared exactly; rtol / atol finite in [0, 1e-3]; every number in params finite with
    |value| <= 4096, seeds <= 2^32 - 1, max_train_points <= 2^20)."""
    manifest = json.loads(json.dumps(golden_manifest))
    for _ in range(data.draw(st.integers(1, 3))):
        case = data.draw(st.sampled_from(manifest["cases"]))
        spec = case["outputs"][data.draw(st.sampled_from(sorted(case["outputs"])))]
        how = data.draw(st.sampled_from(["tolerance", "compare", "param"]))
        if how == "tolerance":
            spec[data.draw(st.sampled_from(["rtol", "atol"]))] = data.draw(HOSTILE_NUMBERS)
        elif how == "compare":
            spec["compare"] = data.draw(st.sampled_from(["close", "exact", "approx", None, 1]))
            spec.update(rtol=data.draw(HOSTILE_NUMBERS), atol=data.draw(HOSTILE_NUMBERS))
        else:
            _set_path(case["params"], data.draw(st.sampled_from(_leaves(case["params"]))),
                      data.draw(HOSTILE_NUMBERS))
    (tmp_path / golden.MANIFEST).write_text(json.dumps(manifest, allow_nan=True))
    try:
        accepted = golden.load_manifest(tmp_path)
    except golden.ManifestError as exc:
        assert "manifest.json" in str(exc)
        return
    for case in accepted["cases"]:
        for name, spec in case["outputs"].items():
            if np.dtype(spec["dtype"]).kind != "f":
                assert spec["compare"] == "exact", (case["name"], name, spec)
            if spec["compare"] == "close":
                for tol in ("rtol", "atol"):
                    v = spec[tol]
                    assert not isinstance(v, bool) and isinstance(v, (int, float)), (case["name"], name, spec)
                    assert np.isfinite(v) and 0 <= v <= 1e-3, (case["name"], name, spec)
        for path in _leaves(case["params"]):
            v = case["params"]
            for k in path:
                v = v[k]
            limit = {"seed": 2 ** 32 - 1, "hr_seed": 2 ** 32 - 1, "max_train_points": 1 << 20}.get(
                next((k for k in reversed(path) if isinstance(k, str)), None), 4096)
            for n in _numbers(v):
                assert np.isfinite(n) and abs(n) <= limit, (case["name"], path, n)


def _one_case_dir(directory, golden_manifest, name):
    """A golden directory holding one case: its file copied, the manifest cut down to it."""
    golden_manifest = json.loads(json.dumps(golden_manifest))  # the fixture stays as read
    case = next(c for c in golden_manifest["cases"] if c["name"] == name)
    shutil.copy(os.path.join(GOLDEN, case["file"]), directory / case["file"])
    manifest = dict(golden_manifest, cases=[case], files={case["file"]: golden_manifest["files"][case["file"]]})
    (directory / golden.MANIFEST).write_text(json.dumps(manifest))
    return manifest, case


def _check_in_time(directory, seconds=60):
    """golden.check(directory) on a thread -> its report; fails if it does not return in time."""
    import threading
    box = []
    worker = threading.Thread(target=lambda: box.append(golden.check(directory)), daemon=True)
    worker.start()
    worker.join(seconds)
    assert box, f"golden.check did not return within {seconds} s (a FIFO or device read?)"
    return box[0]


@settings(FUZZ, max_examples=12)
@given(data=st.data())
def test_golden_check_never_passes_a_tampered_or_irregular_file(tmp_path, golden_manifest, data):
    """A stored output changed beyond any allowed tolerance (the manifest's hash updated to
    match, its tolerances redrawn within the bounds), or the case file replaced by a FIFO, a
    symlink (to /dev/zero or to the right bytes), a directory or nothing: --check reports the
    case, returns (no blocking read), and exits 1."""
    import pathlib
    import tempfile
    out = pathlib.Path(tempfile.mkdtemp(dir=tmp_path))  # tmp_path is shared by the examples
    name = data.draw(st.sampled_from(CHEAP_CASES))
    manifest, case = _one_case_dir(out, golden_manifest, name)
    path = out / case["file"]
    how = data.draw(st.sampled_from(["value", "value", "fifo", "zero", "symlink", "directory", "missing"]))
    if how == "value":
        entries = members(path)
        output = data.draw(st.sampled_from(sorted(case["outputs"])))
        with np.load(path) as z:
            a = z[f"out_{output}"].copy()
        i = data.draw(st.integers(0, a.size - 1))
        flat = a.reshape(-1)
        if a.dtype.kind == "f":
            spec = case["outputs"][output]
            spec.update(rtol=data.draw(st.floats(0, 1e-3)), atol=data.draw(st.floats(0, 1e-3)))
            v = float(flat[i])
            flat[i] = data.draw(st.sampled_from([np.nan, np.inf, v + max(1.0, abs(v)) * data.draw(
                st.sampled_from([1e-2, -1e-2, 1.0, 1e3]))]))
        else:
            flat[i] += data.draw(st.integers(1, 5))
        entries[f"out_{output}.npy"] = npy_bytes(a)
        write_zip(path, entries)
        manifest["files"][case["file"]] = golden._sha256(path.read_bytes())
        (out / golden.MANIFEST).write_text(json.dumps(manifest))
    else:
        path.unlink()
        if how == "fifo":
            os.mkfifo(path)
        elif how == "zero":
            path.symlink_to("/dev/zero")
        elif how == "symlink":
            path.symlink_to(os.path.join(GOLDEN, case["file"]))
        elif how == "directory":
            path.mkdir()
    report = _check_in_time(out)
    assert report[name], (how, report)
    assert golden.main(["--check", str(out)]) == 1


# ------------------------------------------------------------------ vector files

VECTOR_EXTS = (".fvecs", ".ivecs", ".bvecs", ".fbin", ".ibin", ".u8bin", ".npy")


def _header_lie(ext, n, d, payload):
    if ext in (".fvecs", ".ivecs", ".bvecs"):
        return int(d % 2 ** 32).to_bytes(4, "little") + payload
    if ext == ".npy":
        return lying_npy((n, d), "<f4", payload)
    return int(n % 2 ** 32).to_bytes(4, "little") + int(d % 2 ** 32).to_bytes(4, "little") + payload


@pytest.mark.parametrize("ext", VECTOR_EXTS)
@FUZZ
@given(n=st.sampled_from([0, 1, 2, 2 ** 20, 2 ** 31 - 1, 2 ** 32 - 1]),
       d=st.sampled_from([0, 1, 2, 3, 2 ** 20, 2 ** 31 - 1, 2 ** 32 - 1]),
       payload=st.binary(max_size=64) | st.sampled_from([b"\x00\x00\xc0\x7f" * 4, b"\x00\x00\x80\x7f" * 8]))
def test_vector_file_headers_never_overallocate(tmp_path, ext, n, d, payload):
    path = tmp_path / f"v{ext}"
    path.write_bytes(_header_lie(ext, n, d, payload))
    for mmap in (False, True):
        check_load(lambda p: io.load_vectors(p, mmap=mmap), path)


@FUZZ
@given(data=st.data())
def test_hdf5_lies_never_overallocate(tmp_path, data):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "a.hdf5"
    with h5py.File(path, "w") as f:
        for name in ("train", "test", "neighbors", "distances"):
            how = data.draw(st.sampled_from(["ok", "unwritten", "compressed", "scalar", "missing", "text"]))
            if how == "ok":
                f.create_dataset(name, data=np.ones((2, 3), np.int32 if name == "neighbors" else np.float32))
            elif how == "unwritten":
                f.create_dataset(name, shape=(data.draw(st.sampled_from([2, 2 ** 24, 2 ** 34])), 3),
                                 dtype=np.float32, chunks=(2, 3))
            elif how == "compressed":
                f.create_dataset(name, data=np.zeros((data.draw(st.integers(1, 5000)), 3), np.float32),
                                 compression="gzip")
            elif how == "scalar":
                f.create_dataset(name, data=1.0)
            elif how == "text":
                f.create_dataset(name, data=np.array([b"ab"]))
        if data.draw(st.booleans()):
            f.attrs["distance"] = data.draw(st.sampled_from(["euclidean", "angular", 3]))
    check_load(io.read_hdf5, path)
