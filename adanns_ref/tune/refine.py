"""The second pass of the grid: refine around the Pareto front of the coarse pass.

The coarse grid (`grid.builds`) spaces its knobs by doublings; the best configuration under a
budget often sits between two of them. For each row on the validation-recall vs MFLOPs front
(`front`: per family on the full grid, overall with --quick), `around_front` proposes the
configurations next to it that were not measured:

    ivf, ivfpq,   nprobe from `FINE` within [p / 2, 2 p] (capped at nlist), and for ivf the
    panoivf,      same d_c, d_s and nprobe range on a second nlist (half and double, capped at
    ivffastscan   N / 39); ivf also the d_s between the row's and its neighbours in `dims`
    hnsw          efSearch from `FINE` within [ef / 2, 2 ef]; M = 32 if the row has M = 16
    funnel,       re-rank depths: k0 = k * f for f in `K0_FACTORS` within [k0 / 2, 2 k0], and
    sqfunnel,     the re-rank dims r between the row's and its neighbours
    fsfunnel
    flat, sq      the prefix sizes between the row's d and its neighbours in `dims`
    panorama,     nothing (one build per n_levels; exact)
    fastscan

Intermediate prefix sizes are midpoints rounded to a multiple of 4. Proposals are grouped into
builds (family + build parameters -> sweep entries), so a refined index is built once. --quick
refines the same way (its coarse grid is smaller, its refinement too: only the front).
"""
from ..evaluation.select import pareto_front
from . import grid
from .measure import config_key

FINE = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
K0_FACTORS = (2, 3, 4, 5, 7, 10, 15, 20, 30, 50, 75, 100)


def _near(values, v, top):
    return [x for x in values if v / 2 <= x <= 2 * v and x <= top and x != v]


def midpoints(d, dims, D):
    """Prefix sizes halfway between d and its neighbours in dims (multiples of 4, new ones)."""
    ds = sorted(set(dims) | {D})
    i = ds.index(d) if d in ds else None
    out = set()
    if i is not None:
        for j in (i - 1, i + 1):
            if 0 <= j < len(ds):
                m = 4 * round((ds[i] + ds[j]) / 8)
                if 0 < m <= D and m not in ds:
                    out.add(m)
    return sorted(out)


def _proposals(row, N, D, k, dims):
    """(family, build dict, sweep dict) tuples next to one front row."""
    f, b, s = row["family"], dict(row["build"]), dict(row["sweep"])
    if f in ("ivf", "ivfpq", "panoivf", "ivffastscan"):
        nlist, p = b["nlist"], s["nprobe"]
        yield from ((f, b, {**s, "nprobe": q}) for q in _near(FINE, p, nlist))
        if f == "ivf":
            for d_s in midpoints(s["d_s"], dims, D):
                if d_s >= b["d_c"]:
                    yield f, b, {**s, "d_s": d_s}
            cap = max(1, N // 39)
            for other in {min(cap, nlist * 2), max(1, nlist // 2)} - {nlist}:
                for q in [p] + _near(FINE, p, other):
                    if q <= other:
                        yield f, {**b, "nlist": other}, {**s, "nprobe": q}
    elif f == "hnsw":
        yield from ((f, b, {**s, "ef_search": e}) for e in _near(FINE, s["ef_search"], 1 << 20))
        if b["M"] < 32:
            yield f, {**b, "M": 32}, s
    elif f in ("funnel", "sqfunnel", "fsfunnel"):
        k0s = [k * x for x in K0_FACTORS if k * x <= N]
        yield from ((f, b, {"k0": k0}) for k0 in _near(k0s, s["k0"], N) if k0 > k)
        for r in midpoints(b["r"], dims, D):
            if r > b["d0"]:
                yield f, {**b, "r": r}, s
    elif f in ("flat", "sq"):
        for d in midpoints(b["d"], dims, D):
            yield f, {**b, "d": d}, s


def front(rows, quick):
    """The rows to refine around: the validation-recall vs MFLOPs front of all rows (quick), or
    of each family (full grid). MFLOPs, not ms: the front, hence the refined grid and the
    choice, must not depend on timing noise (issue 26, item 20). Quick: the front of the
    Panorama and fast-scan families (`grid.SCAN_FAMILIES`) is taken apart from the others', so
    that adding them changed none of the older families' refined rows."""
    if quick:
        scan = [r for r in rows if r["family"] in grid.SCAN_FAMILIES]
        older = [r for r in rows if r["family"] not in grid.SCAN_FAMILIES]
        return pareto_front(older, x="mflops", y="recall_val") + \
            pareto_front(scan, x="mflops", y="recall_val")
    out = []
    for family in sorted({r["family"] for r in rows}):
        out += pareto_front([r for r in rows if r["family"] == family], x="mflops", y="recall_val")
    return out


def around_front(rows, N, D, k, dims, quick=False, families=grid.FAMILIES):
    """New builds (grid.builds' shape) refining the coarse pass around its front (`front`)."""
    seen = {r["config"] for r in rows}
    out = {}
    for row in front(rows, quick):
        for family, b, s in _proposals(row, N, D, k, dims):
            if family not in families:
                continue
            if config_key(family, {**b, **s}) in seen:
                continue
            seen.add(config_key(family, {**b, **s}))
            key = (family, tuple(sorted(b.items())))
            out.setdefault(key, {"family": family, "build": b, "sweep": []})["sweep"].append(s)
    builds = list(out.values())
    for spec in builds:
        spec["sweep"].sort(key=lambda s: tuple(sorted(s.items())))
    return builds
