"""Tests for adanns_ref.core.simd: each summation order equals faiss's bit for bit (where faiss runs
its AVX-512 code), and the two implementations of order 1 agree with each other and float64."""
import numba
import numpy as np
import pytest

from adanns_ref.core import simd as _simd

faiss = pytest.importorskip("faiss")


bit_exact = pytest.mark.skipif(not _simd.faiss_runs_avx512(faiss),
                               reason="needs faiss dispatching to AVX-512 (its summation order)")


@numba.njit(cache=True)
def _fma(a, b, c):
    return _simd.fma(a, b, c)


def test_fma_rounds_once():
    a = np.float32(1 + 2**-12)
    c = np.float32(-(1 + 2**-11))
    assert a * a + c == 0  # two roundings lose the 2^-24
    assert _fma(a, a, c) == np.float32(2**-24)


@numba.njit(cache=True)
def _all_pairs(xq, xb, l2):
    out = np.empty((xq.shape[0], xb.shape[0]), np.float32)
    for i in range(xq.shape[0]):
        for j in range(xb.shape[0]):
            out[i, j] = _simd.simd_sum(xq[i], xb[j], l2)
    return out


@numba.njit(cache=True)
def _columns(xq, xb, l2):
    out = np.empty((xq.shape[0], xb.shape[0]), np.float32)
    ct = np.ascontiguousarray(xb.T)
    acc = np.empty((16, xb.shape[0]), np.float32)
    for i in range(xq.shape[0]):
        out[i] = _simd.simd_sums(xq[i], ct, l2, acc)
    return out


@pytest.mark.parametrize("d", [1, 7, 8, 15, 16, 17, 24, 31, 33, 100, 128, 257])
def test_simd_sum_and_simd_sums_agree_and_are_close_to_float64(d):
    """Two independent codings of order 1 (LLVM vector IR per pair; numba loops over columns)."""
    rng = np.random.default_rng(d)
    xq, xb = rng.standard_normal((5, d)).astype(np.float32), rng.standard_normal((40, d)).astype(np.float32)
    for l2 in (True, False):
        got = _all_pairs(xq, xb, l2)
        np.testing.assert_array_equal(got, _columns(xq, xb, l2))
        exact = (((xq[:, None, :].astype(np.float64) - xb[None]) ** 2).sum(-1) if l2
                 else xq.astype(np.float64) @ xb.T.astype(np.float64))
        np.testing.assert_allclose(got, exact, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_simd.sq_norms(xb), (xb.astype(np.float64) ** 2).sum(1), rtol=1e-5)


@numba.njit(cache=True)
def _scaled_pairs(xq, xb, ia, ib, two, l2):
    """simd_sum_scaled of every pair, row j of xb scaled by ia[j] (and ib[j] when two)."""
    out = np.empty((xq.shape[0], xb.shape[0]), np.float32)
    for i in range(xq.shape[0]):
        for j in range(xb.shape[0]):
            out[i, j] = (_simd.simd_sum_scaled(xq[i], xb[j], ia[j], ib[j], l2) if two else
                         _simd.simd_sum_scaled(xq[i], xb[j], ia[j], None, l2))
    return out


@pytest.mark.parametrize("d", [1, 7, 8, 9, 16, 17, 24, 33, 100])
def test_simd_sum_scaled_equals_simd_sum_of_the_divided_row(d):
    """The quotients y / a through float64 reciprocals are numpy's float32 divisions bit for bit
    (scales near 1 as unit rows have, and far from it; tiny and huge entries), and the sums are
    simd_sum's on the divided rows, in every part of order 1 (16 lanes, 8 lanes, tail)."""
    rng = np.random.default_rng(d)
    xq = rng.standard_normal((4, d)).astype(np.float32)
    xb = (rng.standard_normal((60, d)) * np.exp2(rng.integers(-60, 60, (60, d)))).astype(np.float32)
    a = np.concatenate([1 + rng.integers(-40, 41, 30) * 2.0**-23,
                        rng.random(30) * np.exp2(rng.integers(-30, 30, 30))]).astype(np.float32)
    b = np.concatenate([1 + rng.integers(-40, 41, 30) * 2.0**-23, rng.random(30) * 4 + 0.1]).astype(np.float32)
    ia, ib = 1.0 / a.astype(np.float64), 1.0 / b.astype(np.float64)
    once = (xb / a[:, None]).astype(np.float32)
    twice = (once / b[:, None]).astype(np.float32)
    for l2 in (True, False):
        np.testing.assert_array_equal(_scaled_pairs(xq, xb, ia, ib, True, l2), _all_pairs(xq, twice, l2))
        np.testing.assert_array_equal(_scaled_pairs(xq, xb, ia, ib, False, l2), _all_pairs(xq, once, l2))
        ones = np.ones(len(xb))
        np.testing.assert_array_equal(_scaled_pairs(xq, xb, ones, ones, True, l2), _all_pairs(xq, xb, l2))


