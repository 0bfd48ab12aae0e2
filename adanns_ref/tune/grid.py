"""The search space of `python -m adanns_ref.tune`: one list of index *builds*, each with the
search-time settings swept on it (faiss AutoTune's split: build once, sweep the cheap knobs).

A build is ``{"family", "build": {...}, "sweep": [{...}, ...]}``; one configuration is a build
plus one sweep entry. Families and their axes (D the full dim, `dims` the nesting sizes):

    flat     d                                    exact search on the d-prefix
    funnel   d0, r | k0                           shortlist k0 at d0, re-rank at r > d0, keep k
    ivf      nlist, d_c | d_s, nprobe             d_c = d_s: IVF at one prefix; d_c < d_s:
                                                  AdANNS-IVF; d_s is a query-time choice
                                                  (AdANNS-IVF-D) over the D-dim stored vectors
    pq       d, M | -                             AdANNS-OPQ: OPQ + PQ with M bytes on the d-prefix
    ivfpq    nlist, d, M | nprobe                 (AdANNS-)IVFOPQ on the d-prefix, d_c = d_s = d
    sq       d, qtype | -                         scalar quantizer (8bit, fp16) on the d-prefix
                                                  (faiss IndexScalarQuantizer behind the prefix chain)
    sqfunnel d0, r | k0                           shortlist k0 by SQ8 at d0, exact re-rank at
                                                  r > d0 (faiss IndexRefine over the SQ8 index)
    hnsw     M, d_c | d_s, ef_search              HNSW graph on the d_c-prefix (efConstruction
                                                  40, faiss's default); d_s > d_c re-scores the
                                                  max(ef, k) candidates (AdANNS-HNSW); d_s and
                                                  ef are query-time choices
    panorama    d = D, n_levels | -               exact at full D, Panorama pruning (faiss
                                                  IndexFlatL2Panorama / IndexFlatIPPanorama)
    panoivf     nlist, d = D, n_levels | nprobe   IVF-Flat with Panorama pruning
                                                  (IndexIVFFlatPanorama)
    fastscan    d, M | -                          4-bit PQ fast-scan on the d-prefix
                                                  (IndexPQFastScan, M / 2 bytes)
    ivffastscan nlist, d, M | nprobe              IVF + 4-bit fast-scan on the d-prefix
                                                  (IndexIVFPQFastScan, by_residual False; l2)
    fsfunnel    d0, M, r | k0                     shortlist k0 by fast-scan at d0, exact re-rank
                                                  at r > d0 (IndexRefine over IndexPQFastScan)
The last five (issues 27 and 29) are in `families.py`, with their maths and faiss forms.

Binary (sign-bit) codes are not a family: faiss serves Hamming search on float queries only as
IndexLSH, which sets a bit where x >= 0 (the sign bits of `binary.binarize`, and of the vector
databases, are x > 0; on post-ReLU embeddings every coordinate is >= 0, so IndexLSH codes are all
ones), and IndexBinaryFlat takes codes, not queries: no single faiss file serves it.

Defaults scale with the data: nlist = 2^round(log2 sqrt(N)) times {1/2, 1, 2, 4} ({1} in quick
mode), capped at N / 39 (faiss's fewest training points per centroid) and at least 1; nprobe the
powers of two up to min(nlist, 64); funnel shortlists k * {2, 5, 10, 20, 50}; PQ sizes
M in {4, 8, 16, 32, 64} bytes with M <= d and d % M == 0; SQ qtypes 8bit and fp16, SQ funnels
with the funnels' shortlists. Quick mode: SQ8 only, at the IVF d_c dims, SQ funnels re-rank at D; d_c every other dim, funnels
re-rank at D only, shortlists k * {5, 20}, nprobe {1, 4, 16}, (IVF)OPQ at D with 8 bytes and 3
OPQ iterations, HNSW with M 16 at the IVF's d_c and M 32 at D, efSearch {16, 64} (full:
M {16, 32} at every d_c, efSearch 16..256 by doublings). Both grids hold faiss's index-factory
families at full D: IVF{nlist},Flat (ivf d_c = d_s = D, nlist ~ sqrt N) and HNSW{M} (hnsw
d_c = d_s = D), searched as faiss searches them (with the user's metric, no normalisation
unless asked for), so the choice is never worse than faiss AutoTune's over them on the grid's
settings. `refine.around_front` adds a second pass around the Pareto front. AdANNS-IVF and
AdANNS-HNSW keep d_c <= d_s, the shape a single faiss index serves
(`faiss_bridge.serve.adanns_ivf`).

The Panorama and fast-scan families (`scan_builds`, appended after the others, which they leave
as they were) use one nlist, the central one (2^round(log2 sqrt N), capped). Full grid: Panorama
with n_levels in {4, 8, 16, 32} (those <= D that faiss keeps untruncated: equal blocks of
ceil(D / n) dims), panoivf with the second and third of them and nprobe as IVF; fast-scan and
IVF fast-scan at every prefix d with M in {8, 16, 32, 64} (M <= d, d % M == 0; M < 258, so
faiss's uint16 sums never wrap); fast-scan funnels at every d0 < D with M = min(64, d0 / 2),
every r > d0 and the funnels' shortlists. Quick mode: one configuration each: Panorama with
n_levels 8 (or the largest valid below), panoivf with it at nprobe 4, fast-scan and IVF
fast-scan with M = 16 at the largest prefix 16 divides (nprobe 4), the fast-scan funnel at the
middle prefix below D re-ranked at D with the larger quick shortlist (k * 20).

Budgets prune before anything is built where the cost is known from the configuration alone
(bytes per vector of every family, MFLOPs of flat, funnels and fast-scan): a configuration
every given budget rejects can be chosen under none of them. `prune_budget` counts them.

Extension point: a new family adds its builds in `builds`, its storage in `bytes_per_vector`,
and one `families.Searcher` subclass in `measure.BUILDERS` (constructor = build,
``search(q, k, **sweep) -> (D, I, flops)``, ``make_form(sweep)`` = its faiss form);
`choose`, `report` and the CLI take it from there.
"""
import math

