"""adanns_ref.rabitq against faiss 1.15.1's IndexRaBitQ: codes, ids and distances bit for bit."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adanns_ref import RaBitQIndex
from adanns_ref.core.simd import faiss_runs_avx512
from adanns_ref.rabitq import RaBitQuantizer, scan

faiss = pytest.importorskip("faiss")
SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
# bit for bit where faiss runs the AVX-512 kernels whose orders we reproduce; otherwise its
# other SIMD levels sum in other orders (last-bit differences, see core.simd)
EXACT = faiss_runs_avx512(faiss)


def _metric(m):
    return faiss.METRIC_L2 if m == "l2" else faiss.METRIC_INNER_PRODUCT


def _data(n, d, seed, dup=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, d)) + rng.standard_normal(d)).astype(np.float32)
    return np.repeat(x, dup, axis=0)[:n] if dup else x


def _pair(x, d, metric, nb_bits, qb, centered):
    ref = faiss.IndexRaBitQ(d, _metric(metric), nb_bits)
    ref.qb, ref.centered = qb, centered
    ref.train(x)
    ref.add(x)
    ours = RaBitQIndex(d, metric, nb_bits, qb, centered).train(x)
    ours.add(x)
    return ref, ours


def _faiss_codes(ref):
    return faiss.vector_to_array(ref.codes).reshape(ref.ntotal, ref.code_size)


def _assert_same_search(ref, ours, q, k):
    Dr, Ir = ref.search(q, k)
    D, I = ours.search(q, k)
    if EXACT:
        np.testing.assert_array_equal(I, Ir)
        np.testing.assert_array_equal(D, Dr)
    else:
        np.testing.assert_allclose(D, Dr, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("d", [7, 16, 33, 64])
@pytest.mark.parametrize("nb_bits", [1, 2, 3, 4, 5, 8, 9])
@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_center_and_codes_equal_faiss(d, nb_bits, metric):
    x = _data(300, d, d * nb_bits)
    ref, ours = _pair(x, d, metric, nb_bits, 0, False)
    assert ours.code_size == ref.code_size
    np.testing.assert_array_equal(ours.center, faiss.vector_to_array(ref.center))
    np.testing.assert_array_equal(ours.codes, _faiss_codes(ref))
    np.testing.assert_array_equal(ours.sa_decode(ours.codes[:20]), ref.sa_decode(_faiss_codes(ref)[:20]))


@pytest.fixture(scope="module")
def grid_data():
    return {d: (_data(600, d, d), _data(25, d, d + 1)) for d in (33, 64)}


@pytest.mark.parametrize("d", [33, 64])
@pytest.mark.parametrize("nb_bits", [1, 2, 4, 8])
@pytest.mark.parametrize("qb,centered", [(0, False), (4, False), (4, True), (8, False), (8, True)])
@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_search_equals_faiss(grid_data, d, nb_bits, qb, centered, metric):
    x, q = grid_data[d]
    ref, ours = _pair(x, d, metric, nb_bits, qb, centered)
    for k in (1, 10, 40):
        _assert_same_search(ref, ours, q, k)


@pytest.mark.parametrize("nb_bits", [1, 4])
@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_ties_as_in_faiss(nb_bits, metric):
    x = _data(300, 24, 5, dup=3)  # every vector three times: equal codes, equal estimates
    ref, ours = _pair(x, 24, metric, nb_bits, 4, False)
    _assert_same_search(ref, ours, x[:15], 7)
    D, _ = ours.search(x[:15], 7)
    assert (D[:, 1:] == D[:, :-1]).sum() >= 15  # the rankings really hold ties


def test_search_parameters_override_the_index_fields():
    x = _data(400, 32, 9)
    ref, ours = _pair(x, 32, "l2", 1, 4, False)
    params = faiss.RaBitQSearchParameters()
    params.qb, params.centered = 8, True
    Dr, Ir = ref.search(x[:10], 5, params=params)
    D, I = ours.search(x[:10], 5, qb=8, centered=True)
    np.testing.assert_array_equal(I, Ir)
    if EXACT:
        np.testing.assert_array_equal(D, Dr)
    assert not np.array_equal(D, ours.search(x[:10], 5)[0])  # the override changed something


def test_large_k_and_padding():
    x = _data(150, 17, 3)
    for nb_bits in (1, 3):
        ref, ours = _pair(x, 17, "l2", nb_bits, 0, False)
        _assert_same_search(ref, ours, x[:5], 120)  # faiss's reservoir handler (k >= 100)
        _assert_same_search(ref, ours, x[:5], 200)  # more than ntotal: -1 / FLT_MAX padding


@pytest.mark.parametrize("nb_bits", [1, 2, 4])
@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_reservoir_threshold_gates_refinement_as_in_faiss(nb_bits, metric):
    # k >= 100 with ntotal well past the reservoir's capacity (2k rounded to 16): faiss shrinks
    # the reservoir and its threshold decides which codes the multi-bit stage refines
    x = _data(2500, 33, 11)
    ref, ours = _pair(x, 33, metric, nb_bits, 4, False)
    for k in (100, 130, 300):
        _assert_same_search(ref, ours, x[:12], k)


@SETTINGS
@given(seed=st.integers(0, 10**6), d=st.integers(1, 70), n=st.integers(1, 200),
       nb_bits=st.integers(1, 9), qb=st.integers(0, 8), centered=st.booleans(),
       metric=st.sampled_from(["l2", "ip"]), k=st.sampled_from([1, 3, 20]))
def test_property_identical_to_faiss(seed, d, n, nb_bits, qb, centered, metric, k):
    x = _data(n, d, seed)
    q = _data(4, d, seed + 1)
    ref, ours = _pair(x, d, metric, nb_bits, qb, centered)
    np.testing.assert_array_equal(ours.codes, _faiss_codes(ref))
    _assert_same_search(ref, ours, q, k)


def test_bmi2_kernel_differs_only_in_the_last_bits():
    """A faiss build with BMI2 sums ex_bits 2..7 on 8 fma lanes: our scalar order is the wheel's,
    the lane order stays within a few ulps of the sum of |terms| (the documented tolerance)."""
    rng = np.random.default_rng(0)
    differ = 0
    for d, ex_bits in [(200, 3), (64, 2), (97, 7), (33, 5)] * 5:
        rq = rng.standard_normal(d).astype(np.float32)
        bits = rng.integers(0, 256, (d + 7) // 8, dtype=np.uint8)
        ex = rng.integers(0, 256, (d * ex_bits + 7) // 8, dtype=np.uint8)
        a = scan.ex_inner_product(bits, ex, rq, ex_bits, False)
        b = scan.ex_inner_product(bits, ex, rq, ex_bits, True)
        bound = 8 * np.finfo(np.float32).eps * np.abs(rq).sum() * 2 ** ex_bits
        assert abs(float(a) - float(b)) <= bound
        differ += a != b
    assert differ >= 5  # the two orders really differ (else this test could not tell them apart)


def test_save_load_roundtrip(tmp_path):
    x = _data(200, 21, 4)
    index = RaBitQIndex(21, "ip", 4, qb=8, centered=True, hr_seed=7).train(x)
    index.add(x)
    index.save(tmp_path / "r.npz")
    back = RaBitQIndex.load(tmp_path / "r.npz")
    assert repr(back) == repr(index)
    np.testing.assert_array_equal(back.codes, index.codes)
    for a, b in zip(back.search(x[:9], 6), index.search(x[:9], 6)):
        np.testing.assert_array_equal(a, b)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError):
        RaBitQIndex.load(tmp_path / "bad.npz")
    RaBitQIndex(21).save(tmp_path / "empty.npz")
    assert not RaBitQIndex.load(tmp_path / "empty.npz").is_trained


def test_bad_inputs_raise_value_error():
    x = _data(50, 8, 1)
    for kwargs in ({"nb_bits": 0}, {"nb_bits": 10}, {"qb": 9}, {"qb": -1}, {"metric": "cos"}):
        with pytest.raises(ValueError):
            RaBitQIndex(8, **kwargs)
    with pytest.raises(ValueError):
        RaBitQIndex(0)
    index = RaBitQIndex(8)
    for call in (lambda: index.add(x), lambda: index.search(x, 1), lambda: index.sa_encode(x)):
        with pytest.raises(ValueError, match="before train"):
            call()
    index.train(x)
    index.add(x)
    bad = x.copy()
    bad[3, 2] = np.nan
    for call in (lambda: index.train(x), lambda: index.add(x[:, :7]), lambda: index.search(x, 0),
                 lambda: index.search(bad, 1), lambda: index.search(x, 1, qb=9),
                 lambda: index.sa_decode(np.zeros((2, 3), np.uint8)),
                 lambda: RaBitQuantizer(8).encode(x, centroid=np.zeros(5))):
        with pytest.raises(ValueError):
            call()


@pytest.mark.parametrize("nb_bits", [1, 3, 9])
@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_zero_residual_coordinates_and_rows(nb_bits, metric):
    """Coordinates equal to the centroid's (1 / 0 = inf in faiss's scale search) encode and score
    as in faiss."""
    x = np.random.default_rng(2).integers(-2, 3, (120, 12)).astype(np.float32)
    x[:4] = 0.0
    x[:, 3] = 1.0  # a constant column: residual exactly 0 there for every row
    ref, ours = _pair(x, 12, metric, nb_bits, 4, False)
    np.testing.assert_array_equal(ours.codes, _faiss_codes(ref))
    _assert_same_search(ref, ours, x[:10], 5)
