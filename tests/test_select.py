import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from adanns_ref.evaluation.select import best_under_budget, pareto_front, select_on_validation

ROWS = [
    {"config": "a", "flops": 10, "top1": 0.50},
    {"config": "b", "flops": 20, "top1": 0.60},
    {"config": "c", "flops": 15, "top1": 0.40},  # dominated by a
    {"config": "d", "flops": 30, "top1": 0.60},  # dominated by b (same accuracy, more cost)
    {"config": "e", "flops": 40, "top1": 0.70},
]


def test_pareto_front_hand_example():
    assert [r["config"] for r in pareto_front(ROWS)] == ["a", "b", "e"]
    assert pareto_front(ROWS)[0] is ROWS[0]  # the same dicts, not copies
    assert pareto_front([]) == []


def _dominated(r, rows, x, y):
    return any(s[x] <= r[x] and s[y] >= r[y] and (s[x] < r[x] or s[y] > r[y]) for s in rows)


@settings(deadline=None, max_examples=60)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), max_size=25))
def test_pareto_front_matches_definition(points):
    rows = [{"id": i, "ms": x, "map10": y} for i, (x, y) in enumerate(points)]
    front = pareto_front(rows, x="ms", y="map10")
    expected = [r for r in rows if not _dominated(r, rows, "ms", "map10")]
    assert sorted(r["id"] for r in front) == sorted(r["id"] for r in expected)
    xs = [r["ms"] for r in front]
    assert xs == sorted(xs)
    # Along the front accuracy never decreases as cost grows.
    ys = [r["map10"] for r in front]
    assert ys == sorted(ys)


def test_best_under_budget_picks_highest_metric_within_budget():
    assert best_under_budget(ROWS, 25)["config"] == "b"
    assert best_under_budget(ROWS, 20)["config"] == "b"  # the budget is inclusive
    assert best_under_budget(ROWS, 19.9)["config"] == "a"
    assert best_under_budget(ROWS, math.inf)["config"] == "e"


def test_best_under_budget_ties_go_to_lower_cost_then_first_row():
    rows = [{"config": "x", "bytes": 32, "top1": 0.6},
            {"config": "y", "bytes": 16, "top1": 0.6},
            {"config": "z", "bytes": 16, "top1": 0.6}]
    assert best_under_budget(rows, 64, on="bytes")["config"] == "y"


def test_best_under_budget_raises_when_nothing_fits():
    with pytest.raises(ValueError, match="no row has flops <= budget 5 .*cheapest row has flops=10"):
        best_under_budget(ROWS, 5)
    with pytest.raises(ValueError, match="no rows were given"):
        best_under_budget([], 5)


def test_select_on_validation_reports_the_test_metric_of_the_validation_choice():
    val = [{"d": 16, "flops": 10, "top1": 0.70},
           {"d": 32, "flops": 20, "top1": 0.69},
           {"d": 64, "flops": 40, "top1": 0.75}]
    test = [{"d": 64, "flops": 41, "top1": 0.74},
            {"d": 16, "flops": 10, "top1": 0.65},
            {"d": 32, "flops": 20, "top1": 0.71}]  # better on test, but val chose d=16
    out = select_on_validation(val, test, budgets=[25, 50], on="flops", key="d")
    assert [r["key"] for r in out] == [(16,), (64,)]
    assert out[0]["val_top1"] == 0.70 and out[0]["test_top1"] == 0.65
    assert out[1]["test_flops"] == 41.0 and out[1]["test_row"] is test[0]
    assert out[0]["budget"] == 25.0


def test_select_on_validation_errors():
    val = [{"d": 16, "flops": 10, "top1": 0.7}]
    with pytest.raises(ValueError, match=r"configuration \(16,\) chosen on validation .* no row in rows_test"):
        select_on_validation(val, [{"d": 32, "flops": 10, "top1": 0.7}], [20], key="d")
    with pytest.raises(ValueError, match="two rows with key"):
        select_on_validation(val + val, val, [20], key="d")
    with pytest.raises(ValueError, match="lacks key field"):
        select_on_validation(val, val, [20], key=("d", "nprobe"))
    with pytest.raises(ValueError, match="no row has flops <= budget 5"):
        select_on_validation(val, val, [5], key="d")


@pytest.mark.parametrize("call, exc, match", [
    (lambda: pareto_front([{"flops": 1}]), ValueError, r"rows\[0\] has no field 'top1'"),
    (lambda: pareto_front([{"flops": 1, "top1": float("nan")}]), ValueError, "finite number"),
    (lambda: pareto_front([{"flops": "1", "top1": 0.5}]), TypeError, "must be a number"),
    (lambda: pareto_front([[1, 0.5]]), TypeError, "must be a dict"),
    (lambda: best_under_budget(ROWS, float("nan")), ValueError, "budget is NaN"),
    (lambda: best_under_budget(ROWS, "10"), TypeError, "budget must be a number"),
    (lambda: best_under_budget(ROWS, 10, on="ms"), ValueError, "has no field 'ms'"),
    (lambda: select_on_validation(ROWS, ROWS, [10], key=()), ValueError, "at least one field"),
])
def test_bad_inputs(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_select_picks_an_hnsw_configuration_only_when_it_is_best_under_the_budget():
    """hnsw_rows next to exact-search rows: under a budget that an HNSW row fits with a higher
    recall than every exact row within it, select chooses HNSW; with a budget that admits exact
    search at full D (recall 1), it does not."""
    from adanns_ref.core.cost import bytes_per_vector_hnsw, exact_flops
    from adanns_ref.indices.hnsw.index import HNSWIndex
    from adanns_ref.evaluation.sweeps import hnsw_rows
    from adanns_ref.evaluation.metrics import knn_recall
    from adanns_ref.search.knn import knn_search
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2000, 32)).astype(np.float32)
    xq = rng.standard_normal((50, 32)).astype(np.float32)
    _, gt = knn_search(xq, x, 10)
    index = HNSWIndex(32, M=8, ef_construction=32, normalize=False)
    index.add(x)
    rows = hnsw_rows(index, xq, gt, 10, [(8, 8), (8, 32), (32, 32)], ef_searches=(16, 64))
    for d in (4, 8, 16, 32):   # exact search on the d-prefix
        _, I = knn_search(np.ascontiguousarray(xq[:, :d]), np.ascontiguousarray(x[:, :d]), 10)
        rows.append({"index": "flat", "config": f"flat d={d}", "flops": exact_flops(d, len(x)),
                     "bytes": 4 * d, "recall": knn_recall(gt, I, 10, 10)})
    assert len({r["config"] for r in rows}) == len(rows)
    hnsw32 = [r for r in rows if r["config"].startswith("hnsw M=8 d_c=32 d_s=32")]
    assert rows[-1]["recall"] == 1.0 and all(r["flops"] < exact_flops(32, len(x)) for r in hnsw32)
    budget = max(r["flops"] for r in rows if r["index"] != "flat")
    chosen = best_under_budget(rows, budget, on="flops", metric="recall")
    assert chosen["index"] in ("hnsw", "adanns-hnsw") and chosen["recall"] > 0.9
    assert best_under_budget(rows, exact_flops(32, len(x)), on="flops", metric="recall")["index"] == "flat"
    assert hnsw32[0]["bytes"] == bytes_per_vector_hnsw(32, 8) > 4 * 32 + 4 * 16
    picks = select_on_validation(rows, rows, [budget], on="flops", key="config", metric="recall")
    assert picks[0]["key"] == (chosen["config"],)
