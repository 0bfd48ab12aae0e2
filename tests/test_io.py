"""Vector file formats: round trips, every corruption case, fuzzing, and faiss's own readers."""
import os
import struct
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from adanns_ref import io
from adanns_ref.io import vecs

RNG = np.random.default_rng(0)
X_FLOAT = RNG.standard_normal((9, 5)).astype(np.float32)
X_INT = RNG.integers(-(2 ** 31), 2 ** 31, size=(9, 5), dtype=np.int64)
X_BYTE = RNG.integers(0, 256, size=(9, 7), dtype=np.int64)

# extension -> (writer, reader, data, dtype read back)
FORMATS = {
    ".fvecs": (io.write_fvecs, io.read_fvecs, X_FLOAT, np.float32),
    ".ivecs": (io.write_ivecs, io.read_ivecs, X_INT, np.int32),
    ".bvecs": (io.write_bvecs, io.read_bvecs, X_BYTE, np.uint8),
    ".fbin": (io.write_fbin, io.read_fbin, X_FLOAT, np.float32),
    ".ibin": (io.write_ibin, io.read_ibin, X_INT, np.int32),
    ".u8bin": (io.write_u8bin, io.read_u8bin, X_BYTE, np.uint8),
    ".npy": (io.write_npy, io.read_npy, X_FLOAT, np.float32),
}
TEXMEX = (".fvecs", ".ivecs", ".bvecs")
BIN = (".fbin", ".ibin", ".u8bin")


def _write_bytes(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


# ------------------------------------------------------------------ round trips
@pytest.mark.parametrize("mmap", [False, True])
@pytest.mark.parametrize("ext", list(FORMATS))
def test_round_trip(tmp_path, ext, mmap):
    writer, reader, x, dtype = FORMATS[ext]
    path = tmp_path / f"v{ext}"
    writer(path, x)
    for got in (reader(path, mmap=mmap), io.load_vectors(path, mmap=mmap)):
        assert got.dtype == dtype and got.shape == x.shape
        np.testing.assert_array_equal(got, x.astype(dtype))
        if mmap:
            assert isinstance(got, np.memmap) and not got.flags.writeable
            with pytest.raises(ValueError, match="read-only"):
                got[0, 0] = 0
        else:
            assert got.flags.c_contiguous and got.flags.writeable


def test_extension_dispatch_is_case_insensitive(tmp_path):
    path = tmp_path / "V.FVECS"
    io.write_fvecs(path, X_FLOAT)
    np.testing.assert_array_equal(io.load_vectors(path), X_FLOAT)


def test_texmex_layout_is_dim_then_values(tmp_path):
    io.write_bvecs(tmp_path / "a.bvecs", [[1, 2, 3], [4, 5, 6]])
    assert (tmp_path / "a.bvecs").read_bytes() == struct.pack("<i3B", 3, 1, 2, 3) + struct.pack("<i3B", 3, 4, 5, 6)


def test_bin_layout_is_header_then_values(tmp_path):
    io.write_fbin(tmp_path / "a.fbin", [[1.5, -2.0]])
    assert (tmp_path / "a.fbin").read_bytes() == struct.pack("<IIff", 1, 2, 1.5, -2.0)


def test_faiss_contrib_reads_our_files_and_we_read_its(tmp_path):
    vecs_io = pytest.importorskip("faiss.contrib.vecs_io")
    io.write_fvecs(tmp_path / "ours.fvecs", X_FLOAT)
    io.write_ivecs(tmp_path / "ours.ivecs", X_INT)
    io.write_bvecs(tmp_path / "ours.bvecs", X_BYTE)
    np.testing.assert_array_equal(vecs_io.fvecs_read(str(tmp_path / "ours.fvecs")), X_FLOAT)
    np.testing.assert_array_equal(vecs_io.ivecs_read(str(tmp_path / "ours.ivecs")), X_INT)
    np.testing.assert_array_equal(vecs_io.bvecs_mmap(str(tmp_path / "ours.bvecs")), X_BYTE)
    vecs_io.fvecs_write(str(tmp_path / "theirs.fvecs"), X_FLOAT)
    vecs_io.ivecs_write(str(tmp_path / "theirs.ivecs"), X_INT.astype(np.int32))
    np.testing.assert_array_equal(io.read_fvecs(tmp_path / "theirs.fvecs"), X_FLOAT)
    np.testing.assert_array_equal(io.read_ivecs(tmp_path / "theirs.ivecs"), X_INT)


def test_hdf5_round_trip(tmp_path):
    pytest.importorskip("h5py")
    nbr = RNG.integers(0, 9, size=(3, 4))
    dist = RNG.random((3, 4))
    io.write_hdf5(tmp_path / "d.hdf5", X_FLOAT, X_FLOAT[:3], nbr, dist, distance="angular")
    data = io.read_hdf5(tmp_path / "d.hdf5")
    assert data.distance == "angular"
    np.testing.assert_array_equal(data.train, X_FLOAT)
    np.testing.assert_array_equal(data.test, X_FLOAT[:3])
    np.testing.assert_array_equal(data.neighbors, nbr)
    np.testing.assert_array_equal(data.distances, dist.astype(np.float32))
    np.testing.assert_array_equal(io.load_vectors(tmp_path / "d.hdf5"), X_FLOAT)
    os.replace(tmp_path / "d.hdf5", tmp_path / "d.h5")
    np.testing.assert_array_equal(io.load_vectors(tmp_path / "d.h5"), X_FLOAT)
    with pytest.raises(ValueError, match="mmap=True is not supported for HDF5"):
        io.load_vectors(tmp_path / "d.h5", mmap=True)


def test_hdf5_reads_bytes_distance_attribute(tmp_path):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "b.hdf5", "w") as f:  # as some ann-benchmarks files store it
        for name, a in (("train", X_FLOAT), ("test", X_FLOAT[:2]),
                        ("neighbors", np.zeros((2, 3), np.int32)), ("distances", np.zeros((2, 3), np.float32))):
            f.create_dataset(name, data=a)
        f.attrs["distance"] = np.bytes_(b"euclidean")
    assert io.read_hdf5(tmp_path / "b.hdf5").distance == "euclidean"


