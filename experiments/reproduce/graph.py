"""Graph side of the reproduction: experiment 7, AdANNS-HNSW vs rigid HNSW.

The AdANNS paper applies adaptive representations to graph indices too (DiskANN over
Matryoshka prefixes); here the graph is HNSW (`adanns_ref.indices.hnsw.index`, faiss-identical):

    AdANNS-HNSW    graph built on the d_c-prefix of the MR embedding, walked with the query's
                   d_c-prefix, the max(ef, k) candidates re-scored at d_s > d_c
    MR-HNSW        the same graph searched with d_s = d_c (rigid HNSW on the MR prefix)
    FF-HNSW        rigid HNSW on each fixed-feature model FF-d (d_c = d_s = d)
    AdANNS-HNSW-D  one graph built at full D (first seed), d_c < D and d_s chosen at query time

Cost per query: `cost.hnsw_flops` with the measured distance count (ndis * d_c + candidates
re-scored * d_s); ms/query measured like exp. 4 (`stage.timed_repeats`, every seed).
10-recall@10 is against exact search at full D on the same representation (FF-d: FF-d itself).

Grid, from the preset (`hnsw_grid`): graph dims `hnsw_dims` (default: the nesting sizes D/32,
D/8 and D that exist), re-scoring dims `hnsw_ds` (default: the graph dims, so that a rigid graph
exists at every dim AdANNS-HNSW uses (`grids.hnsw_holes`); each graph uses the ones above its
d_c, and d_c itself), M `hnsw_M` (16), efConstruction `hnsw_efc` (40),
efSearch sweep `hnsw_efs` ([16, 64]). Builds dominate the cost (one MR and one FF graph per dim
and seed; build distance work grows with the dim), so the dims list is what a preset trims.
Graph seeds are 12345 (faiss's) + the training seed.
"""
import time

import numpy as np

from .ann import ANN_K, _timed_search
from .mrl import ff_models, model_stages, reference
from .rows import RowCollector
from .stage import log, timing

METHODS = ("AdANNS-HNSW", "MR-HNSW", "FF-HNSW", "AdANNS-HNSW-D")


