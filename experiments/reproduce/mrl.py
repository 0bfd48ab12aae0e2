"""MRL side of the reproduction: training the encoders and experiments 1-3.

Models (MLP 784-h-h-D; embedding = last layer after ReLU, SPEC §1, or its pre-activation when
cfg["embedding"] == "linear", `mrl_ref.nn`), each trained with every seed of cfg["seeds"]:
- "MRL":   separate heads on every nesting size m_g, Matryoshka loss sum_g CE_ls(logits_g, y);
- "MRL-E": weight-tied heads (one W, one bias);
- "FF-d":  one fixed-feature model per size d of cfg["ff_sizes"] (default: every nesting size;
           a d-dim embedding, one head).
Post-hoc baselines of MRL Fig. 2, computed from the FF-D embedding of the same seed, at the
sizes cfg["baseline_dims"] (default: every nesting size):
- "SVD":   projection on the top-d right singular vectors of the (uncentred) database matrix;
- "RP":    a seeded Gaussian random linear projection D -> d.

Each model is one cached stage `train_<name>_s<seed>` whose arrays are the float32 train/test
embeddings and the per-size test logits; the model itself is saved with `model.save`.
Experiments only read those arrays, so re-running an experiment never retrains. The stage
`exact_knn` computes once, for every model, the exact top-GT_K ids at its full dim (the
reference of every recall; at D = 2048 one search is 2.5 TFLOP) and stores them as model["gt"].
"""

import numpy as np

from adanns_ref.core.truncate import prefix
from adanns_ref.search.knn import knn_search

from .rows import MAP_K, RowCollector
from .stage import StageResult, timed_repeats, timing

GT_K = MAP_K  # = retrieval_k = ann.ANN_K = 10; `reference` refuses a larger k
TRAIN_CODE = ["mrl_ref.train", "mrl_ref.nn", "mrl_ref.heads", "mrl_ref.autograd", "mrl_ref.optim"]
EVAL_CODE = ["adanns_ref.evaluation.metrics", "adanns_ref.core.truncate", "experiments.reproduce.rows",
             "experiments.reproduce.mrl"]


def _train_config(cfg, kind, nesting, seed):
    keys = ("subset", "per_class", "hidden", "epochs", "batch_size", "optimizer", "lr", "warmup")
    conf = dict({k: cfg[k] for k in keys}, kind=kind, nesting=list(nesting), seed=seed)
    if embedding(cfg) != "relu":  # absent for relu: the presets before the option keep their cache
        conf["embedding"] = embedding(cfg)
    if cfg.get("task", "fmnist") != "fmnist":  # likewise absent for Fashion-MNIST itself
        conf.update(task=cfg["task"], composites=list(cfg["composites"]), data_seed=cfg.get("data_seed", 0))
    return conf


def embedding(cfg):
    return cfg.get("embedding", "relu")


def ff_sizes(cfg):
    """Sizes d of the fixed-feature models: cfg["ff_sizes"], default every nesting size."""
    return list(cfg.get("ff_sizes") or cfg["nesting"])


def train_model(pipe, cfg, data, spec, seed):
    """Stage `train_<name>_s<seed>` of one model spec (name, kind, nesting) of `model_specs`:
    the model's embeddings and test logits (cached)."""
    from mrl_ref import train as mtrain

    name, kind, nesting = spec
    Xtr, ytr, Xte, _ = data
    conf = _train_config(cfg, kind, nesting, seed)

    def compute(ctx):
        common = dict(hidden=tuple(cfg["hidden"]), epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                      lr=cfg["lr"], warmup=cfg["warmup"], optimizer=cfg["optimizer"],
                      seed=seed, progress=True, embedding=embedding(cfg))
        if kind == "FF":
            model = mtrain.train_fixed_feature(nesting[-1], Xtr, ytr, **common)
        else:
            model = mtrain.train_mrl(Xtr, ytr, list(nesting), tied=(kind == "MRL-E"), **common)
        path = ctx.path("model.npz")
        model.save(path)
        arrays = {"emb_train": model.embed(Xtr), "emb_test": model.embed(Xte)}
        for m, logits in zip(nesting, model.logits(Xte)):
            arrays[f"logits_test_{m}"] = np.asarray(logits, dtype=np.float32)
        return StageResult(arrays=arrays, files=[path], info={"history": model.history})

    stage = f"train_{name.lower()}_s{seed}"
    res = pipe.run(stage, conf, compute, code=TRAIN_CODE)
    return {"name": name, "stage": stage, "seed": seed, "sizes": list(nesting),
            "db": res.arrays["emb_train"], "q": res.arrays["emb_test"],
            "logits": {m: res.arrays[f"logits_test_{m}"] for m in nesting}}


