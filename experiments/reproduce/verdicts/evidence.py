"""How each claim of `claims.py` reads its paired outcomes from the measured rows.

Every function here takes the experiment tables (rows per seed, with per-query arrays under
"_pq"), a context (seeds, the two query halves, nq, nesting) and the claim (its deciding metric
and margin), and returns an `Evidence`: the (X, Y) outcome arrays (seeds x points x queries) of
the deciding metric, the point labels, the declared controls, the configurations it chose on
each half, the secondary columns and the compute savings. The rules that judge them are in
`rules.py`.

Choices are made on a deterministic cost (MFLOPs/query, bytes/vector, dims), never on measured
time; a configuration is chosen on one query half by the deciding metric and scored on the
other (cross-fitting). Wall-clock ratios are reported with an interval and decide nothing.

10-recall@10 is a fidelity column: it is against exact search on each method's own
representation (MR rows against MR at D, FF-d rows against FF-d), so `check_reference` refuses
to compare two outcomes measured against different references.
"""
from dataclasses import dataclass, field

import numpy as np

from . import rules

MIN_SAVING = 2.0         # "many times less compute": at least 2x fewer MFLOPs/query
SMALL_DIM_FRACTION = 8   # "small dims" = nesting sizes <= D / 8 (paper: 8..256 of 2048)
ACC_MARGIN = 0.01        # 1 pp of top-1 accuracy
MAP_MARGIN = 0.01        # 1 pp of the retrieval task metric
RECALL_MARGIN = 0.01     # 1 pp of 10-recall@10
MIN_EFFECT = 0.005       # 0.5 pp: the smallest gain that counts as "beats"
RULE_SEED = 20240        # seed of the swapped controls
FALLBACK = "mAP@10"      # the task metric every retrieval row has

EXP1_VEC = {"mAP@10": "knn_ap10_per_query", "1-NN top-1": "knn_top1_per_query",
            "linear top-1": "linear_top1_per_query", "10-recall@10": "knn_recall10_per_query",
            "mAP@R": "knn_apr_per_query", "R-precision": "knn_rprec_per_query"}
ANN_VEC = {"mAP@10": "ap10_per_query", "10-recall@10": "recall10_per_query",
           "1-NN top-1": "top1_per_query", "top-1": "top1_per_query",
           "mAP@R": "apr_per_query", "R-precision": "rprec_per_query"}
RECALL = "10-recall@10"


class NotApplicable(Exception):
    """The rows a claim needs do not exist at this scale; the message says which."""


class GridHole(NotApplicable):
    """The two sides were not measured over the same knob ranges (`grids`); the message names
    every hole."""


@dataclass
class Evidence:
    x: np.ndarray             # (S, P, nq) outcomes of X on the deciding metric
    y: np.ndarray             # (S, P, nq) outcomes of Y
    labels: list              # P point labels
    metric: str               # the deciding metric actually used
    metric_note: str = ""     # why it differs from the declared one
    points: str = ""          # what was compared (chosen configurations per half)
    controls: list = field(default_factory=list)   # [(name, kind, (x, y))]
    folds: list = None        # [gain A->B, gain B->A] (means over points)
    secondary: dict = None    # metric -> (x mean, y mean) or a text saying why not shown
    saving: dict = None       # {"MFLOPs": ratio} or {"dims": ratio}
    wall_clock: dict = None   # {"ratio", "interval"}: measured, informational


# ---------------------------------------------------------------- reading the rows

def groups(rows, seeds, **match):
    """{config: [row per seed, in seed order]} of the rows whose fields equal `match`."""
    out = {}
    for r in rows:
        if all(r.get(k) == v for k, v in match.items()):
            out.setdefault(r.get("config", (r.get("model"), r.get("dim"))), {})[r["seed"]] = r
    return {c: [by_seed[s] for s in seeds] for c, by_seed in out.items() if set(seeds) <= set(by_seed)}


def outcome(group, vec):
    """float64 (S, nq) per-query outcomes of one configuration over its seeds."""
    return np.stack([np.asarray(r["_pq"][vec], dtype=np.float64) for r in group])


def score(group, vec, idx):
    """Mean outcome of a configuration over its seeds and the queries idx (a fold)."""
    return float(outcome(group, vec)[:, idx].mean())


def mean_field(group, name):
    return float(np.mean([r[name] for r in group]))


def name_of(group):
    r = group[0]
    return r.get("config") or f"{r.get('model')}-{r.get('dim')}"


def recall_reference(row):
    """The exact search a row's 10-recall@10 is measured against (see the module docstring)."""
    method = row.get("method") or row.get("model")
    if method in ("FF", "SVD", "RP"):          # exp1: FF-d, SVD and RP against FF-D
        return "FF-D"
    if method.startswith("FF-"):
        return f"FF-{row.get('d_c', row.get('d'))}"
    return "MRL-E" if method == "MRL-E" else "MR"