# ------------------------------------------------------------------ empty files
@pytest.mark.parametrize("mmap", [False, True])
@pytest.mark.parametrize("ext", TEXMEX)
def test_zero_byte_texmex_is_zero_vectors_of_unknown_dim(tmp_path, ext, mmap):
    writer, reader, _, dtype = FORMATS[ext]
    path = _write_bytes(tmp_path / f"e{ext}", b"")
    got = reader(path, mmap=mmap)
    assert got.shape == (0, 0) and got.dtype == dtype
    writer(tmp_path / f"w{ext}", np.zeros((0, 4), dtype))
    assert os.path.getsize(tmp_path / f"w{ext}") == 0


@pytest.mark.parametrize("mmap", [False, True])
@pytest.mark.parametrize("ext", BIN + (".npy",))
def test_zero_rows_keep_their_dim(tmp_path, ext, mmap):
    writer, reader, _, dtype = FORMATS[ext]
    writer(tmp_path / f"z{ext}", np.zeros((0, 4), dtype))
    assert reader(tmp_path / f"z{ext}", mmap=mmap).shape == (0, 4)


@pytest.mark.parametrize("ext", BIN)
def test_zero_byte_bin_is_an_error(tmp_path, ext):
    with pytest.raises(ValueError, match="too short for the 8-byte header"):
        FORMATS[ext][1](_write_bytes(tmp_path / f"e{ext}", b""))


# ------------------------------------------------------------------ TEXMEX corruption
@pytest.mark.parametrize("dim", [0, -3])
def test_texmex_nonpositive_dim(tmp_path, dim):
    path = _write_bytes(tmp_path / "a.fvecs", struct.pack("<i", dim) + b"\0" * 12)
    with pytest.raises(ValueError, match=rf"dim {dim} at byte offset 0 must be > 0"):
        io.read_fvecs(path)


