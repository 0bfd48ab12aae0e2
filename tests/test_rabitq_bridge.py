"""The RaBitQ bridge: our indices as faiss objects (written and read by faiss) and back, searching
bit-identically."""
import numpy as np
import pytest

from adanns_ref import IVFRaBitQIndex, RaBitQIndex
from adanns_ref.faiss_bridge.rabitq import rabitq_from_faiss, rabitq_to_faiss

faiss = pytest.importorskip("faiss")


def _same(a, b):
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def _data(d, n=800, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, d)) + 0.2).astype(np.float32), rng.standard_normal((15, d)).astype(np.float32)


@pytest.mark.parametrize("nb_bits,qb,centered,hr_seed", [(1, 0, False, None), (2, 4, True, None),
                                                         (4, 8, False, 12345), (9, 4, True, 7)])
@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_flat_round_trip_through_faiss_files(tmp_path, nb_bits, qb, centered, hr_seed, metric):
    x, q = _data(37)
    ours = RaBitQIndex(37, metric, nb_bits, qb, centered, hr_seed=hr_seed).train(x)
    ours.add(x)
    exported = rabitq_to_faiss(ours)
    faiss.write_index(exported, str(tmp_path / "r.faiss"))
    _same(exported.search(q, 10), ours.search(q, 10))
    served = faiss.read_index(str(tmp_path / "r.faiss"))
    inner = faiss.downcast_index(served.index if hr_seed is not None else served)
    assert inner.qb == qb and not inner.centered  # faiss's files keep qb, not centered (measured)
    inner.centered = centered
    _same(served.search(q, 10), ours.search(q, 10))
    back = rabitq_from_faiss(served)
    assert repr(back) == repr(ours)
    np.testing.assert_array_equal(back.codes, ours.codes)
    _same(back.search(q, 10), ours.search(q, 10))


@pytest.mark.parametrize("nb_bits,qb,centered", [(1, 0, False), (3, 4, True), (8, 8, False)])
@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_ivf_round_trip_through_faiss_files(tmp_path, nb_bits, qb, centered, metric):
    x, q = _data(24)
    ours = IVFRaBitQIndex(24, 10, metric, nb_bits, qb, centered).train(x)
    ours.add(x)
    exported = rabitq_to_faiss(ours)
    faiss.write_index(exported, str(tmp_path / "i.faiss"))
    served = faiss.read_index(str(tmp_path / "i.faiss"))
    params = faiss.IVFRaBitQSearchParameters()
    params.qb, params.centered, params.nprobe = qb, centered, 4
    _same(served.search(q, 10, params=params), ours.search(q, 10, nprobe=4))
    back = rabitq_from_faiss(served)
    back.centered = centered  # faiss's IVF keeps no `centered` (see the bridge docstring)
    assert repr(back) == repr(ours)
    _same(back.search(q, 10, nprobe=4), ours.search(q, 10, nprobe=4))


def test_bridge_refuses_what_it_cannot_map():
    with pytest.raises(TypeError):
        rabitq_to_faiss(object())
    with pytest.raises(ValueError, match="not trained"):
        rabitq_to_faiss(RaBitQIndex(8))
    with pytest.raises(TypeError):
        rabitq_from_faiss(faiss.IndexFlatL2(8))
    with pytest.raises(ValueError):
        rabitq_from_faiss(faiss.index_factory(16, "PCA8,RaBitQ"))
