import zipfile

import numpy as np
import pytest

from adanns_ref.core import cost
from adanns_ref.evaluation.metrics import top1_accuracy
from adanns_ref.indices.pqindex import PQIndex
from adanns_ref.evaluation.sweeps import adannsopq_sweep
from adanns_ref.testing import assert_knn_equal
from adanns_ref.core.truncate import prefix

faiss = pytest.importorskip("faiss")


def _blobs(n, d, seed, k=10):
    """Labelled Gaussian blobs (labels = blob ids) and matching queries."""
    rng = np.random.default_rng(seed)
    centres = 3 * rng.standard_normal((k, d))
    labels = rng.integers(0, k, n)
    return (centres[labels] + rng.standard_normal((n, d))).astype(np.float32), labels


@pytest.fixture(scope="module")
def data():
    xb, yb = _blobs(1200, 16, 0)
    xq, yq = _blobs(80, 16, 0)  # same centres (same seed), fresh points below
    xq = (xq + 0.5 * np.random.default_rng(1).standard_normal(xq.shape)).astype(np.float32)
    return xb, yb, xq, yq


def test_plain_index_is_faiss_indexpq(data):
    xb, _, xq, _ = data
    ref = faiss.IndexPQ(16, 4, 8)
    ref.train(xb)
    ref.add(xb)
    ours = PQIndex(16, 4, normalize=False, allow_small=True)
    ours.train(xb)
    ours.add(xb)
    np.testing.assert_array_equal(ours.pq.codebooks.ravel(), faiss.vector_to_array(ref.pq.centroids))
    np.testing.assert_array_equal(ours.codes, faiss.vector_to_array(ref.codes).reshape(-1, 4))
    D_ref, I_ref = ref.search(xq, 10)
    D, I = ours.search(xq, 10)
    np.testing.assert_array_equal(I, I_ref)
    np.testing.assert_array_equal(D, D_ref)
    assert ours.code_size == 4 and ours.ntotal == 1200


def test_prefix_index_is_faiss_indexpq_on_renormalised_prefixes(data):
    xb, _, xq, _ = data
    zb, zq = prefix(xb, 8), prefix(xq, 8)
    ref = faiss.IndexPQ(8, 2, 6)
    ref.train(zb)
    ref.add(zb)
    ours = PQIndex(16, 2, nbits=6, prefix_dim=8, allow_small=True)
    ours.train(xb)
    ours.add(xb)
    D_ref, I_ref = ref.search(zq, 5)
    D, I = ours.search(xq, 5)
    np.testing.assert_array_equal(I, I_ref)
    np.testing.assert_array_equal(D, D_ref)


def test_opq_index_is_faiss_pretransform_opq_indexpq(data):
    xb, _, xq, _ = data
    opq = faiss.OPQMatrix(16, 4)
    opq.niter = 3
    ref = faiss.IndexPreTransform(opq, faiss.IndexPQ(16, 4, 8))
    ref.train(xb)
    ref.add(xb)
    ours = PQIndex(16, 4, opq=True, normalize=False, allow_small=True, opq_niter=3)
    ours.train(xb)
    ours.add(xb)
    np.testing.assert_allclose(ours.opq.A, faiss.vector_to_array(opq.A).reshape(16, 16), atol=1e-3, rtol=0)
    D_ref, I_ref = ref.search(xq, 10)
    D, I = ours.search(xq, 10)
    # Same neighbours up to the rotation's float rounding (codes near a codeword boundary may flip).
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(I, I_ref)])
    assert overlap >= 0.97
    np.testing.assert_allclose(D[:, 0], D_ref[:, 0], rtol=1e-2)
    # With our trained parameters copied into faiss the two compositions agree exactly.
    opq2 = faiss.OPQMatrix(16, 4)
    faiss.copy_array_to_vector(ours.opq.A.ravel(), opq2.A)
    opq2.is_trained = True
    pq2 = faiss.IndexPQ(16, 4, 8)
    faiss.copy_array_to_vector(ours.pq.codebooks.ravel(), pq2.pq.centroids)
    pq2.is_trained = True
    ref2 = faiss.IndexPreTransform(opq2, pq2)
    ref2.add(xb)
    D2, I2 = ref2.search(xq, 10)
    assert_knn_equal(D2, I2, D, I, rtol=1e-5)


def test_search_cost_is_the_adc_model(data):
    xb, _, xq, _ = data
    idx = PQIndex(16, 4, nbits=4, prefix_dim=8)
    idx.train(xb)
    idx.add(xb)
    idx.search(xq, 1)
    adc = cost.adc_flops(4, 16, 2, 1200)
    assert idx.last_search_flops == adc["table_flops"]
    assert idx.last_search_lookups == adc["lookups"] == 1200 * 4


@pytest.mark.parametrize("opq", [False, True])
def test_save_load_round_trip(tmp_path, data, opq):
    xb, _, xq, _ = data
    idx = PQIndex(16, 4, nbits=4, opq=opq, prefix_dim=8, opq_niter=2, allow_small=True)
    idx.train(xb)
    idx.add(xb)
    path = tmp_path / "pq.npz"
    idx.save(path)
    back = PQIndex.load(path)
    assert back.ntotal == idx.ntotal and (back.opq is not None) == opq
    D, I = idx.search(xq, 7)
    D2, I2 = back.search(xq, 7)
    np.testing.assert_array_equal(D, D2)
    np.testing.assert_array_equal(I, I2)
    back.add(xb[:5])
    assert back.ntotal == idx.ntotal + 5


def _rewrite(src, dst, **changes):
    """Copy a saved .npz with some arrays replaced (a tampered file)."""
    with np.load(src, allow_pickle=False) as z:
        arrays = {name: z[name] for name in z.files}
    arrays.update(changes)
    np.savez(dst, **arrays)


