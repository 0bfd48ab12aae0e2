"""The benchmark harness on a tiny size: every workload yields a row with numeric times or an
explicit reason, the reports are written, and the synthetic data has the promised structure.
No timing assertions: speed is what the harness measures, not what the tests check."""
import json

import numpy as np
import pytest

from experiments.benchmark import data as _bench_data, main as benchmark

pytest.importorskip("faiss", reason="the benchmark's peers need faiss")


@pytest.fixture(scope="module")
def tiny_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    assert benchmark.main(["--size", "tiny", "--threads", "1", "--out-dir", str(out)]) == 0
    with open(out / "benchmark_results.json") as f:
        result = json.load(f)
    return result, (out / "benchmark_results.md").read_text()


def test_every_workload_has_a_row_with_times_or_a_reason(tiny_result):
    result, _ = tiny_result
    keys = {r["key"] for r in result["rows"]}
    assert keys == {w.key for w in benchmark.WORKLOADS}
    for row in result["rows"]:
        assert row["threads"] == 1
        if row["status"] == "ok":
            for side in ("ours", "peer_timing"):
                t = row[side]
                assert 0 < t["min_s"] <= t["median_s"] <= t["max_s"], (row["workload"], t)
                assert t["first_s"] > 0
            assert row["ratio"] == pytest.approx(row["ours"]["median_s"] / row["peer_timing"]["median_s"])
            if row["bar"] is not None:
                assert row["pass"] == (row["ratio"] <= row["bar"])
            assert isinstance(row["quality"]["metric"], str)
        else:
            assert row["status"] in ("not available", "error")
            assert isinstance(row["reason"], str) and row["reason"], row


def test_report_header_and_rows(tiny_result):
    result, md = tiny_result
    machine = result["machine"]
    assert {"numpy", "numba", "faiss"} <= set(machine["versions"])
    assert "OPENBLAS_CORETYPE" in machine["env"] and machine["thread_pools"]
    assert result["reference"]["1"]["sgemm_gflops"] > 0
    for row in result["rows"]:
        assert row["workload"] in md
    assert "## 1 thread(s)" in md and "## Summary" in md


def test_recall_rows_report_quality_in_range(tiny_result):
    result, _ = tiny_result
    recall_rows = [r for r in result["rows"] if r["status"] == "ok"
                   and "recall" in r["quality"]["metric"]]
    assert recall_rows, "no recall row ran (exact k-NN and PQ should always be available)"
    for row in recall_rows:
        assert 0.0 <= row["quality"]["ours"] <= 1.0 and 0.0 <= row["quality"]["peer"] <= 1.0
    exact = [r for r in recall_rows if r["key"] == "exact_knn"]
    for row in exact:  # exact search on both sides must find the ground truth
        assert row["quality"]["ours"] == pytest.approx(1.0) and row["quality"]["peer"] == pytest.approx(1.0)


def test_synthetic_data_is_seeded_unit_norm_and_matryoshka_like():
    xb, xq, yb, yq = _bench_data.matryoshka_like(2000, 100, dim=64, n_clusters=10)
    xb2, xq2, _, _ = _bench_data.matryoshka_like(2000, 100, dim=64, n_clusters=10)
    assert np.array_equal(xb, xb2) and np.array_equal(xq, xq2)
    assert xb.dtype == np.float32 and xb.shape == (2000, 64) and xq.shape == (100, 64)
    np.testing.assert_allclose(np.linalg.norm(xb, axis=1), 1.0, rtol=1e-5)
    var = xb.var(axis=0)
    assert var[:8].mean() > 4 * var[-8:].mean()  # variance decays along the dims
    assert set(np.unique(yb)) <= set(range(10)) and len(np.unique(yb)) == 10
    other, _, _, _ = _bench_data.matryoshka_like(2000, 100, dim=64, n_clusters=10, seed=1)
    assert not np.array_equal(xb, other)


def test_ground_truth_matches_brute_force():
    rng = np.random.default_rng(3)
    xb = rng.standard_normal((500, 16)).astype(np.float32)
    xq = rng.standard_normal((37, 16)).astype(np.float32)
    D, I = _bench_data.exact_ground_truth(xq, xb, 7, block=10)
    full = ((xq[:, None, :].astype(np.float64) - xb[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(I, np.argsort(full, axis=1, kind="stable")[:, :7])
    np.testing.assert_allclose(D, np.sort(full, axis=1)[:, :7], rtol=1e-4, atol=1e-5)
    D, I = _bench_data.exact_ground_truth(xq, xb[:5], 7)  # k > N pads like faiss
    assert (I[:, 5:] == -1).all() and (D[:, 5:] == np.float32(3.4028235e38)).all()


def test_embeddings_file_too_small_is_refused(tmp_path):
    path = tmp_path / "emb.npy"
    np.save(path, np.ones((10, 128), dtype=np.float32))
    with pytest.raises(ValueError, match="needs n_db \\+ n_query"):
        _bench_data.load_embeddings(path, 8, 4)
    np.save(path, np.ones((20, 64), dtype=np.float32))
    with pytest.raises(ValueError, match="128-dim prefixes"):
        _bench_data.load_embeddings(path, 8, 4)


def test_embeddings_are_prefixed_and_split(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((30, 256)).astype(np.float32)
    np.save(tmp_path / "emb.npy", x)
    xb, xq = _bench_data.load_embeddings(tmp_path / "emb.npy", 20, 5)
    assert xb.shape == (20, 128) and xq.shape == (5, 128)
    np.testing.assert_allclose(np.linalg.norm(xq, axis=1), 1.0, rtol=1e-5)
    direction = x[20, :128] / np.linalg.norm(x[20, :128])
    np.testing.assert_allclose(xq[0], direction, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("argv, message", [
    (["--runs", "0"], "--runs must be >= 1"),
    (["--quick", "--size", "tiny"], "contradict"),
    (["--only", "nope"], "unknown workload"),
    (["--threads", "3"], "invalid choice"),
])
def test_bad_command_lines_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        benchmark.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
