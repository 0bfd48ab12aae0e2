"""AdANNS side of the reproduction: experiments 4 (IVF), 5 (OPQ / IVFOPQ) and 6 (budgets).

Every configuration is one row per training seed with its cost (MFLOPs/query from the index's
own `last_search_flops`, bytes/vector, measured ms/query) and its 10-recall@10 (against exact
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

from adanns_ref.cost import ivf_flops_balanced
from adanns_ref.truncate import prefix

from .mrl import ff_models, model_stages, reference
from .rows import RowCollector, seed_mean
from .stage import StageResult, log

ANN_K = 10          # results per query (10-recall@10 against exact search)
TIMING_REPEATS = 3  # ms/query = the fastest of this many identical runs (first seed; 1 after);
                    # cfg["timing_repeats"] overrides it
RERANK_SHORTLIST = 100


def ivfpq_available():
    return importlib.util.find_spec("adanns_ref.ivfpq") is not None


def _timed_search(index, q, repeats, **kw):
    """(I, ms/query): the fastest of `repeats` identical searches (the others only absorb
    scheduling noise; numba kernels are compiled beforehand by `_warm_up_ivf`)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        _, I = index.search(q, ANN_K, **kw)
        best = min(best, time.perf_counter() - t0)
    return I, 1e3 * best / len(q)


def _warm_up_ivf(IVFIndex, x):
    """Compile (or load from numba's cache) every kernel a timed IVF search uses."""
    idx = IVFIndex(x.shape[1], 2, seed=1234)
    idx.train(x[:64])
    idx.add(x[:64])
    idx.search(x[:4], ANN_K, nprobe=2)


def grid(cfg, key):
    """A preset's dims grid (cfg[key], e.g. "ivf_dcs"), default every nesting size."""
    return list(cfg.get(key) or cfg["nesting"])


def _ivf_rows(rows, index, method, q, gt, cfg, dcs, dss, d_build, seed):
    """Search `index` for every (d_c, d_s, nprobe); append one row each to the collector."""
    added = []
    N, nlist = index.ntotal, index.nlist
    repeats = cfg.get("timing_repeats", TIMING_REPEATS) if seed == cfg["seeds"][0] else 1
    for d_c in dcs:
        for d_s in dss:
            for nprobe in cfg["ivf_nprobes"]:
                if nprobe > nlist:
                    continue
                I, ms = _timed_search(index, q, repeats, nprobe=nprobe, d_c=d_c, d_s=d_s)
                row = {"method": method, "config": f"{method} d_c={d_c} d_s={d_s} nlist={nlist} "
                       f"nprobe={nprobe} built_d_c={d_build}", "seed": seed, "d_c": d_c, "d_s": d_s,
                       "nlist": nlist, "nprobe": nprobe, "built_d_c": d_build,
                       "mflops": float(index.last_search_flops) / 1e6,
                       "mflops_balanced": ivf_flops_balanced(d_c, nlist, d_s, nprobe, N) / 1e6,
                       "ms_per_query": ms}
                added.append(rows.add_retrieval(row, I, gt))
    return added


def majority_label_rows(index, q, ytr, yte, nprobes, d_c):
    """The majority-label-of-probed-lists classifier: route each query at d_c like the index,
    predict the most frequent database label over its nprobe lists (ties: smaller label).
    Returns [(nprobe, per-query correct uint8 (nq,))]. A top-1 close to this baseline measures
    cluster purity, not search quality."""
    from adanns_ref.assign import search_centroids

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


