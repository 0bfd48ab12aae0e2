"""Binary codes (adanns_ref.indices.binary) against faiss's IndexBinaryFlat / IndexBinaryIVF and
sentence-transformers' quantize_embeddings rule."""
import platform

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from adanns_ref.quantizers.binary import (INT32_MAX, binarize, pack_lsb, quantize_embeddings,
                                          unpack_lsb)
from adanns_ref.indices.binary import BinaryFlatIndex, BinaryIVFIndex
from adanns_ref.testing import assert_knn_equal
from adanns_ref.core.truncate import prefix


@pytest.fixture(scope="module")
def faiss():
    return pytest.importorskip("faiss")


def _codes(n, d_bits, seed):
    return binarize(np.random.default_rng(seed).standard_normal((n, d_bits)))


@pytest.mark.parametrize("d_bits", [8, 24, 64, 200, 1024])
def test_flat_equals_faiss_ties_included(faiss, d_bits):
    xb, xq = _codes(3000, d_bits, 0), _codes(40, d_bits, 1)
    xb = np.vstack([xb, xb[:300]])  # duplicates: tie groups of equal codes
    ref = faiss.IndexBinaryFlat(d_bits)
    ref.add(xb)
    ours = BinaryFlatIndex(d_bits)
    ours.add(xb)
    for k in (1, 15, 150):  # 8-bit codes have only 9 distinct distances: long cut tie groups
        D_ref, I_ref = ref.search(xq, k)
        D, I = ours.search(xq, k)
        assert D.dtype == np.int32 and I.dtype == np.int64
        np.testing.assert_array_equal(D, D_ref)
        np.testing.assert_array_equal(I, I_ref)


def test_flat_pads_like_faiss(faiss):
    xb, xq = _codes(3, 32, 2), _codes(2, 32, 3)
    ref = faiss.IndexBinaryFlat(32)
    ref.add(xb)
    ours = BinaryFlatIndex(32)
    ours.add(xb)
    D_ref, I_ref = ref.search(xq, 6)
    D, I = ours.search(xq, 6)
    np.testing.assert_array_equal(D, D_ref)
    np.testing.assert_array_equal(I, I_ref)
    assert (D[:, 3:] == INT32_MAX).all() and (I[:, 3:] == -1).all()
    empty = BinaryFlatIndex(32).search(xq, 2)
    assert (empty[0] == INT32_MAX).all() and (empty[1] == -1).all()


@pytest.mark.parametrize("d_bits, nlist", [(64, 16), (256, 40), (1024, 8)])
def test_ivf_equals_faiss(faiss, d_bits, nlist):
    xb, xq = _codes(6000, d_bits, 4), _codes(50, d_bits, 5)
    quantizer = faiss.IndexBinaryFlat(d_bits)
    ref = faiss.IndexBinaryIVF(quantizer, d_bits, nlist)
    ref.train(xb)
    ref.add(xb)
    ours = BinaryIVFIndex(d_bits, nlist)
    ours.train(xb)
    ours.add(xb)
    np.testing.assert_array_equal(ours.centroids, faiss.vector_to_array(quantizer.xb).reshape(nlist, -1))
    invlists = ref.invlists
    for l in range(nlist):
        n = invlists.list_size(l)
        ids = faiss.rev_swig_ptr(invlists.get_ids(l), n).copy() if n else np.empty(0, np.int64)
        np.testing.assert_array_equal(ours.list_ids(l), ids)
    for nprobe in (1, 4, nlist + 3):
        ref.nprobe = nprobe
        D_ref, I_ref = ref.search(xq, 25)
        D, I = ours.search(xq, 25, nprobe=nprobe)
        np.testing.assert_array_equal(D, D_ref)
        np.testing.assert_array_equal(I, I_ref)