@bit_exact
def test_order1_is_faiss_fvec_L2sqr_inner_product_norm():
    rng = np.random.default_rng(0)
    for d in list(range(1, 40)) + [63, 64, 65, 100, 128, 129]:
        a = rng.standard_normal(d).astype(np.float32)
        cs = rng.standard_normal((5, d)).astype(np.float32)
        l2, ip = _columns(a[None], cs, True)[0], _columns(a[None], cs, False)[0]
        for j, c in enumerate(cs):
            assert l2[j] == np.float32(faiss.fvec_L2sqr(faiss.swig_ptr(a), faiss.swig_ptr(c), d))
            assert ip[j] == np.float32(faiss.fvec_inner_product(faiss.swig_ptr(a), faiss.swig_ptr(c), d))
        norms = _simd.sq_norms(cs)
        for j, c in enumerate(cs):
            assert norms[j] == np.float32(faiss.fvec_norm_L2sqr(faiss.swig_ptr(c), d))


@numba.njit(cache=True)
def _table(x, cbT, l2, fused):
    dsub, ksub = cbT.shape
    out = np.empty(ksub, np.float32)
    _simd.table_into(x, 0, cbT, l2, fused, np.empty((16, ksub), np.float32), out)
    return out


@bit_exact
@pytest.mark.parametrize("nbits", [2, 3, 4, 8])
def test_order2_is_faiss_fvec_L2sqr_ny_and_inner_products_ny(nbits):
    """Every dsub < 16 but 12 (its SSE kernel is not reproduced), L2 and inner product."""
    rng = np.random.default_rng(nbits)
    ksub = 1 << nbits
    for dsub in [d for d in range(1, 17) if d != 12]:
        x = rng.standard_normal(dsub).astype(np.float32)
        cb = rng.standard_normal((ksub, dsub)).astype(np.float32)
        cbT = np.ascontiguousarray(cb.T)
        ip, l2 = np.empty(ksub, np.float32), np.empty(ksub, np.float32)
        faiss.fvec_inner_products_ny(faiss.swig_ptr(ip), faiss.swig_ptr(x), faiss.swig_ptr(cb), dsub, ksub)
        faiss.fvec_L2sqr_ny(faiss.swig_ptr(l2), faiss.swig_ptr(x), faiss.swig_ptr(cb), dsub, ksub)
        np.testing.assert_array_equal(_table(x, cbT, False, True), ip, err_msg=f"ip dsub={dsub}")
        np.testing.assert_array_equal(_table(x, cbT, True, True), l2, err_msg=f"l2 dsub={dsub}")


@numba.njit(cache=True)
def _code_sums(T, codes, order):
    out = np.empty(codes.shape[0], np.float32)
    for i in range(codes.shape[0]):
        out[i] = _simd.code_distance(T, codes[i], order)
    return out


@pytest.mark.parametrize("M", [1, 4, 8, 15, 16, 17, 32, 36])
def test_order3_sums_each_code_in_its_own_order(M):
    """The three orders give the float64 value to rounding, and each equals its definition
    written out in NumPy float32 (sequential, groups of four, 16 lanes + tree)."""
    rng = np.random.default_rng(M)
    T = (rng.standard_normal((M, 256)) * 10).astype(np.float32)
    codes = rng.integers(0, 256, (50, M)).astype(np.uint8)
    terms = T[np.arange(M), codes]  # (50, M)
    seq = np.zeros(50, np.float32)
    for m in range(M):
        seq += terms[:, m]
    np.testing.assert_array_equal(_code_sums(T, codes, _simd.SUM_SEQUENTIAL), seq)
    if M % 4 == 0:
        groups = np.zeros(50, np.float32)
        for m0 in range(0, M, 4):
            groups += ((terms[:, m0] + terms[:, m0 + 1]) + terms[:, m0 + 2]) + terms[:, m0 + 3]
        np.testing.assert_array_equal(_code_sums(T, codes, _simd.SUM_GROUPS4), groups)
    if M >= 16:
        m16 = M - M % 16
        lanes = terms[:, :16].copy()
        for m0 in range(16, m16, 16):
            lanes += terms[:, m0:m0 + 16]
        while lanes.shape[1] > 1:  # _mm512_reduce_add_ps: lane l + lane l + half
            half = lanes.shape[1] // 2
            lanes = lanes[:, :half] + lanes[:, half:]
        s = lanes[:, 0]
        for m in range(m16, M):
            s = s + terms[:, m]
        np.testing.assert_array_equal(_code_sums(T, codes, _simd.SUM_LANES16), s)
    np.testing.assert_allclose(_code_sums(T, codes, _simd.SUM_LANES16), terms.astype(np.float64).sum(1),
                               rtol=1e-5, atol=1e-4)
