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
import collections
import datetime
import gc
import importlib
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
import traceback

import numpy as np

from adanns_ref._persist import atomic_write_text
from experiments import _bench_data

# n_db x n_query vectors of `dim` dims; nlist = IVF lists = k-means k; k-NN k; funnel k and
# shortlist; PQ M and k-means iterations; OPQ outer / first inner iterations; IVFPQ nprobe;
# nanopq queries (its ADC is a NumPy loop per query, ~100x slower); MRL training rows; runs.
_FULL = dict(n_db=60000, n_query=10000, dim=128, nlist=1024, k=10, k_funnel=100, shortlist=200,
             M=16, pq_niter=25, kmeans_niter=10, opq_niter=10, opq_niter_pq_0=40, ivfpq_nprobe=8,
             n_query_nanopq=500, mrl_rows=60000, runs=5, ref_sgemm_n=2048, ref_sgemv_mib=256)
SIZES = {
    "full": _FULL,
    "quick": dict(_FULL, n_db=5000, n_query=500, nlist=64, pq_niter=10, opq_niter=2,
                  opq_niter_pq_0=10, n_query_nanopq=100, mrl_rows=5000, runs=1),
    "tiny": dict(_FULL, n_db=1200, n_query=60, nlist=16, k_funnel=20, shortlist=40, pq_niter=2,
                 kmeans_niter=3, opq_niter=1, opq_niter_pq_0=2, ivfpq_nprobe=4, n_query_nanopq=20,
                 mrl_rows=512, runs=1, ref_sgemm_n=1024, ref_sgemv_mib=64),
}

ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
            "MKL_NUM_THREADS", "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER", "NUMBA_CACHE_DIR")


def log(msg):
    print(f"[benchmark {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- measurement

def _rss_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


def _reset_peak_rss():
    """Reset VmHWM to the current RSS; return the RSS baseline in kB (None if not allowed)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    return _rss_kb("VmRSS")


def _timed_call(fn):
    """(seconds, peak RSS increase in MB or None, output) of one call of fn()."""
    gc.collect()
    base = _reset_peak_rss()
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    peak = None if base is None else (_rss_kb("VmHWM") - base) / 1024
    return seconds, peak, out


def measure_pair(ours_fn, peer_fn, runs):
    """Warm up both sides (the '1st call' times), then alternate ours / peer `runs` times, so
    load from other processes hits both sides alike. Returns (timing_ours, out_ours,
    timing_peer, out_peer); the outputs are those of the last run."""
    fns = (ours_fn, peer_fn)
    first = [_timed_call(fn)[0] for fn in fns]
    times, peaks, outs = ([], []), ([], []), [None, None]
    for _ in range(runs):
        for side, fn in enumerate(fns):
            outs[side] = None  # release the previous output before the next call
            seconds, peak, outs[side] = _timed_call(fn)
            times[side].append(seconds)
            if peak is not None:
                peaks[side].append(peak)
    timings = [{"first_s": first[s], "median_s": statistics.median(times[s]),
                "min_s": min(times[s]), "max_s": max(times[s]), "runs": runs,
                "peak_rss_mb": max(peaks[s]) if peaks[s] else None} for s in (0, 1)]
    return timings[0], outs[0], timings[1], outs[1]


def machine_reference(threads, n=2048, read_mib=256):
    """NumPy sgemm GFLOP/s (n x n x n, best of 5) and sgemv read GB/s (a read_mib MiB matrix,
    best of 3). Measured before and after each thread count's workloads; the report keeps the
    best of the two."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(5))
    m = np.full((read_mib * 256, 1024), 0.5, dtype=np.float32)  # values do not matter for a read
    v = np.ones(1024, dtype=np.float32)
    m @ v
    best_v = min(_timed(lambda: m @ v) for _ in range(3))
    return {"threads": threads, "sgemm_gflops": 2 * n ** 3 / best / 1e9,
            "sgemv_read_gbps": m.nbytes / best_v / 1e9, "sgemm_n": n, "sgemv_mib": read_mib}


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


class ThreadPin:
    """Same thread count for faiss (OpenMP), numba, every BLAS/OpenMP pool and torch."""

    def __init__(self, threads):
        self.threads = threads

    def __enter__(self):
        from threadpoolctl import threadpool_limits
        import numba
        self._limits = threadpool_limits(limits=self.threads)
        numba.set_num_threads(self.threads)
        if "faiss" in sys.modules:
            sys.modules["faiss"].omp_set_num_threads(self.threads)
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(self.threads)
        return self

    def __exit__(self, *exc):
        self._limits.restore_original_limits()


# ---------------------------------------------------------------- workloads

class NotAvailable(Exception):
    """A peer library or an API a workload needs is missing: reported, never faked."""


class Context:
    """The data shared by every workload, plus per-workload set-up built once (untimed)."""

    def __init__(self, cfg, xb, xq, gt, data_source, mrl_data):
        self.cfg, self.xb, self.xq, self.gt = cfg, xb, xq, gt
        self.data_source, self.mrl_data = data_source, mrl_data
        self.reference, self._cache = {}, {}

    def cached(self, key, build):
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]


