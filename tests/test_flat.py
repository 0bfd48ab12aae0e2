import numpy as np
import pytest

from adanns_ref.indices.flat import FlatIndex
from adanns_ref.testing import assert_knn_equal

faiss = pytest.importorskip("faiss")

FLT_MAX = np.float32(3.4028235e38)


def _data(n, d, seed):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def _pair(xb, metric):
    ours = FlatIndex(xb.shape[1], metric)
    ref = (faiss.IndexFlatL2 if metric == "l2" else faiss.IndexFlatIP)(xb.shape[1])
    ours.add(xb)
    ref.add(xb)
    return ours, ref


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("nq", [10, 2200])  # faiss's direct and BLAS paths
def test_search_matches_faiss_flat(metric, nq):
    xb, xq = _data(1200, 64, 0), _data(nq, 64, 1)
    ours, ref = _pair(xb, metric)
    D_ref, I_ref = ref.search(xq, 12)
    D, I = ours.search(xq, 12)
    np.testing.assert_array_equal(I, I_ref)
    np.testing.assert_allclose(D, D_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_duplicates_compare_as_sets_and_ascend_within_ties(metric):
    base = _data(30, 16, 2)
    xb = np.concatenate([base, base, base])  # each vector three times
    ours, ref = _pair(xb, metric)
    xq = _data(6, 16, 3)
    D_ref, I_ref = ref.search(xq, 7)
    D, I = ours.search(xq, 7)
    assert_knn_equal(D_ref, I_ref, D, I, rtol=1e-5, atol=1e-5)
    for drow, irow in zip(D, I):
        for value in np.unique(drow):
            group = irow[drow == value]
            assert group.tolist() == sorted(group.tolist())
            # the smallest ids of the tie are kept, even when the group is cut at rank k
            assert group.tolist() == list(range(group[0], group[0] + 30 * len(group), 30))


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_k_larger_than_ntotal_pads_like_faiss(metric):
    xb, xq = _data(5, 8, 4), _data(3, 8, 5)
    ours, ref = _pair(xb, metric)
    D_ref, I_ref = ref.search(xq, 9)
    D, I = ours.search(xq, 9)
    np.testing.assert_array_equal(I, I_ref)
    np.testing.assert_array_equal(D[:, 5:], D_ref[:, 5:])
    assert (D[:, 5:] == (FLT_MAX if metric == "l2" else -FLT_MAX)).all()


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_empty_index_returns_all_missing_like_faiss(metric):
    ours = FlatIndex(8, metric)
    ref = (faiss.IndexFlatL2 if metric == "l2" else faiss.IndexFlatIP)(8)
    xq = _data(2, 8, 6)
    D_ref, I_ref = ref.search(xq, 3)
    D, I = ours.search(xq, 3)
    np.testing.assert_array_equal(I, I_ref)
    np.testing.assert_array_equal(D, D_ref)
    assert (I == -1).all()


def test_repeated_adds_equal_one_add_and_reset_empties():
    xb, xq = _data(500, 32, 7), _data(20, 32, 8)
    one = FlatIndex(32)
    one.add(xb)
    many = FlatIndex(32)
    for chunk in np.array_split(xb, 7):
        many.add(chunk)
    assert many.ntotal == 500
    np.testing.assert_array_equal(many.xb, xb)
    np.testing.assert_array_equal(many.search(xq, 5)[1], one.search(xq, 5)[1])
    many.reset()
    assert many.ntotal == 0 and (many.search(xq, 2)[1] == -1).all()


def test_last_search_flops_is_d_times_ntotal():
    index = FlatIndex(24)
    index.add(_data(321, 24, 9))
    index.search(_data(4, 24, 10), 3)
    assert index.last_search_flops == 24 * 321


def test_save_load_roundtrip(tmp_path):
    index = FlatIndex(16, "ip")
    index.add(_data(100, 16, 11))
    index.save(tmp_path / "flat.npz")
    loaded = FlatIndex.load(tmp_path / "flat.npz")
    assert (loaded.d, loaded.metric, loaded.ntotal) == (16, "ip", 100)
    xq = _data(5, 16, 12)
    for a, b in zip(index.search(xq, 4), loaded.search(xq, 4)):
        np.testing.assert_array_equal(a, b)


def test_load_rejects_corrupt_file(tmp_path):
    path = tmp_path / "bad.npz"
    path.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a readable"):
        FlatIndex.load(path)


def test_load_rejects_width_mismatch(tmp_path):
    from adanns_ref.core.persist import save_npz
    path = tmp_path / "bad.npz"
    save_npz(path, "FlatIndex", 1, {"d": 8, "metric": "l2"}, {"xb": np.zeros((3, 5), np.float32)})
    with pytest.raises(ValueError, match="columns"):
        FlatIndex.load(path)


def test_bad_dimension():
    with pytest.raises(ValueError, match="d must be >= 1"):
        FlatIndex(0)


def test_bad_metric():
    with pytest.raises(ValueError, match="metric"):
        FlatIndex(8, "cosine")


def test_add_wrong_width():
    with pytest.raises(ValueError, match="dimension mismatch"):
        FlatIndex(8).add(np.zeros((3, 7), np.float32))


def test_add_nan():
    x = np.zeros((3, 8), np.float32)
    x[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        FlatIndex(8).add(x)


def test_search_query_dim_mismatch():
    index = FlatIndex(8)
    index.add(np.zeros((3, 8), np.float32))
    with pytest.raises(ValueError, match="dimension mismatch"):
        index.search(np.zeros((2, 9), np.float32), 1)


def test_search_one_dim_query():
    with pytest.raises(ValueError, match="reshape"):
        FlatIndex(8).search(np.zeros(8, np.float32), 1)


def test_search_k_below_one():
    with pytest.raises(ValueError, match="k must be >= 1"):
        FlatIndex(8).search(np.zeros((1, 8), np.float32), 0)


def test_search_k_not_integer():
    with pytest.raises(TypeError, match="k must be an integer"):
        FlatIndex(8).search(np.zeros((1, 8), np.float32), 2.5)
