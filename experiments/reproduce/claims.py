"""The papers' headline claims (SPEC §8) checked against our measured tables.

Every verdict is computed here from the rows, never written by hand. The rules:

- Noise tolerance (paired). Two configurations are always evaluated on the same queries, so
  their difference is judged on the per-query outcomes a_i, b_i (1 if the first result, or the
  linear head, is correct): ``tol = t_{0.975, n-1} * sd(a_i - b_i) / sqrt(n)``, the 95%
  half-width of the mean paired difference. For mAP@10 the outcomes are the mAP@10 of B = 10
  seeded, equal-sized query batches (batch means), so n = B. A difference within tol is a tie.
- Choose on validation, verify on test. Where a claim picks configurations out of a grid (the
  best AdANNS-IVF under a budget, the cheapest adaptive retrieval that matches), the choice is
  made on the validation half of the queries and the comparison is reported on the test half,
  so the many AdANNS configurations get no advantage from noise (winner's curse). Claims
  without a choice (exp. 1, fixed sizes) use all queries.
- "X >= Y" claims are *reproduced* when the mean gain of X over Y is >= 0 and no compared point
  has X below Y by more than tol; *not reproduced* otherwise.
- "X beats Y at equal compute": for every configuration on Y's (validation) Pareto front, the
  X configuration with the best validation top-1 and no more MFLOPs/query; reproduced when the
  mean test gain is > 0 and no matched point loses on test by more than tol.
- "X matches Y at less compute": take Y's configuration with the best validation top-1 and the
  cheapest X configuration at least as accurate on validation; reproduced when that costs at
  least MIN_SAVING times less and is within tol of Y on test.
- *not applicable at this scale* when the data the rule needs does not exist (e.g. no nesting
  size small enough, an optional module missing), with the reason in the "measured" column.
"""
import math

import numpy as np
from scipy.stats import t as student_t

from adanns_ref.select import pareto_front

MIN_SAVING = 2.0         # "many times less compute": at least 2x fewer MFLOPs/query
SMALL_DIM_FRACTION = 8   # "small dims" = nesting sizes <= D / 8 (paper: 8..256 of 2048)

REPRODUCED, NOT_REPRODUCED, NOT_APPLICABLE = "reproduced", "not reproduced", "not applicable at this scale"


