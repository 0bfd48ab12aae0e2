import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adanns_ref.core import cost
from adanns_ref.indices import ivfpq as ivfpq_module
from adanns_ref.core.simd import faiss_runs_avx512
from adanns_ref.indices.invlists import list_means
from adanns_ref.indices.ivfpq import IVFPQIndex
from adanns_ref.quantizers.kmeans import SmallTrainingSetWarning
from adanns_ref.testing import assert_knn_equal
from adanns_ref.core.truncate import prefix

faiss = pytest.importorskip("faiss")
from faiss.contrib.inspect_tools import get_invlist  # noqa: E402

FLT_MAX = np.float32(3.4028235e38)
DIM, NLIST, M = 32, 16, 8


def _data(n, d, seed, scale=None):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x if scale is None else (x * np.asarray(scale, np.float32)).astype(np.float32)


@pytest.fixture(scope="module")
def base():
    return _data(3000, DIM, 0), _data(120, DIM, 1)


def _assert_same_lists(ref_invlists, ours):
    for l in range(ours.nlist):
        ids, codes = get_invlist(ref_invlists, l)
        np.testing.assert_array_equal(ours.list_ids(l), ids, err_msg=f"ids of list {l}")
        np.testing.assert_array_equal(ours.list_codes(l), codes.reshape(-1, ours.code_size),
                                      err_msg=f"codes of list {l}")


def _faiss_ivfpq(ours, metric="l2"):
    """faiss IndexIVFPQ holding our centroids and codebooks (already trained); wrapped in
    IndexPreTransform(OPQMatrix) when ours has a rotation. Returns (index, ivf part)."""
    flat = faiss.IndexFlatL2 if metric == "l2" else faiss.IndexFlatIP
    quantizer = flat(ours.d_s)
    quantizer.add(ours.scoring_centroids)
    ivf = faiss.IndexIVFPQ(quantizer, ours.d_s, ours.nlist, ours.M, ours.nbits,
                           faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT)
    ivf.own_fields = True
    quantizer.this.disown()
    ivf.by_residual = ours.by_residual
    faiss.copy_array_to_vector(ours.pq.codebooks.ravel(), ivf.pq.centroids)
    ivf.is_trained = True
    ivf.precompute_table()
    if ours.opq is None:
        return ivf, ivf
    opq = faiss.OPQMatrix(ours.d_s, ours.M)
    faiss.copy_array_to_vector(ours.opq.A.ravel(), opq.A)
    opq.is_trained = True
    index = faiss.IndexPreTransform(opq, ivf)
    index.own_fields = True
    opq.this.disown()
    ivf.this.disown()
    return index, ivf


def _compare_search(ref, ivf, ours, xq, k, nprobes):
    for nprobe in nprobes:
        ivf.nprobe = nprobe
        D_ref, I_ref = ref.search(xq, k)
        D, I = ours.search(xq, k, nprobe=nprobe)
        np.testing.assert_array_equal(I, I_ref, err_msg=f"nprobe={nprobe}")
        np.testing.assert_allclose(D, D_ref, rtol=1e-5, atol=1e-5, err_msg=f"nprobe={nprobe}")


# ----------------------------------------------------------------------------- faiss equivalence

@pytest.mark.parametrize("nbits, n", [(4, 5000), (8, 3000)])
def test_full_training_is_faiss_indexivfpq(nbits, n):
    """n=5000 > 256 * 16 exercises faiss's PQ training subsample at nbits 4."""
    xb, xq = _data(n, DIM, 2), _data(100, DIM, 3)
    quantizer = faiss.IndexFlatL2(DIM)
    ref = faiss.IndexIVFPQ(quantizer, DIM, NLIST, M, nbits)
    ref.train(xb)
    ref.add(xb)
    ours = IVFPQIndex(DIM, NLIST, M, nbits, normalize=False, allow_small=True)
    ours.train(xb)
    ours.add(xb)
    np.testing.assert_array_equal(ours.centroids, quantizer.reconstruct_n(0, NLIST))
    np.testing.assert_array_equal(ours.pq.codebooks.ravel(), faiss.vector_to_array(ref.pq.centroids))
    _assert_same_lists(ref.invlists, ours)
    _compare_search(ref, ref, ours, xq, 10, [1, 4, NLIST])


