"""Small training sets behave like faiss: fewer than 39 points per centroid warn (faiss's text)
and train; fewer points than centroids raise ValueError (issue 12, section 3)."""
import warnings

import numpy as np
import pytest

from adanns_ref.indices.ivf import IVFIndex
from adanns_ref.indices.ivfpq import IVFPQIndex
from adanns_ref.quantizers.kmeans import KMeans, SmallTrainingSetWarning
from adanns_ref.quantizers.opq import OPQ
from adanns_ref.quantizers.pq import ProductQuantizer
from adanns_ref.indices.pqindex import PQIndex


def _data(n, d, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def _small_warnings(record):
    return [str(w.message) for w in record if issubclass(w.category, SmallTrainingSetWarning)]


def _train_recording(train):
    """Run train(); return (its result, the SmallTrainingSetWarning texts it raised)."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        out = train()
    return out, _small_warnings(record)


def test_kmeans_warning_is_faiss_stderr_text(capfd):
    faiss = pytest.importorskip("faiss")
    x = _data(100, 4)
    capfd.readouterr()
    faiss.Kmeans(4, 10, niter=2).train(x)
    faiss_lines = [line for line in capfd.readouterr().err.splitlines() if "clustering" in line]
    _, ours = _train_recording(lambda: KMeans(10, niter=2).fit(x))
    assert faiss_lines == ["WARNING clustering 100 points to 10 centroids: please provide at least "
                           "390 training points"]
    assert ours == faiss_lines


def test_ivf_warning_matches_faiss_index_ivf_train(capfd):
    faiss = pytest.importorskip("faiss")
    x = _data(200, 8, 1)
    capfd.readouterr()
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatL2(8), 8, 16)
    ivf.train(x)
    faiss_lines = [line for line in capfd.readouterr().err.splitlines() if "clustering" in line]
    _, ours = _train_recording(lambda: IVFIndex(8, 16, normalize=False).train(x))
    assert ours == faiss_lines == ["WARNING clustering 200 points to 16 centroids: please provide "
                                   "at least 624 training points"]


def test_kmeans_warns_only_below_the_threshold():
    k = 4
    for n, warns in ((k, True), (39 * k - 1, True), (39 * k, False), (300 * k, False)):
        km, texts = _train_recording(lambda: KMeans(k, niter=3, max_points_per_centroid=256).fit(_data(n, 3)))
        assert bool(texts) == warns, n
        assert km.centroids.shape == (k, 3)
    # faiss's subsampling note is printed only when verbose: no warning above max_points_per_centroid
    _, texts = _train_recording(lambda: KMeans(k, niter=3, max_points_per_centroid=5).fit(_data(400, 3)))
    assert texts == []


def test_warning_does_not_change_training():
    x = _data(120, 5, 2)
    warned, texts = _train_recording(lambda: KMeans(8, niter=6).fit(x))
    quiet, none = _train_recording(lambda: KMeans(8, niter=6, min_points_per_centroid=0).fit(x))
    assert texts and not none
    np.testing.assert_array_equal(warned.centroids, quiet.centroids)
    np.testing.assert_array_equal(warned.obj, quiet.obj)


def test_product_quantizer_warns_per_subspace_and_trains():
    x = _data(1000, 8)
    pq, texts = _train_recording(lambda: ProductQuantizer(8, 2, 8).train(x))
    assert texts == ["WARNING clustering 1000 points to 256 centroids: please provide at least "
                     "9984 training points"] * 2  # one per subspace k-means, as faiss
    quiet, none = _train_recording(lambda: ProductQuantizer(8, 2, 8, allow_small=True).train(x))
    assert none == []
    np.testing.assert_array_equal(pq.codebooks, quiet.codebooks)


def test_opq_pqindex_ivfpq_warn_and_train():
    x = _data(600, 8, 3)
    opq, texts = _train_recording(lambda: OPQ(8, 2, niter=1, niter_pq_0=3).train(x))
    assert texts and opq.A.shape == (8, 8)
    for opq_flag in (False, True):
        index, texts = _train_recording(lambda: PQIndex(8, 2, opq=opq_flag, opq_niter=1).train(x))
        assert texts and index.is_trained
        index.add(x[:20])
        assert index.search(x[:3], 1)[1].shape == (3, 1)
    ivfpq, texts = _train_recording(lambda: IVFPQIndex(8, 4, 2, opq=True, opq_niter=1).train(x) or True)
    assert texts
    # allow_small silences the PQ / OPQ warnings; the coarse k-means (600 >= 39 * 4) has none
    _, none = _train_recording(lambda: IVFPQIndex(8, 4, 2, opq=True, opq_niter=1, allow_small=True).train(x))
    assert none == []


def test_ivfpq_coarse_quantizer_still_warns_with_allow_small():
    x = _data(300, 8, 4)
    _, texts = _train_recording(lambda: IVFPQIndex(8, 16, 2, nbits=4, allow_small=True).train(x))
    assert texts == ["WARNING clustering 300 points to 16 centroids: please provide at least 624 "
                     "training points"]


@pytest.mark.parametrize("train, match", [
    (lambda: KMeans(10).fit(_data(9, 2)), "at least 10 training points"),
    (lambda: ProductQuantizer(8, 2, 8).train(_data(255, 8)), "at least ksub"),
    (lambda: OPQ(8, 2).train(_data(255, 8)), "at least 256 points"),
    (lambda: IVFIndex(8, 10).train(_data(9, 8)), "at least nlist=10"),
    (lambda: IVFPQIndex(8, 10, 2, nbits=2).train(_data(9, 8)), "at least nlist=10"),
    (lambda: PQIndex(8, 2, nbits=4).train(_data(15, 8)), "at least ksub"),
])
def test_fewer_points_than_centroids_still_raise(train, match):
    with pytest.raises(ValueError, match=match):
        train()