def paired_tol(a, b):
    """95% half-width of mean(a - b) for paired per-query (or per-batch) outcomes a, b."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if diff.size < 2:
        return 0.0
    return float(student_t.ppf(0.975, diff.size - 1) * diff.std(ddof=1) / math.sqrt(diff.size))


def _vec(row, name, subset=None):
    v = row["_pq"][name]
    return v if subset is None else v[subset]


def _pct(x):
    return f"{100.0 * x:.2f}"


def _ge_verdict(gains, tols):
    if not gains:
        return NOT_APPLICABLE
    mean = sum(gains) / len(gains)
    worst = min(g + t for g, t in zip(gains, tols))
    return REPRODUCED if mean >= 0 and worst >= 0 else NOT_REPRODUCED


def _claim(cid, claim, paper, measured, verdict, rule):
    return {"id": cid, "claim": claim, "paper": paper, "measured": measured,
            "verdict": verdict, "rule": rule}


def claim_small_dims(rows, metric, label, paper):
    """MRL >= FF at the small nesting sizes, for `metric` in the exp1 rows."""
    by = {(r["model"], r["dim"]): r[metric] for r in rows}
    pq = {(r["model"], r["dim"]): r["_pq"][f"{metric}_per_query"] for r in rows}
    dims = sorted({r["dim"] for r in rows})
    D = max(dims, default=0)
    small = [d for d in dims if d <= D // SMALL_DIM_FRACTION and ("MRL", d) in by and ("FF", d) in by]
    rule = (f"dims <= D/{SMALL_DIM_FRACTION}; mean(MRL - FF) >= 0 and every dim within the "
            "95% noise band")
    cid = f"{metric}-small-dims"
    if not small:
        return _claim(cid, f"{label}: MRL >= FF at small dims", paper,
                      f"no nesting size <= {D}/{SMALL_DIM_FRACTION} with both models", NOT_APPLICABLE, rule)
    gains = [by[("MRL", d)] - by[("FF", d)] for d in small]
    tols = [paired_tol(pq[("MRL", d)], pq[("FF", d)]) for d in small]
    measured = "; ".join(f"d={d}: MRL {_pct(by[('MRL', d)])} vs FF {_pct(by[('FF', d)])} "
                         f"({100 * g:+.2f} pp, tol {100 * t:.2f})" for d, g, t in zip(small, gains, tols))
    return _claim(cid, f"{label}: MRL >= FF at small dims", paper, measured,
                  _ge_verdict(gains, tols), rule)


def claim_mrl_e(rows):
    by = {(r["model"], r["dim"]): r for r in rows}
    D = max((r["dim"] for r in rows), default=0)
    rule = "|MRL-E - MRL| at full D within the 95% noise band"
    paper = "linear top-1 at D=2048: MRL-E 76.51 vs MRL 76.80"
    if ("MRL-E", D) not in by or ("MRL", D) not in by:
        return _claim("mrl-e-full-dim", "MRL-E matches MRL at full D", paper,
                      "MRL-E not trained", NOT_APPLICABLE, rule)
    ra, rb = by[("MRL-E", D)], by[("MRL", D)]
    a, b = ra["linear_top1"], rb["linear_top1"]
    tol = paired_tol(_vec(ra, "linear_top1_per_query"), _vec(rb, "linear_top1_per_query"))
    verdict = REPRODUCED if abs(a - b) <= tol else NOT_REPRODUCED
    return _claim("mrl-e-full-dim", "MRL-E matches MRL at full D", paper,
                  f"D={D}: MRL-E {_pct(a)} vs MRL {_pct(b)} (tol {100 * tol:.2f} pp)", verdict, rule)


def _matches_on_test(x, y, metric, vec, subset=None):
    """x within the paired noise band of y on the test half (x >= y - tol)."""
    tol = paired_tol(_vec(x, vec, subset), _vec(y, vec, subset))
    return x[f"{metric}_test"] >= y[f"{metric}_test"] - tol, tol


def _cheapest_match(cands, target, metric):
    """The cheapest candidate at least as good as `target` on validation. (Selecting "within
    tol" instead would pick configurations at the edge of the noise band, which then fail on
    test about half the time.)"""
    ok = [c for c in cands if c[f"{metric}_val"] >= target[f"{metric}_val"]]
    return min(ok, key=lambda c: c["mflops"]) if ok else None


def claim_adaptive_retrieval(rows):
    """Two-stage adaptive retrieval reaches single-shot full-D mAP@10 with many times less compute."""
    cid, claim = "adaptive-retrieval", "adaptive retrieval matches full-D accuracy at less compute"
    rule = (f"cheapest two-stage config with validation mAP@10 >= single-shot at D; reproduced if "
            f"it needs >= {MIN_SAVING:g}x fewer MFLOPs/query and is within tol of it on test")
    paper = "mAP@10 65.27 (16 -> 2048, shortlist 200) vs 65.20 single-shot at 2048, 128x fewer MFLOPs"
    single = [r for r in rows if r["method"] == "single-shot"]
    adaptive = [r for r in rows if r["method"] == "adaptive"]
    if not single or not adaptive:
        return _claim(cid, claim, paper, "no adaptive rows", NOT_APPLICABLE, rule)
    full = max(single, key=lambda r: r["d_rerank"])
    cheap = _cheapest_match(adaptive, full, "map10")
    if cheap is None:
        return _claim(cid, claim, paper, f"no adaptive config reaches single-shot "
                      f"{_pct(full['map10_val'])} on validation", NOT_REPRODUCED, rule)
    holds, tol = _matches_on_test(cheap, full, "map10", "map10_batches_test")
    saving = full["mflops"] / cheap["mflops"]
    measured = (f"test mAP@10 {_pct(cheap['map10_test'])} ({cheap['d_shortlist']} -> "
                f"{cheap['d_rerank']}, shortlist {cheap['k_shortlist']}) vs {_pct(full['map10_test'])} "
                f"single-shot at {full['d_rerank']} (tol {100 * tol:.2f}); {saving:.1f}x fewer MFLOPs")
    verdict = REPRODUCED if saving >= MIN_SAVING and holds else NOT_REPRODUCED
    return _claim(cid, claim, paper, measured, verdict, rule)


def claim_ivf_equal_compute(rows, baseline, test_idx):
    name = {"FF-IVF": "rigid IVF on FF models", "MR-IVF": "IVF on MR with d_c = d_s"}[baseline]
    rule = ("per point of the baseline's validation Pareto front (top-1 vs MFLOPs/query), the "
            "AdANNS-IVF config with the best validation top-1 at <= MFLOPs; test gains: reproduced "
            "if their mean is > 0 and none is below -tol")
    paper = "AdANNS-IVF ~1.5 pp higher top-1 than rigid IVF at the same compute (ImageNet-1K)"
    ours = [r for r in rows if r["method"] == "AdANNS-IVF"]
    theirs = [r for r in rows if r["method"] == baseline]
    gains, tols = [], []
    for t in (pareto_front(theirs, x="mflops", y="top1_val") if theirs else []):
        fits = [o for o in ours if o["mflops"] <= t["mflops"]]
        if fits:
            best = max(fits, key=lambda o: o["top1_val"])
            gains.append(best["top1_test"] - t["top1_test"])
            tols.append(paired_tol(_vec(best, "top1_per_query", test_idx),
                                   _vec(t, "top1_per_query", test_idx)))
    cid = f"adanns-ivf-vs-{baseline.lower()}"
    if not gains:
        return _claim(cid, f"AdANNS-IVF beats {name} at equal compute", paper,
                      "no comparable configurations", NOT_APPLICABLE, rule)
    mean = sum(gains) / len(gains)
    verdict = REPRODUCED if mean > 0 and min(g + t for g, t in zip(gains, tols)) >= 0 else NOT_REPRODUCED
    measured = (f"test top-1 gain: mean {100 * mean:+.2f} pp, min {100 * min(gains):+.2f}, max "
                f"{100 * max(gains):+.2f} over {len(gains)} budgets")
    if baseline == "MR-IVF":
        measured += " (the AdANNS grid contains every d_c = d_s configuration)"
    return _claim(cid, f"AdANNS-IVF beats {name} at equal compute", paper, measured, verdict, rule)


def claim_ivf_less_compute(rows, test_idx):
    rule = (f"rigid FF-IVF config with the best validation top-1 vs the cheapest AdANNS-IVF config "
            f"at least as accurate on validation; reproduced if >= {MIN_SAVING:g}x fewer "
            "MFLOPs/query and within tol of it on test")
    paper = "AdANNS-IVF matches rigid IVF accuracy with up to 90x less search time"
    cid, claim = "adanns-ivf-less-compute", "AdANNS-IVF matches rigid IVF at less compute"
    ours = [r for r in rows if r["method"] == "AdANNS-IVF"]
    theirs = [r for r in rows if r["method"] == "FF-IVF"]
    if not ours or not theirs:
        return _claim(cid, claim, paper, "no rows", NOT_APPLICABLE, rule)
    best = max(theirs, key=lambda r: (r["top1_val"], -r["mflops"]))
    cheap = _cheapest_match(ours, best, "top1")
    if cheap is None:
        return _claim(cid, claim, paper, "no AdANNS-IVF config reaches the rigid validation top-1 "
                      f"{_pct(best['top1_val'])}", NOT_REPRODUCED, rule)
    holds, tol = _matches_on_test(cheap, best, "top1", "top1_per_query", test_idx)
    saving = best["mflops"] / cheap["mflops"]
    ms = best["ms_per_query"] / cheap["ms_per_query"]
    measured = (f"test top-1: rigid {_pct(best['top1_test'])} (d={best['d_c']}, nlist {best['nlist']}, "
                f"nprobe {best['nprobe']}, {best['mflops']:.3g} MFLOPs) vs AdANNS "
                f"{_pct(cheap['top1_test'])} (d_c={cheap['d_c']}, d_s={cheap['d_s']}, nlist "
                f"{cheap['nlist']}, nprobe {cheap['nprobe']}, {cheap['mflops']:.3g} MFLOPs; tol "
                f"{100 * tol:.2f}): {saving:.1f}x fewer MFLOPs, {ms:.1f}x less measured time")
    verdict = REPRODUCED if saving >= MIN_SAVING and holds else NOT_REPRODUCED
    return _claim(cid, claim, paper, measured, verdict, rule)


def _selected(rows, method):
    """{M: row} of the configuration selected (on validation) per budget."""
    return {r["M"]: r for r in rows if r["method"] == method and r["selected"]}


def claim_opq_half_bytes(rows, test_idx):
    rule = ("for each budget pair (M, 2M): AdANNS-OPQ at M >= rigid OPQ (FF at full D) at 2M - tol, "
            "top-1 on the test half (d chosen on the validation half); reproduced if it holds for "
            "a majority of pairs")
    paper = "32-byte AdANNS-OPQ matches 64-byte rigid OPQ (Natural Questions, 21M passages)"
    ada, rigid = _selected(rows, "AdANNS-OPQ"), _selected(rows, "FF-OPQ")
    pairs = [(m, 2 * m) for m in sorted(ada) if 2 * m in rigid]
    if not pairs:
        return _claim("adanns-opq-half-bytes", "AdANNS-OPQ at M bytes matches rigid OPQ at 2M bytes",
                      paper, "no (M, 2M) budget pair", NOT_APPLICABLE, rule)
    holds = [ada[a]["top1_test"] >= rigid[b]["top1_test"] - paired_tol(
        _vec(ada[a], "top1_per_query", test_idx), _vec(rigid[b], "top1_per_query", test_idx))
        for a, b in pairs]
    measured = "; ".join(f"{a}B AdANNS (d={ada[a]['d']}) {_pct(ada[a]['top1_test'])} vs {b}B rigid "
                         f"{_pct(rigid[b]['top1_test'])} ({'holds' if h else 'fails'})"
                         for (a, b), h in zip(pairs, holds))
    verdict = REPRODUCED if sum(holds) * 2 > len(holds) else NOT_REPRODUCED
    return _claim("adanns-opq-half-bytes", "AdANNS-OPQ at M bytes matches rigid OPQ at 2M bytes",
                  paper, measured, verdict, rule)


def claim_ivfopq(rows, test_idx, available):
    rule = ("per byte budget M: AdANNS-IVFOPQ vs rigid IVFOPQ (FF at full D), each configuration "
            "chosen on the validation half; test gains: reproduced if their mean is > 0 and none "
            "is below -tol")
    paper = "AdANNS-IVFOPQ 1-4 pp better than rigid IVFOPQ at 8-64 bytes (ImageNet-1K)"
    cid, claim = "adanns-ivfopq", "AdANNS-IVFOPQ beats rigid IVFOPQ"
    if not available:
        return _claim(cid, claim, paper, "adanns_ref.ivfpq not available in this build",
                      NOT_APPLICABLE, rule)
    ada, rigid = _selected(rows, "AdANNS-IVFOPQ"), _selected(rows, "FF-IVFOPQ")
    ms = sorted(set(ada) & set(rigid))
    if not ms:
        return _claim(cid, claim, paper, "no common byte budget", NOT_APPLICABLE, rule)
    gains = [ada[m]["top1_test"] - rigid[m]["top1_test"] for m in ms]
    tols = [paired_tol(_vec(ada[m], "top1_per_query", test_idx),
                       _vec(rigid[m], "top1_per_query", test_idx)) for m in ms]
    measured = "; ".join(f"{m}B: {_pct(ada[m]['top1_test'])} vs {_pct(rigid[m]['top1_test'])} "
                         f"({100 * g:+.2f} pp, tol {100 * t:.2f})" for m, g, t in zip(ms, gains, tols))
    ok = sum(gains) > 0 and min(g + t for g, t in zip(gains, tols)) >= 0
    return _claim(cid, claim, paper, measured, REPRODUCED if ok else NOT_REPRODUCED, rule)


def all_claims(tables, test_idx, ivfpq_available):
    """tables: dict name -> rows carrying their per-query arrays under "_pq"
    (`rows.attach_evidence`); test_idx: the test half of the queries.
    Returns one claim row per headline claim."""
    dims, ret = tables.get("exp1_dims", []), tables.get("exp3_retrieval", [])
    ivf, opq = tables.get("exp4_ivf", []), tables.get("exp5_opq", [])
    return [
        claim_small_dims(dims, "knn_top1", "1-NN top-1",
                         "ImageNet d=8: MRL 62.19 vs FF 58.93; d=16: 67.91 vs 66.77"),
        claim_small_dims(dims, "linear_top1", "linear top-1",
                         "ImageNet d=8: MRL 66.63 vs FF 65.29; d=16: 73.53 vs 72.85"),
        claim_mrl_e(dims),
        claim_adaptive_retrieval(ret),
        claim_ivf_equal_compute(ivf, "FF-IVF", test_idx),
        claim_ivf_equal_compute(ivf, "MR-IVF", test_idx),
        claim_ivf_less_compute(ivf, test_idx),
        claim_opq_half_bytes(opq, test_idx),
        claim_ivfopq(opq, test_idx, ivfpq_available),
    ]
