"""Figures of the reproduction, one function per experiment, each from that experiment's rows.

Every figure is a PNG written atomically with the stage's config hash in its "Comment" text
chunk. Each function receives its stage's tables (rows per seed) and plots the mean over seeds
(`rows.seed_mean`; error bars = sd over seeds where shown). Styles follow the papers: MRL
Fig. 2/3 (accuracy vs dims on a log2 axis), AdANNS Fig. 2 (accuracy vs MFLOPs/query with the
Pareto front of each method).
"""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from adanns_ref.core.persist import atomic_write
from adanns_ref.evaluation.select import pareto_front

from .rows import seed_mean  # noqa: E402

COLORS = {"MRL": "tab:blue", "MRL-E": "tab:green", "FF": "tab:red", "SVD": "tab:olive",
          "RP": "tab:gray",
          "AdANNS-IVF": "tab:blue", "MR-IVF": "tab:orange", "FF-IVF": "tab:red",
          "AdANNS-IVF-D": "tab:purple", "AdANNS-OPQ": "tab:blue", "MR-OPQ": "tab:orange",
          "FF-OPQ": "tab:red", "AdANNS-IVFOPQ": "tab:cyan", "FF-IVFOPQ": "tab:brown",
          "PQ+rerank": "tab:green", "single-shot": "tab:red", "adaptive": "tab:blue",
          "funnel": "tab:green"}


def announce_zooms(fig):
    """Every percent axis whose range is not the whole 0-100 % says so in its label: "zoomed to
    a-b %" (a tight automatic range is a zoom too)."""
    for ax in fig.axes:
        fmt = ax.yaxis.get_major_formatter()
        if not isinstance(fmt, matplotlib.ticker.PercentFormatter):
            continue
        lo, hi = ax.get_ylim()
        if lo > 0.005 or hi < 0.995:
            ax.set_ylabel(f"{ax.get_ylabel()}\n(axis zoomed to {100 * lo:.1f}-{100 * hi:.1f} %)")


def save_figure(fig, path, config_hash):
    announce_zooms(fig)

    def write(tmp):
        fig.savefig(tmp, dpi=110, format="png",
                    metadata={"Comment": f"config_hash={config_hash}"})
    atomic_write(path, write, suffix=".png")
    plt.close(fig)


def _log2_dims(ax, dims):
    ax.set_xscale("log", base=2)
    ax.set_xticks(dims)
    ax.set_xticklabels([f"{d:g}" for d in dims])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def _log_x(ax):
    """Log x axis with plain labels at 1, 2, 5 x 10^k (a short range still gets several ticks;
    matplotlib's minor labels would overlap)."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def _pct_axis(ax, label):
    ax.set_ylabel(label)
    # decimals=None: as many decimals as the axis range needs (86.0% vs 86.5% on tight ranges)
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=None))
    ax.grid(True, alpha=0.3)


def fig_dims(tables, path, config_hash, title):
    """Exp. 1: linear top-1, 1-NN top-1, mAP@10 and 10-recall@10 vs representation size (log2),
    mean ± sd over seeds; SVD and random projection (RP) of FF-D as MRL Fig. 2's baselines."""
    rows = seed_mean(tables["exp1_dims"], key=("model", "dim"),
                     metrics=("linear_top1", "knn_top1", "map10", "recall10"))
    dims = sorted({r["dim"] for r in rows})
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.4), layout="constrained")
    panels = (("linear_top1", "linear top-1"), ("knn_top1", "1-NN top-1 (secondary)"),
              ("map10", "mAP@10"), ("recall10", "10-recall@10 vs exact search at full D"))
    for ax, (metric, label) in zip(axes.ravel(), panels):
        for model, marker in (("MRL", "o"), ("MRL-E", "s"), ("FF", "^"), ("SVD", "v"), ("RP", "x")):
            pts = sorted((r["dim"], r[metric], r.get(metric + "_sd", 0.0)) for r in rows
                         if r["model"] == model and r.get(metric) is not None)
            for i, run in enumerate(trained_runs(pts, dims)):
                ax.errorbar([p[0] for p in run], [p[1] for p in run], yerr=[p[2] for p in run],
                            marker=marker, color=COLORS[model], label=None if i else model, capsize=3)
        _log2_dims(ax, dims)
        ax.set_xlabel("representation size d (log2)")
        _pct_axis(ax, label)
        ax.set_title(label)
        ax.legend(fontsize=8)
    fig.suptitle(title + " (mean ± sd over seeds)")
    save_figure(fig, path, config_hash)


