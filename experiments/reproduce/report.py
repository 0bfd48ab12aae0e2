"""`DIR/report.md`: one section per experiment, the claims table, environment, stage times."""
import os
import platform
import sys

import numpy as np

from adanns_ref.select import pareto_front

from . import claims as claim_rules
from .ann import RERANK_SHORTLIST as RERANK


def fmt_pct(v):
    return "" if v is None else f"{100.0 * v:.2f}"


def fmt_num(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def md_table(rows, columns):
    """columns: list of (key, header, formatter); returns GitHub markdown."""
    out = ["| " + " | ".join(h for _, h, _ in columns) + " |",
           "|" + "|".join("---" for _ in columns) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(f(r.get(k))).replace("|", "/") for k, _, f in columns) + " |")
    return "\n".join(out)


def _installed_version(dist):
    """Version of an optional distribution, or 'not installed' (the main job never needs it)."""
    import importlib.metadata
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def environment():
    """Versions, CPU, thread settings and BLAS, as (key, value) pairs."""
    import matplotlib
    import numba
    import scipy
    from threadpoolctl import threadpool_info

    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    blas = "; ".join(f"{i.get('internal_api')} {i.get('version')} ({i.get('num_threads')} threads, "
                     f"{i.get('architecture', '?')})" for i in threadpool_info())
    env = [("python", sys.version.split()[0]), ("numpy", np.__version__), ("scipy", scipy.__version__),
           ("numba", f"{numba.__version__} ({numba.get_num_threads()} threads)"),
           ("faiss (peer, not used for results)", _installed_version("faiss-cpu")),
           ("matplotlib", matplotlib.__version__), ("platform", platform.platform()),
           ("CPU", f"{cpu}, {os.cpu_count()} logical cores"), ("BLAS (threadpoolctl)", blas)]
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    env.append(("load average (1/5/15 min) at report time", f"{load} (other processes on the "
                "machine inflate the measured ms/query and stage times)"))
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS"):
        if var in os.environ:
            env.append((var, os.environ[var]))
    return env


def _section_dims(t):
    rows = t["exp1_dims"]
    dims = sorted({r["dim"] for r in rows})
    by = {(r["model"], r["dim"]): r for r in rows}
    wide = []
    for d in dims:
        w = {"dim": d}
        for m in ("MRL", "MRL-E", "FF"):
            for metric in ("linear_top1", "knn_top1", "map10"):
                w[f"{m}:{metric}"] = by.get((m, d), {}).get(metric)
        wide.append(w)
    cols = [("dim", "d", fmt_num)]
    for metric, name in (("linear_top1", "linear"), ("knn_top1", "1-NN"), ("map10", "mAP@10")):
        cols += [(f"{m}:{metric}", f"{m} {name}", fmt_pct) for m in ("MRL", "MRL-E", "FF")]
    return ("## 1. MRL vs MRL-E vs FF (per representation size)\n\n"
            "Linear top-1 from each model's own head(s); 1-NN top-1 and mAP@10 on the normalised, "
            "truncated, re-normalised embeddings (database = train, queries = test). All numbers "
            "in %.\n\n" + md_table(wide, cols) +
            "\n\n![MRL vs FF](figures/exp1_dims.png)\n\nFull table: `tables/exp1_dims.csv`.\n")


def _section_adaptive_cls(t):
    rows = t["exp2_adaptive_cls"]
    cols = [("method", "method", str), ("expected_dim", "expected dim", fmt_num),
            ("top1", "top-1 (test half)", fmt_pct), ("target", "threshold rule", str)]
    return ("## 2. Adaptive classification (MRL cascade)\n\n"
            "Per-size softmax-confidence thresholds fitted on the validation half of the test "
            "queries (SPEC §7, `mrl_ref.evaluate.adaptive_classification`), accuracy and expected "
            "dimension measured on the other half, for cascades over prefixes and suffixes of the "
            "nesting list; FF and fixed-size MRL heads on the same half for reference.\n\n" + md_table(rows, cols) +
            "\n\n![adaptive classification](figures/exp2_adaptive_cls.png)\n")


