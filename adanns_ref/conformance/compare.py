"""Comparisons and seeded data shared by the conformance checks.

Each comparison takes (faiss's result, ours) and returns (deviation, failure message or None);
`recorder` turns those into `Result` rows.
"""
import contextlib
import os
import sys
from dataclasses import dataclass

import numpy as np

from .. import faiss_bridge
from ..testing import assert_centroids_equal, assert_codes_equal, assert_knn_equal, max_deviation


@dataclass(frozen=True)
class Result:
    """One check of one case: passed, the largest deviation from faiss, and why it failed."""
    component: str
    case: str
    check: str
    passed: bool
    max_deviation: float
    message: str = ""


# --------------------------------------------------------------------------- comparisons
# Each returns (deviation, failure message or None).

def outcome(dev, check_fn):
    try:
        check_fn()
    except AssertionError as exc:
        return dev, str(exc).splitlines()[0]
    return dev, None


def knn(ref, ours, rtol=1e-5, atol=1e-6):
    (D_ref, I_ref), (D, I) = ref, ours
    dev = max_deviation(D_ref, D) if np.shape(D) == np.shape(D_ref) else float("inf")
    return outcome(dev, lambda: assert_knn_equal(D_ref, I_ref, D, I, rtol, atol))


def identical(ref, ours):
    """Same ids and bit-identical distances (for two searches of the same data)."""
    (D_ref, I_ref), (D, I) = ref, ours
    def check():
        if not (np.array_equal(I_ref, I) and np.array_equal(D_ref, D)):
            raise AssertionError(f"results differ at {int((I_ref != I).sum())} ids / "
                                 f"{int((D_ref != D).sum())} distances")
    return outcome(max_deviation(D_ref, D), check)


def arrays(ref, ours, exact=True, rtol=1e-5, atol=1e-6):
    ref, ours = np.asarray(ref), np.asarray(ours)
    if ref.shape != ours.shape:
        return float("inf"), f"shapes differ: faiss {ref.shape} vs ours {ours.shape}"
    return outcome(max_deviation(ref, ours),
                    lambda: assert_centroids_equal(ref.reshape(len(ref), -1), ours.reshape(len(ours), -1),
                                                   exact=exact, rtol=rtol, atol=atol))


def codes(ref, ours):
    same_shape = ref.shape == ours.shape
    dev = float(np.abs(ref.astype(np.int64) - ours.astype(np.int64)).max()) if same_shape else float("inf")
    return outcome(dev, lambda: assert_codes_equal(ref, ours))


def recorder(component, case):
    results = []

    def record(check, dev_msg):
        dev, msg = dev_msg
        results.append(Result(component, case, check, msg is None, float(dev), msg or ""))
    return results, record


# --------------------------------------------------------------------------- helpers

def import_faiss():
    return faiss_bridge.import_faiss()


@contextlib.contextmanager
def quiet_stderr():
    """Silence faiss's C++ stderr warnings (e.g. "please provide at least 39 * k points")
    during its training calls, so the CLI table stays readable."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def blobs(n, d, seed, dup=0, spread=3.0):
    """n points around 12 Gaussian centres in d dims; the last `dup` rows copy earlier rows."""
    rng = np.random.default_rng(seed)
    centres = spread * rng.standard_normal((12, d))
    x = (centres[rng.integers(0, 12, n)] + rng.standard_normal((n, d))).astype(np.float32)
    if dup:
        x[n - dup:] = x[rng.integers(0, n - dup, dup)]
    return x


def queries(nq, d, seed):
    return np.random.default_rng(seed + 1000).standard_normal((nq, d)).astype(np.float32) * 3


def form_atol(q, x):
    """Absolute rounding bound of the BLAS forms ||q||^2 + ||x||^2 - 2 <q, x> and <q, x>: the
    terms cancel, so their size, not the result's, sets the error (~1e-6 of the largest)."""
    return 1e-6 * float(np.einsum("ij,ij->i", q, q).max() + np.einsum("ij,ij->i", x, x).max())


def ivf_search(index, q, k, nprobe):
    return index.search(q, k, params=import_faiss().SearchParametersIVF(nprobe=nprobe))


def hnsw_search_with_ndis(index, q, k):
    """faiss HNSW search (any index wrapping an IndexHNSW) -> ((D, I), ndis (nq,) int64): the
    hnsw_stats.ndis of each query; the stats are global, so the queries run one at a time."""
    faiss = import_faiss()
    D, I = index.search(q, k)
    ndis = []
    for row in q:
        faiss.cvar.hnsw_stats.reset()
        index.search(row[None], k)
        ndis.append(faiss.cvar.hnsw_stats.ndis)
    return (D, I), np.array(ndis, np.int64)
