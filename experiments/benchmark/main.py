"""Speed of adanns_ref / mrl_ref against faiss, nanopq and PyTorch, in the same process and run.

    python -m experiments.benchmark [--threads 1 2] [--quick] [--out-dir experiments]
                                    [--embeddings PATH.npy] [--only exact_knn,kmeans,...]

Every row times our implementation and a peer on the same data, the same parameters and the
same thread count (faiss OpenMP, numba, every BLAS/OpenMP pool via threadpoolctl, torch), and
reports ratio = our median time / peer median time against the bar of the task.

Protocol: one warm-up call per side, timed and reported as "1st call" (numba JIT compile or
on-disk cache load + one run), then `runs` timed calls per side, alternating ours / peer so
that load from other processes hits both alike: median (min, max). Memory: peak RSS
delta of a timed call (VmHWM reset through /proc/self/clear_refs before the call, so memory
that C++ (faiss, torch) allocates is counted like NumPy's); memory the allocator kept from
earlier calls is not counted. Quality is measured on the same outputs so speed is compared at
equal quality: k-recall@k against exact ground truth (plain NumPy, independent of both sides),
k-means objective, PQ reconstruction MSE, training loss. The physical limit is the achieved
GFLOP/s of GEMM-bound rows against NumPy's sgemm on this machine, or the GB/s of vectors /
codes scanned by scan-bound rows against NumPy's sgemv read bandwidth.

A row whose module is not in the tree yet says "not available" with the reason; a row whose
code raised says "error" with the exception. No number is ever filled in by hand.
"""
import argparse
import datetime
import importlib
import importlib.util
import json
import os
import platform
import sys
import traceback

import numpy as np

from adanns_ref.core.persist import atomic_write_text

from . import data as _bench_data
from .ann import (bench_adanns_ivf, bench_exact_knn, bench_funnel, bench_ivf_flat,
                  bench_ivfpq, bench_kmeans, bench_opq, bench_pq, bench_pq_nanopq)
from .codes import bench_hamming, bench_hnsw, bench_sq8
from .contention import bench_contention
from .funnel import bench_funnel_paper, bench_funnel_paper_faiss
from .measure import Context, NotAvailable, ThreadPin, Workload, log, machine_reference
from .mrl import bench_mrl_epoch
from .report import _json_default, _one_line, to_markdown

# n_db x n_query vectors of `dim` dims; nlist = IVF lists = k-means k; k-NN k; funnel k and
# shortlist; PQ M and k-means iterations; OPQ outer / first inner iterations; IVFPQ nprobe;
# nanopq queries (its ADC is a NumPy loop per query, ~100x slower); MRL training rows; runs.
_FULL = dict(n_db=60000, n_query=10000, dim=128, nlist=1024, k=10, k_funnel=100, shortlist=200,
             M=16, pq_niter=25, kmeans_niter=10, opq_niter=10, opq_niter_pq_0=40, ivfpq_nprobe=8,
             n_query_nanopq=500, mrl_rows=60000, runs=5, ref_sgemm_n=2048, ref_sgemv_mib=256,
             funnel_n_db=250000, funnel_dim=2048, funnel_n_query=1000,
             n_query_contention=10000, mrl_rows_contention=6000, hnsw_runs=2, codes_n_db=60000,
             codes_dim=1024, codes_n_query=1000)
SIZES = {
    "full": _FULL,
    "quick": dict(_FULL, n_db=5000, n_query=500, nlist=64, pq_niter=10, opq_niter=2,
                  opq_niter_pq_0=10, n_query_nanopq=100, mrl_rows=5000, runs=1,
                  funnel_n_db=20000, funnel_dim=512, funnel_n_query=200, hnsw_runs=1,
                  codes_n_db=5000, codes_n_query=100),
    "tiny": dict(_FULL, n_db=1200, n_query=60, nlist=16, k_funnel=20, shortlist=40, pq_niter=2,
                 kmeans_niter=3, opq_niter=1, opq_niter_pq_0=2, ivfpq_nprobe=4, n_query_nanopq=20,
                 mrl_rows=512, runs=1, ref_sgemm_n=1024, ref_sgemv_mib=64, n_query_contention=60,
                 mrl_rows_contention=512, funnel_n_db=2000, funnel_dim=256, funnel_n_query=40,
                 hnsw_runs=1, codes_n_db=1000, codes_dim=256, codes_n_query=20),
}

ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
            "MKL_NUM_THREADS", "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER", "NUMBA_CACHE_DIR")


