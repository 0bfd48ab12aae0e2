"""The conformance grid under pytest: the same cases and checks as `python -m adanns_ref.conformance --quick`."""
import json

import pytest

from adanns_ref import conformance
from adanns_ref.conformance import compare

pytest.importorskip("faiss")


@pytest.mark.parametrize("case", conformance.grid(quick=True), ids=lambda case: case.id)
def test_conformance(case):
    results = conformance.run_case(case)
    assert results, f"{case.id} ran no checks"
    failed = [r for r in results if not r.passed]
    assert not failed, "\n".join(conformance.format_table(failed))


def test_quick_grid_covers_every_component_and_the_issue_axes():
    cases = conformance.grid(quick=True)
    assert {c.component for c in cases} == set(conformance.CHECKS)
    params = [c.params for c in cases]
    assert {p.get("nbits") for p in params} >= {4, 8}
    assert {p.get("metric") for p in params} >= {"l2", "ip"}
    assert any(p.get("far_lists") for p in params) and any(p.get("dup") for p in params)
    assert any(p.get("gemm") for p in params) and any(p.get("d", 2) % 2 for p in params)
    full = conformance.grid()
    assert {c.id for c in cases} < {c.id for c in full} and len({c.id for c in full}) == len(full)


def test_cli_prints_the_table_and_writes_the_json_summary(tmp_path, capsys):
    path = tmp_path / "out" / "summary.json"
    assert conformance.main(["--quick", "--only", "metrics", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    header = [cell.strip() for cell in out.splitlines()[0].split("|")]
    assert header == ["component", "case", "check", "result", "max deviation"]
    assert "metrics" in out and "FAIL" not in out
    summary = json.loads(path.read_text())
    assert summary["grid"] == "quick" and summary["failed"] == 0
    assert summary["checks"] == len(summary["results"]) == summary["components"]["metrics"]["checks"]
    assert set(summary["results"][0]) == {"component", "case", "check", "passed", "max_deviation", "message"}


def test_cli_exits_nonzero_and_names_the_failure(monkeypatch, capsys):
    def failing(case, **params):
        return [conformance.Result("metrics", case, "made up", False, 0.5, "ids differ")]
    monkeypatch.setitem(conformance.CHECKS, "metrics", failing)
    assert conformance.main(["--quick", "--only", "metrics"]) == 1
    out = capsys.readouterr().out
    assert "| FAIL" in out and "FAIL metrics n600-d14 made up: ids differ" in out
    assert json.loads(out[out.index("{"):])["failed"] == 1


def test_comparisons_report_deviation_and_first_mismatch():
    import numpy as np
    D = np.array([[0.0, 1.0, 1.0]], np.float32)
    I = np.array([[3, 4, 5]])
    assert compare.knn((D, I), (D, I[:, [0, 2, 1]])) == (0.0, None)  # a tie group as a set
    dev, msg = compare.knn((D, I), (D + np.float32(0.5), I))
    assert dev == 0.5 and "rank 0" in msg
    dev, msg = compare.codes(np.array([[1, 2]], np.uint8), np.array([[1, 7]], np.uint8))
    assert dev == 5 and "codes differ" in msg
    dev, msg = compare.arrays(np.zeros((2, 2)), np.zeros((2, 3)))
    assert dev == float("inf") and "shapes differ" in msg