@pytest.mark.parametrize("nbits", [4, 8])
def test_our_parameters_loaded_into_faiss_give_same_codes_and_results(base, nbits):
    xb, xq = base
    ours = IVFPQIndex(DIM, NLIST, M, nbits, normalize=False, allow_small=True, seed=7)
    ours.train(xb[:2000])
    ours.add(xb)
    ref, ivf = _faiss_ivfpq(ours)
    ref.add(xb)
    _assert_same_lists(ivf.invlists, ours)
    _compare_search(ref, ivf, ours, xq, 10, [1, 4, NLIST])


@pytest.mark.parametrize("metric, by_residual", [("ip", True), ("ip", False), ("l2", False)])
def test_ip_and_non_residual_variants_match_faiss(base, metric, by_residual):
    xb, xq = base
    ours = IVFPQIndex(DIM, NLIST, M, 4, metric=metric, by_residual=by_residual, normalize=False)
    ours.train(xb)
    ours.add(xb)
    ref, ivf = _faiss_ivfpq(ours, metric)
    ref.add(xb)
    _assert_same_lists(ivf.invlists, ours)
    _compare_search(ref, ivf, ours, xq, 10, [1, 5])


@pytest.mark.skipif(not faiss_runs_avx512(faiss),
                    reason="bit-identity holds where faiss dispatches to AVX-512")
@pytest.mark.parametrize("d, m, nbits, metric, by_residual", [
    (32, 8, 8, "l2", True),  # dsub 4
    (32, 4, 8, "l2", True),  # dsub 8
    (40, 4, 4, "l2", True),  # dsub 10
    (64, 4, 8, "l2", True),  # dsub 16 (order 1 tables)
    (32, 2, 8, "l2", True),  # M < 16 with dsub 16
    (64, 16, 8, "l2", True),  # M = 16: the 16-lane ADC sum
    (32, 8, 8, "l2", False),
    (32, 8, 4, "ip", True),
    (32, 8, 8, "ip", False),
])
def test_search_is_faiss_bit_for_bit(d, m, nbits, metric, by_residual):
    """Precomputed tables (faiss's default) and residual tables (use_precomputed_table = -1),
    ip and non-residual scans: same distances to the last bit where the coarse distances are
    faiss's (direct path: nq * d < 128000)."""
    xb, xq = _data(3000, d, 11), _data(60, d, 12)
    ours = IVFPQIndex(d, NLIST, m, nbits, metric=metric, by_residual=by_residual, normalize=False,
                      allow_small=True)
    ours.train(xb)
    ours.add(xb)
    ref, ivf = _faiss_ivfpq(ours, metric)
    ref.add(xb)
    residual = IVFPQIndex(d, NLIST, m, nbits, metric=metric, by_residual=by_residual,
                          normalize=False, precomputed=False)
    residual.set_quantizers(ours.centroids, ours.scoring_centroids, ours.pq.codebooks)
    residual.add(xb)
    for nprobe in (1, 5):
        ivf.nprobe = nprobe
        for index, use_table in ((ours, 1), (residual, -1)):
            ivf.use_precomputed_table = use_table if metric == "l2" and by_residual else 0
            D_ref, I_ref = ref.search(xq, 10)
            D, I = index.search(xq, 10, nprobe=nprobe)
            np.testing.assert_array_equal(I, I_ref, err_msg=f"nprobe={nprobe} table={use_table}")
            np.testing.assert_array_equal(D, D_ref, err_msg=f"nprobe={nprobe} table={use_table}")