def test_ivf_with_all_lists_probed_is_flat_search():
    xb, xq = _codes(800, 64, 6), _codes(20, 64, 7)
    ivf = BinaryIVFIndex(64, 5)
    ivf.train(xb)
    ivf.add(xb[:500])
    ivf.add(xb[500:])  # two adds = one add
    flat = BinaryFlatIndex(64)
    flat.add(xb)
    D, I = ivf.search(xq, 10, nprobe=5)
    D_ref, I_ref = flat.search(xq, 10)
    np.testing.assert_array_equal(D, D_ref)
    # lists are scanned in probe order, not id order: a tie group cut at k may keep other members
    assert_knn_equal(D_ref.astype(np.float32), I_ref, D.astype(np.float32), I, rtol=0, atol=0)


def test_binarize_is_packbits_of_the_prefix_sign():
    x = np.array([[0.5, -1, 0, 2, 3, -4, 5, 6, -0.1, 7]], np.float32)
    np.testing.assert_array_equal(binarize(x), [[0b10011011, 0b01000000]])
    np.testing.assert_array_equal(binarize(x, 8), [[0b10011011]])
    # the re-normalised Matryoshka prefix has the same signs
    rng = np.random.default_rng(8)
    z = rng.standard_normal((50, 64)).astype(np.float32)
    np.testing.assert_array_equal(binarize(z, 32), np.packbits(prefix(z, 32) > 0, axis=1))


@settings(max_examples=50, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 20), st.integers(1, 9)), elements=st.integers(0, 255)),
       arrays(np.uint8, st.tuples(st.integers(1, 5), st.integers(1, 9)), elements=st.integers(0, 255)))
def test_hamming_search_equals_bit_count_by_numpy(xb, xq):
    nbytes = min(xb.shape[1], xq.shape[1])
    xb, xq = np.ascontiguousarray(xb[:, :nbytes]), np.ascontiguousarray(xq[:, :nbytes])
    index = BinaryFlatIndex(8 * nbytes)
    index.add(xb)
    D, I = index.search(xq, xb.shape[0])
    h = np.unpackbits(xq[:, None, :] ^ xb[None], axis=2).sum(2)
    order = np.lexsort((np.broadcast_to(np.arange(xb.shape[0]), h.shape), h), axis=1)
    np.testing.assert_array_equal(I, order)
    np.testing.assert_array_equal(D, np.take_along_axis(h, order, 1))


@settings(max_examples=30, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 10), st.integers(1, 6)), elements=st.integers(0, 255)))
def test_lsb_unpack_pack_roundtrip(codes):
    x = unpack_lsb(codes, 8 * codes.shape[1])
    assert set(np.unique(x)) <= {-1.0, 1.0}
    np.testing.assert_array_equal(pack_lsb(x), codes)
    assert x[0, 0] == (1.0 if codes[0, 0] & 1 else -1.0)  # faiss: bit 0 is the lowest bit


def test_save_load_roundtrip(tmp_path):
    xb, xq = _codes(500, 64, 9), _codes(5, 64, 10)
    flat = BinaryFlatIndex(64)
    flat.add(xb)
    flat.save(tmp_path / "f.npz")
    for a, b in zip(BinaryFlatIndex.load(tmp_path / "f.npz").search(xq, 7), flat.search(xq, 7)):
        np.testing.assert_array_equal(a, b)
    ivf = BinaryIVFIndex(64, 6)
    ivf.train(xb)
    ivf.add(xb)
    ivf.save(tmp_path / "i.npz")
    back = BinaryIVFIndex.load(tmp_path / "i.npz")
    for l in range(6):
        np.testing.assert_array_equal(back.list_ids(l), ivf.list_ids(l))
    for a, b in zip(back.search(xq, 7, 2), ivf.search(xq, 7, 2)):
        np.testing.assert_array_equal(a, b)


