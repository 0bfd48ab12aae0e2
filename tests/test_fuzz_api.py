"""Fuzzing the public API: random shapes, dtypes, orders, NaN/Inf, k values and metrics.

Every entry point must either accept an input (then its result is checked against a float64
NumPy brute force, allowing ties and float32 rounding) or refuse it with ValueError / TypeError,
never another exception. The strategies know which inputs are valid by the documented rule of
`adanns_ref.core.validate` (real dtype, 2-D, the expected width, finite; k an int >= 1 within
MAX_RESULT_BYTES; metric "l2" / "ip"), so a bad input that is accepted fails too.
Shapes stay tiny and examples bounded: the whole file runs in seconds on an idle machine.
"""
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from adanns_ref import (OPQ, FlatIndex, IVFIndex, IVFPQIndex, KMeans, PQIndex, ProductQuantizer,
                        funnel_search, knn_recall, knn_search, map_at_k, prefix, recall_at_k, rerank,
                        top1_accuracy)
from adanns_ref.core.validate import MAX_RESULT_BYTES
from adanns_ref.quantizers.kmeans import SmallTrainingSetWarning

FLT_MAX = np.float32(np.finfo(np.float32).max)
D = 8
FUZZ = settings(max_examples=30, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
pytestmark = pytest.mark.filterwarnings("ignore::adanns_ref.kmeans.SmallTrainingSetWarning")

REAL = [np.float32, np.float64, np.float16, np.int32, np.uint8, np.bool_]
NOT_REAL = [np.complex64, object, "U4"]


# ------------------------------------------------------------------------------ strategies

def matrices(d, min_rows=0, max_rows=9):
    """(x, valid): something passed where an (n, d) float32 matrix belongs, and whether the
    documented rule accepts it."""
    return matrices_and_widths(d, min_rows, max_rows).map(lambda t: t[:2])


FAULTS = ["none", "width", "dtype", "nan", "float64_overflow", "ndim", "rows"]


@st.composite
def matrices_and_widths(draw, d, min_rows=0, max_rows=9):
    """(x, valid, width): as `matrices`, plus the width x would be valid for (None: none).

    About half the draws carry one fault (None, another width, a non-real dtype, NaN/Inf, a
    float64 beyond float32's range, another ndim, too few rows); all vary dtype (converted
    once), C/Fortran order and array vs nested list, and half hold exact ties."""
    fault = draw(st.sampled_from([None] * 8 + FAULTS))
    if fault == "none":
        return None, False, None
    if fault == "rows" and min_rows == 0:
        fault = None
    n = draw(st.integers(0, min_rows - 1) if fault == "rows" else st.integers(min_rows, max_rows))
    cols = draw(st.sampled_from([d + 1, max(d - 1, 0), 0])) if fault == "width" else d
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    base = rng.uniform(-4, 4, (n, cols))
    if draw(st.booleans()):
        base = np.round(base)  # few distinct values: exact ties everywhere
    if fault == "float64_overflow" and base.size == 0:
        fault = None
    dtype = (np.float64 if fault == "float64_overflow" else
             draw(st.sampled_from(NOT_REAL if fault == "dtype" else REAL)))
    if fault == "nan" and (base.size == 0 or np.dtype(dtype).kind != "f"):
        dtype = np.float32
    x = (np.abs(base) if dtype == np.uint8 else base).astype(dtype)
    if fault == "nan" and x.size:
        x[rng.integers(n), rng.integers(cols)] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    elif fault == "nan":
        fault = None
    if fault == "float64_overflow":
        x[rng.integers(n), rng.integers(cols)] = 1e300  # finite, but inf in float32
    if fault == "ndim":
        x = draw(st.sampled_from([x.ravel(), x[None], np.asarray(dtype_scalar(dtype))]))
    if x.ndim == 2 and draw(st.booleans()):
        x = np.asfortranarray(x)
    valid = fault in (None, "width") and cols > 0  # for width `cols`; for d if also cols == d
    if x.ndim >= 1 and draw(st.integers(0, 4)) == 0:
        x = x.tolist()  # nested lists of Python numbers (or strings, or complex numbers)
        if dtype is object:  # an object array is refused, its list of floats is not
            valid = cols > 0
        if n == 0:
            valid = False  # [] has no width
    return x, valid and cols == d, cols if valid else None


def dtype_scalar(dtype):
    return np.zeros((), dtype=dtype)[()]


def ks():
    """(k, valid) for k: ints around the useful range, a huge one, and non-integers."""
    return st.one_of(
        st.integers(1, 12).map(lambda k: (k, True)),
        st.integers(1, 12).map(lambda k: (np.int64(k), True)),
        st.integers(1, 4).map(lambda k: (k, True)),
        st.sampled_from([0, -1, 10**9, 1.0, 3.5, True, None, "3", np.float32(2)]).map(
            lambda k: (k, False)))


def _k_valid(k, valid, nq):
    return valid and max(nq, 1) * int(k) * 12 <= MAX_RESULT_BYTES


metrics_ = st.sampled_from(["l2"] * 4 + ["ip"] * 4 + ["cos", "L2", None])


def _rows(x):
    return np.asarray(x).shape[0]


def _expect(call, valid):
    """Run call(); a valid input must succeed, an invalid one raise ValueError or TypeError."""
    event("valid input" if valid else "invalid input")  # --hypothesis-show-statistics
    if valid:
        return call()
    with pytest.raises((ValueError, TypeError)):
        call()
    return None


# ------------------------------------------------------------------------------ float64 oracle

def _as64(x):
    return np.asarray(x, dtype=np.float32).astype(np.float64)


def _unit(x64):
    n = np.sqrt((x64 ** 2).sum(axis=1, keepdims=True))
    return np.divide(x64, n, out=np.zeros_like(x64), where=n > 0)


def _prefix64(x, d, normalize):
    x64 = _as64(x)
    return _unit(_unit(x64)[:, :d]) if normalize else x64[:, :d]


def _distances(q64, b64, metric):
    if metric == "l2":
        return ((q64[:, None, :] - b64[None, :, :]) ** 2).sum(axis=2)
    return q64 @ b64.T


def _tol(q64, b64):
    scale = 1.0 + (q64 ** 2).sum(axis=1).max(initial=0) + (b64 ** 2).sum(axis=1).max(initial=0)
    return 1e-5 * scale


def assert_consistent(D, I, full, k, metric, tol, exact=True):
    """Results (D, I) against the float64 distance matrix full (nq, nb), tie-aware:
    - shapes (nq, k), dtypes float32 / int64; rows sorted best first; ids distinct per row;
    - every returned id's true distance equals its reported one (within tol);
    - exact=True: the j-th reported distance is the j-th best true distance, and exactly
      min(k, nb) results are returned, the rest padded with -1 / +-FLT_MAX."""
    nq, nb = full.shape
    assert D.shape == I.shape == (nq, k) and D.dtype == np.float32 and I.dtype == np.int64
    sign = 1.0 if metric == "l2" else -1.0
    pad = FLT_MAX * sign
    present = I >= 0
    assert (D[~present] == pad).all()
    if exact:
        m = min(k, nb)
        assert present[:, :m].all() and not present[:, m:].any()
    for r in range(nq):
        ids = I[r][present[r]]
        assert len(set(ids.tolist())) == ids.size and (ids < nb).all()
        assert (present[r][:ids.size]).all()  # results first, padding last
        d = D[r, :ids.size].astype(np.float64)
        assert (np.diff(sign * d) >= -tol).all()
        np.testing.assert_allclose(d, full[r, ids], rtol=1e-4, atol=tol)
        if exact:
            best = sign * np.sort(sign * full[r])[:ids.size]
            np.testing.assert_allclose(d, best, rtol=1e-4, atol=tol)


# ------------------------------------------------------------------------------ fixtures

def _train_data(n=200, d=D, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


@pytest.fixture(scope="module")
def trained():
    xb = _train_data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallTrainingSetWarning)
        out = {"xb": xb}
        for metric in ("l2", "ip"):
            for normalize in (False, True):
                ivf = IVFIndex(D, 4, metric=metric, normalize=normalize, niter=4)
                ivf.train(xb)
                ivf.add(xb[:60])
                out["ivf", metric, normalize] = ivf
        ivfpq = IVFPQIndex(D, 3, 2, nbits=3, normalize=False, niter=4, allow_small=True)
        ivfpq.train(xb)
        ivfpq.add(xb[:50])
        out["ivfpq"] = ivfpq
        pqi = PQIndex(D, 2, nbits=3, normalize=False, allow_small=True)
        pqi.train(xb)
        pqi.add(xb[:50])
        out["pqindex"] = pqi
        out["pq"] = ProductQuantizer(D, 4, nbits=3, allow_small=True).train(xb)
        out["codes"] = out["pq"].encode(xb[:40])
        out["opq"] = OPQ(D, 2, niter=1, niter_pq_0=2, allow_small=True).train(np.tile(xb, (2, 1)))
        out["kmeans"] = KMeans(5, niter=3).fit(xb)
    return out


# ------------------------------------------------------------------------------ exact search

@settings(FUZZ, max_examples=60)
@given(xq=matrices_and_widths(D), xb=matrices_and_widths(D), k=ks(), metric=metrics_)
def test_knn_search(xq, xb, k, metric):
    (q, _, q_width), (b, _, b_width), (k, k_ok) = xq, xb, k
    q_ok = q_width is not None and q_width == b_width  # any width, the same for both
    valid = q_ok and metric in ("l2", "ip") and _k_valid(k, k_ok, _rows(q) if q_ok else 0)
    out = _expect(lambda: knn_search(q, b, k, metric), valid)
    if out is not None:
        q64, b64 = _as64(q), _as64(b)
        assert_consistent(*out, _distances(q64, b64, metric), int(k), metric, _tol(q64, b64))


@FUZZ
@given(xb=matrices(D), xq=matrices(D), k=ks(), metric=st.sampled_from(["l2", "ip"]))
def test_flat_index(xb, xq, k, metric):
    (b, b_ok), (q, q_ok), (k, k_ok) = xb, xq, k
    index = FlatIndex(D, metric)
    _expect(lambda: index.add(b), b_ok)
    stored = _as64(b) if b_ok else np.empty((0, D))
    out = _expect(lambda: index.search(q, k), q_ok and _k_valid(k, k_ok, _rows(q) if q_ok else 0))
    if out is not None:
        q64 = _as64(q)
        assert_consistent(*out, _distances(q64, stored, metric), int(k), metric, _tol(q64, stored))


# ------------------------------------------------------------------------------ IVF, IVFPQ, PQ

nprobes = st.one_of(st.integers(1, 6).map(lambda p: (p, True)),
                    st.integers(1, 6).map(lambda p: (np.int32(p), True)),
                    st.integers(3, 8).map(lambda p: (p, True)),
                    st.sampled_from([0, -2, 2.0, None, False]).map(lambda p: (p, False)))


@FUZZ
@given(xq=matrices(D), k=ks(), nprobe=nprobes, metric=st.sampled_from(["l2", "ip"]),
       normalize=st.booleans())
def test_ivf_search(trained, xq, k, nprobe, metric, normalize):
    (q, q_ok), (k, k_ok), (p, p_ok) = xq, k, nprobe
    index = trained["ivf", metric, normalize]
    valid = q_ok and p_ok and _k_valid(k, k_ok, _rows(q) if q_ok else 0)
    out = _expect(lambda: index.search(q, k, nprobe=p), valid)
    if out is not None:
        q64, b64 = _prefix64(q, D, normalize), _prefix64(trained["xb"][:60], D, normalize)
        assert_consistent(*out, _distances(q64, b64, metric), int(k), metric, _tol(q64, b64),
                          exact=p >= index.nlist)


@settings(FUZZ, max_examples=15)
@given(x=matrices(D, min_rows=4, max_rows=30), metric=st.sampled_from(["l2", "ip"]))
def test_ivf_train_and_add(x, metric):
    x, ok = x
    index = IVFIndex(D, 4, metric=metric, niter=2)
    _expect(lambda: index.train(x), ok)
    if ok:
        _expect(lambda: index.add(x), True)
        assert index.ntotal == _rows(x)
        with pytest.raises(ValueError, match="reset"):
            index.train(x)


def _ivfpq_reconstructions(index):
    """(ids, reconstruction s_l + decode(code)) of every stored vector (by_residual, no OPQ)."""
    ids, recon = [], []
    sc = index.scoring_centroids
    for lst in range(index.nlist):
        ids.append(index.list_ids(lst))
        recon.append(sc[lst] + index.pq.decode(index.list_codes(lst)))
    order = np.argsort(np.concatenate(ids))
    return np.concatenate(recon)[order].astype(np.float64)


@FUZZ
@given(xq=matrices(D), k=ks(), nprobe=nprobes)
def test_ivfpq_search(trained, xq, k, nprobe):
    (q, q_ok), (k, k_ok), (p, p_ok) = xq, k, nprobe
    index = trained["ivfpq"]
    out = _expect(lambda: index.search(q, k, nprobe=p),
                  q_ok and p_ok and _k_valid(k, k_ok, _rows(q) if q_ok else 0))
    if out is not None:
        q64, recon = _as64(q), _ivfpq_reconstructions(index)
        assert_consistent(*out, _distances(q64, recon, "l2"), int(k), "l2", _tol(q64, recon),
                          exact=p >= index.nlist)


@FUZZ
@given(xq=matrices(D), k=ks())
def test_pqindex_search(trained, xq, k):
    (q, q_ok), (k, k_ok) = xq, k
    index = trained["pqindex"]
    out = _expect(lambda: index.search(q, k), q_ok and _k_valid(k, k_ok, _rows(q) if q_ok else 0))
    if out is not None:
        q64, recon = _as64(q), index.pq.decode(index.codes).astype(np.float64)
        assert_consistent(*out, _distances(q64, recon, "l2"), int(k), "l2", _tol(q64, recon))


@settings(FUZZ, max_examples=15)
@given(x=matrices(D, min_rows=8, max_rows=40), opq=st.booleans())
def test_pq_trainers(x, opq):
    x, ok = x
    index = PQIndex(D, 2, nbits=3, opq=opq, opq_niter=1)
    _expect(lambda: index.train(x), ok and not opq)  # OPQ's inner PQ needs 256 points
    _expect(lambda: ProductQuantizer(D, 4, nbits=3).train(x), ok)
    _expect(lambda: IVFPQIndex(D, 2, 2, nbits=3, niter=2).train(x), ok)
    if ok and not opq:
        index.add(x)
        with pytest.raises(ValueError, match="reset"):
            index.train(x)  # codes of the old codebooks would silently answer wrong ids


@FUZZ
@given(x=matrices(D), xq=matrices(D), k=ks(), codes_kind=st.sampled_from(["ok", "int", "width", "1d"]))
def test_product_quantizer(trained, x, xq, k, codes_kind):
    pq, codes = trained["pq"], trained["codes"]
    (x, x_ok), (q, q_ok), (k, k_ok) = x, xq, k
    enc = _expect(lambda: pq.encode(x), x_ok)
    if enc is not None:
        assert enc.shape == (_rows(x), pq.code_size) and enc.dtype == np.uint8
        np.testing.assert_array_equal(pq.decode(enc).shape, (_rows(x), D))
    bad_codes = {"ok": codes, "int": codes.astype(np.int64), "width": codes[:, :-1], "1d": codes[0]}[codes_kind]
    _expect(lambda: pq.decode(bad_codes), codes_kind == "ok")
    out = _expect(lambda: pq.search(bad_codes, q, k),
                  codes_kind == "ok" and q_ok and _k_valid(k, k_ok, _rows(q) if q_ok else 0))
    if out is not None:
        q64, recon = _as64(q), pq.decode(codes).astype(np.float64)
        assert_consistent(*out, _distances(q64, recon, "l2"), int(k), "l2", _tol(q64, recon))


@FUZZ
@given(x=matrices(D))
def test_opq_and_kmeans_apply(trained, x):
    x, ok = x
    opq, km = trained["opq"], trained["kmeans"]
    y = _expect(lambda: opq.apply(x), ok)
    if y is not None:
        np.testing.assert_allclose(y, _as64(x) @ opq.A.T.astype(np.float64), atol=1e-4)
        np.testing.assert_allclose(opq.reverse(y), _as64(x), atol=1e-4)
    out = _expect(lambda: km.assign(x), ok)
    if out is not None:
        dist, ids = out
        full = _distances(_as64(x), km.centroids.astype(np.float64), "l2")
        np.testing.assert_allclose(dist, full.min(axis=1, initial=np.inf), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(full[np.arange(len(ids)), ids], dist, rtol=1e-4, atol=1e-4)


@settings(FUZZ, max_examples=8)
@given(x=matrices(D, min_rows=256, max_rows=270), d_out=st.sampled_from([D, 4, 3]))
def test_opq_train(x, d_out):
    x, ok = x
    opq = _expect(lambda: OPQ(D, 2, d_out=d_out, niter=1, niter_pq_0=1).train(x), ok and d_out % 2 == 0)
    if opq is not None:
        A = opq.A.astype(np.float64)
        np.testing.assert_allclose(A @ A.T, np.eye(d_out), atol=1e-5)


@settings(FUZZ, max_examples=15)
@given(x=matrices_and_widths(D, max_rows=30), k=st.integers(1, 4), metric=st.sampled_from(["l2", "ip"]))
def test_kmeans_fit(x, k, metric):
    x, _, width = x  # any width
    ok = width is not None and _rows(x) >= k
    km = _expect(lambda: KMeans(k, niter=3, metric=metric).fit(x), ok)
    if km is not None:
        assert km.centroids.shape == (k, width) and np.isfinite(km.centroids).all()


# ------------------------------------------------------------------------------ funnels, prefixes

@st.composite
def stage_lists(draw, full_dim=D):
    """(stages, valid): funnel stages, mostly valid, sometimes broken in one way."""
    n = draw(st.integers(1, 3))
    dims = [draw(st.integers(1, full_dim)) for _ in range(n)]
    kk = sorted((draw(st.integers(1, 12)) for _ in range(n)), reverse=True)
    stages, valid = [list(p) for p in zip(dims, kk)], True
    fault = draw(st.sampled_from([None] * 14 + ["dim0", "dimD", "k0", "grow", "triple", "empty",
                                                "none", "huge", "float"]))
    if fault == "grow" and n == 1:
        fault = None
    if fault == "dim0":
        stages[0][0] = 0
    elif fault == "dimD":
        stages[-1][0] = full_dim + 1
    elif fault == "k0":
        stages[-1][1] = 0
    elif fault == "grow" and n > 1:
        stages[-1][1] = stages[0][1] + 1
    elif fault == "triple":
        stages[0] = stages[0] + [1]
    elif fault == "empty":
        stages = []
    elif fault == "none":
        stages = None
    elif fault == "huge":
        stages[0][1] = 10**9
    elif fault == "float":
        stages[0][0] = 2.0
    return stages, fault is None


@settings(FUZZ, max_examples=50)
@given(db=matrices(D), xq=matrices(D), stages=stage_lists(), metric=metrics_, normalize=st.booleans())
def test_funnel_search(db, xq, stages, metric, normalize):
    (b, b_ok), (q, q_ok), (stages, s_ok) = db, xq, stages
    valid = b_ok and q_ok and s_ok and metric in ("l2", "ip")
    out = _expect(lambda: funnel_search(b, q, stages, metric, normalize), valid)
    if out is not None:
        Dq, I, flops = out
        d_last, k_last = stages[-1]
        q64, b64 = _prefix64(q, d_last, normalize), _prefix64(b, d_last, normalize)
        # one stage is exact search; later stages re-rank a shortlist: check consistency only
        assert_consistent(Dq, I, _distances(q64, b64, metric), k_last, metric, _tol(q64, b64),
                          exact=len(stages) == 1)
        assert flops >= 0


@st.composite
def shortlists(draw, nq, nb):
    """(I, valid): shortlists of ids into a database of nb rows for nq queries."""
    width = draw(st.integers(0, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    rows = [np.concatenate([rng.permutation(nb)[:width], np.full(max(0, width - nb), -1)])[:width]
            for _ in range(nq)]
    I = np.array(rows, dtype=np.int64).reshape(nq, width)
    fault = draw(st.sampled_from([None] * 10 + ["range", "neg", "dup", "float", "rows", "1d"]))
    if (fault in ("range", "neg") and not I.size) or (fault == "dup" and (width < 2 or nq == 0)):
        fault = None
    if fault == "range":
        I[0, 0] = nb
    elif fault == "neg":
        I[0, 0] = -2
    elif fault == "dup":
        I[0, :2] = 0
    elif fault == "float":
        I = I.astype(np.float64)
    elif fault == "rows":
        I = I[:-1] if nq else np.zeros((1, width), np.int64)
    elif fault == "1d":
        I = I.ravel()
    return I, fault is None


@FUZZ
@given(data=st.data(), dim=st.integers(0, D + 1), k=ks(), metric=st.sampled_from(["l2", "ip"]),
       normalize=st.booleans())
def test_rerank(data, dim, k, metric, normalize):
    b, b_ok = data.draw(matrices(D, min_rows=1), "db")
    q, q_ok = data.draw(matrices(D), "q")
    nq, nb = (_rows(q) if q_ok else 2), (_rows(b) if b_ok else 3)
    I, i_ok = data.draw(shortlists(nq, nb), "I")
    (k, k_ok) = k
    valid = b_ok and q_ok and i_ok and 1 <= dim <= D and _k_valid(k, k_ok, nq)
    out = _expect(lambda: rerank(I, b, q, dim, k, metric, normalize), valid)
    if out is not None:
        q64, b64 = _prefix64(q, dim, normalize), _prefix64(b, dim, normalize)
        full = _distances(q64, b64, metric)
        Dq, Iq = out
        assert_consistent(Dq, Iq, full, int(k), metric, _tol(q64, b64), exact=False)
        sign = 1.0 if metric == "l2" else -1.0
        for r in range(nq):  # exactly the best min(k, |shortlist|) of the shortlist
            cand = I[r][I[r] >= 0]
            m = min(int(k), cand.size)
            assert (Iq[r, :m] >= 0).all() and (Iq[r, m:] < 0).all()
            assert set(Iq[r, :m].tolist()) <= set(cand.tolist())
            best = sign * np.sort(sign * full[r, cand])[:m]
            np.testing.assert_allclose(Dq[r, :m], best, rtol=1e-4, atol=_tol(q64, b64))


@settings(FUZZ, max_examples=50)
@given(x=matrices_and_widths(D), d=st.sampled_from([1, 3, 5, D, None, 0, D + 1, -1, 2.0]),
       normalize=st.booleans())
def test_prefix(x, d, normalize):
    x, _, width = x  # any width D >= d
    valid = width is not None and (d is None or (type(d) is int and 1 <= d <= width))
    out = _expect(lambda: prefix(x, d, normalize), valid)
    if out is not None:
        d = width if d is None else d
        assert out.shape == (_rows(x), d) and out.dtype == np.float32 and out.flags.c_contiguous
        np.testing.assert_allclose(out, _prefix64(x, d, normalize), rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------ metrics

@st.composite
def id_arrays(draw, nq, width, n_db):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    I = rng.integers(-1, n_db, (nq, width))
    fault = draw(st.sampled_from([None] * 8 + ["float", "range", "neg", "1d", "obj"]))
    if fault in ("range", "neg") and not I.size:
        fault = None
    if fault == "float":
        I = I.astype(np.float32)
    elif fault == "range":
        I[0, 0] = n_db
    elif fault == "neg":
        I[0, 0] = -5
    elif fault == "1d":
        I = I.ravel()
    elif fault == "obj":
        I = I.astype(object)
    return I, fault is None


@FUZZ
@given(data=st.data(), nq=st.sampled_from([1, 2, 3, 4, 5, 0]), width=st.sampled_from([1, 2, 3, 4, 5, 0]),
       n_db=st.integers(1, 9), k=st.sampled_from([1, 1, 2, 2, 3, 0, 6, 2.5, None]))
def test_label_metrics(data, nq, width, n_db, k):
    I, i_ok = data.draw(id_arrays(nq, width, n_db), "I")
    db_labels = np.random.default_rng(nq).integers(0, 3, n_db)
    q_labels = data.draw(st.sampled_from(["ok"] * 4 + ["short", "float"]), "q_labels")
    ql = {"ok": np.zeros(nq, np.int64), "short": np.zeros(nq + 1, np.int64),
          "float": np.zeros(nq, np.float64)}[q_labels]
    base_ok = i_ok and q_labels == "ok" and nq > 0
    k_ok = type(k) is int and 1 <= k <= width
    for fn, args, ok in ((top1_accuracy, (I, db_labels, ql), base_ok and width >= 1),
                         (map_at_k, (I, db_labels, ql, k), base_ok and k_ok),
                         (recall_at_k, (I, db_labels, ql, k), base_ok and k_ok)):
        value = _expect(lambda: fn(*args), ok)
        if value is not None:
            assert type(value) is float and 0.0 <= value <= 1.0


@FUZZ
@given(data=st.data(), nq=st.sampled_from([1, 2, 3, 4, 0]), k=st.sampled_from([1, 2, 3, 3, 0, 7, None]),
       n=st.sampled_from([1, 3, 5, 5, 0, 9, 1.5]), big=st.booleans())
def test_knn_recall(data, nq, k, n, big):
    offset = 2**62 if big else 0  # ids near int64's top must not overflow anything
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), "seed"))
    exact = np.array([rng.permutation(6)[:3] for _ in range(nq)], dtype=np.int64).reshape(nq, 3) + offset
    ann = rng.integers(0, 8, (nq, 5)) + offset
    ann[rng.random((nq, 5)) < 0.2] = -1
    fault = data.draw(st.sampled_from([None] * 8 + ["rows", "float", "missing"]), "fault")
    if fault == "missing" and not nq:
        fault = None
    if fault == "rows":
        ann = ann[:-1] if nq else np.zeros((1, 5), np.int64)
    elif fault == "float":
        ann = ann.astype(np.float64)
    elif fault == "missing":
        exact[0, 0] = -1
    ok = fault is None and nq > 0 and type(k) is int and 1 <= k <= 3 and type(n) is int and 1 <= n <= 5
    value = _expect(lambda: knn_recall(exact, ann, k, n), ok)
    if value is not None:
        want = np.mean([len(set(exact[i, :k].tolist()) & set(a for a in ann[i, :n].tolist() if a >= 0)) / k
                        for i in range(nq)])
        assert value == pytest.approx(want)