WORKLOADS = [
    Workload("exact_knn",
             lambda c: f"exact k-NN {c['n_query']} x {c['n_db']} x {c['dim']}, k={c['k']}",
             "faiss IndexFlatL2", 1.0, ["adanns_ref.indices.flat"], bench_exact_knn),
    Workload("kmeans", lambda c: f"k-means {c['n_db']} x {c['dim']}, k={c['nlist']}, "
             f"{c['kmeans_niter']} iterations", "faiss.Kmeans", 1.0, ["adanns_ref.quantizers.kmeans"],
             bench_kmeans),
    Workload("ivf_flat", lambda c: f"IVF-Flat nlist={c['nlist']} nprobe=1/4/16",
             "faiss IndexIVFFlat (our centroids)", 1.25, ["adanns_ref.indices.ivf"], bench_ivf_flat),
    Workload("adanns_ivf", lambda c: f"AdANNS-IVF d_c=16 d_s={c['dim']} nlist={c['nlist']}",
             "faiss ivf_tools.search_preassigned", 1.25, ["adanns_ref.indices.ivf"], bench_adanns_ivf),
    Workload("pq", lambda c: f"PQ M={c['M']} train ({c['pq_niter']} iter.) / encode / ADC search",
             "faiss IndexPQ", 1.5,
             ["adanns_ref.quantizers.pq"], bench_pq),
    Workload("pq_nanopq", lambda c: f"PQ ADC search M={c['M']} ({c['n_query_nanopq']} queries)",
             "nanopq PQ.dtable().adist()", 0.05, ["adanns_ref.quantizers.pq"], bench_pq_nanopq),
    Workload("opq", lambda c: f"OPQ M={c['M']} train, niter={c['opq_niter']} "
             f"(inner PQ {c['opq_niter_pq_0']} then 4 k-means iterations)",
             "faiss OPQMatrix", 1.5, ["adanns_ref.quantizers.opq"], bench_opq),
    Workload("ivfpq", lambda c: f"IVFPQ nlist={c['nlist']} M={c['M']} nprobe={c['ivfpq_nprobe']}",
             "faiss IndexIVFPQ", 1.5, ["adanns_ref.indices.ivfpq"], bench_ivfpq),
    Workload("funnel", lambda c: f"funnel 16 -> {c['dim']}, shortlist {c['shortlist']}, "
             f"k={c['k_funnel']}", "our exact search at full dim", None,
             ["adanns_ref.funnel.funnel", "adanns_ref.indices.flat"], bench_funnel),
    Workload("funnel_paper", lambda c: f"funnel 16 -> {c['funnel_dim']}, shortlist 200, k=10, "
             f"{c['funnel_n_db']} x {c['funnel_dim']} memory-mapped",
             "our exact search at the full dim (FlatIndex)", None,
             ["adanns_ref.funnel.index"], bench_funnel_paper),
    Workload("funnel_paper_faiss", lambda c: f"funnel 16 -> {c['funnel_dim']}, shortlist 200, k=10 "
             f"(same data)", "faiss IndexFlatL2(16) + knn_L2sqr_by_idx", None,
             ["adanns_ref.funnel.index"], bench_funnel_paper_faiss),
    Workload("hnsw", lambda c: f"HNSW M=32 efConstruction=40 on {c['n_db']} x {c['dim']}",
             "faiss IndexHNSWFlat", 1.5, ["adanns_ref.indices.hnsw.index"], bench_hnsw),
    Workload("sq8", lambda c: f"SQ8 scan, {c['codes_n_db']} x {c['codes_dim']}",
             "faiss IndexScalarQuantizer QT_8bit", 1.5, ["adanns_ref.indices.sqindex"], bench_sq8),
    Workload("hamming", lambda c: f"Hamming scan, {c['codes_n_db']} x {c['codes_dim']} bits",
             "faiss IndexBinaryFlat", 1.5, ["adanns_ref.indices.binary"], bench_hamming),
    Workload("mrl_epoch", lambda c: f"MRL training epoch, MLP 784-512-512-256, 6 heads, "
             f"batch 256, {c['mrl_rows']} rows", "PyTorch CPU, same model", 1.5,
             ["mrl_ref.train"], bench_mrl_epoch),
    Workload("contention", lambda c: "hot paths beside one busy single-threaded process",
             "ours alone", 2.0, ["adanns_ref.indices.ivf", "mrl_ref.train"], bench_contention),
]


