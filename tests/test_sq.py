"""Scalar quantization (adanns_ref.quantizers.sq) against faiss's ScalarQuantizer / IndexScalarQuantizer."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from adanns_ref.quantizers.sq import QTYPES, RANGESTATS, ScalarQuantizer

RS_ARG = {"minmax": 0.05, "meanstd": 2.5, "quantiles": 0.02, "optim": 0.0}


@pytest.fixture(scope="module")
def faiss():
    return pytest.importorskip("faiss")


@pytest.fixture
def one_faiss_thread(faiss):
    """faiss trains per-dimension meanstd / quantiles ranges in threads sharing one scratch
    vector (a data race); compare against its single-threaded result."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def _data(n, d, seed):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, d)) * rng.uniform(0.5, 3, d) + rng.uniform(-1, 1, d)).astype(np.float32)


def _faiss_index(faiss, d, qtype, metric, rangestat="minmax", arg=0.0):
    mt = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
    index = faiss.IndexScalarQuantizer(d, getattr(faiss.ScalarQuantizer, "QT_" + qtype), mt)
    index.sq.rangestat = getattr(faiss.ScalarQuantizer, "RS_" + rangestat)
    index.sq.rangestat_arg = arg
    return index


@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("rangestat", RANGESTATS)
def test_trained_ranges_and_codes_equal_faiss(faiss, one_faiss_thread, qtype, rangestat):
    x = _data(700, 20, 0)
    ref = _faiss_index(faiss, 20, qtype, "l2", rangestat, RS_ARG[rangestat])
    ref.train(x[:300])
    ref.add(x)
    sq = ScalarQuantizer(20, qtype, rangestat, RS_ARG[rangestat])
    if not np.isfinite(faiss.vector_to_array(ref.sq.trained)).all():  # optim broke down in faiss
        with pytest.raises(ValueError, match="non-finite ranges"):
            sq.train(x[:300])
        return
    sq.train(x[:300])
    np.testing.assert_array_equal(sq.trained, faiss.vector_to_array(ref.sq.trained))
    codes = sq.encode(x)
    np.testing.assert_array_equal(codes, faiss.vector_to_array(ref.codes).reshape(codes.shape))
    assert codes.shape[1] == ref.sq.code_size == sq.code_size


@pytest.mark.parametrize("d", [32, 24, 13])  # faiss's AVX-512, AVX2 and scalar builds
@pytest.mark.parametrize("qtype", QTYPES)
def test_decode_equals_faiss_sa_decode(faiss, qtype, d):
    x = _data(500, d, 1)
    ref = _faiss_index(faiss, d, qtype, "l2")
    ref.train(x)
    sq = ScalarQuantizer(d, qtype).train(x)
    codes = sq.encode(x)
    np.testing.assert_array_equal(sq.decode(codes), ref.sa_decode(codes))


def test_training_ignores_row_zero_like_faiss():
    """faiss's per-dimension meanstd / quantiles training reads row 0 as zeros."""
    x = _data(200, 8, 6)
    x[0] = 100.0  # would dominate the range if it were read
    zeroed = x.copy()
    zeroed[0] = 0.0
    for rs in ("meanstd", "quantiles"):
        a = ScalarQuantizer(8, "8bit", rs, RS_ARG[rs]).train(x).trained
        b = ScalarQuantizer(8, "8bit", rs, RS_ARG[rs]).train(zeroed).trained
        np.testing.assert_array_equal(a, b)
    a = ScalarQuantizer(8, "8bit", "minmax").train(x).trained  # minmax reads every row
    assert (a[8:] > 100).all()


def test_quantile_rule_by_hand():
    v = np.arange(100, dtype=np.float32)[::-1].reshape(100, 1).copy()
    sq = ScalarQuantizer(1, "8bit_uniform", "quantiles", 0.1).train(v)
    np.testing.assert_array_equal(sq.trained, [10.0, 79.0])  # o = 10: v_(10) .. v_(89)
    sq = ScalarQuantizer(1, "8bit_uniform", "quantiles", 0.7).train(v)  # o > n - o -> n // 2
    np.testing.assert_array_equal(sq.trained, [50.0, -1.0])


def test_fp16_rounds_ties_away_from_zero(faiss):
    x = np.array([[1 + 2 ** -11, -(1 + 2 ** -11), 1 + 3 * 2 ** -11, 70000.0]], dtype=np.float32)
    codes = ScalarQuantizer(4, "fp16").encode(x).view(np.uint16)[0]
    # numpy's float16 rounds the first two halfway values to even (1.0); faiss rounds them up
    np.testing.assert_array_equal(codes, [0x3C01, 0xBC01, 0x3C02, 0x7C00])
    ref = faiss.ScalarQuantizer(4, faiss.ScalarQuantizer.QT_fp16)
    np.testing.assert_array_equal(ref.compute_codes(x).view(np.uint16)[0], codes)


