"""IVFPQFastScanIndex with by_residual = True against faiss 1.15's IndexIVFPQFastScan
("IVF{n},PQ{M}x4fsr": 3-D tables per probe for L2, uint16 biases, the 65535 bound), bit for bit."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adanns_ref.faiss_bridge.fastscan import fastscan_from_faiss, fastscan_to_faiss
from adanns_ref.fastscan import IVFPQFastScanIndex, lut
from adanns_ref.testing import assert_knn_equal

faiss = pytest.importorskip("faiss")
SETTINGS = settings(max_examples=12, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def _data(n, d, seed, dup=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    return np.repeat(x, dup, axis=0)[:n] if dup else x


def _faiss_index(d, nlist, M, metric, precomputed=True):
    quant = faiss.IndexFlatL2(d) if metric == "l2" else faiss.IndexFlatIP(d)
    mt = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
    ref = faiss.IndexIVFPQFastScan(quant, d, nlist, M, 4, mt, 32)
    ref.by_residual = True
    if not precomputed:
        ref.use_precomputed_table = -1
    return ref, quant


@pytest.fixture(scope="module", params=[(16, 8, 8), (32, 16, 5), (30, 15, 6)])
def residual_pair(request):
    """faiss and ours trained independently on the same data: l2 (precomputed and -1) and ip."""
    d, M, nlist = request.param
    x = _data(2000, d, 11 * d)
    out = {}
    for m, pre in (("l2", True), ("l2", False), ("ip", True)):
        ref, quant = _faiss_index(d, nlist, M, m, pre)
        ref.train(x)
        ours = IVFPQFastScanIndex(d, nlist, M, metric=m, allow_small=True, by_residual=True,
                                  precomputed=pre).train(x)
        out[m, pre] = (ref, ours, quant)
    return d, M, nlist, x, out


def test_training_equals_faiss(residual_pair):
    d, M, nlist, x, out = residual_pair
    for ref, ours, quant in out.values():
        np.testing.assert_array_equal(ours.ivf.centroids, quant.reconstruct_n(0, nlist))
        np.testing.assert_array_equal(ours.pq.codebooks.ravel(), faiss.vector_to_array(ref.pq.centroids))
    assert out["l2", True][0].use_precomputed_table == 1  # faiss's own choice, reproduced


@SETTINGS
@given(seed=st.integers(0, 10**6), n=st.integers(1, 400), k=st.sampled_from([1, 4, 20, 25]),
       nprobe=st.integers(1, 9), dup=st.sampled_from([0, 2]),
       kind=st.sampled_from([("l2", True), ("l2", False), ("ip", True)]))
def test_residual_search_equals_faiss(residual_pair, seed, n, k, nprobe, dup, kind):
    """k <= 20: ids and distances bit for bit, ties included; k > 20: distances bit for bit, ids
    up to ties. nprobe > nlist included (faiss's padded probes)."""
    d, M, nlist, x, out = residual_pair
    ref, ours, _ = out[kind]
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


def _faiss_quantize(T, bias, lut_is_3d):
    """faiss.quantize_LUT_and_bias of one query: T (P, M, 16) or (M, 16), bias (P,)."""
    P = bias.shape[0]
    M = T.shape[-2]
    M2 = M + (M & 1)
    out = np.zeros((P if lut_is_3d else 1) * M2 * 16, np.uint8)
    biasq = np.zeros(P, np.uint16)
    fa, fb = np.zeros(1, np.float32), np.zeros(1, np.float32)
    t = np.ascontiguousarray(T.ravel())
    bias = np.ascontiguousarray(bias)
    faiss.quantize_LUT_and_bias(P, M, 16, lut_is_3d, faiss.swig_ptr(t), faiss.swig_ptr(bias),
                                faiss.swig_ptr(out), M2, faiss.swig_ptr(biasq), faiss.swig_ptr(fa),
                                faiss.swig_ptr(fb))
    return out, biasq, fa[0], fb[0]


@given(M=st.sampled_from([1, 3, 8, 16, 300]), P=st.integers(1, 6), seed=st.integers(0, 10**6),
       spread=st.floats(0.01, 1000))
@settings(max_examples=40, deadline=None)
def test_bias_quantization_equals_faiss(M, P, seed, spread):
    """lut.quantize_lut_3d / quantize_lut_bias against faiss's quantize_LUT_and_bias, bit for bit."""
    rng = np.random.default_rng(seed)
    T = (rng.standard_normal((1, P, M, 16)) * rng.uniform(0.1, 5, (1, P, M, 1))).astype(np.float32)
    bias = (rng.uniform(0, spread, (1, P))).astype(np.float32)
    Tq, bq, a, b = lut.quantize_lut_3d(T, bias, np.ones((1, P), bool))
    ref, rbq, ra, rb = _faiss_quantize(T[0], bias[0], True)
    np.testing.assert_array_equal(Tq.ravel(), ref)
    np.testing.assert_array_equal(bq[0], rbq)
    assert (a[0], b[0]) == (ra, rb)
    Tq, bq, a, b = lut.quantize_lut_bias(T[:, 0], bias - np.float32(spread / 2))
    ref, rbq, ra, rb = _faiss_quantize(T[0, 0], bias[0] - np.float32(spread / 2), False)
    np.testing.assert_array_equal(Tq.ravel(), ref)
    np.testing.assert_array_equal(bq[0], rbq)
    assert (a[0], b[0]) == (ra, rb)


@pytest.mark.parametrize("metric,pre", [("l2", True), ("l2", False), ("ip", True)])
def test_residual_bridge_and_save_load(tmp_path, metric, pre):
    x, q = _data(900, 16, 0), _data(12, 16, 1)
    ours = IVFPQFastScanIndex(16, 6, 8, metric=metric, allow_small=True, by_residual=True,
                              precomputed=pre).train(x)
    ours.add(x[:333])
    exported = fastscan_to_faiss(ours)
    exported.nprobe = 3
    path = str(tmp_path / "f.index")
    faiss.write_index(exported, path)
    served = faiss.read_index(path)
    served.nprobe = 3
    assert served.by_residual
    # faiss files keep no use_precomputed_table: read_index rebuilds the table (choice 1), so a
    # precomputed=False export searches as ours only in memory, and comes back precomputed
    for k in (1, 10):
        D, I = ours.search(q, k, nprobe=3)
        for r1, r2 in zip((D, I), exported.search(q, k)):
            np.testing.assert_array_equal(r1, r2)
    back = fastscan_from_faiss(served)
    assert back.by_residual and back.precomputed
    for k in (1, 10):
        for r1, r2 in zip(back.search(q, k, nprobe=3), served.search(q, k)):
            np.testing.assert_array_equal(r1, r2)
    if pre:
        np.testing.assert_array_equal(back.search(q, 10, nprobe=3)[0], ours.search(q, 10, nprobe=3)[0])
    ours.save(tmp_path / "o.npz")
    loaded = IVFPQFastScanIndex.load(tmp_path / "o.npz")
    assert loaded.by_residual and loaded.precomputed == pre
    np.testing.assert_array_equal(back.codes, ours.codes)
    np.testing.assert_array_equal(loaded.codes, ours.codes)
    for r1, r2 in zip(loaded.search(q, 7, nprobe=3), ours.search(q, 7, nprobe=3)):
        np.testing.assert_array_equal(r1, r2)


def test_faiss_factory_fsr_through_the_bridge():
    x = _data(1200, 32, 3)
    fi = faiss.index_factory(32, "IVF8,PQ16x4fsr")
    fi.train(x)
    fi.add(x)
    fi.nprobe = 4
    ours = fastscan_from_faiss(fi)
    q = _data(9, 32, 4)
    for r1, r2 in zip(ours.search(q, 5, nprobe=4), fi.search(q, 5)):
        np.testing.assert_array_equal(r1, r2)


def test_residual_bad_inputs():
    with pytest.raises(TypeError):
        IVFPQFastScanIndex(16, 4, 4, by_residual=1)
    index = IVFPQFastScanIndex(16, 4, 4, allow_small=True, by_residual=True)
    with pytest.raises(ValueError, match="before train"):
        index.probe_tables(np.zeros((1, 16), np.float32))
    index.train(_data(400, 16, 0))
    with pytest.raises(ValueError, match="probe_tables"):
        index.quantized_tables(np.zeros((1, 16), np.float32))
    with pytest.raises(ValueError):
        index.search(np.zeros((1, 16), np.float32), 1, nprobe=0)