def test_tampered_or_foreign_files_raise(tmp_path, data):
    xb = data[0]
    idx = PQIndex(16, 4, nbits=4, opq=True, opq_niter=1, allow_small=True)
    idx.train(xb)
    idx.add(xb[:50])
    good = tmp_path / "good.npz"
    idx.save(good)
    cases = {
        "codes of shape": {"codes": np.zeros((50, 3), np.uint8)},
        "not orthonormal": {"A": 2 * idx.opq.A},
        "codebooks must have shape": {"codebooks": idx.pq.codebooks[:2]},
        "invalid PQIndex parameters": {"__params__": np.array('{"d": 16, "M": 5}')},
        "NaN": {"codebooks": np.full_like(idx.pq.codebooks, np.nan)},
        "rotation A missing": {"A": np.empty((0, 16), np.float32)},
    }
    for message, change in cases.items():
        bad = tmp_path / "bad.npz"
        _rewrite(good, bad, **change)
        with pytest.raises(ValueError, match=message):
            PQIndex.load(bad)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match="not a readable"):
        PQIndex.load(truncated)
    with zipfile.ZipFile(tmp_path / "foreign.npz", "w") as z:
        z.writestr("x.npy", b"")
    with pytest.raises(ValueError):
        PQIndex.load(tmp_path / "foreign.npz")


def test_adannsopq_sweep_rows_and_best_choice(data):
    xb, yb, xq, yq = data
    rows = adannsopq_sweep(xb, xq, yb, yq, budgets=(2, 4), opq=False, allow_small=True)
    assert [(r["M"], r["d"]) for r in rows] == [(2, 2), (2, 4), (2, 8), (2, 16), (4, 4), (4, 8), (4, 16)]
    for M in (2, 4):
        group = [r for r in rows if r["M"] == M]
        best = [r for r in group if r["best"]]
        assert len(best) == 1 and best[0]["top1"] == max(r["top1"] for r in group)
        assert all(r["bytes"] == M for r in group)
    # each row is exactly a PQIndex at that (M, d)
    row = rows[2]
    idx = PQIndex(16, 2, prefix_dim=8, allow_small=True)
    idx.train(xb)
    idx.add(xb)
    _, I = idx.search(xq, 1)
    assert row["top1"] == top1_accuracy(I, yb, yq)
    assert row["flops"] == idx.last_search_flops and row["lookups"] == 1200 * 2


def test_rigid_baseline_uses_the_full_dimension_only(data):
    xb, yb, xq, yq = data
    rows = adannsopq_sweep(xb, xq, yb, yq, budgets=(4,), dims=[16], opq=True, opq_niter=1,
                           allow_small=True)
    assert len(rows) == 1 and rows[0]["d"] == 16 and rows[0]["best"] and rows[0]["opq"]
    assert 0.0 <= rows[0]["top1"] <= 1.0


def test_bad_inputs(data):
    xb, yb, xq, yq = data
    with pytest.raises(ValueError, match="prefix_dim must be <= 16"):
        PQIndex(16, 4, prefix_dim=32)
    with pytest.raises(ValueError, match="not divisible by M"):
        PQIndex(16, 3, prefix_dim=8)
    with pytest.raises(TypeError, match="opq must be True or False"):
        PQIndex(16, 4, opq=1)
    idx = PQIndex(16, 4, nbits=4)
    with pytest.raises(ValueError, match="before train"):
        idx.add(xb)
    with pytest.raises(ValueError, match="before train"):
        idx.search(xq, 1)
    idx.train(xb)
    with pytest.raises(ValueError, match="8 columns but 16 were expected"):
        idx.search(xq[:, :8], 1)
    with pytest.raises(ValueError, match="budget M=32 has no admissible prefix dim"):
        adannsopq_sweep(xb, xq, yb, yq, budgets=(32,), opq=False)
    with pytest.raises(ValueError, match="db_labels has 5 entries"):
        adannsopq_sweep(xb, xq, yb[:5], yq, budgets=(4,), opq=False)
    with pytest.raises(ValueError, match="dims entry must be <= 16"):
        adannsopq_sweep(xb, xq, yb, yq, budgets=(4,), dims=[8, 64], opq=False)


def test_train_after_add_is_refused_until_reset(data):
    """Re-training used to keep the codes of the old codebooks, so searches returned wrong ids.
    Now it is refused (as IVFIndex / IVFPQIndex do) and leaves the index untouched."""
    xb, _, xq, _ = data
    index = PQIndex(16, 4, nbits=4, opq=True, opq_niter=1, allow_small=True)
    index.train(xb[:600])
    index.add(xb)
    codes, codebooks, A = index.codes.copy(), index.pq.codebooks.copy(), index.opq.A.copy()
    D, I = index.search(xq, 5)
    with pytest.raises(ValueError, match=r"holds 1200 vectors encoded or assigned with the current parameters; call reset\(\)"):
        index.train(xb[600:])
    np.testing.assert_array_equal(index.codes, codes)
    np.testing.assert_array_equal(index.pq.codebooks, codebooks)
    np.testing.assert_array_equal(index.opq.A, A)
    np.testing.assert_array_equal(index.search(xq, 5)[1], I)
    index.reset()
    assert index.ntotal == 0 and index.is_trained
    index.train(xb[600:])
    index.add(xb)
    fresh = PQIndex(16, 4, nbits=4, opq=True, opq_niter=1, allow_small=True)
    fresh.train(xb[600:])
    fresh.add(xb)
    np.testing.assert_array_equal(index.codes, fresh.codes)
    np.testing.assert_array_equal(index.search(xq, 5)[1], fresh.search(xq, 5)[1])
