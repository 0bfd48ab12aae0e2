"""`tune`: measure the grid on the user's vectors, choose under the budgets, write the outputs.

Memory: the base is read (memory-mapped when the format allows) once; each index holds what
its faiss form holds, plus the D-dim vectors for IVF (query-time d_s), and is dropped before the
next one is built. The ground truth scans the base in blocks. Nothing is N x N.
"""
import os
import sys
import time

import numpy as np

from . import choose, data, grid, measure, report
from ..core.persist import atomic_write, atomic_write_text
from ..core.validate import as_int, check_metric
from ..distributed import map_configs

BUDGET_NAMES = ("ms", "mflops", "bytes", "recall")


def _check_dims(dims, D):
    if dims is None:
        return grid.default_dims(D)
    dims = sorted({as_int(d, "dims entry", 1) for d in dims})
    if dims[-1] > D:
        raise ValueError(f"--dims {dims[-1]} exceeds the embedding dimension D={D}; use dims <= D")
    return dims if dims[-1] == D else dims + [D]


def _check_budgets(budgets):
    budgets = {name: budgets.get(name) for name in BUDGET_NAMES}
    for name, value in budgets.items():
        if value is not None and not (np.isfinite(value) and value > 0):
            raise ValueError(f"budget {name}={value!r} must be a positive number")
    if budgets["recall"] is not None and budgets["recall"] > 1:
        raise ValueError(f"--min-recall {budgets['recall']} must lie in (0, 1]")
    return budgets


def _progress(stream, done, total, n_built, n_builds, elapsed, what):
    eta = elapsed / done * (total - done) if done else float("nan")
    print(f"[tune] index {n_built}/{n_builds} ({what}): {done}/{total} configurations, "
          f"{elapsed:.1f} s elapsed, ETA {eta:.0f} s", file=stream, flush=True)


def load_inputs(base=None, queries=None, hdf5=None, k=10, out=".", seed=0):
    """(xb, xq, ground-truth ids or None, normalize or None, source description)."""
    if hdf5 is not None:
        if base is not None or queries is not None:
            raise ValueError("pass either --hdf5 or --base/--queries, not both")
        xb, xq, gt, normalize = data.load_hdf5(hdf5, k)
        return xb, xq, gt, normalize, os.path.basename(os.fspath(hdf5))
    if (base is None) != (queries is None):
        raise ValueError("--base and --queries go together; pass both (or neither for the "
                         "embedded Fashion-MNIST MRL embeddings)")
    if base is not None:
        xb, xq = data.load_files(base, queries)
        return xb, xq, None, None, f"{os.path.basename(os.fspath(base))}"
    xb, xq = data.embedded_mrl(out, seed)
    return xb, xq, None, None, "embedded Fashion-MNIST MRL embeddings"


def _measure_spec(spec, setting, xq, gt, split, n_timed_1t):
    """One index build and its sweep (a task of `adanns_ref.distributed.map_configs`)."""
    return measure.measure_build(setting, spec, xq, gt, split, n_timed_1t=n_timed_1t)


