"""End-to-end test of `python -m experiments.reproduce --preset tiny` and of its stage cache."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments.reproduce.stage import Pipeline, StageResult, code_fingerprint, imported_modules

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENTS = ["exp1_dims", "exp2_adaptive_cls", "exp3_retrieval", "exp4_ivf", "exp5_opq", "exp6_budget",
               "exp7_hnsw", "exp8_quant"]
VERDICTS = {"reproduced", "not reproduced", "inconclusive", "vacuous at this scale",
            "not applicable at this scale", "not applicable at these budgets"}


def _run(out, *extra):
    proc = subprocess.run([sys.executable, "-m", "experiments.reproduce", "--preset", "tiny",
                           "--out", str(out), *extra], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stderr


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("repro")
    first = _run(out)
    mtimes = {p: os.path.getmtime(p) for p in _cache_files(out)}
    second = _run(out)
    return out, first, second, mtimes


def _cache_files(out):
    root = os.path.join(out, "cache")
    return sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files)


def test_every_table_and_figure_exists(tiny_run):
    out = tiny_run[0]
    for name in EXPERIMENTS:
        csv = out / "tables" / f"{name}.csv"
        assert csv.exists() and len(csv.read_text().splitlines()) >= 2, f"{name}.csv empty"
        png = out / "figures" / f"{name}.png"
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{png} is not a PNG"
        assert b"config_hash=" in data, f"{png} lacks its config hash"
    report = (out / "report.md").read_text()
    for name in EXPERIMENTS:
        assert f"figures/{name}.png" in report


def test_every_claim_has_a_computed_verdict(tiny_run):
    out = tiny_run[0]
    claims = json.loads((out / "claims.json").read_text())["claims"]
    assert len(claims) >= 6
    for c in claims:
        assert c["verdict"] in VERDICTS, c
        assert c["rule"] and c["measured"] and c["paper"] and c["seeds"] == [0], c
        if c["verdict"] == "not applicable at this scale":
            continue
        assert c["verdict"] != "not applicable at these budgets", c["measured"]   # symmetric grids
        assert c["control_verdict"] in VERDICTS and c["controls"], c
        assert c["metric"] and (c["margin"] is None) == (c["rule"] == "beats"), c
        lo, hi = c["interval"]
        assert lo <= c["estimate"] <= hi and len(c["seed_gains"]) == 1, c
        for p in c["point_rows"]:
            assert p["interval"][0] <= p["estimate"] <= p["interval"][1] and p["verdict"] in VERDICTS
        if c["verdict"] != "reproduced":
            assert c["why_not"], c
    assert {c["id"] for c in claims} >= {"adaptive-classification", "mrl-vs-svd",
                                         "mrl-vs-random-projection", "adanns-ivf-vs-mr-ivf"}
    report = (out / "report.md").read_text()
    for c in claims:
        assert f"| {c['id']} |" in report


def _without_timing(claims):
    """claims.json rows without their timing columns (the measured wall-clock ratio)."""
    return [{k: v for k, v in c.items() if k != "wall_clock"} for c in claims]


def test_two_runs_give_the_same_claims_apart_from_timing(tiny_run, tmp_path):
    """A second, independent run of the tiny preset (--force, another directory, the models
    trained in 2 worker processes): the same claims.json apart from the timing columns
    (configurations are chosen by cost, never by measured time), the same trained bits, and
    --force retrains each model once (in a worker), not a second time in the parent."""
    import hashlib

    first = json.loads((tiny_run[0] / "claims.json").read_text())
    log = _run(tmp_path, "--force", "--train-jobs", "2")
    second = json.loads((tmp_path / "claims.json").read_text())
    assert _without_timing(first["claims"]) == _without_timing(second["claims"])
    stages = sorted(d for d in os.listdir(tiny_run[0] / "cache") if d.startswith("train_"))
    assert stages and f"training {len(stages)} models in 2 worker processes" in log
    for stage in stages:
        digest = [hashlib.sha256((out / "cache" / stage / "arrays.npz").read_bytes()).hexdigest()
                  for out in (tiny_run[0], tmp_path)]
        assert digest[0] == digest[1], stage
        assert log.count(f"{stage}: running") == 1 and f"{stage}: cached" in log, stage


def test_rerun_skips_every_cached_stage(tiny_run):
    out, first, second, mtimes = tiny_run
    assert "running" in first
    stages = [line for line in second.splitlines() if line.startswith("[reproduce]") and
              (": cached" in line or ": running" in line)]
    assert stages, second
    assert all(": cached" in line for line in stages), "\n".join(stages)
    assert {p: os.path.getmtime(p) for p in _cache_files(out)} == mtimes


def test_tables_record_the_stage_hash(tiny_run):
    out = tiny_run[0]
    manifest = json.loads((out / "cache" / "exp4_ivf" / "manifest.json").read_text())
    payload = json.loads((out / "cache" / "exp4_ivf" / "exp4_ivf.json").read_text())
    assert payload["config_hash"] == manifest["config_hash"]
    assert payload["rows"], "exp4 has no rows"


# ---- the cache itself, on a toy stage (fast) ----

def _toy(pipe, value, calls):
    def compute(ctx):
        calls.append(value)
        return StageResult(tables={"toy": [{"v": value}]}, arrays={"a": np.arange(3) * value})
    return pipe.run("toy", {"value": value}, compute)


def test_stage_cache_hit_miss_and_tamper(tmp_path):
    calls = []
    _toy(Pipeline(tmp_path), 1, calls)
    res = _toy(Pipeline(tmp_path), 1, calls)
    assert calls == [1] and res.tables["toy"] == [{"v": 1}]
    assert np.array_equal(res.arrays["a"], [0, 1, 2])
    _toy(Pipeline(tmp_path), 2, calls)          # new configuration -> recomputed
    assert calls == [1, 2]
    (tmp_path / "tables" / "toy.csv").write_text("v\n999\n")   # tampered output -> recomputed
    _toy(Pipeline(tmp_path), 2, calls)
    assert calls == [1, 2, 2]
    _toy(Pipeline(tmp_path, force=True), 2, calls)              # --force -> recomputed
    assert calls == [1, 2, 2, 2]


def test_stage_with_unknown_dependency_raises(tmp_path):
    with pytest.raises(ValueError, match="depends on 'missing'"):
        Pipeline(tmp_path).run("x", {}, lambda ctx: StageResult(), deps=["missing"])


def test_bad_preset_is_rejected(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "experiments.reproduce", "--preset", "huge",
                           "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode != 0 and "invalid choice" in proc.stderr


def test_bad_train_jobs_is_rejected(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "experiments.reproduce", "--preset", "tiny",
                           "--train-jobs", "0", "--out", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "--train-jobs must be >= 1, got 0" in proc.stderr


def test_report_environment_does_not_need_faiss(monkeypatch):
    """The main job installs without the test extras, so the report must not import faiss."""
    import builtins
    import importlib.metadata

    from experiments.reproduce import report as _repro_report

    real_import, real_version = builtins.__import__, importlib.metadata.version

    def no_faiss_import(name, *args, **kwargs):
        if name == "faiss" or name.startswith("faiss."):
            raise ModuleNotFoundError("No module named 'faiss'")
        return real_import(name, *args, **kwargs)

    def version(dist):
        if dist == "faiss-cpu":
            raise importlib.metadata.PackageNotFoundError(dist)
        return real_version(dist)

    monkeypatch.setattr(builtins, "__import__", no_faiss_import)
    monkeypatch.setattr(importlib.metadata, "version", version)
    env = dict(_repro_report.environment())
    assert env["faiss (peer, not used for results)"] == "not installed"


def test_hnsw_grid_from_the_preset_and_its_default_rule():
    from experiments.reproduce.graph import hnsw_grid, rescore_dims
    from experiments.reproduce.main import PRESETS
    full = hnsw_grid(dict(PRESETS["full"]))
    assert full["dims"] == [8, 16, 64] and rescore_dims(full, 16) == [16, 64]
    assert hnsw_grid({"nesting": [8, 16, 32, 64]})["ds"] == [8, 64]   # default: symmetric
    paper = {"nesting": [8, 16, 32, 64, 128, 256, 512, 1024, 2048]}   # no hnsw_* keys
    g = hnsw_grid(paper)
    assert g["dims"] == [64, 256, 2048] and (g["M"], g["efc"], g["efs"]) == (16, 40, [16, 64])
    assert rescore_dims(hnsw_grid(dict(paper, hnsw_dims=[32], hnsw_ds=[128, 2048])), 32) == [32, 128, 2048]
    with pytest.raises(ValueError, match="not nesting sizes"):
        hnsw_grid(dict(paper, hnsw_dims=[100]))


def test_svd_baseline_basis_is_the_top_right_singular_vectors():
    from experiments.reproduce.mrl import top_right_singular_vectors

    rng = np.random.default_rng(5)
    x = (rng.standard_normal((500, 40)) * np.arange(1, 41) ** -0.7).astype(np.float32)
    v = top_right_singular_vectors(x, 12)
    vt = np.linalg.svd(x.astype(np.float64), full_matrices=False)[2][:12]
    assert v.shape == (40, 12)
    np.testing.assert_allclose(np.abs(np.sum(v * vt.T, axis=0)), 1.0, atol=1e-9)  # same axes
    # projections differ at most by column signs, so every distance is the same
    pv, ps = x @ v, x @ vt.T
    np.testing.assert_allclose(np.abs(pv), np.abs(ps), atol=1e-9)


def test_code_fingerprint_follows_imports_transitively(tmp_path, monkeypatch):
    """A stage names its entry module; a kernel it reaches through imports (here lazily, inside a
    function, two modules away) still invalidates it, and an unrelated module does not."""
    pkg = tmp_path / "fp_pkg"
    (pkg / "kernels").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "entry.py").write_text("def run():\n    from .kernels import scan\n    return scan.f()\n")
    (pkg / "kernels" / "__init__.py").write_text("")
    (pkg / "kernels" / "scan.py").write_text("from ..util import g\n\ndef f():\n    return g()\n")
    (pkg / "util.py").write_text("def g():\n    return 1\n")
    (pkg / "other.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    roots = ("fp_pkg",)
    assert imported_modules(["fp_pkg.entry"], roots) == ["fp_pkg.entry", "fp_pkg.kernels.scan", "fp_pkg.util"]
    before = code_fingerprint(["fp_pkg.entry"], roots)
    (pkg / "other.py").write_text("X = 2\n")
    assert code_fingerprint(["fp_pkg.entry"], roots) == before
    (pkg / "util.py").write_text("def g():\n    return 2\n")
    assert code_fingerprint(["fp_pkg.entry"], roots) != before
    with pytest.raises(ImportError, match="fp_pkg.missing"):
        code_fingerprint(["fp_pkg.missing"], roots)