def hnsw_grid(cfg):
    """{"dims", "M", "efc", "efs"} of exp. 7 from the preset, with the defaults of the module
    docstring for a preset that does not name them."""
    nest, D = cfg["nesting"], cfg["nesting"][-1]
    dims = cfg.get("hnsw_dims") or [d for d in nest if d in (D // 32, D // 8, D)]
    ds = cfg.get("hnsw_ds") or dims   # default: re-score only where a rigid graph exists
    bad = [d for d in list(dims) + list(ds) if d not in nest]
    if bad:
        raise ValueError(f"hnsw_dims / hnsw_ds {bad} are not nesting sizes {nest}")
    return {"dims": sorted(dims), "ds": sorted(ds), "M": cfg.get("hnsw_M", 16),
            "efc": cfg.get("hnsw_efc", 40), "efs": list(cfg.get("hnsw_efs", [16, 64]))}


def rescore_dims(grid, d_c):
    """d_c itself (rigid) and every re-scoring dim of the grid above it."""
    return [d_c] + [d for d in grid["ds"] if d > d_c]


def _warm_up(HNSWIndex, x):
    """Compile (or load from numba's cache) the build, search and re-score kernels."""
    idx = HNSWIndex(x.shape[1], 4, ef_construction=8, d_c=max(1, x.shape[1] // 2))
    idx.add(x[:64])
    idx.search(x[:4], ANN_K, ef_search=8)


def _search_rows(rows, index, method, q, gt, grid, pairs, seed, cfg):
    """One row per (d_c, d_s) in `pairs` and efSearch of the grid; ms/query: the median of the
    preset's timed repeats (`stage.timed_repeats`)."""
    for d_c, d_s in pairs:
        # untimed: fills the index's cache of database prefixes at d_c and d_s
        index.search(q[:1], ANN_K, ef_search=grid["efs"][0], d_c=d_c, d_s=d_s)
        for ef in grid["efs"]:
            I, ms, stats = _timed_search(index, q, cfg, ef_search=ef, d_c=d_c, d_s=d_s)
            row = {"method": method, "config": f"{method} d_c={d_c} d_s={d_s} ef={ef} "
                   f"M={index.M} built_d_c={index.d_c}", "seed": seed, "d_c": d_c, "d_s": d_s,
                   "ef_search": ef, "M": index.M, "built_d_c": index.d_c,
                   "mflops": stats["flops"] / 1e6, "ndis": float(stats["ndis"].mean()),
                   "ms_per_query": float(np.median(ms)), "ms_repeats": ms}
            added = rows.add_retrieval(row, I, gt)
            if method == "AdANNS-HNSW" and d_c == d_s:
                rows.add_copy(added, method="MR-HNSW", config=added["config"].replace("AdANNS", "MR"))


def _graph(HNSWIndex, db, grid, d_c, seed):
    idx = HNSWIndex(db.shape[1], grid["M"], ef_construction=grid["efc"], normalize=True,
                    d_c=d_c, d_s=d_c, seed=12345 + seed)
    idx.add(db)
    return idx


def exp7_hnsw(pipe, cfg, data, models, val_idx, test_idx):
    """AdANNS-HNSW (graph at d_c, re-score at the grid's d_s > d_c; d_s = d_c is MR-HNSW) and
    FF-HNSW per seed and graph dim, AdANNS-HNSW-D on the first seed (see the module docstring)."""
    from adanns_ref.indices.hnsw.index import HNSWIndex

    _, ytr, _, yte = data
    nest, D = cfg["nesting"], cfg["D"]
    grid = hnsw_grid(cfg)

    def compute(ctx):
        rows = RowCollector(ytr, yte, val_idx, test_idx)
        t0 = time.perf_counter()
        for seed, ms in models.items():
            mrl = ms["MRL"]
            _warm_up(HNSWIndex, mrl["db"])
            gt = reference(mrl, ANN_K)
            for d_c in grid["dims"]:
                idx = _graph(HNSWIndex, mrl["db"], grid, d_c, seed)
                _search_rows(rows, idx, "AdANNS-HNSW", mrl["q"], gt, grid,
                             [(d_c, d_s) for d_s in rescore_dims(grid, d_c)], seed, cfg)
                if d_c == D and seed == cfg["seeds"][0]:
                    _search_rows(rows, idx, "AdANNS-HNSW-D", mrl["q"], gt, grid,
                                 [(c, s) for c in grid["dims"] if c < D for s in rescore_dims(grid, c)],
                                 seed, cfg)
            ff = ff_models(ms)
            for d in [d for d in grid["dims"] if d in ff]:
                m = ff[d]
                gt_ff = reference(m, ANN_K)
                idx = _graph(HNSWIndex, m["db"], grid, d, seed)
                _search_rows(rows, idx, "FF-HNSW", m["q"], gt_ff, grid, [(d, d)], seed, cfg)
            log(f"exp7_hnsw: seed {seed} done ({len(rows.rows)} rows, {time.perf_counter() - t0:.1f} s)")
        return rows.result("exp7_hnsw", {"grid": grid})

    conf = dict(hnsw_grid(cfg), nesting=nest, seeds=cfg["seeds"],
                timing=list(timing(cfg)))
    return pipe.run("exp7_hnsw", conf, compute, deps=model_stages(models) + ["exact_knn"],
                    code=["adanns_ref.indices.hnsw.index", "adanns_ref.indices.hnsw.kernels", "adanns_ref.indices.hnsw.heaps",
                          "adanns_ref.evaluation.metrics", "adanns_ref.core.cost",
                          "experiments.reproduce.rows", "experiments.reproduce.graph"])
