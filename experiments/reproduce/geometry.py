"""Report facts about the data and the models: the task, the embeddings' spectra and the headroom.

Spectrum of a model's D-dim embedding on the database (stage `geometry`): with X (n, D) the
normalised database embedding the searches use (`truncate.prefix(db, D)`), converted to float64
and centred (L2 distances do not change under a translation, so the mean direction carries no
neighbour information), the eigenvalues lambda_1 >= ... >= lambda_D >= 0 of the Gram matrix
Xc^T Xc are the squared singular values sigma_j^2 of Xc (numpy eigh of a float64 (D, D) matrix:
deterministic for a fixed BLAS kernel, 2 n D^2 flops, as exp1's SVD baseline; negative round-off
eigenvalues are clipped to 0). Reported per model and seed:

- effective rank at 1e-3: #{j : sigma_j >= 1e-3 sigma_1} = #{j : lambda_j >= 1e-6 lambda_1};
- dims for 99 % of the variance: the smallest k with sum_{j <= k} lambda_j >= 0.99 sum_j lambda_j.

A linear embedding layer over a 256-wide hidden layer has rank <= 257 whatever D is; a GELU one
(`mrl_ref.nn`) can use all D dims.

Headroom: on the deciding metric (R-precision on a task that records it, else mAP@10), FF at D
minus FF at the smallest trained size, per seed, from exp1's rows; mAP@R is shown beside it. A
dimension study can only decide claims if this gap is well above the claims' margins; the issue
asks >= 10 pp. R-precision rather than mAP@R: measured on 60,000 / 10,000 composites (FF-8 vs
FF-2048, GELU, seed 0, lr 0.05), the gap was 17.0 pp of R-precision and 10.7 pp of mAP@R after
5 epochs, 13.3 and 7.3 pp after 3: mAP@R weighs every rank's precision, so it stays small while
the 2048-dim model's first ranks are already right and its later ones are not.

"x fewer MFLOPs against the 99 % dim": exact search at d costs 2 d MFLOP per 10^6 database
items and query; an exact search at the 99 %-variance dim k99 of the full-D model (instead of D)
is the cheaper honest baseline, so every "x fewer MFLOPs than exact search at D" also reads
x * k99 / D against it (`mflops_vs_k99`).
"""
import numpy as np

from adanns_ref.core.truncate import prefix

from .stage import StageResult

RANK_RTOL = 1e-3
VARIANCE_SHARE = 0.99
TASKS = {
    "fmnist": "Fashion-MNIST (10 classes; database = train images, queries = test images)",
    "fmnist3": "Fashion-MNIST composites (3 images side by side, label = the class triple, 1,000 "
               "classes; `mrl_ref.composites`; database = composites of train images, queries = "
               "composites of test images)",
}


def task(cfg):
    """The preset's task key: "fmnist" (default) or "fmnist3"."""
    name = cfg.get("task", "fmnist")
    if name not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {name!r}")
    return name


def spectrum(x):
    """Eigenvalues (float64 (D,), descending, >= 0) of Xc^T Xc for X = x (n, D) float64-centred."""
    xc = np.array(x, dtype=np.float64)  # a copy, centred in place: one (n, D) float64 array
    if xc.ndim != 2 or xc.shape[0] < 2:
        raise ValueError(f"spectrum needs a matrix of >= 2 rows, got shape {xc.shape}")
    xc -= xc.mean(axis=0)
    lam = np.linalg.eigvalsh(xc.T @ xc)[::-1]
    return np.maximum(lam, 0.0)


def effective_rank(lam, rtol=RANK_RTOL):
    """#{j : sigma_j >= rtol sigma_1} from eigenvalues lam = sigma^2 (descending); 0 if all are 0."""
    lam = np.asarray(lam, dtype=np.float64)
    if lam.size == 0 or lam[0] <= 0:
        return 0
    return int(np.count_nonzero(lam >= (rtol * rtol) * lam[0]))


def dims_for_variance(lam, share=VARIANCE_SHARE):
    """Smallest k with sum_{j <= k} lam_j >= share * sum lam (lam descending); 0 if all are 0."""
    lam = np.asarray(lam, dtype=np.float64)
    total = lam.sum()
    if total <= 0:
        return 0
    return int(min(np.searchsorted(np.cumsum(lam), share * total) + 1, lam.size))


def geometry_stage(pipe, cfg, models):
    """Stage `geometry`: rows {model, seed, D, rank_1e-3, dims_99} for every model's full embedding."""
    def compute(ctx):
        rows = []
        for seed, ms in models.items():
            for name, m in ms.items():
                d = m["sizes"][-1]
                lam = spectrum(prefix(m["db"], d))
                rows.append({"model": name, "seed": seed, "D": d, "rank_1e-3": effective_rank(lam),
                             "dims_99": dims_for_variance(lam)})
        return StageResult(tables={"geometry": rows})

    deps = [m["stage"] for ms in models.values() for m in ms.values()]
    return pipe.run("geometry", {"seeds": cfg["seeds"], "rtol": RANK_RTOL, "share": VARIANCE_SHARE},
                    compute, deps=deps, code=["experiments.reproduce.geometry", "adanns_ref.core.truncate"])


