"""adanns_ref.rabitq.hadamard against faiss 1.15.1's HadamardRotation, and "HR,RaBitQ" end to end."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adanns_ref import RaBitQIndex
from adanns_ref.rabitq import HadamardRotation
from adanns_ref.rabitq.hadamard import splitmix64

faiss = pytest.importorskip("faiss")


def _metric(m):
    return faiss.METRIC_L2 if m == "l2" else faiss.METRIC_INNER_PRODUCT


def test_splitmix64_known_values():
    # the reference SplitMix64 (Vigna) from state 0: first outputs
    assert splitmix64(0, 2) == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4]


@settings(max_examples=40, deadline=None)
@given(d=st.integers(1, 300), seed=st.integers(1, 2**32 - 1), n=st.integers(1, 20),
       data_seed=st.integers(0, 10**6))
def test_rotation_bit_identical_to_faiss(d, seed, n, data_seed):
    x = np.random.default_rng(data_seed).standard_normal((n, d)).astype(np.float32)
    ours = HadamardRotation(d, seed)
    ref = faiss.HadamardRotation(d, seed)
    assert ours.d_out == ref.d_out
    np.testing.assert_array_equal(ours.signs[0], faiss.vector_to_array(ref.signs1))
    np.testing.assert_array_equal(ours.apply(x), ref.apply(x))


def test_rotation_is_orthonormal_and_prefix_aware():
    x = np.random.default_rng(1).standard_normal((30, 48)).astype(np.float32)
    hr = HadamardRotation(40)  # a Matryoshka prefix of 40 of the 48 dims
    y = hr.apply(x)
    np.testing.assert_array_equal(y, hr.apply(np.ascontiguousarray(x[:, :40])))
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), np.linalg.norm(x[:, :40], axis=1), rtol=1e-5)
    seed0 = faiss.HadamardRotation(40, 0)
    seed0.train(x[:, :40])  # faiss's train turns seed 0 into 12345, as our constructor does
    np.testing.assert_array_equal(HadamardRotation(40, 0).apply(x), seed0.apply(np.ascontiguousarray(x[:, :40])))
    with pytest.raises(ValueError):
        hr.apply(x[:, :39])
    for bad in ({"d": 0}, {"d": 8, "seed": -1}, {"d": 8, "seed": 2**32}):
        with pytest.raises(ValueError):
            HadamardRotation(**bad)


@pytest.mark.parametrize("d", [33, 64])
@pytest.mark.parametrize("nb_bits,qb,centered", [(1, 0, False), (1, 4, True), (2, 8, False), (4, 4, False),
                                                 (8, 8, True)])
@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_hr_rabitq_equals_faiss_index_factory(d, nb_bits, qb, centered, metric):
    rng = np.random.default_rng(d + nb_bits)
    x = (rng.standard_normal((500, d)) + 0.5).astype(np.float32)
    q = rng.standard_normal((20, d)).astype(np.float32)
    ref = faiss.index_factory(d, "HR,RaBitQ" if nb_bits == 1 else f"HR,RaBitQ{nb_bits}", _metric(metric))
    sub = faiss.downcast_index(ref.index)
    sub.qb, sub.centered = qb, centered
    ref.train(x)
    ref.add(x)
    ours = RaBitQIndex(d, metric, nb_bits, qb, centered, hr_seed=12345).train(x)
    ours.add(x)
    codes = faiss.vector_to_array(sub.codes).reshape(sub.ntotal, sub.code_size)
    np.testing.assert_array_equal(ours.codes, codes)
    for k in (1, 10):
        Dr, Ir = ref.search(q, k)
        D, I = ours.search(q, k)
        np.testing.assert_array_equal(I, Ir)
        np.testing.assert_array_equal(D, Dr)
