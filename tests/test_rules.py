"""The verdict rules of `experiments.reproduce.verdicts.rules`, driven by synthetic rows of known truth."""
import numpy as np
import pytest

from experiments.reproduce.verdicts import rules

N = 4000


def _binary(p, shape, seed):
    return (np.random.default_rng(seed).random(shape) < p).astype(np.float64)


def _pair(p_x, p_y, seeds=3, seed=0):
    """Independent per-query 0/1 outcomes with success rates p_x, p_y, on seeds x N queries."""
    return _binary(p_x, (seeds, N), seed), _binary(p_y, (seeds, N), seed + 100)


def _beats(x, y, min_effect=0.01, controls=()):
    return rules.evaluate("beats", (x, y), list(controls), min_effect=min_effect)


# ---------------------------------------------------------------- "beats": three outcomes

def test_beats_has_three_outcomes_around_the_minimum_effect():
    x, y = _pair(0.80, 0.70)                       # +10 pp, far above a 1 pp minimum effect
    assert _beats(x, y)["verdict"] == rules.REPRODUCED
    x, y = _pair(0.755, 0.75, seed=3)              # +0.5 pp: the interval sits across 1 pp
    tiny = _beats(x, y)
    lo, hi = tiny["claim"]["interval"]
    assert lo < 0.01 < hi and tiny["verdict"] == rules.INCONCLUSIVE
    x, y = _pair(0.70, 0.80)                       # X worse: surely below the minimum effect
    assert _beats(x, y)["verdict"] == rules.NOT_REPRODUCED
    # a gain of +2 pp with a 10 pp minimum effect is "not reproduced", not a win
    x, y = _pair(0.82, 0.80, seeds=5, seed=5)
    assert _beats(x, y, min_effect=0.10)["verdict"] == rules.NOT_REPRODUCED


@pytest.mark.parametrize("seed", range(5))
def test_tie_is_never_a_win(seed):
    x, y = _pair(0.75, 0.75, seed=seed)
    assert _beats(x, y)["verdict"] in (rules.NOT_REPRODUCED, rules.INCONCLUSIVE)


def test_beats_needs_a_minimum_effect():
    with pytest.raises(ValueError, match="minimum effect"):
        rules.judge("beats", (0.0, 1.0))


# ---------------------------------------------------------------- per-point judgement

def test_the_worst_point_decides_and_every_point_is_reported():
    """A win at d = 8 does not carry the claim when d = 64 is a loss (MRL vs RP in the paper
    preset): the pooled mean is positive, the verdict is the worst point's."""
    x8, y8 = _pair(0.80, 0.60, seed=1)
    x64, y64 = _pair(0.78, 0.80, seed=2)
    x, y = np.stack([x8, x64], axis=1), np.stack([y8, y64], axis=1)     # (S, 2, N)
    out = rules.evaluate("beats", (x, y), [], labels=["d=8", "d=64"], min_effect=0.01)
    assert out["claim"]["estimate"] > 0.05
    pts = {p["label"]: p for p in out["claim"]["points"]}
    assert pts["d=8"]["verdict"] == rules.REPRODUCED
    assert pts["d=64"]["verdict"] == rules.NOT_REPRODUCED
    assert out["verdict"] == rules.NOT_REPRODUCED
    assert len(pts["d=8"]["seed_gains"]) == 3 and pts["d=8"]["interval"][0] > 0.15


def test_labels_must_match_the_points():
    with pytest.raises(ValueError, match="point labels"):
        rules.judge_points("beats", np.zeros((2, 3, 5)), labels=["a"], min_effect=0.0)


# ---------------------------------------------------------------- the hierarchical interval

def _simulate(S, n, sd_seed, sd_query, sd_noise, rng):
    """g[s, q] = mu + a_s + b_q + e_sq with mu = 0.02."""
    return (0.02 + sd_seed * rng.standard_normal((S, 1)) + sd_query * rng.standard_normal((1, n))
            + sd_noise * rng.standard_normal((S, n)))


