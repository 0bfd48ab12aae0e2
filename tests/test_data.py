"""Fashion-MNIST loading: IDX parsing, lookup order, verified download, the embedded subset."""
import gzip
import hashlib
import io as pyio
import os
import struct
import urllib.error
import urllib.request

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from experiments import make_embedded_subset as maker
from mrl_ref import data

REAL_DIR = data.SYSTEM_DIR
HAVE_REAL = all(os.path.isfile(os.path.join(REAL_DIR, n)) for names in data.FILES.values() for n in names)
needs_real = pytest.mark.skipif(not HAVE_REAL, reason=f"Fashion-MNIST not installed in {REAL_DIR} "
                                                      "(apt-get install dataset-fashion-mnist)")


def _idx_gz(path, magic, dims, payload):
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims)
    with gzip.open(path, "wb") as f:
        f.write(header + bytes(payload))
    return path


def _fake_split(directory, split="train", n=20, label_n=None, image_dims=(28, 28), max_label=9):
    """Synthetic but well-formed IDX files with the official names."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(n)
    images = rng.integers(0, 256, size=(n, *image_dims), dtype=np.uint8)
    labels = np.arange(label_n if label_n is not None else n, dtype=np.uint8) % (max_label + 1)
    image_name, label_name = data.FILES[split]
    _idx_gz(os.path.join(directory, image_name), 2051, (n, *image_dims), images.tobytes())
    _idx_gz(os.path.join(directory, label_name), 2049, (len(labels),), labels.tobytes())
    return images, labels


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No system copy, no env var, an empty cache: only what a test puts there exists."""
    monkeypatch.setattr(data, "SYSTEM_DIR", str(tmp_path / "system"))
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


# ------------------------------------------------------------------ IDX parsing
def test_read_idx_round_trip(tmp_path):
    payload = np.arange(24, dtype=np.uint8)
    got = data.read_idx(_idx_gz(tmp_path / "a.gz", 2051, (2, 3, 4), payload), magic=2051)
    assert got.dtype == np.uint8 and got.shape == (2, 3, 4)
    np.testing.assert_array_equal(got.ravel(), payload)


def test_read_idx_wrong_magic(tmp_path):
    path = _idx_gz(tmp_path / "a.gz", 2049, (3,), b"\0\1\2")
    with pytest.raises(ValueError, match="a.gz: IDX magic number 2049, expected 2051"):
        data.read_idx(path, magic=2051)


def test_read_idx_non_ubyte_type(tmp_path):
    path = _idx_gz(tmp_path / "a.gz", 0x0D01, (1,), b"\0" * 4)  # 0x0D = float
    with pytest.raises(ValueError, match="not an unsigned-byte IDX"):
        data.read_idx(path)


def test_read_idx_truncated_payload(tmp_path):
    path = _idx_gz(tmp_path / "a.gz", 2051, (2, 28, 28), b"\0" * (2 * 784 - 1))
    with pytest.raises(ValueError, match=r"a.gz: truncated: header \(2, 28, 28\) needs 1568 payload bytes, found 1567"):
        data.read_idx(path)


def test_read_idx_trailing_bytes(tmp_path):
    path = _idx_gz(tmp_path / "a.gz", 2049, (3,), b"\0" * 5)
    with pytest.raises(ValueError, match="a.gz: 2 trailing bytes"):
        data.read_idx(path)


def test_read_idx_truncated_header(tmp_path):
    with gzip.open(tmp_path / "a.gz", "wb") as f:
        f.write(struct.pack(">I", 2051) + b"\0\0\0\1")
    with pytest.raises(ValueError, match="truncated IDX header"):
        data.read_idx(tmp_path / "a.gz")


def test_read_idx_not_gzip(tmp_path):
    (tmp_path / "a.gz").write_bytes(b"plain bytes, not gzip")
    with pytest.raises(ValueError, match="a.gz: not a valid gzip file"):
        data.read_idx(tmp_path / "a.gz")