def test_save_keeps_installed_lists_and_reads_version_1(tmp_path):
    """The lists are saved as they are (e.g. read from faiss in its scan order), not rebuilt
    by re-assignment on load; a version-1 file (codes in id order) still loads, rebuilt."""
    from adanns_ref.core.persist import save_npz
    xb = _codes(300, 64, 11)
    ivf = BinaryIVFIndex(64, 4)
    ivf.train(xb)
    ivf.add(xb)
    sizes = ivf.list_sizes()
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    ids = np.concatenate([ivf.list_ids(l)[::-1] for l in range(4)])   # another scan order
    codes = np.concatenate([ivf.list_codes(l)[::-1] for l in range(4)])
    ivf.set_lists(codes, ids, offsets)
    ivf.save(tmp_path / "v2.npz")
    back = BinaryIVFIndex.load(tmp_path / "v2.npz")
    for l in range(4):
        np.testing.assert_array_equal(back.list_ids(l), ivf.list_ids(l))
        np.testing.assert_array_equal(back.list_codes(l), ivf.list_codes(l))
    params = {"d_bits": 64, "nlist": 4, "niter": 10, "seed": 1234, "max_points_per_centroid": 256}
    save_npz(tmp_path / "v1.npz", "BinaryIVFIndex", 1, params,
             {"centroids": ivf.centroids, "codes": xb})
    old = BinaryIVFIndex.load(tmp_path / "v1.npz")
    for l in range(4):
        np.testing.assert_array_equal(np.sort(old.list_ids(l)), np.sort(ivf.list_ids(l)))
    bad = dict(centroids=ivf.centroids, codes=codes, ids=ids, offsets=offsets[::-1].copy())
    save_npz(tmp_path / "bad.npz", "BinaryIVFIndex", 2, params, bad)
    with pytest.raises(ValueError, match="bad.npz: inconsistent inverted lists"):
        BinaryIVFIndex.load(tmp_path / "bad.npz")
    save_npz(tmp_path / "big.npz", "BinaryIVFIndex", 2, dict(params, nlist=2**41), bad)
    with pytest.raises(ValueError, match="big.npz: nlist=2199023255552 but offsets has 5"):
        BinaryIVFIndex.load(tmp_path / "big.npz")


def test_load_rejects_bad_files(tmp_path):
    from adanns_ref.core.persist import save_npz
    path = tmp_path / "bad.npz"
    save_npz(path, "BinaryFlatIndex", 1, {"d_bits": 64}, {"codes": np.zeros((2, 7), np.uint8)})
    with pytest.raises(ValueError, match="shape"):
        BinaryFlatIndex.load(path)
    save_npz(path, "BinaryIVFIndex", 1, {"d_bits": 64, "nlist": 4, "niter": 10, "seed": 1234,
                                         "max_points_per_centroid": 256},
             {"centroids": np.zeros((3, 8), np.uint8), "codes": np.zeros((0, 8), np.uint8)})
    with pytest.raises(ValueError, match="nlist is 4"):
        BinaryIVFIndex.load(path)
    with pytest.raises(ValueError, match="holds a"):
        BinaryIVFIndex.load(_flat_file(tmp_path))


def _flat_file(tmp_path):
    BinaryFlatIndex(8).save(tmp_path / "flat.npz")
    return tmp_path / "flat.npz"


def test_bad_inputs():
    with pytest.raises(ValueError, match="multiple of 8"):
        BinaryFlatIndex(12)
    with pytest.raises(TypeError, match="integer"):
        BinaryFlatIndex(64.0)
    index = BinaryFlatIndex(16)
    with pytest.raises(TypeError, match="uint8"):
        index.add(np.zeros((2, 2), np.int64))
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        index.add(np.zeros((2, 3), np.uint8))
    with pytest.raises(ValueError, match="k must be >= 1"):
        index.search(np.zeros((1, 2), np.uint8), 0)
    ivf = BinaryIVFIndex(16, 4)
    with pytest.raises(ValueError, match="before train"):
        ivf.add(np.zeros((1, 2), np.uint8))
    with pytest.raises(ValueError, match="before train"):
        ivf.search(np.zeros((1, 2), np.uint8), 1)
    with pytest.raises(ValueError, match="at least nlist=4"):
        ivf.train(np.zeros((3, 2), np.uint8))
    with pytest.raises(ValueError, match="nprobe must be >= 1"):
        ivf.train(_codes(50, 16, 0)).search(np.zeros((1, 2), np.uint8), 1, nprobe=0)
    with pytest.raises(ValueError, match="NaN"):
        binarize(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="d must be <= 2"):
        binarize(np.ones((1, 2)), 3)


