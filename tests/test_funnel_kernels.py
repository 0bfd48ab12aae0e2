"""The funnel's kernels: the fused prefix scan + top-k (`scan_search`, `sums16`, `blas16`) and the
in-place re-rank (`rerank_rows`), against float64 brute force (tie-aware), against `simd_sum`,
`knn_search` and faiss's BLAS path bit for bit, and on random inputs (hypothesis)."""
import numba
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from adanns_ref.funnel.kernels import (BLOCK, CHUNK, QUAD, QUERY_GROUP, block_norms, from_blocks, scan_search,
                                       sums16, to_blocks)
from adanns_ref.funnel.rerank_kernels import rerank_rows, rerank_rows_sorted, shortlist_order
from adanns_ref.core.simd import faiss_runs_avx512, simd_sum
from adanns_ref.testing import assert_knn_equal
from adanns_ref.core.threads import BLAS_THRESHOLD
from adanns_ref.search.knn import knn_search
from adanns_ref.core.topk import new_heaps, sort_heaps
from adanns_ref.core.truncate import prefix, prefix_scales

FLT_MAX = np.float32(np.finfo(np.float32).max)


def _brute(xq, xb, k, metric):
    """float64 distances, full lexsort on (distance, id), faiss padding."""
    xq64, xb64 = xq.astype(np.float64), xb.astype(np.float64)
    if metric == "l2":
        dist = ((xq64[:, None, :] - xb64[None, :, :]) ** 2).sum(-1)
        key = dist
    else:
        dist = xq64 @ xb64.T
        key = -dist
    D = np.full((len(xq), k), FLT_MAX if metric == "l2" else -FLT_MAX, np.float32)
    I = np.full((len(xq), k), -1, np.int64)
    for r in range(len(xq)):
        order = np.lexsort((np.arange(len(xb)), key[r]))[:k]
        D[r, :len(order)], I[r, :len(order)] = dist[r, order], order
    return D, I


@numba.njit(cache=True)
def _sums16_all(xq, blocks, l2, thr):
    """sums16 for every (query, block) -> keys (nq, 16 * nb), counts (nq, nb)."""
    out = np.empty((xq.shape[0], blocks.shape[0] * BLOCK), dtype=np.float32)
    hits = np.empty((xq.shape[0], blocks.shape[0]), dtype=np.int64)
    for r in range(xq.shape[0]):
        row = out[r]
        for b in range(blocks.shape[0]):
            hits[r, b] = sums16(xq, r, blocks, b, l2, row, b * BLOCK, thr)
    return out, hits


@numba.njit(cache=True)
def _simd_sum_all(xq, xb, l2):
    out = np.empty((xq.shape[0], xb.shape[0]), dtype=np.float32)
    for r in range(xq.shape[0]):
        for j in range(xb.shape[0]):
            out[r, j] = simd_sum(xq[r], xb[j], l2)
    return out


@pytest.mark.parametrize("d", [1, 2, 7, 8, 9, 15, 16, 17, 23, 24, 31, 32, 33, 47, 64, 100])
def test_sums16_has_the_bits_of_simd_sum_in_every_lane_and_counts_keys_below_thr(d):
    rng = np.random.default_rng(d)
    xb = (rng.standard_normal((50, d)) * rng.random((50, 1)) * 30).astype(np.float32)
    xq = rng.standard_normal((3, d)).astype(np.float32)
    blocks = to_blocks(xb)
    for l2 in (True, False):
        want = _simd_sum_all(xq, xb, l2) * (1 if l2 else -1)  # ip: the key is -<q, z>
        thr = np.float32(np.median(want))
        keys, hits = _sums16_all(xq, blocks, l2, thr)
        np.testing.assert_array_equal(keys[:, :len(xb)], want)
        np.testing.assert_array_equal(hits, (keys <= thr).reshape(len(xq), -1, BLOCK).sum(-1))
        assert 0 < hits.sum() < keys.size


