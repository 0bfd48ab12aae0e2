"""Fast-scan faiss bridge both ways, and the uint16 overflow faiss 1.15.1 shows (pinned)."""
import numpy as np
import pytest

from adanns_ref.faiss_bridge.fastscan import fastscan_from_faiss, fastscan_to_faiss
from adanns_ref.fastscan import IVFPQFastScanIndex, PQFastScanIndex

faiss = pytest.importorskip("faiss")


def _data(n, d, seed):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_roundtrip_through_faiss_files(tmp_path, metric):
    x, q = _data(900, 16, 0), _data(12, 16, 1)
    for ours in (PQFastScanIndex(16, 8, metric=metric, allow_small=True),
                 IVFPQFastScanIndex(16, 6, 8, metric=metric, allow_small=True)):
        ours.train(x)
        ours.add(x[:333])
        kw = {"nprobe": 3} if isinstance(ours, IVFPQFastScanIndex) else {}
        fi = fastscan_to_faiss(ours)
        path = str(tmp_path / "f.index")
        faiss.write_index(fi, path)
        served = faiss.read_index(path)
        if kw:
            served.nprobe = 3
        for k in (1, 10):
            D, I = ours.search(q, k, **kw)
            D_ref, I_ref = served.search(q, k)
            np.testing.assert_array_equal(I, I_ref)
            np.testing.assert_array_equal(D, D_ref)
        back = fastscan_from_faiss(served)
        np.testing.assert_array_equal(back.codes, ours.codes)
        for r1, r2 in zip(back.search(q, 7, **kw), ours.search(q, 7, **kw)):
            np.testing.assert_array_equal(r1, r2)


def test_from_faiss_of_a_faiss_trained_index():
    x = _data(1200, 32, 3)
    fi = faiss.index_factory(32, "IVF8,PQ16x4fs")
    fi.train(x)
    fi.add(x)
    fi.nprobe = 4
    ours = fastscan_from_faiss(fi)
    q = _data(9, 32, 4)
    for r1, r2 in zip(ours.search(q, 5, nprobe=4), fi.search(q, 5)):
        np.testing.assert_array_equal(r1, r2)


def test_bridge_rejects_what_it_cannot_reproduce():
    with pytest.raises(TypeError):
        fastscan_to_faiss(object())
    with pytest.raises(ValueError, match="not trained"):
        fastscan_to_faiss(PQFastScanIndex(16, 4))
    x = _data(700, 16, 0)
    res = faiss.index_factory(16, "IVF4,PQ8x4fsr")
    res.train(x)
    res.use_precomputed_table = 2  # the MultiIndexQuantizer table: not reproduced
    with pytest.raises(ValueError, match="use_precomputed_table=2"):
        fastscan_from_faiss(res)
    with pytest.raises(TypeError):
        fastscan_from_faiss(faiss.IndexFlatL2(16))


def _wrap_setup():
    """The committed reproducer (experiments/results_fastscan_overflow.md): PQ258x4fs with
    identical columns; vector j has code j in every sub-space."""
    rng = np.random.default_rng(0)
    d, M = 1032, 258
    x = np.tile(rng.standard_normal((1000, 4)).astype(np.float32), M)
    index = faiss.index_factory(d, f"PQ{M}x4fs")
    index.train(x)
    cent = faiss.vector_to_array(index.pq.centroids).reshape(M, 16, 4)[0]
    db = np.tile(cent, M)
    index.reset()
    index.add(db)
    return index, db


def test_faiss_1_15_1_wraps_and_the_oracle_reproduces_it():
    """Pins faiss 1.15.1's behaviour: the flat fast-scan's uint16 sum wraps at M = 258, so the
    farthest vector (exact L2) is returned second, at distance ~4.6; the oracle's default
    (wrap=True) equals faiss bit for bit and flags the wrap; wrap=False ranks it last."""
    index, db = _wrap_setup()
    D_ref, I_ref = index.search(db[:1], 4)
    exact = np.argsort(((db - db[0]) ** 2).sum(1), kind="stable")
    farthest = int(exact[-1])
    assert I_ref[0, 1] == farthest and D_ref[0, 1] < 10  # faiss 1.15.1 wraps
    ours = fastscan_from_faiss(index)
    D, I = ours.search(db[:1], 4)
    np.testing.assert_array_equal(I, I_ref)
    np.testing.assert_array_equal(D, D_ref)
    rep = ours.last_overflow
    assert rep["wrapped"][0] and rep["max_sum"][0] == 255 * 258 and rep["n_wrapped"][0] == 1
    D2, I2 = ours.search(db[:1], 16, wrap=False)
    assert I2[0, -1] == farthest and not np.array_equal(I2[0, :4], I_ref[0])
    assert ours.last_overflow["wrapped"][0]  # the report does not depend on the ranking mode