def trained_runs(pts, dims):
    """pts (sorted by dim) split where a size of `dims` between two of them was never trained /
    computed, so that no line is drawn across it."""
    runs, pos = [], {d: i for i, d in enumerate(dims)}
    for p in pts:
        if runs and pos[p[0]] == pos[runs[-1][-1][0]] + 1:
            runs[-1].append(p)
        else:
            runs.append([p])
    return runs


def fig_adaptive_classification(tables, path, config_hash, title):
    """Exp. 2: cascade accuracy vs expected dim (one star per cascade), against fixed-size MRL
    and FF (means over seeds)."""
    rows = seed_mean(tables["exp2_adaptive_cls"])
    fig, ax = plt.subplots(figsize=(8.5, 4.8), layout="constrained")
    for method, style in (("FF", dict(marker="^", linestyle="--")),
                          ("MRL fixed", dict(marker="o", linestyle=":")),
                          ("MRL adaptive", dict(marker="*", linestyle="none", markersize=11))):
        pts = sorted((r["expected_dim"], r["top1"]) for r in rows if r["method"] == method)
        color = {"FF": COLORS["FF"], "MRL fixed": "gray", "MRL adaptive": COLORS["MRL"]}[method]
        # FF only at the sizes trained: no line across a size without a model
        runs = trained_runs(pts, dims_of(rows)) if method == "FF" else [pts] if pts else []
        for i, run in enumerate(runs):
            ax.plot(*zip(*run), color=color, label=None if i else method, **style)
    full = [r for r in rows if r["method"] == "MRL adaptive" and r["config"].endswith(f"{dims_of(rows)}")]
    for r in full:   # the paper's cascade: every nesting size
        ax.annotate("cascade over every size", (r["expected_dim"], r["top1"]), textcoords="offset points",
                    xytext=(6, -12), fontsize=8)
    best = max(r["top1"] for r in rows)
    ff = [r["top1"] for r in rows if r["method"] == "FF"]
    # zoomed on the cascades, but never past the best FF model (its point would vanish)
    ax.set_ylim(min([best - ADAPTIVE_ZOOM] + [max(ff) - 0.01] * bool(ff)), best + 0.005)
    dims = sorted({r["expected_dim"] for r in rows if r["method"] == "FF"})
    if dims:
        _log2_dims(ax, dims)
    ax.set_xlabel("expected representation size (log2)")
    _pct_axis(ax, "linear top-1 (cross-fitted, all queries)")
    ax.legend(loc="lower right")
    ax.set_title(title, fontsize=10)
    save_figure(fig, path, config_hash)


ADAPTIVE_ZOOM = 0.04


def dims_of(rows):
    """The nesting list as exp. 2 prints it, e.g. [2, 4, 8]."""
    return sorted({int(r["max_dim"]) for r in rows if r["method"] == "MRL fixed"})


