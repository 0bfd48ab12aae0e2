
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from adanns_ref.evaluation import metrics as m

FLT_MAX = float(np.finfo(np.float32).max)

# Database of 6 items: labels 0 0 0 1 1 2 (n_rel: label 0 -> 3, 1 -> 2, 2 -> 1, 3 -> 0).
DB = np.array([0, 0, 0, 1, 1, 2])


def test_hand_computed_values():
    I = np.array([[0, 3, 1],    # query label 0: hits at ranks 1, 3
                  [5, 3, 4],    # query label 1: hits at ranks 2, 3
                  [2, -1, -1]])  # query label 2: no hit (id -1 is a miss)
    q = np.array([0, 1, 2])
    assert m.top1_accuracy(I, DB, q) == pytest.approx(1 / 3)
    assert m.hit_rate_at_k(I, DB, q, 3) == pytest.approx(2 / 3)
    assert m.precision_at_k(I, DB, q, 3) == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    ap0 = (1 / 1 + 2 / 3) / min(3, 3)
    ap1 = (1 / 2 + 2 / 3) / min(3, 2)
    assert m.map_at_k(I, DB, q, 3) == pytest.approx((ap0 + ap1 + 0) / 3)
    assert m.map_at_k(I, DB, q, 3, mode="adanns") == pytest.approx(((1 + 2 / 3) / 3 + (1 / 2 + 2 / 3) / 3) / 3)
    assert m.recall_at_k(I, DB, q, 3) == pytest.approx((2 / 3 + 2 / 2 + 0) / 3)
    assert m.recall_at_k(I, DB, q, 3, mode="adanns") == pytest.approx((2 + 2) / 1300 / 3)


def test_missing_id_never_takes_the_last_label():
    # The original notebooks indexed labels[-1]: here the last item has the query's label.
    I = np.array([[-1, -1]])
    q = np.array([2])
    assert m.top1_accuracy(I, DB, q) == 0.0
    assert m.hit_rate_at_k(I, DB, q, 2) == 0.0
    assert m.map_at_k(I, DB, q, 2, mode="adanns") == 0.0


def test_single_hit_at_rank_one_map_modes():
    I = np.array([[0, 5, 5, 5, 5, 5, 5, 5, 5, 5]])  # duplicates are fine for label metrics
    q = np.array([0])
    assert m.map_at_k(I, DB, q, 10) == pytest.approx(1 / 3)  # min(k=10, n_rel=3)
    assert m.map_at_k(I, DB, q, 10, mode="adanns") == pytest.approx(1 / 10)


def test_query_label_absent_from_database_scores_zero():
    I = np.array([[0, 1]])
    q = np.array([3])
    assert m.map_at_k(I, DB, q, 2) == 0.0
    assert m.recall_at_k(I, DB, q, 2) == 0.0


def _notebook_metrics(val_classes, db_classes, neighbors, k):
    """Loop transcription of the AdANNS notebook's compute_mAP_recall_at_k, -1 made a miss."""
    aps, prec, rec, topk = [], [], [], []
    for i in range(len(val_classes)):
        ids = neighbors[i, :k]
        matches = (db_classes[np.maximum(ids, 0)] == val_classes[i]) & (ids >= 0)
        tps = np.cumsum(matches)
        topk.append(matches.sum() > 0)
        rec.append(matches.sum() / 1300)
        prec.append(matches.sum() / k)
        aps.append(np.sum((tps / np.arange(1, k + 1))[matches]) / k)
    return np.mean(aps), np.mean(prec), np.mean(rec), np.mean(topk)


def _standard_ap(val_classes, db_classes, neighbors, k):
    out = []
    for i in range(len(val_classes)):
        n_rel = int((db_classes == val_classes[i]).sum())
        hits, s = 0, 0.0
        for r in range(k):
            j = neighbors[i, r]
            if j >= 0 and db_classes[j] == val_classes[i]:
                hits += 1
                s += hits / (r + 1)
        out.append(s / min(k, n_rel) if n_rel else 0.0)
    return np.mean(out), out