def exp4_ivf(pipe, cfg, data, models, val_idx, test_idx):
    """AdANNS-IVF grid (d_c x d_s x nlist x nprobe) on MR and rigid IVF (MR with d_c = d_s and
    every FF-d model) per seed, AdANNS-IVF-D (built at full D, dims reduced at query time) on
    the first seed; plus the exact-search ceiling and the majority-label-of-probed-lists
    baseline. d_c in cfg["ivf_dcs"], d_s in cfg["ivf_dss"] (default: every nesting size), and
    always d_s = d_c (MR-IVF); cfg["ivf_d_dss"] trims the d_s of IVF-D (default ivf_dss)."""
    from adanns_ref.ivf import IVFIndex

    _, ytr, _, yte = data
    D = cfg["D"]
    dcs, dss = grid(cfg, "ivf_dcs"), grid(cfg, "ivf_dss")
    d_dss = list(cfg.get("ivf_d_dss") or dss)

    def compute(ctx):
        rows = RowCollector(ytr, yte, val_idx, test_idx)
        baselines = []
        t0 = time.perf_counter()
        for seed, ms in models.items():
            mrl, km_seed = ms["MRL"], 1234 + seed
            _warm_up_ivf(IVFIndex, mrl["db"])
            gt = reference(mrl, ANN_K)
            exact = rows.evaluate(gt)[0]
            baselines.append({"baseline": "exact search at full D (ceiling)", "seed": seed,
                              "nlist": None, "nprobe": None, "d_c": D, "top1": exact["top1"],
                              "map10": exact["map10"], "recall10": 1.0})
            for nlist in cfg["ivf_nlists"]:
                for d_c in dcs:
                    idx = IVFIndex(D, nlist, d_c=d_c, seed=km_seed)
                    idx.train(mrl["db"])
                    idx.add(mrl["db"])
                    d_s_grid = sorted(set(dss) | {d_c})
                    for r in _ivf_rows(rows, idx, "AdANNS-IVF", mrl["q"], gt, cfg, [d_c], d_s_grid,
                                       d_c, seed):
                        if r["d_c"] == r["d_s"]:
                            rows.add_copy(r, method="MR-IVF", config=r["config"].replace("AdANNS", "MR"))
                    for nprobe, ok in majority_label_rows(idx, mrl["q"], ytr, yte, cfg["ivf_nprobes"], d_c):
                        baselines.append({"baseline": "majority label of the probed lists",
                                          "seed": seed, "nlist": nlist, "nprobe": nprobe,
                                          "d_c": d_c, "top1": float(ok.mean()), "map10": None,
                                          "recall10": None})
                    if d_c == D and seed == cfg["seeds"][0]:
                        # one index at full D, smaller dims chosen at query time; first seed
                        # only (no claim reads it, and it is 45% of the searches)
                        _ivf_rows(rows, idx, "AdANNS-IVF-D", mrl["q"], gt, cfg,
                                  [d for d in dcs if d < D], d_dss, D, seed)
                for d, m in sorted(ff_models(ms).items()):
                    gt_ff = reference(m, ANN_K)
                    idx = IVFIndex(d, nlist, seed=km_seed)
                    idx.train(m["db"])
                    idx.add(m["db"])
                    _ivf_rows(rows, idx, "FF-IVF", m["q"], gt_ff, cfg, [d], [d], d, seed)
                log(f"exp4_ivf: seed {seed} nlist {nlist} done ({len(rows.rows)} rows, "
                    f"{time.perf_counter() - t0:.1f} s)")
        res = rows.result("exp4_ivf")
        res.tables["exp4_baselines"] = baselines
        return res

    conf = {k: cfg[k] for k in ("ivf_nlists", "ivf_nprobes", "nesting", "seeds")}
    conf.update({k: cfg[k] for k in ("ivf_dcs", "ivf_dss", "ivf_d_dss", "timing_repeats") if k in cfg})
    return pipe.run("exp4_ivf", conf, compute, deps=model_stages(models) + ["exact_knn"],
                    code=["adanns_ref.ivf", "adanns_ref.kmeans", "adanns_ref.topk", "adanns_ref.exact",
                          "adanns_ref.metrics", "adanns_ref.cost", "adanns_ref.assign",
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


def exp5_opq(pipe, cfg, data, models, val_idx, test_idx):
    """AdANNS-OPQ (every MR prefix d of cfg["opq_dims"], default every nesting size, per byte
    budget M of cfg["opq_budgets"]) vs OPQ on full MR and on the rigid FF-D (at the budgets
    cfg["opq_ff_budgets"], default opq_budgets; full MR only when D is in opq_dims),
    plus PQ-then-re-rank and, when `adanns_ref.ivfpq` exists, AdANNS-IVFOPQ vs rigid IVFOPQ;
    per seed. 10-recall@10 of MR rows is against exact search on MR-D, of FF rows on FF-D.

    `pqindex.adannsopq_sweep` picks d on the very queries it reports; here every d is kept, so
    that the choice can be cross-fitted, which needs each index's result ids, so the PQIndex
    objects are built directly."""
    from adanns_ref.funnel import rerank
    from adanns_ref.pqindex import PQIndex

    _, ytr, _, yte = data
    D = cfg["D"]
    opq_dims = grid(cfg, "opq_dims")
    ff_budgets = list(cfg.get("opq_ff_budgets") or cfg["opq_budgets"])

    def opq_index(db, M, d, seed, train_rows):
        # allow_small: 256 centroids per subspace from fewer than faiss's 39 * 256 training
        # points (the small presets); faiss only warns there.
        idx = PQIndex(db.shape[1], M, nbits=8, opq=True, prefix_dim=d, seed=1234 + seed,
                      opq_niter=cfg["opq_niter"], allow_small=True)
        idx.train(db[train_rows])
        idx.add(db)
        return idx

    def compute(ctx):
        rows = RowCollector(ytr, yte, val_idx, test_idx)
        t0 = time.perf_counter()
        for seed, ms in models.items():
            mrl, ff = ms["MRL"], ff_models(ms)[D]
            train_rows = pq_training_rows(len(ytr), cfg, seed)
            gt = {id(m): reference(m, ANN_K) for m in (mrl, ff)}
            for M in sorted(set(cfg["opq_budgets"]) | set(ff_budgets)):
                for d in [d for d in opq_dims if d >= M and d % M == 0 and M in cfg["opq_budgets"]]:
                    idx = opq_index(mrl["db"], M, d, seed, train_rows)
                    _, I = idx.search(mrl["q"], ANN_K)
                    r = _pq_row(rows, "AdANNS-OPQ", M, d, f"AdANNS-OPQ M={M} d={d}", I, gt[id(mrl)], seed)
                    if d == D:
                        rows.add_copy(r, method="MR-OPQ", config=f"MR-OPQ M={M} d={d}", selected=True)
                        _, S = idx.search(mrl["q"], RERANK_SHORTLIST)
                        _, I2 = rerank(S, mrl["db"], mrl["q"], D, ANN_K)
                        _pq_row(rows, "PQ+rerank", M, d, f"PQ+rerank M={M} shortlist={RERANK_SHORTLIST}"
                                f" -> d={D}", I2, gt[id(mrl)], seed, selected=True)
                if D % M == 0 and M in ff_budgets:
                    _, I = opq_index(ff["db"], M, D, seed, train_rows).search(ff["q"], ANN_K)
                    _pq_row(rows, "FF-OPQ", M, D, f"FF-OPQ M={M} d={D}", I, gt[id(ff)], seed,
                            selected=True)
                log(f"exp5_opq: seed {seed} OPQ M={M} done ({time.perf_counter() - t0:.1f} s)")
            if ivfpq_available():
                _ivfopq_rows(rows, cfg, mrl, ff, seed, train_rows, gt)
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
            notes.append("AdANNS-IVFOPQ: adanns_ref.ivfpq is not available in this build.")
        return rows.result("exp5_opq", {"notes": " ".join(notes)})

    conf = {k: cfg[k] for k in ("opq_budgets", "opq_niter", "nesting", "seeds", "ivfpq_nlist",
                                "ivfopq_budgets", "ivfopq_dcs", "ivfopq_nprobes", "pq_train_size")}
    conf.update({k: cfg[k] for k in ("opq_dims", "opq_ff_budgets") if k in cfg})
    code = ["adanns_ref.pqindex", "adanns_ref.pq", "adanns_ref.opq", "adanns_ref.kmeans",
            "adanns_ref.funnel", "adanns_ref.metrics", "experiments.reproduce.rows",
            "experiments.reproduce.ann"]
    if ivfpq_available():
        code += ["adanns_ref.ivfpq", "adanns_ref._ivfpq_kernels"]
    return pipe.run("exp5_opq", conf, compute, deps=model_stages(models) + ["exact_knn"], code=code)


def _ivfopq_rows(rows, cfg, mrl, ff, seed, train_rows, gt):
    """AdANNS-IVFOPQ (route at d_c, OPQ+PQ-encode the d_s-prefix; d_c in cfg["ivfopq_dcs"], d_s
    in cfg["opq_dims"], both regimes d_c < d_s and d_c >= d_s) vs rigid IVFOPQ on FF-D."""
    from adanns_ref.ivfpq import IVFPQIndex

    D, nlist = cfg["D"], cfg["ivfpq_nlist"]
    t0 = time.perf_counter()
    for M in cfg["ivfopq_budgets"]:
        cands = [(mrl, "AdANNS-IVFOPQ", d_c, d_s) for d_c in cfg["ivfopq_dcs"]
                 for d_s in grid(cfg, "opq_dims") if d_s >= M and d_s % M == 0]
        if D % M == 0:
            cands.append((ff, "FF-IVFOPQ", D, D))
        for m, method, d_c, d_s in cands:
            idx = IVFPQIndex(D, nlist, M, nbits=8, d_c=d_c, d_s=d_s, opq=True, seed=1234 + seed,
                             allow_small=True, opq_niter=cfg["opq_niter"])
            idx.train(m["db"][train_rows])
            idx.add(m["db"])
            for nprobe in cfg["ivfopq_nprobes"]:
                _, I = idx.search(m["q"], ANN_K, nprobe=min(nprobe, nlist))
                _pq_row(rows, method, M, d_s, f"{method} M={M} d_c={d_c} d_s={d_s} nprobe={nprobe}",
                        I, gt[id(m)], seed, d_c=d_c, nprobe=nprobe, nlist=nlist,
                        mflops=float(idx.last_search_flops) / 1e6)
        log(f"exp5_opq: seed {seed} IVFOPQ M={M} done ({time.perf_counter() - t0:.1f} s)")


def _budget_grid(costs, n=12):
    """n log-spaced budgets from the cheapest to the most expensive configuration."""
    lo, hi = min(costs), max(costs)
    return [float(v) for v in np.geomspace(lo, hi, n)] if hi > lo else [lo]


def exp6_budget(pipe, cfg, val_idx, test_idx):
    """For each budget choose the best configuration (mAP@10 averaged over seeds) on half A
    (exp. 3/4/7 rows for MFLOPs, budgets log-spaced over their cost range; exp. 5 rows for bytes,
    budgets = the byte budgets M) and report its mAP@10 on half B next to the best half-B
    mAP@10 within the same budget (an oracle that peeks at half B)."""
    from adanns_ref.select import select_on_validation

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
                    code=["adanns_ref.select", "experiments.reproduce.ann", "experiments.reproduce.rows"])
