"""Evaluation: per-size retrieval vs brute force, adaptive classification, funnels, reports."""
import numpy as np
import pytest

from adanns_ref.funnel.funnel import funnel_search
from mrl_ref.data import load_fashion_mnist
from mrl_ref.evaluate import (THRESHOLD_GRID, adaptive_classification, adaptive_classify, default_funnels,
                              evaluate_model, fit_adaptive_thresholds, funnel_retrieval, knn_retrieval,
                              linear_accuracy)
from mrl_ref.train import train_mrl


def _brute_prefix(x, d):
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    x = x[:, :d]
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute_knn(db, q, d, k):
    """Reference ids: float64 squared L2 on re-normalised prefixes, ties to the smaller id."""
    a, b = _brute_prefix(q.astype(np.float64), d), _brute_prefix(db.astype(np.float64), d)
    dist = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return np.array([np.lexsort((np.arange(len(b)), row))[:k] for row in dist])


def _brute_map(I, db_labels, q_labels, k):
    aps = []
    for ids, label in zip(I, q_labels):
        hits = db_labels[ids[:k]] == label
        precision = np.cumsum(hits) / np.arange(1, k + 1)
        n_rel = min(k, int(np.sum(db_labels == label)))
        aps.append((precision * hits).sum() / n_rel if n_rel else 0.0)
    return float(np.mean(aps))


@pytest.fixture(scope="module")
def clusters():
    """Gaussian clusters in 16 dims whose class signal lives in the first coordinates."""
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((4, 16)) * np.linspace(3, 0.1, 16)
    y_db, y_q = rng.integers(0, 4, 300), rng.integers(0, 4, 40)
    db = np.abs(centers[y_db] + rng.standard_normal((300, 16))).astype(np.float32)
    q = np.abs(centers[y_q] + rng.standard_normal((40, 16))).astype(np.float32)
    return db, y_db, q, y_q


def test_knn_retrieval_matches_brute_force(clusters):
    db, y_db, q, y_q = clusters
    rows = knn_retrieval(db, y_db, q, y_q, [2, 4, 16], k=10)
    assert [r["dim"] for r in rows] == [2, 4, 16]
    for row in rows:
        I = _brute_knn(db, q, row["dim"], 10)
        assert row["top1"] == pytest.approx(np.mean(y_db[I[:, 0]] == y_q))
        assert row["map@10"] == pytest.approx(_brute_map(I, y_db, y_q, 10))
        assert row["mflops"] == pytest.approx(row["dim"] * 300 / 1e6)
    assert knn_retrieval(db, y_db, q, y_q, [16], k=10, mode="adanns")[0]["map@10"] <= rows[-1]["map@10"]


def test_linear_accuracy_per_size():
    y = np.array([0, 1, 2, 1])
    logits = [np.eye(3)[[0, 1, 2, 2]], np.eye(3)[[0, 1, 2, 1]]]
    assert linear_accuracy(logits, y) == [0.75, 1.0]


def _cascade_logits(rng, n=400):
    """Size 1 is confident and right on an easy half, size 2 is right almost everywhere."""
    y = rng.integers(0, 3, n)
    easy = rng.random(n) < 0.5
    small = rng.standard_normal((n, 3)) * 0.3
    small[easy, y[easy]] += rng.uniform(1.0, 4.0, easy.sum())
    big = rng.standard_normal((n, 3)) * 0.3
    big[np.arange(n), y] += rng.uniform(0.5, 3.0, n)
    large = big.copy()
    large[np.arange(n), y] += 1.0
    return [small.astype(np.float32), big.astype(np.float32), large.astype(np.float32)], y


def _reference_thresholds(logits, y, grid):
    out = []
    for g in range(len(logits) - 1):
        p = np.exp(logits[g] - logits[g].max(1, keepdims=True))
        conf = (p / p.sum(1, keepdims=True)).max(1)
        best, best_t = -1.0, None
        for t in grid:  # strictly better only: the first (smallest) maximiser wins
            pred = np.where(conf > t, logits[g].argmax(1), logits[g + 1].argmax(1))
            acc = np.mean(pred == y)
            if acc > best:
                best, best_t = acc, t
        out.append(best_t)
    return np.array(out)


def test_threshold_fit_matches_a_direct_grid_search():
    logits, y = _cascade_logits(np.random.default_rng(1))
    t = fit_adaptive_thresholds(logits, y)
    np.testing.assert_array_equal(t, _reference_thresholds(logits, y, THRESHOLD_GRID))
    assert THRESHOLD_GRID[0] == 0.1 and THRESHOLD_GRID[-1] == 1.0 and THRESHOLD_GRID.size == 100


