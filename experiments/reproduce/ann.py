"""AdANNS side of the reproduction: experiments 4 (IVF), 5 (OPQ / IVFOPQ) and 6 (budgets).

Every configuration is one row per training seed with its cost (MFLOPs/query from the index's
own `last_search_flops`, bytes/vector, measured ms/query: the median of the preset's timed
repeats after an untimed search of every query, `stage.timed_repeats`, with the repeats in
`ms_repeats`) and its 10-recall@10 (against exact
search at full D on the same representation), mAP@10 and 1-NN top-1 on all test queries and on
the seeded halves A (`_val`) and B (`_test`), with per-query outcomes for the claims. Choices
made inside an experiment (the best prefix d per byte budget for AdANNS-OPQ, shown in the
report) are made on half A's mAP@10 and flagged `selected`; the claims redo every choice
cross-fitted (`claims.py`).

k-means seeds are 1234 + --seed (faiss's default 1234 at --seed 0).
"""
import importlib.util
import time

import numpy as np

from adanns_ref.core.cost import ivf_flops_balanced
from adanns_ref.core.truncate import prefix
from adanns_ref.distributed import map_configs

from .mrl import ff_models, model_stages, reference
from .rows import RowCollector, seed_mean
from .stage import StageResult, log, timed_repeats

ANN_K = 10          # results per query (10-recall@10 against exact search)
RERANK_SHORTLIST = 100


def ivfpq_available():
    return importlib.util.find_spec("adanns_ref.indices.ivfpq") is not None


def _timed_search(index, q, cfg, **kw):
    """(I, ms/query of each timed repeat, index statistics of the search of every query) of
    index.search(q, ANN_K, **kw), `stage.timed_repeats` (numba kernels are compiled beforehand
    by `_warm_up_ivf` / `graph._warm_up`). The statistics (last_search_flops, and
    last_search_ndis where the index has it) are read after the search of all of q, not after a
    timed repeat on a subset."""
    stats = {}

    def search(qq):
        I = index.search(qq, ANN_K, **kw)[1]
        if qq is q:
            ndis = getattr(index, "last_search_ndis", None)
            stats.update(flops=float(index.last_search_flops),
                         ndis=None if ndis is None else np.array(ndis, dtype=np.float64))
        return I

    I, ms = timed_repeats(search, q, cfg)
    return I, ms, stats


def _warm_up_ivf(IVFIndex, x):
    """Compile (or load from numba's cache) every kernel a timed IVF search uses."""
    idx = IVFIndex(x.shape[1], 2, seed=1234)
    idx.train(x[:64])
    idx.add(x[:64])
    idx.search(x[:4], ANN_K, nprobe=2)


def grid(cfg, key):
    """A preset's dims grid (cfg[key], e.g. "ivf_dcs"), default every nesting size."""
    return list(cfg.get(key) or cfg["nesting"])


def _ivf_searches(index, method, q, cfg, dcs, dss, d_build, seed):
    """Search `index` for every (d_c, d_s, nprobe): [(row without its accuracies, I)]."""
    out = []
    N, nlist = index.ntotal, index.nlist
    for d_c in dcs:
        for d_s in dss:
            for nprobe in cfg["ivf_nprobes"]:
                if nprobe > nlist:
                    continue
                I, ms, stats = _timed_search(index, q, cfg, nprobe=nprobe, d_c=d_c, d_s=d_s)
                row = {"method": method, "config": f"{method} d_c={d_c} d_s={d_s} nlist={nlist} "
                       f"nprobe={nprobe} built_d_c={d_build}", "seed": seed, "d_c": d_c, "d_s": d_s,
                       "nlist": nlist, "nprobe": nprobe, "built_d_c": d_build,
                       "mflops": stats["flops"] / 1e6,
                       "mflops_balanced": ivf_flops_balanced(d_c, nlist, d_s, nprobe, N) / 1e6,
                       "ms_per_query": float(np.median(ms)), "ms_repeats": ms}
                out.append((row, I))
    return out


