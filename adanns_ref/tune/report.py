"""The outputs of `tune`: DIR/tune.json (every row), DIR/tune.md (the metric, the prefix table,
the choices, a serving snippet that runs as written, Pareto tables) and DIR/pareto.png (recall
vs ms/query and vs bytes/vector, with the budget lines). ``peak_mb`` is the numpy heap peak of
the build it belongs to (tracemalloc).

Pareto fronts (`select.pareto_front`) are taken on the validation recall; tables print the test
recall beside it, which is the number to quote. ms columns are the faiss form's
(`latency`); ``numba_ms_1t`` is this project's numba search, for reference.
"""
import json
import math
import os

from ..core.persist import atomic_write, atomic_write_text
from ..evaluation.select import pareto_front

FAMILY_NAMES = {"flat": "Flat (prefix)", "funnel": "Funnel", "ivf": "IVF / AdANNS-IVF",
                "pq": "AdANNS-OPQ", "ivfpq": "IVFOPQ", "sq": "SQ (8bit / fp16)",
                "sqfunnel": "SQ8 funnel", "hnsw": "HNSW / AdANNS-HNSW"}
COLORS = {"flat": "tab:red", "funnel": "tab:green", "ivf": "tab:blue", "pq": "tab:orange",
          "ivfpq": "tab:purple", "sq": "tab:brown", "sqfunnel": "tab:olive", "hnsw": "tab:pink"}
BUDGET_LABELS = {"ms": "--budget-ms {:g}", "mflops": "--budget-mflops {:g}",
                 "bytes": "--budget-bytes {:g}", "recall": "--min-recall {:g}"}
COLUMNS = ("config", "recall_val", "recall_test", "ms_1t", "ms_1t_min", "ms_1t_max", "ms_1t_q1",
           "ms_all", "numba_ms_1t", "mflops", "bytes", "build_s", "peak_mb")


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.3e}"
    return str(v)


def _table(rows, columns=COLUMNS):
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def public_row(row):
    """A row as written to tune.json (plain JSON types)."""
    return {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in row.items()}


def write_json(path, result):
    atomic_write_text(path, json.dumps(result, indent=1, sort_keys=True, default=int) + "\n")


def _load_queries(inputs, out):
    """Python lines that read the user's query file as it is, into float32 xq."""
    if "hdf5" in inputs:
        return ["import h5py", f"with h5py.File({inputs['hdf5']!r}, 'r') as f:",
                "    xq = np.ascontiguousarray(f['test'][:], dtype=np.float32)"]
    path = inputs.get("queries") or (os.path.abspath(os.path.join(out, "queries.npy"))
                                     if inputs.get("embedded") else None)
    if path is None:
        return ["xq = ...  # your (nq, D) float32 queries: tune ran on in-memory arrays"]
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        return [f"xq = np.ascontiguousarray(np.load({path!r}), dtype=np.float32)"]
    if ext == ".fbin":
        return [f"n, d = np.fromfile({path!r}, dtype=np.uint32, count=2)",
                f"xq = np.fromfile({path!r}, dtype=np.float32, offset=8).reshape(int(n), int(d))"]
    if ext == ".fvecs":
        return [f"raw = np.fromfile({path!r}, dtype=np.int32)",
                "xq = np.ascontiguousarray(raw.reshape(-1, raw[0] + 1)[:, 1:].view(np.float32))"]
    return ["from adanns_ref.io import load_vectors",
            f"xq = np.ascontiguousarray(load_vectors({path!r}), dtype=np.float32)"]


def _set_params(row, k):
    """Lines that set the tuned search-time parameter on the loaded index (already stored in the
    file; these lines show how to change it)."""
    f, s = row["family"], row["sweep"]
    if f in ("ivf", "ivfpq"):
        return ["# nprobe (stored in the file; set it here to change it):",
                "inner = index",
                "while isinstance(inner, faiss.IndexPreTransform):",
                "    inner = faiss.downcast_index(inner.index)",
                "if isinstance(inner, faiss.IndexIVFIndependentQuantizer):  # AdANNS-IVF",
                "    inner = faiss.downcast_index(inner.index_ivf)",
                f"faiss.extract_index_ivf(inner).nprobe = {s['nprobe']}"]
    if f == "hnsw":
        return ["# efSearch (stored in the file; set it here to change it):",
                f"faiss.ParameterSpace().set_index_parameter(index, 'efSearch', {s['ef_search']})"]
    if f in ("funnel", "sqfunnel"):
        return [f"# shortlist k0 = {s['k0']} = k * k_factor (stored in the file):",
                f"faiss.ParameterSpace().set_index_parameter(index, 'k_factor_rf', {s['k0'] / k!r})"]
    return ["# no search-time parameter: this index always scans the same way"]


