"""One evidence reader per claim of `claims.py` (the shared machinery is in `evidence.py`).

Each reader is `reader(tables, ctx, claim) -> Evidence` with X and Y on the claim's deciding
metric (`claim.metric`, or mAP@10 where the rows do not carry it), one point per size / budget,
and the claim's declared controls. "beats" claims get their swap and seed controls in
`claims.judge_claim`.
"""
import numpy as np

from . import grids
from .evidence import (ANN_VEC, EXP1_VEC, SMALL_DIM_FRACTION, Evidence, GridHole, NotApplicable,
                       cross_fit, describe, groups, mean_field, name_of, outcome, resolve, score,
                       secondary, twice_margin_control, wall_clock)

ANN_SECONDARY = ("10-recall@10", "1-NN top-1", "mAP@10")


def _small_dims(rows):
    dims = sorted({r["dim"] for r in rows})
    small = [d for d in dims if d <= max(dims) // SMALL_DIM_FRACTION]
    if not small:
        raise NotApplicable(f"no nesting size <= D/{SMALL_DIM_FRACTION}")
    return small


def model_vs_model(x_model, y_model):
    """Per small size d (<= D/8) where both models exist: X at d vs Y at d, all queries."""
    def reader(tables, ctx, claim):
        rows = tables["exp1_dims"]
        g = groups(rows, ctx["seeds"])
        small = _small_dims(rows)
        have = [d for d in small if (x_model, d) in g and (y_model, d) in g]
        if not have:
            raise NotApplicable(f"no size <= D/{SMALL_DIM_FRACTION} with both {x_model} and {y_model}")
        metric, vec, note = resolve(claim.metric, rows, EXP1_VEC)
        labels = [f"d={d}" for d in have]
        x, y, kept, chosen, _ = cross_fit(
            labels, lambda f, lab: (g[(x_model, int(lab[2:]))], g[(y_model, int(lab[2:]))]), vec, ctx, metric)
        missing = [d for d in small if d not in have]
        return Evidence(x, y, kept, metric, note,
                        points=f"{x_model} vs {y_model} at d = {have}, all queries" +
                        (f"; sizes <= D/{SMALL_DIM_FRACTION} not trained for both: {missing}" if missing else ""),
                        secondary=secondary(chosen, EXP1_VEC, ("mAP@R", "mAP@10", "1-NN top-1", "10-recall@10"),
                                            ctx))
    return reader


def mrl_e(tables, ctx, claim):
    rows = tables["exp1_dims"]
    g = groups(rows, ctx["seeds"])
    D = max(r["dim"] for r in rows)
    if ("MRL-E", D) not in g or ("MRL", D) not in g:
        raise NotApplicable(f"missing MRL-E or MRL at D = {D}")
    metric, vec, note = resolve(claim.metric, rows, EXP1_VEC)
    x, y, kept, _, _ = cross_fit(["D"], lambda f, _: (g[("MRL-E", D)], g[("MRL", D)]), vec, ctx, metric)
    cands = [(g[k], g[("FF", D)]) for k in sorted(g) if k[0] == "FF" and k[1] < D and ("FF", D) in g]
    control = twice_margin_control(cands, vec, ctx, claim.margin, metric, "FF at a smaller size vs FF-D")
    return Evidence(x, y, [f"d={D}"], metric, note, points=f"MRL-E vs MRL at D = {D}; all queries",
                    controls=[control])


def adaptive_cls(tables, ctx, claim):
    rows = tables["exp2_adaptive_cls"]
    g = groups(rows, ctx["seeds"])
    nest = ctx["nesting"]
    cascade, full = g.get(f"cascade over {list(nest)}"), g.get(f"MRL fixed d={nest[-1]}")
    if cascade is None or full is None:
        raise NotApplicable("no cascade over the whole nesting list")
    expected = float(outcome(cascade, "dim_per_query").mean())
    below = [d for d in nest if d <= expected] or [nest[0]]
    ctrl = g[f"MRL fixed d={below[-1]}"]
    v = "top1_per_query"
    x, y, _, _, gains = cross_fit(["D"], lambda f, _: (cascade, full), v, ctx, claim.metric)
    cx, cy, _, _, _ = cross_fit(["D"], lambda f, _: (ctrl, full), v, ctx, claim.metric)
    return Evidence(x, y, [f"expected dim {expected:.2f}"], claim.metric,
                    points=(f"cascade over {list(nest)} (expected dim {expected:.2f}, thresholds "
                            f"cross-fitted) vs MRL at d = {nest[-1]}"),
                    controls=[(f"fixed MRL at d = {below[-1]} <= the expected dim vs MRL at d = "
                               f"{nest[-1]}", "rigid", (cx, cy))],
                    folds=gains, saving={"dims": nest[-1] / expected})


def _cheapest_within(ours, ref, vec, fold, margin, cost):
    """The cheapest of `ours` within half a margin of ref on the fold, else the best (ties: name)."""
    target = score(ref, vec, fold) - margin / 2
    ok = [o for o in ours if score(o, vec, fold) >= target]
    if not ok:
        return max(ours, key=lambda o: (score(o, vec, fold), name_of(o)))
    return min(ok, key=lambda o: (mean_field(o, cost), name_of(o)))


def adaptive_retrieval(tables, ctx, claim):
    rows = tables["exp3_retrieval"]
    single = list(groups(rows, ctx["seeds"], method="single-shot").values())
    adaptive = list(groups(rows, ctx["seeds"], method="adaptive").values())
    if not single or not adaptive:
        raise NotApplicable("no adaptive rows")
    ref = max(single, key=lambda grp: grp[0]["d_rerank"])
    metric, vec, note = resolve(claim.metric, rows, ANN_VEC)

    def choose(fold, _):
        return _cheapest_within(adaptive, ref, vec, fold, claim.margin, "mflops"), ref

    def control(fold, _):
        x = choose(fold, _)[0]
        cheap = [s for s in single if mean_field(s, "mflops") <= mean_field(x, "mflops")]
        return (max(cheap, key=lambda s: s[0]["d_rerank"]) if cheap else
                min(single, key=lambda s: mean_field(s, "mflops"))), ref

    x, y, kept, chosen, gains = cross_fit(["ref"], choose, vec, ctx, metric)
    cx, cy, _, cchosen, _ = cross_fit(["ref"], control, vec, ctx, metric)
    xs = [p[0] for p in chosen["ref"]]
    return Evidence(x, y, [f"vs single-shot at d = {ref[0]['d_rerank']}"], metric, note,
                    points=describe(chosen, kept), folds=gains,
                    controls=[(f"single-shot at the largest d within X's MFLOPs ({describe(cchosen, ['ref'])})",
                               "rigid", (cx, cy))],
                    secondary=secondary(chosen, ANN_VEC, ANN_SECONDARY, ctx),
                    saving={"MFLOPs": float(np.mean([mean_field(ref, "mflops") / mean_field(a, "mflops")
                                                     for a in xs]))},
                    wall_clock=wall_clock(ref, xs[0]))


def _budgets(theirs):
    """The budget grid of a per-budget claim: every distinct MFLOPs/query (mean over seeds) of
    the baseline's configurations, a deterministic cost."""
    return sorted({round(mean_field(t, "mflops"), 6) for t in theirs})


def _best_within(cands, budget, vec, fold):
    fits = [c for c in cands if mean_field(c, "mflops") <= budget + 1e-9]
    return max(fits, key=lambda c: (score(c, vec, fold), name_of(c))) if fits else None


def ivf_equal_compute(baseline, decoupled):
    """Per MFLOPs budget b of the baseline's grid: the best AdANNS-IVF within b vs the best
    baseline configuration within b (chosen on one half). AdANNS-vs-FF adds the attribution
    control rigid MR-IVF vs FF-IVF at the same budgets."""
    def reader(tables, ctx, claim):
        rows = tables["exp4_ivf"]
        holes = grids.ivf_holes(rows, max(ctx["nesting"]), baseline)
        if holes:
            raise GridHole("; ".join(holes))
        ours = [grp for grp in groups(rows, ctx["seeds"], method="AdANNS-IVF").values()
                if not decoupled or grp[0]["d_c"] != grp[0]["d_s"]]
        theirs = list(groups(rows, ctx["seeds"], method=baseline).values())
        if not ours or not theirs:
            raise NotApplicable("no comparable configurations")
        metric, vec, note = resolve(claim.metric, rows, ANN_VEC)
        labels = [f"{b:.4g} MFLOPs" for b in _budgets(theirs)]
        budget = dict(zip(labels, _budgets(theirs)))

        def chooser(xs):
            def choose(fold, lab):
                a, b = _best_within(xs, budget[lab], vec, fold), _best_within(theirs, budget[lab], vec, fold)
                return (a, b) if a and b else None
            return choose

        x, y, kept, chosen, gains = cross_fit(labels, chooser(ours), vec, ctx, metric)
        controls = []
        if baseline == "FF-IVF":
            rigid = list(groups(rows, ctx["seeds"], method="MR-IVF").values())
            cx, cy, ck, _, _ = cross_fit(kept, chooser(rigid), vec, ctx, metric)
            controls.append((f"rigid MR-IVF (d_c = d_s) vs FF-IVF at the same budgets ({len(ck)} "
                             "budgets): if it wins too, the gain is MRL's, not the decoupling's",
                             "attribution", (cx, cy)))
        return Evidence(x, y, kept, metric, note, points=describe(chosen, labels), folds=gains,
                        controls=controls, secondary=secondary(chosen, ANN_VEC, ANN_SECONDARY, ctx))
    return reader


def less_compute(table, x_method, y_method, holes, decoupled=False):
    """x_method reaches the best y_method configuration at fewer MFLOPs/query. Per half: the
    reference is the best y_method configuration on the deciding metric (ties: fewer MFLOPs);
    X is the cheapest x_method configuration within half a margin of it, else the best one.
    Control: the best y_method configuration within X's MFLOPs must not reach the reference."""
    def reader(tables, ctx, claim):
        rows = tables[table]
        found = holes(rows, ctx)
        if found:
            raise GridHole("; ".join(found))
        ours = [g for g in groups(rows, ctx["seeds"], method=x_method).values()
                if not decoupled or g[0]["d_c"] != g[0]["d_s"]]
        theirs = list(groups(rows, ctx["seeds"], method=y_method).values())
        if not ours or not theirs:
            raise NotApplicable("no rows")
        metric, vec, note = resolve(claim.metric, rows, ANN_VEC)

        def reference(fold):
            return max(theirs, key=lambda t: (score(t, vec, fold), -mean_field(t, "mflops"), name_of(t)))

        def choose(fold, _):
            ref = reference(fold)
            return _cheapest_within(ours, ref, vec, fold, claim.margin, "mflops"), ref

        def control(fold, _):
            x, ref = choose(fold, _)
            return _best_within(theirs, mean_field(x, "mflops"), vec, fold) or \
                min(theirs, key=lambda t: mean_field(t, "mflops")), ref

        x, y, kept, chosen, gains = cross_fit(["best"], choose, vec, ctx, metric)
        cx, cy, _, cchosen, _ = cross_fit(["best"], control, vec, ctx, metric)
        pairs = chosen["best"]
        return Evidence(x, y, [f"best {y_method}"], metric, note, points=describe(chosen, kept),
                        folds=gains, controls=[(f"the best rigid {y_method} within X's MFLOPs "
                                                f"({describe(cchosen, ['best'])})", "rigid", (cx, cy))],
                        secondary=secondary(chosen, ANN_VEC, ANN_SECONDARY, ctx),
                        saving={"MFLOPs": float(np.mean([mean_field(b, "mflops") / mean_field(a, "mflops")
                                                         for a, b in pairs]))},
                        wall_clock=wall_clock(pairs[0][1], pairs[0][0]))
    return reader


ivf_less_compute = less_compute("exp4_ivf", "AdANNS-IVF", "FF-IVF",
                                lambda rows, ctx: grids.ivf_holes(rows, max(ctx["nesting"]), "FF-IVF"))
hnsw_less_compute = less_compute("exp7_hnsw", "AdANNS-HNSW", "MR-HNSW",
                                 lambda rows, ctx: grids.hnsw_holes(rows), decoupled=True)


def opq_half_bytes(tables, ctx, claim):
    rows = tables["exp5_opq"]
    ada = list(groups(rows, ctx["seeds"], method="AdANNS-OPQ").values())
    rigid = {grp[0]["M"]: grp for grp in groups(rows, ctx["seeds"], method="FF-OPQ").values()}
    labels = [f"M={m} vs 2M={2 * m}" for m in sorted({a[0]["M"] for a in ada}) if 2 * m in rigid]
    if not labels:
        raise NotApplicable("no (M, 2M) budget pair")
    metric, vec, note = resolve(claim.metric, rows, ANN_VEC)

    def choose(fold, lab):
        m = int(lab.split()[0][2:])
        return max((a for a in ada if a[0]["M"] == m),
                   key=lambda a: (score(a, vec, fold), -a[0]["d"])), rigid[2 * m]

    x, y, kept, chosen, gains = cross_fit(labels, choose, vec, ctx, metric)
    cands = [(rigid[a], rigid[b]) for a in sorted(rigid) for b in sorted(rigid) if a < b]
    control = twice_margin_control(cands, vec, ctx, claim.margin, metric, "rigid OPQ at fewer bytes vs more")
    return Evidence(x, y, kept, metric, note, points=describe(chosen, labels), folds=gains,
                    controls=[control], secondary=secondary(chosen, ANN_VEC, ANN_SECONDARY, ctx))


def ivfopq(tables, ctx, claim):
    if not ctx["ivfpq"]:
        raise NotApplicable("adanns_ref.indices.ivfpq not available in this build")
    rows = tables["exp5_opq"]
    ada = list(groups(rows, ctx["seeds"], method="AdANNS-IVFOPQ").values())
    rigid = list(groups(rows, ctx["seeds"], method="FF-IVFOPQ").values())
    ms = sorted({g[0]["M"] for g in ada} & {g[0]["M"] for g in rigid})
    if not ms:
        raise NotApplicable("no common byte budget")
    metric, vec, note = resolve(claim.metric, rows, ANN_VEC)

    def best(cands, m, fold):
        return max((c for c in cands if c[0]["M"] == m), key=lambda c: (score(c, vec, fold), name_of(c)))

    labels = [f"M={m}" for m in ms]
    x, y, kept, chosen, gains = cross_fit(
        labels, lambda f, lab: (best(ada, int(lab[2:]), f), best(rigid, int(lab[2:]), f)), vec, ctx, metric)
    return Evidence(x, y, kept, metric, note, points=describe(chosen, labels), folds=gains,
                    secondary=secondary(chosen, ANN_VEC, ANN_SECONDARY, ctx))


def quant_budget(tables, ctx, claim):
    """Exp. 8, per byte budget B of a rigid low precision at full D on MR: the best MR prefix x
    precision with d < D within B bytes (chosen on one half by the deciding metric, then fewer
    bytes) against that rigid precision. Control: the rigid pair at full D or a float prefix
    vs float@D about twice the margin apart."""
    from ..quant import code_bytes

    rows = tables["exp8_quant"]
    holes = grids.quant_holes(rows, ctx["nesting"], code_bytes)
    if holes:
        raise GridHole("; ".join(holes))
    D = max(ctx["nesting"])
    cands = [g for g in groups(rows, ctx["seeds"], method="MR-prefix").values() if g[0]["d"] < D]
    rigid = {g[0]["precision"]: g for p in ("binary", "4bit", "int8", "float")
             for g in groups(rows, ctx["seeds"], method=f"MR-{p}").values()}
    if "float" not in rigid:
        raise NotApplicable("the control needs float at full D")
    metric, vec, note = resolve(claim.metric, rows, ANN_VEC)
    budgets = [p for p in ("binary", "4bit", "int8") if p in rigid]

    def choose(fold, p):
        fits = [c for c in cands if c[0]["bytes"] <= rigid[p][0]["bytes"]]
        return (max(fits, key=lambda c: (score(c, vec, fold), -c[0]["bytes"], name_of(c))), rigid[p]) if fits else None

    labels = [f"{p}@D ({rigid[p][0]['bytes']} B)" for p in budgets]
    x, y, kept, chosen, gains = cross_fit(labels, lambda f, lab: choose(f, lab.split("@")[0]), vec, ctx, metric)
    pairs = [(rigid[p], rigid["float"]) for p in budgets] + \
            [(c, rigid["float"]) for c in cands if c[0]["precision"] == "float"]
    control = twice_margin_control(pairs, vec, ctx, claim.margin, metric, "a rigid precision or float "
                                   "prefix vs float@D")
    return Evidence(x, y, kept, metric, note, folds=gains, controls=[control],
                    points=describe(chosen, labels, lambda g: f"{g[0]['precision']}@{g[0]['d']} "
                                                              f"({g[0]['bytes']} B)"),
                    secondary=secondary(chosen, ANN_VEC, ANN_SECONDARY, ctx))
