"""The verdict rules of the reproduction, on paired per-query outcomes over several seeds.

Every claim compares X with Y on the same queries, for each training seed s and query q, at one
or more matched points p (e.g. one per nesting size or per budget), all declared in
`claims.py` before the data are seen. Its evidence is the gain array

    g[s, p, q] = outcome_X - outcome_Y         (S seeds, P matched points, n queries)

and its summary is the mean gain over seeds, points and queries. The interval is a seeded
bootstrap over seeds *and* queries (seeds and queries resampled with replacement, the same
query draw for every seed and point, so the pairing is kept), so it carries the seed-to-seed
variance of training as well as the query sampling noise. Percentile intervals, N_BOOT draws.

Rules (m = the margin declared per claim and metric, in the metric's units):

- "beats" (X beats Y): the two-sided 95% interval of the gain lies above 0 -> reproduced;
  otherwise not reproduced.
- "matches" (X matches Y, two one-sided tests at 5% each = the 90% interval): the interval lies
  inside (-m, +m) -> reproduced; it lies wholly outside [-m, +m] -> not reproduced; otherwise
  inconclusive (the data cannot tell).
- "no_worse" (X reaches Y, one-sided non-inferiority at 5%, used for "at less compute" claims
  where X being better is no failure): the lower 5% bound is above -m -> reproduced; the upper
  95% bound is below -m -> not reproduced; otherwise inconclusive.

A claim judged on several metrics takes the worst verdict (not reproduced < inconclusive <
reproduced). Each claim has a negative control: the same rule on a pair that must not
reproduce (a rigid pair that truly differs, for "matches"/"no_worse"; the claim's own pair with
X and Y swapped at random per query, whose true gain is 0, for "beats"). A claim whose control
is also reproduced is "vacuous at this scale" and counts as not reproduced.
"""
import numpy as np

N_BOOT = 2000
_CHUNK = 200
ALPHA = 0.05

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
VACUOUS = "vacuous at this scale"
NOT_APPLICABLE = "not applicable at this scale"
KINDS = ("beats", "matches", "no_worse")
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


def bootstrap_mean(gains, seed, n_boot=N_BOOT):
    """(mean gain, bootstrap draws (n_boot,)) over seeds and queries, paired across points."""
    g = as_gains(gains).mean(axis=1)                         # (S, n): mean over matched points
    S, n = g.shape
    rng = np.random.default_rng(seed)
    draws = np.empty(n_boot)
    for start in range(0, n_boot, _CHUNK):                   # chunks bound the (c, n) weights
        c = min(_CHUNK, n_boot - start)
        rows = np.arange(c)[:, None] * n + rng.integers(0, n, size=(c, n))
        counts = np.bincount(rows.ravel(), minlength=c * n).reshape(c, n).astype(np.float64)
        per_seed = g @ counts.T / n                                          # (S, c)
        seeds = rng.integers(0, S, size=(c, S))                               # (c, S)
        draws[start:start + c] = per_seed[seeds, np.arange(c)[:, None]].mean(axis=1)
    return float(g.mean()), draws


def interval(draws, level):
    """Two-sided percentile interval (lo, hi) of the bootstrap draws at confidence `level`."""
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def judge(kind, draws, margin=None):
    """(verdict, (lo, hi)) of one metric under rule `kind` (see the module docstring)."""
    if kind not in KINDS:
        raise ValueError(f"rule kind must be one of {KINDS}, got {kind!r}")
    if kind == "beats":
        lo, hi = interval(draws, 1 - ALPHA)
        return (REPRODUCED if lo > 0 else NOT_REPRODUCED), (lo, hi)
    if margin is None or not margin > 0:
        raise ValueError(f"rule {kind!r} needs a positive margin, got {margin!r}")
    lo, hi = interval(draws, 1 - 2 * ALPHA)
    if kind == "matches":
        if -margin < lo and hi < margin:
            return REPRODUCED, (lo, hi)
        return (NOT_REPRODUCED if lo > margin or hi < -margin else INCONCLUSIVE), (lo, hi)
    if lo > -margin:
        return REPRODUCED, (lo, hi)
    return (NOT_REPRODUCED if hi < -margin else INCONCLUSIVE), (lo, hi)


def worst(verdicts):
    """The combined verdict of several metrics: the worst of them."""
    return min(verdicts, key=_ORDER.__getitem__)


def swapped_null(x, y, seed):
    """The "beats" control: X and Y swapped per query by a seeded fair coin (same coin for every
    seed and point), so the true gain is 0. x, y: arrays of equal shape (..., n)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"x {x.shape} and y {y.shape} must have the same shape")
    coin = np.random.default_rng(seed).random(x.shape[-1]) < 0.5
    return np.where(coin, x, y), np.where(coin, y, x)


def evaluate(kind, claim_pairs, control_pairs, margins=None, seed=0):
    """Judge a claim and its control on each metric.

    claim_pairs / control_pairs: {metric: (x, y)} with x, y paired outcome arrays (S, P, n) (or
    (S, n), (n,)); margins: {metric: margin} for "matches" / "no_worse". Returns a dict with the
    combined "verdict" (VACUOUS when the claim and its control are both reproduced), the
    control's combined "control_verdict", and per metric the estimate, interval and verdict of
    the claim ("metrics") and of the control ("control_metrics").
    """
    margins = margins or {}

    def side(pairs, salt):
        out = {}
        for i, (metric, (x, y)) in enumerate(sorted(pairs.items())):
            g = as_gains(np.asarray(x, dtype=np.float64) - np.asarray(y, dtype=np.float64))
            est, draws = bootstrap_mean(g, seed + 7919 * salt + i)
            verdict, ci = judge(kind, draws, margins.get(metric))
            out[metric] = {"estimate": est, "interval": list(ci), "verdict": verdict,
                           "margin": margins.get(metric)}
        return out

    claim, control = side(claim_pairs, 1), side(control_pairs, 2)
    verdict = worst([m["verdict"] for m in claim.values()])
    control_verdict = worst([m["verdict"] for m in control.values()])
    if verdict == REPRODUCED and control_verdict == REPRODUCED:
        verdict = VACUOUS
    return {"verdict": verdict, "control_verdict": control_verdict, "metrics": claim,
            "control_metrics": control}
