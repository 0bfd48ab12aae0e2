import os

import numpy as np
import pytest

from adanns_ref.core.persist import atomic_write, atomic_write_text, load_npz, save_npz

REQ = {"a": ("float32", 2), "ids": ("int64", 1)}


def _save(path, **kw):
    arrays = {"a": np.ones((2, 3), np.float32), "ids": np.arange(4, dtype=np.int64)}
    arrays.update(kw)
    save_npz(path, "Thing", 1, {"d": 3}, arrays)


def test_round_trip(tmp_path):
    p = tmp_path / "x.npz"
    _save(p)
    params, arrays = load_npz(p, "Thing", 1, REQ)
    assert params == {"d": 3}
    np.testing.assert_array_equal(arrays["ids"], np.arange(4))
    assert [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")] == []


def test_wrong_kind_version_missing_and_dtype(tmp_path):
    p = tmp_path / "x.npz"
    _save(p)
    with pytest.raises(ValueError, match="expected a 'Other'"):
        load_npz(p, "Other", 1, REQ)
    with pytest.raises(ValueError, match="format version 1"):
        load_npz(p, "Thing", 2, REQ)
    with pytest.raises(ValueError, match="missing array 'codes'"):
        load_npz(p, "Thing", 1, {"codes": (None, None)}, optional=("a", "ids"))
    _save(p, ids=np.arange(4, dtype=np.int32))
    with pytest.raises(ValueError, match="dtype int32"):
        load_npz(p, "Thing", 1, REQ)


def test_truncated_and_foreign_files(tmp_path):
    p = tmp_path / "x.npz"
    _save(p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable"):
        load_npz(p, "Thing", 1, REQ)
    q = tmp_path / "plain.npz"
    np.savez(q, a=np.ones(2))
    with pytest.raises(ValueError, match="missing schema field"):
        load_npz(q, "Thing", 1, REQ)
    r = tmp_path / "obj.npz"
    np.savez(r, __kind__=np.array([{"x": 1}], dtype=object), __version__=1, __params__="{}")
    with pytest.raises(ValueError):
        load_npz(r, "Thing", 1, REQ)


def test_reserved_names_rejected(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        save_npz(tmp_path / "x.npz", "T", 1, {}, {"__kind__": np.ones(1)})


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    p = tmp_path / "out.txt"
    atomic_write_text(p, "old")

    def boom(tmp):
        with open(tmp, "w") as f:
            f.write("partial")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        atomic_write(p, boom)
    assert p.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["out.txt"]


def test_atomic_write_uses_normal_file_permissions(tmp_path):
    p = tmp_path / "perm.txt"
    atomic_write_text(p, "x")
    umask = os.umask(0)
    os.umask(umask)
    assert (p.stat().st_mode & 0o777) == (0o666 & ~umask)


def test_sha256_file_matches_hashlib(tmp_path):
    import hashlib

    from adanns_ref.core.persist import sha256_file
    data = bytes(range(256)) * 5000  # > 1 MiB block size
    p = tmp_path / "blob"
    p.write_bytes(data)
    assert sha256_file(p) == hashlib.sha256(data).hexdigest()