ROW_KEYS = {"R-precision": "rprec", "mAP@R": "mapr", "mAP@10": "map10"}


def deciding_metric(exp1_rows, label=None):
    """(row key, label) of the deciding metric: `label` (a key of ROW_KEYS, e.g. the claims'
    task metric) when exp1 recorded it, else R-precision when recorded (the composite task),
    else mAP@10."""
    for name in ([label] if label else []) + ["R-precision", "mAP@10"]:
        if exp1_rows and exp1_rows[0].get(ROW_KEYS[name]) is not None:
            return ROW_KEYS[name], name
    return "map10", "mAP@10"


def _gap(ff, key, d_min, d_max):
    by = {(r["seed"], r["dim"]): r[key] for r in ff}
    seeds = sorted({r["seed"] for r in ff if (r["seed"], d_min) in by and (r["seed"], d_max) in by})
    per_seed = [(s, by[(s, d_min)], by[(s, d_max)]) for s in seeds]
    gaps = np.array([100.0 * (b - a) for _, a, b in per_seed])
    return per_seed, float(gaps.mean()), float(gaps.std(ddof=1)) if len(gaps) > 1 else 0.0


def headroom(exp1_rows, label=None):
    """FF at the smallest trained d vs FF at the largest, on the deciding metric, per seed.

    Returns dict(metric, label, d_min, d_max, per_seed [(seed, small, large)], gap_pp mean of
    (large - small) in percentage points, gap_sd_pp sample sd over seeds, and other = (label,
    gap_pp) of the other at-R metric when the deciding one is mAP@R or R-precision), or None
    without FF rows. label: see `deciding_metric`."""
    ff = [r for r in exp1_rows if r["model"] == "FF"]
    if not ff:
        return None
    key, label = deciding_metric(exp1_rows, label)
    d_min, d_max = min(r["dim"] for r in ff), max(r["dim"] for r in ff)
    per_seed, gap, sd = _gap(ff, key, d_min, d_max)
    out = {"metric": key, "label": label, "d_min": d_min, "d_max": d_max, "per_seed": per_seed,
           "gap_pp": gap, "gap_sd_pp": sd}
    other = {"rprec": ("mapr", "mAP@R"), "mapr": ("rprec", "R-precision")}.get(key)
    if other:
        out["other"] = (other[1], _gap(ff, other[0], d_min, d_max)[1])
    return out


def header_lines(cfg_task, geometry_rows, exp1_rows, D, deciding=None):
    """Markdown for the report header: task, headroom line (on `deciding`, see `deciding_metric`)
    and the spectrum table of the D-dim models."""
    lines = [f"Task: {TASKS[cfg_task]}.\n"]
    h = headroom(exp1_rows or [], deciding)
    if h is not None:
        seeds = ", ".join(f"seed {s}: {100 * a:.2f} vs {100 * b:.2f}" for s, a, b in h["per_seed"])
        verdict = "enough" if h["gap_pp"] >= 10 else "NOT enough: the dimension claims cannot be decided"
        lines.append(f"Headroom on the deciding metric ({h['label']}): FF-{h['d_max']} - FF-{h['d_min']} "
                     f"= {h['gap_pp']:.2f} ± {h['gap_sd_pp']:.2f} pp over {len(h['per_seed'])} seeds "
                     f"({seeds}); >= 10 pp required: {verdict}" +
                     (f". On {h['other'][0]}: {h['other'][1]:.2f} pp" if "other" in h else "") + ".\n")
    full = [r for r in geometry_rows or [] if r["D"] == D]
    if full:
        groups = {}
        for r in full:
            groups.setdefault(r["model"], []).append(r)
        table = ["| model | D | effective rank at 1e-3 of sigma_1 (per seed) | dims for 99 % of the "
                 "variance (per seed) |", "|---|---|---|---|"]
        for name, rs in groups.items():
            table.append(f"| {name} | {D} | {', '.join(str(r['rank_1e-3']) for r in rs)} | "
                         f"{', '.join(str(r['dims_99']) for r in rs)} |")
        lines.append("Spectrum of every D-dim database embedding (normalised, centred; "
                     "`experiments/reproduce/geometry.py`):\n\n" + "\n".join(table) + "\n")
    return lines


def dims_99(geometry_rows, model):
    """Mean over seeds of the 99 %-variance dim of `model` (e.g. "MRL"), or None."""
    vals = [r["dims_99"] for r in geometry_rows or [] if r["model"] == model]
    return float(np.mean(vals)) if vals else None


def mflops_vs_k99(mflops_x, D, k99):
    """An "x fewer MFLOPs than exact search at D" figure restated against exact search at k99."""
    return None if k99 is None or not mflops_x else mflops_x * k99 / D