def check_reference(metric, a, b):
    """Refuse a 10-recall@10 comparison of configurations measured against different exact
    searches (a, b: groups of rows)."""
    if metric == RECALL and recall_reference(a[0]) != recall_reference(b[0]):
        raise ValueError(f"10-recall@10 of {name_of(a)} is against exact search on "
                         f"{recall_reference(a[0])}, of {name_of(b)} on {recall_reference(b[0])}: "
                         "recall is compared only between methods measured against the same "
                         "reference; decide the claim on a task metric")


def resolve(metric, rows, vecmap):
    """(metric, vec, note): the declared deciding metric, or FALLBACK when this run's rows do
    not carry it (the note says so)."""
    if metric in vecmap and rows and vecmap[metric] in rows[0]["_pq"]:
        return metric, vecmap[metric], ""
    if metric == FALLBACK or FALLBACK not in vecmap or vecmap[FALLBACK] not in rows[0]["_pq"]:
        raise NotApplicable(f"the rows carry no per-query {metric}")
    return FALLBACK, vecmap[FALLBACK], f"{metric} is not computed for these rows; decided on {FALLBACK}"


def cross_fit(labels, choose, vec, ctx, metric):
    """Per point label: choose(fold, label) -> (x_group, y_group) or None on each half; the pair
    chosen on one half is scored on the other. Returns (x, y (S, P, nq), kept labels, {label:
    [pair on A, pair on B]}, [gain A->B, gain B->A]); points without a pair on both halves are
    left out (`describe` names them)."""
    chosen = {}
    for lab in labels:
        pair = [choose(f, lab) for f in ctx["folds"]]
        if all(pair):
            chosen[lab] = pair
    if not chosen:
        raise NotApplicable("no matched configuration on both halves at any point")
    x, y, gains = assemble(chosen, vec, ctx, metric)
    return x, y, list(chosen), chosen, gains


def assemble(chosen, vec, ctx, metric):
    """(x, y (S, P, nq), [gain A->B, gain B->A]) of the pairs chosen per point and half."""
    folds, nq, S = ctx["folds"], ctx["nq"], len(ctx["seeds"])
    x, y = np.zeros((S, len(chosen), nq)), np.zeros((S, len(chosen), nq))
    for i, pair in enumerate(chosen.values()):
        for (a, b), use in zip(pair, folds[::-1]):
            check_reference(metric, a, b)
            x[:, i, use], y[:, i, use] = outcome(a, vec)[:, use], outcome(b, vec)[:, use]
    return x, y, [float((x - y)[:, :, use].mean()) for use in folds[::-1]]


def secondary(chosen, vecmap, names, ctx):
    """{metric: (x mean, y mean)} of the shown-not-judged columns for the same choices, or a
    text where the recall references differ (metrics the rows lack are left out)."""
    out = {}
    a, b = next(iter(chosen.values()))[0]
    for name in names:
        vec = vecmap.get(name)
        if vec is None or vec not in a[0]["_pq"]:
            continue
        try:
            x, y, _ = assemble(chosen, vec, ctx, name)
        except ValueError:
            out[name] = f"not compared: against {recall_reference(a[0])} vs {recall_reference(b[0])}"
            continue
        out[name] = (float(x.mean()), float(y.mean()))
    return out


def describe(chosen, labels, label=name_of):
    """Text of the chosen pairs per point and half, and the points left out."""
    parts = []
    for lab, pair in chosen.items():
        shown = [f"{label(a)} vs {label(b)}" for a, b in pair]
        parts.append(f"{lab}: {shown[0]}" + ("" if shown[0] == shown[1] else f" (A) / {shown[1]} (B)"))
    out = "; ".join(parts)
    dropped = [str(lab) for lab in labels if lab not in chosen]
    return out + (f"; no pair at {', '.join(dropped)}" if dropped else "")


def wall_clock(ref, x):
    """{"ratio", "interval"} of ref / x in measured ms/query (per-seed repeats when the rows
    carry them), `rules.ratio_interval`."""
    def times(group):
        return np.array([r.get("ms_repeats") or [r["ms_per_query"]] for r in group], dtype=np.float64)
    tr, tx = times(ref), times(x)
    if tr.shape != tx.shape:
        tr, tx = tr.min(axis=1, keepdims=True), tx.min(axis=1, keepdims=True)
    ratio, ci = rules.ratio_interval(tr, tx)
    return {"ratio": ratio, "interval": list(ci)}


def twice_margin_control(candidates, vec, ctx, margin, metric, what):
    """The rigid control pair whose gap on the fold is closest to -2 x margin (X worse than Y by
    about twice the margin: a pair the rule must reject, near where it decides), cross-fitted.
    candidates: [(x_group, y_group)]. Returns a control triple (name, "rigid", (x, y))."""
    if not candidates:
        raise NotApplicable(f"no rigid pair for the control ({what})")

    def choose(fold, _):
        return min(candidates, key=lambda p: (abs(score(p[0], vec, fold) - score(p[1], vec, fold)
                                                  + 2 * margin), name_of(p[0])))
    x, y, _, chosen, _ = cross_fit(["control"], choose, vec, ctx, metric)
    return (f"{what}, the pair about twice the margin apart ({describe(chosen, ['control'])})",
            "rigid", (x, y))

