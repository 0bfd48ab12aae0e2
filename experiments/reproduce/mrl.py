"""MRL side of the reproduction: training the encoders and experiments 1-3.

Models (MLP 784-h-h-D, embedding = last hidden layer after ReLU, SPEC §1):
- "MRL":   separate heads on every nesting size m_g, Matryoshka loss sum_g CE_ls(logits_g, y);
- "MRL-E": weight-tied heads (one W, one bias);
- "FF-d":  one fixed-feature model per nesting size d (a d-dim embedding, one head).

Each model is one cached stage `train_<name>` whose arrays are the float32 train/test
embeddings and the per-size test logits; the model itself is saved with `model.save`.
Experiments only read those arrays, so re-running an experiment never retrains.
"""
import time

import numpy as np

from adanns_ref.topk import knn_search
from adanns_ref.truncate import prefix

from .rows import MAP_K, RowCollector
from .stage import StageResult

TRAIN_CODE = ["mrl_ref.train", "mrl_ref.nn", "mrl_ref.heads", "mrl_ref.autograd", "mrl_ref.optim"]
EVAL_CODE = ["adanns_ref.metrics", "adanns_ref.truncate", "experiments.reproduce.rows",
             "experiments.reproduce.mrl"]


def _train_config(cfg, kind, nesting):
    keys = ("subset", "per_class", "hidden", "epochs", "batch_size", "optimizer", "lr", "warmup",
            "seed")
    return dict({k: cfg[k] for k in keys}, kind=kind, nesting=list(nesting))


def _train_stage(pipe, cfg, data, name, kind, nesting):
    from mrl_ref import train as mtrain

    Xtr, ytr, Xte, _ = data
    conf = _train_config(cfg, kind, nesting)

    def compute(ctx):
        common = dict(hidden=tuple(cfg["hidden"]), epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                      lr=cfg["lr"], warmup=cfg["warmup"], optimizer=cfg["optimizer"],
                      seed=cfg["seed"], progress=True)
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

    res = pipe.run(f"train_{name.lower()}", conf, compute, code=TRAIN_CODE)
    return {"name": name, "stage": f"train_{name.lower()}", "sizes": list(nesting),
            "db": res.arrays["emb_train"], "q": res.arrays["emb_test"],
            "logits": {m: res.arrays[f"logits_test_{m}"] for m in nesting}}


def train_all(pipe, cfg, data):
    """Train (or load from cache) MRL, MRL-E and one FF model per nesting size, all with the
    same recipe (optimizer, lr schedule, epochs, batch size, seed)."""
    models = {"MRL": _train_stage(pipe, cfg, data, "MRL", "MRL", cfg["nesting"]),
              "MRL-E": _train_stage(pipe, cfg, data, "MRL-E", "MRL-E", cfg["nesting"])}
    for d in cfg["nesting"]:
        models[f"FF-{d}"] = _train_stage(pipe, cfg, data, f"FF-{d}", "FF", [d])
    return models


def model_stages(models):
    return [m["stage"] for m in models.values()]


def ff_models(models):
    """{d: model} of the fixed-feature models."""
    return {m["sizes"][0]: m for name, m in models.items() if name.startswith("FF-")}


def exp1_dims(pipe, cfg, data, models, val_idx, test_idx):
    """Per size: linear top-1 (own heads), 1-NN top-1 and mAP@10 for MRL, MRL-E and FF."""
    _, ytr, _, yte = data
    todo = [(name, d, models[name]) for name in ("MRL", "MRL-E") for d in models[name]["sizes"]]
    todo += [("FF", d, m) for d, m in sorted(ff_models(models).items())]

    def compute(ctx):
        rows = RowCollector(ytr, yte, val_idx, test_idx, cfg["seed"])
        for name, d, m in todo:
            _, I = knn_search(prefix(m["q"], d), prefix(m["db"], d), MAP_K)
            knn, knn_vec = rows.evaluate(I, with_map=True, prefix="knn_")
            linear = (np.argmax(m["logits"][d], axis=1) == yte).astype(np.uint8)
            rows.add_vectors({"model": name, "dim": d, "linear_top1": float(linear.mean()),
                              "knn_top1": knn["knn_top1"], "map10": knn["knn_map10"]},
                             dict(knn_vec, linear_top1_per_query=linear))
        return rows.result("exp1_dims")

    return pipe.run("exp1_dims", {"map_k": MAP_K, "seed": cfg["seed"]}, compute,
                    deps=model_stages(models), code=EVAL_CODE + ["adanns_ref.topk"])


