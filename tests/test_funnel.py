import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from adanns_ref.core.cost import funnel_flops
from adanns_ref.funnel import funnel_search, rerank
from adanns_ref.search.knn import knn_search
from adanns_ref.testing import assert_knn_equal
from adanns_ref.core.truncate import prefix

FLT_MAX = np.float32(np.finfo(np.float32).max)


def _data(seed=0, n=400, nq=12, D=32):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, D)).astype(np.float32),
            rng.standard_normal((nq, D)).astype(np.float32))


def _ref_rank(xq, xb, cand, k, metric):
    """Brute force: float64 distances of the candidates, full lexsort on (distance, id)."""
    D = np.full((len(xq), k), FLT_MAX if metric == "l2" else -FLT_MAX, np.float32)
    I = np.full((len(xq), k), -1, np.int64)
    for r, ids in enumerate(cand):
        ids = np.asarray([i for i in ids if i >= 0], np.int64)
        diff = xb[ids].astype(np.float64) - xq[r].astype(np.float64)
        if metric == "l2":
            dist = (diff ** 2).sum(axis=1)
            key = dist
        else:
            dist = xb[ids].astype(np.float64) @ xq[r].astype(np.float64)
            key = -dist
        order = np.lexsort((ids, key))[:k]
        D[r, :len(order)], I[r, :len(order)] = dist[order], ids[order]
    return D, I


def _assert_same(D, I, D_ref, I_ref):
    np.testing.assert_array_equal(I, I_ref)
    np.testing.assert_allclose(D, D_ref, rtol=1e-5, atol=1e-5)
    assert D.dtype == np.float32 and I.dtype == np.int64


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("normalize", [True, False])
def test_rerank_matches_brute_force_on_shortlist(metric, normalize):
    db, q = _data()
    rng = np.random.default_rng(1)
    I = np.stack([rng.permutation(len(db))[:30] for _ in range(len(q))])
    I[::3, 5:9] = -1
    D_out, I_out = rerank(I, db, q, dim=20, k=10, metric=metric, normalize=normalize)
    xb, xq = prefix(db, 20, normalize), prefix(q, 20, normalize)
    _assert_same(D_out, I_out, *_ref_rank(xq, xb, I, 10, metric))


def test_rerank_never_mutates_its_input():
    db, q = _data()
    I = np.tile(np.arange(50, 0, -1), (len(q), 1))
    before = I.copy()
    rerank(I, db, q, 16, 5)
    np.testing.assert_array_equal(I, before)
    funnel_search(db, q, [(4, 40), (16, 20), (32, 5)])  # later stages must not see re-ranked lists
    np.testing.assert_array_equal(I, before)


def test_rerank_pads_short_and_empty_shortlists():
    db, q = _data(nq=3)
    I = np.array([[7, -1, 3, -1], [-1, -1, -1, -1], [2, 9, 4, 1]])
    for metric, pad in (("l2", FLT_MAX), ("ip", -FLT_MAX)):
        D_out, I_out = rerank(I, db, q, 32, 3, metric=metric)
        assert sorted(I_out[0, :2]) == [3, 7] and I_out[0, 2] == -1 and D_out[0, 2] == pad
        assert (I_out[1] == -1).all() and (D_out[1] == pad).all()
        assert (I_out[2] >= 0).all()


def test_rerank_ties_go_to_the_smaller_id_whatever_the_shortlist_order():
    db, q = _data(n=20, nq=1)
    db[[3, 11, 17]] = db[5]  # four identical vectors
    for order in ([17, 11, 5, 3], [3, 5, 11, 17], [11, 3, 17, 5]):
        _, I_out = rerank(np.array([order]), db, q, 32, 2)
        np.testing.assert_array_equal(I_out, [[3, 5]])