def _embeddings(models):
    """{(seed, model name): {"db", "q"}} of MRL and every FF model: what the per-index tasks
    read (sent to each Dask worker once)."""
    return {(seed, name): {"db": m["db"], "q": m["q"]} for seed, ms in models.items()
            for name, m in ms.items() if name == "MRL" or name.startswith("FF-")}


def _exp4_index(config, cfg, emb, ytr, yte):
    """One exp4 index ("MR", seed, nlist, d_c) or ("FF", seed, nlist, d), built and searched:
    {"searches": [(row, I)], "majority": [(nprobe, ok)], "searches_d": [(row, I)]}. A task of
    `map_configs` (module level, arguments picklable); ms/query is measured where it runs."""
    from adanns_ref.indices.ivf import IVFIndex

    kind, seed, nlist, d = config
    D = cfg["D"]
    m = emb[seed, "MRL" if kind == "MR" else f"FF-{d}"]
    _warm_up_ivf(IVFIndex, m["db"])
    if kind == "FF":
        idx = IVFIndex(d, nlist, seed=1234 + seed)
    else:
        idx = IVFIndex(D, nlist, d_c=d, seed=1234 + seed)
    idx.train(m["db"])
    idx.add(m["db"])
    if kind == "FF":
        return {"searches": _ivf_searches(idx, "FF-IVF", m["q"], cfg, [d], [d], d, seed),
                "majority": [], "searches_d": []}
    # the same d_s for every d_c (up to D): the claims refuse a grid with holes (`grids.py`)
    d_s_grid = sorted(set(grid(cfg, "ivf_dss")) | set(grid(cfg, "ivf_dcs")) | {D})
    out = {"searches": _ivf_searches(idx, "AdANNS-IVF", m["q"], cfg, [d], d_s_grid, d, seed),
           "majority": majority_label_rows(idx, m["q"], ytr, yte, cfg["ivf_nprobes"], d),
           "searches_d": []}
    if d == D and seed == cfg["seeds"][0]:
        # one index at full D, smaller dims chosen at query time; first seed only (no claim
        # reads it, and it is 45% of the searches)
        d_dss = list(cfg.get("ivf_d_dss") or grid(cfg, "ivf_dss"))
        out["searches_d"] = _ivf_searches(idx, "AdANNS-IVF-D", m["q"], cfg,
                                          [x for x in grid(cfg, "ivf_dcs") if x < D], d_dss, D, seed)
    return out


def majority_label_rows(index, q, ytr, yte, nprobes, d_c):
    """The majority-label-of-probed-lists classifier: route each query at d_c like the index,
    predict the most frequent database label over its nprobe lists (ties: smaller label).
    Returns [(nprobe, per-query correct uint8 (nq,))]. A top-1 close to this baseline measures
    cluster purity, not search quality."""
    from adanns_ref.search.assign import search_centroids

    n_cls = int(max(ytr.max(), yte.max())) + 1
    counts = np.stack([np.bincount(ytr[index.list_ids(lst)], minlength=n_cls)
                       for lst in range(index.nlist)])
    if d_c != index.d_c:
        raise ValueError(f"route at the index's own d_c={index.d_c}, got d_c={d_c}")
    _, probes = search_centroids(prefix(q, d_c, index.normalize), index.centroids,
                                 min(max(nprobes), index.nlist), index.metric)
    out = []
    for nprobe in nprobes:
        if nprobe <= index.nlist:
            votes = counts[probes[:, :nprobe]].sum(axis=1)
            out.append((nprobe, (votes.argmax(axis=1) == yte).astype(np.uint8)))
    return out



