"""Conformance suite: every component of adanns_ref checked against faiss over a grid of cases.

    python -m adanns_ref.conformance [--quick] [--only COMPONENT ...] [--json PATH]

prints a table (component | case | check | result | max deviation) and a JSON summary (to
stdout, or atomically to PATH) and exits 1 if any check fails. ``--quick`` runs the grid
``tests/conformance`` runs under pytest; the default runs the full grid (about a minute on two
cores). Both call the same functions, so a pytest failure and a CLI failure are the same fact.

Each ``check_<component>(case, **params)`` builds the faiss counterpart of one case and returns
one `Result` per check. Data are seeded Gaussian blobs (no k-means near-ties, so bit-exact checks
are meaningful) with odd and non-power-of-two dims, optional duplicated rows (distance ties) and,
for IVF, centroids far from the data (empty lists, k > the probed list sizes). Comparisons use
`adanns_ref.testing` (ties as sets; ids exactly, distances rtol 1e-5, or bit for bit where the
module documents faiss-identical floats; where a BLAS form cancels, an absolute tolerance of 1e-6
times the squared norms involved). Deviation = max |ours - faiss| over the compared values (for
codes: over the code bytes); JSON writes an infinite deviation (shape mismatch) as null.

Components: kmeans (exact path bit for bit; GEMM path n * d >= 128000 to rounding), flat, ivf
(faiss training, lists, search at several nprobe; the bridge), adanns_ivf (d_c != d_s via
``ivf_tools.search_preassigned``), pq (codebooks, codes, ADC tables and search, nbits 4 and 8),
opq (rotation trained from the same start A), ivfpq, metrics (k-recall@N against faiss's
intersection count; label metrics against a per-query loop, faiss has none).
"""
import argparse
import contextlib
import json
import os
import sys
from dataclasses import asdict, dataclass

import numpy as np

from . import faiss_bridge, metrics
from ._persist import atomic_write_text
from .flat import FlatIndex
from .ivf import IVFIndex
from .ivfpq import IVFPQIndex
from .kmeans import KMeans
from .opq import OPQ, random_rotation
from .pq import ProductQuantizer
from .pqindex import PQIndex
from .testing import assert_centroids_equal, assert_codes_equal, assert_knn_equal, max_deviation
from .truncate import prefix


@dataclass(frozen=True)
class Result:
    """One check of one case: passed, the largest deviation from faiss, and why it failed."""
    component: str
    case: str
    check: str
    passed: bool
    max_deviation: float
    message: str = ""


@dataclass(frozen=True)
class Case:
    """One point of the grid: the component's check function is called with `params`."""
    component: str
    name: str
    params: dict

    @property
    def id(self):
        return f"{self.component}-{self.name}"


# --------------------------------------------------------------------------- comparisons
# Each returns (deviation, failure message or None).

def _outcome(dev, check_fn):
    try:
        check_fn()
    except AssertionError as exc:
        return dev, str(exc).splitlines()[0]
    return dev, None


def _knn(ref, ours, rtol=1e-5, atol=1e-6):
    (D_ref, I_ref), (D, I) = ref, ours
    dev = max_deviation(D_ref, D) if np.shape(D) == np.shape(D_ref) else float("inf")
    return _outcome(dev, lambda: assert_knn_equal(D_ref, I_ref, D, I, rtol, atol))


def _identical(ref, ours):
    """Same ids and bit-identical distances (for two searches of the same data)."""
    (D_ref, I_ref), (D, I) = ref, ours
    def check():
        if not (np.array_equal(I_ref, I) and np.array_equal(D_ref, D)):
            raise AssertionError(f"results differ at {int((I_ref != I).sum())} ids / "
                                 f"{int((D_ref != D).sum())} distances")
    return _outcome(max_deviation(D_ref, D), check)


def _arrays(ref, ours, exact=True, rtol=1e-5, atol=1e-6):
    ref, ours = np.asarray(ref), np.asarray(ours)
    if ref.shape != ours.shape:
        return float("inf"), f"shapes differ: faiss {ref.shape} vs ours {ours.shape}"
    return _outcome(max_deviation(ref, ours),
                    lambda: assert_centroids_equal(ref.reshape(len(ref), -1), ours.reshape(len(ours), -1),
                                                   exact=exact, rtol=rtol, atol=atol))