Workload = collections.namedtuple("Workload", "key title peer bar requires run")


def _pair(ctx, ours_fn, peer_fn):
    return measure_pair(ours_fn, peer_fn, ctx.cfg["runs"])


def _recall(ctx, I_ours, I_peer, k):
    """k-recall@k of both sides against the exact ground truth (full-dim NumPy search), and
    the fraction of result slots where the two sides return the same id."""
    from adanns_ref.metrics import knn_recall
    gt = ctx.gt[: len(I_ours)]
    q = {"metric": f"{k}-recall@{k}", "ours": knn_recall(gt, I_ours, k, k),
         "peer": knn_recall(gt, I_peer, k, k)}
    q["same_ids"] = float(np.mean(I_ours[:, :k] == I_peer[:, :k]))
    return q


def _faiss():
    try:
        return importlib.import_module("faiss")
    except ImportError as exc:
        raise NotAvailable(f"faiss is not installed ({exc})") from exc


def bench_exact_knn(ctx):
    from adanns_ref.flat import FlatIndex
    faiss = _faiss()
    xb, xq, k = ctx.xb, ctx.xq, ctx.cfg["k"]
    ours = FlatIndex(xb.shape[1])
    ours.add(xb)
    peer = faiss.IndexFlatL2(xb.shape[1])
    peer.add(xb)
    t_o, (_, I_o), t_p, (_, I_p) = _pair(ctx, lambda: ours.search(xq, k),
                                         lambda: peer.search(xq, k))
    flops = 2 * len(xq) * len(xb) * xb.shape[1]
    return [dict(ours=t_o, peer_timing=t_p, quality=_recall(ctx, I_o, I_p, k),
                 work=("gflop", flops, flops))]


def bench_kmeans(ctx):
    from adanns_ref.kmeans import KMeans
    faiss = _faiss()
    xb, K, niter = ctx.xb, ctx.cfg["nlist"], ctx.cfg["kmeans_niter"]

    def peer():
        km = faiss.Kmeans(xb.shape[1], K, niter=niter, seed=1234)
        km.train(xb)
        return km
    t_o, o, t_p, p = _pair(ctx, lambda: KMeans(K, niter=niter, seed=1234).fit(xb), peer)
    quality = {"metric": "final objective", "ours": float(o.obj[-1]), "peer": float(p.obj[-1]),
               "centroids_bit_identical": bool(np.array_equal(o.centroids, p.centroids))}
    per_iter = 2 * o.n_train_ * K * xb.shape[1]
    return [dict(ours=t_o, peer_timing=t_p, quality=quality,
                 work=("gflop", per_iter * len(o.obj), per_iter * len(p.obj)))]


def _ivf_flat_setup(ctx):
    from adanns_ref.ivf import IVFIndex
    faiss = _faiss()
    xb, d, nlist = ctx.xb, ctx.xb.shape[1], ctx.cfg["nlist"]
    ours = IVFIndex(d, nlist, normalize=False, niter=10, seed=1234)
    ours.train(xb)
    ours.add(xb)
    quantizer = faiss.IndexFlatL2(d)
    quantizer.add(np.ascontiguousarray(ours.centroids, dtype=np.float32))
    peer = faiss.IndexIVFFlat(quantizer, d, nlist)
    peer.add(xb)
    return ours, peer, quantizer


def bench_ivf_flat(ctx):
    ours, peer, quantizer = ctx.cached("ivf_flat", lambda: _ivf_flat_setup(ctx))
    xq, k, d, nlist = ctx.xq, ctx.cfg["k"], ctx.xb.shape[1], ctx.cfg["nlist"]
    sizes = np.asarray(ours.list_sizes(), dtype=np.int64)
    rows = []
    for nprobe in (1, 4, 16):
        peer.nprobe = nprobe
        t_o, (_, I_o), t_p, (_, I_p) = _pair(ctx, lambda: ours.search(xq, k, nprobe=nprobe),
                                             lambda: peer.search(xq, k))
        _, probed = quantizer.search(xq, nprobe)
        scanned = 4 * d * (int(sizes[probed].sum()) + len(xq) * nlist)
        rows.append(dict(workload=f"IVF-Flat nlist={nlist} nprobe={nprobe}", ours=t_o,
                         peer_timing=t_p, quality=_recall(ctx, I_o, I_p, k),
                         work=("gbyte", scanned, scanned)))
    return rows