def fig_retrieval(tables, path, config_hash, title):
    """Exp. 3: 10-recall@10 and mAP@10 vs MFLOPs/query, and mAP@10 vs measured ms/query, for
    single-shot, adaptive (shortlist dim x re-rank dim) and funnels (means over seeds, error
    bars: sd over seeds)."""
    rows = seed_mean(tables["exp3_retrieval"])
    fig, axes = plt.subplots(1, 3, figsize=(18, 4.8), layout="constrained")
    panels = (("mflops", "recall10", "10-recall@10 vs exact search at full D"),
              ("mflops", "map10", "mAP@10"), ("ms_per_query", "map10", "mAP@10"))
    for ax, (x, metric, label) in zip(axes, panels):
        def draw(pts, fmt, **kw):
            if pts:
                ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts],
                            fmt=fmt, capsize=2, **kw)
        single = [(r[x], r[metric], r.get(metric + "_sd", 0.0), r["d_rerank"]) for r in
                  sorted(rows, key=lambda r: r["d_rerank"]) if r["method"] == "single-shot"]  # in d order
        draw(single, "-^", color=COLORS["single-shot"], label="single-shot exact at d")
        for px, py, _, d in single:
            ax.annotate(str(d), (px, py), textcoords="offset points", xytext=(3, -10), fontsize=7)
        ada = [r for r in rows if r["method"] == "adaptive"]
        shortlist_dims = sorted({r["d_shortlist"] for r in ada})
        cmap = plt.get_cmap("viridis")
        for i, ds in enumerate(shortlist_dims):
            draw(sorted((r[x], r[metric], r.get(metric + "_sd", 0.0)) for r in ada if r["d_shortlist"] == ds),
                 "o", color=cmap(i / max(len(shortlist_dims) - 1, 1)), alpha=0.8,
                 label=f"adaptive, shortlist at d={ds}")
        draw(sorted((r[x], r[metric], r.get(metric + "_sd", 0.0)) for r in rows if r["method"] == "funnel"),
             "D", color=COLORS["funnel"], markersize=8, markerfacecolor="none", label="funnel")
        _log_x(ax)
        ax.set_xlabel("MFLOPs / query (log)" if x == "mflops" else "measured ms / query (log; not judged)")
        _pct_axis(ax, label)
        if metric == "map10":  # single-shot at the smallest dims would flatten everything else
            best = max(r["map10"] for r in rows)
            ax.set_ylim(best - RETRIEVAL_MAP_ZOOM, best + 0.01)
        ax.set_title(f"{label} vs {'compute' if x == 'mflops' else 'measured wall time'}")
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(title + " (means over seeds, error bars: sd over seeds)")
    save_figure(fig, path, config_hash)


FRONT_STYLE = {"AdANNS-IVF": dict(linestyle="-", marker="o", linewidth=2.2),
               "MR-IVF": dict(linestyle="--", marker="s", linewidth=1.4),
               "FF-IVF": dict(linestyle="-", marker="^", linewidth=1.6),
               "AdANNS-IVF-D": dict(linestyle=":", marker="D", linewidth=1.6)}
for _ivf, _graph in zip(("AdANNS-IVF", "MR-IVF", "FF-IVF", "AdANNS-IVF-D"),
                        ("AdANNS-HNSW", "MR-HNSW", "FF-HNSW", "AdANNS-HNSW-D")):
    COLORS[_graph], FRONT_STYLE[_graph] = COLORS[_ivf], FRONT_STYLE[_ivf]


def _fronts(ax, rows, x, y, methods):
    for method in methods:
        pts = [r for r in rows if r["method"] == method and r.get(x) is not None]
        if not pts:
            continue
        if not method.startswith("MR-"):  # MR rows are a subset of the AdANNS cloud
            ax.scatter([r[x] for r in pts], [r[y] for r in pts], s=7, alpha=0.2,
                       color=COLORS[method])
        front = pareto_front(pts, x=x, y=y)
        ax.errorbar([r[x] for r in front], [r[y] for r in front],
                    yerr=[r.get(y + "_sd", 0.0) for r in front], markersize=4, capsize=2,
                    color=COLORS[method], label=f"{method} (Pareto front ± sd over seeds)",
                    **FRONT_STYLE[method])


def _zoom(ax, rows, y, methods, lines=()):
    """y range: the IVF_ZOOM below the best value of any method or reference line (cheap,
    useless configurations fall below); recall is shown whole (at D = 2048 most configurations
    sit at 40-70 % recall, and the zoom left only the top of one front on the panel)."""
    if y == "recall10":
        ax.set_ylim(0.0, 1.01)
        return
    top = max([r[y] for r in rows if r["method"] in methods] + list(lines))
    ax.set_ylim(max(0.0, top - IVF_ZOOM), min(1.0, top) + 0.01)


RETRIEVAL_MAP_ZOOM = 0.15
IVF_ZOOM = 0.3  # exp. 4 shows the top 30 points of each metric, where the methods differ