def _codes(ref, ours):
    same_shape = ref.shape == ours.shape
    dev = float(np.abs(ref.astype(np.int64) - ours.astype(np.int64)).max()) if same_shape else float("inf")
    return _outcome(dev, lambda: assert_codes_equal(ref, ours))


def _recorder(component, case):
    results = []

    def record(check, outcome):
        dev, msg = outcome
        results.append(Result(component, case, check, msg is None, float(dev), msg or ""))
    return results, record


# --------------------------------------------------------------------------- helpers

def _faiss():
    return faiss_bridge._import_faiss()


@contextlib.contextmanager
def _quiet_stderr():
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


def _blobs(n, d, seed, dup=0, spread=3.0):
    """n points around 12 Gaussian centres in d dims; the last `dup` rows copy earlier rows."""
    rng = np.random.default_rng(seed)
    centres = spread * rng.standard_normal((12, d))
    x = (centres[rng.integers(0, 12, n)] + rng.standard_normal((n, d))).astype(np.float32)
    if dup:
        x[n - dup:] = x[rng.integers(0, n - dup, dup)]
    return x


def _queries(nq, d, seed):
    return np.random.default_rng(seed + 1000).standard_normal((nq, d)).astype(np.float32) * 3


def _form_atol(q, x):
    """Absolute rounding bound of the BLAS forms ||q||^2 + ||x||^2 - 2 <q, x> and <q, x>: the
    terms cancel, so their size, not the result's, sets the error (~1e-6 of the largest)."""
    return 1e-6 * float(np.einsum("ij,ij->i", q, q).max() + np.einsum("ij,ij->i", x, x).max())


def _ivf_search(index, q, k, nprobe):
    return index.search(q, k, params=_faiss().SearchParametersIVF(nprobe=nprobe))


# --------------------------------------------------------------------------- checks

def check_kmeans(case, n, d, k, niter=25, spherical=False, dup=0, max_ppc=256, nredo=1, gemm=False):
    """faiss.Kmeans vs KMeans: centroids and objectives bit for bit on the exact path (n * d <
    128000), to rounding on the GEMM path; assignments of the training points."""
    faiss = _faiss()
    x = _blobs(n, d, 11 * n + d, dup)
    ref = faiss.Kmeans(d, k, niter=niter, seed=1234, spherical=spherical, nredo=nredo,
                       max_points_per_centroid=max_ppc)
    with _quiet_stderr():
        ref.train(x)
    ours = KMeans(k, niter=niter, spherical=spherical, nredo=nredo, max_points_per_centroid=max_ppc).fit(x)
    results, record = _recorder("kmeans", case)
    exact = "" if gemm else " bit-exact"
    splits = f" ({int(ours.nsplit.sum())} cluster splits)" if ours.nsplit.sum() else ""
    record("centroids" + exact + splits, _arrays(ref.centroids, ours.centroids, not gemm, rtol=1e-4, atol=1e-5))
    record("objective" + exact, _arrays(ref.obj[None], ours.obj[None], not gemm, rtol=1e-5, atol=0))
    D_ref, I_ref = ref.index.search(x, 1)
    D, I = ours.assign(x)
    atol = _form_atol(x, ours.centroids) if gemm else 1e-6
    record("assignment", _knn((D_ref, I_ref), (D[:, None], I[:, None]), atol=atol))
    return results


def check_flat(case, n, d, nq, k, metric, dup=0):
    """IndexFlatL2/IP vs FlatIndex; the bridge round trip."""
    faiss = _faiss()
    xb, xq = _blobs(n, d, n + d, dup), _queries(nq, d, d)
    ours = FlatIndex(d, metric)
    ours.add(xb)
    ref = _faiss_flat(d, metric)
    ref.add(xb)
    results, record = _recorder("flat", case)
    mine = ours.search(xq, k)
    record("search", _knn(ref.search(xq, k), mine, atol=_form_atol(xq, xb)))
    back = faiss_bridge.from_faiss(faiss_bridge.to_faiss(ours))
    record("round trip vectors", _arrays(ours.xb, back.xb))
    record("round trip search", _identical(mine, back.search(xq, k)))
    return results