def test_rerank_in_blocks_equals_whole_database_path(monkeypatch):
    from adanns_ref.funnel import funnel
    db, q = _data(nq=30)
    rng = np.random.default_rng(2)
    I = np.stack([rng.permutation(len(db))[:40] for _ in range(len(q))])
    I[::3, 5:9] = -1  # empty slots are skipped on both paths
    whole = rerank(I, db, q, 24, 7)  # the whole database fits the budget: prefixed once
    monkeypatch.setattr(funnel, "RERANK_BLOCK", 40 * 32 * 4)  # 4 queries per block
    blocked = rerank(I, db, q, 24, 7)
    np.testing.assert_array_equal(whole[0], blocked[0])
    np.testing.assert_array_equal(whole[1], blocked[1])


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_one_stage_funnel_is_exact_search(metric):
    db, q = _data()
    D_f, I_f, flops = funnel_search(db, q, [(8, 10)], metric=metric)
    D_e, I_e = knn_search(prefix(q, 8), prefix(db, 8), 10, metric)
    np.testing.assert_array_equal(I_f, I_e)
    np.testing.assert_array_equal(D_f, D_e)
    assert flops == 8 * len(db)
    xb, xq = prefix(db, 8), prefix(q, 8)
    _assert_same(D_f, I_f, *_ref_rank(xq, xb, np.tile(np.arange(len(db)), (len(q), 1)), 10, metric))


def test_adaptive_retrieval_matches_brute_force_cascade():
    db, q = _data(seed=3)
    D_out, I_out, flops = funnel_search(db, q, [(4, 50), (16, 20), (32, 5)])
    all_ids = np.tile(np.arange(len(db)), (len(q), 1))
    _, s0 = _ref_rank(prefix(q, 4), prefix(db, 4), all_ids, 50, "l2")
    _, s1 = _ref_rank(prefix(q, 16), prefix(db, 16), s0, 20, "l2")
    _assert_same(D_out, I_out, *_ref_rank(prefix(q, 32), prefix(db, 32), s1, 5, "l2"))
    assert flops == funnel_flops(4, len(db), [(16, 50), (32, 20)]) == 4 * 400 + 16 * 50 + 32 * 20


def test_shortlist_of_everything_equals_exact_search_at_the_last_dim():
    db, q = _data(seed=4)
    _, I_out, _ = funnel_search(db, q, [(2, len(db)), (32, 10)])
    _, I_e = knn_search(prefix(q, 32), prefix(db, 32), 10, "l2")
    np.testing.assert_array_equal(I_out, I_e)


def test_adaptive_retrieval_matches_faiss_refine_flat():
    faiss = pytest.importorskip("faiss")
    db, q = _data(seed=5, n=3000, nq=40)
    D, d0, k = db.shape[1], 8, 5
    # faiss has no prefix search: a LinearTransform that keeps the first d0 dims plays stage 0,
    # IndexRefineFlat re-ranks k * k_factor candidates with full-D exact distances.
    lt = faiss.LinearTransform(D, d0, False)
    faiss.copy_array_to_vector(np.eye(d0, D, dtype=np.float32).ravel(), lt.A)
    lt.is_trained = True
    index = faiss.IndexRefineFlat(faiss.IndexPreTransform(lt, faiss.IndexFlatL2(d0)))
    index.add(db)
    index.k_factor = 10
    D_ref, I_ref = index.search(q, k)
    D_out, I_out, _ = funnel_search(db, q, [(d0, 50), (D, k)], normalize=False)
    np.testing.assert_array_equal(I_out, I_ref)
    np.testing.assert_allclose(D_out, D_ref, rtol=1e-5, atol=1e-5)






def _faiss_funnel(faiss, db, q, d0, k0, k):
    """faiss's funnel: IndexFlatL2(d0) over the d0-prefixes (its own choice of direct or BLAS
    form), then knn_L2sqr_by_idx re-ranking the shortlisted full rows."""
    flat = faiss.IndexFlatL2(d0)
    flat.add(np.ascontiguousarray(db[:, :d0]))
    D0, I0 = flat.search(np.ascontiguousarray(q[:, :d0]), k0)
    nq, D = q.shape
    Dk, Ik = np.empty((nq, k), np.float32), np.empty((nq, k), np.int64)
    faiss.knn_L2sqr_by_idx(faiss.swig_ptr(q), faiss.swig_ptr(db), faiss.swig_ptr(I0), D, nq, len(db),
                           k0, k, faiss.swig_ptr(Dk), faiss.swig_ptr(Ik), k0)
    return D0, I0, Dk, Ik


