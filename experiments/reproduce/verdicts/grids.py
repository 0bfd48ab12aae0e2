"""Grid holes: where a claim's two sides were not measured over the same knob ranges.

A comparison is symmetric when both methods span the same knobs; a hole is a knob value one
side has and the other lacks, and a claim whose comparison has one is "not applicable at these
budgets" (`rules.NOT_APPLICABLE_BUDGETS`) with the hole named. The holes are computed here from
the rows that ran, never written by hand:

- exp4 (IVF): every d_c of AdANNS-IVF has the same (d_s, nprobe) values, d_s = D among them,
  at every nlist, and AdANNS-IVF and the rigid baseline share their nprobe values;
- exp7 (HNSW): a rigid MR-HNSW graph exists at every dim AdANNS-HNSW builds at or re-scores at,
  and both share their efSearch values;
- exp8 (quantized prefixes): at least two byte budgets (rigid low precisions at full D), and for
  each budget B and each precision p, the largest nesting size d < D whose p-code fits in B.
"""


def _label(values):
    return ", ".join(str(v) for v in sorted(values))


def ivf_holes(rows, D, baseline):
    """Holes of exp4's AdANNS-IVF grid (every (d_s, nprobe) at every (nlist, d_c), d_s = D
    among them) and of its nprobe range against `baseline` rows."""
    have, probes = {}, {}
    for r in rows:
        if r["method"] == "AdANNS-IVF":
            have.setdefault((r["nlist"], r["d_c"]), set()).add((r["d_s"], r["nprobe"]))
        if r["method"] in ("AdANNS-IVF", baseline):
            probes.setdefault(r["method"], set()).add(r["nprobe"])
    if not have:
        return []
    holes = []
    dss = {d for pairs in have.values() for d, _ in pairs}
    if D not in dss:
        holes.append(f"no AdANNS-IVF configuration searches at d_s = D = {D}")
    full = {(d, p) for d in dss | {D} for p in probes["AdANNS-IVF"]}
    for (nlist, d_c), pairs in sorted(have.items()):
        missing = full - pairs
        if missing:
            shown = ", ".join(f"d_s={d} nprobe={p}" for d, p in sorted(missing))
            holes.append(f"AdANNS-IVF at d_c = {d_c} (nlist {nlist}) lacks {shown}")
    if baseline in probes and probes["AdANNS-IVF"] != probes[baseline]:
        holes.append(f"nprobe {{{_label(probes['AdANNS-IVF'])}}} for AdANNS-IVF against "
                     f"{{{_label(probes[baseline])}}} for {baseline}")
    return holes


def hnsw_holes(rows):
    """Holes of exp7: dims AdANNS-HNSW uses without a rigid MR-HNSW graph, efSearch ranges."""
    used, rigid, efs = set(), set(), {}
    for r in rows:
        if r["method"] == "AdANNS-HNSW":
            used |= {r["d_c"], r["d_s"]}
        elif r["method"] == "MR-HNSW":
            rigid.add(r["d_c"])
        if r["method"] in ("AdANNS-HNSW", "MR-HNSW"):
            efs.setdefault(r["method"], set()).add(r["ef_search"])
    holes = []
    if used - rigid:
        holes.append(f"no rigid MR-HNSW graph at d = {{{_label(used - rigid)}}}, where AdANNS-HNSW "
                     "builds or re-scores")
    if len(efs) == 2 and efs["AdANNS-HNSW"] != efs["MR-HNSW"]:
        holes.append("efSearch ranges differ between AdANNS-HNSW and MR-HNSW")
    return holes


def quant_holes(rows, nesting, code_bytes):
    """Holes of exp8: fewer than two byte budgets, or a budget without the largest prefix of
    some precision that fits in it. code_bytes(d, precision) -> bytes of one code."""
    D = nesting[-1]
    budgets = {r["precision"]: r["bytes"] for r in rows
               if r["method"] == f"MR-{r['precision']}" and r["precision"] != "float"}
    have = {(r["precision"], r["d"]) for r in rows if r["method"] == "MR-prefix"}
    precisions = sorted({p for p, _ in have})
    holes = []
    if len(budgets) < 2:
        holes.append(f"{len(budgets)} byte budget(s) ({_label(f'{p}@D' for p in budgets) or 'none'}); "
                     "the claim needs at least two rigid low precisions at full D")
    for p_budget, B in sorted(budgets.items()):
        for p in precisions:
            fits = [d for d in nesting if d < D and code_bytes(d, p) <= B]
            if fits and (p, fits[-1]) not in have:
                holes.append(f"{p}@{fits[-1]} ({code_bytes(fits[-1], p)} B, the largest {p} prefix "
                             f"within the {B} B of {p_budget}@D) did not run")
    return holes
