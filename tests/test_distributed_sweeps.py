"""Sweeps on Dask: `python -m experiments.reproduce --dask local:2` and `tune(client=)` on a real
LocalCluster (2 worker processes) give the serial run's tables and choices, except the measured
wall-clock columns; where the run executed is reported and is no part of a stage's cache key."""
import csv
import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from adanns_ref import distributed as dist
from adanns_ref.tune.cli import main as tune_main  # noqa: E402
from adanns_ref.tune.run import tune  # noqa: E402
from test_distributed import client  # noqa: E402,F401  (the 2-worker LocalCluster fixture)
from test_reproduce import _run as _reproduce  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWEPT = ("exp4_ivf", "exp5_opq")
WALL_CLOCK = {"ms_per_query", "ms_repeats", "ms_1t", "ms_all", "build_s", "peak_mb"}


def _table_without_wall_clock(path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows, path
    return [{k: v for k, v in r.items() if k not in WALL_CLOCK} for r in rows]


@pytest.fixture(scope="module")
def serial_and_dask(tmp_path_factory):
    """A serial tiny run; then a copy of it whose exp4 / exp5 (and what depends on them) are
    dropped from the cache and recomputed on a LocalCluster of 2 worker processes."""
    serial = tmp_path_factory.mktemp("serial")
    _reproduce(serial)
    on_dask = tmp_path_factory.mktemp("dask") / "out"
    shutil.copytree(serial, on_dask)
    for stage in (*SWEPT, "exp6_budget", "figures"):
        shutil.rmtree(on_dask / "cache" / stage)
    err = _reproduce(on_dask, "--dask", "local:2")
    return serial, on_dask, err


@pytest.mark.parametrize("stage", SWEPT)
def test_reproduction_tables_on_dask_equal_the_serial_run(serial_and_dask, stage):
    serial, on_dask, err = serial_and_dask
    assert f"{stage}: cached" not in err  # really recomputed on the cluster
    tables = sorted(os.path.basename(p) for p in glob.glob(str(serial / "tables" / "*.csv")))
    assert f"{stage}.csv" in tables
    for name in tables:
        assert _table_without_wall_clock(on_dask / "tables" / name) == \
            _table_without_wall_clock(serial / "tables" / name), name
    if stage == "exp5_opq":  # nothing timed: byte-identical
        assert (on_dask / "tables" / "exp5_opq.csv").read_bytes() == \
            (serial / "tables" / "exp5_opq.csv").read_bytes()
    for path in glob.glob(str(serial / "cache" / stage / "*.npz")):  # per-query evidence
        a, b = np.load(path), np.load(on_dask / "cache" / stage / os.path.basename(path))
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{path}:{key}")
    # where it ran is not part of the stage's key
    hashes = [json.loads((run / "cache" / stage / "manifest.json").read_text())["config_hash"]
              for run in (serial, on_dask)]
    assert hashes[0] == hashes[1]


def test_reproduction_report_says_where_it_ran(serial_and_dask):
    serial, on_dask, _ = serial_and_dask
    assert "in-process, serial" in (serial / "report.md").read_text()
    assert "Dask LocalCluster, 2 worker processes" in (on_dask / "report.md").read_text()
    assert "Dask LocalCluster" not in (serial / "report.md").read_text()


def test_reproduction_rejects_a_bad_dask_spec(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "experiments.reproduce", "--preset", "tiny",
                           "--out", str(tmp_path), "--dask", "local:0"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "local:N with N >= 1" in proc.stderr


# ---- tune ----

N, D, NQ, K = 600, 16, 40, 10
BUDGETS = {"bytes": 72, "mflops": 0.5 * N * D / 1e6}


def _matryoshka_like(n, seed):
    scales = (1.0 / np.sqrt(np.arange(1, D + 1))).astype(np.float32)
    return (np.random.default_rng(seed).standard_normal((n, D)) * scales).astype(np.float32)


def _untimed(rows):
    """tune rows without their timed columns (faiss ms_* and numba_ms_*, build_s, peak_mb)."""
    return [{k: v for k, v in r.items()
             if k not in WALL_CLOCK and not k.startswith(("ms_", "numba_ms_"))} for r in rows]


def test_tune_on_dask_equals_the_serial_run(tmp_path, client):
    xb, xq = _matryoshka_like(N, 1), _matryoshka_like(NQ, 2)
    kw = dict(k=K, dims=[4, 8, 16], quick=True, budgets=BUDGETS, progress=None, repeats=1,
              timing_queries=20)
    serial = tune(xb, xq, str(tmp_path / "serial"), **kw)
    on_dask = tune(xb, xq, str(tmp_path / "dask"), client=client, where="a test cluster", **kw)
    assert len(serial["rows"]) > 10 and {r["family"] for r in serial["rows"]} >= {"ivf", "pq"}
    assert _untimed(on_dask["rows"]) == _untimed(serial["rows"])
    assert on_dask["info"]["pruned_sweep"] == serial["info"]["pruned_sweep"]
    for name in BUDGETS:  # chosen on recall within a cost budget: no timing involved
        assert on_dask["chosen"][name]["config"] == serial["chosen"][name]["config"]
    assert on_dask["overall"]["recall_val"] == serial["overall"]["recall_val"]
    assert on_dask["info"]["where"] == "a test cluster"
    md = (tmp_path / "dask" / "tune.md").read_text()
    assert "Run on a test cluster" in md and "not comparable with a quiet serial run" in md
    assert "Run in-process, serial." in (tmp_path / "serial" / "tune.md").read_text()


def test_map_configs_without_a_client_runs_in_process_in_order():
    calls = []
    out = dist.map_configs(None, lambda c, s: calls.append(c) or c * s, [3, 1, 2], 10)
    assert calls == []  # lazy: nothing runs before the caller asks
    assert list(out) == [30, 10, 20] and calls == [3, 1, 2]


def test_tune_cli_rejects_a_bad_dask_spec(tmp_path, capsys):
    xb, xq = _matryoshka_like(N, 1), _matryoshka_like(NQ, 2)
    np.save(tmp_path / "xb.npy", xb)
    np.save(tmp_path / "xq.npy", xq)
    code = tune_main(["--base", str(tmp_path / "xb.npy"), "--queries", str(tmp_path / "xq.npy"),
                      "--out", str(tmp_path / "out"), "--quick", "--dask", "local:two"])
    assert code == 2 and "local:N with N >= 1" in capsys.readouterr().err
