"""The verdict rules of the reproduction, on paired per-query outcomes over several seeds.

Every claim compares X with Y on the same queries, for each training seed s and query q, at one
or more matched points p (one per nesting size, per budget, ...), all declared in `claims.py`
before the data are seen. Its evidence is the gain array

    g[s, p, q] = outcome_X - outcome_Y         (S seeds, P matched points, n queries)

Interval (hierarchical, per point p). The seed means m_s = mean_q g[s, p, q] and their mean
g_bar = mean_s m_s (the estimate). Two variance components:

    se_seed^2  = var_s(m_s) / S                 (sample variance, S - 1 degrees of freedom)
    se_query^2 = var_q(mean_s g[s, p, q]) / n   (the same queries serve every seed)

and the two-sided interval at level 1 - a is g_bar +- sqrt((t_{S-1, 1-a/2} se_seed)^2 +
(z_{1-a/2} se_query)^2). Under g = mu + a_s + b_q + e_sq the estimator's variance is
s_a^2 / S + s_b^2 / n + s_e^2 / (S n); se_seed^2 estimates the first and third terms, se_query^2
the second and third, so the sum counts the third twice (conservative) and the t quantile
carries the uncertainty of a seed variance estimated from S seeds. With S = 1 the seed term
cannot be estimated: the interval is the query term alone, and the claim row says so.
(`tests/test_rules.py` simulates seed variance and checks the coverage.)

Rules (m = the margin of a "matches" / "no_worse" claim, delta = the minimum effect of a
"beats" claim, both declared per claim in the deciding metric's units):

- "beats" (X beats Y by at least delta, two-sided 95% interval [lo, hi]): lo > delta ->
  reproduced; hi < delta -> not reproduced (the gain is surely below the minimum effect, or
  negative); otherwise inconclusive.
- "matches" (two one-sided tests at 5% each = the 90% interval): inside (-m, +m) ->
  reproduced; wholly outside [-m, +m] -> not reproduced; otherwise inconclusive.
- "no_worse" (one-sided non-inferiority at 5%, for "at less compute" claims): lo(90%) > -m ->
  reproduced; hi(90%) < -m -> not reproduced; otherwise inconclusive.

Per-point claims ("at every small size", "at every budget") are judged at each point and take
the worst point's verdict (not reproduced < inconclusive < reproduced): an intersection-union
test, whose level is that of each point's test without a multiplicity correction (Berger 1982).
Holm's correction would serve "at some point" claims; none is declared.

Controls (pairs that must not reproduce; a claim whose control reproduces is "vacuous at this
scale" and counts as not reproduced):

- "swap": the claim's own pair with X and Y swapped per query by a seeded coin (true gain 0),
  judged two-sided on the mean over points: its 95% interval must cover 0 (it reproduces when
  lo > 0 or hi < 0), which checks the interval's calibration.
- "seed": X against itself at other seeds (seed i against seed S//2 + i, so S//2 pairs), judged
  two-sided by the claim's own rule: it reproduces when lo > delta or hi < -delta, i.e. when
  seed-to-seed variation alone would decide the claim.
- "rigid" / "attribution": a declared pair judged by the claim's own rule (one-sided).
"""
import numpy as np
from scipy import stats

ALPHA = 0.05

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
VACUOUS = "vacuous at this scale"
NOT_APPLICABLE = "not applicable at this scale"
NOT_APPLICABLE_BUDGETS = "not applicable at these budgets"
KINDS = ("beats", "matches", "no_worse")
CONTROL_KINDS = ("swap", "seed", "rigid", "attribution")
_ORDER = {NOT_REPRODUCED: 0, INCONCLUSIVE: 1, REPRODUCED: 2}


def as_gains(gains):
    """float64 (S, P, n) from (n,), (S, n) or (S, P, n) paired gains; NaN or empty is rejected."""
    g = np.asarray(gains, dtype=np.float64)
    if g.ndim == 1:
        g = g[None, None, :]
    elif g.ndim == 2:
        g = g[:, None, :]
    if g.ndim != 3 or 0 in g.shape:
        raise ValueError(f"gains must be (n,), (S, n) or (S, P, n) with no empty axis, got shape "
                         f"{np.shape(gains)}")
    if not np.all(np.isfinite(g)):
        raise ValueError("gains contain NaN or inf; pass finite per-query outcomes")
    return g


