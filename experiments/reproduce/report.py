"""`DIR/report.md`: one section per experiment, the claims table, environment, stage times."""
import os
import platform
import sys

import numpy as np

from adanns_ref.evaluation.select import pareto_front

from . import geometry
from .verdicts import claims as claim_rules, rules
from .ann import RERANK_SHORTLIST as RERANK
from .plots import select_per_budget
from .rows import seed_mean


def fmt_pct(v):
    return "" if v is None else f"{100.0 * v:.2f}"


def fmt_num(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def fmt_pm(key):
    """Formatter of the column `key` of a seed_mean row: mean ± sd over seeds, in %."""
    def fmt(r):
        v = r.get(key)
        if v is None:
            return ""
        sd = r.get(key + "_sd")
        return f"{100 * v:.2f}" + ("" if not sd else f" ± {100 * sd:.2f}")
    return fmt


def with_pm(rows, keys):
    """Rows with a "<key>_pm" text column (mean ± sd) for each key."""
    return [dict(r, **{k + "_pm": fmt_pm(k)(r) for k in keys}) for r in rows]


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
    rows = seed_mean(t["exp1_dims"], key=("model", "dim"),
                     metrics=("linear_top1", "knn_top1", "map10", "recall10", "zero_prefix"))
    dims = sorted({r["dim"] for r in rows})
    by = {(r["model"], r["dim"]): r for r in rows}
    models = ("MRL", "MRL-E", "FF", "SVD", "RP")
    tables = []
    for metric, name, which in (("linear_top1", "linear top-1", models[:3]), ("map10", "mAP@10", models),
                                ("recall10", "10-recall@10 vs exact at full D", models),
                                ("knn_top1", "1-NN top-1 (secondary)", models),
                                ("zero_prefix", "share of database rows with an all-zero d-prefix", models[:3])):
        wide = [dict({"dim": d}, **{m: fmt_pm(metric)(by[(m, d)]) if (m, d) in by else "" for m in which})
                for d in dims]
        tables.append(f"**{name}** (%, mean ± sd over {rows[0]['n_seeds']} seeds)\n\n" +
                      md_table(wide, [("dim", "d", fmt_num)] + [(m, m, str) for m in which]))
    return ("## 1. MRL vs MRL-E vs FF (per representation size)\n\n"
            "Linear top-1 from each model's own head(s); 1-NN top-1, mAP@10 and 10-recall@10 on "
            "the normalised, truncated, re-normalised embeddings (database = train, queries = "
            "test). 10-recall@10 is against exact search at full D on the same representation "
            "(FF-d, SVD and RP against FF-D). SVD / RP: MRL Fig. 2's post-hoc baselines, the top-d "
            "singular directions / a random Gaussian projection of the FF-D embedding. A collapse "
            "(dead ReLU units in the first dims) shows as a non-zero share of all-zero prefixes.\n\n"
            + "\n\n".join(tables) +
            "\n\n![MRL vs FF](figures/exp1_dims.png)\n\nPer seed: `tables/exp1_dims.csv`.\n")


def _section_adaptive_cls(t):
    rows = with_pm(seed_mean(t["exp2_adaptive_cls"]), ["top1"])
    cols = [("method", "method", str), ("config", "configuration", str),
            ("expected_dim", "expected dim", fmt_num), ("top1_pm", "top-1 (%)", str),
            ("target", "thresholds (first seed)", str)]
    return ("## 2. Adaptive classification (MRL cascade)\n\n"
            "Per-size softmax-confidence thresholds (SPEC §7, `mrl_ref.evaluate`) fitted on one "
            "half of the test queries and applied to the other, both ways (cross-fitting), for "
            "cascades over prefixes and suffixes of the nesting list; FF and fixed-size MRL heads "
            "on the same queries. Mean ± sd over seeds.\n\n" + md_table(rows, cols) +
            "\n\n![adaptive classification](figures/exp2_adaptive_cls.png)\n")


ANN_COLS = [("recall10_pm", "10-recall@10", str), ("map10_pm", "mAP@10", str),
            ("top1_pm", "top-1 (secondary)", str), ("mflops", "MFLOPs/query", fmt_num),
            ("ms_per_query", "ms/query", fmt_num)]


def _section_retrieval(t):
    rows = with_pm(seed_mean(t["exp3_retrieval"]), ["top1", "map10", "recall10"])
    single = sorted((r for r in rows if r["method"] == "single-shot"), key=lambda r: r["mflops"])
    others = [r for r in rows if r["method"] != "single-shot"]
    front = pareto_front(others, x="mflops", y="recall10") if others else []
    cols = [("method", "method", str), ("config", "configuration", str)] + ANN_COLS
    speed = ""
    if single and others:  # every configuration that re-ranks at full D, against single-shot at D
        ref, D = single[-1], max(r["d_rerank"] for r in single)
        k99 = geometry.dims_99(t.get("geometry"), "MRL")
        at_d = [dict(r, mflops_x=ref["mflops"] / r["mflops"], speedup=ref["ms_per_query"] / r["ms_per_query"],
                     mflops_x99=geometry.mflops_vs_k99(ref["mflops"] / r["mflops"], D, k99))
                for r in others if r["d_rerank"] == D]
        speed = (f"\n\nEvery configuration that re-ranks at D = {D}, against single-shot exact search at "
                 f"D ({fmt_num(ref['mflops'])} MFLOPs/query, {fmt_num(ref['ms_per_query'])} ms/query): "
                 "MFLOPs ratio and measured wall-clock speed-up (paper, ImageNet at D = 2048: 16 -> "
                 "2048 with a 200-shortlist, 128x fewer MFLOPs, 14x wall-clock):\n\n" +
                 md_table(at_d, cols + [("mflops_x", "fewer MFLOPs (x)", fmt_num)] +
                          ([("mflops_x99", f"fewer MFLOPs than exact at MRL's 99 %-variance dim "
                             f"{k99:.0f} (x)", fmt_num)] if k99 else []) +
                          [("speedup", "wall-clock speed-up (x)", fmt_num)]))
    return ("## 3. Adaptive retrieval and funnels\n\n"
            "Shortlist by exact search at a small dim, re-rank at a larger dim (cost model "
            "`adanns_ref.cost.funnel_flops`: d_0 N + sum k_i r_i). 10-recall@10 is against exact "
            "search at full D. Mean ± sd over seeds (%). Single-shot exact search at each dim:\n\n" +
            md_table(single, cols) +
            "\n\nAdaptive/funnel configurations on the 10-recall@10-vs-MFLOPs Pareto front:\n\n" +
            md_table(front, cols) + speed +
            "\n\n![adaptive retrieval](figures/exp3_retrieval.png)\n\nFull grid: `tables/exp3_retrieval.csv`.\n")


def _section_ivf(t):
    rows = with_pm(seed_mean(t["exp4_ivf"]), ["top1", "map10", "recall10"])
    cols = [("method", "method", str), ("d_c", "d_c", fmt_num), ("d_s", "d_s", fmt_num),
            ("nlist", "nlist", fmt_num), ("nprobe", "nprobe", fmt_num),
            ("mflops_balanced", "balanced MFLOPs", fmt_num)] + ANN_COLS
    parts = []
    for m in ("AdANNS-IVF", "MR-IVF", "FF-IVF", "AdANNS-IVF-D"):
        sub = [r for r in rows if r["method"] == m]
        if sub:
            parts.append(f"**{m}** ({len(sub)} configurations; Pareto front of mAP@10 in MFLOPs):\n\n" +
                         md_table(pareto_front(sub, x="mflops", y="map10"), cols))
    base = seed_mean(t.get("exp4_baselines", []), key=("baseline", "nlist", "nprobe", "d_c"),
                     metrics=("top1", "map10"))
    best = {}
    for b in base:
        k = (b["baseline"], b["nlist"])
        if k not in best or b["top1"] > best[k]["top1"]:
            best[k] = b
    base_rows = with_pm(list(best.values()), ["top1"])
    base_table = md_table(base_rows, [("baseline", "baseline", str), ("nlist", "nlist", fmt_num),
                                      ("d_c", "d_c", fmt_num), ("nprobe", "nprobe", fmt_num),
                                      ("top1_pm", "top-1 (%)", str)])
    return ("## 4. AdANNS-IVF vs rigid IVF\n\n"
            "AdANNS-IVF: clusters built and queries routed with the first d_c dims of the MR, "
            "candidates scored with the first d_s dims. MR-IVF: the same with d_c = d_s. FF-IVF: "
            "IVF on each fixed-feature model (d_c = d_s = its size). AdANNS-IVF-D: one index built "
            "at full D, dims reduced at query time. MFLOPs use the measured list sizes "
            "(`cost.ivf_flops`); the papers' balanced approximation is shown too. 10-recall@10 "
            "is against exact search at full D on the same representation (for FF-IVF: FF-d "
            "itself). Mean ± sd over seeds (%).\n\n"
            "Top-1 has little headroom here: the exact-search ceiling and a classifier that "
            "returns the majority label of the probed lists (no search at all; best nprobe and "
            "d_c per nlist) are\n\n" + base_table + "\n\n" + "\n\n".join(parts) +
            "\n\n![AdANNS-IVF](figures/exp4_ivf.png)\n\nFull grid: `tables/exp4_ivf.csv`.\n")


def _section_hnsw(t):
    rows = with_pm(seed_mean(t["exp7_hnsw"]), ["top1", "map10", "recall10"])
    cols = [("method", "method", str), ("d_c", "d_c", fmt_num), ("d_s", "d_s", fmt_num),
            ("ef_search", "efSearch", fmt_num), ("ndis", "distances/query", fmt_num)] + ANN_COLS
    parts = [f"**{m}** ({len(sub)} configurations; Pareto front of mAP@10 in MFLOPs):\n\n" +
             md_table(pareto_front(sub, x="mflops", y="map10"), cols)
             for m in ("AdANNS-HNSW", "MR-HNSW", "FF-HNSW", "AdANNS-HNSW-D")
             for sub in [[r for r in rows if r["method"] == m]] if sub]
    return ("## 7. AdANNS-HNSW vs rigid HNSW\n\n"
            "AdANNS-HNSW: HNSW graph (faiss-identical, `adanns_ref.indices.hnsw.index`) built and walked on the "
            "first d_c dims of the MR, the max(efSearch, k) candidates re-scored with the first "
            "d_s dims. MR-HNSW: the same graph with d_s = d_c. FF-HNSW: HNSW on each fixed-feature "
            "model. AdANNS-HNSW-D: one graph built at full D, searched at smaller d_c. MFLOPs = "
            "measured distances x d_c + re-scored candidates x d_s (`cost.hnsw_flops`). "
            "10-recall@10 is against exact search at full D on the same representation (for "
            "FF-HNSW: FF-d itself). Mean ± sd over seeds (%).\n\n" + "\n\n".join(parts) +
            "\n\n![AdANNS-HNSW](figures/exp7_hnsw.png)\n\nFull grid: `tables/exp7_hnsw.csv`.\n")


def _section_opq(t, info):
    rows = with_pm(seed_mean(t["exp5_opq"]), ["map10_test", "recall10_test", "top1_test"])
    table = []
    for method in ("AdANNS-OPQ", "MR-OPQ", "FF-OPQ", "PQ+rerank", "AdANNS-IVFOPQ", "FF-IVFOPQ"):
        table += [r for _, r in sorted(select_per_budget(rows, method).items())]
    cols = [("method", "method", str), ("M", "bytes M", fmt_num), ("d", "d", fmt_num),
            ("config", "configuration", str), ("recall10_test_pm", "10-recall@10", str),
            ("map10_test_pm", "mAP@10", str), ("top1_test_pm", "top-1 (secondary)", str)]
    note = info.get("notes", "")
    return ("## 5. AdANNS-OPQ vs OPQ on rigid / full representations\n\n"
            "Exhaustive OPQ+PQ search at M bytes/vector (nbits 8). AdANNS-OPQ: OPQ on the best MR "
            "prefix d per budget, d chosen on half A by mAP@10. MR-OPQ: OPQ on the full-D MR. "
            "FF-OPQ: OPQ on the rigid full-D FF model. PQ+rerank: the MR-OPQ shortlist of "
            f"{RERANK} re-ranked exactly at full D (`funnel.rerank`; needs the float32 vectors "
            f"at query time, not counted in bytes). {note}\nSelected configuration per method and "
            "budget, scored on half B (%, mean ± sd over seeds):\n\n" + md_table(table, cols) +
            "\n\n![AdANNS-OPQ](figures/exp5_opq.png)\n\nEvery candidate: `tables/exp5_opq.csv`.\n")


def _section_budget(t):
    rows = t["exp6_budget"]
    cols = [("on", "budget on", str), ("budget", "budget", fmt_num), ("chosen", "chosen on half A", str),
            ("cost", "its cost", fmt_num), ("val_map10", "A mAP@10", fmt_pct),
            ("test_map10", "B mAP@10", fmt_pct), ("oracle_test_map10", "best on B (oracle)", fmt_pct)]
    return ("## 6. Compute-aware search (choose on half A, report on half B)\n\n"
            "For each budget the best configuration (mAP@10, mean over seeds) on half A among all "
            "exp. 3/4/7 rows (MFLOPs) or exp. 5 rows (bytes) is chosen with "
            "`select.select_on_validation`; its mAP@10 on half B is reported next to the best "
            "achievable on B.\n\n" + md_table(rows, cols) +
            "\n\n![budgets](figures/exp6_budget.png)\n")


def _section_quant(t, info):
    rows = with_pm(seed_mean(t["exp8_quant"]), ["recall10", "map10", "top1"])
    rows = [r for r in rows if r["method"] != "MR-prefix" or r["d"] < max(x["d"] for x in rows)]
    cols = [("method", "method", str), ("config", "configuration", str), ("bytes", "bytes/vector", fmt_num),
            ("ms_per_query", "ms/query", fmt_num), ("recall10_pm", "10-recall@10", str),
            ("map10_pm", "mAP@10", str), ("top1_pm", "1-NN top-1 (secondary)", str)]
    return ("## 8. Quantized Matryoshka prefixes and binary funnels\n\n"
            "Exhaustive search of each MR prefix d at each precision (binary: sign bits + Hamming; "
            "4bit / int8: faiss SQ of the normalised prefix; float: exact), the rigid precisions "
            "at full D on MR (MR-<p>) and on FF-D (FF-<p>, recall against FF-D), and binary@d -> "
            "float@D funnels (bytes = the binary codes scanned; the re-rank also reads 4 D bytes "
            f"per candidate). {info.get('notes', '')} All queries, % mean ± sd over seeds:\n\n"
            + md_table(rows, cols) + "\n\n![quantization](figures/exp8_quant.png)\n\n"
            "Per seed: `tables/exp8_quant.csv`.\n")


def _section_pruning(t, info):
    """Exp. 9: per method, the fraction of the exact search Panorama skipped (mean ± sd over
    seeds), the energy share of each nesting prefix and the pruning rate per level (means)."""
    by = {}
    for r in t["exp9_pruning"]:
        by.setdefault(r["method"], []).append(r)
    rows = []
    for method, rs in by.items():
        pruned = np.array([r["dims_pruned"] for r in rs])
        share = np.array([[float(v.split(":")[1]) for v in r["energy_share"].split()] for r in rs])
        rate = np.array([[float(v) for v in r["pruning_rate_per_level"].split()] for r in rs])
        dims = [v.split(":")[0] for v in rs[0]["energy_share"].split()]
        rows.append({"method": method, "pruned": f"{100 * pruned.mean():.2f} ± {100 * pruned.std():.2f}",
                     "share": " ".join(f"{d}:{100 * v:.1f}" for d, v in zip(dims, share.mean(0))),
                     "rate": " ".join("-" if np.isnan(v) else f"{100 * v:.1f}" for v in rate.mean(0))})
    cols = [("method", "method", str), ("pruned", "dims pruned %", str),
            ("share", "energy share of the prefix d (%)", str),
            ("rate", "candidates pruned at each level (%)", str)]
    return ("## 9. Exact prefix pruning (Panorama)\n\n"
            f"{info.get('notes', '')} Energy share: the mean over rows of ||x[:d]||^2 / ||x||^2; "
            "pruning rate: of the candidates alive at a level, the fraction dropped there (the last "
            "level prunes nothing). Mean (± sd) over seeds:\n\n" + md_table(rows, cols) +
            "\n\nPer seed: `tables/exp9_pruning.csv`.\n")


def _threshold(c):
    if c.get("min_effect") is not None:
        return f"minimum effect {100 * c['min_effect']:.2f} pp"
    return f"margin ±{100 * c['margin']:.2f} pp" if c.get("margin") else ""


def _ci(iv):
    return f"[{100 * iv[0]:+.2f}, {100 * iv[1]:+.2f}]"


def _claim_detail(c):
    """The per-claim block: rule, deciding metric, every point, per-seed gains, every control."""
    head = (f"**`{c['id']}`**: rule **{c['rule']}** on {c.get('metric')} ({_threshold(c)}); "
            f"verdict **{c['verdict']}**; seeds {c['seeds']}.")
    if "point_rows" not in c:
        return head + f" {c.get('measured', '')}\n"
    lines = [head + (f" {c['metric_note']}." if c.get("metric_note") else "") +
             (f" {c['seed_note']}." if c.get("seed_note") else ""), "",
             f"Compared: {c.get('points', '')}.", ""]
    pts = [dict(p, est=f"{100 * p['estimate']:+.2f}", ci=_ci(p["interval"]),
                seeds=", ".join(f"{100 * g:+.2f}" for g in p["seed_gains"])) for p in c["point_rows"]]
    lines.append(md_table(pts, [("label", "point", str), ("est", "gain pp", str),
                                ("ci", f"{'95' if c['rule'] == 'beats' else '90'}% CI pp", str),
                                ("seeds", "per-seed gains pp", str), ("verdict", "verdict", str)]))
    ctrl = [dict(k, est=f"{100 * k['estimate']:+.2f}", ci=_ci(k["interval"]),
                 seeds=", ".join(f"{100 * g:+.2f}" for g in k["seed_gains"])) for k in c["controls"]]
    if ctrl:
        lines += ["", "Controls (must not pass; \"reproduced\" = passed):", "",
                  md_table(ctrl, [("kind", "kind", str), ("name", "control", str), ("est", "gain pp", str),
                                  ("ci", "CI pp", str), ("seeds", "per-seed pp", str),
                                  ("verdict", "result", str)])]
    return "\n".join(lines) + "\n"


def _claims_section(claims):
    summary = [dict(c, ctrl=c.get("control_verdict") or "", wall=claim_rules.wall_clock_text(c))
               for c in claims]
    lines = ["## Claims\n",
             md_table(summary, [("id", "id", str), ("claim", "claim", str), ("paper", "paper", str),
                                ("measured", "ours (X vs Y, gain, interval, per seed, per point)", str),
                                ("verdict", "verdict", str), ("ctrl", "controls", str),
                                ("wall", "measured wall-clock (not judged)", str)]),
             "\nPer claim (rules in `experiments/reproduce/verdicts/rules.py`, declarations in "
             "`experiments/reproduce/verdicts/claims.py`; nothing is judged by hand):\n"]
    lines += [_claim_detail(c) for c in claims]
    why = [c for c in claims if c.get("why_not")]
    if why:
        lines.append("\n### Why not\n")
        lines += [f"- `{c['id']}` ({c['verdict']}): {c['why_not']}" for c in why]
    lines.append("\n**Rules.** " + rules.__doc__.split("\n\n", 1)[1].strip() + "\n")
    lines.append("**Claims.** " + claim_rules.__doc__.split("\n\n", 2)[2].strip() + "\n")
    return lines


def _changes_section(changed, previous_note):
    if changed is None:
        return []
    lines = ["### Changed since the previous run\n",
             f"Claims whose verdict differs from {previous_note} (ids of older runs renamed by "
             "`claims.RENAMED`):\n"]
    if not changed:
        return lines + ["none.\n"]
    return lines + [md_table(changed, [("id", "id", str), ("before", "before", str),
                                       ("after", "now", str), ("why", "why (numbers of this run)", str)])
                    + "\n"]


def write_report(path, meta, tables, claims, timings, infos, changed=None):
    """meta: dict(preset, command, config, n_train, n_test, ...); writes markdown atomically."""
    from adanns_ref.core.persist import atomic_write_text

    lines = [f"# Reproduction of MRL and AdANNS on {meta.get('task_title', 'Fashion-MNIST')} (preset "
             f"`{meta['preset']}`)\n",
             f"Command: `{meta['command']}`  \nDatabase (train): {meta['n_train']} {meta.get('items', 'images')}; "
             f"queries (test): {meta['n_test']} {meta.get('items', 'images')}; embedding D = {meta['D']}, nesting "
             f"{meta['nesting']}; seeds {meta['seeds']}." +
             (f"  \nEncoder: {meta['encoder']}.\n" if meta.get("encoder") else "\n"),
             *meta.get("task_lines", []),
             "All numbers are measured by this run (or its cache); the papers' ImageNet / NQ "
             "numbers are for orientation only (SPEC §8).\n"]
    lines += _claims_section(claims)
    note = "the claims.json this run replaced (or --previous)"
    before = meta.get("previous_setup")
    if before is not None and before != meta.get("setup"):
        before = before or "one from before claims.json recorded its setup"
        note += (f", which came from another setup ({before}; now: {meta.get('setup')}): every "
                 "verdict was decided again on the new data, so a change reflects the task and "
                 "the encoder as well as the rules")
    lines += _changes_section(changed, note)
    sections = [("exp1_dims", _section_dims), ("exp2_adaptive_cls", _section_adaptive_cls),
                ("exp3_retrieval", _section_retrieval), ("exp4_ivf", _section_ivf)]
    for name, fn in sections:
        lines.append(fn(tables) if tables.get(name) else f"## {name}\n\nnot run.\n")
    lines.append(_section_opq(tables, infos.get("exp5_opq", {})) if tables.get("exp5_opq")
                 else "## exp5_opq\n\nnot run.\n")
    lines.append(_section_budget(tables) if tables.get("exp6_budget") else "## exp6_budget\n\nnot run.\n")
    lines.append(_section_hnsw(tables) if tables.get("exp7_hnsw") else "## exp7_hnsw\n\nnot run.\n")
    lines.append(_section_quant(tables, infos.get("exp8_quant", {})) if tables.get("exp8_quant")
                 else "## exp8_quant\n\nnot run.\n")
    lines.append(_section_pruning(tables, infos.get("exp9_pruning", {})) if tables.get("exp9_pruning")
                 else "## exp9_pruning\n\nnot run.\n")
    lines.append("## Environment\n")
    where = [("exp4 / exp5 configurations ran", f"{meta.get('where', 'in-process, serial')} "
              "(stages marked cached below keep the ms/query of the run that computed them; "
              "ms/query measured on a shared cluster is not comparable with a quiet serial run)")]
    lines.append(md_table([{"k": k, "v": v} for k, v in environment() + where],
                          [("k", "item", str), ("v", "value", str)]))
    lines.append("\n## Stage wall times\n")
    trows = [{"stage": s, "wall": t["wall_s"], "cached": "cached (time of the run that computed it)"
              if t["cached"] else "computed in this run" + (" by a training worker process, beside the "
                                                            "others" if t.get("worker") else "")}
             for s, t in timings.items()]
    lines.append(md_table(trows, [("stage", "stage", str), ("wall", "wall s", lambda v: f"{v:.1f}"),
                                  ("cached", "status", str)]))
    total = sum(t["wall_s"] for t in timings.values())
    parallel = (" The training workers ran side by side, so the sum exceeds the wall time."
                if any(t.get("worker") for t in timings.values()) else "")
    lines.append(f"\nSum of the stage wall times above (each from the run that computed it): "
                 f"{total:.1f} s. Wall time of this invocation: {meta['total_wall_s']:.1f} s (load "
                 f"average at start {meta['load_at_start']}).{parallel}\n")
    atomic_write_text(path, "\n".join(lines) + "\n")
