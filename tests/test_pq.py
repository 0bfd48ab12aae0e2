import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adanns_ref.quantizers.pq import ProductQuantizer
from adanns_ref.testing import assert_codes_equal, assert_knn_equal

faiss = pytest.importorskip("faiss")

FLT_MAX = np.float32(3.4028235e38)


def _rng(seed):
    return np.random.default_rng(seed)


def _data(n, d, seed):
    return _rng(seed).standard_normal((n, d)).astype(np.float32)


def _clustered(n, d, seed, k=12):
    """Well-separated blobs: k-means on them has no near-ties."""
    rng = _rng(seed)
    centres = 4 * rng.standard_normal((k, d))
    return (centres[rng.integers(0, k, n)] + rng.standard_normal((n, d))).astype(np.float32)


def _pair(d, M, nbits, seed=0):
    """Our PQ and a faiss ProductQuantizer holding the same random codebooks."""
    codebooks = _data(M * (1 << nbits), d // M, seed).reshape(M, 1 << nbits, d // M)
    ref = faiss.ProductQuantizer(d, M, nbits)
    faiss.copy_array_to_vector(codebooks.ravel(), ref.centroids)
    return ProductQuantizer(d, M, nbits).set_codebooks(codebooks), ref


# dsub < 16 takes faiss's direct path (dsub 10 and 13: the 8-lane tree), dsub >= 16 BLAS.
CODEC_CASES = [(16, 4, 8), (32, 4, 8), (64, 2, 8), (20, 2, 8), (26, 2, 8), (16, 4, 4), (6, 3, 4),
               (15, 3, 5), (24, 2, 12), (8, 8, 2)]


@pytest.mark.parametrize("d,M,nbits", CODEC_CASES)
def test_codes_and_decode_match_faiss(d, M, nbits):
    ours, ref = _pair(d, M, nbits)
    x = _data(2000, d, 1)
    codes = ours.encode(x)
    assert codes.shape == (2000, ref.code_size) and ours.code_size == ref.code_size
    assert_codes_equal(ref.compute_codes(x), codes)
    np.testing.assert_array_equal(ours.decode(codes), ref.decode(codes))


@pytest.mark.parametrize("dsub,nbits", [(1, 8), (2, 8), (2, 4), (4, 8), (8, 8), (8, 4), (10, 8), (13, 6)])
def test_direct_distance_tables_are_bit_identical_to_faiss(dsub, nbits):
    ours, ref = _pair(3 * dsub, 3, nbits, seed=dsub)
    q = _data(40, 3 * dsub, 2)
    expected = np.empty((40, 3, 1 << nbits), dtype=np.float32)
    ref.compute_distance_tables(40, faiss.swig_ptr(q), faiss.swig_ptr(expected))
    np.testing.assert_array_equal(ours.distance_table(q), expected)


def test_blas_distance_tables_match_faiss_to_rounding():
    ours, ref = _pair(64, 2, 8)
    q = _data(40, 64, 2)
    expected = np.empty((40, 2, 256), dtype=np.float32)
    ref.compute_distance_tables(40, faiss.swig_ptr(q), faiss.swig_ptr(expected))
    np.testing.assert_allclose(ours.distance_table(q), expected, rtol=1e-5, atol=1e-5)


def _faiss_index_pq(ref_pq, d, M, nbits, xb):
    index = faiss.IndexPQ(d, M, nbits)
    faiss.copy_array_to_vector(faiss.vector_to_array(ref_pq.centroids), index.pq.centroids)
    index.is_trained = True
    index.add(xb)
    return index


@pytest.mark.parametrize("d,M,nbits", [(32, 16, 8), (64, 32, 8), (96, 48, 8), (40, 20, 8), (32, 4, 8),
                                       (30, 5, 8), (16, 4, 4), (15, 3, 5), (4, 4, 16)])
def test_adc_search_is_bit_identical_to_faiss_indexpq(d, M, nbits):
    # Direct-path tables, so faiss's ADC summation order (16 lanes for nbits 8, groups of 4 for
    # nbits 16, sequential otherwise) must give the very same floats.
    ours, ref = _pair(d, M, nbits)
    xb, xq = _data(1500, d, 1), _data(60, d, 2)
    D_ref, I_ref = _faiss_index_pq(ref, d, M, nbits, xb).search(xq, 10)
    D, I = ours.search(ours.encode(xb), xq, 10)
    np.testing.assert_array_equal(D, D_ref)
    np.testing.assert_array_equal(I, I_ref)


@pytest.mark.parametrize("d,M,nbits", [(64, 4, 8), (24, 2, 12)])
def test_adc_search_matches_faiss_on_blas_tables(d, M, nbits):
    ours, ref = _pair(d, M, nbits)
    xb, xq = _data(3000, d, 1), _data(60, d, 2)
    D_ref, I_ref = _faiss_index_pq(ref, d, M, nbits, xb).search(xq, 10)
    D, I = ours.search(ours.encode(xb), xq, 10)
    assert_knn_equal(D_ref, I_ref, D, I, rtol=1e-5)


@pytest.mark.parametrize("n,d,M,nbits,niter", [(2000, 16, 4, 4, 10), (3000, 8, 2, 6, 25),
                                                (1000, 12, 3, 5, 5), (700, 8, 2, 8, 8)])
def test_trained_codebooks_equal_faiss(n, d, M, nbits, niter):
    x = _clustered(n, d, 3)
    ref = faiss.ProductQuantizer(d, M, nbits)
    ref.cp.niter = niter
    ref.train(x)
    ours = ProductQuantizer(d, M, nbits, niter=niter, allow_small=True).train(x)
    expected = faiss.vector_to_array(ref.centroids).reshape(M, 1 << nbits, d // M)
    np.testing.assert_array_equal(ours.codebooks, expected)


def test_training_is_deterministic_and_seeded():
    x = _clustered(600, 8, 4)
    a = ProductQuantizer(8, 2, 4, seed=7, allow_small=True).train(x).codebooks
    b = ProductQuantizer(8, 2, 4, seed=7, allow_small=True).train(x).codebooks
    c = ProductQuantizer(8, 2, 4, seed=8, allow_small=True).train(x).codebooks
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_warm_start_from_converged_codebooks_is_a_fixed_point():
    x = _clustered(800, 8, 5)
    pq = ProductQuantizer(8, 2, 4, niter=50, allow_small=True).train(x)
    again = ProductQuantizer(8, 2, 4, niter=3, allow_small=True).train(x, init_codebooks=pq.codebooks)
    np.testing.assert_array_equal(again.codebooks, pq.codebooks)


def test_bit_layout_is_lsb_first():
    # nbits 5, M 3: codes (1, 2, 3) -> 1 | 2 << 5 | 3 << 10 = 0x0C41 -> bytes 0x41, 0x0C
    pq = ProductQuantizer(3, 3, 5).set_codebooks(np.arange(32, dtype=np.float32)[None, :, None].repeat(3, 0))
    np.testing.assert_array_equal(pq.encode(np.array([[1, 2, 3]], np.float32)), [[0x41, 0x0C]])
    pq4 = ProductQuantizer(2, 2, 4).set_codebooks(np.arange(16, dtype=np.float32)[None, :, None].repeat(2, 0))
    np.testing.assert_array_equal(pq4.encode(np.array([[1, 2]], np.float32)), [[0x21]])


@settings(deadline=None, max_examples=30)
@given(nbits=st.integers(1, 16), M=st.integers(1, 9), seed=st.integers(0, 2**31 - 1))
def test_packing_round_trips_for_every_nbits(nbits, M, seed):
    # Codebook m, centroid j = the scalar j, so encoding the value j gives sub-code j exactly.
    ksub = 1 << nbits
    pq = ProductQuantizer(M, M, nbits).set_codebooks(
        np.broadcast_to(np.arange(ksub, dtype=np.float32)[None, :, None], (M, ksub, 1)))
    sub = _rng(seed).integers(0, ksub, size=(20, M))
    codes = pq.encode(sub.astype(np.float32))
    assert codes.shape == (20, (M * nbits + 7) // 8)
    np.testing.assert_array_equal(pq.unpack(codes), sub)
    np.testing.assert_array_equal(pq.decode(codes), sub.astype(np.float32))


@settings(deadline=None, max_examples=25)
@given(seed=st.integers(0, 2**31 - 1), nbits=st.sampled_from([2, 4, 8]),
       shape=st.sampled_from([(8, 2), (12, 3), (32, 2), (6, 6)]))
def test_decode_of_encode_is_the_nearest_codeword_per_subspace(seed, nbits, shape):
    d, M = shape
    dsub, ksub = d // M, 1 << nbits
    rng = _rng(seed)
    pq = ProductQuantizer(d, M, nbits).set_codebooks(
        rng.standard_normal((M, ksub, dsub)).astype(np.float32))
    x = rng.standard_normal((30, d)).astype(np.float32)
    sub = pq.unpack(pq.encode(x)).astype(np.int64)
    x_hat = pq.decode(pq.encode(x))
    for m in range(M):
        xm = x[:, m * dsub:(m + 1) * dsub].astype(np.float64)
        all_d = ((xm[:, None, :] - pq.codebooks[m][None].astype(np.float64)) ** 2).sum(-1)
        chosen = ((xm - x_hat[:, m * dsub:(m + 1) * dsub]) ** 2).sum(-1)
        np.testing.assert_allclose(chosen, all_d.min(axis=1), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(all_d[np.arange(30), sub[:, m]], chosen)


@pytest.mark.parametrize("M", [16, 32, 48])
def test_word_scan_equals_the_per_byte_scan_on_misaligned_codes(M, monkeypatch):
    # nbits 8 with M % 16 == 0 reads codes as uint64 words; a code buffer at an odd address is
    # copied first. The per-byte kernel (the path for every other M) must give the same bits.
    pq, _ = _pair(2 * M, M, 8)
    xb, xq = _data(700, 2 * M, 1), _data(40, 2 * M, 2)
    codes = pq.encode(xb)
    raw = np.empty(codes.size + 1, dtype=np.uint8)
    shifted = raw[1:].reshape(codes.shape)  # same bytes, address + 1
    shifted[:] = codes
    assert shifted.ctypes.data % 8
    D, I = pq.search(shifted, xq, 7)
    monkeypatch.setattr(ProductQuantizer, "_as_words", lambda self, sub: None)
    D_bytes, I_bytes = pq.search(codes, xq, 7)
    np.testing.assert_array_equal(D, D_bytes)
    np.testing.assert_array_equal(I, I_bytes)


@pytest.mark.parametrize("d,M,nbits", [(8, 2, 4), (32, 16, 8)])  # per-byte and word scans
def test_search_pads_missing_results_and_breaks_ties_by_id(d, M, nbits):
    pq, _ = _pair(d, M, nbits)
    xb = _data(3, d, 1)[[0, 1, 0]]  # rows 0 and 2 identical -> identical codes, equal distances
    D, I = pq.search(pq.encode(xb), _data(2, d, 2), 5)
    assert I.dtype == np.int64 and D.dtype == np.float32
    np.testing.assert_array_equal(I[:, 3:], -1)
    np.testing.assert_array_equal(D[:, 3:], FLT_MAX)
    for row_i, row_d in zip(I, D):
        assert list(row_i[:3]).index(0) < list(row_i[:3]).index(2)  # tie -> smaller id first
        assert np.all(np.diff(row_d[:3]) >= 0)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="not divisible by M"):
        ProductQuantizer(10, 3)
    with pytest.raises(ValueError, match="nbits must be <= 16"):
        ProductQuantizer(8, 2, nbits=17)
    with pytest.raises(ValueError, match="nbits must be >= 1"):
        ProductQuantizer(8, 2, nbits=0)
    with pytest.raises(TypeError, match="nbits must be an integer"):
        ProductQuantizer(8, 2, nbits=8.0)
    with pytest.raises(TypeError, match="allow_small"):
        ProductQuantizer(8, 2, allow_small="yes")


def test_too_few_training_points():
    with pytest.raises(ValueError, match="at least ksub = 2\\^8 = 256 points"):
        ProductQuantizer(8, 2, 8, allow_small=True).train(_data(200, 8, 0))


def test_use_before_train():
    pq = ProductQuantizer(8, 2, 4)
    for call in (lambda: pq.encode(_data(2, 8, 0)), lambda: pq.decode(np.zeros((2, 1), np.uint8)),
                 lambda: pq.search(np.zeros((2, 1), np.uint8), _data(2, 8, 0), 1),
                 lambda: pq.distance_table(_data(2, 8, 0))):
        with pytest.raises(ValueError, match="before train"):
            call()


def test_bad_inputs_after_training():
    pq, _ = _pair(8, 2, 4)
    codes = pq.encode(_data(5, 8, 0))
    with pytest.raises(ValueError, match="7 columns but 8 were expected"):
        pq.encode(_data(5, 7, 0))
    with pytest.raises(ValueError, match="7 columns but 8 were expected"):
        pq.search(codes, _data(5, 7, 0), 1)
    with pytest.raises(ValueError, match="NaN"):
        pq.encode(np.full((2, 8), np.nan, np.float32))
    with pytest.raises(ValueError, match="code_size=1"):
        pq.search(np.zeros((5, 2), np.uint8), _data(2, 8, 0), 1)
    with pytest.raises(TypeError, match="uint8"):
        pq.decode(codes.astype(np.int64))
    with pytest.raises(ValueError, match="k must be >= 1"):
        pq.search(codes, _data(2, 8, 0), 0)
    with pytest.raises(ValueError, match="init_codebooks must have shape"):
        pq.train(_data(400, 8, 0), init_codebooks=np.zeros((2, 8, 4), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        pq.set_codebooks(np.full((2, 16, 4), np.nan, np.float32))
