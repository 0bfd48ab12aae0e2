"""One regression test per loader finding of issue 12 (sections 5 and 6): each file below once
crashed with another exception, allocated gigabytes, or was accepted though wrong."""
import json
import os
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from _loader_files import (LOADERS, check_load, lying_npy, members, npy_bytes, params_of, with_params,
                           write_valid_files, write_zip)

from adanns_ref.core import persist as _persist
from adanns_ref.golden import store as golden
from adanns_ref import io
from adanns_ref.core.persist import atomic_write_text, load_npz, read_npz, save_npz

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    return write_valid_files(str(tmp_path_factory.mktemp("valid")))


def _expect_error(load, path, match):
    error = check_load(load, path)
    assert error is not None, f"{path} was accepted"
    assert match in str(error), str(error)


# ------------------------------------------------------------------ section 5: huge allocations

def test_mrl_load_checks_sizes_before_building_the_model(valid, tmp_path):
    params = params_of(valid["MRLModel"])
    params["sizes"] = [50000, 50000, 8]  # 18.6 GiB of weights once built
    path = write_zip(tmp_path / "m.npz", with_params(members(valid["MRLModel"]), json.dumps(params)))
    _expect_error(LOADERS["MRLModel"], path, "param_0 is (6, 8), the architecture")


def test_npz_header_shape_is_checked_against_the_entry_size(valid, tmp_path):
    entries = members(valid["FlatIndex"])
    entries["xb.npy"] = lying_npy((2 ** 40, 16), np.float32, b"\0" * 64)  # claims 64 TiB
    path = write_zip(tmp_path / "f.npz", entries)
    _expect_error(LOADERS["FlatIndex"], path, "header shape (1099511627776, 16) float32 needs")


def test_unknown_compressed_entry_is_refused_unread(valid, tmp_path):
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members(valid["FlatIndex"]).items():
            zf.writestr(name, data)
        with zf.open("junk.npy", "w") as f:  # 64 MiB of zeros in about 64 KiB
            for _ in range(64):
                f.write(bytes(1 << 20))
    assert os.path.getsize(path) < 1 << 20
    _expect_error(LOADERS["FlatIndex"], path, "unexpected entry 'junk'")


def test_deflate_entry_claiming_more_than_deflate_can_expand_is_refused(valid, tmp_path):
    path = write_zip(tmp_path / "f.npz", members(valid["FlatIndex"]))
    raw = bytearray(path.read_bytes())
    at = raw.index(b"PK\x01\x02")  # central directory: patch xb.npy's uncompressed size to 2^31
    while raw[at + 46:at + 52] != b"xb.npy":
        at = raw.index(b"PK\x01\x02", at + 4)
    raw[at + 24:at + 28] = (2 ** 31).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    _expect_error(LOADERS["FlatIndex"], path, "more than its compression allows")


@pytest.mark.parametrize("cls", ["IVFIndex", "IVFPQIndex"])
def test_ivf_nlist_is_checked_against_the_offsets(valid, tmp_path, cls):
    params = params_of(valid[cls])
    params["nlist"] = 10 ** 10  # 74.5 GiB of offsets once constructed
    path = write_zip(tmp_path / "i.npz", with_params(members(valid[cls]), json.dumps(params)))
    _expect_error(LOADERS[cls], path, "nlist=10000000000 but offsets has 5 entries")


# ------------------------------------------------------------------ section 6: corrupt .npz

@pytest.mark.parametrize("shape", [(0, 2 ** 62), (2 ** 62, 0, 3)])
def test_empty_shape_beyond_the_address_space_is_a_value_error(valid, tmp_path, shape):
    entries = members(valid["FlatIndex"])
    entries["xb.npy"] = lying_npy(shape, np.float32, b"")  # 0 bytes, yet numpy cannot shape it
    path = write_zip(tmp_path / "f.npz", entries)
    _expect_error(LOADERS["FlatIndex"], path, f"invalid header shape {shape}")
    npy = tmp_path / "x.npy"
    npy.write_bytes(lying_npy(shape[:2], np.float32, b""))
    _expect_error(io.read_npy, npy, "invalid header shape")


