"""Memory-bounded scale-out run: IVF-1024 and AdANNS-IVF built from a 1 GB .fbin, in-process and
on a Dask LocalCluster whose workers have a memory limit.

    python -m experiments.benchmark.scale_out [--cache DIR] [--n 2000000] [--d 128] [--workers 2]
                                    [--memory-limit 1.5GB] [--out scale_out.json]

Generates (once, into --cache) an n x d float32 .fbin of a seeded Gaussian mixture, written in
chunks so that the generator never holds it in memory. Then, for each method and mode, a fresh
Python process trains and adds the file and reports its wall times, its peak resident memory
(``ru_maxrss``) and, on the cluster, each worker's peak: the in-process run reads the file as a
memory map, the cluster run passes the path (each worker reads its own rows) with ``client=``.
The SHA-256 of the centroids and of the lists shows that both modes built the same index.
On the cluster, Dask's task stream splits each phase into the compute time of the block tasks
(summed) and the driver's serial part (the README's 100M-vector estimate reads both).
Prints a markdown table (for the benchmark document) and writes the rows to --out as JSON.
Timings need a quiet machine.
"""
import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

METHODS = {"IVF-1024": dict(nlist=1024), "AdANNS-IVF (d_c=32)": dict(nlist=1024, d_c=32)}
CHUNK_ROWS = 1 << 16


def make_data(path, n, d, seed=0, n_centres=4096):
    """Write an n x d .fbin of a Gaussian mixture (seeded, chunk by chunk) unless it exists."""
    if os.path.exists(path):
        return path
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    centres = np.random.default_rng(seed).standard_normal((n_centres, d)).astype(np.float32)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(np.array([n, d], dtype="<u4").tobytes())
        for c, i0 in enumerate(range(0, n, CHUNK_ROWS)):
            rng = np.random.default_rng([seed, c])
            rows = min(CHUNK_ROWS, n - i0)
            x = centres[rng.integers(n_centres, size=rows)]
            x += np.float32(0.5) * rng.standard_normal((rows, d), dtype=np.float32)
            f.write(x.astype("<f4").tobytes())
    os.replace(tmp, path)
    return path


def _peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _digest(*arrays):
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def _warm_up():
    """Load numba's cached kernels (a first call costs seconds) before anything is timed."""
    import adanns_ref as ar

    x = np.random.default_rng(0).standard_normal((2000, 16)).astype(np.float32)
    index = ar.IVFIndex(16, 32, niter=2)
    index.train(x)
    index.add(x)


def _task_stream(client):
    """Dask's record of every task run inside the block (a no-op without a client)."""
    import contextlib

    if client is None:
        return contextlib.nullcontext(None)
    import distributed
    return distributed.get_task_stream(client)


def _phase_times(name, tasks, wall_s):
    """Per-phase split of a cluster run from Dask's task stream: `<name>_task_compute_s` (compute
    seconds summed over tasks: the per-block cost, for the paper estimate), `<name>_workers_busy_s`
    (wall time during which at least one worker computed) and `<name>_driver_s` (the rest of the
    wall time: the driver's serial part, its centroid updates or list merge, plus scheduling)."""
    spans = sorted((ss["start"], ss["stop"]) for t in tasks for ss in t["startstops"]
                   if ss["action"] == "compute")
    busy, end = 0.0, float("-inf")
    for start, stop in spans:
        if stop > end:
            busy += stop - max(start, end)
            end = stop
    return {f"{name}_task_compute_s": sum(b - a for a, b in spans), f"{name}_workers_busy_s": busy,
            f"{name}_driver_s": wall_s - busy, f"{name}_n_tasks": len(spans)}


def run_one(path, method, mode, workers, memory_limit):
    """Train + add one method in this process (mode "in-process") or on a LocalCluster."""
    import adanns_ref as ar

    d = ar.io.read_fbin(path, mmap=True).shape[1]
    index = ar.IVFIndex(d, **METHODS[method])
    client = cluster = None
    where = "in-process"
    x = ar.io.read_fbin(path, mmap=True)
    if mode == "dask":
        import distributed
        cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                           memory_limit=memory_limit, dashboard_address=None)
        client = distributed.Client(cluster)
        client.run(_warm_up)
        x = path
        where = f"LocalCluster {workers} x 1 thread, memory_limit={memory_limit}"
    _warm_up()
    phases = {}
    t0 = time.perf_counter()
    with _task_stream(client) as train_tasks:
        index.train(x, client=client)
    t1 = time.perf_counter()
    with _task_stream(client) as add_tasks:
        index.add(x, client=client)
    t2 = time.perf_counter()
    row = {"method": method, "mode": where, "train_s": t1 - t0, "add_s": t2 - t1,
           "driver_peak_gb": _peak_rss_bytes() / 1e9,
           "centroids_sha": _digest(index.centroids),
           "lists_sha": _digest(index._ids, index._offsets)}
    if client is not None:
        for name, tasks, wall in (("train", train_tasks, t1 - t0), ("add", add_tasks, t2 - t1)):
            phases.update(_phase_times(name, tasks.data, wall))
        row["phases"] = phases
        peaks = client.run(_peak_rss_bytes)
        row["worker_peak_gb"] = [peaks[w] / 1e9 for w in sorted(peaks)]
        client.close()
        cluster.close()
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m experiments.benchmark.scale_out",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", default="results/cache/scale_out", help="where the .fbin goes")
    parser.add_argument("--n", type=int, default=2_000_000)
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="1.5GB")
    parser.add_argument("--out", default="scale_out.json")
    parser.add_argument("--one", nargs=3, metavar=("PATH", "METHOD", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:  # child process: one measurement, as JSON on stdout
        print(json.dumps(run_one(*args.one, args.workers, args.memory_limit)))
        return
    path = make_data(os.path.join(args.cache, f"gauss_{args.n}x{args.d}.fbin"), args.n, args.d)
    rows = []
    for method in METHODS:
        for mode in ("in-process", "dask"):
            print(f"{method}, {mode} ...", file=sys.stderr)
            out = subprocess.run([sys.executable, "-m", "experiments.benchmark.scale_out", "--workers",
                                  str(args.workers), "--memory-limit", args.memory_limit,
                                  "--one", path, method, mode],
                                 check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=1)
    print(f"{args.n:,} x {args.d} float32 ({args.n * args.d * 4 / 1e9:.1f} GB .fbin)\n")
    print("| method | where | train (s) | add (s) | driver peak (GB) | worker peaks (GB) | "
          "centroids / lists SHA-256 |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        peaks = ", ".join(f"{p:.2f}" for p in r.get("worker_peak_gb", [])) or "-"
        print(f"| {r['method']} | {r['mode']} | {r['train_s']:.1f} | {r['add_s']:.1f} | "
              f"{r['driver_peak_gb']:.2f} | {peaks} | {r['centroids_sha']} / {r['lists_sha']} |")
    phased = [r for r in rows if "phases" in r]
    if phased:
        print("\n| method | phase | tasks | task compute, summed (s) | workers busy (s) | "
              "driver + scheduling (s) |")
        print("|---|---|---|---|---|---|")
        for r in phased:
            for name in ("train", "add"):
                p = r["phases"]
                print(f"| {r['method']} | {name} | {p[name + '_n_tasks']} | "
                      f"{p[name + '_task_compute_s']:.1f} | {p[name + '_workers_busy_s']:.1f} | "
                      f"{p[name + '_driver_s']:.1f} |")


if __name__ == "__main__":
    main()
