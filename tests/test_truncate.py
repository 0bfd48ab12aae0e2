import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from adanns_ref import prefix
from adanns_ref.truncate import normalize_rows


def test_prefix_is_renormalised_after_truncation():
    x = np.array([[3.0, 4.0, 12.0]], np.float32)
    p = prefix(x, 2)
    np.testing.assert_allclose(p, [[0.6, 0.8]], rtol=1e-6)


def test_prefix_without_normalisation_is_plain_truncation():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(prefix(x, 3, normalize=False), x[:, :3])
    assert prefix(x, 3, normalize=False).flags.c_contiguous


def test_zero_vectors_stay_zero_without_nan():
    x = np.zeros((2, 4), np.float32)
    x[1, 3] = 5.0  # non-zero at full D but zero in the 2-prefix
    p = prefix(x, 2)
    assert np.isfinite(p).all()
    np.testing.assert_array_equal(p, 0.0)


def test_matches_faiss_normalize_l2():
    faiss = pytest.importorskip("faiss")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 16)).astype(np.float32)
    y = np.ascontiguousarray(x[:, :8])
    faiss.normalize_L2(y)
    np.testing.assert_allclose(prefix(x, 8), y, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("d", [0, 17, -1])
def test_bad_dims(d):
    with pytest.raises(ValueError):
        prefix(np.ones((2, 16), np.float32), d)


def test_bad_dim_type():
    with pytest.raises(TypeError):
        prefix(np.ones((2, 16), np.float32), 2.5)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 8), st.integers(1, 12)),
                  elements=st.floats(-100, 100, width=32)), st.data())
def test_prefix_rows_are_unit_or_zero(x, data):
    d = data.draw(st.integers(1, x.shape[1]))
    p = prefix(x, d)
    norms = np.linalg.norm(p.astype(np.float64), axis=1)
    # Rows are unit length, except rows so small that their float32 squared norm underflows to 0:
    # those are left as they are (faiss.normalize_L2 does the same), and all-zero rows stay zero.
    assert (np.isclose(norms, 1.0, atol=1e-5) | (norms < 1e-18)).all()
    assert (p[~x[:, :d].any(axis=1)] == 0).all()
    # normalize_rows is idempotent on unit rows up to rounding
    np.testing.assert_allclose(normalize_rows(p), p, atol=1e-6)


def test_underflowing_rows_are_left_unchanged_like_faiss():
    faiss = pytest.importorskip("faiss")
    x = np.array([[4.2531e-41, 0.0]], np.float32)
    y = x.copy()
    faiss.normalize_L2(y)
    np.testing.assert_array_equal(prefix(x, 2), y)