def exp4_ivf(pipe, cfg, data, models, val_idx, test_idx, client=None):
    """AdANNS-IVF grid (d_c x d_s x nlist x nprobe) on MR and rigid IVF (MR with d_c = d_s and
    every FF-d model) per seed, AdANNS-IVF-D (built at full D, dims reduced at query time) on
    the first seed; plus the exact-search ceiling and the majority-label-of-probed-lists
    baseline. d_c in cfg["ivf_dcs"], d_s in cfg["ivf_dss"] (default: every nesting size), and
    always d_s = d_c (MR-IVF); cfg["ivf_d_dss"] trims the d_s of IVF-D (default ivf_dss).
    Each index is one task (`_exp4_index`), run on the Dask workers of `client` when given; the
    rows are then those of the serial run except ms_per_query. Where it ran is not part of the
    stage's cache key."""
    _, ytr, _, yte = data
    D = cfg["D"]

    def compute(ctx):
        rows = RowCollector(ytr, yte, val_idx, test_idx)
        baselines = []
        t0 = time.perf_counter()
        configs = [(kind, seed, nlist, d) for seed, ms in models.items() for nlist in cfg["ivf_nlists"]
                   for kind, dims in (("MR", grid(cfg, "ivf_dcs")), ("FF", sorted(ff_models(ms))))
                   for d in dims]
        ceiling = set()
        for (kind, seed, nlist, d), out in zip(configs, map_configs(
                client, _exp4_index, configs, cfg, _embeddings(models), ytr, yte)):
            if seed not in ceiling:  # exact search at full D on MR, the ceiling row of this seed
                ceiling.add(seed)
                exact = rows.evaluate(reference(models[seed]["MRL"], ANN_K))[0]
                baselines.append({"baseline": "exact search at full D (ceiling)", "seed": seed,
                                  "nlist": None, "nprobe": None, "d_c": D, "top1": exact["top1"],
                                  "map10": exact["map10"], "recall10": 1.0})
            gt = reference(models[seed]["MRL" if kind == "MR" else f"FF-{d}"], ANN_K)
            added = [rows.add_retrieval(row, I, gt) for row, I in out["searches"]]
            for r in added:
                if kind == "MR" and r["d_c"] == r["d_s"]:
                    rows.add_copy(r, method="MR-IVF", config=r["config"].replace("AdANNS", "MR"))
            for nprobe, ok in out["majority"]:
                baselines.append({"baseline": "majority label of the probed lists",
                                  "seed": seed, "nlist": nlist, "nprobe": nprobe,
                                  "d_c": d, "top1": float(ok.mean()), "map10": None,
                                  "recall10": None})
            for row, I in out["searches_d"]:
                rows.add_retrieval(row, I, gt)
            log(f"exp4_ivf: seed {seed} nlist {nlist} {kind} d={d} done ({len(rows.rows)} rows, "
                f"{time.perf_counter() - t0:.1f} s)")
        res = rows.result("exp4_ivf")
        res.tables["exp4_baselines"] = baselines
        return res

    conf = {k: cfg[k] for k in ("ivf_nlists", "ivf_nprobes", "nesting", "seeds")}
    conf.update({k: cfg[k] for k in ("ivf_dcs", "ivf_dss", "ivf_d_dss", "timing_repeats", "timing_queries")
                 if k in cfg})
    return pipe.run("exp4_ivf", conf, compute, deps=model_stages(models) + ["exact_knn"],
                    code=["adanns_ref.indices.ivf", "adanns_ref.quantizers.kmeans", "adanns_ref.core.topk", "adanns_ref.search.exact",
                          "adanns_ref.evaluation.metrics", "adanns_ref.core.cost", "adanns_ref.search.assign",
                          "experiments.reproduce.rows", "experiments.reproduce.ann"])


def pq_training_rows(n, cfg, seed):
    """Rows of the database the (OPQ+)PQ codebooks are trained on: all of them, or a seeded
    random subset of cfg["pq_train_size"] (sorted), as faiss users train on a sample `xt`."""
    size = cfg["pq_train_size"]
    if size is None or size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed + 2).choice(n, size, replace=False))


def _pq_row(rows, method, M, d, config, I, gt, seed, **extra):
    return rows.add_retrieval(dict({"method": method, "M": M, "bytes": M, "d": d, "config": config,
                                    "seed": seed, "selected": False}, **extra), I, gt)


def _select_per_budget(rows, method):
    """Flag, per seed and M, the row of `method` with the best half-A mAP@10 (ties: smaller d)."""
    best = {}
    for r in rows:
        if r["method"] == method:
            key, slot = (r["map10_val"], -r["d"]), (r["seed"], r["M"])
            if slot not in best or key > best[slot][0]:
                best[slot] = (key, r)
    for _, r in best.values():
        r["selected"] = True