def test_read_idx_cut_gzip_stream(tmp_path):
    raw = _idx_gz(tmp_path / "a.gz", 2049, (1000,), np.arange(1000) % 7).read_bytes()
    (tmp_path / "b.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="b.gz: not a valid gzip file"):
        data.read_idx(tmp_path / "b.gz")


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.binary(max_size=64), compress=st.booleans())
def test_read_idx_random_bytes_parse_or_value_error(tmp_path, blob, compress):
    path = tmp_path / "fuzz.gz"
    path.write_bytes(gzip.compress(blob) if compress else blob)
    try:
        out = data.read_idx(path)
    except ValueError:
        return
    assert out.dtype == np.uint8 and out.size == len(blob) - 4 - 4 * out.ndim


# ------------------------------------------------------------------ loader on synthetic files
def test_load_from_explicit_root(isolated):
    images, labels = _fake_split(isolated / "root", "test", n=30)
    X, y = data.load_fashion_mnist("test", root=isolated / "root")
    assert X.dtype == np.uint8 and X.shape == (30, 28, 28) and y.dtype == np.uint8
    np.testing.assert_array_equal(X, images)
    np.testing.assert_array_equal(y, labels)
    Xf, _ = data.load_fashion_mnist("test", root=isolated / "root", flatten=True)
    assert Xf.dtype == np.float32 and Xf.shape == (30, 784)
    np.testing.assert_array_equal(Xf, images.reshape(30, -1) / np.float32(255))
    Xs, ys = data.load_fashion_mnist("test", root=isolated / "root", subset=7)
    np.testing.assert_array_equal(Xs, images[:7])
    np.testing.assert_array_equal(ys, labels[:7])


def test_flatten_maps_255_to_exactly_one(isolated):
    os.makedirs(isolated / "r")
    _idx_gz(isolated / "r" / "t10k-images-idx3-ubyte.gz", 2051, (1, 28, 28), np.full(784, 255, np.uint8))
    _idx_gz(isolated / "r" / "t10k-labels-idx1-ubyte.gz", 2049, (1,), b"\3")
    Xf, _ = data.load_fashion_mnist("test", root=isolated / "r", flatten=True)
    assert Xf.max() == 1.0 and Xf.min() == 1.0


def test_image_label_count_mismatch(isolated):
    _fake_split(isolated / "r", "train", n=5, label_n=4)
    with pytest.raises(ValueError, match="has 5 images but .*train-labels-idx1-ubyte.gz has 4 labels"):
        data.load_fashion_mnist("train", root=isolated / "r")


def test_wrong_image_size(isolated):
    _fake_split(isolated / "r", "train", n=3, image_dims=(28, 27))
    with pytest.raises(ValueError, match=r"images are \(28, 27\), expected \(28, 28\)"):
        data.load_fashion_mnist("train", root=isolated / "r")


def test_label_out_of_range(isolated):
    _fake_split(isolated / "r", "train", n=12, max_label=11)
    with pytest.raises(ValueError, match="label 11 outside 0..9"):
        data.load_fashion_mnist("train", root=isolated / "r")


def test_verify_checks_sha256_of_found_files(isolated):
    _fake_split(isolated / "r", "train", n=3)
    data.load_fashion_mnist("train", root=isolated / "r")  # structure is fine...
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz: SHA-256 .* != expected b0564c3e"):
        data.load_fashion_mnist("train", root=isolated / "r", verify=True)  # ...but not official


@pytest.mark.parametrize("split", ["val", "Train", None])
def test_bad_split(split):
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        data.load_fashion_mnist(split, subset="embedded")


@pytest.mark.parametrize("subset, exc, msg", [("small", ValueError, "subset must be None, 'embedded'"),
                                              (0, ValueError, "subset must be >= 1"),
                                              (-5, ValueError, "subset must be >= 1"),
                                              (2.5, TypeError, "subset must be an integer")])
def test_bad_subset(isolated, subset, exc, msg):
    _fake_split(isolated / "r", "train", n=3)
    with pytest.raises(exc, match=msg):
        data.load_fashion_mnist("train", root=isolated / "r", subset=subset)


def test_subset_larger_than_split(isolated):
    _fake_split(isolated / "r", "train", n=3)
    with pytest.raises(ValueError, match="subset=4 exceeds the 3 rows"):
        data.load_fashion_mnist("train", root=isolated / "r", subset=4)


# ------------------------------------------------------------------ lookup order
def _assert_how_to_get(message):
    for hint in ("apt-get install -y dataset-fashion-mnist", data.ENV_VAR, "download=True", 'subset="embedded"'):
        assert hint in message