def _adanns_setup(ctx, d_c, d_s):
    from adanns_ref.ivf import IVFIndex
    from adanns_ref.truncate import prefix
    from faiss.contrib.ivf_tools import add_preassigned
    faiss = _faiss()
    xb, d, nlist = ctx.xb, ctx.xb.shape[1], ctx.cfg["nlist"]
    ours = IVFIndex(d, nlist, d_c=d_c, d_s=d_s, normalize=True, niter=10, seed=1234)
    ours.train(xb)
    ours.add(xb)
    centroids = np.ascontiguousarray(ours.centroids, dtype=np.float32)
    if centroids.shape[1] != d_c:
        raise NotAvailable(f"IVFIndex.centroids has width {centroids.shape[1]}, expected d_c={d_c}")
    coarse = faiss.IndexFlatL2(d_c)
    coarse.add(centroids)
    assign = np.empty(len(xb), dtype=np.int64)
    for lst in range(nlist):
        assign[np.asarray(ours.list_ids(lst), dtype=np.int64)] = lst
    peer = faiss.IndexIVFFlat(faiss.IndexFlatL2(d_s), d_s, nlist)
    peer.is_trained = True  # lists are given by our routing; the d_s quantizer is never used
    add_preassigned(peer, prefix(xb, d_s), assign)
    return ours, peer, coarse


def bench_adanns_ivf(ctx, d_c=16):
    from faiss.contrib.ivf_tools import search_preassigned
    faiss = _faiss()
    d_s = ctx.xb.shape[1]
    ours, peer, coarse = ctx.cached("adanns_ivf", lambda: _adanns_setup(ctx, d_c, d_s))
    xq, k, nlist = ctx.xq, ctx.cfg["k"], ctx.cfg["nlist"]
    sizes = np.asarray(ours.list_sizes(), dtype=np.int64)

    def peer_search(nprobe):
        # the same work as ours: re-normalised d_c / d_s query prefixes, route, scan
        qc = xq[:, :d_c].copy()
        faiss.normalize_L2(qc)
        qs = xq[:, :d_s].copy()
        faiss.normalize_L2(qs)
        dis, lists = coarse.search(qc, nprobe)
        peer.nprobe = nprobe
        return search_preassigned(peer, qs, k, lists, dis)
    rows = []
    for nprobe in (1, 4, 16):
        t_o, (_, I_o), t_p, (_, I_p) = _pair(ctx, lambda: ours.search(xq, k, nprobe=nprobe),
                                             lambda: peer_search(nprobe))
        qc = xq[:, :d_c].copy()
        faiss.normalize_L2(qc)
        _, probed = coarse.search(qc, nprobe)
        scanned = 4 * (d_s * int(sizes[probed].sum()) + d_c * len(xq) * nlist)
        rows.append(dict(workload=f"AdANNS-IVF d_c={d_c} d_s={d_s} nlist={nlist} nprobe={nprobe}",
                         ours=t_o, peer_timing=t_p, quality=_recall(ctx, I_o, I_p, k),
                         work=("gbyte", scanned, scanned)))
    return rows


def _pq_codebooks_into_faiss(pq, d, M):
    faiss = _faiss()
    index = faiss.IndexPQ(d, M, 8)
    faiss.copy_array_to_vector(np.ascontiguousarray(pq.codebooks, dtype=np.float32).ravel(),
                               index.pq.centroids)
    index.is_trained = True
    return index


