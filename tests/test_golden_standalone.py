"""tools/golden_check.py: a NumPy-only checker that runs as a plain script (no adanns_ref on the
path) and passes on tests/golden/, fails on a tampered copy and on wrong results."""
import io
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tools", "golden_check.py")
GOLDEN = os.path.join(ROOT, "tests", "golden")


def _run(*args, cwd):
    # -I: isolated mode (no cwd / PYTHONPATH on sys.path), so adanns_ref cannot be imported
    return subprocess.run([sys.executable, "-I", SCRIPT, *args], cwd=cwd, capture_output=True, text=True)


def test_script_does_not_import_the_package():
    source = open(SCRIPT, encoding="utf-8").read()
    imports = [line.split() for line in source.splitlines() if line.startswith(("import ", "from "))]
    modules = {word.strip(",") for words in imports for word in words[1:]} - {"as", "np"}
    assert modules == {"hashlib", "json", "os", "sys", "numpy"}  # standard library and NumPy only
    assert len(source.splitlines()) <= 75


def test_passes_on_the_golden_set_and_as_its_own_results(tmp_path):
    r = _run(GOLDEN, cwd=tmp_path)
    assert r.returncode == 0 and "0 failed" in r.stdout, r.stdout + r.stderr
    r = _run(GOLDEN, GOLDEN, cwd=tmp_path)
    assert r.returncode == 0, r.stdout


def _rewrite(path, name, change):
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    arrays[name] = change(arrays[name].copy())
    with zipfile.ZipFile(path, "w") as zf:
        for k, a in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, a, allow_pickle=False)
            zf.writestr(k + ".npy", buf.getvalue())


def _bump(a):
    a.flat[0] += 1
    return a


def test_fails_on_a_tampered_copy(tmp_path):
    copy = tmp_path / "golden"
    shutil.copytree(GOLDEN, copy)
    _rewrite(copy / "flat_l2_padding.npz", "out_I", _bump)
    r = _run(str(copy), cwd=tmp_path)
    assert r.returncode == 1 and "FAIL flat_l2_padding.npz" in r.stdout and "SHA-256" in r.stdout


def test_fails_on_wrong_results(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(GOLDEN, results)
    _rewrite(results / "pq_nbits8.npz", "out_codes", _bump)
    r = _run(GOLDEN, str(results), cwd=tmp_path)
    assert r.returncode == 1 and "out_codes: 1 of" in r.stdout
    os.remove(results / "kmeans_l2.npz")
    r = _run(GOLDEN, str(results), cwd=tmp_path)
    assert "out_centroids: missing" in r.stdout
