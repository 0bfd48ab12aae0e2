"""faiss bridge for SQIndex, BinaryFlatIndex and BinaryIVFIndex (adanns_ref.faiss_bridge)."""
import numpy as np
import pytest

from adanns_ref.indices.binary import BinaryFlatIndex, BinaryIVFIndex
from adanns_ref.quantizers.binary import binarize
from adanns_ref.faiss_bridge import faiss_search, from_faiss, to_faiss
from adanns_ref.indices.sqindex import SQIndex
from adanns_ref.testing import assert_knn_equal

faiss = pytest.importorskip("faiss")


def _data(n, d, seed):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def _same_search(a, b):
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("qtype, metric, prefix_dim, normalize", [
    ("8bit", "l2", None, False), ("4bit_uniform", "ip", None, False), ("fp16", "l2", 32, True),
    ("8bit", "ip", 16, False), ("bf16", "l2", None, True)])
def test_sq_round_trip_and_faiss_side_search(qtype, metric, prefix_dim, normalize, tmp_path):
    x, q = _data(600, 48, 0), _data(10, 48, 1)
    ours = SQIndex(48, qtype, metric, rangestat="quantiles", rangestat_arg=0.01, prefix_dim=prefix_dim,
                   normalize=normalize)
    ours.train(x)
    ours.add(x)
    f = to_faiss(ours)
    D_ref, I_ref = ours.search(q, 8)
    D, I = faiss_search(f, q, 8)
    assert_knn_equal(D_ref, I_ref, D, I, rtol=1e-5)  # the faiss chain normalises as x * (1/|x|)
    if not normalize:
        _same_search((D, I), (D_ref, I_ref))
    faiss.write_index(f, str(tmp_path / "sq.faiss"))
    back = from_faiss(faiss.read_index(str(tmp_path / "sq.faiss")))
    assert (back.dim, back.normalize, back.metric, back.sq.qtype) == (ours.dim, normalize, metric, qtype)
    assert (back.sq.rangestat, back.sq.rangestat_arg) == ("quantiles", np.float32(0.01))
    np.testing.assert_array_equal(back.sq.trained, ours.sq.trained)
    np.testing.assert_array_equal(back.codes, ours.codes)
    _same_search(back.search(q, 8), ours.search(q, 8))


def test_sq_read_from_a_faiss_trained_index():
    x, q = _data(500, 32, 2), _data(6, 32, 3)
    f = faiss.IndexScalarQuantizer(32, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    f.sq.rangestat = faiss.ScalarQuantizer.RS_meanstd
    f.sq.rangestat_arg = 3.0
    f.train(x)
    f.add(x)
    ours = from_faiss(f)
    direct = SQIndex(32, "8bit", "ip", "meanstd", 3.0)
    direct.train(x)
    direct.add(x)
    np.testing.assert_array_equal(ours.sq.trained, direct.sq.trained)
    np.testing.assert_array_equal(ours.codes, direct.codes)
    D_ref, I_ref = f.search(q, 7)
    assert_knn_equal(D_ref, I_ref, *ours.search(q, 7))


def test_binary_flat_round_trip():
    xb, xq = binarize(_data(400, 96, 4)), binarize(_data(5, 96, 5))
    ours = BinaryFlatIndex(96)
    ours.add(xb)
    f = to_faiss(ours)
    _same_search(faiss_search(f, xq, 9), ours.search(xq, 9))
    back = from_faiss(f)
    np.testing.assert_array_equal(back.codes, ours.codes)
    assert from_faiss(to_faiss(BinaryFlatIndex(8))).ntotal == 0


def test_binary_ivf_round_trip_keeps_lists_and_search(tmp_path):
    xb, xq = binarize(_data(2000, 64, 6)), binarize(_data(20, 64, 7))
    ours = BinaryIVFIndex(64, 12, niter=7, seed=5)
    ours.train(xb)
    ours.add(xb)
    f = to_faiss(ours)
    for nprobe in (1, 3):
        _same_search(faiss_search(f, xq, 10, nprobe=nprobe), ours.search(xq, 10, nprobe=nprobe))
    assert faiss.downcast_IndexBinary(f).nprobe == 1  # faiss_search does not modify the index
    assert (from_faiss(f).niter, from_faiss(f).seed) == (7, 5)  # in memory, via faiss's cp
    faiss.write_index_binary(f, str(tmp_path / "b.faiss"))
    back = from_faiss(faiss.read_index_binary(str(tmp_path / "b.faiss")))
    assert back.nlist == 12  # faiss's files do not store cp: niter / seed come back as its defaults
    np.testing.assert_array_equal(back.centroids, ours.centroids)
    for l in range(12):
        np.testing.assert_array_equal(back.list_ids(l), ours.list_ids(l))
    _same_search(back.search(xq, 10, 3), ours.search(xq, 10, 3))


def test_binary_ivf_read_from_faiss_keeps_faiss_list_order():
    xb, xq = binarize(_data(1500, 32, 8)), binarize(_data(30, 32, 9))
    quantizer = faiss.IndexBinaryFlat(32)
    f = faiss.IndexBinaryIVF(quantizer, 32, 6)
    f.train(xb)
    f.add(xb[700:])  # ids 0.. for the later rows: lists not in ascending-row order
    f.add(xb[:700])
    ours = from_faiss(f)
    f.nprobe = 2
    _same_search(ours.search(xq, 15, nprobe=2), f.search(xq, 15))


def test_bridge_rejects_what_has_no_counterpart():
    x = _data(300, 16, 10)
    f = faiss.IndexScalarQuantizer(16, faiss.ScalarQuantizer.QT_6bit)
    f.train(x)
    with pytest.raises(ValueError, match="qtype"):
        from_faiss(f)
    f = faiss.IndexScalarQuantizer(16, faiss.ScalarQuantizer.QT_8bit)
    f.sq.rangestat = faiss.ScalarQuantizer.RS_optim  # supported: comes back as "optim"
    with pytest.raises(ValueError, match="untrained"):  # untrained: its ranges are zeros
        from_faiss(f)
    f.train(x)
    assert from_faiss(f).sq.rangestat == "optim"
    with pytest.raises(ValueError, match="train it first"):
        to_faiss(SQIndex(16))
    with pytest.raises(ValueError, match="train it first"):
        to_faiss(BinaryIVFIndex(16, 2))
    xb = binarize(x)
    fivf = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(16), 16, 2)
    fivf.train(xb)
    fivf.add_with_ids(xb, np.arange(300, dtype=np.int64) + 1000)
    with pytest.raises(ValueError, match="add_with_ids"):
        from_faiss(fivf)
    with pytest.raises(TypeError, match="IndexBinaryFlat and IndexBinaryIVF"):
        from_faiss(faiss.IndexBinaryHash(16, 4))
    with pytest.raises(TypeError, match="uint8"):
        faiss_search(to_faiss(BinaryFlatIndex(16)), x[:2, :2], 1)
    with pytest.raises(TypeError, match="BinaryIVFIndex"):
        to_faiss(object())