def hierarchical_interval(gains, level):
    """Per point of gains (S, P, n): dict(estimate, interval (lo, hi), seed_gains (S,),
    se_seed (None for S = 1), se_query) with the interval of the module docstring."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    g = as_gains(gains)
    S, P, n = g.shape
    z = float(stats.norm.ppf((1 + level) / 2))
    t = float(stats.t.ppf((1 + level) / 2, S - 1)) if S > 1 else None
    out = []
    for p in range(P):
        seed_means = g[:, p, :].mean(axis=1)
        est = float(seed_means.mean())
        se_q = float(g[:, p, :].mean(axis=0).std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0
        se_s = float(seed_means.std(ddof=1) / np.sqrt(S)) if S > 1 else None
        half = np.hypot(t * se_s if S > 1 else 0.0, z * se_q)
        out.append({"estimate": est, "interval": (est - half, est + half),
                    "seed_gains": [float(v) for v in seed_means], "se_seed": se_s, "se_query": se_q})
    return out


def judge(kind, interval, margin=None, min_effect=None):
    """The verdict of one point under rule `kind` from its interval (lo, hi), computed at 95%
    for "beats" and at 90% for "matches" / "no_worse" (`level_of`)."""
    if kind not in KINDS:
        raise ValueError(f"rule kind must be one of {KINDS}, got {kind!r}")
    lo, hi = interval
    if kind == "beats":
        if min_effect is None or min_effect < 0:
            raise ValueError(f"rule 'beats' needs a minimum effect >= 0, got {min_effect!r}")
        return REPRODUCED if lo > min_effect else NOT_REPRODUCED if hi < min_effect else INCONCLUSIVE
    if margin is None or not margin > 0:
        raise ValueError(f"rule {kind!r} needs a positive margin, got {margin!r}")
    if kind == "matches":
        if -margin < lo and hi < margin:
            return REPRODUCED
        return NOT_REPRODUCED if lo > margin or hi < -margin else INCONCLUSIVE
    if lo > -margin:
        return REPRODUCED
    return NOT_REPRODUCED if hi < -margin else INCONCLUSIVE


def level_of(kind):
    return 1 - ALPHA if kind == "beats" else 1 - 2 * ALPHA


def worst(verdicts):
    """The combined verdict of several points or metrics: the worst of them."""
    return min(verdicts, key=_ORDER.__getitem__)


def judge_points(kind, gains, labels=None, margin=None, min_effect=None):
    """Judge every point of gains (S, P, n): dict(verdict = the worst point's, estimate = mean
    over points, interval of the point mean, seed_gains of the point mean, points = [dict(label,
    estimate, interval, verdict, seed_gains)])."""
    g = as_gains(gains)
    labels = list(labels) if labels is not None else [str(p) for p in range(g.shape[1])]
    if len(labels) != g.shape[1]:
        raise ValueError(f"{len(labels)} point labels for {g.shape[1]} points")
    level = level_of(kind)
    points = []
    for label, r in zip(labels, hierarchical_interval(g, level)):
        points.append(dict(r, label=label, interval=list(r["interval"]),
                           verdict=judge(kind, r["interval"], margin, min_effect)))
    pooled = hierarchical_interval(g.mean(axis=1, keepdims=True), level)[0]
    return {"verdict": worst([p["verdict"] for p in points]), "estimate": pooled["estimate"],
            "interval": list(pooled["interval"]), "seed_gains": pooled["seed_gains"],
            "se_seed": pooled["se_seed"], "points": points, "margin": margin,
            "min_effect": min_effect}


def swapped_null(x, y, seed):
    """The "swap" control: X and Y swapped per query by a seeded fair coin (same coin for every
    seed and point), so the true gain is 0. x, y: arrays of equal shape (..., n)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"x {x.shape} and y {y.shape} must have the same shape")
    coin = np.random.default_rng(seed).random(x.shape[-1]) < 0.5
    return np.where(coin, x, y), np.where(coin, y, x)