def _stage0_near_ties(q0, db0, I0, I_ref0, rel):
    """Rows of two shortlists (nq, k0) that differ, and whether every id in one but not the
    other lies within `rel` (relative, float64 distances) of the k0-th distance of I_ref0."""
    differ, explained = [], True
    for r in range(len(q0)):
        extra = set(I0[r]) ^ set(I_ref0[r])
        if not extra:
            continue
        differ.append(r)
        dist = lambda ids: ((db0[list(ids)].astype(np.float64) - q0[r].astype(np.float64)) ** 2).sum(1)
        cut = dist([I_ref0[r, -1]])[0]
        explained &= bool(np.all(np.abs(dist(extra) - cut) <= rel * cut))
    return differ, explained


def test_batch_funnel_equals_faiss_flat_plus_knn_by_idx_up_to_near_ties():
    """A batch (>= BLAS_MIN_QUERIES queries) runs stage 0 in the BLAS form, faiss's IndexFlatL2(16)
    at this batch size in the direct form: the shortlists may differ only by ids whose distance
    ties the k0-th within float32 rounding, and wherever they agree the re-ranked results are
    faiss's bit for bit (the same fvec_L2sqr order)."""
    faiss = pytest.importorskip("faiss")
    from adanns_ref.core.simd import faiss_runs_avx512
    from adanns_ref.funnel.kernels import BLAS_MIN_QUERIES
    rng = np.random.default_rng(7)
    scale = (np.arange(1, 129) ** -0.5).astype(np.float32)
    centres = rng.standard_normal((20, 128)).astype(np.float32) * scale
    base = (centres[rng.integers(0, 20, 4000)] + 0.5 * rng.standard_normal((4000, 128)) * scale).astype(np.float32)
    # each row five times, moved by one ulp at random dims: distances tie within rounding
    db = np.repeat(base, 5, axis=0)
    nudge = rng.integers(-1, 2, db.shape)
    db = np.where(nudge > 0, np.nextafter(db, np.inf), np.where(nudge < 0, np.nextafter(db, -np.inf), db))
    q = (centres[rng.integers(0, 20, BLAS_MIN_QUERIES + 9)]
         + 0.5 * rng.standard_normal((BLAS_MIN_QUERIES + 9, 128)) * scale).astype(np.float32)
    d0, k0, k = 16, 203, 10  # 203: the cut falls inside a group of copies
    assert len(q) * d0 < faiss.cvar.distance_compute_blas_threshold  # faiss: direct form
    _, I0_f, D_f, I_f = _faiss_funnel(faiss, db, q, d0, k0, k)
    D, I, _ = funnel_search(db, q, [(d0, k0), (128, k)], normalize=False)
    # our stage-0 shortlist as a set: re-ranked at d0 it keeps the same ids (a one-stage funnel
    # would be exact search instead)
    _, I0_ours, _ = funnel_search(db, q, [(d0, k0), (d0, k0)], normalize=False)
    differ, explained = _stage0_near_ties(q[:, :d0], db[:, :d0], I0_ours, I0_f, rel=1e-5)
    assert explained and 0 < len(differ) < len(q), differ  # near-ties occur here, in most rows
    same = np.setdiff1d(np.arange(len(q)), differ)
    np.testing.assert_array_equal(I[same], I_f[same])
    if faiss_runs_avx512(faiss):
        np.testing.assert_array_equal(D[same], D_f[same])
    assert_knn_equal(D_f, I_f, D, I, rtol=1e-5, atol=1e-6)  # every row, up to the near-ties


