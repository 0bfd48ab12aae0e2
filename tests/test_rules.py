"""The verdict rules of `experiments.reproduce.rules`, driven by synthetic rows of known truth."""
import numpy as np
import pytest

from experiments.reproduce import rules

N = 4000


def _binary(p, shape, seed):
    return (np.random.default_rng(seed).random(shape) < p).astype(np.float64)


def _pair(p_x, p_y, seeds=3, seed=0):
    """Independent per-query 0/1 outcomes with success rates p_x, p_y, on seeds x N queries."""
    return _binary(p_x, (seeds, N), seed), _binary(p_y, (seeds, N), seed + 100)


def test_clear_win_is_reproduced_and_its_swapped_control_is_not():
    x, y = _pair(0.80, 0.70)
    out = rules.evaluate("beats", {"top1": (x, y)}, {"top1": rules.swapped_null(x, y, 0)})
    assert out["verdict"] == rules.REPRODUCED
    assert out["control_verdict"] == rules.NOT_REPRODUCED
    lo, hi = out["metrics"]["top1"]["interval"]
    assert 0.07 < lo < 0.10 < hi < 0.13


@pytest.mark.parametrize("seed", range(5))
def test_tie_is_never_a_win(seed):
    x, y = _pair(0.75, 0.75, seed=seed)
    out = rules.evaluate("beats", {"top1": (x, y)}, {"top1": rules.swapped_null(x, y, seed)})
    assert out["verdict"] in (rules.NOT_REPRODUCED, rules.INCONCLUSIVE)


def test_equivalent_pair_matches_and_a_tie_on_few_queries_is_inconclusive():
    x = _binary(0.8, (3, N), 1)
    redraw = np.random.default_rng(2).random(x.shape) < 0.05  # 5% redrawn at the same rate
    y = np.where(redraw, _binary(0.8, x.shape, 3), x)
    far_x, far_y = _pair(0.80, 0.60)
    out = rules.evaluate("matches", {"top1": (x, y)}, {"top1": (far_x, far_y)},
                         margins={"top1": 0.01})
    assert out["verdict"] == rules.REPRODUCED
    assert out["control_verdict"] == rules.NOT_REPRODUCED
    # the old |diff| <= tol rule called this equivalent; with 60 queries it cannot be told
    few = (_binary(0.8, (1, 60), 3), _binary(0.8, (1, 60), 4))
    small = rules.evaluate("matches", {"top1": few}, {"top1": (far_x, far_y)}, margins={"top1": 0.01})
    assert small["verdict"] == rules.INCONCLUSIVE


def test_clear_difference_does_not_match():
    x, y = _pair(0.80, 0.60)
    out = rules.evaluate("matches", {"top1": (x, y)}, {"top1": (x, y)}, margins={"top1": 0.01})
    assert out["verdict"] == rules.NOT_REPRODUCED


def test_no_worse_accepts_a_better_x_and_rejects_a_clearly_worse_one():
    better, y = _pair(0.85, 0.80)
    worse, y2 = _pair(0.70, 0.80)
    margins = {"map10": 0.01}
    ok = rules.evaluate("no_worse", {"map10": (better, y)}, {"map10": (worse, y2)}, margins)
    assert ok["verdict"] == rules.REPRODUCED and ok["control_verdict"] == rules.NOT_REPRODUCED
    bad = rules.evaluate("no_worse", {"map10": (worse, y2)}, {"map10": (worse, y2)}, margins)
    assert bad["verdict"] == rules.NOT_REPRODUCED


def test_a_control_that_passes_makes_the_claim_vacuous():
    x, y = _pair(0.80, 0.80)
    same = (x, x.copy())   # identical outcomes: "matches" is certain, for claim and control
    out = rules.evaluate("matches", {"top1": same}, {"top1": same}, margins={"top1": 0.005})
    assert out["verdict"] == rules.VACUOUS
    assert out["control_verdict"] == rules.REPRODUCED


def test_worst_metric_decides():
    x, y = _pair(0.80, 0.70)
    out = rules.evaluate("beats", {"a": (x, y), "b": (y, x)}, {"a": rules.swapped_null(x, y, 0)})
    assert out["metrics"]["a"]["verdict"] == rules.REPRODUCED
    assert out["metrics"]["b"]["verdict"] == rules.NOT_REPRODUCED
    assert out["verdict"] == rules.NOT_REPRODUCED


def test_seed_variance_widens_the_interval():
    """Two seeds that disagree (one +10 pp, one -10 pp) must not give a win, although the
    pooled per-query gains over 2 x N queries would look significant for either seed alone."""
    xa, ya = _binary(0.85, N, 5), _binary(0.75, N, 6)
    xb, yb = _binary(0.70, N, 7), _binary(0.78, N, 8)
    x, y = np.stack([xa, xb]), np.stack([ya, yb])
    _, draws = rules.bootstrap_mean(x - y, 0)
    lo, hi = rules.interval(draws, 0.95)
    assert lo < 0 < hi
    _, one = rules.bootstrap_mean(xa - ya, 0)
    assert rules.interval(one, 0.95)[0] > 0


def test_bootstrap_is_seeded_and_matches_the_normal_approximation():
    x, y = _pair(0.7, 0.6, seeds=1)
    e1, d1 = rules.bootstrap_mean(x - y, 3)
    e2, d2 = rules.bootstrap_mean(x - y, 3)
    assert e1 == e2 and np.array_equal(d1, d2)
    se = (x - y).std(ddof=1) / np.sqrt(N)
    assert abs(d1.std() - se) < 0.1 * se
    assert abs(e1 - (x - y).mean()) < 1e-15


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="positive margin"):
        rules.judge("matches", np.zeros(10))
    with pytest.raises(ValueError, match="rule kind"):
        rules.judge("wins", np.zeros(10))
    with pytest.raises(ValueError, match="NaN"):
        rules.as_gains([0.0, np.nan])
    with pytest.raises(ValueError, match="empty"):
        rules.as_gains(np.zeros((2, 0)))
    with pytest.raises(ValueError, match="same shape"):
        rules.swapped_null(np.zeros(3), np.zeros(4), 0)