def bench_pq(ctx):
    from adanns_ref.pq import ProductQuantizer
    faiss = _faiss()
    xb, xq, k, M = ctx.xb, ctx.xq, ctx.cfg["k"], ctx.cfg["M"]
    n, d = xb.shape

    niter = ctx.cfg["pq_niter"]
    # Below 39 points per centroid (quick / tiny sizes) faiss warns and we refuse unless told:
    # opt in on our side and silence the warning on faiss's, so both just train.
    small = n < 39 * 256

    def ours_train():
        return ProductQuantizer(d, M, nbits=8, seed=1234, niter=niter, allow_small=small).train(xb)

    def peer_train():
        index = faiss.IndexPQ(d, M, 8)
        index.pq.cp.niter = niter
        if small:
            index.pq.cp.min_points_per_centroid = 0
        index.train(xb)
        return index
    rows = []
    t_o, pq, t_p, fpq = _pair(ctx, ours_train, peer_train)
    mse = {"metric": "reconstruction MSE",
           "ours": float(np.mean((pq.decode(pq.encode(xb)) - xb) ** 2)),
           "peer": float(np.mean((fpq.sa_decode(fpq.sa_encode(xb)) - xb) ** 2))}
    train_flops = 2 * min(n, 256 * 256) * 256 * d * niter
    rows.append(dict(workload=f"PQ train M={M} nbits=8, {niter} iterations ({n} x {d})",
                     ours=t_o, peer_timing=t_p, quality=mse, work=("gflop", train_flops, train_flops)))
    pq = ctx.cached("pq", lambda: pq)  # the first thread count's codebooks serve every row
    peer = _pq_codebooks_into_faiss(pq, d, M)  # same codebooks: codes must agree
    t_o, codes, t_p, fcodes = _pair(ctx, lambda: pq.encode(xb), lambda: peer.sa_encode(xb))
    ctx.cached("pq_codes", lambda: codes)
    same = {"metric": "identical codes (same codebooks)", "ours": 1.0,
            "peer": float(np.mean((codes == fcodes).all(axis=1)))}
    enc_flops = 2 * n * 256 * d
    rows.append(dict(workload=f"PQ encode M={M} ({n} x {d})", ours=t_o, peer_timing=t_p,
                     quality=same, work=("gflop", enc_flops, enc_flops)))
    peer.add(xb)
    t_o, (_, I_o), t_p, (_, I_p) = _pair(ctx, lambda: pq.search(codes, xq, k),
                                         lambda: peer.search(xq, k))
    scanned = len(xq) * n * M
    rows.append(dict(workload=f"PQ ADC search M={M} ({len(xq)} q x {n} codes)", ours=t_o,
                     peer_timing=t_p, quality=_recall(ctx, I_o, I_p, k),
                     work=("gbyte", scanned, scanned)))
    return rows


def bench_pq_nanopq(ctx):
    from adanns_ref.pq import ProductQuantizer
    try:
        import nanopq
    except ImportError as exc:
        raise NotAvailable(f"nanopq is not installed ({exc})") from exc
    xb, k, M = ctx.xb, ctx.cfg["k"], ctx.cfg["M"]
    xq = ctx.xq[: ctx.cfg["n_query_nanopq"]]
    d = xb.shape[1]

    pq = ctx.cached("pq", lambda: ProductQuantizer(
        d, M, nbits=8, seed=1234, niter=ctx.cfg["pq_niter"], allow_small=len(xb) < 39 * 256).train(xb))
    codes = ctx.cached("pq_codes", lambda: pq.encode(xb))
    npq = nanopq.PQ(M=M, Ks=256, verbose=False)
    npq.Ds, npq.codewords = d // M, np.ascontiguousarray(pq.codebooks, dtype=np.float32)

    def peer():
        # nanopq's documented ADC (one query at a time), plus the top-k a user must add
        out = np.empty((len(xq), k), dtype=np.int64)
        for i, q in enumerate(xq):
            dist = npq.dtable(q).adist(codes)
            top = np.argpartition(dist, k)[:k]
            out[i] = top[np.lexsort((top, dist[top]))]
        return None, out
    t_o, (_, I_o), t_p, (_, I_p) = _pair(ctx, lambda: pq.search(codes, xq, k), peer)
    scanned = len(xq) * len(xb) * M
    return [dict(ours=t_o, peer_timing=t_p, quality=_recall(ctx, I_o, I_p, k),
                 work=("gbyte", scanned, scanned))]


def _rotated_pq_mse(x, A, M):
    """A neutral yardstick for a rotation: MSE of a faiss PQ trained on x @ A.T (10 iters)."""
    faiss = _faiss()
    xr = np.ascontiguousarray(x @ A.T, dtype=np.float32)
    pq = faiss.ProductQuantizer(xr.shape[1], M, 8)
    pq.cp.niter = 10
    pq.cp.min_points_per_centroid = 0  # quick / tiny sizes: no "too few points" warning
    pq.train(xr)
    return float(np.mean((pq.decode(pq.compute_codes(xr)) - xr) ** 2))