@settings(deadline=None, max_examples=25)
@given(seed=st.integers(0, 2**31 - 1), d0=st.integers(1, 16), k0=st.integers(1, 60),
       d1=st.integers(1, 16), shrink=st.integers(0, 59))
def test_funnel_properties(seed, d0, k0, d1, shrink):
    db, q = _data(seed, n=50, nq=4, D=16)
    k1 = max(1, k0 - shrink)
    D0, I0, _ = funnel_search(db, q, [(d0, k0)])
    D1, I1, flops = funnel_search(db, q, [(d0, k0), (d1, k1)])
    assert I1.shape == (4, k1)
    for r in range(4):
        valid = I1[r] >= 0
        assert set(I1[r][valid]) <= set(I0[r][I0[r] >= 0])  # re-ranking only reorders the shortlist
        assert valid.sum() == min(k1, k0, len(db))
        assert np.all(np.diff(D1[r][valid]) >= 0)
    assert flops == d0 * 50 + d1 * min(k0, 50)


@pytest.mark.parametrize("call, exc, match", [
    (lambda db, q: funnel_search(db, q, []), ValueError, "stages is empty"),
    (lambda db, q: funnel_search(db, q, 16), TypeError, "sequence of"),
    (lambda db, q: funnel_search(db, q, [(8, 10), (16, 20)]), ValueError, "shortlists must not grow"),
    (lambda db, q: funnel_search(db, q, [(0, 10)]), ValueError, r"stages\[0\] dim must be >= 1"),
    (lambda db, q: funnel_search(db, q, [(8, 10), (33, 5)]), ValueError, r"stages\[1\] dim must be <= 32"),
    (lambda db, q: funnel_search(db, q, [(8, 0)]), ValueError, r"stages\[0\] k must be >= 1"),
    (lambda db, q: funnel_search(db, q, [(8, 10, 3)]), ValueError, "must be a .dim, k. pair"),
    (lambda db, q: funnel_search(db, q, [(8, 10)], metric="cosine"), ValueError, "metric must be"),
    (lambda db, q: funnel_search(db, q[:, :16], [(8, 10)]), ValueError, "dimension mismatch"),
    (lambda db, q: rerank(np.zeros((12, 3), int), db, q, 40, 2), ValueError, "dim must be <= 32"),
    (lambda db, q: rerank(np.zeros((11, 3), int), db, q, 8, 2), ValueError, "11 rows but q_full has 12"),
    (lambda db, q: rerank(np.full((12, 3), 400), db, q, 8, 2), ValueError, "contains id 400"),
    (lambda db, q: rerank(np.zeros((12, 3)), db, q, 8, 2), TypeError, "integer ids"),
    (lambda db, q: rerank(np.tile([1, 2, 1], (12, 1)), db, q, 8, 2), ValueError, "lists id 1 more than once"),
    (lambda db, q: rerank(np.zeros((12, 1), int), db, q, 8, 0), ValueError, "k must be >= 1"),
])
def test_bad_inputs(call, exc, match):
    db, q = _data()
    with pytest.raises(exc, match=match):
        call(db, q)


# ----------------------------------------------------------------- mixed-precision funnels

from adanns_ref.funnel import funnel as funnel_mod
from adanns_ref.indices.binary import BinaryFlatIndex
from adanns_ref.quantizers.binary import binarize
from adanns_ref.core.cost import mixed_funnel_cost
from adanns_ref.funnel.funnel import mixed_funnel_search
from adanns_ref.quantizers.sq import DECODE_SIMD, ScalarQuantizer
from adanns_ref.indices.sqindex import SQIndex


