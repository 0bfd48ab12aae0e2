"""`tune`: measure the grid on the user's vectors, choose under the budgets, write the outputs.

Order of work: every check that can fail on the arguments alone (metric, sizes, output paths)
runs before anything is computed; then the ground truth, the coarse builds, the refinement
around the front (`refine`), the choice, and always the reports (tune.json, tune.md,
pareto.png) before an export or an error about a budget no configuration meets
(`BudgetError`, exit code 2 in the CLI). `rechoose` chooses again from tune.json.

Memory: the base is read (memory-mapped when the format allows) once; each index holds what
its faiss form holds, plus the D-dim vectors for IVF (query-time d_s), and is dropped before the
next one is built; --pca holds one rotated float32 copy of the base. The ground truth scans the
base in blocks. Nothing is N x N.
"""
import json
import os
import sys
import time

import numpy as np

from ..core.persist import atomic_write, atomic_write_text
from ..core.validate import as_int
from ..distributed import map_configs
from ..io import write_npy
from . import choose, data, grid, latency, measure, refine, report
from .progress import Phase

BUDGET_NAMES = ("ms", "mflops", "bytes", "recall")
MIN_BASE_PQ = 256      # PQ / OPQ train 256 centroids per sub-space
POOR_PREFIX_RECALL = 0.6


class BudgetError(ValueError):
    """No configuration meets a budget; the reports were written first (``result``)."""

    def __init__(self, message, result):
        super().__init__(message)
        self.result = result


def _check_dims(dims, D):
    if dims is None:
        return grid.default_dims(D)
    dims = sorted({as_int(d, "dims entry", 1) for d in dims})
    if dims[-1] > D:
        raise ValueError(f"--dims {dims[-1]} exceeds the embedding dimension D={D}; use dims <= D")
    return dims if dims[-1] == D else dims + [D]


def check_budgets(budgets):
    budgets = {name: budgets.get(name) for name in BUDGET_NAMES}
    for name, value in budgets.items():
        if value is not None and not (np.isfinite(value) and value > 0):
            raise ValueError(f"{choose.FLAGS[name]} {value!r} must be a positive number")
    if budgets["recall"] is not None and budgets["recall"] > 1:
        raise ValueError(f"--min-recall {budgets['recall']} must lie in (0, 1]")
    return budgets


def load_inputs(base=None, queries=None, hdf5=None, k=10, out=".", seed=0):
    """(xb, xq, ground-truth ids or None, the HDF5 file's distance or None, source, inputs)."""
    if hdf5 is not None:
        if base is not None or queries is not None:
            raise ValueError("pass either --hdf5 or --base/--queries, not both")
        xb, xq, gt, distance = data.load_hdf5(hdf5, k)
        return xb, xq, gt, distance, os.path.basename(os.fspath(hdf5)), \
            {"hdf5": os.path.abspath(hdf5)}
    if (base is None) != (queries is None):
        raise ValueError("--base and --queries go together; pass both (or neither for the "
                         "embedded Fashion-MNIST MRL embeddings)")
    if base is not None:
        xb, xq = data.load_files(base, queries)
        return xb, xq, None, None, os.path.basename(os.fspath(base)), \
            {"base": os.path.abspath(base), "queries": os.path.abspath(queries)}
    xb, xq = data.embedded_mrl(out, seed)
    return xb, xq, None, None, "embedded Fashion-MNIST MRL embeddings", {"embedded": True}


def _check_sizes(N, k, families):
    if N < 2 * k:
        raise ValueError(f"the base holds {N} vectors; tuning needs at least 2k = {2 * k}")
    if N < MIN_BASE_PQ and ({"pq", "ivfpq"} & set(families)):
        raise ValueError(f"the base holds {N} vectors; the grid's PQ / OPQ indices train 256 "
                         f"centroids and need at least {MIN_BASE_PQ}: pass a larger base")


def _measure_spec(spec, setting, queries, gt, split, timing, repeats):
    """One index build and its sweep (a task of `adanns_ref.distributed.map_configs`)."""
    return measure.measure_build(setting, spec, queries, gt, split, timing, repeats)


def _measure(builds, setting, queries, gt, split, timing, repeats, client, stream, name):
    """Measure builds (serially with a progress bar, or one task each on `client`)."""
    units = [len(b["sweep"]) + 1 for b in builds]
    phase = Phase(name, sum(units), stream)
    rows, pruned = [], 0
    results = map_configs(client, _measure_spec, builds, setting, queries, gt, split,
                          timing, repeats)
    for spec, u, (new, p) in zip(builds, units, results):
        rows += new
        pruned += p
        phase.step(u, measure.config_key(spec["family"], spec["build"]))
    phase.done(f"{len(builds)} builds, {len(rows)} configurations")
    return rows, pruned