from ..core import cost
from .families import fastscan_table_flops

HNSW_EF_CONSTRUCTION = 40  # faiss IndexHNSW's default efConstruction


def _doublings(start, top):
    """start, 2 start, 4 start, ... below top, then top."""
    out, v = [], start
    while v < top:
        out.append(v)
        v *= 2
    return out + [top]


def default_dims(D):
    """Powers of two from 8 up to D, plus D (just [D] if D <= 8)."""
    return _doublings(8, D)


def nlists(N, quick):
    base = 2 ** round(math.log2(max(1.0, math.sqrt(N))))
    factors = (1,) if quick else (0.5, 1, 2, 4)
    cap = max(1, N // 39)
    return sorted({max(1, min(cap, int(base * f))) for f in factors})


def nprobes(nlist, quick):
    top = min(nlist, 64)
    if quick:
        return sorted({min(p, top) for p in (1, 4, 16)})
    return _doublings(1, top)


def pq_sizes(d, quick):
    sizes = (8,) if quick else (4, 8, 16, 32, 64)
    return [M for M in sizes if M <= d and d % M == 0]


def flat_bytes(d):
    return cost.bytes_per_vector_flat(d)


SQ_QTYPES = ("8bit", "fp16")
SCAN_FAMILIES = ("panorama", "panoivf", "fastscan", "ivffastscan", "fsfunnel")  # `families.py`
FAMILIES = ("flat", "funnel", "ivf", "pq", "ivfpq", "sq", "sqfunnel", "hnsw") + SCAN_FAMILIES
PANORAMA_LEVELS = (4, 8, 16, 32)


def panorama_levels(D, quick):
    """n_levels of the Panorama families: those of PANORAMA_LEVELS that faiss keeps as given
    (equal blocks of ceil(D / n) dims, no truncation; 1 if none); quick: the largest <= 8."""
    ok = [n for n in PANORAMA_LEVELS if n <= D and -(-D // -(-D // n)) == n] or [1]
    return [max([n for n in ok if n <= 8] or ok[:1])] if quick else ok


def fastscan_sizes(d, quick):
    """M of the 4-bit fast-scan PQ on the d-prefix: M <= d, d % M == 0 (quick: 16 only)."""
    sizes = (16,) if quick else (8, 16, 32, 64)
    return [M for M in sizes if M <= d and d % M == 0]


def fsfunnel_m(d0):
    """M of a fast-scan funnel's stage 0: d0 / 2 (two dims per sub-quantizer) up to 64, or None
    when no such M divides d0."""
    M = min(64, d0 // 2)
    return M if M >= 1 and d0 % M == 0 else None


def funnel_shortlists(N, k, quick):
    factors = (5, 20) if quick else (2, 5, 10, 20, 50)
    return sorted({min(N, k * f) for f in factors if k * f <= N and k * f > k})


def builds(N, D, k, dims, quick=False, families=FAMILIES):
    """The list of builds (see the module docstring), cheapest family first."""
    out = []
    small = [d for d in dims if d < D]
    if "flat" in families:
        for d in dims:
            out.append({"family": "flat", "build": {"d": d}, "sweep": [{}]})
    shortlists = funnel_shortlists(N, k, quick)
    for family in ("funnel", "sqfunnel"):
        if family in families:
            for d0 in small[::2] if quick and family == "sqfunnel" else small:
                for r in [D] if quick else [r for r in dims if r > d0]:
                    out.append({"family": family, "build": {"d0": d0, "r": r},
                                "sweep": [{"k0": k0} for k0 in shortlists]})
    ivf_dcs = small[::2] + [D] if quick else dims
    if "sq" in families:
        for d in sorted(set(ivf_dcs)):
            for qtype in SQ_QTYPES[:1] if quick else SQ_QTYPES:
                out.append({"family": "sq", "build": {"d": d, "qtype": qtype}, "sweep": [{}]})
    # quick: the largest dim the 8-byte code divides (D itself for the usual embedding sizes)
    pq_dims = [max((d for d in dims if d % 8 == 0), default=D)] if quick else dims
    for nlist in nlists(N, quick):
        if "ivf" in families:
            for d_c in sorted(set(ivf_dcs)):
                sweep = [{"d_s": d_s, "nprobe": p} for d_s in dims if d_s >= d_c
                         for p in nprobes(nlist, quick)]
                out.append({"family": "ivf", "build": {"nlist": nlist, "d_c": d_c}, "sweep": sweep})
        if "ivfpq" in families:
            for d in pq_dims:
                for M in pq_sizes(d, quick):
                    out.append({"family": "ivfpq", "build": {"nlist": nlist, "d": d, "M": M},
                                "sweep": [{"nprobe": p} for p in nprobes(nlist, quick)]})
    if "pq" in families:
        for d in pq_dims:
            for M in pq_sizes(d, quick):
                out.append({"family": "pq", "build": {"d": d, "M": M}, "sweep": [{}]})
    if "hnsw" in families:
        efs = (16, 64) if quick else (16, 32, 64, 128, 256)
        graphs = [(16, d_c) for d_c in sorted(set(ivf_dcs))] + [(32, D)] if quick else \
            [(M, d_c) for M in (16, 32) for d_c in sorted(set(ivf_dcs))]
        for M, d_c in graphs:   # HNSW32 at full D (faiss's "HNSW32") is in both grids
            out.append({"family": "hnsw", "build": {"M": M, "d_c": d_c},
                        "sweep": [{"d_s": d_s, "ef_search": ef} for d_s in dims if d_s >= d_c
                                  for ef in efs]})
    return out + scan_builds(N, D, k, dims, quick, families)


def scan_builds(N, D, k, dims, quick, families):
    """The builds of the families in `families.py` (Panorama, fast-scan; one nlist, the
    central one): the full grid as in the module docstring; quick: one configuration each."""
    out = []
    nlist = nlists(N, True)[0]
    probes = [{"nprobe": p} for p in ([min(4, nlist)] if quick else nprobes(nlist, False))]
    levels = panorama_levels(D, quick)
    if "panorama" in families:
        out += [{"family": "panorama", "build": {"d": D, "n_levels": L}, "sweep": [{}]}
                for L in levels]
    if "panoivf" in families:
        out += [{"family": "panoivf", "build": {"nlist": nlist, "d": D, "n_levels": L},
                 "sweep": probes} for L in (levels if quick else levels[1:3] or levels)]
    fs_dims = [max((d for d in dims if fastscan_sizes(d, True)), default=D)] if quick else dims
    for d in fs_dims:
        for M in fastscan_sizes(d, quick):
            if "fastscan" in families:
                out.append({"family": "fastscan", "build": {"d": d, "M": M}, "sweep": [{}]})
            if "ivffastscan" in families:
                out.append({"family": "ivffastscan", "build": {"nlist": nlist, "d": d, "M": M},
                            "sweep": probes})
    small = [d for d in dims if d < D and fsfunnel_m(d)]
    k0s = funnel_shortlists(N, k, quick)[-1:] if quick else funnel_shortlists(N, k, quick)
    if "fsfunnel" in families and small and k0s:
        for d0 in [small[len(small) // 2]] if quick else small:
            for r in [D] if quick else [r for r in dims if r > d0]:
                out.append({"family": "fsfunnel", "build": {"d0": d0, "M": fsfunnel_m(d0), "r": r},
                            "sweep": [{"k0": k0} for k0 in k0s]})
    return out


def bytes_per_vector(family, params):
    """Stored bytes per database vector of one configuration (ids of IVF lists included)."""
    if family == "flat":
        return cost.bytes_per_vector_flat(params["d"])
    if family == "funnel":  # the faiss form keeps both prefixes (faiss_bridge.serve.funnel)
        return cost.bytes_per_vector_flat(params["d0"]) + cost.bytes_per_vector_flat(params["r"])
    if family == "ivf":
        return cost.bytes_per_vector_flat(params["d_s"], ids=True)
    if family == "pq":
        return cost.bytes_per_vector_pq(params["M"])
    if family == "ivfpq":
        return cost.bytes_per_vector_pq(params["M"], ids=True)
    if family == "sq":   # faiss code sizes: d bytes (8bit), 2 d (fp16)
        return params["d"] * (2 if params["qtype"] == "fp16" else 1)
    if family == "sqfunnel":  # SQ8 codes at d0 plus the r-prefix the re-rank reads
        return params["d0"] + cost.bytes_per_vector_flat(params["r"])
    if family == "hnsw":
        return cost.bytes_per_vector_hnsw(params["d_c"], params["M"], params["d_s"])
    if family in ("panorama", "panoivf"):  # faiss keeps the rows and L + 1 tail norms per row
        return cost.bytes_per_vector_flat(params["d"], ids=family == "panoivf") + \
            4 * (params["n_levels"] + 1)
    if family in ("fastscan", "ivffastscan"):
        return cost.bytes_per_vector_pq(params["M"], 4, ids=family == "ivffastscan")
    if family == "fsfunnel":
        return cost.bytes_per_vector_pq(params["M"], 4) + cost.bytes_per_vector_flat(params["r"])
    raise ValueError(f"unknown family {family!r}")


def known_mflops(family, params, N, k):
    """MFLOPs per query when the configuration alone fixes them (flat, funnel), else None."""
    if family in ("flat", "sq"):   # SQ: the same arithmetic on decoded values
        return cost.exact_flops(params["d"], N) / 1e6
    if family in ("funnel", "sqfunnel"):
        return cost.funnel_flops(params["d0"], N, [(params["r"], params["k0"])]) / 1e6
    if family == "fastscan":
        return fastscan_table_flops(params["d"], params["M"]) / 1e6
    if family == "fsfunnel":
        return (fastscan_table_flops(params["d0"], params["M"]) + params["k0"] * params["r"]) / 1e6
    return None


def prune_budget(builds_, N, k, budgets):
    """Drop sweep entries that every given budget rejects on cost known before building
    -> (kept builds, number pruned). budgets: dict with "bytes", "mflops", "ms", "recall"
    (None = not given). A configuration is dropped only when each given budget is known to
    reject it (ms and recall are never known in advance), so no choice can need it."""
    given = {name: v for name, v in budgets.items() if v is not None}
    kept, pruned = [], 0
    for b in builds_:
        sweep = []
        for s in b["sweep"]:
            params = {**b["build"], **s}
            mf = known_mflops(b["family"], params, N, k)
            rejected = {"bytes": "bytes" in given and bytes_per_vector(b["family"], params) > given["bytes"],
                        "mflops": "mflops" in given and mf is not None and mf > given["mflops"]}
            if given and all(rejected.get(name, False) for name in given):
                pruned += 1
            else:
                sweep.append(s)
        if sweep:
            kept.append({**b, "sweep": sweep})
    return kept, pruned