def snippet(result):
    """The serving snippet (runs as written when tune read files and exported)."""
    info, row = result["info"], result["overall"]
    path = result.get("export") or os.path.abspath("index.faiss")
    k = info["k"]
    dist = {"l2": "squared L2", "ip": "inner product",
            "cosine": "squared L2 between unit vectors (2 - 2 cos; same ranking as cosine)"
            if info["search_metric"] == "l2" else "inner product of unit vectors (cosine)"}
    lines = ["```python", "import faiss", "import numpy as np", "",
             f"index = faiss.read_index({path!r})  # {row['config']}"]
    lines += _set_params(row, k)
    lines += ["faiss.omp_set_num_threads(1)  # the setting of column ms_1t; drop for all threads"]
    lines += _load_queries(info.get("inputs", {}), result.get("out", "."))
    lines += ["# raw D-dim queries: " + ("PCA, " if info.get("pca") else "") +
              "normalisation and prefixes are inside the index",
              f"D, I = index.search(xq, {k})  # D: {dist[info['metric']]}; I: base row ids",
              f"# expected {k}-recall@{k} on held-out queries: {row['recall_test']:.4f}",
              "print(I[:5])", "```"]
    return "\n".join(lines)


def _where(info):
    """Where the builds ran; on Dask, why its ms are not those of a quiet serial run."""
    where = info.get("where", "in-process, serial")
    if where.startswith("in-process"):
        return f"Run {where}."
    return (f"Run on {where}: one task per index build. Recall, MFLOPs and bytes are those of a "
            f"serial run; ms/query were measured on workers sharing their machines with other "
            f"tasks and are not comparable with a quiet serial run (nor is a choice that reads "
            f"ms).")


def _chosen_line(label, row):
    return (f"| {label} | {row['config']} | {_fmt(row['recall_val'])} | {_fmt(row['recall_test'])} "
            f"| {_fmt(row['ms_1t'])} [{_fmt(row['ms_1t_min'])}, {_fmt(row['ms_1t_max'])}] | "
            f"{_fmt(row['numba_ms_1t'])} | {_fmt(row['mflops'])} | {row['bytes']:.1f} |")


def markdown(result):
    rows, info = result["rows"], result["info"]
    chosen, overall = result["chosen"], result["overall"]
    norm = "yes (unit vectors, each prefix re-normalised)" if info["normalize"] else "no"
    out = [f"# tune: {info['source']}", "",
           f"**Metric: {info['metric']}** (searched as {info['search_metric']}); "
           f"**normalisation: {norm}**; PCA rotation: {'yes' if info.get('pca') else 'no'}.", "",
           f"N = {info['N']}, D = {info['D']}, {info['nq']} queries ({info['n_val']} validation, "
           f"{info['n_test']} test), k = {info['k']}, dims {info['dims']}, quick: {info['quick']}.",
           f"{len(rows)} configurations measured over {info['n_builds']} index builds "
           f"({info.get('n_refined', 0)} of them from the refinement around the front); "
           f"{info['pruned_budget']} pruned by the budgets before building, "
           f"{info['pruned_sweep']} by the sweeps (recall already 1.0). "
           f"Wall time {info['wall_s']:.1f} s. Configurations are chosen on the validation "
           f"queries; `recall_test` is the held-out number to quote. Recall is k-recall@k of the "
           f"exported faiss index against exact {info['metric']} search at full D.", "",
           f"**ms/query are the faiss index's** (the file `--export` writes): median over "
           f"{info['repeats']} passes after a warm-up on a fixed sample of "
           f"{info['timing_queries']} queries" +
           (" (all the queries there are)" if info["timing_queries"] < 500 else "") +
           f"; `ms_1t` one thread, one batch call ([min, max] beside it), `ms_1t_q1` one query "
           f"per call, `ms_all` all threads. `numba_ms_1t` is this project's numba search, for "
           f"reference only. Choosing \"the fastest\" takes, among the rows within "
           f"{100 * info['time_tolerance']:.0f} % of the fastest median, the least MFLOPs "
           f"(then bytes, then name), so two runs choose the same row despite timing noise.", "",
           _where(info), ""]
    if result.get("warning"):
        out += [f"**Warning: {result['warning']}.**", ""]
    out += ["## Flat search at each prefix size", "", "| d | recall_val | recall_test |",
            "|---|---|---|"]
    out += [f"| {d} | {rv:.4f} | {rt:.4f} |" for d, rv, rt in result.get("prefix_recall", [])]
    out += ["", "## Chosen", "",
            "| budget | configuration | recall_val | recall_test | ms_1t (faiss) [min, max] | "
            "numba_ms_1t | mflops | bytes |", "|---|---|---|---|---|---|---|---|"]
    for name, row in chosen.items():
        out.append(_chosen_line(BUDGET_LABELS[name].format(result["budgets"][name]), row))
    if overall is not None:
        out.append(_chosen_line(f"**overall ({result['overall_rule']})**", overall))
    if result.get("failed"):
        out += ["", "**No configuration meets:**", ""]
        out += [f"- {msg}" for msg in result["failed"].values()]
        out += ["", "Choose again under other budgets without building: `python -m "
                "adanns_ref.tune --rechoose OUT --budget-ms X [--min-recall R] [--export F]`."]
    if overall is not None:
        out += ["", "## Serving the overall choice with faiss", "", snippet(result), ""]
    for x, title in (("ms_1t", "recall vs ms/query (faiss, 1 thread)"),
                     ("bytes", "recall vs bytes/vector"), ("mflops", "recall vs MFLOPs/query")):
        out += ["", f"## Pareto front: {title}", "",
                _table(pareto_front(rows, x=x, y="recall_val")) if rows else "(no rows)"]
    out += ["", "Every row is in `tune.json`.", ""]
    return "\n".join(out)


