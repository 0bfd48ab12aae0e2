"""tune against faiss AutoTune under the same budgets (issue 25): `python -m experiments.autotune_compare`.

Two data sets a Matryoshka tool never saw:

- PCA of Fashion-MNIST pixels at D = 256 (centred PCA fitted on the 60,000 train images, applied
  to train (base) and test (queries)); ``--small`` uses the embedded subset (6,000 / 1,000) at
  D = 32;
- faiss's ``SyntheticDataset(128, 0, 50000, 1000)`` (``--small``: (32, 0, 3000, 200)).

Both sides are measured the same way: k-recall@10 of the faiss index against plain NumPy L2
ground truth (float64, blocked), chosen on the validation half of the queries and reported on
the test half (tune's split, seed 0), and ms/query at one thread from `adanns_ref.tune.latency`
(median of 5 passes after a warm-up, batch call, on tune's fixed sample of <= 500 queries).

AutoTune: for each of ``IVF{n},Flat`` (n = 2^round(log2 sqrt N)), ``HNSW32`` and
``OPQ16,IVF{n},PQ16``, the index is built by ``faiss.index_factory`` (IVFPQ without polysemous
training, which only serves the Hamming pre-filter), ``ParameterSpace.explore``
finds its operating points with ``IntersectionCriterion`` (= k-recall@k) on the validation
queries, and each optimal point is re-measured as above. tune: one run (``--quick`` unless
``--full``) with metric l2 and the NumPy ground truth; its choices under each budget are made
from its rows by `tune.choose` (as ``--rechoose`` does).

Budgets: recall floors 0.9 and 0.95 (least ms_1t reaching them; tune's band rule: within 10 %
of the fastest, least MFLOPs), and ms/query budgets at the 25th, 50th and 75th percentiles of
AutoTune's re-measured optimal points (best validation recall within them). Writes a markdown
table (``--out``/autotune.md) and the raw numbers (autotune.json).
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np

from adanns_ref.evaluation.metrics import knn_recall
from adanns_ref.tune import choose, data, latency
from adanns_ref.tune.run import tune

K = 10


def numpy_l2_truth(xb, xq, k, block=8192):
    """Exact L2 top-k ids (nq, k) with NumPy in float64, scanning xb in blocks."""
    q = xq.astype(np.float64)
    qq = (q * q).sum(1)[:, None]
    best_d = np.full((q.shape[0], 0), np.inf)
    best_i = np.zeros((q.shape[0], 0), np.int64)
    for r0 in range(0, xb.shape[0], block):
        b = xb[r0:r0 + block].astype(np.float64)
        d = qq - 2 * q @ b.T + (b * b).sum(1)[None]
        d = np.hstack([best_d, d])
        i = np.hstack([best_i, np.arange(r0, r0 + b.shape[0])[None].repeat(q.shape[0], 0)])
        order = np.argsort(d, axis=1, kind="stable")[:, :k]
        best_d, best_i = np.take_along_axis(d, order, 1), np.take_along_axis(i, order, 1)
    return best_i


def fashion_pca(small):
    from mrl_ref.data import load_fashion_mnist
    subset, D = ("embedded", 32) if small else (None, 256)
    xtr, _ = load_fashion_mnist("train", subset=subset, flatten=True)
    xte, _ = load_fashion_mnist("test", subset=subset, flatten=True)
    mean, A, _ = data.fit_pca(xtr, centre=True)
    return data.apply_pca(xtr, mean, A[:D]), data.apply_pca(xte, mean, A[:D])


def synthetic(small):
    from faiss.contrib.datasets import SyntheticDataset
    ds = SyntheticDataset(32, 0, 3000, 200) if small else SyntheticDataset(128, 0, 50000, 1000)
    return (np.ascontiguousarray(ds.get_database(), np.float32),
            np.ascontiguousarray(ds.get_queries(), np.float32))


def autotune_points(faiss, xb, xq, gt, split, timing):
    """faiss AutoTune's optimal points of the three factory strings, re-measured."""
    N, D = xb.shape
    nlist = 2 ** round(math.log2(math.sqrt(N)))
    val = split["val"]
    points = []
    for factory in (f"IVF{nlist},Flat", "HNSW32", f"OPQ16,IVF{nlist},PQ16"):
        index = faiss.index_factory(D, factory)
        ivf = faiss.try_extract_index_ivf(index)
        ivf = None if ivf is None else faiss.downcast_index(ivf)
        if isinstance(ivf, faiss.IndexIVFPQ):
            # polysemous training only serves Hamming pre-filtering (the "ht" knob); it takes
            # minutes of simulated annealing and does not change IVFPQ's recall or speed otherwise
            ivf.do_polysemous_training = False
        index.train(xb)
        index.add(xb)
        ps = faiss.ParameterSpace()
        ps.initialize(index)
        ps.verbose = 0
        crit = faiss.IntersectionCriterion(len(val), K)
        crit.set_groundtruth(None, np.ascontiguousarray(gt[val], dtype=np.int64))
        ops = ps.explore(index, np.ascontiguousarray(xq[val]), crit)
        for i in range(ops.optimal_pts.size()):
            if ops.optimal_pts.at(i).cno < 0:   # OperatingPoints' sentinel (perf 0, no key)
                continue
            key = ops.optimal_pts.at(i).key
            ps.set_index_parameters(index, key)
            _, I = index.search(xq, K)
            row = {"config": f"{factory} {key}", "family": factory,
                   "recall_val": knn_recall(gt[val], I[val], K, K),
                   "recall_test": knn_recall(gt[split["test"]], I[split["test"]], K, K)}
            row.update(latency.time_faiss(faiss, index, xq[timing], K))
            points.append(row)
    return points