def seed_split(x):
    """The "seed" control's pair from X's own outcomes (S, ...): (X at seeds 0..h-1, X at
    seeds h..2h-1), h = S // 2. Needs S >= 2."""
    x = np.asarray(x, dtype=np.float64)
    h = x.shape[0] // 2
    if h < 1:
        raise ValueError(f"the seed control needs at least 2 seeds, got {x.shape[0]}")
    return x[:h], x[h:2 * h]


def judge_control(kind, rule, gains, margin=None, min_effect=None):
    """dict(verdict, estimate, interval, seed_gains) of a control (see the module docstring);
    "reproduced" means the control passed a rule it must not pass."""
    if kind not in CONTROL_KINDS:
        raise ValueError(f"control kind must be one of {CONTROL_KINDS}, got {kind!r}")
    g = as_gains(gains).mean(axis=1, keepdims=True)
    if kind == "swap":
        r = hierarchical_interval(g, 1 - ALPHA)[0]
        lo, hi = r["interval"]
        verdict = REPRODUCED if lo > 0 or hi < 0 else NOT_REPRODUCED
    elif kind == "seed":
        r = hierarchical_interval(g, level_of(rule))[0]
        lo, hi = r["interval"]
        d = min_effect if rule == "beats" else margin
        verdict = REPRODUCED if lo > d or hi < -d else NOT_REPRODUCED
    else:
        r = hierarchical_interval(g, level_of(rule))[0]
        verdict = judge(rule, r["interval"], margin, min_effect)
    return {"verdict": verdict, "estimate": r["estimate"], "interval": list(r["interval"]),
            "seed_gains": r["seed_gains"]}


def evaluate(kind, pairs, controls, labels=None, margin=None, min_effect=None):
    """Judge a claim on its deciding metric and its controls.

    pairs: (x, y) paired outcome arrays (S, P, n) (or (S, n), (n,)); controls: [(name, control
    kind, (x, y))]. Returns dict(verdict (VACUOUS when the claim and any control reproduce),
    control_verdict (reproduced if any control reproduced), claim = `judge_points`, controls =
    [dict(name, kind, verdict, estimate, interval, seed_gains)])."""
    x, y = (np.asarray(a, dtype=np.float64) for a in pairs)
    claim = judge_points(kind, x - y, labels, margin, min_effect)
    ctrl = []
    for name, ckind, (cx, cy) in controls:
        r = judge_control(ckind, kind, np.asarray(cx, dtype=np.float64) - np.asarray(cy, dtype=np.float64),
                          margin, min_effect)
        ctrl.append(dict(r, name=name, kind=ckind))
    control_verdict = (REPRODUCED if any(c["verdict"] == REPRODUCED for c in ctrl)
                       else NOT_REPRODUCED if ctrl else None)
    verdict = claim["verdict"]
    if verdict == REPRODUCED and control_verdict == REPRODUCED:
        verdict = VACUOUS
    return {"verdict": verdict, "control_verdict": control_verdict, "claim": claim, "controls": ctrl}


def ratio_interval(ref, x, level=1 - ALPHA):
    """Wall-clock ratio ref / x with an interval, from times (S, R) per seed and repeat: the
    geometric mean over seeds of each seed's median ratio, interval t_{S-1} on the seeds' log
    ratios (S = 1: t_{R-1} on the repeats' log ratios). Returns (ratio, (lo, hi))."""
    ref, x = (np.atleast_2d(np.asarray(a, dtype=np.float64)) for a in (ref, x))
    if ref.shape != x.shape or np.any(ref <= 0) or np.any(x <= 0):
        raise ValueError(f"times must be positive arrays of equal shape (S, R), got {ref.shape}, {x.shape}")
    logs = np.log(np.median(ref, axis=1)) - np.log(np.median(x, axis=1))
    if len(logs) == 1:
        logs = np.log(ref[0]) - np.log(x[0])
    m = float(logs.mean())
    if len(logs) < 2:
        return float(np.exp(m)), (float("nan"), float("nan"))
    half = float(stats.t.ppf((1 + level) / 2, len(logs) - 1)) * logs.std(ddof=1) / np.sqrt(len(logs))
    return float(np.exp(m)), (float(np.exp(m - half)), float(np.exp(m + half)))