def test_blocks_layout_round_trips_and_pads_with_zeros():
    z = np.arange(37 * 5, dtype=np.float32).reshape(37, 5)
    blocks = to_blocks(z)
    assert blocks.shape == (3, 5, BLOCK) and blocks.flags.c_contiguous
    assert blocks[1, 2, 3] == z[16 + 3, 2]
    assert not blocks[2, :, 37 - 32:].any()
    np.testing.assert_array_equal(from_blocks(blocks, 37), z)


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("k", [1, 10, 150])  # 150 > RESERVOIR_MIN_K: reservoirs
def test_scan_search_matches_float64_brute_force(metric, k):
    rng = np.random.default_rng(5)
    xb = prefix(rng.standard_normal((700, 40)).astype(np.float32), 16)
    xq = prefix(rng.standard_normal((37, 40)).astype(np.float32), 16)
    D, I = scan_search(xq, to_blocks(xb), len(xb), k, metric)
    assert_knn_equal(*_brute(xq, xb, k, metric), D, I, rtol=1e-5, atol=1e-6)
    assert D.dtype == np.float32 and I.dtype == np.int64


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("n", [1, 15, 16, 17, CHUNK - 1, CHUNK + 1, 3 * CHUNK + 5])
def test_scan_search_is_bit_identical_to_the_direct_path_of_knn_search(metric, n):
    rng = np.random.default_rng(n)
    nq = 2 * QUERY_GROUP + 3  # a partial last group
    xb = rng.standard_normal((n, 12)).astype(np.float32)
    xq = rng.standard_normal((nq, 12)).astype(np.float32)
    assert nq * 12 < BLAS_THRESHOLD  # knn_search takes its direct (faiss small-batch) path
    for k in (1, 5, 120):
        D, I = scan_search(xq, to_blocks(xb), n, k, metric)
        D_ref, I_ref = knn_search(xq, xb, k, metric)
        np.testing.assert_array_equal(I, I_ref)
        np.testing.assert_array_equal(D, D_ref)


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_scan_search_agrees_with_the_blas_path_up_to_rounding(metric):
    rng = np.random.default_rng(11)
    xb = prefix(rng.standard_normal((3000, 32)).astype(np.float32), 16)
    xq = prefix(rng.standard_normal((BLAS_THRESHOLD // 16 + 8, 32)).astype(np.float32), 16)
    D, I = scan_search(xq, to_blocks(xb), len(xb), 20, metric)
    D_ref, I_ref = knn_search(xq, xb, 20, metric)  # BLAS form: last-bit differences only
    np.testing.assert_allclose(D, D_ref, rtol=1e-5, atol=2e-6)
    assert (I == I_ref).mean() > 0.999


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("d", [1, 7, 16, 17, 32])
def test_blas_form_has_the_bits_of_faiss_blas_path(metric, d):
    """scan_search with row norms = faiss's IndexFlat search when faiss takes its BLAS path (its
    threshold lowered so that this small batch does): same distances and ids, heaps and
    reservoirs, a partial last block, query group and QUAD."""
    faiss = pytest.importorskip("faiss")
    if not faiss_runs_avx512(faiss):
        pytest.skip("faiss's norms follow its AVX-512 order only where it dispatches there")
    rng = np.random.default_rng(d)
    scale = np.arange(1, d + 1) ** -0.5
    xb = (rng.standard_normal((1003, d)) * scale).astype(np.float32)
    xq = (rng.standard_normal((QUERY_GROUP * 2 + QUAD + 1, d)) * scale).astype(np.float32)
    index = (faiss.IndexFlatL2 if metric == "l2" else faiss.IndexFlatIP)(d)
    index.add(xb)
    old = faiss.cvar.distance_compute_blas_threshold
    faiss.cvar.distance_compute_blas_threshold = 1
    try:
        for k in (10, 150):  # 150 > RESERVOIR_MIN_K: reservoirs
            D_f, I_f = index.search(xq, k)
            D, I = scan_search(xq, to_blocks(xb), len(xb), k, metric, block_norms(xb))
            np.testing.assert_array_equal(D, D_f)
            np.testing.assert_array_equal(I, I_f)
    finally:
        faiss.cvar.distance_compute_blas_threshold = old


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("d", [8, 16, 32])
def test_blas_form_is_bit_identical_to_the_blas_path_of_knn_search(metric, d):
    """numpy's OpenBLAS sums these depths in the same fma chain: knn_search's BLAS path (what
    the funnel's stage 0 ran before for nq * d >= BLAS_THRESHOLD) gives the same bits."""
    rng = np.random.default_rng(d + 1)
    xb = prefix(rng.standard_normal((2000, 40)).astype(np.float32), d)
    xq = prefix(rng.standard_normal((BLAS_THRESHOLD // d + 3, 40)).astype(np.float32), d)
    D, I = scan_search(xq, to_blocks(xb), len(xb), 20, metric, block_norms(xb))
    D_ref, I_ref = knn_search(xq, xb, 20, metric)
    np.testing.assert_array_equal(D, D_ref)
    np.testing.assert_array_equal(I, I_ref)


def test_block_norms_are_faiss_norms_padded_to_whole_blocks():
    rng = np.random.default_rng(2)
    z = rng.standard_normal((37, 9)).astype(np.float32)
    xn = block_norms(z)
    assert xn.shape == (48,) and xn.dtype == np.float32 and (xn[37:] == 0).all()
    np.testing.assert_allclose(xn[:37], (z.astype(np.float64) ** 2).sum(1), rtol=1e-6)
    np.testing.assert_array_equal(xn[:37], _simd_sum_all(z, z, False).diagonal())


def test_scan_search_ties_go_to_the_smaller_id_across_chunks_and_groups():
    rng = np.random.default_rng(3)
    xb = rng.standard_normal((5 * CHUNK, 8)).astype(np.float32)
    dup = [3, CHUNK + 1, 2 * CHUNK + 7, 4 * CHUNK + 2]
    xb[dup] = xb[300]
    xq = np.repeat(xb[300:301], QUERY_GROUP + 2, axis=0)
    for k in (3, 150):
        D, I = scan_search(xq, to_blocks(xb), len(xb), k, "l2")
        want = sorted(dup + [300])[:3]  # five equal rows at distance 0: the three smallest ids
        np.testing.assert_array_equal(I[:, :3], np.tile(want, (len(xq), 1)))
        if k > 3:
            assert (D[:, :5] == 0).all() and (np.sort(I[:, :5], axis=1) == sorted(dup + [300])).all()


@pytest.mark.parametrize("metric, pad", [("l2", FLT_MAX), ("ip", -FLT_MAX)])
def test_scan_search_pads_when_k_exceeds_the_database(metric, pad):
    rng = np.random.default_rng(0)
    xb = rng.standard_normal((5, 4)).astype(np.float32)
    xq = rng.standard_normal((3, 4)).astype(np.float32)
    for k in (8, 200):
        D, I = scan_search(xq, to_blocks(xb), 5, k, metric)
        assert (np.sort(I[:, :5], axis=1) == np.arange(5)).all()
        assert (I[:, 5:] == -1).all() and (D[:, 5:] == pad).all()
    D, I = scan_search(xq, to_blocks(xb[:0]), 0, 4, metric)
    assert (I == -1).all() and (D == pad).all()


@settings(deadline=None, max_examples=30)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 300), d=st.integers(1, 40),
       nq=st.integers(1, 20), k=st.integers(1, 130), n_dup=st.integers(0, 40),
       metric=st.sampled_from(["l2", "ip"]), blas=st.booleans())
def test_scan_search_properties(seed, n, d, nq, k, n_dup, metric, blas):
    """Equal to knn_search's direct path bit for bit (ties included: duplicated rows and
    integer-valued data make many exact ties), and to float64 brute force tie-aware; in both
    forms (small integers: the BLAS form's sums are exact too)."""
    rng = np.random.default_rng(seed)
    xb = rng.integers(-3, 4, size=(n, d)).astype(np.float32)
    xb[rng.integers(0, n, n_dup)] = xb[0]
    xq = rng.integers(-3, 4, size=(nq, d)).astype(np.float32)
    D, I = scan_search(xq, to_blocks(xb), n, k, metric, block_norms(xb) if blas else None)
    D_ref, I_ref = knn_search(xq, xb, k, metric)
    np.testing.assert_array_equal(I, I_ref)
    np.testing.assert_array_equal(D, D_ref)
    D_bf, I_bf = _brute(xq, xb, k, metric)  # small integers: every float32 sum is exact
    np.testing.assert_array_equal(I, I_bf)
    np.testing.assert_array_equal(D, D_bf)


def _rerank_rows(xq_full, db, ids, dim, k, metric, normalize):
    hd, hi = new_heaps(len(xq_full), k)
    s1, s2 = prefix_scales(db, dim) if normalize else (np.empty(0, np.float64),) * 2
    rerank_rows(prefix(xq_full, dim, normalize), db, ids, s1, s2, metric == "ip", hd, hi)
    sort_heaps(hd, hi)
    return hd, hi


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("dim", [1, 9, 16, 30])
def test_rerank_rows_scores_the_prefix_rebuilt_in_place(metric, normalize, dim):
    """Each candidate's distance equals simd_sum against truncate.prefix's row, bit for bit."""
    rng = np.random.default_rng(dim)
    db = (rng.standard_normal((200, 30)) * rng.random((200, 1)) * 9).astype(np.float32)
    db[7] = 0  # a zero row stays zero
    # rows whose scales are exactly 1 (divisions skipped): (s_1, s_2) = (1, 1), (3, 1), (1, 0.6)
    db[8:11] = 0
    db[8, 0], db[9, 0], db[10, 0], db[10, 29] = 1, 3, 0.6, 0.8
    if normalize:  # (unnormalised, a 1e25 row's distance overflows to inf: never a result)
        # rows whose float32 squared norm over- or underflows: normalised in float64 (scales
        # not float32 values), and one whose prefix alone underflows
        db[11] *= np.float32(1e25)
        db[12] *= np.float32(1e-25)
        db[13, :dim] *= np.float32(1e-24)
    q = rng.standard_normal((6, 30)).astype(np.float32)
    ids = np.stack([rng.permutation(200)[:25] for _ in range(6)])
    ids[0, :3] = [7, -1, -1]
    ids[1] = np.concatenate(([8, 9, 10, 11, 12, 13], np.setdiff1d(np.arange(14, 200), ids[1])[:19]))
    hd, hi = _rerank_rows(q, db, ids, dim, 25, metric, normalize)
    xb, xq = prefix(db, dim, normalize), prefix(q, dim, normalize)
    exact = _simd_sum_all(xq, xb, metric == "l2")
    for r in range(6):
        valid = ids[r][ids[r] >= 0]
        want = exact[r, valid] if metric == "l2" else -exact[r, valid]
        order = np.lexsort((valid, want))
        np.testing.assert_array_equal(hi[r, :len(valid)], valid[order])
        np.testing.assert_array_equal(hd[r, :len(valid)], want[order])
        assert (hi[r, len(valid):] == -1).all()


def test_rerank_rows_reads_a_read_only_memory_map(tmp_path):
    rng = np.random.default_rng(1)
    db = rng.standard_normal((64, 12)).astype(np.float32)
    path = tmp_path / "db.f32"
    db.tofile(path)
    mm = np.memmap(path, dtype=np.float32, mode="r", shape=db.shape)
    ids = np.array([[5, 9, 63, 0]])
    q = rng.standard_normal((1, 12)).astype(np.float32)
    for normalize in (True, False):
        got = _rerank_rows(q, mm, ids, 12, 4, "l2", normalize)
        want = _rerank_rows(q, db, ids, 12, 4, "l2", normalize)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_scan_reservoir_with_many_shrinks_and_ties_equals_knn_search(metric):
    """k = 101 over 6,000 rows of 3 small integers: every distance is shared by hundreds of rows,
    so reservoirs fill and shrink many times, cutting inside tie groups."""
    rng = np.random.default_rng(9)
    xb = rng.integers(-2, 3, size=(6000, 3)).astype(np.float32)
    xq = rng.integers(-2, 3, size=(QUERY_GROUP + 5, 3)).astype(np.float32)
    D, I = scan_search(xq, to_blocks(xb), len(xb), 101, metric)
    D_ref, I_ref = knn_search(xq, xb, 101, metric)
    np.testing.assert_array_equal(I, I_ref)
    np.testing.assert_array_equal(D, D_ref)


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("normalize", [True, False])
def test_rerank_in_sorted_row_order_gives_the_same_heaps(metric, normalize):
    """rerank_rows_sorted reads the batch's rows in ascending order (shared across queries)
    and must leave exactly the heaps of the query-by-query rerank_rows: same bits, same ties."""
    rng = np.random.default_rng(5)
    db = rng.integers(-3, 4, (300, 24)).astype(np.float32)  # many exact ties
    db[:40] = db[40:80]
    q = rng.integers(-3, 4, (37, 24)).astype(np.float32)
    ids = np.stack([rng.choice(300, 30, replace=False) for _ in range(37)])
    ids[rng.random(ids.shape) < 0.1] = -1
    ids[:5] = ids[5]  # a shortlist shared by several queries
    order = shortlist_order(ids)
    assert np.all(np.diff(ids.ravel()[order]) >= 0) and order.size == int((ids >= 0).sum())
    for dim in (5, 24):
        s1, s2 = prefix_scales(db, dim) if normalize else (np.empty(0, np.float64),) * 2
        xq = prefix(q, dim, normalize)
        heaps = []
        for kernel in ("by query", "sorted"):
            hd, hi = new_heaps(len(q), 12)
            if kernel == "sorted":
                rerank_rows_sorted(xq, db, ids, order, s1, s2, metric == "ip", hd, hi)
            else:
                rerank_rows(xq, db, ids, s1, s2, metric == "ip", hd, hi)
            sort_heaps(hd, hi)
            heaps.append((hd, hi))
        np.testing.assert_array_equal(heaps[0][1], heaps[1][1])
        np.testing.assert_array_equal(heaps[0][0], heaps[1][0])
