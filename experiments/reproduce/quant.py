"""Experiment 8: quantized Matryoshka prefixes (binary, 4-bit, int8, float) and binary funnels.

What vector databases do with Matryoshka embeddings is truncate them and quantize them. Every
MR prefix d of the nesting list is searched exhaustively at each precision p of
cfg["quant_precisions"]:

    binary  sign bits [x_t > 0] of the d-prefix, 8 per byte; Hamming k-NN  (ceil(d / 8) B)
    4bit    faiss QT_4bit SQ of the normalised d-prefix (`SQIndex`), L2    (ceil(d / 2) B)
    int8    faiss QT_8bit SQ of the normalised d-prefix, L2                (d B)
    float   exact L2 on the normalised d-prefix (cosine)                   (4 d B)

and the same precisions at full D on the rigid FF-D model ("FF-<p>"). The rows at d = D on MR
are the rigid precision at full D ("MR-<p>" copies). Binary funnels (the vector-database
"rescore" pattern): binary@d -> ceil(oversample * 10) candidates -> float@D re-rank, for each d
and each oversample of cfg["quant_oversamples"]; their `bytes` are the scanned binary codes,
`bytes_stored` adds the 4 D float bytes the re-rank reads. One Hamming scan per d serves the
binary row and every funnel: its k = the longest shortlist, and with ties to the smaller id the
top-s of a top-s' list (s <= s') is the top-s list, so each funnel re-ranks a prefix of it
(`binary_funnels`; equal to `funnel.mixed_funnel_search`, tests/test_quant_exp.py).

The embedding is a post-ReLU layer (every coordinate >= 0), so the sign bit is "the unit is
active"; a centred threshold would be a different quantizer, and is not what the vector
databases apply.

Grid rule (it follows cfg["nesting"]): binary at every d (a Hamming scan is ~30x cheaper than an
SQ8 scan); 4bit / int8 / float only at d <= cfg["quant_max_d"] (None: every d), plus float at D,
which is the exact reference search itself. FF-D rows (cfg["quant_ff"]) are searched for the
precisions whose MR row at D exists; each needs its own exact search at D. 10-recall@10 is against exact float search at full D on the same
representation (MR-D for MR rows, FF-D for FF rows). Choices of the best prefix x precision per
byte budget are left to the claim (`evidence.quant_budget`, cross-fitted).

Experiment 9 (`exp9_pruning`, below): exact prefix pruning (faiss's Panorama,
`adanns_ref.panorama`) on MRL vs FF embeddings, and the claim "MRL training makes exact prefix
pruning work better than FF".

Panorama answers exact k-NN queries level by level and drops a candidate once the Cauchy-Schwarz
bound e_l - 2 rho_l(x) rho_l(q) (rho_l: the norm of the dims not yet read) exceeds the current
k-th distance. It saves work when the energy of the vectors sits in the first dims, which is
what Matryoshka training asks of an embedding; a fixed-feature (FF) model has no reason to order
its dims. Here, per seed, the re-normalised full-D embeddings of MRL and of FF-D are searched
exactly (k = 10, batches of BATCH rows) with levels at the nesting sizes
(`PanoramaFlatIndex(nesting=...)`); per query
the outcome is the fraction of the N x D multiply-adds the pruning skipped ("dims pruned"). The
search is exact, so its ids are those of brute-force search (the rows' top-1 / mAP@10 say so).

Rule ("beats", `rules.evaluate`): MRL's dims pruned above FF-D's, the 95 % bootstrap interval
(over seeds and queries) of the paired per-query gain above 0; no configuration is chosen, so
there is no cross-fitting.
Control: the same MRL embedding with its dims in a fixed random order (seed RULE_SEED) must
*not* beat FF-D. It has the same vectors, distances and neighbours, only not ordered by
importance; if it beats FF too, the gain comes from something other than the Matryoshka order
and the claim is *vacuous at this scale*.
Also reported (not judged): energy share ||x_{:m}||^2 / ||x||^2 per nesting size m and the
pruning rate per level.
"""
import time

import numpy as np

from adanns_ref.core.truncate import prefix
from adanns_ref.panorama import PanoramaFlatIndex, energy_share
from adanns_ref.search.knn import knn_search

from .mrl import ff_models, model_stages
from .rows import RowCollector
from .stage import log, timed_repeats, timing
from .verdicts.claims import Claim
from .verdicts.evidence import MIN_EFFECT, RULE_SEED, Evidence, NotApplicable

QUANT_K = 10                  # results per query (10-recall@10)
# a preset without these keys (e.g. one added in parallel) runs the cheap, nesting-following grid
DEFAULTS = dict(quant_precisions=["binary", "int8", "float"], quant_max_d=128,
                quant_oversamples=[4, 10], quant_ff=False)