@pytest.mark.parametrize("mmap", [False, True])
def test_texmex_row_with_other_dim(tmp_path, mmap):
    io.write_ivecs(tmp_path / "a.ivecs", np.arange(12).reshape(4, 3))
    raw = bytearray((tmp_path / "a.ivecs").read_bytes())
    raw[2 * 16: 2 * 16 + 4] = struct.pack("<i", 5)  # row 2 claims dim 5; size still fits
    path = _write_bytes(tmp_path / "b.ivecs", bytes(raw))
    with pytest.raises(ValueError, match="row 2 at byte offset 32 has dim 5, row 0 has dim 3"):
        io.read_ivecs(path, mmap=mmap)


def test_texmex_dim_check_spans_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(vecs, "_DIM_CHECK_ROWS", 4)
    io.write_bvecs(tmp_path / "a.bvecs", np.zeros((11, 2), np.uint8))
    raw = bytearray((tmp_path / "a.bvecs").read_bytes())
    raw[9 * 6: 9 * 6 + 4] = struct.pack("<i", 7)
    with pytest.raises(ValueError, match="row 9 at byte offset 54 has dim 7"):
        io.read_bvecs(_write_bytes(tmp_path / "b.bvecs", bytes(raw)))


@pytest.mark.parametrize("mmap", [False, True])
@pytest.mark.parametrize("ext", TEXMEX)
def test_texmex_truncated_last_record(tmp_path, ext, mmap):
    writer, reader, x, _ = FORMATS[ext]
    writer(tmp_path / f"a{ext}", x)
    raw = (tmp_path / f"a{ext}").read_bytes()
    record = len(raw) // len(x)
    path = _write_bytes(tmp_path / f"t{ext}", raw[:-1])
    with pytest.raises(ValueError, match=rf"at byte offset {record * (len(x) - 1)} are not a whole record"):
        reader(path, mmap=mmap)


def test_texmex_shorter_than_dim_field(tmp_path):
    with pytest.raises(ValueError, match="too short for the int32 dim"):
        io.read_fvecs(_write_bytes(tmp_path / "a.fvecs", b"\x01\x00"))


def test_texmex_dim_larger_than_file(tmp_path):
    path = _write_bytes(tmp_path / "a.fvecs", struct.pack("<i", 2 ** 30) + b"\0" * 8)
    with pytest.raises(ValueError, match="byte offset 0 are not a whole record"):
        io.read_fvecs(path)


# ------------------------------------------------------------------ big-ann corruption
def test_bin_dim_zero(tmp_path):
    with pytest.raises(ValueError, match="d = 0 at byte offset 4"):
        io.read_fbin(_write_bytes(tmp_path / "a.fbin", struct.pack("<II", 3, 0)))


@pytest.mark.parametrize("mmap", [False, True])
@pytest.mark.parametrize("ext", BIN)
def test_bin_truncated_payload(tmp_path, ext, mmap):
    writer, reader, x, _ = FORMATS[ext]
    writer(tmp_path / f"a{ext}", x)
    raw = (tmp_path / f"a{ext}").read_bytes()
    path = _write_bytes(tmp_path / f"t{ext}", raw[:-3])
    with pytest.raises(ValueError, match=rf"header n=9, d={x.shape[1]} needs {len(raw)} bytes .* byte offset {len(raw) - 3}"):
        reader(path, mmap=mmap)


@pytest.mark.parametrize("ext", BIN)
def test_bin_trailing_bytes(tmp_path, ext):
    writer, reader, x, _ = FORMATS[ext]
    writer(tmp_path / f"a{ext}", x)
    raw = (tmp_path / f"a{ext}").read_bytes()
    with pytest.raises(ValueError, match=rf"2 trailing bytes at byte offset {len(raw)}"):
        reader(_write_bytes(tmp_path / f"t{ext}", raw + b"xx"))


def test_bin_header_n_larger_than_payload(tmp_path):
    path = _write_bytes(tmp_path / "a.u8bin", struct.pack("<II", 2 ** 32 - 1, 2 ** 32 - 1) + b"\0" * 4)
    with pytest.raises(ValueError, match="truncated or the header is wrong"):
        io.read_u8bin(path, mmap=True)