@pytest.mark.parametrize("S,sd_seed,sd_query", [(2, 0.02, 0.1), (3, 0.02, 0.1), (5, 0.02, 0.1),
                                                 (3, 0.0, 0.3), (5, 0.005, 0.3)])
def test_interval_covers_the_truth_at_least_90_percent_of_the_time(S, sd_seed, sd_query):
    """Seed variance that dominates (sd 2 pp between seeds against ~0.5 pp of query noise in the
    mean) and query variance that dominates: a nominal 95% interval covers mu = 0.02 in >= 90%
    of 400 simulated studies (the bootstrap over seeds it replaces covered 62-74% with 2 seeds)."""
    rng = np.random.default_rng(1000 + S)
    hits = naive = 0
    for _ in range(400):
        g = _simulate(S, 300, sd_seed, sd_query, 0.2, rng)
        r = rules.hierarchical_interval(g, 0.95)[0]
        lo, hi = r["interval"]
        hits += lo <= 0.02 <= hi
        naive += abs(r["estimate"] - 0.02) <= 1.96 * r["se_query"]   # queries only
    assert hits / 400 >= 0.90
    if sd_seed >= 0.02 and S <= 3:   # the test can fail: an interval blind to seeds undercovers here
        assert naive / 400 < 0.80


def test_seed_variance_widens_the_interval():
    """Two seeds that disagree (one +10 pp, one -8 pp) must not give a win, although the pooled
    per-query gains over 2 x N queries would look significant for either seed alone."""
    xa, ya = _binary(0.85, N, 5), _binary(0.75, N, 6)
    xb, yb = _binary(0.70, N, 7), _binary(0.78, N, 8)
    both = rules.hierarchical_interval(np.stack([xa - ya, xb - yb]), 0.95)[0]
    assert both["interval"][0] < 0 < both["interval"][1]
    assert both["seed_gains"] == pytest.approx([(xa - ya).mean(), (xb - yb).mean()])
    one = rules.hierarchical_interval(xa - ya, 0.95)[0]
    assert one["interval"][0] > 0 and one["se_seed"] is None


def test_interval_with_one_seed_is_the_normal_query_interval():
    x, y = _pair(0.7, 0.6, seeds=1)
    r = rules.hierarchical_interval(x - y, 0.95)[0]
    se = (x - y).std(ddof=1) / np.sqrt(N)
    assert r["interval"][1] - r["estimate"] == pytest.approx(1.959964 * se, rel=1e-5)


# ---------------------------------------------------------------- controls

def test_swap_control_is_two_sided_and_the_seed_control_can_fail():
    x, y = _pair(0.80, 0.70)
    out = _beats(x, y, controls=[("swap", "swap", rules.swapped_null(x, y, 0)),
                                 ("seed", "seed", rules.seed_split(x))])
    assert out["verdict"] == rules.REPRODUCED and out["control_verdict"] == rules.NOT_REPRODUCED
    # a swap control whose interval lies wholly below 0 is a failed calibration check too
    below = rules.judge_control("swap", "beats", y - x, min_effect=0.01)
    assert below["verdict"] == rules.REPRODUCED
    # X at seed 0 is 5 pp better than X at seed 1: with 2 seeds the seed control sees one pair
    # and no seed variance, so seed-to-seed variation alone decides the rule -> vacuous
    xs = np.stack([_binary(0.85, N, 11), _binary(0.80, N, 12)])
    ys = np.stack([_binary(0.70, N, 13), _binary(0.70, N, 14)])
    vac = _beats(xs, ys, controls=[("seed", "seed", rules.seed_split(xs))])
    assert vac["controls"][0]["verdict"] == rules.REPRODUCED
    assert vac["control_verdict"] == rules.REPRODUCED and vac["verdict"] != rules.REPRODUCED
    with pytest.raises(ValueError, match="2 seeds"):
        rules.seed_split(xs[:1])