def test_precomputed_table_above_the_size_limit_falls_back_to_residual_tables(base, monkeypatch):
    xb, xq = base
    index = IVFPQIndex(DIM, NLIST, M, 4, normalize=False, allow_small=True)
    index.train(xb)
    index.add(xb)
    D_pre, I_pre = index.search(xq, 10, nprobe=4)
    monkeypatch.setattr(ivfpq_module, "PRECOMPUTED_TABLE_MAX_BYTES", 0)
    D, I = index.search(xq, 10, nprobe=4)
    index.precomputed = False
    D_res, I_res = index.search(xq, 10, nprobe=4)
    np.testing.assert_array_equal(D, D_res)
    np.testing.assert_array_equal(I, I_res)
    assert not np.array_equal(D_pre, D_res)  # the two forms really differ in rounding ...
    np.testing.assert_allclose(D_pre, D_res, rtol=1e-5, atol=1e-5)  # ... and only there
    np.testing.assert_array_equal(I_pre, I_res)


def test_opq_is_faiss_pretransform_opq_ivfpq():
    d, nlist, m = 16, 8, 4
    xb = _data(2000, d, 4, scale=np.linspace(3, 0.2, d))
    xq = _data(100, d, 5, scale=np.linspace(3, 0.2, d))
    ours = IVFPQIndex(d, nlist, m, 4, opq=True, normalize=False, allow_small=True, opq_niter=5)
    ours.train(xb)
    ours.add(xb)
    np.testing.assert_allclose(ours.scoring_centroids, ours.centroids @ ours.opq.A.T, rtol=0, atol=1e-6)
    ref, ivf = _faiss_ivfpq(ours)
    ref.add(xb)
    _assert_same_lists(ivf.invlists, ours)
    _compare_search(ref, ivf, ours, xq, 10, [1, 3, nlist])
    # faiss trained end to end: it clusters R x instead of x, so it agrees to rounding only
    opq = faiss.OPQMatrix(d, m)
    opq.niter = 5
    ivf_full = faiss.IndexIVFPQ(faiss.IndexFlatL2(d), d, nlist, m, 4)
    full = faiss.IndexPreTransform(opq, ivf_full)
    full.train(xb)
    full.add(xb)
    np.testing.assert_allclose(faiss.vector_to_array(opq.A).reshape(d, d), ours.opq.A, atol=1e-5)
    np.testing.assert_allclose(ivf_full.quantizer.reconstruct_n(0, nlist), ours.scoring_centroids, atol=1e-5)
    np.testing.assert_allclose(faiss.vector_to_array(ivf_full.pq.centroids), ours.pq.codebooks.ravel(), atol=1e-5)
    ivf_full.nprobe = 3
    assert_knn_equal(*full.search(xq, 10), *ours.search(xq, 10, nprobe=3), rtol=1e-5, atol=1e-5)


def test_k_beyond_probed_lists_pads_like_faiss(base):
    xb, xq = base
    ours = IVFPQIndex(DIM, NLIST, M, 4, normalize=False)
    ours.train(xb)
    ours.add(xb[:300])
    ref, ivf = _faiss_ivfpq(ours)
    ref.add(xb[:300])
    k = 200
    _compare_search(ref, ivf, ours, xq[:20], k, [1, 2])
    _, I = ours.search(xq[:20], k, nprobe=1)
    assert (I == -1).any()
    D, I = ours.search(xq[:3], 301, nprobe=NLIST)
    assert (I[:, 300] == -1).all() and (D[:, 300] == FLT_MAX).all()


# ----------------------------------------------------------------------------- AdANNS: d_c != d_s