def _stage_scores(xb, xq, I, d, precision, metric, normalize=True):
    """Independent scores of ids I (nq, k) at one stage, float64 (-1 ids -> nan)."""
    out = np.full(I.shape, np.nan)
    if precision == "binary":
        qb, bb = binarize(xq, d), binarize(xb, d)
        for r in range(len(xq)):
            ids = I[r][I[r] >= 0]
            out[r, :len(ids)] = np.unpackbits(qb[r] ^ bb[ids], axis=1).sum(1)
        return out
    zq, zb = prefix(xq, d, normalize).astype(np.float64), prefix(xb, d, normalize)
    if precision == "int8":
        sq = ScalarQuantizer(d, "8bit").train(zb)
        zb = sq.reconstruct(sq.encode(zb), DECODE_SIMD)
    zb = zb.astype(np.float64)
    for r in range(len(xq)):
        ids = I[r][I[r] >= 0]
        diff = zb[ids] - zq[r]
        out[r, :len(ids)] = (diff ** 2).sum(1) if metric == "l2" else zb[ids] @ zq[r]
    return out


def _assert_scores_belong_to_ids(D, I, xb, xq, stage, metric):
    ref = _stage_scores(xb, xq, I, *stage, metric)
    valid = I >= 0
    np.testing.assert_allclose(D[valid], ref[valid], rtol=1e-4, atol=1e-4)


MIXED = [(16, "binary", 60), (24, "int8", 20), (32, "float", 5)]


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_mixed_funnel_scores_belong_to_the_returned_ids(metric):
    xb, xq = _data(3, n=500, nq=15)
    D, I, cost = mixed_funnel_search(xb, xq, MIXED, metric)
    _assert_scores_belong_to_ids(D, I, xb, xq, MIXED[-1][:2], metric)
    best_first = np.diff(D, axis=1) >= 0 if metric == "l2" else np.diff(D, axis=1) <= 0
    assert best_first.all()
    assert cost["stages"][0]["candidates"] == 500 and cost["stages"][2]["candidates"] == 20


def test_misordered_rescoring_is_caught(monkeypatch):
    """The sentence-transformers bug: ids re-ranked but scores left in shortlist order. A funnel
    whose rescoring does that must fail the scores-belong-to-ids check."""
    xb, xq = _data(4, n=500, nq=15)
    good = funnel_mod._rerank

    def misordered(I, *args):
        D, I_new = good(I, *args)
        # scores of the new ranking, but paired with the shortlist's ids in their old order
        return D, np.ascontiguousarray(I[:, :I_new.shape[1]])

    monkeypatch.setattr(funnel_mod, "_rerank", misordered)
    D, I, _ = mixed_funnel_search(xb, xq, MIXED, "l2")
    with pytest.raises(AssertionError):
        _assert_scores_belong_to_ids(D, I, xb, xq, MIXED[-1][:2], "l2")


def test_each_stage_equals_its_index_search():
    """Stage 0 of each precision is the faiss-style index of that precision; a lone last stage
    re-ranks the previous stage's ids with that index's scores."""
    xb, xq = _data(5, n=400, nq=10)
    zb, zq = prefix(xb, 16), prefix(xq, 16)
    D, I, _ = mixed_funnel_search(xb, xq, [(16, "int8", 7)])
    sq = SQIndex(16, "8bit")
    sq.train(zb)
    sq.add(zb)
    D_ref, I_ref = sq.search(zq, 7)
    np.testing.assert_array_equal(I, I_ref)
    np.testing.assert_array_equal(D, D_ref)
    D, I, _ = mixed_funnel_search(xb, xq, [(24, "binary", 9)])
    flat = BinaryFlatIndex(24)
    flat.add(binarize(xb, 24))
    D_ref, I_ref = flat.search(binarize(xq, 24), 9)
    np.testing.assert_array_equal(I, I_ref)
    np.testing.assert_array_equal(D, D_ref.astype(np.float32))
    # float-only mixed funnel = the float funnel
    D, I, _ = mixed_funnel_search(xb, xq, [(8, "float", 50), (32, "float", 5)])
    D_ref, I_ref, _ = funnel_search(xb, xq, [(8, 50), (32, 5)])
    np.testing.assert_array_equal(I, I_ref)
    np.testing.assert_array_equal(D, D_ref)


