"""The claim declarations of `experiments.reproduce.claims` on synthetic rows of known truth."""
import zlib

import numpy as np

from experiments.reproduce import claims, rules

NQ, SEEDS, NEST = 2000, [0, 1, 2], [2, 4, 8, 16, 32, 64]


def _outcomes(p, seed):
    return (np.random.default_rng(seed).random(NQ) < p).astype(np.float32)


def _exp1(rates):
    """exp1 rows: rates[(model, dim)] = success rate of every per-query metric."""
    rows = []
    for (model, dim), p in rates.items():
        for s in SEEDS:
            v = _outcomes(p, zlib.crc32(f"{model}-{dim}-{s}".encode()))
            rows.append({"model": model, "dim": dim, "seed": s,
                         "_pq": {name: v for name in claims.EXP1_VEC.values()}})
    return {"exp1_dims": rows}


def _ctx():
    idx = np.random.default_rng(0).permutation(NQ)
    return {"seeds": SEEDS, "folds": (np.sort(idx[: NQ // 2]), np.sort(idx[NQ // 2:])), "nq": NQ,
            "nesting": NEST, "ivfpq": False}


def _claim(cid):
    return next(c for c in claims.CLAIMS if c.id == cid)


def _base(ff_small=0.60, mrl_small=0.60, mrl_e=0.80, ff8=0.70):
    rates = {(m, d): 0.8 for m in ("MRL", "MRL-E", "FF", "SVD", "RP") for d in NEST}
    rates.update({("MRL", d): mrl_small for d in (2, 4, 8)})
    rates.update({("FF", d): ff_small for d in (2, 4, 8)})
    rates[("FF", 8)] = ff8
    rates[("MRL-E", 64)] = mrl_e
    return rates


def test_clear_win_at_small_dims_is_reproduced_and_a_tie_is_not():
    win = claims.judge_claim(_claim("mrl-vs-ff-small-dims-map"), _exp1(_base(ff_small=0.5, ff8=0.5,
                                                                             mrl_small=0.7)), _ctx())
    assert win["verdict"] == rules.REPRODUCED and win["control_verdict"] == rules.NOT_REPRODUCED
    assert win["seeds"] == SEEDS and "mAP@10" in win["metrics"]
    tie = claims.judge_claim(_claim("mrl-vs-ff-small-dims-map"), _exp1(_base(ff_small=0.6, ff8=0.6)), _ctx())
    assert tie["verdict"] in (rules.NOT_REPRODUCED, rules.INCONCLUSIVE)
    assert tie["why_not"].startswith("On mAP@10")


def test_mrl_e_matches_unless_the_control_matches_too():
    rates = _base(ff8=0.6)
    tables = _exp1(rates)
    for r in tables["exp1_dims"]:   # MRL-E at D identical to MRL at D: equivalence is certain
        if r["model"] == "MRL-E" and r["dim"] == 64:
            twin = next(t for t in tables["exp1_dims"] if t["model"] == "MRL" and t["dim"] == 64
                        and t["seed"] == r["seed"])
            r["_pq"] = twin["_pq"]
    ok = claims.judge_claim(_claim("mrl-e-full-dim"), tables, _ctx())
    assert ok["verdict"] == rules.REPRODUCED and ok["control_verdict"] == rules.NOT_REPRODUCED
    assert ok["margins"] == {"linear top-1": claims.ACC_MARGIN}
    for r in tables["exp1_dims"]:   # FF-8 identical to FF-64: the control passes -> vacuous
        if r["model"] == "FF" and r["dim"] == 8:
            r["_pq"] = next(t for t in tables["exp1_dims"] if t["model"] == "FF" and t["dim"] == 64
                            and t["seed"] == r["seed"])["_pq"]
    vac = claims.judge_claim(_claim("mrl-e-full-dim"), tables, _ctx())
    assert vac["verdict"] == rules.VACUOUS and "control passes" in vac["why_not"]


def test_missing_rows_are_not_applicable():
    out = claims.judge_claim(_claim("adanns-ivf-vs-mr-ivf"), {"exp4_ivf": []}, _ctx())
    assert out["verdict"] == rules.NOT_APPLICABLE


def test_changes_lists_changed_added_and_dropped_verdicts_under_renamed_ids():
    old = [{"id": "knn_top1-small-dims", "verdict": "reproduced", "measured": "old"},
           {"id": "mrl-e-full-dim", "verdict": "not reproduced", "measured": "x"},
           {"id": "gone", "verdict": "reproduced", "measured": "y"}]
    new = [{"id": "mrl-vs-ff-small-dims-map", "verdict": "not reproduced", "measured": "new"},
           {"id": "mrl-e-full-dim", "verdict": "not reproduced", "measured": "z"},
           {"id": "mrl-vs-svd", "verdict": "reproduced", "measured": "w"}]
    rows = {r["id"]: r for r in claims.changes(old, new)}
    assert set(rows) == {"mrl-vs-ff-small-dims-map", "mrl-vs-svd", "gone"}
    assert rows["mrl-vs-ff-small-dims-map"]["before"] == "reproduced: old"
    assert rows["mrl-vs-ff-small-dims-map"]["after"] == "not reproduced: new"
    assert rows["mrl-vs-svd"]["before"] == "(no such claim)" and rows["gone"]["after"] == "(dropped)"


def _exp7(configs):
    """exp7 rows: configs[(method, d_c, d_s, ef)] = (MFLOPs, success rate or the key of a
    configuration whose per-query outcomes it copies)."""
    rows, by_key = [], {}
    for key, (mflops, rate) in configs.items():
        method, d_c, d_s, ef = key
        for s in SEEDS:
            if isinstance(rate, tuple):
                pq = by_key[(rate, s)]
            else:
                v = _outcomes(rate, zlib.crc32(f"{key}-{s}".encode()))
                pq = {"recall10_per_query": v, "ap10_per_query": v, "top1_per_query": v}
            by_key[(key, s)] = pq
            rows.append({"method": method, "config": f"{method} d_c={d_c} d_s={d_s} ef={ef}",
                         "d_c": d_c, "d_s": d_s, "ef_search": ef, "seed": s, "mflops": mflops,
                         "ms_per_query": mflops / 100, "_pq": pq})
    return {"exp7_hnsw": rows}


def _hnsw_grid(ours=None, ours_mflops=1.0, rigid8=0.5):
    ref = ("MR-HNSW", 64, 64, 64)
    return {ref: (10.0, 0.9), ("MR-HNSW", 64, 64, 16): (4.0, 0.8),
            ("MR-HNSW", 8, 8, 64): (1.0, ref if rigid8 == "ref" else rigid8),
            ("AdANNS-HNSW", 8, 8, 64): (1.0, ref if rigid8 == "ref" else rigid8),  # d_c = d_s: ignored
            ("AdANNS-HNSW", 8, 64, 64): (ours_mflops, ref if ours is None else ours)}


def test_hnsw_less_compute_reproduced_worse_vacuous_and_too_expensive():
    claim = _claim("adanns-hnsw-less-compute")
    assert claim.margins == {"10-recall@10": claims.RECALL_MARGIN, "mAP@10": claims.MAP_MARGIN}
    same = claims.judge_claim(claim, _exp7(_hnsw_grid()), _ctx())   # equal to the reference, 10x cheaper
    assert same["verdict"] == rules.REPRODUCED and same["control_verdict"] == rules.NOT_REPRODUCED
    assert same["saving"]["MFLOPs"] == 10.0 and "d_c=8 d_s=64" in same["points"]
    worse = claims.judge_claim(claim, _exp7(_hnsw_grid(ours=0.6)), _ctx())
    assert worse["verdict"] == rules.NOT_REPRODUCED and worse["why_not"]
    # the rigid graph at d = 8 as good as the reference: the control passes -> vacuous
    vac = claims.judge_claim(claim, _exp7(_hnsw_grid(rigid8="ref")), _ctx())
    assert vac["verdict"] == rules.VACUOUS and vac["control_verdict"] == rules.REPRODUCED
    # as good, but only 10 / 6 < MIN_SAVING times cheaper
    dear = claims.judge_claim(claim, _exp7(_hnsw_grid(ours_mflops=6.0)), _ctx())
    assert dear["verdict"] == rules.NOT_REPRODUCED and "below the" in dear["why_not"]
    assert claims.judge_claim(claim, {"exp7_hnsw": []}, _ctx())["verdict"] == rules.NOT_APPLICABLE