BITS = {"binary": 1, "4bit": 4, "int8": 8, "float": 32}
SQ_QTYPE = {"4bit": "4bit", "int8": "8bit"}


def code_bytes(d, precision):
    """Bytes of one d-dim code at `precision` (faiss's code sizes: whole bytes per vector)."""
    return -(-d * BITS[precision] // 8)


def quant_grid(nesting, precisions, max_d):
    """[(d, precision)] of the MR rows: binary at every d, the others at d <= max_d (None: all);
    every precision at D (the rigid budgets, and float@D the exact reference); and, for the bytes
    B of each rigid low precision at D and each precision p, the largest d < D whose p-code fits
    in B: the candidate the claim compares at that budget (`grids.quant_holes`), so the grid
    has no hole whatever max_d is."""
    D = nesting[-1]
    keep = {(d, p) for d in nesting for p in precisions
            if p == "binary" or max_d is None or d <= max_d or d == D}
    for budget in [p for p in precisions if p != "float"]:
        for p in precisions:
            fits = [d for d in nesting if d < D and code_bytes(d, p) <= code_bytes(D, budget)]
            if fits:
                keep.add((fits[-1], p))
    return [(d, p) for d in nesting for p in precisions if (d, p) in keep]


def _searcher(db, d, precision):
    """search(q) -> I (nq, QUANT_K): an exhaustive search of the d-prefixes of db at
    `precision`; the codes / SQ index are built here, outside the timed searches."""
    if precision == "binary":
        from adanns_ref.quantizers.binary import binarize, hamming_knn
        codes = binarize(db, d)
        return lambda q: hamming_knn(binarize(q, d), codes, QUANT_K)[1]
    zb = prefix(db, d)
    if precision == "float":
        return lambda q: knn_search(prefix(q, d), zb, QUANT_K)[1]
    from adanns_ref.indices.sqindex import SQIndex
    index = SQIndex(d, SQ_QTYPE[precision])
    index.train(zb)
    index.add(zb)
    return lambda q: index.search(prefix(q, d), QUANT_K)[1]


def _search(db, q, d, precision):
    """I (nq, QUANT_K) of an exhaustive search of the d-prefixes at `precision`."""
    return _searcher(db, d, precision)(q)


def binary_funnels(db, q, d, D, oversamples, cfg=None):
    """One Hamming scan of the d-bit codes -> (I of the binary row (nq, QUANT_K), its ms/query
    per timed repeat, {oversample: (I of binary@d -> ceil(oversample * QUANT_K) -> float@D, ms
    per timed repeat incl. the scan, shortlist)}); cfg None: no timing (empty lists)."""
    from adanns_ref.quantizers.binary import binarize, hamming_knn
    from adanns_ref.funnel.funnel import rerank

    lists = {o: min(db.shape[0], int(np.ceil(o * QUANT_K))) for o in oversamples}
    codes, longest = binarize(db, d), max([QUANT_K, *lists.values()])

    def scan(qq):
        return hamming_knn(binarize(qq, d), codes, longest)[1]

    S, ms_scan = (scan(q), []) if cfg is None else timed_repeats(scan, q, cfg)
    funnels = {}
    for o, s in lists.items():
        I = rerank(S[:, :s], db, q, D, QUANT_K)[1]
        ms = [] if cfg is None else timed_repeats(
            lambda qq, s=s: rerank(scan(qq)[:, :s], db, qq, D, QUANT_K)[1], q, cfg, full=False)[1]
        funnels[o] = (I, ms, s)
    return S[:, :QUANT_K], ms_scan, funnels


def _warm_up(db, q):
    """Compile (or load from numba's cache) every kernel the timed searches use."""
    for p in ("binary", "4bit", "int8", "float"):
        _search(db[:64], q[:4], min(8, db.shape[1]), p)
    binary_funnels(db[:64], q[:4], min(8, db.shape[1]), db.shape[1], [2])


def exp8_quant(pipe, cfg, data, models, val_idx, test_idx):
    """Every MR prefix x precision, the rigid precisions at full D on MR and FF-D, and binary
    funnels; one row per seed with bytes/vector, ms/query and the three accuracies."""
    from adanns_ref.core.cost import mixed_funnel_cost

    _, ytr, _, yte = data
    cfg = {**DEFAULTS, **cfg}
    nest, D = cfg["nesting"], cfg["D"]
    grid = quant_grid(nest, cfg["quant_precisions"], cfg["quant_max_d"])

    def row(rows, method, d, p, I, gt, seed, ms, **extra):
        return rows.add_retrieval(dict({"method": method, "config": f"{method} {p}@{d}", "seed": seed,
                                        "d": d, "precision": p, "bytes": code_bytes(d, p),
                                        "ms_per_query": float(np.median(ms)), "ms_repeats": ms},
                                       **extra), I, gt)

    def timed(db, q, d, p):
        return timed_repeats(_searcher(db, d, p), q, cfg)

    def compute(ctx):
        rows = RowCollector(ytr, yte, val_idx, test_idx)
        t0 = time.perf_counter()
        for seed, ms in models.items():
            mrl = ms["MRL"]
            _warm_up(mrl["db"], mrl["q"])
            gt, ms_gt = timed(mrl["db"], mrl["q"], D, "float")
            funnels = []
            for d, p in grid:
                if p == "binary":
                    I, ms_q, fs = binary_funnels(mrl["db"], mrl["q"], d, D, cfg["quant_oversamples"], cfg)
                    funnels += [(d, o, f) for o, f in fs.items()]
                elif (d, p) == (D, "float"):
                    I, ms_q = gt, ms_gt
                else:
                    I, ms_q = timed(mrl["db"], mrl["q"], d, p)
                r = row(rows, "MR-prefix", d, p, I, gt, seed, ms_q)
                if d == D:
                    rows.add_copy(r, method=f"MR-{p}", config=f"MR-{p} {p}@{D}")
            for d, o, (I, ms_q, s) in funnels:
                cost = mixed_funnel_cost(len(ytr), [(d, "binary", s), (D, "float", QUANT_K)])
                row(rows, "binary-funnel", d, "binary", I, gt, seed, ms_q,
                    config=f"binary@{d} x{o} -> float@{D}", oversample=o, shortlist=s,
                    bytes_stored=code_bytes(d, "binary") + code_bytes(D, "float"),
                    bytes_read_per_query=cost["bytes"])
            if cfg["quant_ff"]:
                ff = ff_models(ms)[D]
                gt_ff, ms_ff = timed(ff["db"], ff["q"], D, "float")
                for p in [p for d, p in grid if d == D]:
                    I, ms_q = (gt_ff, ms_ff) if p == "float" else timed(ff["db"], ff["q"], D, p)
                    row(rows, f"FF-{p}", D, p, I, gt_ff, seed, ms_q)
            log(f"exp8_quant: seed {seed} done ({len(rows.rows)} rows, {time.perf_counter() - t0:.1f} s)")
        return rows.result("exp8_quant", {"notes": (
            f"Prefixes x precisions {grid}; binary funnels binary@d -> ceil(oversample x {QUANT_K}) "
            f"-> float@{D}, oversample {cfg['quant_oversamples']}. " + (
                "The embedding is linear (pre-activation), so its sign bits split every unit at 0."
                if cfg.get("embedding") == "linear" else
                "The embedding is post-ReLU, so a sign bit says whether the unit is active."))})

    conf = {k: cfg[k] for k in ("nesting", "seeds", "quant_precisions", "quant_max_d", "quant_oversamples",
                                "quant_ff")}
    conf["timing"] = list(timing(cfg))
    deps = model_stages(models, ["MRL", f"FF-{D}"] if cfg["quant_ff"] else ["MRL"])
    return pipe.run("exp8_quant", conf, compute, deps=deps,
                    code=["adanns_ref.indices.binary", "adanns_ref.quantizers.sq", "adanns_ref.indices.sqindex", "adanns_ref.funnel.funnel",
                          "adanns_ref.core.topk", "adanns_ref.evaluation.metrics", "experiments.reproduce.rows",
                          "experiments.reproduce.quant"])


# ---------------------------------------------------------------- exp. 9: exact prefix pruning

PRUNING_K = 10
# Rows per storage batch. The threshold a batch prunes against is the k-th distance found before
# it, so the first batch is never pruned: faiss's default 1024 would leave a sixth of the small
# preset's 6,000 rows (and all of the tiny preset's) unpruned. 128 is faiss's pre-1.15.1 default.
PRUNING_BATCH = 128
PRUNING_VEC = "pruned_per_query"


def dims_pruned(db, q, nesting):
    """Exact top-k of q in db with Panorama levels at `nesting` -> (I (nq, k), fraction of the
    N x D multiply-adds skipped per query (nq,) float64, pruning rate per level (L,))."""
    D = db.shape[1]
    index = PanoramaFlatIndex(D, nesting=[m for m in nesting if m < D] + [D], batch_size=PRUNING_BATCH)
    index.add(db)
    _, I = index.search(q, PRUNING_K)
    s = index.last_search_stats
    read = s.per_query @ np.diff(index.bounds)
    return I, 1.0 - read / float(db.shape[0] * D), s.pruning_rate_per_level()


def pruning_queries(nq, n):
    """Sorted indices of the queries exp. 9 searches: all nq when n is None, else n of them
    drawn with RULE_SEED (Panorama scans one query at a time: the paper preset's 10,000
    queries x 3 rows x 5 seeds on 60,000 x 2048 would take most of its time budget)."""
    if n is None:
        return np.arange(nq)
    if type(n) is not int or not 1 <= n <= nq:
        raise ValueError(f"pruning_queries must be an int in [1, {nq}] or None, got {n!r}: fix the preset")
    return np.sort(np.random.default_rng(RULE_SEED).choice(nq, n, replace=False))


def exp9_pruning(pipe, cfg, data, models, val_idx, test_idx):
    """Rows MRL, MRL-permuted and FF-D per seed: dims pruned (per query), energy shares, pruning
    rate per level."""
    _, ytr, _, yte = data
    nest, D = cfg["nesting"], cfg["D"]
    perm = np.random.default_rng(RULE_SEED).permutation(D)

    sub = pruning_queries(len(yte), cfg.get("pruning_queries"))

    def compute(ctx):
        rows = RowCollector(ytr, yte[sub], np.flatnonzero(np.isin(sub, val_idx)),
                            np.flatnonzero(np.isin(sub, test_idx)))
        t0 = time.perf_counter()
        for seed, ms in models.items():
            mrl, ff = ms["MRL"], ff_models(ms).get(D)
            if ff is None:
                continue
            pairs = [("MRL", mrl["db"], mrl["q"][sub]),
                     ("MRL-permuted", mrl["db"][:, perm], mrl["q"][sub][:, perm]),
                     (f"FF-{D}", ff["db"], ff["q"][sub])]
            for method, db, q in pairs:
                zb, zq = prefix(db, D), prefix(q, D)
                I, pruned, rate = dims_pruned(zb, zq, nest)
                share = energy_share(zb, nest)
                row = {"method": method, "config": method, "seed": seed, "d": D,
                       "dims_pruned": float(pruned.mean()),
                       "energy_share": " ".join(f"{m}:{v:.3f}" for m, v in zip(nest, share)),
                       "pruning_rate_per_level": " ".join(f"{v:.3f}" for v in rate)}
                metrics, vectors = rows.evaluate(I)
                rows.add_vectors(dict(row, **metrics), dict(vectors, **{PRUNING_VEC: pruned}))
            log(f"exp9_pruning: seed {seed} done ({time.perf_counter() - t0:.1f} s)")
        return rows.result("exp9_pruning", {"notes": (
            f"Exact top-{PRUNING_K} of {len(sub)} test queries with Panorama levels at the nesting sizes {nest}; "
            f"dims pruned = "
            f"the fraction of N x D multiply-adds skipped, per query.")})

    conf = {"nesting": nest, "seeds": cfg["seeds"], "k": PRUNING_K}
    if cfg.get("pruning_queries") is not None:  # absent for all queries: earlier caches stay valid
        conf["queries"] = cfg["pruning_queries"]
    return pipe.run("exp9_pruning", conf, compute, deps=model_stages(models, ["MRL", f"FF-{D}"]),
                    code=["adanns_ref.panorama.flat", "adanns_ref.panorama.kernels",
                          "adanns_ref.panorama.levels", "experiments.reproduce.quant"])


def pruning_evidence(tables, ctx, claim):
    """MRL vs FF-D on the fraction of the exact search pruned (one point); control: MRL with its
    dims in a random order vs FF-D, judged by the claim's own rule (it must not pass)."""
    rows = tables["exp9_pruning"]
    by = {}
    for r in rows:
        by.setdefault(r["method"], {})[r["seed"]] = np.asarray(r["_pq"][PRUNING_VEC], np.float64)
    ff = next((m for m in by if m.startswith("FF-")), None)
    if ff is None or not all(s in by[m] for m in ("MRL", "MRL-permuted", ff) for s in ctx["seeds"]):
        raise NotApplicable("exp9_pruning has no FF model at full D for every seed")
    arr = lambda m: np.stack([by[m][s] for s in ctx["seeds"]])[:, None, :]   # (S, 1, nq)
    x, y, xc = arr("MRL"), arr(ff), arr("MRL-permuted")
    return Evidence(x=x, y=y, labels=["full D"], metric=claim.metric,
                    points=f"MRL vs {ff}, exact top-{PRUNING_K}, levels at the nesting sizes",
                    controls=[(f"MRL with its dims in a random order vs {ff}", "rigid", (xc, y))])


PRUNING_CLAIM = Claim(
    "mrl-prefix-pruning", "exact prefix pruning (Panorama, levels at the nesting sizes) skips more "
    "of the search on MRL than on FF at full D", "new claim (issue 27): a Matryoshka embedding "
    "puts its energy in the first dims, which faiss 1.15's Panorama exploits for exact search",
    "beats", "dims pruned", pruning_evidence, "exp9_pruning", min_effect=MIN_EFFECT)