def test_binary_then_rescore_keeps_the_float_order_of_the_shortlist():
    xb, xq = _data(6, n=300, nq=8)
    _, I0, _ = mixed_funnel_search(xb, xq, [(32, "binary", 40)])
    D, I, _ = mixed_funnel_search(xb, xq, [(32, "binary", 40), (32, "float", 10)], "ip")
    D_ref, I_ref = rerank(I0, xb, xq, 32, 10, "ip")
    np.testing.assert_array_equal(I, I_ref)
    np.testing.assert_array_equal(D, D_ref)


def test_oversample_sets_the_shortlists_like_vector_databases():
    xb, xq = _data(7, n=300, nq=5)
    a = mixed_funnel_search(xb, xq, [(32, "binary", None), (32, "float", 10)], oversample=4)
    b = mixed_funnel_search(xb, xq, [(32, "binary", 40), (32, "float", 10)])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2]["stages"][1]["candidates"] == 40
    c = mixed_funnel_search(xb, xq, [(32, "binary", None), (32, "float", 10)], oversample=2.5)
    assert c[2]["stages"][1]["candidates"] == 25


def test_mixed_funnel_cost_counts_bytes_and_operations():
    cost = mixed_funnel_cost(60000, [(256, "binary", 200), (1024, "int8", 50), (2048, "float", 10)])
    s0, s1, s2 = cost["stages"]
    assert (s0["bytes"], s0["popcounts"]) == (60000 * 32, 60000 * 4)
    assert (s1["bytes"], s1["int8_ops"]) == (200 * 1024, 200 * 1024)
    assert (s2["bytes"], s2["float_ops"]) == (50 * 2048 * 4, 50 * 2048)
    assert cost["bytes"] == s0["bytes"] + s1["bytes"] + s2["bytes"]
    assert mixed_funnel_cost(30, [(8, "binary", 100), (8, "float", 5)])["stages"][1]["candidates"] == 30


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10 ** 6), st.sampled_from(["binary", "int8", "float"]),
       st.sampled_from(["binary", "int8", "float"]), st.sampled_from(["l2", "ip"]))
def test_mixed_funnel_properties(seed, p0, p1, metric):
    xb, xq = _data(seed, n=120, nq=4, D=16)
    stages = [(8, p0, 30), (16, p1, 6)]
    D, I, _ = mixed_funnel_search(xb, xq, stages, metric)
    _, I0, _ = mixed_funnel_search(xb, xq, stages[:1], metric)
    for r in range(len(xq)):
        assert set(I[r]) <= set(I0[r])  # the last stage only re-ranks the shortlist
        assert len(set(I[r])) == 6
    _assert_scores_belong_to_ids(D, I, xb, xq, stages[-1][:2], metric)


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"stages": []}, ValueError, "empty"),
    ({"stages": [(8, "int4", 5)]}, ValueError, "precision must be one of"),
    ({"stages": [(8, "float")]}, ValueError, "triple"),
    ({"stages": [(8, "float", None)]}, ValueError, "cannot be None"),
    ({"stages": [(8, "binary", None), (8, "float", 5)]}, ValueError, "no oversample"),
    ({"stages": [(8, "binary", None), (8, "float", 5)], "oversample": 0.5}, ValueError, "oversample"),
    ({"stages": [(8, "binary", 5), (8, "float", 10)]}, ValueError, "must not grow"),
    ({"stages": [(64, "float", 5)]}, ValueError, "dim must be <= 32"),
    ({"stages": [(8, "float", 5)], "metric": "cos"}, ValueError, "metric"),
    ({"stages": 5}, TypeError, "triples"),
])
def test_mixed_funnel_bad_inputs(kwargs, exc, match):
    xb, xq = _data(0, n=50, nq=2)
    with pytest.raises(exc, match=match):
        mixed_funnel_search(xb, xq, **kwargs)
    with pytest.raises(ValueError, match="precision"):
        mixed_funnel_cost(10, [(8, "fp8", 5)])