def _section_retrieval(t):
    rows = t["exp3_retrieval"]
    single = sorted((r for r in rows if r["method"] == "single-shot"), key=lambda r: r["mflops"])
    others = [r for r in rows if r["method"] != "single-shot"]
    front = pareto_front(others, x="mflops", y="map10") if others else []
    cols = [("method", "method", str), ("config", "configuration", str),
            ("mflops", "MFLOPs/query", fmt_num), ("top1", "top-1", fmt_pct),
            ("map10", "mAP@10", fmt_pct), ("ms_per_query", "ms/query", fmt_num)]
    return ("## 3. Adaptive retrieval and funnels\n\n"
            "Shortlist by exact search at a small dim, re-rank at a larger dim (cost model "
            "`adanns_ref.cost.funnel_flops`: d_0 N + sum k_i r_i). Single-shot exact search at each "
            "dim:\n\n" + md_table(single, cols) +
            "\n\nAdaptive/funnel configurations on the mAP@10-vs-MFLOPs Pareto front:\n\n" +
            md_table(front, cols) +
            "\n\n![adaptive retrieval](figures/exp3_retrieval.png)\n\nFull grid: `tables/exp3_retrieval.csv`.\n")


def _section_ivf(t):
    rows = t["exp4_ivf"]
    cols = [("method", "method", str), ("d_c", "d_c", fmt_num), ("d_s", "d_s", fmt_num),
            ("nlist", "nlist", fmt_num), ("nprobe", "nprobe", fmt_num),
            ("mflops", "MFLOPs/query", fmt_num), ("mflops_balanced", "balanced MFLOPs", fmt_num),
            ("ms_per_query", "ms/query", fmt_num), ("top1", "top-1", fmt_pct),
            ("recall10", "10-recall@10", fmt_pct)]
    parts = []
    for m in ("AdANNS-IVF", "MR-IVF", "FF-IVF", "AdANNS-IVF-D"):
        sub = [r for r in rows if r["method"] == m]
        if sub:
            parts.append(f"**{m}** ({len(sub)} configurations; Pareto front in MFLOPs):\n\n" +
                         md_table(pareto_front(sub, x="mflops", y="top1"), cols))
    return ("## 4. AdANNS-IVF vs rigid IVF\n\n"
            "AdANNS-IVF: clusters built and queries routed with the first d_c dims of the MR, "
            "candidates scored with the first d_s dims. MR-IVF: the same with d_c = d_s. FF-IVF: "
            "IVF on each fixed-feature model (d_c = d_s = its size). AdANNS-IVF-D: one index built "
            "at full D, dims reduced at query time. MFLOPs use the measured list sizes "
            "(`cost.ivf_flops`); the papers' balanced approximation is shown too. 10-recall@10 "
            "is against exact search at full D on the same representation.\n\n" +
            "\n\n".join(parts) +
            "\n\n![AdANNS-IVF](figures/exp4_ivf.png)\n\nFull grid: `tables/exp4_ivf.csv`.\n")


def _section_opq(t, info):
    rows = t["exp5_opq"]
    cols = [("method", "method", str), ("M", "bytes M", fmt_num), ("d", "d", fmt_num),
            ("config", "configuration", str), ("top1_val", "val top-1", fmt_pct),
            ("top1_test", "test top-1", fmt_pct)]
    table = sorted((r for r in rows if r["selected"]), key=lambda r: (r["method"], r["M"]))
    note = info.get("notes", "")
    return ("## 5. AdANNS-OPQ vs OPQ on rigid / full representations\n\n"
            "Exhaustive OPQ+PQ search at M bytes/vector (nbits 8). AdANNS-OPQ: OPQ on the best MR "
            "prefix d per budget, d chosen on the validation half. MR-OPQ: OPQ on the full-D MR. "
            "FF-OPQ: OPQ on the rigid full-D FF model. PQ+rerank: the MR-OPQ shortlist of "
            f"{RERANK} re-ranked exactly at full D (`funnel.rerank`; needs the float32 vectors "
            f"at query time, not counted in bytes). {note}\nSelected configuration per method and "
            "budget (accuracy on the test half):\n\n" + md_table(table, cols) +
            "\n\n![AdANNS-OPQ](figures/exp5_opq.png)\n\nEvery candidate: `tables/exp5_opq.csv`.\n")