def test_encrypted_entry_is_a_value_error(valid, tmp_path):
    path = write_zip(tmp_path / "e.npz", members(valid["FlatIndex"]), encrypt={"xb.npy"})
    _expect_error(LOADERS["FlatIndex"], path, "entry 'xb.npy' is encrypted")


def test_deeply_nested_params_are_a_value_error(valid, tmp_path):
    path = write_zip(tmp_path / "n.npz", with_params(members(valid["FlatIndex"]), "[" * 100_000 + "]" * 100_000))
    _expect_error(LOADERS["FlatIndex"], path, "corrupt __params__ (RecursionError")


@pytest.mark.parametrize("version", [np.array([1, 1]), np.array(1.7), np.array(True), np.array("1")])
def test_version_must_be_one_integer(valid, tmp_path, version):
    entries = members(valid["FlatIndex"])
    entries["__version__.npy"] = npy_bytes(version)
    path = write_zip(tmp_path / "v.npz", entries)
    _expect_error(LOADERS["FlatIndex"], path, "schema field __version__ must be a single integer")


@pytest.mark.parametrize("data", [os.urandom(300), b"\x93NUMPY" + os.urandom(50), b"PK\x03\x04" + os.urandom(80)])
def test_random_bytes_never_mention_allow_pickle(tmp_path, data):
    for name in ("r.npz", "r.npy"):
        (tmp_path / name).write_bytes(data)
    _expect_error(LOADERS["FlatIndex"], tmp_path / "r.npz", "not a readable")
    _expect_error(io.read_npy, tmp_path / "r.npy", "not a readable .npy file")


def test_big_endian_and_fortran_npz_members_come_back_native_c(tmp_path):
    path = tmp_path / "x.npz"
    a = np.arange(12, dtype=">f4").reshape(3, 4)
    write_zip(path, {"be.npy": npy_bytes(a), "f.npy": npy_bytes(np.asfortranarray(a.astype("<i8")))})
    arrays = read_npz(path, lambda n: True)
    for arr in arrays.values():
        assert arr.dtype.isnative and arr.flags.c_contiguous and arr.flags.writeable
        np.testing.assert_array_equal(arr, np.arange(12).reshape(3, 4))


