import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from adanns_ref.core.validate import (as_bool, as_float32_matrix, as_int, as_labels, check_metric,
                                      check_prefix_dim)


def test_float32_c_contiguous_is_not_copied():
    x = np.ones((3, 4), np.float32)
    assert as_float32_matrix(x) is x


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int32, np.uint8, bool])
def test_other_real_dtypes_convert_once(dtype):
    x = np.arange(12).reshape(3, 4).astype(dtype)
    out = as_float32_matrix(x)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, x.astype(np.float32))


def test_fortran_order_and_lists_become_c_contiguous():
    x = np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    assert as_float32_matrix(x).flags.c_contiguous
    assert as_float32_matrix([[1, 2], [3, 4]]).shape == (2, 2)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_rejected_with_row(bad):
    x = np.zeros((4, 2), np.float32)
    x[2, 1] = bad
    with pytest.raises(ValueError, match="row 2"):
        as_float32_matrix(x)


def test_float64_overflowing_float32_rejected():
    with pytest.raises(ValueError, match="NaN or Inf"):
        as_float32_matrix(np.array([[1e300, 0.0]]))


def test_shape_errors():
    with pytest.raises(ValueError, match="reshape"):
        as_float32_matrix(np.zeros(3))
    with pytest.raises(ValueError, match="2-D"):
        as_float32_matrix(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="4 were expected"):
        as_float32_matrix(np.zeros((2, 3)), d=4)
    with pytest.raises(ValueError, match="at least one column"):
        as_float32_matrix(np.zeros((2, 0)))
    with pytest.raises(ValueError, match="at least 5"):
        as_float32_matrix(np.zeros((2, 3)), min_rows=5)


@pytest.mark.parametrize("bad", [np.array([["a"]]), np.array([[1 + 2j]]), np.array([[None]], dtype=object)])
def test_non_real_types_rejected(bad):
    with pytest.raises(TypeError):
        as_float32_matrix(bad)


def test_as_int():
    assert as_int(np.int64(3), "k", 1) == 3
    with pytest.raises(ValueError, match="k must be >= 1"):
        as_int(0, "k", 1)
    with pytest.raises(ValueError, match="<= 4"):
        as_int(5, "d", 1, 4)
    for bad in (2.0, True, "3", None):
        with pytest.raises(TypeError):
            as_int(bad, "k")


def test_as_bool():
    assert as_bool(True, "flag") is True and as_bool(np.bool_(False), "flag") is False
    for bad in (1, 0, "yes", None, np.array([True])):
        with pytest.raises(TypeError, match="flag must be True or False"):
            as_bool(bad, "flag")


def test_prefix_dim_metric_labels():
    assert check_prefix_dim(None, 8) == 8
    with pytest.raises(ValueError):
        check_prefix_dim(9, 8, "d_c")
    with pytest.raises(ValueError, match="'cosine'"):
        check_metric("cosine")
    assert as_labels(np.array([1, 2], np.uint8)).dtype == np.int64
    with pytest.raises(ValueError, match="3 were expected"):
        as_labels([1, 2], n=3)
    with pytest.raises(TypeError):
        as_labels([1.5, 2.0])


@settings(max_examples=50, deadline=None)
@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=6),
                  elements=st.floats(-1e6, 1e6)))
def test_finite_values_roundtrip_as_float32(x):
    np.testing.assert_array_equal(as_float32_matrix(x), x.astype(np.float32))


# --- k against the memory its results need ------------------------------------------------------