def _section_budget(t):
    rows = t["exp6_budget"]
    cols = [("on", "budget on", str), ("budget", "budget", fmt_num), ("chosen", "chosen on validation", str),
            ("cost", "its cost", fmt_num), ("val_top1", "val top-1", fmt_pct),
            ("test_top1", "test top-1", fmt_pct), ("oracle_test_top1", "best on test (oracle)", fmt_pct)]
    return ("## 6. Compute-aware search (choose on validation, report on test)\n\n"
            "Test queries split in two seeded halves. For each budget the best configuration "
            "(top-1) on the validation half among all exp. 3/4 rows (MFLOPs) or exp. 5 rows "
            "(bytes) is chosen with `select.select_on_validation`; its accuracy on the test half "
            "is reported next to the best achievable on test.\n\n" + md_table(rows, cols) +
            "\n\n![budgets](figures/exp6_budget.png)\n")


def write_report(path, meta, tables, claims, timings, infos):
    """meta: dict(preset, command, config, n_train, n_test, ...); writes markdown atomically."""
    from adanns_ref._persist import atomic_write_text

    lines = [f"# Reproduction of MRL and AdANNS on Fashion-MNIST (preset `{meta['preset']}`)\n",
             f"Command: `{meta['command']}`  \nDatabase (train): {meta['n_train']} images; "
             f"queries (test): {meta['n_test']} images; embedding D = {meta['D']}, nesting "
             f"{meta['nesting']}; seed {meta['seed']}.\n",
             "All numbers are measured by this run (or its cache); the papers' ImageNet / NQ "
             "numbers are for orientation only (SPEC §8).\n",
             "## Claims\n",
             md_table(claims, [("id", "id", str), ("claim", "claim", str), ("paper", "paper", str),
                               ("measured", "ours", str), ("verdict", "verdict", str)]),
             "\nVerdict rules (computed in `experiments/reproduce/claims.py`, never by hand):\n"]
    lines += [f"- `{c['id']}`: {c['rule']}." for c in claims]
    doc = claim_rules.__doc__.split("\n\n", 1)[1]
    lines.append("\nGeneral rules:\n\n" + doc.strip() + "\n")
    sections = [("exp1_dims", _section_dims), ("exp2_adaptive_cls", _section_adaptive_cls),
                ("exp3_retrieval", _section_retrieval), ("exp4_ivf", _section_ivf)]
    for name, fn in sections:
        lines.append(fn(tables) if tables.get(name) else f"## {name}\n\nnot run.\n")
    lines.append(_section_opq(tables, infos.get("exp5_opq", {})) if tables.get("exp5_opq")
                 else "## exp5_opq\n\nnot run.\n")
    lines.append(_section_budget(tables) if tables.get("exp6_budget") else "## exp6_budget\n\nnot run.\n")
    lines.append("## Environment\n")
    lines.append(md_table([{"k": k, "v": v} for k, v in environment()],
                          [("k", "item", str), ("v", "value", str)]))
    lines.append("\n## Stage wall times\n")
    trows = [{"stage": s, "wall": t["wall_s"], "cached": "cached (time of the run that computed it)"
              if t["cached"] else "computed in this run"} for s, t in timings.items()]
    lines.append(md_table(trows, [("stage", "stage", str), ("wall", "wall s", lambda v: f"{v:.1f}"),
                                  ("cached", "status", str)]))
    total = sum(t["wall_s"] for t in timings.values())
    lines.append(f"\nSum of the stage wall times above (each from the run that computed it): "
                 f"{total:.1f} s. Wall time of this invocation: {meta['total_wall_s']:.1f} s (load "
                 f"average at start {meta['load_at_start']}).\n")
    atomic_write_text(path, "\n".join(lines) + "\n")