def model_specs(cfg):
    """(name, kind, nesting) of every model a seed trains: MRL, MRL-E and one FF model per size
    of `ff_sizes(cfg)`, largest work first (the order `--train-jobs` hands them out)."""
    return ([("MRL-E", "MRL-E", list(cfg["nesting"])), ("MRL", "MRL", list(cfg["nesting"]))]
            + [(f"FF-{d}", "FF", [d]) for d in sorted(ff_sizes(cfg), reverse=True)])


def train_all(pipe, cfg, data):
    """{seed: {name: model}}: the models of `model_specs` for every seed in cfg["seeds"], all
    with the same recipe (optimizer, lr schedule, epochs, batch size)."""
    out = {}
    for seed in cfg["seeds"]:
        models = {name: train_model(pipe, cfg, data, (name, kind, nesting), seed)
                  for name, kind, nesting in model_specs(cfg)}
        out[seed] = {n: models[n] for n in ["MRL", "MRL-E"] + [f"FF-{d}" for d in ff_sizes(cfg)]}
    return out


def at_r(cfg):
    """True on a task whose deciding metric is mAP@R / R-precision (the composite task)."""
    return cfg.get("task", "fmnist") != "fmnist"


def search_k(cfg, data, k):
    """k, or max(k, max R) on an at_r task: the exact top-k then also holds every query's R
    relevant-class slots (R = database items of the query's class, `metrics.r_values`)."""
    from adanns_ref.evaluation.metrics import r_values

    return max(k, int(r_values(data[1], data[3]).max())) if at_r(cfg) else k


def exact_knn(pipe, cfg, models, data=None):
    """Stage `exact_knn`: per seed and model, the exact top-k test-query ids (int64 (nq, k),
    k = GT_K, or max(GT_K, max R) on an at_r task: `search_k`) at the model's full dim, set as
    model["gt"] (`reference` slices its first GT_K). Experiments list "exact_knn" in deps."""
    k_gt = GT_K if data is None else search_k(cfg, data, GT_K)

    def key(name, seed):
        return f"{name.lower().replace('-', '_')}_s{seed}"

    def compute(ctx):
        arrays = {}
        for seed, ms in models.items():
            for name, m in ms.items():
                d = m["sizes"][-1]
                arrays[key(name, seed)] = knn_search(prefix(m["q"], d), prefix(m["db"], d), k_gt)[1]
        return StageResult(arrays=arrays)

    res = pipe.run("exact_knn", {"k": k_gt, "seeds": cfg["seeds"]}, compute, deps=model_stages(models),
                   code=["adanns_ref.core.topk", "adanns_ref.search.exact", "adanns_ref.core.truncate"])
    for seed, ms in models.items():
        for name, m in ms.items():
            m["gt"] = res.arrays[key(name, seed)]


def reference(model, k):
    """The exact top-k ids at the model's full dim (a prefix of the stored top-GT_K: same order,
    same ties to the smaller id)."""
    if k > GT_K:
        raise ValueError(f"k={k} exceeds the stored exact top-{GT_K}; raise mrl.GT_K")
    return np.ascontiguousarray(model["gt"][:, :k])


def model_stages(models, names=None):
    """Stage names of every model of every seed (or only of `names`)."""
    return [m["stage"] for per_seed in models.values() for n, m in per_seed.items()
            if names is None or n in names]