def _reference(index, xt, xb, xq, k, nprobe):
    """NumPy re-derivation of AdANNS-IVFOPQ from the trained centroids, codebooks and rotation:
    lists, d_s-centroids, codes and the top-k by ||y(q) - s_l - decode(code)||^2 (float64)."""
    norm, d_c, d_s = index.normalize, index.d_c, index.d_s
    A = np.eye(d_s) if index.opq is None else index.opq.A.astype(np.float64)
    c = index.centroids.astype(np.float64)

    def route(x, n):
        dist = ((prefix(x, d_c, norm).astype(np.float64)[:, None, :] - c[None]) ** 2).sum(-1)
        return np.argsort(dist, axis=1, kind="stable")[:, :n]

    if d_s == d_c:
        means = index.centroids.astype(np.float64)
    else:
        lists_t, z_t = route(xt, 1)[:, 0], prefix(xt, d_s, norm).astype(np.float64)
        means = np.stack([z_t[lists_t == l].mean(axis=0) for l in range(index.nlist)])
    s = means @ A.T
    np.testing.assert_allclose(index.scoring_centroids, s, rtol=1e-5, atol=1e-6)
    cb = index.pq.codebooks.astype(np.float64)
    dsub = cb.shape[2]
    lists = route(xb, 1)[:, 0]
    res = prefix(xb, d_s, norm).astype(np.float64) @ A.T - s[lists]
    sub = np.stack([((res[:, None, m * dsub:(m + 1) * dsub] - cb[m][None]) ** 2).sum(-1).argmin(1)
                    for m in range(index.M)], axis=1)
    recon = s[lists] + np.concatenate([cb[m][sub[:, m]] for m in range(index.M)], axis=1)
    yq, probes = prefix(xq, d_s, norm).astype(np.float64) @ A.T, route(xq, nprobe)
    D = np.full((len(xq), k), FLT_MAX, np.float32)
    I = np.full((len(xq), k), -1, np.int64)
    for r in range(len(xq)):
        cand = np.flatnonzero(np.isin(lists, probes[r]))
        dist = ((yq[r] - recon[cand]) ** 2).sum(1)
        top = np.lexsort((cand, dist))[:k]
        D[r, :len(top)], I[r, :len(top)] = dist[top], cand[top]
    return sub, lists, D, I


@pytest.mark.parametrize("d_c, d_s, opq", [(8, 32, False), (32, 8, False), (16, 16, False), (8, 16, True)])
def test_adanns_ivfopq_matches_numpy_reference(base, d_c, d_s, opq):
    xb, xq = base
    index = IVFPQIndex(DIM, NLIST, 4, 4, d_c=d_c, d_s=d_s, opq=opq, opq_niter=3, allow_small=True)
    index.train(xb)
    index.add(xb)
    sub, lists, D_ref, I_ref = _reference(index, xb, xb, xq, 10, 3)
    for l in range(NLIST):
        members = np.flatnonzero(lists == l)
        np.testing.assert_array_equal(index.list_ids(l), members)
        np.testing.assert_array_equal(index.pq.unpack(index.list_codes(l)), sub[members])
    assert_knn_equal(D_ref, I_ref, *index.search(xq, 10, nprobe=3), rtol=1e-5, atol=1e-5)


def test_list_without_training_points_gets_the_global_mean():
    z = np.array([[1, 2], [3, 4], [5, 0]], np.float32)
    means = list_means(z, np.array([0, 0, 2]), 3)
    np.testing.assert_array_equal(means, [[2, 3], [3, 2], [5, 0]])


@pytest.fixture(scope="module")
def small_index(base):
    xb, _ = base
    index = IVFPQIndex(DIM, 8, 4, 4, d_c=8, d_s=16)
    index.train(xb[:1000])
    index.add(xb[:1000])
    return index, xb[:1000]


