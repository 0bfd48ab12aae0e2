"""FunnelIndex and the fast funnel path: the same bits as funnel_search, as the previous
implementation (exact search at d_0 + re-rank of gathered, re-normalised rows) where that
one's stage 0 took the direct path, tie-aware agreement where it took the BLAS path, memory
maps, and every bad input."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from adanns_ref.funnel import index as funnel_index
from adanns_ref.funnel.kernels import SCAN_MAX_DIM
from adanns_ref.funnel import funnel_search, rerank
from adanns_ref.funnel.index import FunnelIndex
from adanns_ref.testing import assert_knn_equal
from adanns_ref.core.threads import BLAS_THRESHOLD
from adanns_ref.search.knn import knn_search
from adanns_ref.core.truncate import normalize_rows

FLT_MAX = np.float32(np.finfo(np.float32).max)


def _old_prefix(x, d, normalize):
    return normalize_rows(normalize_rows(x)[:, :d]) if normalize else np.ascontiguousarray(x[:, :d])


def _old_funnel(db, q, stages, metric, normalize):
    """The funnel as it was before the fused kernels: knn_search on whole-database prefixes,
    then per stage the prefix of the gathered shortlist rows, scored by float32 numpy in the
    same order (simd_sum, via knn_search on one row at a time)."""
    d0, k0 = stages[0]
    D, I = knn_search(_old_prefix(q, d0, normalize), _old_prefix(db, d0, normalize), k0, metric)
    for d, k in stages[1:]:
        xq, xb = _old_prefix(q, d, normalize), _old_prefix(db, d, normalize)
        D_new = np.full((len(q), k), FLT_MAX if metric == "l2" else -FLT_MAX, np.float32)
        I_new = np.full((len(q), k), -1, np.int64)
        for r in range(len(q)):
            ids = np.sort(I[r][I[r] >= 0])
            # knn_search on one query is the direct (simd_sum) form, as the re-rank kernel was
            Dr, Ir = knn_search(xq[r:r + 1], xb[ids], k, metric)
            m = int((Ir[0] >= 0).sum())
            D_new[r, :m], I_new[r, :m] = Dr[0, :m], ids[Ir[0, :m]]
        D, I = D_new, I_new
    return D, I


def _data(seed=0, n=600, nq=20, D=48):
    rng = np.random.default_rng(seed)
    scale = np.arange(1, D + 1) ** -0.5  # Matryoshka-like: informative prefixes
    db = (rng.standard_normal((n, D)) * scale).astype(np.float32)
    q = (db[rng.integers(0, n, nq)] + 0.3 * rng.standard_normal((nq, D)) * scale).astype(np.float32)
    return db, q


STAGES = [[(8, 60), (48, 10)], [(4, 100), (16, 40), (48, 5)], [(16, 150), (32, 150), (8, 3)],
          [(32, 30), (48, 30)], [(40, 30), (48, 5)], [(12, 7)]]  # 40 > SCAN_MAX_DIM: a GEMM


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("stages", STAGES)
def test_funnel_search_and_index_equal_the_previous_implementation(metric, normalize, stages):
    db, q = _data()
    D_old, I_old = _old_funnel(db, q, stages, metric, normalize)
    D, I, _ = funnel_search(db, q, stages, metric, normalize)
    np.testing.assert_array_equal(I, I_old)
    np.testing.assert_array_equal(D, D_old)
    index = FunnelIndex(db, [s[0] for s in stages], metric, normalize)
    D_i, I_i, _ = index.search(q, stages)
    np.testing.assert_array_equal(I_i, I)
    np.testing.assert_array_equal(D_i, D)


def test_large_batches_agree_with_the_previous_blas_stage0_up_to_ties():
    """With nq * d_0 >= BLAS_THRESHOLD the old stage 0 used the BLAS form: shortlists may differ
    only where distances tie within rounding, so the final top-10 agrees tie-aware."""
    db, q = _data(seed=1, n=1000, nq=BLAS_THRESHOLD // SCAN_MAX_DIM + 10, D=48)
    stages = [(SCAN_MAX_DIM, 50), (48, 10)]
    D_old, I_old = _old_funnel(db, q, stages, "l2", True)
    D, I, _ = FunnelIndex(db, [SCAN_MAX_DIM, 48]).search(q, stages)
    assert_knn_equal(D_old, I_old, D, I, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_prepared_and_unprepared_dims_give_the_same_bits(metric, monkeypatch):
    db, q = _data(seed=2, n=1001)
    stages = [(8, 80), (20, 30), (48, 10)]
    want = funnel_search(db, q, stages, metric)
    monkeypatch.setattr(funnel_index, "PREPARE_BLOCK", 48 * 40)  # several preparation blocks
    for dims in ([8], [20, 48], [8, 20, 48], [1, 8, 48, 20]):
        got = FunnelIndex(db, dims, metric).search(q, stages)
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


def test_one_stage_on_an_index_is_exact_search():
    db, q = _data(seed=3)
    index = FunnelIndex(db, [16])
    D, I, flops = index.search(q, [(16, 10)])
    D_e, I_e, _ = funnel_search(db, q, [(16, 10)])
    np.testing.assert_array_equal(I, I_e)
    np.testing.assert_array_equal(D, D_e)
    assert flops == 16 * len(db)


def test_index_over_a_memory_mapped_fbin_keeps_it_on_disk(tmp_path):
    from adanns_ref.io import read_fbin, write_fbin
    db, q = _data(seed=4)
    path = str(tmp_path / "db.fbin")
    write_fbin(path, db)
    mm = read_fbin(path, mmap=True)
    index = FunnelIndex(mm, [8, 48])
    assert np.shares_memory(index.db, mm)  # no copy of the database
    stages = [(8, 60), (48, 10)]
    for a, b in zip(index.search(q, stages), funnel_search(db, q, stages)):
        np.testing.assert_array_equal(a, b)
    n_pad = 16 * -(-len(db) // 16)  # scan layouts for the dims <= SCAN_MAX_DIM, padded
    scanned = [d for d in (8, 48) if d <= SCAN_MAX_DIM]
    # float64 scales, then per scanned dim its layout and its squared norms (the BLAS form)
    assert index.nbytes == 8 * len(db) * 3 + 4 * sum(scanned) * n_pad + 4 * len(scanned) * n_pad


def test_recall_of_a_funnel_on_informative_prefixes():
    """A sanity check of the pipeline as a whole: on Matryoshka-like data a 8 -> 48 funnel with a
    generous shortlist finds most of the exact top-10 at 48 dims."""
    db, q = _data(seed=5, n=3000, nq=50)
    _, I, _ = FunnelIndex(db, [8, 48]).search(q, [(8, 300), (48, 10)])
    _, I_exact, _ = funnel_search(db, q, [(48, 10)])
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(I, I_exact)]) > 0.9


@settings(deadline=None, max_examples=25)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 200), d0=st.integers(1, 24),
       k0=st.integers(1, 160), d1=st.integers(1, 24), shrink=st.integers(0, 159),
       metric=st.sampled_from(["l2", "ip"]), normalize=st.booleans())
def test_index_properties(seed, n, d0, k0, d1, shrink, metric, normalize):
    rng = np.random.default_rng(seed)
    db = rng.integers(-2, 3, size=(n, 24)).astype(np.float32)  # many exact ties and zero rows
    q = rng.integers(-2, 3, size=(5, 24)).astype(np.float32)
    stages = [(d0, k0), (d1, max(1, k0 - shrink))]
    D, I, flops = FunnelIndex(db, [d0, d1], metric, normalize).search(q, stages)
    D_old, I_old = _old_funnel(db, q, stages, metric, normalize)
    np.testing.assert_array_equal(I, I_old)
    np.testing.assert_array_equal(D, D_old)
    for r in range(len(q)):  # ids distinct, a subset of the stage-0 shortlist's size
        valid = I[r][I[r] >= 0]
        assert len(set(valid)) == len(valid) == min(n, stages[1][1])


@pytest.mark.parametrize("bad, err, match", [
    (dict(dims=[]), ValueError, "dims is empty"),
    (dict(dims=[0]), ValueError, ">= 1"),
    (dict(dims=[49]), ValueError, "<= 48"),
    (dict(dims=16), TypeError, r"list of prefix sizes, e.g. \[16\]"),
    (dict(dims=[16.0]), TypeError, "integer"),
    (dict(dims=[16], metric="cos"), ValueError, "metric"),
    (dict(dims=[16], normalize=1), TypeError, "normalize"),
])
def test_index_rejects_bad_arguments(bad, err, match):
    db, _ = _data()
    with pytest.raises(err, match=match):
        FunnelIndex(db, **bad)


def test_index_rejects_bad_databases_and_queries():
    db, q = _data()
    bad = db.copy()
    bad[345, 3] = np.nan
    with pytest.raises(ValueError, match="row 345"):
        FunnelIndex(bad, [8])
    with pytest.raises(TypeError, match="real numeric"):
        FunnelIndex(db.astype(complex), [8])
    with pytest.raises(ValueError, match="2-D"):
        FunnelIndex(db[0], [8])
    index = FunnelIndex(db, [8])
    with pytest.raises(ValueError, match="columns"):
        index.search(q[:, :40], [(8, 10)])
    with pytest.raises(ValueError, match="must not grow"):
        index.search(q, [(8, 10), (48, 20)])
    with pytest.raises(ValueError, match="<= 48"):
        index.search(q, [(8, 10), (49, 5)])


def test_index_converts_other_dtypes_once():
    db, q = _data()
    a = FunnelIndex(db.astype(np.float64), [8, 48]).search(q.astype(np.float64), [(8, 40), (48, 5)])
    b = FunnelIndex(db, [8, 48]).search(q, [(8, 40), (48, 5)])
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def test_rerank_of_another_index_shortlist_is_unchanged_by_preparation():
    """rerank() (no prepared scales) and a funnel on a FunnelIndex score a shortlist alike."""
    db, q = _data(seed=6)
    D0, I0, _ = funnel_search(db, q, [(8, 50)])
    D, I = rerank(I0, db, q, 48, 10)
    D_f, I_f, _ = FunnelIndex(db, [8, 48]).search(q, [(8, 50), (48, 10)])
    np.testing.assert_array_equal(I, I_f)
    np.testing.assert_array_equal(D, D_f)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(n=st.integers(1, 3000), d=st.integers(1, 40), where=st.floats(0, 1), col=st.floats(0, 1),
       how=st.sampled_from(["ulp", "sign_of_zero", "nan", "value"]))
def test_verify_sees_any_single_value_edit(n, d, where, col, how):
    """Issue 26 item 10: the fingerprint covers every byte of the database (not a sample of rows,
    the mistake of tune's old ground-truth key), so one changed value anywhere is caught."""
    x = np.random.default_rng(n * 41 + d).standard_normal((n, d)).astype(np.float32)
    i, j = min(int(where * n), n - 1), min(int(col * d), d - 1)
    if how == "sign_of_zero":
        x[i, j] = 0.0
    index = FunnelIndex(x, [d])
    index.verify()
    x[i, j] = {"ulp": np.nextafter(x[i, j], np.float32(np.inf)), "sign_of_zero": np.float32(-0.0),
               "nan": np.nan, "value": x[i, j] + 1}[how]
    with pytest.raises(ValueError, match="modified after it was prepared"):
        index.verify()