def test_object_member_is_refused_without_unpickling(tmp_path):
    import io as pyio
    buf = pyio.BytesIO()
    np.lib.format.write_array(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    path = write_zip(tmp_path / "o.npz", {"o.npy": buf.getvalue()})
    with pytest.raises(ValueError, match="dtype object .*nothing is unpickled"):
        read_npz(path, lambda n: True)


def test_save_load_round_trip_still_exact(valid):
    params, arrays = LOADERS["ReproStageArrays"](valid["ReproStageArrays"])
    assert params == {"config_hash": "0" * 16}
    np.testing.assert_array_equal(arrays["ids"], np.arange(12).reshape(3, 4))
    for name in ("FlatIndex", "IVFIndex", "PQIndex", "IVFPQIndex", "MRLModel"):
        assert check_load(LOADERS[name], valid[name]) is None


# ------------------------------------------------------------------ reproduction cache

def _toy(out, calls):
    from experiments.reproduce.stage import Pipeline, StageResult

    def compute(ctx):
        calls.append(1)
        return StageResult(tables={"toy": [{"v": 1}]}, arrays={"a": np.arange(3)})
    return Pipeline(out).run("toy", {"v": 1}, compute)


@pytest.mark.parametrize("manifest", [b"[]", b"{}", b'{"config_hash": 5}', b"\xff\xfe\x00garbage",
                                      b"[" * 100_000, None])
def test_bad_cache_manifest_recomputes(tmp_path, manifest):
    calls = []
    _toy(tmp_path, calls)
    path = tmp_path / "cache" / "toy" / "manifest.json"
    if manifest is None:  # the right hash but missing keys
        good = json.loads(path.read_text())
        manifest = json.dumps({"config_hash": good["config_hash"]}).encode()
    path.write_bytes(manifest)
    result = _toy(tmp_path, calls)
    assert calls == [1, 1] and result.tables["toy"] == [{"v": 1}]
    assert json.loads(path.read_text())["files"]  # rewritten, so the next run is cached again
    _toy(tmp_path, calls)
    assert calls == [1, 1]


def test_cache_manifest_cannot_point_outside_the_output(tmp_path):
    calls = []
    _toy(tmp_path, calls)
    path = tmp_path / "cache" / "toy" / "manifest.json"
    m = json.loads(path.read_text())
    outside = tmp_path.parent / "outside.txt"
    outside.write_text("x")
    m["files"]["../outside.txt"] = _persist.sha256_file(outside)
    path.write_text(json.dumps(m))
    _toy(tmp_path, calls)
    assert calls == [1, 1]


# ------------------------------------------------------------------ golden --check

def test_golden_check_of_a_deep_manifest_exits_2(tmp_path):
    (tmp_path / golden.MANIFEST).write_text("[" * 100_000 + "]" * 100_000)
    run = subprocess.run([sys.executable, "-m", "adanns_ref.golden", "--check", str(tmp_path)],
                         capture_output=True, text=True, cwd=os.path.dirname(GOLDEN) + "/..")
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr and "not readable JSON (RecursionError" in run.stderr


@pytest.mark.parametrize("text", [b"\xff\xfe", b'{"format": "adanns-ref-golden", "version": 1.0}'])
def test_golden_unusable_manifests_are_manifest_errors(tmp_path, text):
    (tmp_path / golden.MANIFEST).write_bytes(text)
    with pytest.raises(golden.ManifestError):
        golden.load_manifest(tmp_path)


def test_golden_manifest_component_of_the_wrong_type_is_a_manifest_error(tmp_path):
    with open(os.path.join(GOLDEN, golden.MANIFEST), encoding="utf-8") as f:
        manifest = json.load(f)
    manifest["cases"][0]["component"] = []  # once a TypeError (unhashable) from the lookup
    (tmp_path / golden.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(golden.ManifestError, match="unknown component"):
        golden.load_manifest(tmp_path)


# ------------------------------------------------------------------ vector files

def _raw_fvecs(x):
    n, d = x.shape
    rows = np.empty(n, dtype=[("d", "<i4"), ("v", "<f4", (d,))])
    rows["d"], rows["v"] = d, x
    return rows.tobytes()


def _raw_fbin(x):
    return np.array(x.shape, "<u4").tobytes() + np.asarray(x, "<f4").tobytes()


@pytest.mark.parametrize("mmap", [False, True])
@pytest.mark.parametrize("ext", [".fvecs", ".fbin", ".npy"])
def test_readers_refuse_non_finite_like_the_writers(tmp_path, ext, mmap):
    x = np.ones((4, 3), np.float32)
    x[2, 1] = np.nan
    path = tmp_path / f"x{ext}"
    if ext == ".npy":
        np.save(path, x)
    else:
        path.write_bytes((_raw_fvecs if ext == ".fvecs" else _raw_fbin)(x))
    with pytest.raises(ValueError, match=f"{path}: row 2 holds NaN or Inf"):
        io.load_vectors(path, mmap=mmap)
    with pytest.raises(ValueError):  # the writers agree
        io.write_fvecs(tmp_path / "w.fvecs", x)
    np.testing.assert_array_equal(io.load_vectors(path, mmap=mmap, check_finite=False), x)


def test_hdf5_reader_refuses_non_finite(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "a.hdf5"
    with h5py.File(path, "w") as f:
        f.create_dataset("train", data=np.array([[1.0, np.inf]], np.float32))
        f.create_dataset("test", data=np.ones((1, 2), np.float32))
        f.create_dataset("neighbors", data=np.zeros((1, 1), np.int32))
        f.create_dataset("distances", data=np.zeros((1, 1), np.float32))
        f.attrs["distance"] = "euclidean"
    with pytest.raises(ValueError, match="train: row 0 holds NaN or Inf"):
        io.read_hdf5(path)
    assert np.isinf(io.read_hdf5(path, check_finite=False).train).any()


def test_hdf5_dataset_larger_than_its_storage_is_refused_unread(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "huge.hdf5"
    with h5py.File(path, "w") as f:  # never written: a fill value, 64 GiB when read
        f.create_dataset("train", shape=(2 ** 30, 16), dtype=np.float32, chunks=(1024, 16))
        for name in ("test", "neighbors", "distances"):
            f.create_dataset(name, data=np.zeros((1, 16), np.float32))
        f.attrs["distance"] = "euclidean"
    _expect_error(io.read_hdf5, path, "dataset 'train' claims shape (1073741824, 16)")


@pytest.mark.parametrize("order", ["big-endian", "Fortran"])
def test_npy_comes_back_native_c_and_mmap_refuses(tmp_path, order):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    path = tmp_path / "x.npy"
    np.save(path, x.astype(">f4") if order == "big-endian" else np.asfortranarray(x))
    out = io.read_npy(path)
    assert out.dtype == np.float32 and out.dtype.isnative and out.flags.c_contiguous
    np.testing.assert_array_equal(out, x)
    with pytest.raises(ValueError, match=f"{path}: stored {order}.*mmap=False"):
        io.read_npy(path, mmap=True)


@pytest.mark.parametrize("ext", [".fvecs", ".fbin", ".npy", ".hdf5"])
def test_device_named_like_a_vector_file_is_refused(tmp_path, ext):
    link = tmp_path / f"zero{ext}"
    os.symlink("/dev/zero", link)
    if ext == ".hdf5":
        pytest.importorskip("h5py")
    with pytest.raises(ValueError, match=f"{link}: not a regular file"):
        io.load_vectors(link)
    os.mkdir(tmp_path / f"dir{ext}")
    with pytest.raises(ValueError, match="not a regular file"):
        io.load_vectors(tmp_path / f"dir{ext}")


def test_missing_file_names_the_path(tmp_path):
    for ext in (".fvecs", ".npy", ".npz"):
        with pytest.raises(FileNotFoundError, match="nothere"):
            (read_npz if ext == ".npz" else io.load_vectors)(tmp_path / f"nothere{ext}", *(
                [lambda n: True] if ext == ".npz" else []))


# ------------------------------------------------------------------ stale temp files

def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temp_files_of_dead_runs_are_removed_on_the_next_write(tmp_path):
    old = time.time() - 2 * _persist.STALE_SECONDS
    dead, alive = _dead_pid(), os.getppid()
    names = {"stale": f".tmp-adanns-{dead}-abc.npz", "fresh": f".tmp-adanns-{dead}-def.npz",
             "alive": f".tmp-adanns-{alive}-ghi.npz", "foreign": ".tmp-xyz.npz", "user": "data.npz"}
    for key, name in names.items():
        (tmp_path / name).write_text("partial")
        if key != "fresh":
            os.utime(tmp_path / name, (old, old))
    save_npz(tmp_path / "index.npz", "T", 1, {}, {"a": np.ones(2)})
    left = set(os.listdir(tmp_path))
    assert names["stale"] not in left  # its writer is gone and it is old: removed
    assert {names["fresh"], names["alive"], names["foreign"], names["user"], "index.npz"} == left
    assert load_npz(tmp_path / "index.npz", "T", 1, {"a": (None, 1)})[1]["a"].tolist() == [1, 1]


def test_temp_files_carry_the_writer_pid(tmp_path):
    seen = []

    def write(tmp):
        seen.append(os.path.basename(tmp))
        with open(tmp, "w") as f:
            f.write("x")
    _persist.atomic_write(tmp_path / "a.txt", write)
    assert seen[0].startswith(f".tmp-adanns-{os.getpid()}-")
    atomic_write_text(tmp_path / "b.txt", "y")
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "b.txt"]