def ff_models(models):
    """{d: model} of the fixed-feature models of one seed."""
    return {m["sizes"][0]: m for name, m in models.items() if name.startswith("FF-")}


def top_right_singular_vectors(x, d):
    """V_d (D, d) float64: the right singular vectors of x (n, D) for its d largest singular
    values, as the eigenvectors of the float64 Gram matrix x^T x (largest eigenvalue first).
    The same vectors as np.linalg.svd up to each column's sign (which changes no distance),
    without the (n, D) U: at 60,000 x 2048 5 s instead of 40 s."""
    x64 = x.astype(np.float64)
    _, v = np.linalg.eigh(x64.T @ x64)
    return np.ascontiguousarray(v[:, ::-1][:, :d])


def post_hoc_projections(db, q, dims, seed):
    """{("SVD" | "RP", d): (db_d, q_d)}: MRL Fig. 2's post-hoc baselines from a full-D embedding.

    SVD: x -> x V_d with V_d the top-d right singular vectors of the normalised database
    matrix (no centring, so a prefix of an SVD is the next-smaller SVD). RP: x -> x R_d with
    R the first d columns of one seeded D x D Gaussian matrix (nested like a Matryoshka)."""
    xb, xq = prefix(db, db.shape[1]), prefix(q, q.shape[1])
    rand = np.random.default_rng(seed + 3).standard_normal((db.shape[1], db.shape[1]))
    out = {}
    for name, basis in (("SVD", top_right_singular_vectors(xb, max(dims))), ("RP", rand)):
        for d in dims:
            out[(name, d)] = tuple(np.ascontiguousarray(x @ basis[:, :d], dtype=np.float32)
                                   for x in (xb, xq))
    return out


def zero_prefix_fraction(db, d):
    """Share of database rows whose d-prefix is all zero (a dead-unit collapse)."""
    return float(np.mean(~np.any(db[:, :d] != 0, axis=1)))


def exp1_dims(pipe, cfg, data, models, val_idx, test_idx):
    """Per seed and size: linear top-1 (own heads), 1-NN top-1, mAP@10 and 10-recall@10 (against
    exact search at full D: MRL-D for MRL, MRL-E-D for MRL-E, FF-D for FF, SVD and RP), and the
    share of all-zero prefixes, for MRL, MRL-E, FF, SVD and RP (SVD / RP at cfg["baseline_dims"]);
    on an at_r task also mAP@R and R-precision ("mapr", "rprec"; searches return max R ids)."""
    _, ytr, _, yte = data
    D, nest = cfg["D"], cfg["nesting"]
    base_dims = list(cfg.get("baseline_dims") or nest)
    use_r, k_search = at_r(cfg), search_k(cfg, data, MAP_K)

    def compute(ctx):
        rows = RowCollector(ytr, yte, val_idx, test_idx)
        for seed, ms in models.items():
            ffs = ff_models(ms)
            full = {n: reference(ms[n], MAP_K) for n in ("MRL", "MRL-E", f"FF-{D}")}
            at_d = {n: ms[n]["gt"][:, :k_search] for n in full}
            todo = [(n, d, ms[n]["db"], ms[n]["q"], ms[n]["logits"][d], full[n])
                    for n in ("MRL", "MRL-E") for d in nest]
            todo += [("FF", d, m["db"], m["q"], m["logits"][d], full[f"FF-{D}"])
                     for d, m in sorted(ffs.items())]
            proj = post_hoc_projections(ffs[D]["db"], ffs[D]["q"], base_dims, seed)
            todo += [(n, d, db, q, None, full[f"FF-{D}"]) for (n, d), (db, q) in proj.items()]
            for name, d, db, q, logits, gt in todo:
                # at full D the search is the reference itself (same call, same ids)
                I = at_d[name if name != "FF" else f"FF-{D}"] if d == D and name not in ("SVD", "RP") \
                    else knn_search(prefix(q, d), prefix(db, d), k_search)[1]
                knn, knn_vec = rows.evaluate(I, gt, prefix="knn_", at_r=use_r)
                linear = (np.full(len(yte), np.nan, np.float32) if logits is None else
                          (np.argmax(logits, axis=1) == yte).astype(np.float32))
                rows.add_vectors({"model": name, "dim": d, "seed": seed,
                                  "linear_top1": None if logits is None else float(linear.mean()),
                                  "knn_top1": knn["knn_top1"], "map10": knn["knn_map10"],
                                  "recall10": knn["knn_recall10"],
                                  "zero_prefix": zero_prefix_fraction(db, d),
                                  **({"mapr": knn["knn_mapr"], "rprec": knn["knn_rprec"]} if use_r else {})},
                                 dict(knn_vec, linear_top1_per_query=linear))
        return rows.result("exp1_dims")

    conf = {"map_k": MAP_K, "seeds": cfg["seeds"]}
    if use_r:
        conf["search_k"] = k_search
    if base_dims != nest:
        conf["baseline_dims"] = base_dims
    return pipe.run("exp1_dims", conf, compute, deps=model_stages(models) + ["exact_knn"],
                    code=EVAL_CODE + ["adanns_ref.core.topk", "adanns_ref.search.exact"])


