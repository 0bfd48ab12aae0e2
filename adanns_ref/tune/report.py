"""The outputs of `tune`: DIR/tune.json (every row), DIR/tune.md (Pareto tables, the choices,
a serving snippet) and DIR/pareto.png (recall vs ms/query and vs bytes/vector). ``peak_mb`` is
the numpy heap peak of the build it belongs to (tracemalloc).

Pareto fronts (`select.pareto_front`) are taken on the validation recall; tables print the test
recall beside it, which is the number to quote.
"""
import json
import math

from ..core.persist import atomic_write, atomic_write_text
from ..evaluation.select import pareto_front

FAMILY_NAMES = {"flat": "Flat (prefix)", "funnel": "Funnel", "ivf": "IVF / AdANNS-IVF",
                "pq": "AdANNS-OPQ", "ivfpq": "IVFOPQ", "sq": "SQ (8bit / fp16)",
                "sqfunnel": "SQ8 funnel", "hnsw": "HNSW / AdANNS-HNSW"}
COLORS = {"flat": "tab:red", "funnel": "tab:green", "ivf": "tab:blue", "pq": "tab:orange",
          "ivfpq": "tab:purple", "sq": "tab:brown", "sqfunnel": "tab:olive", "hnsw": "tab:pink"}
BUDGET_LABELS = {"ms": "ms/query (1 thread) <= {:g}", "mflops": "MFLOPs/query <= {:g}",
                 "bytes": "bytes/vector <= {:g}", "recall": "recall >= {:g}, fastest"}
COLUMNS = ("config", "recall_val", "recall_test", "ms_1t", "ms_all", "mflops", "bytes", "build_s",
           "peak_mb")


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.3e}"
    return str(v)


def _table(rows, columns=COLUMNS):
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def public_row(row):
    """A row as written to tune.json (plain JSON types)."""
    return {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in row.items()}


def write_json(path, result):
    atomic_write_text(path, json.dumps(result, indent=1, sort_keys=True, default=int) + "\n")


def snippet(export_path, k, chosen):
    p = export_path or "index.faiss"
    return "\n".join([
        "```python",
        "import faiss, numpy as np",
        f"index = faiss.read_index({p!r})  # {chosen['config']}",
        "# faiss.omp_set_num_threads(1)  # the setting of column ms_1t",
        "# full-D float32 queries: the prefix / normalisation transforms are inside the index",
        "xq = np.load('queries.npy').astype(np.float32)",
        f"D, I = index.search(xq, {k})  # I: int64 ids in base order, -1 if fewer than k",
        f"# expected k-recall@{k} on held-out queries: {chosen['recall_test']:.4f}",
        "print(I[:5])",
        "```"])


def _where(info):
    """Where the builds ran; on Dask, why its ms are not those of a quiet serial run."""
    where = info.get("where", "in-process, serial")
    if where.startswith("in-process"):
        return f"Run {where}."
    return (f"Run on {where}: one task per index build. Recall, MFLOPs and bytes are those of a "
            f"serial run; ms/query were measured on workers sharing their machines with other "
            f"tasks and are not comparable with a quiet serial run (nor is a choice that reads "
            f"ms).")


def markdown(result):
    rows, info = result["rows"], result["info"]
    chosen, overall = result["chosen"], result["overall"]
    out = [f"# tune: {info['source']}", "",
           f"N = {info['N']}, D = {info['D']}, {info['nq']} queries ({info['n_val']} validation, "
           f"{info['n_test']} test), k = {info['k']}, metric {info['metric']}, "
           f"normalised prefixes: {info['normalize']}, dims {info['dims']}, quick: {info['quick']}.",
           f"{len(rows)} configurations measured over {info['n_builds']} index builds; "
           f"{info['pruned_budget']} pruned by the budgets before building, "
           f"{info['pruned_sweep']} by the sweeps (recall already 1.0). "
           f"Wall time {info['wall_s']:.1f} s. Configurations are chosen on the validation "
           f"queries; `recall_test` is the held-out number to quote. Recall is k-recall@k "
           f"against exact search at full D; ms are wall times on this machine at the time of "
           f"the run.", "", _where(info), "",
           "## Chosen", "",
           "| budget | configuration | recall_val | recall_test | ms_1t | mflops | bytes |",
           "|---|---|---|---|---|---|---|"]
    for name, row in chosen.items():
        label = BUDGET_LABELS[name].format(result["budgets"][name])
        out.append(f"| {label} | {row['config']} | {_fmt(row['recall_val'])} | "
                   f"{_fmt(row['recall_test'])} | {_fmt(row['ms_1t'])} | {_fmt(row['mflops'])} | "
                   f"{row['bytes']} |")
    out.append(f"| **overall ({result['overall_rule']})** | **{overall['config']}** | "
               f"{_fmt(overall['recall_val'])} | {_fmt(overall['recall_test'])} | "
               f"{_fmt(overall['ms_1t'])} | {_fmt(overall['mflops'])} | {overall['bytes']} |")
    out += ["", "## Serving the overall choice with faiss", "",
            snippet(result.get("export"), info["k"], overall), ""]
    for x, title in (("ms_1t", "recall vs ms/query (1 thread)"), ("bytes", "recall vs bytes/vector"),
                     ("mflops", "recall vs MFLOPs/query")):
        out += [f"## Pareto front: {title}", "", _table(pareto_front(rows, x=x, y="recall_val")), ""]
    out += ["Every row is in `tune.json`.", ""]
    return "\n".join(out)


def plot(path, result):
    import matplotlib
    import matplotlib.ticker
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = result["rows"]
    marks = dict(result["chosen"], overall=result["overall"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, x, label in ((axes[0], "ms_1t", "ms / query (1 thread)"),
                         (axes[1], "bytes", "bytes / vector")):
        for family in sorted({r["family"] for r in rows}):
            fam = [r for r in rows if r["family"] == family]
            ax.scatter([r[x] for r in fam], [r["recall_val"] for r in fam], s=9, alpha=0.35,
                       color=COLORS.get(family), label=FAMILY_NAMES.get(family, family))
        front = pareto_front(rows, x=x, y="recall_val")
        ax.step([r[x] for r in front], [r["recall_val"] for r in front], where="post",
                color="black", lw=1.2, label="Pareto front (validation)")
        for name, row in marks.items():
            ax.scatter([row[x]], [row["recall_val"]], s=90, facecolors="none", edgecolors="black",
                       lw=1.5)
            ax.annotate(name, (row[x], row["recall_val"]), textcoords="offset points",
                        xytext=(5, -12), fontsize=8)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # labels would overlap
        ax.set_xlabel(label)
        ax.set_ylabel(f"k-recall@{result['info']['k']} (validation queries)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"tune: {result['info']['source']} (N={result['info']['N']}, D={result['info']['D']})")
    fig.tight_layout()

    def write(tmp):
        fig.savefig(tmp, dpi=100, format="png")
    atomic_write(path, write, suffix=".png")
    plt.close(fig)