def test_equivalent_pair_matches_and_a_tie_on_few_queries_is_inconclusive():
    x = _binary(0.8, (3, N), 1)
    redraw = np.random.default_rng(2).random(x.shape) < 0.05  # 5% redrawn at the same rate
    y = np.where(redraw, _binary(0.8, x.shape, 3), x)
    far = _pair(0.80, 0.60)
    out = rules.evaluate("matches", (x, y), [("rigid", "rigid", far)], margin=0.01)
    assert out["verdict"] == rules.REPRODUCED and out["control_verdict"] == rules.NOT_REPRODUCED
    few = (_binary(0.8, (1, 60), 3), _binary(0.8, (1, 60), 4))
    assert rules.evaluate("matches", few, [], margin=0.01)["verdict"] == rules.INCONCLUSIVE


def test_no_worse_accepts_a_better_x_and_rejects_a_clearly_worse_one():
    better, y = _pair(0.85, 0.80)
    worse, y2 = _pair(0.70, 0.80)
    ok = rules.evaluate("no_worse", (better, y), [("rigid", "rigid", (worse, y2))], margin=0.01)
    assert ok["verdict"] == rules.REPRODUCED and ok["control_verdict"] == rules.NOT_REPRODUCED
    assert rules.evaluate("no_worse", (worse, y2), [], margin=0.01)["verdict"] == rules.NOT_REPRODUCED


def test_a_control_that_passes_makes_the_claim_vacuous():
    x, _ = _pair(0.80, 0.80)
    same = (x, x.copy())
    out = rules.evaluate("matches", same, [("rigid", "rigid", same)], margin=0.005)
    assert out["verdict"] == rules.VACUOUS and out["control_verdict"] == rules.REPRODUCED


# ---------------------------------------------------------------- wall-clock ratios

def test_ratio_interval_over_seeds_and_over_repeats():
    rng = np.random.default_rng(0)
    ref = 10 * np.exp(0.05 * rng.standard_normal((5, 7)))
    x = 2 * np.exp(0.05 * rng.standard_normal((5, 7)))
    r, (lo, hi) = rules.ratio_interval(ref, x)
    assert lo < 5 < hi and lo < r < hi and hi / lo < 1.2
    r1, (lo1, hi1) = rules.ratio_interval(ref[:1], x[:1])
    assert lo1 < r1 < hi1
    with pytest.raises(ValueError, match="positive"):
        rules.ratio_interval(ref, -x)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="positive margin"):
        rules.judge("matches", (0.0, 1.0))
    with pytest.raises(ValueError, match="rule kind"):
        rules.judge("wins", (0.0, 1.0))
    with pytest.raises(ValueError, match="NaN"):
        rules.as_gains([0.0, np.nan])
    with pytest.raises(ValueError, match="empty"):
        rules.as_gains(np.zeros((2, 0)))
    with pytest.raises(ValueError, match="same shape"):
        rules.swapped_null(np.zeros(3), np.zeros(4), 0)
    with pytest.raises(ValueError, match="control kind"):
        rules.judge_control("shuffle", "beats", np.zeros(5), min_effect=0.0)


def test_timed_repeats_warm_up_on_every_query_then_time_the_preset_repeats():
    from experiments.reproduce.stage import timed_repeats, timing

    calls = []
    q = np.arange(3000)
    out, ms = timed_repeats(lambda qq: calls.append(len(qq)) or len(qq), q, {"timing_repeats": 6})
    assert out == 3000 and calls == [3000] + [1000] * 6 and len(ms) == 6
    before = len(calls)
    none, ms = timed_repeats(lambda qq: calls.append(len(qq)), q, {}, full=False)
    assert none is None and len(ms) == 5 and calls[before:] == [1000] * 5   # no full search
    with pytest.raises(ValueError, match="timing_repeats must be >= 5"):
        timing({"timing_repeats": 2})