def _pick(rows, name, value):
    budgets = dict.fromkeys(("ms", "mflops", "bytes", "recall"))
    budgets[name] = value
    if "mflops" not in rows[0]:   # AutoTune rows: no cost model, ties broken by name only
        rows = [dict(r, mflops=0.0, bytes=0.0) for r in rows]
    return choose.per_budget(rows, budgets)[0].get(name)


def compare(name, xb, xq, out, quick, progress):
    import faiss
    gt = numpy_l2_truth(xb, xq, K)
    split = data.split_queries(xq.shape[0], 0)
    timing = data.timing_sample(xq.shape[0], latency.TIMING_QUERIES, 0)
    t0 = time.perf_counter()
    auto = autotune_points(faiss, xb, xq, gt, split, timing)
    t_auto = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = tune(xb, xq, os.path.join(out, name), k=K, metric="l2", quick=quick, gt=gt,
                  source=name, progress=progress)
    t_tune = time.perf_counter() - t0
    ms = sorted(r["ms_1t"] for r in auto)
    budgets = [("recall", 0.9), ("recall", 0.95)] + \
        [("ms", float(np.percentile(ms, p))) for p in (25, 50, 75)]
    lines = []
    for kind, value in budgets:
        a, t = _pick(auto, kind, value), _pick(result["rows"], kind, value)
        lines.append({"data": name, "budget": kind, "value": value, "autotune": a, "tune": t})
    return {"data": name, "N": int(xb.shape[0]), "D": int(xb.shape[1]), "nq": int(xq.shape[0]),
            "autotune_s": t_auto, "tune_s": t_tune, "lines": lines}


def _cell(row):
    if row is None:
        return "none meets it | | "
    return f"{row['config']} | {row['recall_test']:.4f} | {row['ms_1t']:.4g}"


def _verdict(line):
    a, t = line["autotune"], line["tune"]
    if a is None:
        return "AutoTune meets none"
    if t is None:
        return "**tune meets none**"
    if line["budget"] == "recall":   # lower ms wins; the band rule allows its tolerance
        ok = t["ms_1t"] <= a["ms_1t"] * (1 + choose.TIME_TOLERANCE)
        return f"{'yes' if ok else '**no**'} ({t['ms_1t'] / a['ms_1t']:.2f}x AutoTune's ms)"
    ok = t["recall_test"] >= a["recall_test"] - 0.005
    return f"{'yes' if ok else '**no**'} ({t['recall_test'] - a['recall_test']:+.4f} recall)"


def markdown(results):
    out = ["# tune vs faiss AutoTune (same budgets, measured with faiss against NumPy truth)", "",
           "| data | budget | AutoTune choice | recall_test | ms_1t | tune choice | recall_test "
           "| ms_1t | tune at least as good? |", "|---|---|---|---|---|---|---|---|---|"]
    for res in results:
        for line in res["lines"]:
            label = (f"recall >= {line['value']:g}" if line["budget"] == "recall"
                     else f"ms_1t <= {line['value']:.4g}")
            out.append(f"| {res['data']} (N={res['N']}, D={res['D']}) | {label} | "
                       f"{_cell(line['autotune'])} | {_cell(line['tune'])} | {_verdict(line)} |")
    out += ["", "Wall time: " + ", ".join(f"{r['data']}: AutoTune {r['autotune_s']:.0f} s, tune "
                                         f"{r['tune_s']:.0f} s" for r in results) + ".", ""]
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m experiments.autotune_compare",
                                description=__doc__.split("\n")[0])
    p.add_argument("--out", default="experiments/results_autotune", help="output directory")
    p.add_argument("--small", action="store_true", help="tiny sizes (a test)")
    p.add_argument("--full", action="store_true", help="tune's full grid instead of --quick")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    results = [compare("fashion-mnist-pca", *fashion_pca(args.small), args.out, not args.full,
                       None if args.small else True),
               compare("synthetic", *synthetic(args.small), args.out, not args.full,
                       None if args.small else True)]
    with open(os.path.join(args.out, "autotune.json"), "w") as f:
        json.dump(results, f, indent=1, default=float)
    text = markdown(results)
    with open(os.path.join(args.out, "autotune.md"), "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