def prefix_table(rows, D):
    """[(d, validation recall, test recall)] of flat search at each prefix size, and the warning
    line when the largest prefix below D recalls less than `POOR_PREFIX_RECALL` (or None)."""
    flat = sorted((r["d"], r["recall_val"], r["recall_test"]) for r in rows if r["family"] == "flat")
    small = [t for t in flat if t[0] < D]
    if small and small[-1][1] < POOR_PREFIX_RECALL:
        d, rec = small[-1][0], small[-1][1]
        return flat, (f"prefix d = {d} reaches only {rec:.2f} recall: these embeddings are not "
                      f"Matryoshka-like (try --pca)")
    return flat, None


def tune(xb, xq, out, k=10, metric=None, normalize=False, dims=None, budgets=None, quick=False,
         export=None, seed=0, gt=None, source="arrays", progress=True, families=grid.FAMILIES,
         client=None, where=None, file_distance=None, inputs=None, pca=False,
         timing_queries=latency.TIMING_QUERIES, repeats=latency.REPEATS):
    """Tune on base xb (N, D) and queries xq (nq, D); write DIR/tune.{md,json}, DIR/pareto.png
    and, with `export`, the overall choice as a faiss index file. Returns the result dict.

    metric: "l2" | "ip" | "cosine" | None (the HDF5 file's `file_distance`, else "l2");
    normalize: unit-norm vectors and prefixes (`data.resolve_metric`); pca: tune on a PCA
    rotation of the base, exported as a faiss PCAMatrix first in the chain. gt: exact top-k ids
    (nq, >= k), else computed and cached. progress: True (sys.stderr), a text stream, or None.
    inputs: {"base"/"queries"/"hdf5": path} (outputs may not be inputs; --rechoose rebuilds
    from them). Bad input raises ValueError before any work; a budget no configuration meets
    raises `BudgetError` after the reports are written.

    client: a ``distributed.Client``: each index build with its sweep runs as one task on the
    workers; its timed columns are measured on a worker that shares its machine with other
    tasks, so they are not comparable with a quiet serial run. where: for the report."""
    stream = sys.stderr if progress is True else progress
    t_start = time.perf_counter()
    stated, search_metric, normalize = data.resolve_metric(
        metric, normalize, file_distance, (inputs or {}).get("hdf5", source))
    k = as_int(k, "k", 1)
    N, D = xb.shape
    if xq.ndim != 2 or xq.shape[1] != D:
        raise ValueError(f"dimension mismatch: base has D={D} but queries have shape {xq.shape}")
    if search_metric == "ip":   # PQIndex scores squared L2 only; faiss's IVF fast-scan IP heap
        families = tuple(f for f in families if f not in ("pq", "ivffastscan"))  # is uninitialised
    _check_sizes(N, k, families)
    budgets = check_budgets(budgets or {})
    dims = _check_dims(dims, D)
    given = {f"--{n}": p for n, p in (inputs or {}).items() if n != "embedded"}
    data.check_outputs(given, {"--out": out})
    split = data.split_queries(xq.shape[0], seed)
    os.makedirs(out, exist_ok=True)
    data.check_outputs(given, {"--export": export})
    if (inputs or {}).get("embedded"):   # the serving snippet reads them from here
        write_npy(os.path.join(out, "queries.npy"), xq)
    if gt is None:
        phase = Phase("ground truth", N, stream)
        gt = data.ground_truth(xb, xq, k, search_metric, normalize, out,
                               on_block=lambda n: phase.step(n, f"{N} base rows"))
        phase.done(f"exact top-{k} of {xq.shape[0]} queries over {N} vectors")
    rotation, xb_t, xq_t = None, xb, xq
    if pca:
        rotation = data.fit_pca(xb, centre=search_metric == "l2" and not normalize)
        xb_t, xq_t = data.apply_pca(xb, *rotation[:2]), data.apply_pca(xq, *rotation[:2])
    timing = data.timing_sample(xq.shape[0], timing_queries, seed)
    setting = measure.Setting(xb_t, search_metric, normalize, k, seed, quick, rotation)
    queries = (xq_t, xq)
    specs = grid.builds(N, D, k, dims, quick, families)
    kept, pruned_budget = grid.prune_budget(specs, N, k, budgets)
    whole_grid = not kept
    if whole_grid:   # measure everything, so that --rechoose can choose under another budget
        kept, pruned_budget = specs, 0
    rows, pruned_sweep = _measure(kept, setting, queries, gt, split, timing, repeats, client,
                                  stream, "builds")
    more, _ = grid.prune_budget(refine.around_front(rows, N, D, k, dims, quick, families), N, k,
                                budgets if not whole_grid else {})
    extra, pruned_more = _measure(more, setting, queries, gt, split, timing, repeats, client,
                                  stream, "refinement")
    rows += extra
    flat, warning = prefix_table(rows, D)
    if warning and stream is not None:
        print(f"[tune] warning: {warning}", file=stream, flush=True)
    result = {"info": {"source": source, "N": N, "D": D, "nq": int(xq.shape[0]),
                       "n_val": int(split["val"].size), "n_test": int(split["test"].size),
                       "k": k, "metric": stated, "search_metric": search_metric,
                       "normalize": bool(normalize), "pca": bool(pca), "dims": dims,
                       "quick": bool(quick), "seed": seed, "n_builds": len(kept) + len(more),
                       "n_refined": len(extra), "pruned_budget": pruned_budget,
                       "pruned_sweep": pruned_sweep + pruned_more, "whole_grid": whole_grid,
                       "timing_queries": int(timing.size), "repeats": repeats,
                       "time_tolerance": choose.TIME_TOLERANCE, "wall_s": 0.0,
                       "where": where or "in-process, serial", "inputs": inputs or {}},
              "budgets": budgets, "rows": rows, "prefix_recall": flat, "warning": warning,
              "export": None if export is None else os.path.abspath(export),
              "out": os.path.abspath(out),
              "split": {name: idx.tolist() for name, idx in split.items()}}
    result["info"]["wall_s"] = time.perf_counter() - t_start
    return _choose_write_export(result, out, setting, stream)