# ------------------------------------------------------------------ .npy corruption
def test_npy_not_2d(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(4, np.float32))
    with pytest.raises(ValueError, match=r"shape \(4,\), expected 2-D"):
        io.read_npy(tmp_path / "a.npy")


def test_npy_object_array_is_refused_not_unpickled(tmp_path):
    np.save(tmp_path / "a.npy", np.array([[{"a": 1}]], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="dtype object .*nothing is unpickled"):
        io.read_npy(tmp_path / "a.npy")


def test_npy_complex_is_refused(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((2, 2), np.complex64))
    with pytest.raises(ValueError, match="complex64 is not a real numeric"):
        io.read_npy(tmp_path / "a.npy")


@pytest.mark.parametrize("mmap", [False, True])
def test_npy_truncated(tmp_path, mmap):
    io.write_npy(tmp_path / "a.npy", X_FLOAT)
    raw = (tmp_path / "a.npy").read_bytes()
    with pytest.raises(ValueError, match=rf"truncated at byte offset {len(raw) - 4}"):
        io.read_npy(_write_bytes(tmp_path / "t.npy", raw[:-4]), mmap=mmap)


def test_npy_trailing_bytes(tmp_path):
    io.write_npy(tmp_path / "a.npy", X_FLOAT)
    raw = (tmp_path / "a.npy").read_bytes()
    with pytest.raises(ValueError, match=rf"trailing bytes at byte offset {len(raw)}"):
        io.read_npy(_write_bytes(tmp_path / "t.npy", raw + b"\0"))


def test_npz_named_npy(tmp_path):
    with open(tmp_path / "a.npy", "wb") as f:
        np.savez(f, x=X_FLOAT)
    with pytest.raises(ValueError, match="bad header"):
        io.read_npy(tmp_path / "a.npy")


# ------------------------------------------------------------------ HDF5 corruption
def _h5(tmp_path, drop=None, attr="euclidean", test_rows=3):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "c.hdf5"
    with h5py.File(path, "w") as f:
        for name, a in (("train", X_FLOAT), ("test", X_FLOAT[:test_rows]),
                        ("neighbors", np.zeros((3, 2), np.int32)), ("distances", np.zeros((3, 2), np.float32))):
            if name != drop:
                f.create_dataset(name, data=a)
        if attr is not None:
            f.attrs["distance"] = attr
    return path


def test_hdf5_missing_dataset(tmp_path):
    with pytest.raises(ValueError, match="no dataset 'neighbors'"):
        io.read_hdf5(_h5(tmp_path, drop="neighbors"))


def test_hdf5_missing_distance_attribute(tmp_path):
    with pytest.raises(ValueError, match="attribute 'distance'"):
        io.read_hdf5(_h5(tmp_path, attr=None))


def test_hdf5_neighbors_rows_must_match_test(tmp_path):
    with pytest.raises(ValueError, match="Q = 2 test rows"):
        io.read_hdf5(_h5(tmp_path, test_rows=2))


def test_hdf5_not_hdf5(tmp_path):
    pytest.importorskip("h5py")
    with pytest.raises(ValueError, match="not a readable HDF5 file"):
        io.read_hdf5(_write_bytes(tmp_path / "a.hdf5", b"not hdf5 at all"))


def test_hdf5_without_h5py_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)  # makes `import h5py` raise ImportError
    with pytest.raises(ImportError, match=r"pip install h5py.*\[hdf5\]"):
        io.read_hdf5(tmp_path / "a.hdf5")


def test_write_hdf5_bad_distance(tmp_path):
    pytest.importorskip("h5py")
    with pytest.raises(ValueError, match="distance must be one of"):
        io.write_hdf5(tmp_path / "a.hdf5", X_FLOAT, X_FLOAT[:3], np.zeros((3, 2), int),
                      np.zeros((3, 2)), distance="cosine")


# ------------------------------------------------------------------ dispatch and writers
def test_unknown_extension_lists_known_ones(tmp_path):
    with pytest.raises(ValueError, match=r"unknown vector file extension '\.txt'; known: \.fvecs.*\.h5"):
        io.load_vectors(tmp_path / "a.txt")