def _opq_index(db, M, d, seed, train_rows, cfg):
    from adanns_ref.indices.pqindex import PQIndex

    # allow_small: 256 centroids per subspace from fewer than faiss's 39 * 256 training
    # points (the small presets); faiss only warns there.
    idx = PQIndex(db.shape[1], M, nbits=8, opq=True, prefix_dim=d, seed=1234 + seed,
                  opq_niter=cfg["opq_niter"], allow_small=True)
    idx.train(db[train_rows])
    idx.add(db)
    return idx


def _exp5_configs(cfg, models):
    """exp5's indices in report order, per seed: ("OPQ", seed, M, d, model name) per byte
    budget M (AdANNS-OPQ on MRL at every d of cfg["opq_dims"] when M is in cfg["opq_budgets"],
    FF-D when M is in the FF budgets), then ("IVFOPQ", seed, M, method, d_c, d_s, model name)
    when `adanns_ref.indices.ivfpq` exists (d_c in cfg["ivfopq_dcs"], d_s in opq_dims: both regimes
    d_c < d_s and d_c >= d_s, and rigid IVFOPQ on FF-D)."""
    D = cfg["D"]
    opq_dims = grid(cfg, "opq_dims")
    ff_budgets = list(cfg.get("opq_ff_budgets") or cfg["opq_budgets"])
    configs = []
    for seed in models:
        for M in sorted(set(cfg["opq_budgets"]) | set(ff_budgets)):
            if M in cfg["opq_budgets"]:
                configs += [("OPQ", seed, M, d, "MRL") for d in opq_dims if d >= M and d % M == 0]
            if D % M == 0 and M in ff_budgets:
                configs.append(("OPQ", seed, M, D, f"FF-{D}"))
        if ivfpq_available():
            for M in cfg["ivfopq_budgets"]:
                configs += [("IVFOPQ", seed, M, "AdANNS-IVFOPQ", d_c, d_s, "MRL")
                            for d_c in cfg["ivfopq_dcs"] for d_s in opq_dims
                            if d_s >= M and d_s % M == 0]
                if D % M == 0:
                    configs.append(("IVFOPQ", seed, M, "FF-IVFOPQ", D, D, f"FF-{D}"))
    return configs


def _exp5_index(config, cfg, emb):
    """One exp5 index of `_exp5_configs`, trained, filled and searched (a `map_configs` task):
    OPQ -> {"I", "I_rerank" (at d = D on MR, else None)}; IVFOPQ -> {"per_nprobe": [(I, MFLOPs)]}."""
    from adanns_ref.funnel.funnel import rerank

    kind, seed, M = config[:3]
    m = emb[seed, config[-1]]
    D = cfg["D"]
    train_rows = pq_training_rows(len(m["db"]), cfg, seed)
    if kind == "OPQ":
        d = config[3]
        idx = _opq_index(m["db"], M, d, seed, train_rows, cfg)
        out = {"I": idx.search(m["q"], ANN_K)[1], "I_rerank": None}
        if d == D and config[-1] == "MRL":
            _, S = idx.search(m["q"], RERANK_SHORTLIST)
            out["I_rerank"] = rerank(S, m["db"], m["q"], D, ANN_K)[1]
        return out
    from adanns_ref.indices.ivfpq import IVFPQIndex

    _, _, _, _, d_c, d_s, _ = config
    nlist = cfg["ivfpq_nlist"]
    idx = IVFPQIndex(D, nlist, M, nbits=8, d_c=d_c, d_s=d_s, opq=True, seed=1234 + seed,
                     allow_small=True, opq_niter=cfg["opq_niter"])
    idx.train(m["db"][train_rows])
    idx.add(m["db"])
    per_nprobe = []
    for nprobe in cfg["ivfopq_nprobes"]:
        I = idx.search(m["q"], ANN_K, nprobe=min(nprobe, nlist))[1]
        per_nprobe.append((I, float(idx.last_search_flops) / 1e6))
    return {"per_nprobe": per_nprobe}