@pytest.mark.parametrize("d", [2, 8, 16, 24, 32])
def test_bf16_ties_round_like_faiss(faiss, d):
    """faiss adds half (ties away) except at d % 16 == 0, where its AVX512-BF16 build rounds
    ties to even."""
    x = np.tile(np.array([1 + 2 ** -8, 1 + 3 * 2 ** -8], np.float32), d // 2)[None]  # exact ties
    codes = ScalarQuantizer(d, "bf16").encode(x).view(np.uint16)[0]
    np.testing.assert_array_equal(codes[:2], [0x3F80, 0x3F82] if d % 16 == 0 else [0x3F81, 0x3F82])
    if d % 16 == 0 and faiss.SIMDConfig.get_level_name() != "AVX512_SPR":
        pytest.skip("faiss converts with vcvtneps2bf16 only at its AVX512_SPR level")
    ref = faiss.ScalarQuantizer(d, faiss.ScalarQuantizer.QT_bf16)
    np.testing.assert_array_equal(ref.compute_codes(x).view(np.uint16)[0], codes)


def test_4bit_packs_even_components_in_low_nibble():
    x = np.array([[0.0, 1.0, 0.5]], dtype=np.float32)
    sq = ScalarQuantizer(3, "4bit_uniform").set_trained([0.0, 1.0])
    # 15 * 0.5 = 7.5 -> 7; component 2 is alone in byte 1
    np.testing.assert_array_equal(sq.encode(x), [[0xF0, 0x07]])
    np.testing.assert_allclose(sq.decode(sq.encode(x)), [[0.5 / 15, 15.5 / 15, 7.5 / 15]], rtol=1e-6)


@settings(max_examples=40, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 30), st.integers(1, 9)),
              elements=st.floats(-1e3, 1e3, width=32)),
       st.sampled_from(["8bit", "8bit_uniform", "4bit", "4bit_uniform"]))
def test_range_codes_reconstruct_within_half_a_cell(x, qtype):
    sq = ScalarQuantizer(x.shape[1], qtype).train(x)
    rec = sq.decode(sq.encode(x))
    levels = 255 if qtype.startswith("8") else 15
    vdiff = sq.trained[x.shape[1]:] if sq.per_dim else sq.trained[1:]
    # a value lands in cell floor(L u) and comes back at the cell centre; u = 1 lands in cell L
    # and comes back half a cell above the range
    bound = vdiff.astype(np.float64) / levels * 1.0 + 1e-4 * (1 + np.abs(x))
    assert (np.abs(rec.astype(np.float64) - x) <= bound).all()


@settings(max_examples=40, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 20), st.integers(1, 9)),
              elements=st.floats(-6e4, 6e4, width=32)))
def test_fp16_roundtrip_relative_error(x):
    sq = ScalarQuantizer(x.shape[1], "fp16")
    rec = sq.decode(sq.encode(x)).astype(np.float64)
    assert (np.abs(rec - x) <= 2 ** -11 * np.abs(x) + 2 ** -24).all()


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"d": 0}, ValueError, "d must be >= 1"),
    ({"d": 4, "qtype": "3bit"}, ValueError, "qtype must be one of"),
    ({"d": 4, "rangestat": "mse"}, ValueError, "rangestat must be one of"),
    ({"d": 4, "rangestat_arg": float("nan")}, ValueError, "finite"),
    ({"d": 4, "rangestat_arg": "0.1"}, ValueError, "finite"),
    ({"d": 4.0}, TypeError, "integer"),
])
def test_quantizer_rejects_bad_parameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        ScalarQuantizer(**kwargs)


def test_quantizer_rejects_bad_inputs():
    sq = ScalarQuantizer(4)
    with pytest.raises(ValueError, match="before train"):
        sq.encode(np.zeros((1, 4), np.float32))
    with pytest.raises(ValueError, match="at least 1"):
        sq.train(np.zeros((0, 4), np.float32))
    with pytest.raises(ValueError, match="columns"):
        sq.train(np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        sq.train(np.array([[0, 1, np.nan, 2]], np.float32))
    sq.train(np.ones((2, 4), np.float32))
    with pytest.raises(TypeError, match="uint8"):
        sq.decode(np.zeros((1, 4), np.int64))
    with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
        sq.decode(np.zeros((1, 3), np.uint8))
    with pytest.raises(ValueError, match="needs 8"):
        sq.set_trained(np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="NaN or Inf"):
        ScalarQuantizer(4, "fp16").encode(np.full((1, 4), np.inf, np.float32))