# sentence-transformers is not installed here (it pulls transformers and tokenizers); these
# tests state the rule of `quantize_embeddings` in UKPLab/sentence-transformers,
# sentence_transformers/quantization.py (v3 to v5): ranges = [min; max] of ranges /
# calibration_embeddings / the embeddings, steps = (max - min) / 255, uint8 =
# ((x - min) / steps).astype(uint8), int8 = ((x - min) / steps - 128).astype(int8),
# ubinary = packbits(x > 0) of the flattened array reshaped to (n, -1), binary = ubinary - 128.

def test_st_uint8_and_int8_rule():
    x = np.array([[0.0, -1.0], [0.5, 1.0], [1.0, 0.0]], np.float32)
    u = quantize_embeddings(x, "uint8")
    # float32 steps = 1/255 rounds up, so the maximum lands at 254.99998 and truncates to 254:
    # sentence-transformers' uint8 codes never reach 255 for the calibration maximum
    np.testing.assert_array_equal(u, [[0, 0], [127, 254], [254, 127]])
    # int8 truncates toward zero after subtracting 128: 127.49998 - 128 -> 0, not uint8 - 128
    np.testing.assert_array_equal(quantize_embeddings(x, "int8"), [[-128, -128], [0, 126], [126, 0]])
    cal = np.array([[-1.0, -2.0], [3.0, 2.0]], np.float32)
    steps = np.float32(4) / 255
    np.testing.assert_array_equal(quantize_embeddings(x, "uint8", calibration=cal)[:, 0],
                                  ((x[:, 0] + 1) / steps).astype(np.uint8))
    rng_ = np.vstack([cal.min(0), cal.max(0)])
    np.testing.assert_array_equal(quantize_embeddings(x, "uint8", ranges=rng_),
                                  quantize_embeddings(x, "uint8", calibration=cal))
    assert quantize_embeddings(x, "float32").dtype == np.float32


def test_st_ubinary_and_binary_rule():
    x = np.random.default_rng(11).standard_normal((6, 16)).astype(np.float32)
    ub = quantize_embeddings(x, "ubinary")
    np.testing.assert_array_equal(ub, binarize(x))  # row by row when d % 8 == 0
    b = quantize_embeddings(x, "binary")
    assert b.dtype == np.int8
    np.testing.assert_array_equal(b.astype(np.int16), ub.astype(np.int16) - 128)


def test_st_ubinary_packs_across_rows_when_d_is_not_a_multiple_of_8():
    x = np.ones((3, 7), np.float32)
    x[1, 0] = -1.0  # the 8th packed bit belongs to row 1
    np.testing.assert_array_equal(quantize_embeddings(x, "ubinary"), [[0b11111110], [0xFF], [0b11111000]])
    with pytest.raises(ValueError):  # 2 rows of 12 bits = 3 bytes: no (2, -1) reshape
        quantize_embeddings(np.ones((2, 12), np.float32), "ubinary")


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="numpy's out-of-range cast is platform-defined")
def test_st_does_not_clip_values_outside_the_ranges():
    x = np.array([[2.0], [-0.5]], np.float32)  # ranges [0, 1]: 509.99997 and -127.49999 before the cast
    u = quantize_embeddings(x, "uint8", ranges=np.array([[0.0], [1.0]], np.float32))
    np.testing.assert_array_equal(u, [[253], [129]])  # wrapped modulo 256 (509 and -127), not clipped


def test_quantize_embeddings_bad_inputs():
    with pytest.raises(ValueError, match="precision"):
        quantize_embeddings(np.ones((2, 8), np.float32), "int4")
    with pytest.raises(TypeError, match="float"):
        quantize_embeddings(np.ones((2, 8), np.uint8), "ubinary")
    with pytest.raises(ValueError, match="2-D"):
        quantize_embeddings(np.ones(8, np.float32), "ubinary")
    with pytest.raises(ValueError, match=r"ranges must have shape \(2, 8\)"):
        quantize_embeddings(np.ones((2, 8), np.float32), "int8", ranges=np.ones((2, 7)))
    with pytest.raises(ValueError, match="calibration"):
        quantize_embeddings(np.ones((2, 8), np.float32), "int8", calibration=np.ones((3, 7)))
