"""Measurement for experiments.benchmark: paired timing with peak RSS, the machine's sgemm /
sgemv reference, thread pinning, and what every workload shares (Context, NotAvailable, pair,
recall)."""
import collections
import gc
import importlib
import statistics
import sys
import time

import numpy as np


def log(msg):
    print(f"[benchmark {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


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


def pair(ctx, ours_fn, peer_fn):
    return measure_pair(ours_fn, peer_fn, ctx.cfg["runs"])


def recall(ctx, I_ours, I_peer, k):
    """k-recall@k of both sides against the exact ground truth (full-dim NumPy search), and
    the fraction of result slots where the two sides return the same id."""
    from adanns_ref.evaluation.metrics import knn_recall
    gt = ctx.gt[: len(I_ours)]
    q = {"metric": f"{k}-recall@{k}", "ours": knn_recall(gt, I_ours, k, k),
         "peer": knn_recall(gt, I_peer, k, k)}
    q["same_ids"] = float(np.mean(I_ours[:, :k] == I_peer[:, :k]))
    return q


def import_faiss():
    try:
        return importlib.import_module("faiss")
    except ImportError as exc:
        raise NotAvailable(f"faiss is not installed ({exc})") from exc
