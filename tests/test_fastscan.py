"""adanns_ref.fastscan against faiss 1.15's IndexPQFastScan / IndexIVFPQFastScan, bit for bit."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adanns_ref.fastscan import IVFPQFastScanIndex, PQFastScanIndex
from adanns_ref.fastscan import lut, packing, scan
from adanns_ref.testing import assert_knn_equal

faiss = pytest.importorskip("faiss")
SETTINGS = settings(max_examples=12, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
METRICS = {"l2": None, "ip": None}


def _metric(m):
    return faiss.METRIC_L2 if m == "l2" else faiss.METRIC_INNER_PRODUCT


def _data(n, d, seed, dup=0):
    """Gaussian rows; with dup > 0 each row repeats dup times (exact ties in every ranking)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    return np.repeat(x, dup, axis=0)[:n] if dup else x


def _faiss_flat_codes(index, shape):
    return faiss.rev_swig_ptr(index.codes.get(), index.codes.size()).copy().reshape(shape)


@pytest.fixture(scope="module", params=[(16, 4), (16, 8), (32, 16), (64, 32), (30, 15)])
def flat_pair(request):
    """faiss IndexPQFastScan and ours, trained independently on the same data, per metric."""
    d, M = request.param
    x = _data(1500, d, d + M)
    out = {}
    for m in ("l2", "ip"):
        ref = faiss.IndexPQFastScan(d, M, 4, _metric(m), 32)
        ref.train(x)
        ours = PQFastScanIndex(d, M, metric=m, allow_small=True).train(x)
        out[m] = (ref, ours)
    return d, M, x, out


def test_codebooks_and_packed_codes_equal_faiss(flat_pair):
    d, M, x, out = flat_pair
    for ref, ours in out.values():
        np.testing.assert_array_equal(ours.pq.codebooks.ravel(), faiss.vector_to_array(ref.pq.centroids))
        ref.reset()
        ref.add(x[:77])  # a partial last block
        ours.reset()
        ours.add(x[:77])
        np.testing.assert_array_equal(ours.codes, _faiss_flat_codes(ref, ours.codes.shape))


@SETTINGS
@given(seed=st.integers(0, 10**6), n=st.integers(1, 300), k=st.sampled_from([1, 2, 5, 20]),
       dup=st.sampled_from([0, 2, 3]), metric=st.sampled_from(["l2", "ip"]))
def test_flat_search_bit_identical_k_le_20(flat_pair, seed, n, k, dup, metric):
    """Heap path (implem 12) and k = 1: ids and distances bit for bit, ties included (dup)."""
    d, M, x, out = flat_pair
    ref, ours = out[metric]
    xb = _data(n, d, seed, dup)
    q = np.concatenate([xb[:3], _data(5, d, seed + 1)])
    ref.reset()
    ref.add(xb)
    ours.reset()
    ours.add(xb)
    D_ref, I_ref = ref.search(q, k)
    D, I = ours.search(q, k)
    np.testing.assert_array_equal(I, I_ref)
    np.testing.assert_array_equal(D, D_ref)


@SETTINGS
@given(seed=st.integers(0, 10**6), n=st.integers(30, 400), k=st.sampled_from([21, 33, 64]),
       dup=st.sampled_from([0, 2]), metric=st.sampled_from(["l2", "ip"]))
def test_flat_search_reservoir_k_gt_20(flat_pair, seed, n, k, dup, metric):
    """Reservoir path (implem 13): distances bit for bit, ids equal up to ties."""
    d, M, x, out = flat_pair
    ref, ours = out[metric]
    xb = _data(n, d, seed, dup)
    q = _data(6, d, seed + 1)
    ref.reset()
    ref.add(xb)
    ours.reset()
    ours.add(xb)
    D_ref, I_ref = ref.search(q, k)
    D, I = ours.search(q, k)
    np.testing.assert_array_equal(D, D_ref)
    assert_knn_equal(D_ref, I_ref, D, I, rtol=0, atol=0)


def test_quantized_tables_equal_faiss_round_uint8_per_column(flat_pair):
    d, M, x, out = flat_pair
    ref, ours = out["l2"]
    q = _data(4, d, 5)
    Tq, a, b = ours.quantized_tables(q)
    T = ours.pq.distance_table(q)
    for i in range(q.shape[0]):
        t = np.ascontiguousarray(T[i].ravel())
        fa, fb = np.zeros(1, np.float32), np.zeros(1, np.float32)
        faiss.round_uint8_per_column(faiss.swig_ptr(t), M, 16, faiss.swig_ptr(fa), faiss.swig_ptr(fb))
        np.testing.assert_array_equal(Tq[i, :M].ravel(), t.astype(np.int64) & 255)
        assert (a[i], b[i]) == (fa[0], fb[0])