def _faiss_flat(d, metric):
    faiss = _faiss()
    return (faiss.IndexFlatL2 if metric == "l2" else faiss.IndexFlatIP)(d)


def _faiss_ivf_flat(d, nlist, metric, centroids=None):
    faiss = _faiss()
    quantizer = _faiss_flat(d, metric)
    if centroids is not None:
        quantizer.add(centroids)
    ivf = faiss.IndexIVFFlat(quantizer, d, nlist, faiss_bridge._faiss_metric(faiss, metric))
    ivf.referenced_objects = [quantizer]
    return ivf


def check_ivf(case, n, d, nlist, metric, nprobes, k, normalize=False, dup=0, far_lists=0, nq=40):
    """IndexIVFFlat trained and filled by faiss vs IVFIndex (centroids bit for bit, lists,
    search per nprobe); with far_lists > 0 both use given centroids, far_lists of them far from
    the data (empty lists); then the bridge: to_faiss search and from_faiss round trip."""
    from faiss.contrib.inspect_tools import get_invlist
    xb, xq = _blobs(n, d, n + d, dup), _queries(nq, d, d)
    zb, zq = (prefix(xb, d), prefix(xq, d)) if normalize else (xb, xq)
    ours = IVFIndex(d, nlist, metric=metric, normalize=normalize)
    results, record = _recorder("ivf", case)
    if far_lists:
        given = np.concatenate([zb[:nlist - far_lists], np.full((far_lists, d), 50, np.float32)])
        ref = _faiss_ivf_flat(d, nlist, metric, given)
        ours.set_centroids(given)
    else:
        ref = _faiss_ivf_flat(d, nlist, metric)
        with _quiet_stderr():
            ref.train(zb)
        ours.train(xb)
        record("train centroids bit-exact", _arrays(ref.quantizer.reconstruct_n(0, nlist), ours.centroids))
    ref.add(zb)
    ours.add(xb)
    same = all(np.array_equal(get_invlist(ref.invlists, l)[0], ours.list_ids(l)) for l in range(nlist))
    record(f"lists ({int((ours.list_sizes() == 0).sum())} empty)",
           (0.0, None if same else "inverted lists hold different ids"))
    exported = faiss_bridge.to_faiss(ours)
    back = faiss_bridge.from_faiss(exported, xb=xb)
    for nprobe in nprobes:
        mine = ours.search(xq, k, nprobe=nprobe)
        padded = " (-1 padded)" if (mine[1] < 0).any() else ""
        record(f"search nprobe={nprobe}{padded}", _knn(_ivf_search(ref, zq, k, nprobe), mine))
        record(f"to_faiss search nprobe={nprobe}", _knn(faiss_bridge.faiss_search(exported, xq, k, nprobe), mine))
        record(f"round trip search nprobe={nprobe}", _identical(mine, back.search(xq, k, nprobe=nprobe)))
    record("round trip centroids", _arrays(ours.centroids, back.centroids))
    return results


def check_adanns_ivf(case, n, D, nlist, d_c, d_s, metric, nprobes, k, normalize=True, nq=40):
    """AdANNS-IVF (d_c != d_s) vs its faiss form (d_c quantizer + d_s IndexIVFFlat searched with
    ivf_tools.search_preassigned, built by the bridge); the from_faiss round trip."""
    xb, xq = _blobs(n, D, n + D), _queries(nq, D, D)
    ours = IVFIndex(D, nlist, d_c=d_c, d_s=d_s, metric=metric, normalize=normalize)
    ours.train(xb)
    ours.add(xb)
    exported = faiss_bridge.to_faiss(ours)
    back = faiss_bridge.from_faiss(exported, xb=xb)
    results, record = _recorder("adanns_ivf", case)
    for nprobe in nprobes:
        mine = ours.search(xq, k, nprobe=nprobe)
        record(f"preassigned search nprobe={nprobe}", _knn(exported.search(xq, k, nprobe), mine))
        record(f"round trip search nprobe={nprobe}", _identical(mine, back.search(xq, k, nprobe=nprobe)))
    same = all(np.array_equal(back.list_ids(l), ours.list_ids(l)) for l in range(nlist))
    record("round trip lists", (0.0, None if same else "inverted lists hold different ids"))
    return results