@pytest.mark.parametrize("writer", [io.write_bvecs, io.write_u8bin])
@pytest.mark.parametrize("bad", [256, -1])
def test_byte_writers_refuse_out_of_range(tmp_path, writer, bad):
    with pytest.raises(ValueError, match=rf"holds {bad}, outside the uint8 range 0\.\.255"):
        writer(tmp_path / "a", np.array([[0, bad]]))


@pytest.mark.parametrize("writer", [io.write_ivecs, io.write_ibin])
def test_int_writers_refuse_out_of_int32(tmp_path, writer):
    with pytest.raises(ValueError, match="outside the int32 range"):
        writer(tmp_path / "a", np.array([[2 ** 31]]))


@pytest.mark.parametrize("writer", [io.write_ivecs, io.write_ibin, io.write_bvecs, io.write_u8bin])
def test_int_writers_refuse_floats(tmp_path, writer):
    with pytest.raises(TypeError, match="must be an integer array"):
        writer(tmp_path / "a", np.zeros((2, 2)))


@pytest.mark.parametrize("writer", [w for w, *_ in FORMATS.values()])
def test_writers_refuse_1d(tmp_path, writer):
    with pytest.raises(ValueError, match="2-D"):
        writer(tmp_path / "a", np.zeros(3, np.uint8))


@pytest.mark.parametrize("writer", [io.write_fvecs, io.write_fbin, io.write_ivecs, io.write_u8bin])
def test_writers_refuse_zero_columns(tmp_path, writer):
    with pytest.raises(ValueError, match="column|d >= 1"):
        writer(tmp_path / "a", np.zeros((2, 0), np.uint8))


@pytest.mark.parametrize("writer", [io.write_fvecs, io.write_fbin])
def test_float_writers_refuse_nan(tmp_path, writer):
    with pytest.raises(ValueError, match="NaN or Inf"):
        writer(tmp_path / "a", np.array([[0.0, np.nan]]))


def test_write_npy_refuses_objects(tmp_path):
    with pytest.raises(TypeError, match="real numeric"):
        io.write_npy(tmp_path / "a.npy", np.array([[None]], dtype=object))


def test_failed_write_leaves_no_file(tmp_path):
    with pytest.raises(ValueError):
        io.write_bvecs(tmp_path / "a.bvecs", np.array([[300]]))
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ fuzzing
READERS = {ext: reader for ext, (_, reader, _, _) in FORMATS.items()}
READERS[".hdf5"] = lambda path, mmap=False: io.read_hdf5(path)


def _valid_bytes(ext, tmp):
    path = os.path.join(tmp, "valid" + ext)
    if ext == ".hdf5":
        pytest.importorskip("h5py")
        io.write_hdf5(path, X_FLOAT, X_FLOAT[:2], np.zeros((2, 3), np.int32), np.zeros((2, 3)))
    else:
        FORMATS[ext][0](path, FORMATS[ext][2])
    with open(path, "rb") as f:
        return f.read()


def _parses_or_value_error(reader, path, data):
    _write_bytes(path, data)
    for mmap in (False, True):
        try:
            out = reader(path, mmap=mmap)
        except ValueError:
            continue
        assert isinstance(out, (np.ndarray, io.AnnBenchmarksData))
        if isinstance(out, np.ndarray):
            assert out.ndim == 2


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("ext", list(READERS))
@FUZZ
@given(data=st.binary(max_size=200))
def test_random_bytes_parse_or_value_error(tmp_path, ext, data):
    _parses_or_value_error(READERS[ext], str(tmp_path / f"fuzz{ext}"), data)


@pytest.mark.parametrize("ext", list(READERS))
@FUZZ
@given(cut=st.floats(0, 1), flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=3))
def test_damaged_valid_files_parse_or_value_error(tmp_path, ext, cut, flips):
    raw = bytearray(_valid_bytes(ext, str(tmp_path)))
    for where, value in flips:
        raw[min(int(where * len(raw)), len(raw) - 1)] = value
    raw = bytes(raw[: int(cut * len(raw))])
    _parses_or_value_error(READERS[ext], str(tmp_path / f"fuzz{ext}"), raw)