def cross_fit_cascade(logits, y, sizes, fold_a, fold_b):
    """The adaptive-classification cascade over `sizes`, cross-fitted: thresholds fitted on
    fold A predict fold B and vice versa. Returns (correct (nq,), dim used (nq,), thresholds
    per fold as [A-fitted, B-fitted])."""
    from mrl_ref.evaluate import adaptive_classify, fit_adaptive_thresholds

    correct = np.zeros(len(y), np.float32)
    dims = np.zeros(len(y), np.float32)
    thresholds = []
    for fit, use in ((fold_a, fold_b), (fold_b, fold_a)):
        t = fit_adaptive_thresholds([lg[fit] for lg in logits], y[fit])
        pred, used = adaptive_classify([lg[use] for lg in logits], sizes, t)
        correct[use], dims[use] = pred == y[use], used
        thresholds.append([round(float(v), 3) for v in t])
    return correct, dims, thresholds


def exp2_adaptive_cls(pipe, cfg, data, models, val_idx, test_idx):
    """Adaptive classification: MRL cascades over every prefix nesting[:g+1] and every suffix
    nesting[i:] of the nesting list with >= 2 sizes (the paper's single cascade is nesting
    itself), cross-fitted (thresholds fitted on one half of the queries, applied to the other,
    then swapped), with fixed-size MRL heads and FF models on the same queries; per seed."""
    y = data[3]
    nest = cfg["nesting"]
    cascades = [nest[: g + 1] for g in range(1, len(nest))] + [nest[i:] for i in range(1, len(nest) - 1)]

    def compute(ctx):
        rows = RowCollector(data[1], y, val_idx, test_idx)
        for seed, ms in models.items():
            mrl = ms["MRL"]
            for sizes in cascades:
                correct, dims, ts = cross_fit_cascade([mrl["logits"][m] for m in sizes], y, sizes,
                                                      val_idx, test_idx)
                rows.add_vectors({"method": "MRL adaptive", "config": f"cascade over {list(sizes)}",
                                  "seed": seed, "max_dim": sizes[-1], "top1": float(correct.mean()),
                                  "top1_val": float(correct[val_idx].mean()),
                                  "top1_test": float(correct[test_idx].mean()),
                                  "expected_dim": float(dims.mean()),
                                  "target": f"thresholds fitted on half A {ts[0]}, on half B {ts[1]}"},
                                 {"top1_per_query": correct, "dim_per_query": dims})
            fixed = [("MRL fixed", d, mrl["logits"][d]) for d in nest]
            fixed += [("FF", d, m["logits"][d]) for d, m in sorted(ff_models(ms).items())]
            for method, d, logits in fixed:
                correct = (np.argmax(logits, axis=1) == y).astype(np.float32)
                rows.add_vectors({"method": method, "config": f"{method} d={d}", "seed": seed,
                                  "max_dim": d, "top1": float(correct.mean()),
                                  "top1_val": float(correct[val_idx].mean()),
                                  "top1_test": float(correct[test_idx].mean()),
                                  "expected_dim": d, "target": ""},
                                 {"top1_per_query": correct,
                                  "dim_per_query": np.full(len(y), d, np.float32)})
        return rows.result("exp2_adaptive_cls")

    return pipe.run("exp2_adaptive_cls", {"seeds": cfg["seeds"]}, compute,
                    deps=model_stages(models), code=["mrl_ref.evaluate"] + EVAL_CODE)