def test_missing_everywhere_names_every_way_to_get_it(isolated):
    with pytest.raises(FileNotFoundError) as info:
        data.load_fashion_mnist("train")
    _assert_how_to_get(str(info.value))


def test_explicit_root_without_files_is_an_error_even_if_system_copy_exists(isolated):
    _fake_split(isolated / "system", "train", n=3)
    with pytest.raises(data.DatasetNotFoundError, match="root=.*empty.* does not contain") as info:
        data.load_fashion_mnist("train", root=isolated / "empty")
    _assert_how_to_get(str(info.value))


def test_env_var_wins_over_system_dir(isolated, monkeypatch):
    _fake_split(isolated / "system", "train", n=3)
    images, _ = _fake_split(isolated / "env", "train", n=4)
    monkeypatch.setenv(data.ENV_VAR, str(isolated / "env"))
    np.testing.assert_array_equal(data.load_fashion_mnist("train")[0], images)


def test_env_var_without_files_is_an_error(isolated, monkeypatch):
    _fake_split(isolated / "system", "train", n=3)
    monkeypatch.setenv(data.ENV_VAR, str(isolated / "nothing"))
    with pytest.raises(data.DatasetNotFoundError, match=r"\$FASHION_MNIST_DIR=.*nothing"):
        data.load_fashion_mnist("train")


def test_system_dir_then_cache(isolated):
    cached, _ = _fake_split(isolated / "cache" / "adanns-ref" / "fashion-mnist", "test", n=5)
    np.testing.assert_array_equal(data.load_fashion_mnist("test")[0], cached)
    system, _ = _fake_split(isolated / "system", "test", n=6)
    np.testing.assert_array_equal(data.load_fashion_mnist("test")[0], system)


def test_cache_dir_default_without_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data.cache_dir() == os.path.join(str(tmp_path), ".cache", "adanns-ref", "fashion-mnist")


# ------------------------------------------------------------------ download (urlopen patched)
class _Response(pyio.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _serve(monkeypatch, files, requested):
    def fake_urlopen(url, timeout=None):
        assert url.startswith(data.BASE_URL)
        name = url[len(data.BASE_URL):]
        requested.append(name)
        return _Response(files[name])
    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)


@needs_real
def test_download_into_cache_verifies_and_loads(isolated, monkeypatch):
    files = {n: open(os.path.join(REAL_DIR, n), "rb").read() for n in data.FILES["test"]}
    requested = []
    _serve(monkeypatch, files, requested)
    X, y = data.load_fashion_mnist("test", download=True)
    assert sorted(requested) == sorted(data.FILES["test"])  # only the requested split
    cache = data.cache_dir()
    assert cache.startswith(str(isolated / "cache"))
    assert sorted(os.listdir(cache)) == sorted(data.FILES["test"])  # no temporary files left
    X_real, y_real = data.load_fashion_mnist("test", root=REAL_DIR)
    np.testing.assert_array_equal(X, X_real)
    np.testing.assert_array_equal(y, y_real)
    requested.clear()
    data.load_fashion_mnist("test", download=True)  # already cached: no second fetch
    assert requested == []


@needs_real
def test_download_into_explicit_root(isolated, monkeypatch):
    files = {n: open(os.path.join(REAL_DIR, n), "rb").read() for n in data.FILES["test"]}
    _serve(monkeypatch, files, [])
    data.load_fashion_mnist("test", root=isolated / "mine", download=True)
    assert sorted(os.listdir(isolated / "mine")) == sorted(data.FILES["test"])


def test_download_hash_mismatch_deletes_and_raises(isolated, monkeypatch):
    corrupt = {n: b"corrupted payload" for names in data.FILES.values() for n in names}
    _serve(monkeypatch, corrupt, [])
    with pytest.raises(ValueError, match="SHA-256 .* != expected .*download deleted"):
        data.load_fashion_mnist("train", download=True)
    cache = data.cache_dir()
    assert not os.path.exists(cache) or os.listdir(cache) == []


def test_download_network_error_is_explained(isolated, monkeypatch):
    def offline(url, timeout=None):
        raise urllib.error.URLError("no route to host")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(ConnectionError, match='could not download .* subset="embedded"'):
        data.load_fashion_mnist("test", download=True)