def exp5_opq(pipe, cfg, data, models, val_idx, test_idx, client=None):
    """AdANNS-OPQ (every MR prefix d of cfg["opq_dims"], default every nesting size, per byte
    budget M of cfg["opq_budgets"]) vs OPQ on full MR and on the rigid FF-D (at the budgets
    cfg["opq_ff_budgets"], default opq_budgets; full MR only when D is in opq_dims),
    plus PQ-then-re-rank and, when `adanns_ref.indices.ivfpq` exists, AdANNS-IVFOPQ (route at d_c,
    OPQ+PQ-encode the d_s-prefix) vs rigid IVFOPQ on FF-D; per seed. 10-recall@10 of MR rows
    is against exact search on MR-D, of FF rows on FF-D. Each index is one task
    (`_exp5_index`), run on the Dask workers of `client` when given; the rows are those of the
    serial run. Where it ran is not part of the stage's cache key.

    `evaluation.sweeps.adannsopq_sweep` picks d on the very queries it reports; here every d is kept, so
    that the choice can be cross-fitted, which needs each index's result ids, so the PQIndex
    objects are built directly."""
    _, ytr, _, yte = data
    D = cfg["D"]

    def compute(ctx):
        rows = RowCollector(ytr, yte, val_idx, test_idx)
        t0 = time.perf_counter()
        configs = _exp5_configs(cfg, models)
        for config, out in zip(configs, map_configs(client, _exp5_index, configs, cfg,
                                                    _embeddings(models))):
            kind, seed, M, name = config[0], config[1], config[2], config[-1]
            gt = reference(models[seed][name], ANN_K)
            if kind == "OPQ" and name == "MRL":
                d = config[3]
                r = _pq_row(rows, "AdANNS-OPQ", M, d, f"AdANNS-OPQ M={M} d={d}", out["I"], gt, seed)
                if d == D:
                    rows.add_copy(r, method="MR-OPQ", config=f"MR-OPQ M={M} d={d}", selected=True)
                    _pq_row(rows, "PQ+rerank", M, d, f"PQ+rerank M={M} shortlist={RERANK_SHORTLIST}"
                            f" -> d={D}", out["I_rerank"], gt, seed, selected=True)
            elif kind == "OPQ":
                _pq_row(rows, "FF-OPQ", M, D, f"FF-OPQ M={M} d={D}", out["I"], gt, seed,
                        selected=True)
            else:
                _, _, _, method, d_c, d_s, _ = config
                for nprobe, (I, mflops) in zip(cfg["ivfopq_nprobes"], out["per_nprobe"]):
                    _pq_row(rows, method, M, d_s, f"{method} M={M} d_c={d_c} d_s={d_s} "
                            f"nprobe={nprobe}", I, gt, seed, d_c=d_c, nprobe=nprobe,
                            nlist=cfg["ivfpq_nlist"], mflops=mflops)
            log(f"exp5_opq: seed {seed} {kind} M={M} {name} done ({time.perf_counter() - t0:.1f} s)")
        _select_per_budget(rows.rows, "AdANNS-OPQ")
        notes = [f"OPQ rotations and PQ codebooks ({cfg['opq_niter']} OPQ iterations) are "
                 f"trained on {len(pq_training_rows(len(ytr), cfg, 0))} of the {len(ytr)} "
                 "database vectors."]
        if ivfpq_available():
            _select_per_budget(rows.rows, "AdANNS-IVFOPQ")
            _select_per_budget(rows.rows, "FF-IVFOPQ")
            notes.append(f"IVFOPQ: nlist {cfg['ivfpq_nlist']}, AdANNS-IVFOPQ routes at d_c in "
                         f"{cfg['ivfopq_dcs']} and picks (d_s, nprobe) per M on half A.")
        else:
            notes.append("AdANNS-IVFOPQ: adanns_ref.indices.ivfpq is not available in this build.")
        return rows.result("exp5_opq", {"notes": " ".join(notes)})

    conf = {k: cfg[k] for k in ("opq_budgets", "opq_niter", "nesting", "seeds", "ivfpq_nlist",
                                "ivfopq_budgets", "ivfopq_dcs", "ivfopq_nprobes", "pq_train_size")}
    conf.update({k: cfg[k] for k in ("opq_dims", "opq_ff_budgets") if k in cfg})
    code = ["adanns_ref.indices.pqindex", "adanns_ref.quantizers.pq", "adanns_ref.quantizers.opq", "adanns_ref.quantizers.kmeans",
            "adanns_ref.funnel.funnel", "adanns_ref.evaluation.metrics", "experiments.reproduce.rows",
            "experiments.reproduce.ann"]
    if ivfpq_available():
        code += ["adanns_ref.indices.ivfpq", "adanns_ref.indices.ivfpq_kernels"]
    return pipe.run("exp5_opq", conf, compute, deps=model_stages(models) + ["exact_knn"], code=code)