# ---------------------------------------------------------------- running the workloads

def run_workload(spec, ctx, threads):
    """Run one workload at one thread count -> list of row dicts (never raises)."""
    base = {"key": spec.key, "workload": spec.title(ctx.cfg), "peer": spec.peer,
            "bar": spec.bar, "threads": threads}
    missing = [m for m in spec.requires if importlib.util.find_spec(m) is None]
    if missing:
        return [dict(base, status="not available",
                     reason=f"module {', '.join(missing)} is not in the tree yet")]
    try:
        rows = spec.run(ctx)
    except NotAvailable as exc:
        return [dict(base, status="not available", reason=str(exc))]
    except Exception as exc:  # a failing workload must not hide the others; it is reported
        tb = traceback.format_exc(limit=3)
        log(f"{spec.key} failed:\n{tb}")
        return [dict(base, status="error", reason=f"{type(exc).__name__}: {exc}")]
    out = []
    for r in rows:
        row = dict(base, status="ok", **r)
        row["ratio"] = row["ours"]["median_s"] / row["peer_timing"]["median_s"]
        row["pass"] = None if row["bar"] is None else bool(row["ratio"] <= row["bar"])
        _add_limit(row, ctx.reference[threads])
        out.append(row)
    return out


def _add_limit(row, ref):
    """Achieved GFLOP/s (GEMM-bound rows) or GB/s scanned (scan-bound rows) of both sides,
    next to the machine's NumPy sgemm / sgemv figure at the same thread count."""
    kind, work_ours, work_peer = row.pop("work")
    if kind is None:
        row["limit"] = None
        return
    gemm = kind == "gflop"
    row["limit"] = {"unit": "GFLOP/s" if gemm else "GB/s",
                    "ours": work_ours / row["ours"]["median_s"] / 1e9,
                    "peer": work_peer / row["peer_timing"]["median_s"] / 1e9,
                    "machine": ref["sgemm_gflops"] if gemm else ref["sgemv_read_gbps"],
                    "machine_ref": f"numpy sgemm {ref['sgemm_n']}^3" if gemm else
                    f"numpy sgemv, {ref['sgemv_mib']} MiB read"}


def environment():
    import numba
    from threadpoolctl import threadpool_info
    versions = {"python": platform.python_version(), "numpy": np.__version__,
                "numba": numba.__version__}
    for name in ("faiss", "nanopq", "torch", "scipy"):
        try:
            versions[name] = importlib.import_module(name).__version__
        except ImportError:
            versions[name] = "not installed"
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or "unknown"
    try:
        layer = numba.threading_layer()
    except ValueError:  # only known after a parallel kernel ran
        layer = "not initialised"
    pools = [{k: p.get(k) for k in ("user_api", "internal_api", "prefix", "version",
                                     "architecture", "threading_layer")}
             | {"library": os.path.basename(p["filepath"])} for p in threadpool_info()]
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "platform": platform.platform(),
            "versions": versions, "numba_threading_layer": layer, "thread_pools": pools,
            "env": {v: os.environ.get(v) for v in ENV_VARS},
            "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def build_context(cfg, embeddings, mrl_data):
    if embeddings:
        xb, xq = _bench_data.load_embeddings(embeddings, cfg["n_db"], cfg["n_query"], cfg["dim"])
        source = f"MRL embeddings from {embeddings} (128-dim prefix, re-normalised)"
    else:
        xb, xq, _, _ = _bench_data.matryoshka_like(cfg["n_db"], cfg["n_query"], cfg["dim"])
        source = ("synthetic Matryoshka-like: 100 gaussian clusters, std_j ~ j^-0.5, sigma 0.6, "
                  "L2-normalised, seed 2024")
    log(f"data: {source}; ground truth (NumPy exact top-{cfg['k_funnel']})")
    _, gt = _bench_data.exact_ground_truth(xq, xb, max(cfg["k"], cfg["k_funnel"]))
    return Context(cfg=cfg, xb=xb, xq=xq, gt=gt, data_source=source, mrl_data=mrl_data)