def tune(xb, xq, out, k=10, metric="l2", normalize=True, dims=None, budgets=None, quick=False,
         export=None, seed=0, gt=None, source="arrays", progress=True,
         families=grid.FAMILIES, client=None, where=None):
    """Tune on base xb (N, D) and queries xq (nq, D); write DIR/tune.{md,json}, DIR/pareto.png
    and, with `export`, the overall choice as a faiss index file. Returns the result dict
    (rows, chosen per budget, overall). gt: exact top-k ids (nq, >= k), else computed and cached.
    progress: True (lines on sys.stderr), a text stream, or None. Bad input or an unmeetable
    budget raises ValueError.

    client: a ``distributed.Client`` (see `adanns_ref.distributed.connect`): each index build
    with its sweep runs as one task on the workers; rows are the serial run's except the timed
    columns (ms_1t, ms_all, build_s, peak_mb), which are measured on a worker that shares its
    machine with other tasks, so they are not comparable with a quiet serial run, and neither is
    a choice that reads ms. where: how the run was executed, for the report."""
    progress = sys.stderr if progress is True else progress
    t_start = time.perf_counter()
    metric = check_metric(metric)
    k = as_int(k, "k", 1)
    N, D = xb.shape
    if xq.ndim != 2 or xq.shape[1] != D:
        raise ValueError(f"dimension mismatch: base has D={D} but queries have shape {xq.shape}")
    if N < 2 * k:
        raise ValueError(f"the base holds {N} vectors; tuning needs at least 2k = {2 * k}")
    budgets = _check_budgets(budgets or {})
    dims = _check_dims(dims, D)
    os.makedirs(out, exist_ok=True)
    if gt is None:
        gt = data.ground_truth(xb, xq, k, metric, normalize, out)
    split = data.split_queries(xq.shape[0], seed)
    if metric == "ip":
        families = tuple(f for f in families if f != "pq")  # PQIndex scores squared L2 only
    specs = grid.builds(N, D, k, dims, quick, families)
    kept, pruned_budget = grid.prune_budget(specs, N, k, budgets)
    if not kept:
        cheapest = min(((grid.bytes_per_vector(s["family"], {**s["build"], **w}),
                         measure.config_key(s["family"], {**s["build"], **w}))
                        for s in specs for w in s["sweep"]))
        raise ValueError(f"--budget-bytes {budgets['bytes']:g}: none meets it; the cheapest is "
                         f"{cheapest[1]} (bytes={cheapest[0]})")
    setting = measure.Setting(xb, metric, normalize, k, seed, quick)
    total = sum(len(s["sweep"]) for s in kept)
    n_timed_1t = 50 if quick else 200
    rows, done, pruned_sweep = [], 0, 0
    measured = map_configs(client, _measure_spec, kept, setting, xq, gt, split, n_timed_1t)
    for i, (spec, (new, pruned)) in enumerate(zip(kept, measured)):
        rows += new
        pruned_sweep += pruned
        done += len(spec["sweep"])
        if progress is not None:
            _progress(progress, done, total, i + 1, len(kept), time.perf_counter() - t_start,
                      measure.config_key(spec["family"], spec["build"]))
    chosen = choose.per_budget(rows, budgets)
    overall = choose.overall(rows, budgets)
    rule = "every budget" if any(v is not None for v in budgets.values()) else \
        f"fastest with recall >= {choose.DEFAULT_RECALL}"
    result = {"info": {"source": source, "N": N, "D": D, "nq": int(xq.shape[0]),
                       "n_val": int(split["val"].size), "n_test": int(split["test"].size),
                       "k": k, "metric": metric, "normalize": bool(normalize), "dims": dims,
                       "quick": bool(quick), "seed": seed, "n_builds": len(kept),
                       "pruned_budget": pruned_budget, "pruned_sweep": pruned_sweep,
                       "wall_s": 0.0, "where": where or "in-process, serial"},
              "budgets": budgets, "rows": rows, "chosen": chosen, "overall": overall,
              "overall_rule": rule, "export": None if export is None else os.fspath(export),
              "split": {name: idx.tolist() for name, idx in split.items()}}
    if export is not None:
        export_faiss(setting, overall, export)
    result["info"]["wall_s"] = time.perf_counter() - t_start
    report.write_json(os.path.join(out, "tune.json"), result)
    atomic_write_text(os.path.join(out, "tune.md"), report.markdown(result))
    report.plot(os.path.join(out, "pareto.png"), result)
    return result


def export_faiss(setting, config, path):
    """Rebuild `config` (a row) and write it as a faiss index file that serves D-dim queries."""
    from ..faiss_bridge import import_faiss
    from ..faiss_bridge.serve import set_nprobe
    faiss = import_faiss()
    index = measure.export_searcher(setting, config).to_faiss(config["sweep"])
    if "nprobe" in config["sweep"]:
        set_nprobe(index, config["sweep"]["nprobe"])
    atomic_write(path, lambda tmp: faiss.write_index(index, tmp), suffix=".faiss")
    return index