def _budget_grid(costs, n=12):
    """n log-spaced budgets from the cheapest to the most expensive configuration."""
    lo, hi = min(costs), max(costs)
    return [float(v) for v in np.geomspace(lo, hi, n)] if hi > lo else [lo]


def exp6_budget(pipe, cfg, val_idx, test_idx):
    """For each budget choose the best configuration (mAP@10 averaged over seeds) on half A
    (exp. 3/4/7 rows for MFLOPs, budgets log-spaced over their cost range; exp. 5 rows for bytes,
    budgets = the byte budgets M) and report its mAP@10 on half B next to the best half-B
    mAP@10 within the same budget (an oracle that peeks at half B)."""
    from adanns_ref.evaluation.select import select_on_validation

    def compute(ctx):
        rows = []
        flops_rows = ([dict(r, key=f"{r['method']}: {r['config']}") for r in
                       seed_mean(ctx.inputs["exp3_retrieval"].tables["exp3_retrieval"])] +
                      [dict(r, key=r["config"]) for r in seed_mean(ctx.inputs["exp4_ivf"].tables["exp4_ivf"])
                       if r["method"] != "MR-IVF"] +  # MR-IVF rows duplicate AdANNS-IVF rows
                      [dict(r, key=r["config"]) for r in seed_mean(ctx.inputs["exp7_hnsw"].tables["exp7_hnsw"])
                       if r["method"] != "MR-HNSW"])  # and MR-HNSW rows AdANNS-HNSW rows
        # PQ+rerank also reads the float32 vectors, so its memory is not M bytes per vector;
        # MR-OPQ rows duplicate the AdANNS-OPQ candidates at d = D.
        bytes_rows = [dict(r, key=r["config"]) for r in seed_mean(ctx.inputs["exp5_opq"].tables["exp5_opq"])
                      if r["method"] not in ("PQ+rerank", "MR-OPQ")]
        flops_budgets = _budget_grid([r["mflops"] for r in flops_rows])
        for on, cand, budgets in (("mflops", flops_rows, flops_budgets),
                                  ("bytes", bytes_rows, cfg["opq_budgets"])):
            val = [{"key": r["key"], on: r[on], "map10": r["map10_val"]} for r in cand]
            test = [{"key": r["key"], on: r[on], "map10": r["map10_test"]} for r in cand]
            for sel in select_on_validation(val, test, budgets, on=on, key="key", metric="map10"):
                fits = [t["map10"] for t in test if t[on] <= sel["budget"]]
                rows.append({"on": on, "budget": sel["budget"], "chosen": sel["key"][0],
                             "cost": sel[f"val_{on}"], "val_map10": sel["val_map10"],
                             "test_map10": sel["test_map10"], "oracle_test_map10": max(fits)})
        return StageResult(tables={"exp6_budget": rows})

    conf = {k: cfg[k] for k in ("opq_budgets", "seeds")}
    return pipe.run("exp6_budget", conf, compute, deps=["exp3_retrieval", "exp4_ivf", "exp5_opq", "exp7_hnsw"],
                    code=["adanns_ref.evaluation.select", "experiments.reproduce.ann", "experiments.reproduce.rows"])