def _choose_write_export(result, out, setting, stream):
    """Choose under result["budgets"], write the three reports, then export (if asked and
    possible), then raise BudgetError if a budget was not met."""
    rows, budgets = result["rows"], result["budgets"]
    chosen, failed = choose.per_budget(rows, budgets)
    overall, why = choose.overall(rows, budgets)
    result.update(chosen=chosen, overall=overall, overall_rule=choose.rule(budgets),
                  failed=dict(failed, **({"overall": why} if why else {})))
    report.write_json(os.path.join(out, "tune.json"), result)
    atomic_write_text(os.path.join(out, "tune.md"), report.markdown(result))
    report.plot(os.path.join(out, "pareto.png"), result)
    if result["failed"]:
        raise BudgetError("; ".join(result["failed"].values()) + f" (reports written to {out})",
                          result)
    if result["export"] is not None:
        phase = Phase("export", 1, stream)
        export_faiss(setting, overall, result["export"])
        phase.step(1, overall["config"])
        phase.done(f"{overall['config']} -> {result['export']}")
    return result


def export_faiss(setting, config, path):
    """Rebuild `config` (a row) and write its faiss form (the object tune timed) to path."""
    from ..faiss_bridge import import_faiss
    faiss = import_faiss()
    form = measure.export_searcher(setting, config).faiss_form(config["sweep"])
    index = measure.served(setting, form)
    atomic_write(path, lambda tmp: faiss.write_index(index, tmp), suffix=".faiss")
    return index


def rechoose(out, budgets, export=None, progress=True):
    """Choose again from OUT/tune.json under new budgets, without building anything; rewrite the
    reports; with `export`, rebuild only the chosen index from the recorded inputs."""
    stream = sys.stderr if progress is True else progress
    path = os.path.join(out, "tune.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--rechoose {out}: no tune.json there; run tune first")
    with open(path) as f:
        result = json.load(f)
    info = result["info"]
    inputs = info.get("inputs", {})
    result["budgets"] = check_budgets(budgets)
    result["export"] = None if export is None else os.path.abspath(export)
    setting = None
    if export is not None:
        if not inputs:
            raise ValueError(f"--export: {path} was written by tune() on arrays, not files; "
                             f"it records no input to rebuild the index from")
        data.check_outputs({f"--{n}": p for n, p in inputs.items() if n != "embedded"},
                           {"--export": export})
        if stream is not None:
            print(f"[tune] --rechoose: rebuilding only the chosen index from "
                  f"{inputs.get('base') or inputs.get('hdf5') or 'the embedded set'}",
                  file=stream, flush=True)
        xb, _, _, _, _, _ = load_inputs(inputs.get("base"), inputs.get("queries"),
                                        inputs.get("hdf5"), info["k"], out, info["seed"])
        rotation = None
        if info.get("pca"):
            rotation = data.fit_pca(xb, centre=info["search_metric"] == "l2" and
                                    not info["normalize"])
            xb = data.apply_pca(xb, *rotation[:2])
        setting = measure.Setting(xb, info["search_metric"], info["normalize"], info["k"],
                                  info["seed"], info["quick"], rotation)
    return _choose_write_export(result, out, setting, stream)