@settings(deadline=None, max_examples=40)
@given(seed=st.integers(0, 2**31 - 1), k=st.integers(1, 12), n_classes=st.integers(1, 6))
def test_matches_loop_references(seed, k, n_classes):
    rng = np.random.default_rng(seed)
    db = rng.integers(0, n_classes, 40)
    q = rng.integers(0, n_classes + 1, 15)  # label n_classes may be absent from the database
    I = rng.integers(-1, 40, (15, k + 2))
    ap, p, r, t = _notebook_metrics(q, db, I, k)
    assert m.map_at_k(I, db, q, k, mode="adanns") == pytest.approx(ap)
    assert m.precision_at_k(I, db, q, k) == pytest.approx(p)
    assert m.recall_at_k(I, db, q, k, mode="adanns") == pytest.approx(r)
    assert m.hit_rate_at_k(I, db, q, k) == pytest.approx(t)
    std, _ = _standard_ap(q, db, I, k)
    assert m.map_at_k(I, db, q, k) == pytest.approx(std)
    # Invariants: precision <= hit rate, top-1 <= hit rate, standard AP >= adanns AP.
    assert m.precision_at_k(I, db, q, k) <= m.hit_rate_at_k(I, db, q, k) + 1e-12
    assert m.top1_accuracy(I, db, q) <= m.hit_rate_at_k(I, db, q, k) + 1e-12
    assert m.map_at_k(I, db, q, k) >= ap - 1e-12
    assert 0.0 <= m.recall_at_k(I, db, q, k) <= 1.0


def test_results_are_python_floats():
    I = np.array([[0, 1]])
    q = np.array([0])
    for v in (m.top1_accuracy(I, DB, q), m.hit_rate_at_k(I, DB, q, 2), m.precision_at_k(I, DB, q, 2),
              m.map_at_k(I, DB, q, 2), m.recall_at_k(I, DB, q, 2), m.knn_recall(I, I, 2, 2),
              m.knn_recall_tie_aware(np.zeros((1, 2)), np.zeros((1, 2)), 2, 2)):
        assert type(v) is float


# --- k-recall@N -------------------------------------------------------------------------------

@settings(deadline=None, max_examples=40)
@given(seed=st.integers(0, 2**31 - 1), k=st.integers(1, 8), n=st.integers(1, 10))
def test_knn_recall_matches_set_reference(seed, k, n):
    rng = np.random.default_rng(seed)
    exact = np.stack([rng.permutation(30)[:8] for _ in range(12)])
    ann = rng.integers(-1, 30, (12, 10))  # may repeat ids and hold -1
    ref = np.mean([len(set(exact[i, :k]) & set(ann[i, :n][ann[i, :n] >= 0])) / k for i in range(12)])
    assert m.knn_recall(exact, ann, k, n) == pytest.approx(ref)


def test_knn_recall_perfect_and_disjoint():
    exact = np.array([[4, 2, 7], [1, 0, 3]])
    assert m.knn_recall(exact, exact[:, ::-1], 3, 3) == 1.0
    assert m.knn_recall(exact, exact + 10, 3, 3) == 0.0
    assert m.knn_recall(exact, np.full((2, 3), -1), 3, 3) == 0.0


def test_knn_recall_rejects_incomplete_ground_truth():
    with pytest.raises(ValueError, match="has -1 among its first k"):
        m.knn_recall(np.array([[0, -1]]), np.array([[0, 1]]), 2, 2)


def test_tie_aware_recall_forgives_ties_at_k():
    D_exact = np.array([[0.1, 0.2, 0.2]], np.float32)
    I_exact = np.array([[5, 6, 7]])
    I_ann = np.array([[5, 6, 8]])  # item 8 is tied with item 7 at the k-th distance
    D_ann = np.array([[0.1, 0.2, 0.2]], np.float32)
    assert m.knn_recall(I_exact, I_ann, 3, 3) == pytest.approx(2 / 3)
    assert m.knn_recall_tie_aware(D_exact, D_ann, 3, 3) == 1.0
    assert m.knn_recall_tie_aware(D_exact, D_ann + np.float32(0.01), 3, 3) == pytest.approx(1 / 3)
    # Capped at k even if more than k returned items fall within the threshold.
    assert m.knn_recall_tie_aware(D_exact, np.zeros((1, 5)), 3, 5) == 1.0


def test_tie_aware_recall_inner_product_and_missing():
    D_exact = np.array([[0.9, 0.8]], np.float32)
    assert m.knn_recall_tie_aware(D_exact, np.array([[0.9, 0.7]]), 2, 2, metric="ip") == 0.5
    assert m.knn_recall_tie_aware(D_exact, np.array([[0.9, -FLT_MAX]]), 2, 2, metric="ip") == 0.5
    assert m.knn_recall_tie_aware(np.array([[0.1, 0.3]]), np.array([[0.1, FLT_MAX]]), 2, 2) == 0.5