def run(cfg, threads_list, only=None, embeddings=None, mrl_data="auto", out_dir="experiments"):
    """Run the selected workloads at every thread count; write .json and .md; return the dict."""
    specs = [s for s in WORKLOADS if not only or s.key in only]
    if "mrl_epoch" in [s.key for s in specs] and importlib.util.find_spec("torch"):
        import torch  # noqa: F401  (loaded before thread pinning so threadpoolctl sees its pools)
    if importlib.util.find_spec("faiss"):
        import faiss  # noqa: F401  (same reason; without faiss its rows say "not available")
    load_before = os.getloadavg()
    ctx = build_context(cfg, embeddings, mrl_data)
    rows = []
    for threads in threads_list:
        with ThreadPin(threads):
            ctx.reference[threads] = machine_reference(threads, cfg["ref_sgemm_n"],
                                                       cfg["ref_sgemv_mib"])
            log(f"threads={threads}: sgemm {ctx.reference[threads]['sgemm_gflops']:.1f} GFLOP/s, "
                f"sgemv {ctx.reference[threads]['sgemv_read_gbps']:.1f} GB/s")
            for spec in specs:
                log(f"threads={threads}: {spec.key} ...")
                new = run_workload(spec, ctx, threads)
                for r in new:
                    log("  " + _one_line(r))
                rows.extend(new)
            # measured again after the workloads: the best of both is the machine's figure
            after = machine_reference(threads, cfg["ref_sgemm_n"], cfg["ref_sgemv_mib"])
            ref = ctx.reference[threads]
            for key in ("sgemm_gflops", "sgemv_read_gbps"):
                ref[key] = max(ref[key], after[key])
            for r in rows:
                if r["threads"] == threads and r.get("limit"):
                    unit = "sgemm_gflops" if r["limit"]["unit"] == "GFLOP/s" else "sgemv_read_gbps"
                    r["limit"]["machine"] = ref[unit]
    result = {"schema": 1, "size": cfg, "threads": threads_list, "data": ctx.data_source,
              "machine": dict(environment(), load_average_1_5_15min={
                  "start": list(load_before), "end": list(os.getloadavg())}),
              "reference": ctx.reference, "rows": rows,
              "command": " ".join(["python -m experiments.benchmark"] + sys.argv[1:])}
    os.makedirs(out_dir, exist_ok=True)
    atomic_write_text(os.path.join(out_dir, "benchmark_results.json"),
                      json.dumps(result, indent=1, default=_json_default) + "\n")
    atomic_write_text(os.path.join(out_dir, "benchmark_results.md"), to_markdown(result))
    return result


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m experiments.benchmark", description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, nargs="+", choices=(1, 2), default=[1, 2],
                   help="thread counts to run at (default: 1 then 2)")
    p.add_argument("--quick", action="store_true", help="small sizes and 1 run (CI, < 2 min)")
    p.add_argument("--size", choices=sorted(SIZES), default=None,
                   help="size preset (default full; --quick = quick; tiny is for the tests)")
    p.add_argument("--runs", type=int, default=None, help="timed runs per side (default by size)")
    p.add_argument("--out-dir", default="experiments")
    p.add_argument("--cache-dir", default=None,
                   help="where generated benchmark data (.fbin) is kept (default OUT_DIR/cache)")
    p.add_argument("--embeddings", default=None,
                   help=".npy (n >= n_db + n_query, D >= 128) of MRL embeddings instead of synthetic")
    p.add_argument("--mrl-data", choices=("auto", "fashion-mnist", "synthetic"), default="auto",
                   help="MRL epoch input: Fashion-MNIST if installed (auto) or seeded synthetic")
    p.add_argument("--only", default=None,
                   help="comma-separated workload keys: " + ",".join(s.key for s in WORKLOADS))
    args = p.parse_args(argv)
    if args.quick and args.size not in (None, "quick"):
        p.error("--quick and --size contradict each other; pass one of them")
    cfg = dict(SIZES[args.size or ("quick" if args.quick else "full")])
    cfg["funnel_cache"] = args.cache_dir or os.path.join(args.out_dir, "cache")
    if args.runs is not None:
        if args.runs < 1:
            p.error(f"--runs must be >= 1, got {args.runs}")
        cfg["runs"] = args.runs
    only = None
    if args.only:
        only = [k.strip() for k in args.only.split(",") if k.strip()]
        unknown = sorted(set(only) - {s.key for s in WORKLOADS})
        if unknown:
            p.error(f"unknown workload(s) {unknown}; choose from {[s.key for s in WORKLOADS]}")
    run(cfg, list(dict.fromkeys(args.threads)), only, args.embeddings, args.mrl_data, args.out_dir)
    return 0