def bench_opq(ctx):
    from adanns_ref.opq import OPQ
    faiss = _faiss()
    xb, M, niter, niter0 = ctx.xb, ctx.cfg["M"], ctx.cfg["opq_niter"], ctx.cfg["opq_niter_pq_0"]
    d = xb.shape[1]

    def ours():
        return OPQ(d, M, niter=niter, niter_pq_0=niter0, allow_small=len(xb) < 39 * 256).train(xb)

    def peer():
        opq = faiss.OPQMatrix(d, M)
        opq.niter, opq.niter_pq_0 = niter, niter0
        opq.train(xb)
        return opq
    t_o, o, t_p, p = _pair(ctx, ours, peer)
    A_peer = faiss.vector_to_array(p.A).reshape(p.d_out, p.d_in)
    A_ours = np.asarray(o.A, dtype=np.float32)
    quality = {"metric": "PQ MSE after rotation (faiss PQ, 10 iters)",
               "ours": _rotated_pq_mse(xb, A_ours, M), "peer": _rotated_pq_mse(xb, A_peer, M),
               "max_abs_A_diff": float(np.abs(A_ours - A_peer).max())}
    return [dict(ours=t_o, peer_timing=t_p, quality=quality, work=(None, None, None))]


def bench_funnel(ctx):
    from adanns_ref.flat import FlatIndex
    from adanns_ref.funnel import funnel_search
    xb, xq, c = ctx.xb, ctx.xq, ctx.cfg
    d, k, s, d0 = xb.shape[1], c["k_funnel"], c["shortlist"], 16
    exact = FlatIndex(d)
    exact.add(xb)
    t_o, (_, I_o, _), t_p, (_, I_p) = _pair(ctx, lambda: funnel_search(xb, xq, [(d0, s), (d, k)]),
                                            lambda: exact.search(xq, k))
    nq, n = len(xq), len(xb)
    return [dict(ours=t_o, peer_timing=t_p, quality=_recall(ctx, I_o, I_p, k),
                 work=("gflop", 2 * nq * (d0 * n + s * d), 2 * nq * d * n))]


def bench_ivfpq(ctx):
    from adanns_ref.ivfpq import IVFPQIndex
    faiss = _faiss()
    xb, xq, c = ctx.xb, ctx.xq, ctx.cfg
    d, nlist, M, nprobe, k = xb.shape[1], c["nlist"], c["M"], c["ivfpq_nprobe"], c["k"]

    def setup():
        # normalize=False: the faiss-identical configuration (the data is already unit-norm)
        ours = IVFPQIndex(d, nlist, M, nbits=8, normalize=False,
                          allow_small=len(xb) < 39 * 256)
        ours.train(xb)
        ours.add(xb)
        quantizer = faiss.IndexFlatL2(d)  # faiss gets our coarse centroids and PQ codebooks
        quantizer.add(np.ascontiguousarray(ours.centroids, dtype=np.float32))
        peer = faiss.IndexIVFPQ(quantizer, d, nlist, M, 8)
        faiss.copy_array_to_vector(np.ascontiguousarray(ours.pq.codebooks, np.float32).ravel(),
                                   peer.pq.centroids)
        peer.is_trained = True
        peer.precompute_table()  # without it faiss's by-residual distances are wrong (SPEC §6)
        peer.add(xb)
        return ours, peer, quantizer
    ours, peer, quantizer = ctx.cached("ivfpq", setup)
    peer.nprobe = nprobe
    t_o, (_, I_o), t_p, (_, I_p) = _pair(ctx, lambda: ours.search(xq, k, nprobe=nprobe),
                                         lambda: peer.search(xq, k))
    sizes = np.asarray(ours.list_sizes(), dtype=np.int64)
    _, probed = quantizer.search(xq, nprobe)
    scanned = M * int(sizes[probed].sum()) + 4 * d * len(xq) * nlist
    return [dict(ours=t_o, peer_timing=t_p, quality=_recall(ctx, I_o, I_p, k),
                 work=("gbyte", scanned, scanned))]


MRL_NESTING = (8, 16, 32, 64, 128, 256)
MRL_HIDDEN = (512, 512)
MRL_RECIPE = dict(batch_size=256, lr=0.05, momentum=0.9, weight_decay=1e-4, label_smoothing=0.1)


def _mrl_data(ctx):
    """Fashion-MNIST train rows (flattened, [0, 1]) if installed, else seeded stand-in images."""
    n = ctx.cfg["mrl_rows"]
    if ctx.mrl_data != "synthetic":
        from mrl_ref.data import DatasetNotFoundError, load_fashion_mnist
        try:
            X, y = load_fashion_mnist("train", subset=None if n == 60000 else n, flatten=True)
            return X, y.astype(np.int64), f"Fashion-MNIST train, first {n} rows"
        except DatasetNotFoundError:
            if ctx.mrl_data == "fashion-mnist":
                raise
    X, y = _bench_data.image_like(n)
    return X, y, f"seeded synthetic 784-dim images ({n} rows; Fashion-MNIST not used)"