@settings(deadline=None, max_examples=25)
@given(seed=st.integers(0, 2**16), k=st.integers(1, 40), nprobe=st.integers(1, 10))
def test_results_sorted_unique_and_full_probe_is_exhaustive_adc(small_index, seed, k, nprobe):
    index, xb = small_index
    xq = _data(5, DIM, seed)
    D, I = index.search(xq, k, nprobe=nprobe)
    for r in range(len(xq)):
        valid = I[r] >= 0
        assert not (~valid[:-1] & valid[1:]).any()  # -1 only at the tail
        assert len(set(I[r, valid].tolist())) == valid.sum()
        assert (np.diff(D[r, valid]) >= 0).all()
    if nprobe >= index.nlist:
        D_ref, I_ref = _reference(index, xb, xb, xq, k, index.nlist)[2:]
        assert_knn_equal(D_ref, I_ref, D, I, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- state, cost, files

def test_same_seed_same_bits_and_flops_follow_the_cost_model(base):
    xb, xq = base
    a, b = (IVFPQIndex(DIM, NLIST, M, 4, d_c=16) for _ in range(2))
    for index in (a, b):
        index.train(xb)
        index.add(xb)
    np.testing.assert_array_equal(a.list_codes(3), b.list_codes(3))
    np.testing.assert_array_equal(a.pq.codebooks, b.pq.codebooks)
    a.search(xq, 5, nprobe=3)
    assert a.code_size == 4 and a.list_sizes().sum() == a.ntotal == len(xb)
    probes = np.argsort(((prefix(xq, 16)[:, None] - a.centroids[None]) ** 2).sum(-1), axis=1)[:, :3]
    scanned = int(a.list_sizes()[probes].sum())
    expected = cost.ivfpq_flops(16, NLIST, M, 16, 4, 3, scanned)
    assert a.last_search_flops == expected["flops"] == 16 * NLIST + 3 * M * 16 * 4 * 3
    assert a.last_search_lookups == pytest.approx(scanned * M / len(xq))


@pytest.mark.parametrize("opq", [False, True])
def test_save_load_round_trip_is_identical(tmp_path, base, opq):
    xb, xq = base
    index = IVFPQIndex(DIM, NLIST, M, 4, d_s=16, opq=opq, opq_niter=2, allow_small=True,
                       precomputed=not opq)
    index.train(xb)
    index.add(xb)
    index.save(tmp_path / "i.npz")
    loaded = IVFPQIndex.load(tmp_path / "i.npz")
    for a, b in zip(index.search(xq, 7, nprobe=4), loaded.search(xq, 7, nprobe=4)):
        np.testing.assert_array_equal(a, b)
    assert repr(loaded) == repr(index) and loaded.precomputed == index.precomputed
    empty = IVFPQIndex(DIM, NLIST, M, 4)
    empty.save(tmp_path / "e.npz")
    assert not IVFPQIndex.load(tmp_path / "e.npz").is_trained


def _tamper(src, dst, **changes):
    with np.load(src) as z:
        arrays = {name: z[name] for name in z.files}
    arrays.update(changes)
    np.savez(dst, **arrays)


def test_tampered_files_raise(tmp_path, base):
    xb, _ = base
    index = IVFPQIndex(DIM, NLIST, M, 4, opq=True, opq_niter=1, allow_small=True)
    index.train(xb[:1000])
    index.add(xb[:1000])
    path = tmp_path / "i.npz"
    index.save(path)
    with np.load(path) as z:
        offsets, A = z["offsets"].copy(), z["A"].copy()
    offsets[-1] -= 1
    bad = {"offsets": offsets, "A": 2 * A, "codes": np.zeros((1000, 5), np.uint8),
           "centroids": np.zeros((3, DIM), np.float32)}
    messages = {"offsets": "inconsistent inverted lists", "A": "not an orthonormal",
                "codes": "inconsistent inverted lists", "centroids": "nlist=16"}
    for name, value in bad.items():
        _tamper(path, tmp_path / f"{name}.npz", **{name: value})
        with pytest.raises(ValueError, match=messages[name]):
            IVFPQIndex.load(tmp_path / f"{name}.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable"):
        IVFPQIndex.load(tmp_path / "junk.npz")
    with zipfile.ZipFile(tmp_path / "kind.npz", "w") as zf:
        zf.writestr("x.npy", b"")
    with pytest.raises(ValueError):
        IVFPQIndex.load(tmp_path / "kind.npz")


def test_set_quantizers_and_set_lists_rebuild_an_identical_index(base):
    xb, xq = base
    index = IVFPQIndex(DIM, NLIST, M, 4, d_c=8, opq=True, opq_niter=1, allow_small=True)
    index.train(xb[:1000])
    index.add(xb[:1000])
    copy = IVFPQIndex(DIM, NLIST, M, 4, d_c=8, opq=True)
    copy.set_quantizers(index.centroids, index.scoring_centroids, index.pq.codebooks, index.opq.A)
    codes = np.concatenate([index.list_codes(l) for l in range(NLIST)])
    ids = np.concatenate([index.list_ids(l) for l in range(NLIST)])
    offsets = np.concatenate([[0], np.cumsum(index.list_sizes())])
    copy.set_lists(codes, ids, offsets)
    for a, b in zip(index.search(xq, 5, nprobe=3), copy.search(xq, 5, nprobe=3)):
        np.testing.assert_array_equal(a, b)
    copy.add(xb[1000:1010])  # ids continue after the installed ones
    np.testing.assert_array_equal(np.sort(np.concatenate([copy.list_ids(l) for l in range(NLIST)])),
                                  np.arange(1010))
    with pytest.raises(ValueError, match="call reset"):
        copy.set_quantizers(index.centroids, index.scoring_centroids, index.pq.codebooks, index.opq.A)
    fresh = IVFPQIndex(DIM, NLIST, M, 4, d_c=8, opq=True)
    cb = index.pq.codebooks
    with pytest.raises(ValueError, match="A must be given iff opq=True"):
        fresh.set_quantizers(index.centroids, index.scoring_centroids, cb)
    with pytest.raises(ValueError, match="columns but 8"):
        fresh.set_quantizers(index.scoring_centroids, index.scoring_centroids, cb, index.opq.A)
    with pytest.raises(ValueError, match="codebooks must have shape"):
        fresh.set_quantizers(index.centroids, index.scoring_centroids, cb[:, :8], index.opq.A)
    with pytest.raises(ValueError, match="before training"):
        fresh.set_lists(codes, ids, offsets)
    fresh.set_quantizers(index.centroids, index.scoring_centroids, cb, index.opq.A)
    with pytest.raises(ValueError, match="ids 0..N-1"):
        fresh.set_lists(codes, ids + 1, offsets)
    with pytest.raises(TypeError, match="codes must be uint8"):
        fresh.set_lists(codes.astype(np.int64), ids, offsets)


# ----------------------------------------------------------------------------- bad inputs

@pytest.mark.parametrize("kwargs, error, match", [
    ({"M": 5}, ValueError, "not divisible by M=5"),
    ({"d_s": 12, "M": 8}, ValueError, "d=12 is not divisible"),
    ({"nbits": 0}, ValueError, "nbits must be >= 1"),
    ({"nbits": 17}, ValueError, "nbits must be <= 16"),
    ({"d_c": 33}, ValueError, "d_c must be <= 32"),
    ({"metric": "cos"}, ValueError, "metric must be"),
    ({"opq": 1}, TypeError, "opq must be True or False"),
    ({"precomputed": "yes"}, TypeError, "precomputed must be True or False"),
    ({"nlist": 0}, ValueError, "nlist must be >= 1"),
])
def test_bad_constructor_arguments(kwargs, error, match):
    params = {"d": DIM, "nlist": NLIST, "M": M, **kwargs}
    with pytest.raises(error, match=match):
        IVFPQIndex(**params)


def test_bad_calls(base):
    xb, xq = base
    index = IVFPQIndex(DIM, NLIST, M, 4)
    with pytest.raises(ValueError, match="before training"):
        index.add(xb)
    with pytest.raises(ValueError, match="before training"):
        index.search(xq, 1)
    with pytest.raises(ValueError, match="at least nlist=16"):
        index.train(xb[:10])
    with pytest.warns(SmallTrainingSetWarning, match="1000 points to 256 centroids: please provide at least 9984"):
        IVFPQIndex(DIM, NLIST, M, 8).train(xb[:1000])  # trains, as faiss, which warns too
    with pytest.raises(ValueError, match="columns but 32"):
        index.train(xb[:, :16])
    index.train(xb[:1000])
    with pytest.raises(ValueError, match="columns but 32"):
        index.add(xb[:, :16])
    with pytest.raises(ValueError, match="columns but 32"):
        index.search(xq[:, :8], 1)
    with pytest.raises(ValueError, match="nprobe must be >= 1"):
        index.search(xq, 1, nprobe=0)
    with pytest.raises(ValueError, match="k must be >= 1"):
        index.search(xq, 0)
    with pytest.raises(ValueError, match="NaN"):
        index.add(np.full((2, DIM), np.nan))
    index.add(xb[:10])
    with pytest.raises(ValueError, match="call reset"):
        index.train(xb[:1000])