def marks(result):
    """{config: (row, "label, label")}: one circle and one label per chosen row."""
    marks = {}
    named = dict(result["chosen"])
    if result["overall"] is not None:
        named["overall"] = result["overall"]
    for name, row in named.items():
        prev = marks.get(row["config"])
        marks[row["config"]] = (row, name if prev is None else f"{prev[1]}, {name}")
    return marks


def plot(path, result):
    import matplotlib
    import matplotlib.ticker
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows, budgets = result["rows"], result["budgets"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, x, label, budget in ((axes[0], "ms_1t", "ms / query (faiss, 1 thread)", "ms"),
                                 (axes[1], "bytes", "bytes / vector", "bytes")):
        for family in sorted({r["family"] for r in rows}):
            fam = [r for r in rows if r["family"] == family]
            ax.scatter([r[x] for r in fam], [r["recall_val"] for r in fam], s=9, alpha=0.35,
                       color=COLORS.get(family), label=FAMILY_NAMES.get(family, family))
        if rows:
            front = pareto_front(rows, x=x, y="recall_val")
            ax.step([r[x] for r in front], [r["recall_val"] for r in front], where="post",
                    color="black", lw=1.2, label="Pareto front (validation)")
            ax.set_xscale("log")
        for i, (row, name) in enumerate(sorted(marks(result).values(), key=lambda m: m[0][x])):
            ax.scatter([row[x]], [row["recall_val"]], s=90, facecolors="none",
                       edgecolors="black", lw=1.5)
            ax.annotate(name, (row[x], row["recall_val"]), textcoords="offset points",
                        xytext=(6, -14 - 11 * (i % 3)), fontsize=8,
                        bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8))
        if budgets.get(budget) is not None:
            ax.axvline(budgets[budget], color="tab:red", ls="--", lw=1,
                       label=BUDGET_LABELS[budget].format(budgets[budget]))
        if budgets.get("recall") is not None:
            ax.axhline(budgets["recall"], color="tab:gray", ls=":", lw=1,
                       label=BUDGET_LABELS["recall"].format(budgets["recall"]))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # labels would overlap
        ax.set_xlabel(label)
        ax.set_ylabel(f"k-recall@{result['info']['k']} (validation queries)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    info = result["info"]
    fig.suptitle(f"tune: {info['source']} (N={info['N']}, D={info['D']}, metric {info['metric']})")
    fig.tight_layout()

    def write(tmp):
        fig.savefig(tmp, dpi=100, format="png")
    atomic_write(path, write, suffix=".png")
    plt.close(fig)