def test_as_k_bounds_the_result_memory(monkeypatch):
    from adanns_ref.core import validate as _validate
    from adanns_ref.core.validate import MAX_RESULT_BYTES, as_k
    top = MAX_RESULT_BYTES // 12
    assert as_k(top, 1) == top and as_k(top // 4, 4) == top // 4 and as_k(np.int64(7), 0) == 7
    with pytest.raises(ValueError, match=r"k=\d+ for 1 queries needs 4 GiB .* above the 4 GiB limit"):
        as_k(top + 1, 1)
    with pytest.raises(ValueError, match="for 0 queries"):  # a huge k is refused even without queries
        as_k(top + 1, 0)
    monkeypatch.setattr(_validate, "MAX_RESULT_BYTES", 120)  # the bound is read at call time
    assert as_k(5, 2) == 5
    with pytest.raises(ValueError, match="lower k or search fewer queries per call"):
        as_k(6, 2)


@pytest.fixture(scope="module")
def small_indices():
    import warnings

    from adanns_ref import FlatIndex, IVFIndex, IVFPQIndex, PQIndex, ProductQuantizer
    x = np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flat = FlatIndex(8)
        flat.add(x)
        ivf = IVFIndex(8, 2)
        ivf.train(x)
        ivf.add(x)
        ivfpq = IVFPQIndex(8, 2, 2, nbits=2)
        ivfpq.train(x)
        ivfpq.add(x)
        pqi = PQIndex(8, 2, nbits=2)
        pqi.train(x)
        pqi.add(x)
        pq = ProductQuantizer(8, 2, nbits=2).train(x)
    return x, {"flat": flat, "ivf": ivf, "ivfpq": ivfpq, "pqindex": pqi, "pq": (pq, pq.encode(x))}


@pytest.mark.parametrize("entry", ["flat", "ivf", "ivfpq", "pqindex", "pq", "knn_search", "funnel",
                                   "rerank"])
def test_a_huge_k_is_a_value_error_naming_the_memory_not_a_memory_error(small_indices, entry):
    from adanns_ref import funnel_search, knn_search, rerank
    x, idx = small_indices
    q = x[:5]
    search = {"flat": lambda k: idx["flat"].search(q, k),
              "ivf": lambda k: idx["ivf"].search(q, k, nprobe=2),
              "ivfpq": lambda k: idx["ivfpq"].search(q, k),
              "pqindex": lambda k: idx["pqindex"].search(q, k),
              "pq": lambda k: idx["pq"][0].search(idx["pq"][1], q, k),
              "knn_search": lambda k: knn_search(q, x, k),
              "funnel": lambda k: funnel_search(x, q, [(4, k), (8, 5)])[:2],
              "rerank": lambda k: rerank(np.zeros((5, 1), np.int64), x, q, 8, k)}[entry]
    with pytest.raises(ValueError, match=r"for 5 queries needs 55\.9 GiB for the results \(nq \* (stages\[0\] )?k \* 12"):
        search(10**9)
    D, I = search(100)  # a k within the bound searches, padding beyond what there is (no clamping)
    assert I.shape == (5, 5 if entry == "funnel" else 100)
    assert (I[:, 64:] == -1).all()


def test_huge_k_is_refused_by_the_graph_and_code_indices():
    """Every index refuses a k whose results would not fit (issue 12 §5), naming the memory,
    instead of failing with MemoryError: HNSW, SQ and the binary indices too."""
    from adanns_ref import BinaryFlatIndex, BinaryIVFIndex, HNSWIndex, SQIndex, binarize
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 16)).astype(np.float32)
    hnsw = HNSWIndex(16, M=4)
    hnsw.add(x)
    sq = SQIndex(16)
    sq.train(x)
    sq.add(x)
    codes = binarize(x)
    bflat = BinaryFlatIndex(16)
    bflat.add(codes)
    bivf = BinaryIVFIndex(16, 2)
    bivf.train(codes)
    bivf.add(codes)
    for search in (lambda k: hnsw.search(x[:3], k), lambda k: sq.search(x[:3], k),
                   lambda k: bflat.search(codes[:3], k), lambda k: bivf.search(codes[:3], k)):
        with pytest.raises(ValueError, match="GiB"):
            search(10**9)
        D, I = search(2)
        assert I.shape == (3, 2)
