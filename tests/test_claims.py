"""The claim declarations of `experiments.reproduce.claims` on synthetic rows of known truth."""
import re
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
    for r in tables["exp1_dims"]:   # FF-2 (smallest) identical to FF-64: control passes -> vacuous
        if r["model"] == "FF" and r["dim"] == 2:
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


# ---------------------------------------------------------------- exp8: quantized prefixes

def _exp8(rates):
    """exp8 rows: rates[(method, precision, d)] = success rate of every per-query metric; bytes
    from `quant.code_bytes` (D = 64: binary@64 = 8 B, int8@64 = 64 B, float@64 = 256 B)."""
    from experiments.reproduce.quant import code_bytes

    rows = []
    for (method, p, d), rate in rates.items():
        for s in SEEDS:
            v = _outcomes(rate, zlib.crc32(f"{method}-{p}-{d}-{s}".encode()))
            rows.append({"method": method, "config": f"{method} {p}@{d}", "precision": p, "d": d,
                         "bytes": code_bytes(d, p), "seed": s,
                         "_pq": {name: v for name in claims.ANN_VEC.values()}})
    return {"exp8_quant": rows}


def _quant_rates(int8_small=0.7, binary_full=0.5, float_full=0.95):
    rates = {("MR-prefix", p, d): 0.3 for p in ("binary", "int8", "float") for d in NEST}
    rates.update({("MR-prefix", "int8", 8): int8_small, ("MR-prefix", "float", 16): 0.8,
                  ("MR-binary", "binary", 64): binary_full, ("MR-int8", "int8", 64): 0.8,
                  ("MR-float", "float", 64): float_full})
    rates.update({("MR-prefix", p, 64): rates[(f"MR-{p}", p, 64)] for p in ("binary", "int8", "float")})
    return rates


def test_quant_claim_picks_a_prefix_within_the_bytes_and_its_control_fails():
    """int8@8 (8 B) at 0.7 beats binary@64 (8 B) at 0.5 and float@16 (64 B) matches int8@64
    (64 B) at 0.8: reproduced. The float@64 candidate (256 B, the rigid row itself) is never
    chosen; binary@64 vs float@64 differs by 45 pp: the control is not reproduced."""
    out = claims.judge_claim(_claim("quant-prefix-per-byte"), _exp8(_quant_rates()), _ctx())
    assert out["verdict"] == rules.REPRODUCED, out["measured"]
    assert out["control_verdict"] == rules.NOT_REPRODUCED
    assert set(out["metrics"]) == {"10-recall@10", "mAP@10"}
    assert "int8@8 (8 B) vs binary@64 (8 B)" in out["points"]
    assert "float@16 (64 B) vs int8@64 (64 B)" in out["points"]
    gains = dict(re.findall(r"(\w+)@D ([+-][\d.]+) pp", out["points"]))
    assert set(gains) == {"binary", "int8"} and abs(float(gains["binary"]) - 20) < 4
    assert abs(float(gains["int8"])) < 4
    assert "@64 (256 B)" not in out["points"].split("; control")[0].replace("vs float@64", "")


def test_quant_claim_is_not_reproduced_when_every_prefix_is_worse():
    rates = _quant_rates(int8_small=0.3)
    rates[("MR-prefix", "float", 16)] = 0.3
    out = claims.judge_claim(_claim("quant-prefix-per-byte"), _exp8(rates), _ctx())
    assert out["verdict"] == rules.NOT_REPRODUCED and out["why_not"].startswith("On 10-recall@10")


def test_quant_claim_is_vacuous_when_binary_reaches_float_at_full_d():
    """The negative control can pass: identical binary@D and float@D outcomes make it reproduced,
    so the claim cannot be told apart from a pair that must differ."""
    tables = _exp8(_quant_rates(binary_full=0.5, float_full=0.5))
    by = {(r["method"], r["seed"]): r for r in tables["exp8_quant"]}
    for s in SEEDS:
        by[("MR-binary", s)]["_pq"] = by[("MR-float", s)]["_pq"]
    out = claims.judge_claim(_claim("quant-prefix-per-byte"), tables, _ctx())
    assert out["control_verdict"] == rules.REPRODUCED
    assert out["verdict"] == rules.VACUOUS and "control passes" in out["why_not"]


def test_quant_claim_without_rigid_rows_is_not_applicable():
    rates = {k: v for k, v in _quant_rates().items() if k[0] == "MR-prefix"}
    out = claims.judge_claim(_claim("quant-prefix-per-byte"), _exp8(rates), _ctx())
    assert out["verdict"] == rules.NOT_APPLICABLE


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


# ---------------------------------------------------------------- exp5: OPQ at half the bytes

def _exp5(rates):
    """exp5 OPQ rows: rates[(method, M, d)] = (recall rate, mAP rate) of the per-query outcomes
    (mAP@10 outcomes drawn per seed only: equal rates give identical outcomes)."""
    rows = []
    for (method, M, d), (recall, ap) in rates.items():
        for s in SEEDS:
            h = zlib.crc32(f"{method}-{M}-{d}-{s}".encode())
            rows.append({"method": method, "config": f"{method} M={M} d={d}", "M": M, "bytes": M,
                         "d": d, "seed": s,
                         "_pq": {"recall10_per_query": _outcomes(recall, h),   # the same mAP
                                 "ap10_per_query": _outcomes(ap, s),           # draws per seed
                                 "top1_per_query": _outcomes(ap, s)}})
    return {"exp5_opq": rows}


def test_opq_half_bytes_is_judged_on_recall_so_its_control_can_fail():
    """Rigid OPQ at 4 and 8 bytes with the same mAP@10 but 25 pp apart in recall (the full run's
    shape): the control fails on recall; AdANNS-OPQ at 4 bytes equal to rigid at 8 reproduces.
    On mAP@10 alone the control would pass and the claim would be vacuous."""
    rates = {("FF-OPQ", 4, 64): (0.30, 0.80), ("FF-OPQ", 8, 64): (0.55, 0.80),
             ("AdANNS-OPQ", 4, 16): (0.55, 0.80), ("AdANNS-OPQ", 4, 64): (0.30, 0.80)}
    tables = _exp5(rates)
    rigid8 = {r["seed"]: r["_pq"] for r in tables["exp5_opq"] if r["method"] == "FF-OPQ" and r["M"] == 8}
    for r in tables["exp5_opq"]:   # AdANNS-OPQ d=16 at 4 bytes: the same outcomes as rigid at 8
        if r["method"] == "AdANNS-OPQ" and r["d"] == 16:
            r["_pq"] = rigid8[r["seed"]]
    out = claims.judge_claim(_claim("adanns-opq-half-bytes"), tables, _ctx())
    assert set(out["metrics"]) == {"10-recall@10", "mAP@10"}
    assert out["verdict"] == rules.REPRODUCED, out["measured"]
    assert out["control_verdict"] == rules.NOT_REPRODUCED
    assert "AdANNS-OPQ M=4 d=16" in out["points"]
    assert out["control_metrics"]["mAP@10"]["verdict"] == rules.REPRODUCED   # mAP alone: no headroom