# ------------------------------------------------------------------ real files
@needs_real
@pytest.mark.parametrize("split, n", [("train", 60000), ("test", 10000)])
def test_real_files(split, n):
    X, y = data.load_fashion_mnist(split, root=REAL_DIR, verify=True)
    assert X.shape == (n, 28, 28) and X.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(y, minlength=10), np.full(10, n // 10))


# ------------------------------------------------------------------ embedded subset
def test_embedded_file_matches_its_hash_and_size():
    raw = data._embedded_bytes()
    assert hashlib.sha256(raw).hexdigest() == data.EMBEDDED_SHA256
    assert len(raw) <= 5 * 1024 * 1024


@pytest.mark.parametrize("split, per_class", [("train", 600), ("test", 100)])
def test_embedded_subset_needs_no_files(isolated, split, per_class):
    X, y = data.load_fashion_mnist(split, subset="embedded")
    assert X.shape == (10 * per_class, 28, 28) and X.dtype == np.uint8 and y.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(y, minlength=10), np.full(10, per_class))
    Xf, _ = data.load_fashion_mnist(split, subset="embedded", flatten=True)
    assert Xf.shape == (10 * per_class, 784) and Xf.dtype == np.float32
    assert 0 <= Xf.min() and Xf.max() <= 1 and Xf.max() > 0.99


def test_embedded_metadata():
    arrays = data.load_embedded()
    assert list(arrays["source_files"]) == [n for s in ("train", "test") for n in data.FILES[s]]
    assert [data.SHA256[n] for n in arrays["source_files"]] == list(arrays["source_sha256"])
    for split in ("train", "test"):
        idx = arrays[f"{split}_indices"]
        assert idx.dtype == np.int64 and np.all(np.diff(idx) > 0)


@needs_real
@pytest.mark.parametrize("split", ["train", "test"])
def test_embedded_rows_are_the_first_per_class_of_the_real_files(split):
    arrays = data.load_embedded()
    X, y = data.load_fashion_mnist(split, root=REAL_DIR)
    idx = arrays[f"{split}_indices"]
    np.testing.assert_array_equal(arrays[f"{split}_images"], X[idx])
    np.testing.assert_array_equal(arrays[f"{split}_labels"], y[idx])
    per_class = data.EMBEDDED_PER_CLASS[split]
    expected = np.sort(np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(10)]))
    np.testing.assert_array_equal(idx, expected)


def test_tampered_embedded_file_is_refused(monkeypatch):
    raw = bytearray(data._embedded_bytes())
    raw[len(raw) // 2] ^= 0xFF
    monkeypatch.setattr(data, "_embedded_bytes", lambda: bytes(raw))
    with pytest.raises(ValueError, match="SHA-256 .* != EMBEDDED_SHA256 .* modified"):
        data.load_fashion_mnist("train", subset="embedded")


# ------------------------------------------------------------------ the builder script
def test_deterministic_npz_bytes_are_reproducible_and_loadable():
    arrays = {"b": np.arange(6, dtype=np.uint8).reshape(2, 3), "a": np.array(["x", "yz"])}
    first = maker.deterministic_npz_bytes(arrays)
    assert first == maker.deterministic_npz_bytes({k: v.copy() for k, v in arrays.items()})
    with np.load(pyio.BytesIO(first), allow_pickle=False) as z:
        assert z.files == ["b", "a"]
        np.testing.assert_array_equal(z["b"], arrays["b"])


def test_first_per_class_needs_enough_rows():
    with pytest.raises(ValueError, match="class 1 has only 1 rows, 2 requested"):
        maker.first_per_class(np.array([0, 0, 1, 2, 2]), per_class=2, num_classes=3)


@needs_real
def test_rebuilding_the_subset_gives_the_committed_arrays(tmp_path, capsys):
    digest = maker.main(["--root", REAL_DIR, "--out", str(tmp_path / "e.npz")])
    assert capsys.readouterr().out.strip() == digest
    assert hashlib.sha256((tmp_path / "e.npz").read_bytes()).hexdigest() == digest
    committed = data.load_embedded()
    with np.load(tmp_path / "e.npz", allow_pickle=False) as z:
        assert sorted(z.files) == sorted(committed)
        for name in z.files:
            np.testing.assert_array_equal(z[name], committed[name])