def test_tie_aware_recall_rejects_incomplete_ground_truth():
    with pytest.raises(ValueError, match="no k-th result"):
        m.knn_recall_tie_aware(np.array([[0.1, FLT_MAX]]), np.array([[0.1, 0.2]]), 2, 2)


# --- bad inputs -------------------------------------------------------------------------------

I_OK = np.array([[0, 1], [2, 3]])
Q_OK = np.array([0, 1])


@pytest.mark.parametrize("call, exc, match", [
    (lambda: m.top1_accuracy(np.array([0, 1]), DB, Q_OK), ValueError, "must be 2-D"),
    (lambda: m.top1_accuracy(I_OK.astype(float), DB, Q_OK), TypeError, "integer ids"),
    (lambda: m.top1_accuracy(np.array([[6], [0]]), DB, Q_OK), ValueError, "contains id 6"),
    (lambda: m.top1_accuracy(np.array([[-2], [0]]), DB, Q_OK), ValueError, "contains id -2"),
    (lambda: m.top1_accuracy(I_OK, DB, np.array([0, 1, 2])), ValueError, "3 entries but 2"),
    (lambda: m.top1_accuracy(I_OK, DB.astype(float), Q_OK), TypeError, "must be integers"),
    (lambda: m.hit_rate_at_k(I_OK, DB, Q_OK, 3), ValueError, "k=3 exceeds the 2 columns"),
    (lambda: m.precision_at_k(I_OK, DB, Q_OK, 0), ValueError, "k must be >= 1"),
    (lambda: m.precision_at_k(I_OK, DB, Q_OK, 1.0), TypeError, "k must be an integer"),
    (lambda: m.map_at_k(I_OK, DB, Q_OK, 2, mode="paper"), ValueError, "mode must be"),
    (lambda: m.recall_at_k(I_OK, DB, Q_OK, 2, mode=None), ValueError, "mode must be"),
    (lambda: m.knn_recall(I_OK, I_OK[:1], 2, 2), ValueError, "2 rows but I_ann has 1"),
    (lambda: m.knn_recall(I_OK, I_OK, 2, 3), ValueError, "n=3 exceeds"),
    (lambda: m.knn_recall_tie_aware(np.zeros((2, 2)), np.zeros((2, 2)), 2, 2, metric="cos"),
     ValueError, "metric must be"),
    (lambda: m.knn_recall_tie_aware(np.zeros((2, 2)), np.zeros((2, 2)), 2, 2, rtol=-1),
     ValueError, "rtol must be"),
    (lambda: m.knn_recall_tie_aware(np.zeros((2, 2)), np.full((2, 2), np.nan), 2, 2),
     ValueError, "NaN"),
    (lambda: m.knn_recall_tie_aware(np.zeros((2, 2)), np.zeros((1, 2)), 2, 2), ValueError, "2 rows"),
    (lambda: m.top1_accuracy(np.zeros((0, 1), int), DB, np.zeros(0, int)), ValueError, "zero queries"),
    (lambda: m.knn_recall(np.zeros((0, 2), int), np.zeros((0, 2), int), 2, 2), ValueError, "zero queries"),
    (lambda: m.knn_recall_tie_aware(np.zeros((0, 2)), np.zeros((0, 2)), 2, 2), ValueError, "zero queries"),
])
def test_bad_inputs(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("top", [2**62, 2**63 - 1])
def test_knn_recall_with_ids_near_int64_max(top):
    """ids >= 2^62 used to overflow the (row * stride + id) keys and miscount."""
    exact = np.array([[top, top - 1, 5], [top - 2, 0, 7]], dtype=np.int64)
    ann = np.array([[top - 1, 3, top, -1], [7, top - 3, 1, 0]], dtype=np.int64)
    assert m.knn_recall(exact, ann, 3, 4) == pytest.approx((2 + 2) / 6)
    # row 1's ids must not match row 0's
    assert m.knn_recall(exact[[0, 0]], np.array([[top, -1], [top - 9, -1]]), 3, 2) == pytest.approx(1 / 6)


# ---- mAP@R and R-precision ----

def _at_r_loop(I, db, q, max_r=None):
    """Brute-force float64 mAP@R / R-precision per query, one rank at a time."""
    aps, rps = [], []
    for i in range(len(q)):
        R = sum(1 for lab in db if lab == q[i])
        if max_r is not None:
            R = min(R, max_r)
        hits, ap = 0, 0.0
        for r in range(R):
            j = int(I[i, r])
            if j >= 0 and db[j] == q[i]:
                hits += 1
                ap += hits / (r + 1)
        aps.append(ap / R if R else 0.0)
        rps.append(hits / R if R else 0.0)
    return np.array(aps, np.float64), np.array(rps, np.float64)


def test_at_r_hand_computed():
    # DB labels 0 0 0 1 1 2: R = 3 for label 0, 2 for label 1, 1 for label 2, 0 for label 3
    I = np.array([[0, 3, 1, 2],     # label 0, R = 3: hits at 1, 3 -> AP (1 + 2/3) / 3, RP 2/3
                  [3, 5, 4, 0],     # label 1, R = 2: hit at 1 (rank 3 is beyond R) -> 1/2, 1/2
                  [-1, 5, 5, 5],    # label 2, R = 1: rank 1 missing -> 0, 0
                  [0, 1, 2, 3]])    # label 3, R = 0 -> 0, 0
    q = np.array([0, 1, 2, 3])
    np.testing.assert_allclose(m.average_precision_at_r(I, DB, q), [(1 + 2 / 3) / 3, 1 / 2, 0, 0])
    np.testing.assert_allclose(m.r_precision_per_query(I, DB, q), [2 / 3, 1 / 2, 0, 0])
    assert m.map_at_r(I, DB, q) == pytest.approx(((1 + 2 / 3) / 3 + 1 / 2) / 4)
    assert m.r_precision(I, DB, q) == pytest.approx((2 / 3 + 1 / 2) / 4)
    np.testing.assert_array_equal(m.r_values(DB, q), [3, 2, 1, 0])
    # cap R at 2: label 0 now scores its first 2 ranks: hit at 1 -> AP 1/2, RP 1/2
    np.testing.assert_allclose(m.average_precision_at_r(I, DB, q, max_r=2), [1 / 2, 1 / 2, 0, 0])
    np.testing.assert_array_equal(m.r_values(DB, q, max_r=2), [2, 2, 1, 0])


def test_at_r_needs_r_columns():
    I = np.array([[0, 1]])
    with pytest.raises(ValueError, match="search with k = 3"):
        m.map_at_r(I, DB, np.array([0]))
    with pytest.raises(ValueError, match="max_r"):
        m.r_precision(I, DB, np.array([0]), max_r=0)
    assert m.r_precision(I, DB, np.array([0]), max_r=2) == 1.0  # capped: 2 columns suffice
    with pytest.raises(ValueError, match="no rows"):
        m.map_at_r(np.zeros((0, 3), np.int64), DB, np.zeros(0, np.int64))


@settings(max_examples=60, deadline=None)
@given(data=st.data(), n_db=st.integers(1, 30), nq=st.integers(1, 8), n_labels=st.integers(1, 5),
       cap=st.one_of(st.none(), st.integers(1, 6)))
def test_at_r_matches_brute_force(data, n_db, nq, n_labels, cap):
    db = np.array(data.draw(st.lists(st.integers(0, n_labels - 1), min_size=n_db, max_size=n_db)))
    q = np.array(data.draw(st.lists(st.integers(0, n_labels), min_size=nq, max_size=nq)))
    width = max(int(m.r_values(db, q, cap).max()), 1) + data.draw(st.integers(0, 3))
    I = np.array(data.draw(st.lists(st.lists(st.integers(-1, n_db - 1), min_size=width, max_size=width),
                                    min_size=nq, max_size=nq)), dtype=np.int64)
    ap, rp = _at_r_loop(I, db, q, cap)
    np.testing.assert_allclose(m.average_precision_at_r(I, db, q, cap), ap, rtol=1e-12, atol=0)
    np.testing.assert_allclose(m.r_precision_per_query(I, db, q, cap), rp, rtol=1e-12, atol=0)
    assert np.all(ap <= rp + 1e-12)  # AP@R <= R-precision: each hit adds at most 1 / R
    assert m.map_at_r(I, db, q, cap) == pytest.approx(ap.mean(), rel=1e-12, abs=1e-15)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), n_labels=st.integers(1, 6))
def test_at_r_is_one_for_a_perfect_ranking(seed, n_labels):
    """Relevant items first (any order among them), then the rest: AP@R = R-precision = 1."""
    rng = np.random.default_rng(seed)
    db = rng.integers(0, n_labels, 40)
    q = np.unique(db)
    I = np.stack([np.concatenate([rng.permutation(np.flatnonzero(db == y)),
                                  rng.permutation(np.flatnonzero(db != y))]) for y in q])
    assert m.map_at_r(I, db, q) == 1.0 and m.r_precision(I, db, q) == 1.0