def _torch_epoch(X, y, seed=0):
    """One epoch of the same model and step in PyTorch: MLP 784-512-512-256 (ReLU), one
    nn.Linear head per nesting size on z[:, :m], summed label-smoothed CE, SGD momentum with
    decay off for biases, per-step linear lr decay, per-size train accuracy counted (as
    mrl_ref's loop does for its history). Returns the mean train loss of the epoch."""
    import torch
    from torch import nn
    torch.manual_seed(seed)
    sizes = (X.shape[1],) + MRL_HIDDEN + (MRL_NESTING[-1],)
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    body = nn.Sequential(*layers)
    heads = nn.ModuleList(nn.Linear(m, int(y.max()) + 1) for m in MRL_NESTING)
    params = list(body.parameters()) + list(heads.parameters())
    peak = MRL_RECIPE["lr"]
    opt = torch.optim.SGD([{"params": [p for p in params if p.ndim > 1],
                            "weight_decay": MRL_RECIPE["weight_decay"]},
                           {"params": [p for p in params if p.ndim == 1], "weight_decay": 0.0}],
                          lr=peak, momentum=MRL_RECIPE["momentum"])
    ce = nn.CrossEntropyLoss(label_smoothing=MRL_RECIPE["label_smoothing"])
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(X)))
    bs, n = MRL_RECIPE["batch_size"], len(X)
    steps = -(-n // bs)
    loss_sum, correct = 0.0, torch.zeros(len(MRL_NESTING), dtype=torch.int64)
    for step, start in enumerate(range(0, n, bs)):
        idx = order[start:start + bs]
        yb = yt[idx]
        for group in opt.param_groups:
            group["lr"] = peak * (steps - step) / steps
        z = body(Xt[idx])
        logits = [h(z[:, :m]) for h, m in zip(heads, MRL_NESTING)]
        loss = sum(ce(lg, yb) for lg in logits)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += float(loss.detach()) * len(idx)
        with torch.no_grad():
            correct += torch.stack([(lg.argmax(dim=1) == yb).sum() for lg in logits])
    return loss_sum / n


def bench_mrl_epoch(ctx):
    from mrl_ref.train import train_mrl
    if importlib.util.find_spec("torch") is None:
        raise NotAvailable("PyTorch is not installed (pip install adanns-ref[torch])")
    X, y, source = ctx.cached("mrl_data", lambda: _mrl_data(ctx))

    def ours():
        model = train_mrl(X, y, list(MRL_NESTING), hidden=MRL_HIDDEN, epochs=1, warmup=0,
                          batch_size=MRL_RECIPE["batch_size"], lr=MRL_RECIPE["lr"],
                          optimizer="sgd", momentum=MRL_RECIPE["momentum"],
                          weight_decay=MRL_RECIPE["weight_decay"],
                          label_smoothing=MRL_RECIPE["label_smoothing"], seed=0, progress=False)
        return float(model.history[-1]["loss"])
    t_o, loss_o, t_p, loss_p = _pair(ctx, ours, lambda: _torch_epoch(X, y))
    sizes = (X.shape[1],) + MRL_HIDDEN + (MRL_NESTING[-1],)
    n_classes = int(y.max()) + 1
    macs = sum(a * b for a, b in zip(sizes[:-1], sizes[1:])) + n_classes * sum(MRL_NESTING)
    # per sample: forward 2 MACs, weight gradients 2 MACs, input gradients 2 MACs except for
    # the first layer (the images need no gradient)
    flops = len(X) * (6 * macs - 2 * sizes[0] * sizes[1])
    quality = {"metric": "mean train loss of the epoch", "ours": loss_o, "peer": loss_p}
    return [dict(ours=t_o, peer_timing=t_p, note=source, quality=quality,
                 work=("gflop", flops, flops))]


WORKLOADS = [
    Workload("exact_knn",
             lambda c: f"exact k-NN {c['n_query']} x {c['n_db']} x {c['dim']}, k={c['k']}",
             "faiss IndexFlatL2", 1.0, ["adanns_ref.flat"], bench_exact_knn),
    Workload("kmeans", lambda c: f"k-means {c['n_db']} x {c['dim']}, k={c['nlist']}, "
             f"{c['kmeans_niter']} iterations", "faiss.Kmeans", 1.0, ["adanns_ref.kmeans"],
             bench_kmeans),
    Workload("ivf_flat", lambda c: f"IVF-Flat nlist={c['nlist']} nprobe=1/4/16",
             "faiss IndexIVFFlat (our centroids)", 1.25, ["adanns_ref.ivf"], bench_ivf_flat),
    Workload("adanns_ivf", lambda c: f"AdANNS-IVF d_c=16 d_s={c['dim']} nlist={c['nlist']}",
             "faiss ivf_tools.search_preassigned", 1.25, ["adanns_ref.ivf"], bench_adanns_ivf),
    Workload("pq", lambda c: f"PQ M={c['M']} train ({c['pq_niter']} iter.) / encode / ADC search",
             "faiss IndexPQ", 1.5,
             ["adanns_ref.pq"], bench_pq),
    Workload("pq_nanopq", lambda c: f"PQ ADC search M={c['M']} ({c['n_query_nanopq']} queries)",
             "nanopq PQ.dtable().adist()", 0.05, ["adanns_ref.pq"], bench_pq_nanopq),
    Workload("opq", lambda c: f"OPQ M={c['M']} train, niter={c['opq_niter']} "
             f"(inner PQ {c['opq_niter_pq_0']} then 4 k-means iterations)",
             "faiss OPQMatrix", 1.5, ["adanns_ref.opq"], bench_opq),
    Workload("ivfpq", lambda c: f"IVFPQ nlist={c['nlist']} M={c['M']} nprobe={c['ivfpq_nprobe']}",
             "faiss IndexIVFPQ", 1.5, ["adanns_ref.ivfpq"], bench_ivfpq),
    Workload("funnel", lambda c: f"funnel 16 -> {c['dim']}, shortlist {c['shortlist']}, "
             f"k={c['k_funnel']}", "our exact search at full dim", None,
             ["adanns_ref.funnel", "adanns_ref.flat"], bench_funnel),
    Workload("mrl_epoch", lambda c: f"MRL training epoch, MLP 784-512-512-256, 6 heads, "
             f"batch 256, {c['mrl_rows']} rows", "PyTorch CPU, same model", 1.5,
             ["mrl_ref.train"], bench_mrl_epoch),
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


# ---------------------------------------------------------------- report

def _fmt_t(t):
    return f"{t['median_s']:.4g} ({t['min_s']:.4g}–{t['max_s']:.4g})"


def _fmt_num(x):
    return "–" if x is None else (f"{x:.4g}" if isinstance(x, float) else str(x))


def _fmt_quality(q):
    if not q:
        return "–"
    extra = "".join(f"; {k.replace('_', ' ')} {_fmt_num(v)}" for k, v in q.items()
                    if k not in ("metric", "ours", "peer"))
    return f"{q['metric']}: {_fmt_num(q['ours'])} / {_fmt_num(q['peer'])}{extra}"


def _fmt_limit(lim):
    if not lim:
        return "n/a"
    return (f"{lim['ours']:.3g} / {lim['peer']:.3g} {lim['unit']} "
            f"(machine {lim['machine']:.3g}: {100 * lim['ours'] / lim['machine']:.0f}% / "
            f"{100 * lim['peer'] / lim['machine']:.0f}%)")


def to_markdown(result):
    """The human-readable report: machine and protocol header, then one table per thread count."""
    m = result["machine"]
    lines = ["# Benchmark: adanns_ref / mrl_ref vs faiss, nanopq, PyTorch", "",
             f"Generated by `{result['command']}` on {m['date_utc']}. Do not edit by hand.", "",
             "## Machine and environment", "",
             f"- CPU: {m['cpu']} ({m['logical_cpus']} logical CPUs); {m['platform']}",
             "- Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
             f"- numba threading layer: {m['numba_threading_layer']}",
             "- Load average (1/5/15 min) at start / end: " + " / ".join(
                 ", ".join(f"{v:.2f}" for v in m["load_average_1_5_15min"][w]) for w in ("start", "end"))
             + f" (on {m['logical_cpus']} CPUs: anything above 0 is other work competing)",
             "- BLAS / OpenMP pools (threadpoolctl): " + "; ".join(
                 f"{p['library']} ({p['internal_api']} {p['version'] or ''}"
                 f"{', kernel ' + p['architecture'] if p.get('architecture') else ''})"
                 for p in m["thread_pools"]),
             "- Environment: " + ", ".join(f"{k}={v}" for k, v in m["env"].items() if v is not None)
             + " (OPENBLAS_CORETYPE pins OpenBLAS's kernel choice for NumPy *and* faiss; "
               "recorded, not changed)",
             f"- Data: {result['data']}; sizes: "
             + ", ".join(f"{k}={v}" for k, v in result["size"].items()),
             "- Machine reference: " + "; ".join(
                 f"{t} thread(s): sgemm {r['sgemm_n']}^3 {r['sgemm_gflops']:.1f} GFLOP/s, sgemv "
                 f"read of {r['sgemv_mib']} MiB {r['sgemv_read_gbps']:.1f} GB/s"
                 for t, r in result["reference"].items()),
             "", "## Protocol", "",
             "Both sides run in one process on the same arrays, pinned to the same thread count "
             "(faiss.omp_set_num_threads, numba.set_num_threads, threadpoolctl for every BLAS/OpenMP "
             "pool, torch.set_num_threads). Times in seconds: median (min–max) of the timed runs "
             "after one warm-up call per side, runs alternating ours / peer; '1st call' is that "
             "warm-up (numba compile or cache load + one run). Ratio = ours / peer (lower is better for us); pass = ratio <= bar. Quality is "
             "'ours / peer' on the timed outputs; k-recall@k is against exact NumPy ground truth at "
             "the full dim; 'same ids' is the fraction of result slots where both sides agree. "
             "Limit: achieved GFLOP/s (GEMM-bound rows) or GB/s of vectors/codes scanned "
             "(scan-bound rows) of ours / peer, against NumPy sgemm / sgemv on this machine "
             "(best of before / after the workloads; sgemv reads from DRAM, so scans of "
             "data that fits in cache can exceed it). "
             "Peak mem: peak RSS increase during one timed call (VmHWM reset via "
             "/proc/self/clear_refs), ours / peer, in MB.", ""]
    for threads in result["threads"]:
        lines += [f"## {threads} thread(s)", "",
                  "| Workload | Peer | Ours s | Peer s | Ratio | Bar | Pass | Ours 1st call s "
                  "| Quality (ours / peer) | Limit | Peak mem MB |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in (r for r in result["rows"] if r["threads"] == threads):
            if r["status"] != "ok":
                lines.append(f"| {r['workload']} | {r['peer']} | {r['status']}: {r['reason']} "
                             f"| | | {_fmt_num(r['bar'])} | | | | | |")
                continue
            if r["pass"] is None:
                verdict = f"speed-up {1 / r['ratio']:.2f}x"
            else:
                verdict = "pass" if r["pass"] else "**MISS**"
            mem = "/".join(_fmt_num(t["peak_rss_mb"] and round(t["peak_rss_mb"], 1))
                           for t in (r["ours"], r["peer_timing"]))
            name = r["workload"] + (f" ({r['note']})" if r.get("note") else "")
            lines.append(f"| {name} | {r['peer']} | {_fmt_t(r['ours'])} "
                         f"| {_fmt_t(r['peer_timing'])} | {r['ratio']:.3f} | {_fmt_num(r['bar'])} "
                         f"| {verdict} | {r['ours']['first_s']:.4g} | {_fmt_quality(r['quality'])} "
                         f"| {_fmt_limit(r['limit'])} | {mem} |")
        lines.append("")
    missed = [r for r in result["rows"] if r["status"] == "ok" and r["pass"] is False]
    absent = [r for r in result["rows"] if r["status"] != "ok"]
    lines += ["## Summary", "",
              f"- Rows: {len(result['rows'])}; passed {sum(r.get('pass') is True for r in result['rows'])}, "
              f"missed {len(missed)}, not run {len(absent)}."]
    lines += [f"- Missed: {r['workload']} at {r['threads']} thread(s): ratio {r['ratio']:.2f} > "
              f"bar {r['bar']}" for r in missed]
    lines += [f"- {r['status'].capitalize()}: {r['workload']} at {r['threads']} thread(s): {r['reason']}"
              for r in absent]
    return "\n".join(lines) + "\n"


def _json_default(obj):
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def _one_line(r):
    if r["status"] != "ok":
        return f"{r['workload']}: {r['status']} ({r['reason']})"
    return (f"{r['workload']}: ours {r['ours']['median_s']:.4g}s peer {r['peer_timing']['median_s']:.4g}s "
            f"ratio {r['ratio']:.3f} bar {r['bar']} pass {r['pass']}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, nargs="+", choices=(1, 2), default=[1, 2],
                   help="thread counts to run at (default: 1 then 2)")
    p.add_argument("--quick", action="store_true", help="small sizes and 1 run (CI, < 2 min)")
    p.add_argument("--size", choices=sorted(SIZES), default=None,
                   help="size preset (default full; --quick = quick; tiny is for the tests)")
    p.add_argument("--runs", type=int, default=None, help="timed runs per side (default by size)")
    p.add_argument("--out-dir", default="experiments")
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


if __name__ == "__main__":
    sys.exit(main())
