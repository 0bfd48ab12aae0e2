"""Serve-side latency: every configuration is timed on its faiss form, the object `--export`
writes (`families.Searcher.faiss_form`), not on this project's numba search.

Protocol per configuration, on one fixed query sample (`data.timing_sample`, `TIMING_QUERIES`
rows, fewer only if there are fewer queries; the report states the number):

- four modes: faiss OpenMP threads 1 and all (`faiss.omp_get_max_threads()` at start), each as
  one batch call ``index.search(xq, k)`` and as one query per call (a Python loop, so it
  includes the ~µs of SWIG call overhead a Python server pays too);
- per mode one warm-up pass, then `REPEATS` timed passes; ms/query of a pass = wall time /
  number of queries; the row keeps the median and the min and max over the passes.

Column names: ``ms_1t`` / ``ms_all`` (batch, median), ``ms_1t_min`` / ``ms_1t_max`` etc., and
``ms_1t_q1`` / ``ms_all_q1`` (one query per call, median). Choices read ``ms_1t``.
"""
import time

import numpy as np

REPEATS = 5
TIMING_QUERIES = 500
MODES = (("1t", True), ("1t_q1", False), ("all", True), ("all_q1", False))


def _pass(index, xq, k, batch):
    t0 = time.perf_counter()
    if batch:
        index.search(xq, k)
    else:
        for i in range(xq.shape[0]):
            index.search(xq[i:i + 1], k)
    return time.perf_counter() - t0


def time_faiss(faiss, index, xq, k, repeats=REPEATS):
    """ms/query of faiss `index` on xq (n, D) float32 in the four `MODES` -> dict with, per mode
    m, ``ms_m`` (median), ``ms_m_min`` and ``ms_m_max`` (over `repeats` passes after a warm-up)."""
    if repeats < 1:
        raise ValueError(f"repeats={repeats}: time at least one pass")
    n = max(1, xq.shape[0])
    threads = faiss.omp_get_max_threads()
    out = {}
    try:
        for mode, batch in MODES:
            faiss.omp_set_num_threads(1 if mode.startswith("1t") else threads)
            _pass(index, xq, k, batch)  # warm-up: page in the index, fill caches
            ms = np.array([_pass(index, xq, k, batch) for _ in range(repeats)]) * 1e3 / n
            out[f"ms_{mode}"] = float(np.median(ms))
            out[f"ms_{mode}_min"] = float(ms.min())
            out[f"ms_{mode}_max"] = float(ms.max())
    finally:
        faiss.omp_set_num_threads(threads)
    return out