def fig_ivf(tables, path, config_hash, title):
    """Exp. 4 (AdANNS Fig. 2): 10-recall@10, mAP@10 and 1-NN top-1 vs MFLOPs/query, and mAP@10 vs
    measured ms/query, Pareto fronts of the means over seeds; the top-1 panel shows the exact
    search ceiling and the majority-label-of-probed-lists baseline (best over nprobe per nlist)."""
    rows = seed_mean(tables["exp4_ivf"])
    base = seed_mean(tables.get("exp4_baselines", []), key=("baseline", "nlist", "nprobe", "d_c"),
                     metrics=("top1", "map10"))
    methods = ("AdANNS-IVF", "MR-IVF", "FF-IVF", "AdANNS-IVF-D")
    fig, axes = plt.subplots(2, 2, figsize=(13, 9), layout="constrained")
    panels = (("mflops", "recall10", "10-recall@10 vs exact at full D"), ("mflops", "map10", "mAP@10"),
              ("mflops", "top1", "1-NN top-1 (secondary)"), ("ms_per_query", "map10", "mAP@10"))
    for ax, (x, y, label) in zip(axes.ravel(), panels):
        sub = [r for r in rows if r.get(y) is not None]
        if y == "recall10":   # FF-IVF recall is against FF-d itself, not comparable
            sub = [r for r in sub if r["method"] != "FF-IVF"]
        _fronts(ax, sub, x, y, methods)
        _log_x(ax)
        ax.set_xlabel("MFLOPs / query (log)" if x == "mflops" else "measured ms / query (log)")
        _zoom(ax, sub, y, methods, [b["top1"] for b in base] if y == "top1" else ())
        _pct_axis(ax, label)
        ax.set_title(f"{label} vs {'compute' if x == 'mflops' else 'measured wall time'}")
        if y == "top1" and base:
            ceiling = [b["top1"] for b in base if b["nlist"] is None]
            if ceiling:
                ax.axhline(ceiling[0], color="black", linestyle="-.", linewidth=1,
                           label=f"exact search at full D ({100 * ceiling[0]:.1f}%)")
            for nlist, style in zip(sorted({b["nlist"] for b in base if b["nlist"] is not None}),
                                    (":", "--", "-")):
                best = max(b["top1"] for b in base if b["nlist"] == nlist)
                ax.axhline(best, color="tab:brown", linestyle=style, linewidth=1,
                           label=f"majority label of probed lists, nlist {nlist} ({100 * best:.1f}%)")
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(title + " (means over seeds; dots: all configurations)")
    save_figure(fig, path, config_hash)


def fig_hnsw(tables, path, config_hash, title):
    """Exp. 7: 10-recall@10 (vs exact search at full D on MR; FF-HNSW left out, its reference is
    FF-d itself), mAP@10 and 1-NN top-1 vs MFLOPs/query, and mAP@10 vs measured ms/query;
    Pareto fronts of the means over seeds."""
    rows = seed_mean(tables["exp7_hnsw"])
    methods = ("AdANNS-HNSW", "MR-HNSW", "FF-HNSW", "AdANNS-HNSW-D")
    fig, axes = plt.subplots(2, 2, figsize=(13, 9), layout="constrained")
    panels = (("mflops", "recall10", "10-recall@10 vs exact at full D"), ("mflops", "map10", "mAP@10"),
              ("mflops", "top1", "1-NN top-1 (secondary)"), ("ms_per_query", "map10", "mAP@10"))
    for ax, (x, y, label) in zip(axes.ravel(), panels):
        sub = [r for r in rows if r.get(y) is not None and (y != "recall10" or r["method"] != "FF-HNSW")]
        _fronts(ax, sub, x, y, methods)
        _log_x(ax)
        ax.set_xlabel("MFLOPs / query (log)" if x == "mflops" else "measured ms / query (log)")
        _zoom(ax, sub, y, methods)
        _pct_axis(ax, label)
        ax.set_title(f"{label} vs {'compute' if x == 'mflops' else 'measured wall time'}")
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(title + " (means over seeds; dots: all configurations)")
    save_figure(fig, path, config_hash)