def _linear_top1(logits, y):
    return float(np.mean(np.argmax(logits, axis=1) == y))


def exp2_adaptive_cls(pipe, cfg, data, models, val_idx, test_idx):
    """Adaptive classification: MRL cascades over every prefix nesting[:g+1] and every suffix
    nesting[i:] of the nesting list with >= 2 sizes (one point each: the paper's single cascade
    is nesting itself), thresholds fit on the validation half, accuracy and expected dim on the
    test half; fixed-size MRL heads and FF models on the same half."""
    from mrl_ref.evaluate import adaptive_classification

    yv, yt = data[3][val_idx], data[3][test_idx]
    mrl, nest = models["MRL"], models["MRL"]["sizes"]

    def compute(ctx):
        rows = []
        cascades = [nest[: g + 1] for g in range(1, len(nest))] + [nest[i:] for i in range(1, len(nest) - 1)]
        for sizes in cascades:
            logits = [mrl["logits"][m] for m in sizes]
            res = adaptive_classification([lg[val_idx] for lg in logits], yv,
                                          [lg[test_idx] for lg in logits], yt, sizes)
            rows.append({"method": "MRL adaptive", "expected_dim": res["expected_dim"],
                         "top1": res["accuracy"], "max_dim": sizes[-1],
                         "target": f"cascade over {list(sizes)}; thresholds "
                                   f"{[round(t, 3) for t in res['thresholds']]}",
                         "exit_fraction": res["exit_fraction"]})
        for d in nest:
            rows.append({"method": "MRL fixed", "expected_dim": d, "max_dim": d, "target": "",
                         "top1": _linear_top1(mrl["logits"][d][test_idx], yt)})
        for d, m in sorted(ff_models(models).items()):
            rows.append({"method": "FF", "expected_dim": d, "max_dim": d, "target": "",
                         "top1": _linear_top1(m["logits"][d][test_idx], yt)})
        return StageResult(tables={"exp2_adaptive_cls": rows})

    return pipe.run("exp2_adaptive_cls", {"seed": cfg["seed"]}, compute,
                    deps=model_stages(models), code=["mrl_ref.evaluate", "experiments.reproduce.mrl"])


def retrieval_configs(cfg):
    """(method, stages) of exp. 3: single-shot at every size, every shortlist dim x re-rank dim x
    shortlist length, and funnels over the trailing nesting sizes (shortlists from the end of
    cfg["funnel_shortlists"], e.g. [..., 50, 25, 10])."""
    nest, k = cfg["nesting"], cfg["retrieval_k"]
    out = [("single-shot", [(d, k)]) for d in nest]
    for i, ds in enumerate(nest[:-1]):
        for dr in nest[i + 1:]:
            for s in cfg["shortlists"]:
                out.append(("adaptive", [(ds, s), (dr, k)]))
    fs = cfg["funnel_shortlists"]
    for start in range(len(nest) - 2):
        dims = nest[start:]
        if len(dims) <= len(fs):
            out.append(("funnel", list(zip(dims, fs[-len(dims):]))))
    return out


def exp3_retrieval(pipe, cfg, data, models, val_idx, test_idx):
    """Adaptive retrieval and funnels on the MRL embedding vs single-shot exact search."""
    from adanns_ref.funnel import funnel_search

    _, ytr, _, yte = data
    mrl = models["MRL"]
    configs = retrieval_configs(cfg)

    def compute(ctx):
        db, q = mrl["db"], mrl["q"]
        funnel_search(db[:64], q[:4], [(1, 8), (2, 4)])  # compile numba kernels before timing
        rows = RowCollector(ytr, yte, val_idx, test_idx, cfg["seed"])
        for method, stages in configs:
            t0 = time.perf_counter()
            _, I, flops = funnel_search(db, q, stages)
            ms = 1e3 * (time.perf_counter() - t0) / len(q)
            rows.add_retrieval({"method": method, "config": " -> ".join(f"{d}@{k}" for d, k in stages),
                                "d_shortlist": stages[0][0], "k_shortlist": stages[0][1],
                                "d_rerank": stages[-1][0], "mflops": flops / 1e6,
                                "ms_per_query": ms}, I, with_map=True)
        return rows.result("exp3_retrieval")

    conf = {"configs": configs, "seed": cfg["seed"]}
    return pipe.run("exp3_retrieval", conf, compute, deps=["train_mrl"],
                    code=EVAL_CODE + ["adanns_ref.funnel", "adanns_ref.topk"])
