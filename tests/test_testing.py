import numpy as np
import pytest

from adanns_ref.testing import assert_centroids_equal, assert_codes_equal, assert_knn_equal, max_deviation


def test_identical_results_pass():
    D = np.array([[0.1, 0.2, 0.3]], np.float32)
    I = np.array([[4, 2, 9]])
    assert_knn_equal(D, I, D.copy(), I.copy())


def test_ties_inside_the_row_compare_as_sets():
    D = np.array([[0.1, 0.5, 0.5, 0.9]], np.float32)
    assert_knn_equal(D, np.array([[1, 2, 3, 4]]), D, np.array([[1, 3, 2, 4]]))
    with pytest.raises(AssertionError, match="ranks 1..2"):
        assert_knn_equal(D, np.array([[1, 2, 3, 4]]), D, np.array([[1, 3, 7, 4]]))


def test_tie_group_cut_at_k_may_differ():
    D = np.array([[0.1, 0.5, 0.5]], np.float32)
    assert_knn_equal(D, np.array([[1, 2, 3]]), D, np.array([[1, 8, 9]]))


def test_distance_mismatch_reported():
    D = np.array([[0.1, 0.2]], np.float32)
    with pytest.raises(AssertionError, match="rank 1"):
        assert_knn_equal(D, [[0, 1]], np.array([[0.1, 0.25]], np.float32), [[0, 1]])


def test_wrong_id_with_unique_distance_fails():
    D = np.array([[0.1, 0.2, 0.3]], np.float32)
    with pytest.raises(AssertionError, match="ranks 0..0"):
        assert_knn_equal(D, [[0, 1, 2]], D, [[5, 1, 2]])


def test_missing_positions_must_match():
    fm = np.finfo(np.float32).max
    D = np.array([[0.1, fm]], np.float32)
    with pytest.raises(AssertionError, match="missing"):
        assert_knn_equal(D, [[0, -1]], np.array([[0.1, 0.2]], np.float32), [[0, 3]])
    assert_knn_equal(D, [[0, -1]], D, [[0, -1]])


def test_shape_mismatch():
    with pytest.raises(AssertionError, match="shapes differ"):
        assert_knn_equal(np.zeros((1, 2)), np.zeros((1, 2)), np.zeros((1, 3)), np.zeros((1, 3)))


def test_codes_and_centroids():
    c = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert_codes_equal(c, c.copy())
    d = c.copy()
    d[1, 2] += 1
    with pytest.raises(AssertionError, match="vector 1"):
        assert_codes_equal(c, d)
    with pytest.raises(AssertionError, match="dtype"):
        assert_codes_equal(c, c.astype(np.int16))
    x = np.ones((3, 2), np.float32)
    y = x.copy()
    y[2, 0] = np.nextafter(np.float32(1), np.float32(2))
    assert_centroids_equal(x, y, exact=False)
    with pytest.raises(AssertionError, match="centroid 2"):
        assert_centroids_equal(x, y)


def test_max_deviation_ignores_equal_padding():
    fm = np.finfo(np.float32).max
    assert max_deviation([[fm, 1.0]], [[fm, 1.5]]) == 0.5