def test_bounded_tables_equal_faiss_quantize_lut_and_bias():
    rng = np.random.default_rng(3)
    for M in (3, 8, 300):
        T = (rng.standard_normal((2, M, 16)) * rng.uniform(0.1, 5, (2, M, 1))).astype(np.float32)
        Tq, a, b = lut.quantize_lut_bounded(T)
        for i in range(2):
            out = np.zeros((M + (M & 1)) * 16, np.uint8)
            fa, fb = np.zeros(1, np.float32), np.zeros(1, np.float32)
            t = np.ascontiguousarray(T[i].ravel())
            faiss.quantize_LUT_and_bias(1, M, 16, False, faiss.swig_ptr(t), None, faiss.swig_ptr(out),
                                        M + (M & 1), None, faiss.swig_ptr(fa), faiss.swig_ptr(fb))
            np.testing.assert_array_equal(Tq[i].ravel(), out)
            assert (a[i], b[i]) == (fa[0], fb[0])
        assert Tq.astype(np.int64).max(axis=2).sum(axis=1).max() <= 65535 + M // 2


@given(n=st.integers(0, 100), M=st.integers(1, 9), seed=st.integers(0, 1000))
@settings(max_examples=40, deadline=None)
def test_packing_roundtrip_and_layout(n, M, seed):
    sub = np.random.default_rng(seed).integers(0, 16, (n, M)).astype(np.uint8)
    blocks = packing.pack_codes(sub)
    assert blocks.shape == (-(-n // 32), (M + (M & 1)) // 2 * 32)
    np.testing.assert_array_equal(packing.unpack_codes(blocks, n, M), sub)
    np.testing.assert_array_equal(packing.split_nibbles(packing.join_nibbles(sub), M), sub)
    if n:  # faiss's own packer on the same codes
        flat = faiss.IndexPQ(M, M, 4)
        flat.is_trained = True
        faiss.copy_array_to_vector(packing.join_nibbles(sub).ravel(), flat.codes)
        flat.ntotal = n
        fs = faiss.IndexPQFastScan(flat, 32)  # packs with pq4_pack_codes
        np.testing.assert_array_equal(_faiss_flat_codes(fs, blocks.shape), blocks)


@pytest.fixture(scope="module", params=[(16, 8, 8), (32, 16, 5), (30, 15, 6)])
def ivf_pair(request):
    d, M, nlist = request.param
    x = _data(2000, d, 7 * d)
    out = {}
    for m in ("l2", "ip"):
        quant = faiss.IndexFlatL2(d) if m == "l2" else faiss.IndexFlatIP(d)
        ref = faiss.IndexIVFPQFastScan(quant, d, nlist, M, 4, _metric(m), 32)
        ref.train(x)
        ours = IVFPQFastScanIndex(d, nlist, M, metric=m, allow_small=True).train(x)
        out[m] = (ref, ours, quant)
    return d, M, nlist, x, out


@SETTINGS
@given(seed=st.integers(0, 10**6), n=st.integers(1, 400), k=st.sampled_from([1, 4, 20, 25]),
       nprobe=st.integers(1, 9), dup=st.sampled_from([0, 2]), metric=st.sampled_from(["l2", "ip"]))
def test_ivf_search_equals_faiss(ivf_pair, seed, n, k, nprobe, dup, metric):
    d, M, nlist, x, out = ivf_pair
    ref, ours, _ = out[metric]
    np.testing.assert_array_equal(ours.ivf.centroids,
                                  ref.quantizer.reconstruct_n(0, nlist))
    xb = _data(n, d, seed, dup)
    q = np.concatenate([xb[:2], _data(5, d, seed + 1)])
    ref.reset()
    ref.add(xb)
    ref.nprobe = nprobe
    ours.reset()
    ours.add(xb)
    D_ref, I_ref = ref.search(q, k)
    D, I = ours.search(q, k, nprobe=nprobe)
    np.testing.assert_array_equal(D, D_ref)
    if k <= 20:
        np.testing.assert_array_equal(I, I_ref)
    else:
        assert_knn_equal(D_ref, I_ref, D, I, rtol=0, atol=0)


def test_missing_results_match_faiss():
    """Fewer vectors than k: faiss pads k <= 20 with 65535 / a + b (L2) and id -1, k = 1 with
    b - 1 / a (int16 -1), k > 20 with FLT_MAX."""
    x = _data(700, 16, 1)
    ref = faiss.IndexPQFastScan(16, 8, 4, faiss.METRIC_L2, 32)
    ref.train(x)
    ours = PQFastScanIndex(16, 8, allow_small=True).train(x)
    for n, k in ((3, 5), (3, 20), (3, 30), (1, 1), (1, 2)):
        ref.reset()
        ours.reset()
        ref.add(x[:n])
        ours.add(x[:n])
        D_ref, I_ref = ref.search(x[:2], k)
        D, I = ours.search(x[:2], k)
        np.testing.assert_array_equal(I, I_ref)
        np.testing.assert_array_equal(D, D_ref)
    # faiss 1.15.1 crashes (SIGSEGV) searching an empty IndexPQFastScan; ours returns the
    # handler's padding: ids -1, k = 1 at b + (-1) / a (the int16 neutral)
    ours.reset()
    D, I = ours.search(x[:2], 1)
    _, a, b = ours.quantized_tables(x[:2])
    np.testing.assert_array_equal(I, -1)
    np.testing.assert_array_equal(D[:, 0], b - np.float32(1) / a)


def test_save_load_roundtrip(tmp_path):
    x = _data(800, 16, 2)
    for cls, args in ((PQFastScanIndex, (16, 8)), (IVFPQFastScanIndex, (16, 4, 8))):
        index = cls(*args, allow_small=True)
        index.save(tmp_path / "empty.npz")
        assert cls.load(tmp_path / "empty.npz").ntotal == 0
        index.train(x)
        index.add(x[:100])
        index.save(tmp_path / "a.npz")
        back = cls.load(tmp_path / "a.npz")
        np.testing.assert_array_equal(back.codes, index.codes)
        for r1, r2 in zip(back.search(x[:5], 7), index.search(x[:5], 7)):
            np.testing.assert_array_equal(r1, r2)


def test_bad_inputs_rejected(tmp_path):
    with pytest.raises(ValueError, match="divisible"):
        PQFastScanIndex(10, 4)
    with pytest.raises(ValueError, match="metric"):
        PQFastScanIndex(16, 4, metric="cos")
    with pytest.raises(TypeError):
        PQFastScanIndex(16.0, 4)
    index = PQFastScanIndex(16, 4, allow_small=True)
    with pytest.raises(ValueError, match="before train"):
        index.search(np.zeros((1, 16), np.float32), 1)
    with pytest.raises(ValueError, match="before train"):
        index.add(np.zeros((1, 16), np.float32))
    x = _data(300, 16, 0)
    index.train(x)
    index.add(x)
    with pytest.raises(ValueError):
        index.search(np.zeros((1, 15), np.float32), 1)
    with pytest.raises(ValueError):
        index.search(np.full((1, 16), np.nan, np.float32), 1)
    with pytest.raises(ValueError):
        index.search(x[:1], 0)
    with pytest.raises(TypeError):
        index.search(x[:1], 1, wrap=1)
    with pytest.raises(ValueError, match="values < 16"):
        index.add_sub_codes(np.full((2, 4), 16, np.uint8))
    with pytest.raises(ValueError, match="tables"):
        lut.quantize_lut_per_column(np.zeros((1, 2, 16), np.float64))
    ivf = IVFPQFastScanIndex(16, 4, 4, allow_small=True)
    with pytest.raises(ValueError, match="before train"):
        ivf.search(x[:1], 1)
    ivf.train(x)
    with pytest.raises(ValueError):
        ivf.search(x[:1], 1, nprobe=0)
    path = tmp_path / "bad.npz"
    index.save(path)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="bad.npz"):
        PQFastScanIndex.load(path)
    with pytest.raises(ValueError, match="bad.npz"):
        IVFPQFastScanIndex.load(path)


@pytest.mark.parametrize("M", [255, 256, 257, 258, 300])
def test_scan_lanes_exact_at_the_16_bit_boundary(M):
    """The scan reads each packed byte once through paired 16-bit (M2 <= 256) or 32-bit lanes:
    the exact sums stay exact on both sides of the boundary, wrapped values are s mod 2^16."""
    rng = np.random.default_rng(M)
    n, M2 = 70, M + (M & 1)
    sub = rng.integers(0, 16, (n, M)).astype(np.uint8)
    lutq = np.zeros((1, M2, 16), np.uint8)
    lutq[0, :M] = rng.integers(200, 256, (M, 16))
    lutq[0, :M, 3] = 255
    sub[5] = 3  # one vector at the largest sum 255 M
    exact = lutq[0, np.arange(M), sub].astype(np.int64).sum(axis=1)
    blocks = packing.pack_codes(sub)
    for wrap in (True, False):
        hv, hid = scan.new_heaps(1, n, False, wrap)  # IP: keep the n largest, all of them
        stats = np.zeros((1, 2), np.int64)
        scan.scan_flat(lutq, blocks, n, False, wrap, hv, hid, stats, *scan.scratch(M2))
        assert stats[0, 0] == exact.max() == 255 * M
        assert stats[0, 1] == (exact > 65535).sum()
        got = dict(zip(-hid[0], -hv[0]))
        want = exact & 0xFFFF if wrap else exact
        assert [got[i] for i in range(n) if i in got] == [want[i] for i in range(n) if i in got]
        assert len(got) == n - (want == 0).sum()