def check_pq(case, n, d, M, nbits, niter=25, nq=30, k=10):
    """ProductQuantizer trained by faiss vs ours (codebooks bit for bit), codes, ADC tables (bit
    for bit when dsub < 16, dsub != 12), ADC search against IndexPQ; the bridge."""
    faiss = _faiss()
    x, xq = _blobs(n, d, n + d), _queries(nq, d, d)
    ref = faiss.ProductQuantizer(d, M, nbits)
    ref.cp.niter = niter
    with _quiet_stderr():
        ref.train(x)
    ours = ProductQuantizer(d, M, nbits, niter=niter, allow_small=True).train(x)
    results, record = _recorder("pq", case)
    record("codebooks bit-exact", _arrays(faiss_bridge._codebooks(faiss, ref), ours.codebooks))
    codes = ours.encode(x)
    record("codes", _codes(ref.compute_codes(x), codes))
    tables = np.empty((nq, M, 1 << nbits), dtype=np.float32)
    ref.compute_distance_tables(nq, faiss.swig_ptr(xq), faiss.swig_ptr(tables))
    exact = d // M < 16 and d // M != 12
    atol = 1e-6 if exact else _form_atol(xq.reshape(-1, d // M), ours.codebooks.reshape(-1, d // M))
    record("ADC tables" + (" bit-exact" if exact else ""),
           _arrays(tables, ours.distance_table(xq), exact, atol=atol))
    index = PQIndex(d, M, nbits, normalize=False)
    index.pq.set_codebooks(ours.codebooks)
    index.add(x)
    ref_index = faiss.IndexPQ(d, M, nbits)
    faiss.copy_array_to_vector(faiss.vector_to_array(ref.centroids), ref_index.pq.centroids)
    ref_index.is_trained = True
    ref_index.add(x)
    mine = index.search(xq, k)
    record("ADC search", _knn(ref_index.search(xq, k), mine, atol=M * atol))
    _bridge_pq(record, index, xq, k, mine, M * atol)
    return results


def _bridge_pq(record, index, xq, k, mine, atol=1e-6):
    exported = faiss_bridge.to_faiss(index)
    record("to_faiss search", _knn(faiss_bridge.faiss_search(exported, xq, k), mine, atol=atol))
    back = faiss_bridge.from_faiss(exported)
    record("round trip codes", _codes(index.codes, back.codes))
    record("round trip search", _identical(mine, back.search(xq, k)))


def check_opq(case, n, d, M, niter, nq=30, k=10):
    """OPQMatrix vs OPQ trained from the same start rotation A (niter iterations; the rotations
    agree to rounding unless an inner k-means near-tie resolves differently, see `opq`); applying
    one rotation; a PQIndex(opq=True) on our rotation through the bridge."""
    faiss = _faiss()
    x, xq = _blobs(n, d, n + d, spread=4.0), _queries(nq, d, d)
    start = random_rotation(d, 7)
    ref = faiss.OPQMatrix(d, M)
    ref.niter, ref.niter_pq_0 = niter, 10
    faiss.copy_array_to_vector(start.ravel(), ref.A)
    with _quiet_stderr():
        ref.train(x)
    ours = OPQ(d, M, niter=niter, niter_pq_0=10, init=start, allow_small=True).train(x)
    A_ref = faiss.vector_to_array(ref.A).reshape(d, d)
    results, record = _recorder("opq", case)
    record("rotation from the same A", _arrays(A_ref, ours.A, exact=False, rtol=0, atol=1e-4))
    same_A = faiss_bridge._opq_matrix(faiss, ours.A, M, niter)  # rounding of x @ A.T only
    record("apply (same A)", _arrays(same_A.apply(xq), ours.apply(xq), exact=False, rtol=1e-5,
                                     atol=_form_atol(xq, ours.A)))
    index = PQIndex(d, M, opq=True, normalize=False, allow_small=True, opq_niter=niter)
    index.opq = ours
    index.pq = ours.pq
    index.add(x)
    _bridge_pq(record, index, xq, k, index.search(xq, k))
    return results


def check_ivfpq(case, n, d, nlist, M, nbits, metric, nprobes, k=10, opq=False, by_residual=True,
                normalize=False, d_c=None, d_s=None, nq=30):
    """IndexIVFPQ trained and filled by faiss vs IVFPQIndex: centroids and codebooks bit for bit,
    search per nprobe. With OPQ faiss clusters the rotated vectors, so only the rotation and the
    centroids are compared (to rounding): the residual k-means may then resolve a near-tie
    differently and drift (see `ivfpq`). Always: faiss encoding the data with our parameters
    gives our lists and codes (d_c = d_s); the bridge. Prefix dims d_c, d_s < d and AdANNS-IVFOPQ
    (d_c != d_s, `FaissAdannsIVF`) have no faiss training to compare with."""
    faiss = _faiss()
    xb, xq = _blobs(n, d, n + d), _queries(nq, d, d)
    zb, zq = (prefix(xb, d), prefix(xq, d)) if normalize else (xb, xq)
    ours = IVFPQIndex(d, nlist, M, nbits, d_c=d_c, d_s=d_s, opq=opq, by_residual=by_residual, metric=metric,
                      normalize=normalize, allow_small=True, opq_niter=4)
    ours.train(xb)
    ours.add(xb)
    results, record = _recorder("ivfpq", case)
    atol = _form_atol(zq, ours.scoring_centroids)
    exported = faiss_bridge.to_faiss(ours)
    back = faiss_bridge.from_faiss(exported)
    if ours.d_c == ours.d_s == d:
        ivf = faiss.IndexIVFPQ(_faiss_flat(d, metric), d, nlist, M, nbits,
                               faiss_bridge._faiss_metric(faiss, metric))
        ivf.by_residual = by_residual
        ref = ivf
        if opq:
            fopq = faiss.OPQMatrix(d, M)
            fopq.niter = 4
            ref = faiss.IndexPreTransform(fopq, ivf)
        with _quiet_stderr():
            ref.train(zb)
        ref.add(zb)
        if opq:  # faiss clusters R x, we x: centroids to rounding, then the residual k-means drifts
            record("OPQ rotation", _arrays(faiss.vector_to_array(fopq.A).reshape(d, d), ours.opq.A,
                                           exact=False, rtol=0, atol=1e-3))
            record("train centroids (rotated)", _arrays(ivf.quantizer.reconstruct_n(0, nlist),
                                                        ours.scoring_centroids, exact=False, atol=1e-4))
        else:
            record("train centroids bit-exact", _arrays(ivf.quantizer.reconstruct_n(0, nlist), ours.centroids))
            record("codebooks bit-exact", _arrays(faiss_bridge._codebooks(faiss, ivf.pq), ours.pq.codebooks))
            for nprobe in nprobes:
                record(f"search nprobe={nprobe}", _knn(_ivf_search(ref, zq, k, nprobe),
                                                       ours.search(xq, k, nprobe=nprobe), atol=atol))
    # rigid OPQ: faiss holds R c_l, from_faiss recovers c_l to rounding, so routing to near-ties
    exact_back = not (ours.d_c == ours.d_s and ours.opq is not None)
    for nprobe in nprobes:
        mine = ours.search(xq, k, nprobe=nprobe)
        record(f"to_faiss search nprobe={nprobe}", _knn(faiss_bridge.faiss_search(exported, xq, k, nprobe),
                                                        mine, atol=atol))
        again = back.search(xq, k, nprobe=nprobe)
        record(f"round trip search nprobe={nprobe}", _identical(mine, again) if exact_back else _knn(mine, again))
    record("round trip codes", _codes(_list_codes(ours), _list_codes(back)))
    if ours.d_c == ours.d_s:  # faiss encodes our data with our parameters: the same lists and codes
        inner = faiss.extract_index_ivf(exported)
        inner.reset()
        zs = prefix(xb, ours.d_s, normalize)
        inner.add(zs if ours.opq is None else ours.opq.apply(zs))
        from faiss.contrib.inspect_tools import get_invlist
        lists = [get_invlist(inner.invlists, l) for l in range(nlist)]
        record("lists with our parameters", (0.0, None if all(np.array_equal(ids, ours.list_ids(l))
                                                                for l, (ids, _) in enumerate(lists))
                                             else "inverted lists hold different ids"))
        record("codes with our parameters", _codes(np.concatenate([c for _, c in lists]), _list_codes(ours)))
    return results


def _list_codes(index):
    """All codes of an IVFPQIndex in list order (N, code_size)."""
    return np.concatenate([index.list_codes(l) for l in range(index.nlist)])


def check_metrics(case, n, d, nq, k, n_classes):
    """k-recall@N against faiss's intersection count (faiss.eval_intersection); label metrics
    against a per-query loop (faiss has no label metrics)."""
    faiss = _faiss()
    xb, xq = _blobs(n, d, n + d), _queries(nq, d, d)
    rng = np.random.default_rng(n)
    yb, yq = rng.integers(0, n_classes, n), rng.integers(0, n_classes, nq)
    exact, approximate = FlatIndex(d), FlatIndex(d // 2)  # "ANN": exact search on half the dims
    exact.add(xb)
    approximate.add(np.ascontiguousarray(xb[:, :d // 2]))
    I_exact = exact.search(xq, k)[1]
    I_ann = approximate.search(np.ascontiguousarray(xq[:, :d // 2]), 2 * k)[1]
    results, record = _recorder("metrics", case)
    for kk, nn in ((1, 1), (k, k), (1, 2 * k), (k, 2 * k)):
        ref = faiss.eval_intersection(I_exact[:, :kk], I_ann[:, :nn]) / (nq * kk)
        got = metrics.knn_recall(I_exact, I_ann, kk, nn)
        record(f"{kk}-recall@{nn}", _arrays(np.array([ref]), np.array([got]), exact=False, rtol=1e-12, atol=0))
    hits = [[yb[j] == yq[i] for j in I_ann[i, :k]] for i in range(nq)]
    n_rel = [int((yb == yq[i]).sum()) for i in range(nq)]
    ap = [sum(sum(h[:r + 1]) / (r + 1) for r in range(k) if h[r]) for h in hits]
    loops = {
        "top-1": (np.mean([h[0] for h in hits]), metrics.top1_accuracy(I_ann, yb, yq)),
        f"hit-rate@{k}": (np.mean([any(h) for h in hits]), metrics.hit_rate_at_k(I_ann, yb, yq, k)),
        f"precision@{k}": (np.mean([sum(h) / k for h in hits]), metrics.precision_at_k(I_ann, yb, yq, k)),
        f"mAP@{k}": (np.mean([a / min(k, r) if r else 0 for a, r in zip(ap, n_rel)]),
                     metrics.map_at_k(I_ann, yb, yq, k)),
        f"mAP@{k} adanns": (np.mean([a / k for a in ap]), metrics.map_at_k(I_ann, yb, yq, k, "adanns")),
        f"recall@{k}": (np.mean([sum(h) / r if r else 0 for h, r in zip(hits, n_rel)]),
                        metrics.recall_at_k(I_ann, yb, yq, k)),
    }
    for name, (ref, got) in loops.items():
        record(name, _arrays(np.array([ref]), np.array([got]), exact=False, rtol=1e-12, atol=1e-15))
    return results


CHECKS = {"kmeans": check_kmeans, "flat": check_flat, "ivf": check_ivf, "adanns_ivf": check_adanns_ivf,
          "pq": check_pq, "opq": check_opq, "ivfpq": check_ivfpq, "metrics": check_metrics}


# --------------------------------------------------------------------------- grid

def _case(component, name, **params):
    return Case(component, name, params)


def grid(quick=False):
    """The cases to run: the quick grid (pytest) or the full grid (CLI default)."""
    cases = [
        _case("kmeans", "n600-d7-k12", n=600, d=7, k=12),
        _case("kmeans", "n400-d33-k20-spherical", n=400, d=33, k=20, spherical=True),
        _case("kmeans", "n300-d10-k40-dups", n=300, d=10, k=40, dup=200),
        _case("kmeans", "n5000-d33-k16-gemm", n=5000, d=33, k=16, niter=10, gemm=True),
        _case("flat", "n500-d13-l2-dups", n=500, d=13, nq=30, k=10, metric="l2", dup=100),
        _case("flat", "n500-d13-ip", n=500, d=13, nq=30, k=10, metric="ip"),
        _case("flat", "n50-d7-k64", n=50, d=7, nq=10, k=64, metric="l2"),
        _case("ivf", "n2000-d24-nl16-l2", n=2000, d=24, nlist=16, metric="l2", nprobes=(1, 4, 16), k=10),
        _case("ivf", "n1500-d21-nl10-ip", n=1500, d=21, nlist=10, metric="ip", nprobes=(1, 3), k=10),
        _case("ivf", "n300-d12-nl8-empty-k80", n=300, d=12, nlist=8, metric="l2", nprobes=(1, 2, 8), k=80,
              far_lists=3, dup=60),
        _case("ivf", "n1200-d20-nl12-normalized", n=1200, d=20, nlist=12, metric="l2", nprobes=(2,), k=10,
              normalize=True),
        _case("adanns_ivf", "D24-dc8-ds16", n=1500, D=24, nlist=12, d_c=8, d_s=16, metric="l2", nprobes=(1, 4), k=10),
        _case("adanns_ivf", "D24-dc12-ds6-ip", n=1500, D=24, nlist=12, d_c=12, d_s=6, metric="ip", nprobes=(2,), k=10),
        _case("pq", "d21-M7-nbits8", n=2000, d=21, M=7, nbits=8, niter=10),
        _case("pq", "d20-M4-nbits4", n=1000, d=20, M=4, nbits=4),
        _case("pq", "d36-M2-nbits4-blas", n=1000, d=36, M=2, nbits=4),
        _case("opq", "d16-M4", n=1000, d=16, M=4, niter=4),
        _case("ivfpq", "n2000-d24-nl12-M6-nbits8", n=2000, d=24, nlist=12, M=6, nbits=8, metric="l2",
              nprobes=(1, 4)),
        _case("ivfpq", "n2000-d20-nl8-M5-nbits4-ip", n=2000, d=20, nlist=8, M=5, nbits=4, metric="ip",
              nprobes=(2,)),
        _case("ivfpq", "n2500-d16-nl10-M4-opq", n=2500, d=16, nlist=10, M=4, nbits=8, metric="l2",
              nprobes=(1, 3), opq=True),
        _case("ivfpq", "n2000-D24-dc8-ds24-M4", n=2000, d=24, nlist=10, M=4, nbits=8, metric="l2",
              nprobes=(2,), d_c=8, normalize=True),
        _case("metrics", "n600-d14", n=600, d=14, nq=50, k=10, n_classes=5),
    ]
    if quick:
        return cases
    return cases + [
        _case("kmeans", "n3000-d5-k100", n=3000, d=5, k=100),
        _case("kmeans", "n4000-d11-k10-subsampled", n=4000, d=11, k=10, max_ppc=64),
        _case("kmeans", "n1000-d9-k16-nredo3", n=1000, d=9, k=16, nredo=3),
        _case("kmeans", "n6000-d48-k64-gemm", n=6000, d=48, k=64, niter=10, gemm=True),
        _case("kmeans", "n6000-d30-k32-gemm-spherical", n=6000, d=30, k=32, niter=10, gemm=True, spherical=True),
        _case("flat", "n5000-d96-blas", n=5000, d=96, nq=2000, k=20, metric="l2"),
        _case("flat", "n3000-d61-ip-blas-dups", n=3000, d=61, nq=2500, k=20, metric="ip", dup=500),
        _case("ivf", "n5000-d17-nl40-l2", n=5000, d=17, nlist=40, metric="l2", nprobes=(1, 5, 40), k=20),
        _case("ivf", "n4000-d30-nl32-ip-dups", n=4000, d=30, nlist=32, metric="ip", nprobes=(1, 8), k=10, dup=400),
        _case("ivf", "n3000-d10-nl20-empty-k300", n=3000, d=10, nlist=20, metric="ip", nprobes=(1, 3), k=300,
              far_lists=6),
        _case("adanns_ivf", "D48-dc16-ds32", n=4000, D=48, nlist=32, d_c=16, d_s=32, metric="l2", nprobes=(1, 4, 32), k=20),
        _case("adanns_ivf", "D40-dc40-ds10", n=3000, D=40, nlist=20, d_c=40, d_s=10, metric="l2", nprobes=(2,), k=10),
        _case("adanns_ivf", "D30-dc6-ds30-raw", n=3000, D=30, nlist=20, d_c=6, d_s=30, metric="ip", nprobes=(3,), k=10,
              normalize=False),
        _case("pq", "d30-M5-nbits8", n=3000, d=30, M=5, nbits=8, niter=10),
        _case("pq", "d64-M4-nbits8-blas", n=3000, d=64, M=4, nbits=8, niter=10),
        _case("pq", "d15-M3-nbits4", n=2000, d=15, M=3, nbits=4),
        _case("pq", "d26-M2-nbits8-dsub13", n=3000, d=26, M=2, nbits=8, niter=10),
        _case("opq", "d24-M6", n=2000, d=24, M=6, niter=3),
        _case("opq", "d12-M3", n=1500, d=12, M=3, niter=6),
        _case("ivfpq", "n4000-d32-nl16-M8-no-residual", n=4000, d=32, nlist=16, M=8, nbits=8, metric="l2",
              nprobes=(1, 4, 16), by_residual=False),
        _case("ivfpq", "n3000-d30-nl12-M10-nbits4-normalized", n=3000, d=30, nlist=12, M=10, nbits=4,
              metric="l2", nprobes=(2, 12), normalize=True),
        _case("ivfpq", "n3000-D30-d18-M6-prefix", n=3000, d=30, nlist=12, M=6, nbits=8, metric="l2",
              nprobes=(3,), d_c=18, d_s=18, normalize=True),
        _case("ivfpq", "n3000-d20-nl10-M4-opq-ip", n=3000, d=20, nlist=10, M=4, nbits=8, metric="ip",
              nprobes=(2,), opq=True),
        _case("ivfpq", "n3000-D32-dc24-ds8-opq", n=3000, d=32, nlist=12, M=2, nbits=8, metric="l2",
              nprobes=(1, 4), d_c=24, d_s=8, opq=True, normalize=True),
        _case("metrics", "n3000-d30", n=3000, d=30, nq=200, k=50, n_classes=20),
    ]


def run_case(case):
    """All checks of one case -> list of Result."""
    return CHECKS[case.component](case.name, **case.params)


def run(cases):
    results = []
    for case in cases:
        results.extend(run_case(case))
    return results


# --------------------------------------------------------------------------- report

def format_table(results):
    """Lines of the table component | case | check | result | max deviation (+ failure reasons)."""
    rows = [("component", "case", "check", "result", "max deviation")]
    rows += [(r.component, r.case, r.check, "pass" if r.passed else "FAIL", f"{r.max_deviation:.3g}")
             for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    lines += [f"FAIL {r.component} {r.case} {r.check}: {r.message}" for r in results if not r.passed]
    return lines


def summary(results, grid_name):
    """JSON-able summary: totals, per component (checks, failed, max deviation), every result."""
    by_component = {}
    for r in results:
        by_component.setdefault(r.component, []).append(r)
    components = {name: {"checks": len(rs), "failed": sum(not r.passed for r in rs),
                         "max_deviation": _finite_or_none(max(r.max_deviation for r in rs))}
                  for name, rs in by_component.items()}
    return {"grid": grid_name, "faiss_version": _faiss().__version__, "checks": len(results),
            "failed": sum(not r.passed for r in results), "components": components,
            "results": [dict(asdict(r), max_deviation=_finite_or_none(r.max_deviation)) for r in results]}


def _finite_or_none(value):
    return value if np.isfinite(value) else None


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m adanns_ref.conformance", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small grid pytest runs")
    parser.add_argument("--only", nargs="+", choices=sorted(CHECKS), metavar="COMPONENT",
                        help=f"run only these components ({', '.join(sorted(CHECKS))})")
    parser.add_argument("--json", metavar="PATH", help="write the JSON summary here (atomically) "
                                                       "instead of printing it")
    args = parser.parse_args(argv)
    cases = [c for c in grid(args.quick) if args.only is None or c.component in args.only]
    results = run(cases)
    print("\n".join(format_table(results)))
    report = json.dumps(summary(results, "quick" if args.quick else "full"), indent=1)
    if args.json:
        atomic_write_text(args.json, report + "\n")
    else:
        print(report)
    failed = sum(not r.passed for r in results)
    print(f"{len(results) - failed} of {len(results)} checks passed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
