"""adanns_ref.rabitq.IVFRaBitQIndex against faiss 1.15.1's IndexIVFRaBitQ, bit for bit."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adanns_ref import IVFRaBitQIndex
from adanns_ref.core.simd import faiss_runs_avx512

faiss = pytest.importorskip("faiss")
EXACT = faiss_runs_avx512(faiss)
NLIST = 12


def _metric(m):
    return faiss.METRIC_L2 if m == "l2" else faiss.METRIC_INNER_PRODUCT


def _pair(x, d, metric, nb_bits, qb, centered, nlist=NLIST):
    ref = faiss.index_factory(d, f"IVF{nlist},RaBitQ" + ("" if nb_bits == 1 else str(nb_bits)),
                              _metric(metric))
    ref.train(x)
    ref.add(x)
    ours = IVFRaBitQIndex(d, nlist, metric, nb_bits, qb, centered).train(x)
    ours.add(x)
    return ref, ours


def _params(qb, centered, nprobe):
    p = faiss.IVFRaBitQSearchParameters()
    p.qb, p.centered, p.nprobe = qb, centered, nprobe
    return p


def _assert_lists_equal(ref, ours):
    c = faiss.downcast_index(ref.quantizer)
    np.testing.assert_array_equal(ours.centroids, faiss.vector_to_array(c.codes).view(np.float32).reshape(ours.nlist, -1))
    inv = ref.invlists
    for l in range(ours.nlist):
        n = inv.list_size(l)
        codes = faiss.rev_swig_ptr(inv.get_codes(l), n * ref.code_size).reshape(n, ref.code_size)
        np.testing.assert_array_equal(ours.list_codes(l), codes)
        np.testing.assert_array_equal(ours.list_ids(l), faiss.rev_swig_ptr(inv.get_ids(l), n))


def _assert_same_search(ref, ours, q, k, nprobe, qb, centered):
    Dr, Ir = ref.search(q, k, params=_params(qb, centered, nprobe))
    D, I = ours.search(q, k, nprobe=nprobe)
    if EXACT:
        np.testing.assert_array_equal(I, Ir)
        np.testing.assert_array_equal(D, Dr)
    else:
        np.testing.assert_allclose(D, Dr, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    return {d: ((rng.standard_normal((1500, d)) + 0.3).astype(np.float32),
                rng.standard_normal((25, d)).astype(np.float32)) for d in (33, 64)}


@pytest.mark.parametrize("d", [33, 64])
@pytest.mark.parametrize("nb_bits", [1, 2, 4, 8])
@pytest.mark.parametrize("qb,centered", [(0, False), (4, False), (4, True), (8, False), (8, True)])
@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_ivf_equals_faiss(data, d, nb_bits, qb, centered, metric):
    x, q = data[d]
    ref, ours = _pair(x, d, metric, nb_bits, qb, centered)
    _assert_lists_equal(ref, ours)
    for k, nprobe in ((1, 1), (10, 3), (120, NLIST)):  # k >= 100: faiss's IVF still uses a heap
        _assert_same_search(ref, ours, q, k, nprobe, qb, centered)


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_ivf_ties(metric):
    x = np.repeat(np.random.default_rng(3).standard_normal((200, 16)).astype(np.float32), 3, axis=0)
    ref, ours = _pair(x, 16, metric, 3, 4, False, nlist=8)
    _assert_same_search(ref, ours, x[:20], 8, 3, 4, False)
    D, _ = ours.search(x[:20], 8, nprobe=3)
    assert (D[:, 1:] == D[:, :-1]).sum() >= 20


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6), d=st.integers(1, 50), nlist=st.integers(1, 10),
       nb_bits=st.integers(1, 9), qb=st.integers(0, 8), centered=st.booleans(),
       metric=st.sampled_from(["l2", "ip"]), k=st.sampled_from([1, 5, 30]), nprobe=st.integers(1, 12))
def test_property_ivf_identical_to_faiss(seed, d, nlist, nb_bits, qb, centered, metric, k, nprobe):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((max(40 * nlist, 100), d)).astype(np.float32)
    ref, ours = _pair(x, d, metric, nb_bits, qb, centered, nlist=nlist)
    _assert_lists_equal(ref, ours)
    _assert_same_search(ref, ours, rng.standard_normal((5, d)).astype(np.float32), k, nprobe, qb, centered)


def test_ivf_save_load_and_bad_inputs(tmp_path):
    x = np.random.default_rng(0).standard_normal((300, 10)).astype(np.float32)
    index = IVFRaBitQIndex(10, 5, "ip", 2, qb=4, centered=True).train(x)
    index.add(x)
    index.save(tmp_path / "i.npz")
    back = IVFRaBitQIndex.load(tmp_path / "i.npz")
    assert repr(back) == repr(index)
    for a, b in zip(back.search(x[:7], 4, nprobe=2), index.search(x[:7], 4, nprobe=2)):
        np.testing.assert_array_equal(a, b)
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04junk")
    with pytest.raises(ValueError):
        IVFRaBitQIndex.load(tmp_path / "bad.npz")
    for kwargs in ({"nb_bits": 10}, {"qb": 9}, {"metric": "cos"}, {"nlist": 0}):
        with pytest.raises(ValueError):
            IVFRaBitQIndex(10, **{"nlist": 5, **kwargs})
    fresh = IVFRaBitQIndex(10, 5)
    with pytest.raises(ValueError, match="before train"):
        fresh.add(x)
    with pytest.raises(ValueError):
        fresh.train(x[:3])  # fewer rows than nlist
    for call in (lambda: index.train(x), lambda: index.search(x, 1, nprobe=0),
                 lambda: index.search(x[:, :9], 1), lambda: index.search(x, 1, qb=-1),
                 lambda: index.list_codes(5)):
        with pytest.raises(ValueError):
            call()
    with pytest.raises(TypeError):  # a flag must be a bool (the house rule of core.validate)
        index.search(x, 1, centered="yes")