def retrieval_configs(cfg):
    """(method, stages) of exp. 3: single-shot at every size; every shortlist dim x re-rank dim x
    shortlist length (shortlist dims cfg["adaptive_dims"], re-rank dims cfg["rerank_dims"],
    default every pair of nesting sizes d_s < d_r); funnels: cfg["funnel_dims"] when given (d_0
    keeps funnel_shortlists[0], d_1 the next, ..., the last dim re-ranks to k: the paper's
    8 -> 16 -> 32 -> 64 -> 128 -> 2048 with 200, 100, 50, 25, 10), else funnels over the
    trailing nesting sizes (shortlists from the end of cfg["funnel_shortlists"])."""
    nest, k = cfg["nesting"], cfg["retrieval_k"]
    out = [("single-shot", [(d, k)]) for d in nest]
    for ds in cfg.get("adaptive_dims") or nest[:-1]:
        for dr in [d for d in cfg.get("rerank_dims") or nest if d > ds]:
            for s in cfg["shortlists"]:
                out.append(("adaptive", [(ds, s), (dr, k)]))
    fs = cfg["funnel_shortlists"]
    if cfg.get("funnel_dims"):
        dims = cfg["funnel_dims"]
        if len(dims) != len(fs) + 1:
            raise ValueError(f"funnel_dims {dims} needs len(funnel_shortlists) + 1 = {len(fs) + 1} dims")
        return out + [("funnel", list(zip(dims, list(fs) + [k])))]
    for start in range(len(nest) - 2):
        dims = nest[start:]
        if len(dims) <= len(fs):
            out.append(("funnel", list(zip(dims, fs[-len(dims):]))))
    return out


def exp3_retrieval(pipe, cfg, data, models, val_idx, test_idx):
    """Adaptive retrieval and funnels on the MRL embedding vs single-shot exact search."""
    from adanns_ref.funnel import funnel_search

    _, ytr, _, yte = data
    configs = retrieval_configs(cfg)
    k = cfg["retrieval_k"]

    def compute(ctx):
        rows = RowCollector(ytr, yte, val_idx, test_idx)
        for seed, ms in models.items():
            db, q = ms["MRL"]["db"], ms["MRL"]["q"]
            funnel_search(db[:64], q[:4], [(1, 8), (2, 4)])  # compile numba kernels before timing
            gt = reference(ms["MRL"], k)
            for method, stages in configs:
                # every seed: one untimed search of all queries (results, warm-up), then the
                # preset's timed repeats (`stage.timed_repeats`); flops from the full search
                (_, I, flops), ms_q = timed_repeats(lambda qq: funnel_search(db, qq, stages), q, cfg)
                rows.add_retrieval({"method": method, "seed": seed,
                                    "config": " -> ".join(f"{d}@{kk}" for d, kk in stages),
                                    "d_shortlist": stages[0][0], "k_shortlist": stages[0][1],
                                    "d_rerank": stages[-1][0], "mflops": flops / 1e6,
                                    "ms_per_query": float(np.median(ms_q)), "ms_repeats": ms_q}, I, gt)
        return rows.result("exp3_retrieval")

    conf = {"configs": configs, "seeds": cfg["seeds"], "timing": list(timing(cfg))}
    return pipe.run("exp3_retrieval", conf, compute, deps=model_stages(models, ["MRL"]) + ["exact_knn"],
                    code=EVAL_CODE + ["adanns_ref.funnel.funnel", "adanns_ref.core.topk", "adanns_ref.search.exact"])