def select_per_budget(rows, method):
    """{M: row} of `method` with the best half-A mAP@10 per byte budget (ties: smaller d)."""
    best = {}
    for r in rows:
        if r["method"] == method and (r["M"] not in best or
                                      (r["map10_val"], -r["d"]) > (best[r["M"]]["map10_val"], -best[r["M"]]["d"])):
            best[r["M"]] = r
    return best


def fig_opq(tables, path, config_hash, title):
    """Exp. 5: mAP@10 and 10-recall@10 (half B) vs bytes/vector for AdANNS-OPQ (d chosen on half
    A, label = d), OPQ on rigid FF-D and full MR, IVFOPQ and PQ-then-re-rank; faint dots: every
    prefix d. Means over seeds."""
    rows = seed_mean(tables["exp5_opq"])
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), layout="constrained")
    budgets = sorted({r["M"] for r in rows})
    for ax, metric, label in zip(axes, ("map10_test", "recall10_test"),
                                 ("mAP@10 (half B)", "10-recall@10 vs exact at full D (half B)")):
        cand = [r for r in rows if r["method"] == "AdANNS-OPQ"]
        if cand:
            ax.scatter([r["M"] for r in cand], [r[metric] for r in cand], s=12, alpha=0.3,
                       color=COLORS["AdANNS-OPQ"], label="MR prefix d (all candidates)")
        for method, marker in (("AdANNS-OPQ", "o"), ("MR-OPQ", "s"), ("FF-OPQ", "^"),
                               ("AdANNS-IVFOPQ", "P"), ("FF-IVFOPQ", "X"), ("PQ+rerank", "D")):
            sel = sorted((m, r[metric], r["d"], r.get(metric + "_sd", 0.0))
                         for m, r in select_per_budget(rows, method).items())
            if not sel:
                continue
            ref = "" if metric != "recall10_test" else (" (recall vs FF-D)" if method.startswith("FF")
                                                         else " (recall vs MR-D)")
            ax.errorbar([s_[0] for s_ in sel], [s_[1] for s_ in sel], yerr=[s_[3] for s_ in sel],
                        marker=marker, color=COLORS[method], label=method + ref, capsize=2)
            if method == "AdANNS-OPQ":
                for m, y, d, _ in sel:
                    ax.annotate(f"d={d}", (m, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        if budgets:
            _log2_dims(ax, budgets)
        ax.set_xlabel("bytes / vector M (log2)")
        _pct_axis(ax, label)
        ax.set_title(label)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    save_figure(fig, path, config_hash)


def fig_budget(tables, path, config_hash, title):
    """Exp. 6: mAP@10 of the configuration chosen on half A, per budget."""
    rows = tables["exp6_budget"]
    ons = sorted({r["on"] for r in rows})
    n = max(len(ons), 1)
    fig, axes = plt.subplots(1, n, figsize=(6.5 * n, 4.5), squeeze=False, layout="constrained")
    for ax, on in zip(axes[0], ons):
        pts = sorted((r["budget"], r["val_map10"], r["test_map10"], r["oracle_test_map10"])
                     for r in rows if r["on"] == on and r["test_map10"] is not None)
        if pts:
            b = [p[0] for p in pts]
            ax.plot(b, [p[1] for p in pts], "o--", color="tab:gray", label="chosen on half A: A mAP@10")
            ax.plot(b, [p[2] for p in pts], "o-", color="tab:blue", label="chosen on half A: B mAP@10")
            ax.plot(b, [p[3] for p in pts], "x:", color="tab:red", label="best on B (oracle)")
        if on == "bytes":
            _log2_dims(ax, sorted({p[0] for p in pts}))
        else:
            _log_x(ax)
        ax.set_xlabel({"mflops": "MFLOPs / query budget (log)", "bytes": "bytes / vector budget (log2)"}.get(on, on))
        _pct_axis(ax, "mAP@10")
        ax.legend(fontsize=8)
        ax.set_title({"mflops": "budget on MFLOPs / query", "bytes": "budget on bytes / vector"}.get(on, on))
    fig.suptitle(title)
    save_figure(fig, path, config_hash)


# experiment table name -> (figure function, title); also the order of the report's sections
QUANT_MARKERS = {"binary": "o", "4bit": "v", "int8": "s", "float": "^"}


def fig_quant(tables, path, config_hash, title):
    """Exp. 8: 10-recall@10 (vs exact float at full D) against bytes/vector (log2) and against
    measured ms/query (log), one line per precision over the MR prefixes d, the same precisions
    on rigid FF-D (crosses, recall against FF-D) and binary funnels (binary@d -> float@D re-rank,
    plotted at the binary bytes they scan). Means over seeds."""
    rows = seed_mean(tables["exp8_quant"])
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), layout="constrained")
    colors = {"binary": "tab:red", "4bit": "tab:orange", "int8": "tab:green", "float": "tab:blue"}
    for ax, x, xlabel in zip(axes, ("bytes", "ms_per_query"),
                             ("bytes / vector (log2)", "measured ms / query (log)")):
        for p, marker in QUANT_MARKERS.items():
            line = [(r[x], r["recall10"], r["d"], r.get("recall10_sd", 0.0))
                    for r in sorted(rows, key=lambda r: r["d"])
                    if r["method"] == "MR-prefix" and r["precision"] == p]   # in d order
            if line:
                ax.errorbar([t[0] for t in line], [t[1] for t in line], yerr=[t[3] for t in line],
                            marker=marker, color=colors[p], label=f"MR prefix, {p}", capsize=2)
                for bx, y, d, _ in line:
                    ax.annotate(f"{d}", (bx, y), textcoords="offset points", xytext=(3, 3), fontsize=6)
            ff = [r for r in rows if r["method"] == f"FF-{p}"]
            if ff:
                ax.scatter([r[x] for r in ff], [r["recall10"] for r in ff], marker="x", s=60,
                           color=colors[p], label=f"FF-D, {p} (recall vs FF-D)")
        overs = sorted({r["oversample"] for r in rows if r["method"] == "binary-funnel"})
        for o, color in zip(overs, ("tab:purple", "tab:brown", "tab:gray", "tab:pink")):
            fn = [(r[x], r["recall10"], r.get("recall10_sd", 0.0)) for r in sorted(rows, key=lambda r: r["d"])
                  if r["method"] == "binary-funnel" and r["oversample"] == o]
            ax.errorbar([t[0] for t in fn], [t[1] for t in fn], yerr=[t[2] for t in fn], capsize=2,
                        linestyle="--", marker=".", color=color,
                    label=f"binary@d -> float@D, oversample {o:g}" +
                    (" (x: binary bytes scanned; float@D kept too)" if x == "bytes" else ""))
        ax.set_xscale("log", base=2 if x == "bytes" else 10)
        ax.set_xlabel(xlabel)
        _pct_axis(ax, "10-recall@10 vs exact float at full D")
        ax.legend(fontsize=7)
    ran = [p for p in QUANT_MARKERS if any(r.get("precision") == p for r in rows)]
    head, _, tail = title.partition(" - ")
    fig.suptitle(f"{head} ({' / '.join(ran)})" + (f" - {tail}" if tail else "") +
                 " (means over seeds, error bars: sd over seeds)")
    save_figure(fig, path, config_hash)


FIGURES = {
    "exp1_dims": (fig_dims, "MRL vs MRL-E vs FF per representation size"),
    "exp2_adaptive_cls": (fig_adaptive_classification, "adaptive classification (MRL cascade)"),
    "exp3_retrieval": (fig_retrieval, "adaptive retrieval and funnels vs single-shot search"),
    "exp4_ivf": (fig_ivf, "AdANNS-IVF vs rigid IVF"),
    "exp5_opq": (fig_opq, "AdANNS-OPQ vs rigid OPQ"),
    "exp6_budget": (fig_budget, "compute-aware selection (half A -> half B)"),
    "exp7_hnsw": (fig_hnsw, "AdANNS-HNSW vs rigid HNSW"),
    "exp8_quant": (fig_quant, "quantized Matryoshka prefixes"),   # + the precisions that ran
}