def test_cascade_exits_and_expected_dim():
    logits, y = _cascade_logits(np.random.default_rng(2))
    pred, dims = adaptive_classify(logits, (4, 8, 16), [0.0, 0.0])  # max softmax > 0 always: exit at 4
    np.testing.assert_array_equal(pred, logits[0].argmax(1))
    assert np.all(dims == 4)
    pred, dims = adaptive_classify(logits, (4, 8, 16), [1.0, 1.0])  # never confident: run to D
    np.testing.assert_array_equal(pred, logits[2].argmax(1))
    assert np.all(dims == 16)
    hold, rest = slice(0, 200), slice(200, None)
    report = adaptive_classification([lg[hold] for lg in logits], y[hold], [lg[rest] for lg in logits],
                                     y[rest], (4, 8, 16))
    assert 4 < report["expected_dim"] < 16
    assert sum(report["exit_fraction"]) == pytest.approx(1.0)
    assert report["expected_dim"] == pytest.approx(np.dot(report["exit_fraction"], (4, 8, 16)))
    assert report["accuracy"] >= linear_accuracy([lg[rest] for lg in logits], y[rest])[0]


def test_funnel_retrieval_reports_through_funnel_search(clusters):
    db, y_db, q, y_q = clusters
    stages = [(2, 50), (4, 20), (16, 10)]
    row = funnel_retrieval(db, y_db, q, y_q, stages)
    _, I, flops = funnel_search(db, q, stages)
    assert row["top1"] == pytest.approx(np.mean(y_db[I[:, 0]] == y_q))
    assert row["map@10"] == pytest.approx(_brute_map(I, y_db, y_q, 10))
    assert row["mflops"] == pytest.approx((2 * 300 + 4 * 50 + 16 * 20) / 1e6)
    single = funnel_retrieval(db, y_db, q, y_q, [(16, 10)])
    assert single["top1"] == pytest.approx(knn_retrieval(db, y_db, q, y_q, [16])[0]["top1"])


def test_default_funnels_follow_the_paper_shapes():
    assert default_funnels([8, 16, 32, 64, 128, 256]) == [
        [(16, 200), (256, 10)], [(16, 200), (32, 100), (64, 50), (128, 25), (256, 10)]]
    assert default_funnels([8, 32]) == [[(8, 200), (32, 10)]]
    assert default_funnels([32]) == []


def test_evaluate_model_on_a_tiny_trained_model():
    X, y = load_fashion_mnist("train", subset="embedded", flatten=True)
    Xq, yq = load_fashion_mnist("test", subset="embedded", flatten=True)
    pick = np.random.default_rng(0).choice(X.shape[0], 500, replace=False)
    model = train_mrl(X[pick], y[pick], [4, 8, 16], hidden=(32,), epochs=3, batch_size=32, lr=0.2,
                      warmup=0.5, progress=False)
    report = evaluate_model(model, X[pick], y[pick], Xq[:300], yq[:300], funnels=[[(4, 50), (16, 10)]])
    assert [r["dim"] for r in report["per_size"]] == [4, 8, 16]
    for r in report["per_size"]:
        assert 0.1 < r["top1"] <= 1
        assert 0 <= r["map@10"] <= 1 and 0 <= r["linear_top1"] <= 1
    ac = report["adaptive_classification"]
    assert 4 <= ac["expected_dim"] <= 16 and len(ac["thresholds"]) == 2
    assert report["funnels"][0]["mflops"] == pytest.approx((4 * 500 + 16 * 50) / 1e6)
    again = evaluate_model(model, X[pick], y[pick], Xq[:300], yq[:300], funnels=[[(4, 50), (16, 10)]])
    assert again == report


def test_bad_evaluation_inputs(clusters):
    db, y_db, q, y_q = clusters
    logits, y = _cascade_logits(np.random.default_rng(3), 20)
    with pytest.raises(ValueError, match="2 thresholds"):
        adaptive_classify(logits, (4, 8, 16), [0.5])
    with pytest.raises(ValueError, match="nesting has 2 sizes"):
        adaptive_classify(logits, (4, 16), [0.5, 0.5])
    with pytest.raises(ValueError, match="same"):
        fit_adaptive_thresholds([logits[0], logits[1][:10]], y)
    with pytest.raises(ValueError, match="entries but"):
        fit_adaptive_thresholds(logits, y[:5])
    with pytest.raises(ValueError, match="grid"):
        fit_adaptive_thresholds(logits, y, grid=[])
    with pytest.raises(ValueError, match="non-empty list"):
        linear_accuracy([], y)
    with pytest.raises(ValueError, match="mAP@10"):
        funnel_retrieval(db, y_db, q, y_q, [(4, 50), (16, 5)])
    with pytest.raises(ValueError, match="columns"):
        knn_retrieval(db, y_db, q[:, :8], y_q, [4])
    with pytest.raises(ValueError, match="strictly increasing"):
        knn_retrieval(db, y_db, q, y_q, [8, 4])
    with pytest.raises(ValueError, match="entries but"):
        knn_retrieval(db, y_db[:10], q, y_q, [4])
