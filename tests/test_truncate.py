import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from adanns_ref import prefix
from adanns_ref.core.truncate import normalize_rows


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
    # Rows are unit length (also those whose float32 squared norm underflows, which faiss's
    # normalize_L2 leaves as they are); all-zero rows stay zero.
    assert (np.isclose(norms, 1.0, atol=1e-5) | ~p.any(axis=1)).all()
    assert (p[~x[:, :d].any(axis=1)] == 0).all()
    # normalize_rows is idempotent on unit rows up to rounding
    np.testing.assert_allclose(normalize_rows(p), p, atol=1e-6)


def test_underflowing_rows_are_normalised_where_faiss_leaves_them():
    """A deliberate deviation: faiss.normalize_L2 returns a row whose float32 squared norm
    underflows to 0 unchanged (not unit length); we normalise it in float64."""
    faiss = pytest.importorskip("faiss")
    x = np.array([[4.2531e-41, 0.0]], np.float32)
    y = x.copy()
    faiss.normalize_L2(y)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(prefix(x, 2), [[1.0, 0.0]])


def _float32_route(x):
    """normalize_rows as it was before the range fix: the reference for ordinary rows."""
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float32))
    safe = np.where(norms > 0, norms, np.float32(1)).astype(np.float32)
    return np.ascontiguousarray(x / safe[:, None], dtype=np.float32)


def _unit64(x):
    x64 = np.asarray(x, np.float64)
    n = np.sqrt((x64 ** 2).sum(axis=1, keepdims=True))
    return np.divide(x64, n, out=np.zeros_like(x64), where=n > 0)


@settings(max_examples=80, deadline=None)
@given(direction=hnp.arrays(np.float32, (3, 6), elements=st.floats(-1, 1, width=32)),
       exponent=st.integers(-44, 38))
def test_huge_and_tiny_rows_normalise_like_float64(direction, exponent):
    """A vector's direction must survive any finite scale: 1e19 used to become a zero vector
    (float32 ||x||^2 overflow) and 1e-30 an unnormalised one (underflow)."""
    with np.errstate(over="ignore", under="ignore"):
        x = (direction.astype(np.float64) * 10.0 ** exponent).astype(np.float32)
    if not np.isfinite(x).all():
        return
    for d in (6, 3):
        p = prefix(x, d)
        want = _unit64(_unit64(x)[:, :d])
        np.testing.assert_allclose(p, want, rtol=0, atol=3e-7)
        nonzero = (x[:, :d] != 0).any(axis=1)
        np.testing.assert_allclose(np.linalg.norm(p[nonzero].astype(np.float64), axis=1), 1.0, atol=1e-6)


def test_overflowing_norm_no_longer_zeroes_the_vector():
    x = np.array([[2e19, 0.0, 0.0], [3e30, 4e30, 0.0], [1e-30, 0.0, 1e-30]], np.float32)
    np.testing.assert_allclose(prefix(x, 3), [[1, 0, 0], [0.6, 0.8, 0], [2 ** -0.5, 0, 2 ** -0.5]],
                               rtol=1e-6)
    np.testing.assert_allclose(prefix(x, 2), [[1, 0], [0.6, 0.8], [1, 0]], rtol=1e-6)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=2, max_side=9),
                  elements=st.floats(-1e6, 1e6, width=32)))
def test_ordinary_rows_keep_the_float32_bits(x):
    """Rows whose float32 squared norm neither over- nor underflows go the float32 route,
    bit for bit as before (golden files and faiss comparisons depend on these bits)."""
    sq = np.einsum("ij,ij->i", x, x, dtype=np.float32)
    ordinary = (sq >= np.finfo(np.float32).tiny) | (sq == 0) & ~(x != 0).any(axis=1)
    got = normalize_rows(x)
    np.testing.assert_array_equal(got[ordinary], _float32_route(x)[ordinary])


def test_normalize_paths_are_scale_invariant_beyond_float32_squares():
    """Every normalize=True path (funnel, rerank, IVF, IVFPQ, PQIndex) gives the same ids for
    x and for x * 2^70 (norms ~1e21, whose float32 squares overflow)."""
    from adanns_ref import IVFIndex, IVFPQIndex, PQIndex, funnel_search, rerank
    rng = np.random.default_rng(5)
    xb = rng.standard_normal((300, 16)).astype(np.float32)
    xq = rng.standard_normal((5, 16)).astype(np.float32)
    big = np.float32(2.0 ** 70)
    _, I_small, _ = funnel_search(xb, xq, [(8, 20), (16, 5)])
    _, I_big, _ = funnel_search(xb * big, xq * big, [(8, 20), (16, 5)])
    np.testing.assert_array_equal(I_small, I_big)
    np.testing.assert_array_equal(rerank(I_small, xb, xq, 16, 3)[1], rerank(I_small, xb * big, xq * big, 16, 3)[1])
    for make in (lambda: IVFIndex(16, 4, d_c=8), lambda: IVFPQIndex(16, 4, 4, nbits=4, allow_small=True),
                 lambda: PQIndex(16, 4, nbits=4, allow_small=True)):
        ids = []
        for scale in (np.float32(1), big):
            index = make()
            index.train(xb * scale)
            index.add(xb * scale)
            ids.append(index.search(xq * scale, 5)[1])
        np.testing.assert_array_equal(ids[0], ids[1])


@pytest.mark.parametrize("block", [1 << 22, 7 * 33])
def test_prefix_scales_rebuild_every_prefix_bit_for_bit(block, monkeypatch):
    """divide_rows(divide_rows(x[:, :d], n_1), n_2) == prefix(x, d) for ordinary rows, zero rows,
    rows normalised in float64 (squares over- or underflow) and rows whose prefix underflows."""
    from adanns_ref.core import truncate
    monkeypatch.setattr(truncate, "PREFIX_BLOCK", block)  # several row blocks
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((500, 33)) * rng.random((500, 1)) * 10).astype(np.float32)
    x[3] = 0
    x[4] *= np.float32(1e25)
    x[5] *= np.float32(1e-25)
    x[6, :20] *= np.float32(1e-24)
    wide = 0
    for d in (1, 5, 16, 20, 33):
        n1, n2 = truncate.prefix_scales(x, d)
        assert n1.dtype == n2.dtype == np.float64
        rebuilt = truncate.divide_rows(truncate.divide_rows(x[:, :d], n1), n2)
        np.testing.assert_array_equal(rebuilt, prefix(x, d))
        wide += int((n1 != n1.astype(np.float32)).sum() + (n2 != n2.astype(np.float32)).sum())
    assert wide >= 10  # the float64 route was exercised


@settings(max_examples=80, deadline=None)
@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 12)),
                  elements=st.floats(width=32, allow_nan=False, allow_infinity=False)
                  | st.floats(-2.0**-100, 2.0**-100, width=32)),
       st.data())
def test_prefix_divides_only_the_kept_columns_with_the_same_bits(x, data):
    """prefix divides just the d kept columns by the full-row scale; the definition divides
    the whole row first and truncates after: the same quotients, bit for bit, on every route
    (float32 rows, rows whose squared norm over- or underflows, zero rows)."""
    d = data.draw(st.integers(1, x.shape[1]))
    np.testing.assert_array_equal(prefix(x, d), normalize_rows(normalize_rows(x)[:, :d]))
