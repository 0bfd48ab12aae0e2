import numpy as np
import pytest

from adanns_ref import from_faiss, to_faiss
from adanns_ref.core.simd import faiss_runs_avx512
from adanns_ref.conformance.compare import hnsw_search_with_ndis
from adanns_ref.indices.hnsw.index import HNSWIndex

faiss = pytest.importorskip("faiss")
pytestmark = pytest.mark.skipif(not faiss_runs_avx512(faiss),
                                reason="bit-identical search needs faiss's AVX-512 distance order")


def _data(n, d, seed):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((10, d))
    return (centers[rng.integers(0, 10, n)] + 0.2 * rng.standard_normal((n, d))).astype(np.float32)


def _ndis(obj, xq, k):
    return hnsw_search_with_ndis(obj, xq, k)[1]


def _inner(obj):
    obj = faiss.downcast_index(obj)
    return faiss.downcast_index(obj.index) if isinstance(obj, faiss.IndexPreTransform) else obj


@pytest.mark.parametrize("metric,d_c", [("l2", 24), ("ip", 24), ("l2", 10)])
def test_to_faiss_searches_like_ours(metric, d_c):
    faiss.omp_set_num_threads(1)
    x, xq = _data(1500, 24, 0), _data(40, 24, 1)
    ours = HNSWIndex(24, M=6, metric=metric, d_c=d_c, d_s=d_c)
    ours.add(x)
    theirs = to_faiss(ours)
    _inner(theirs).hnsw.efSearch = 20
    D_ref, I_ref = theirs.search(xq, 10)
    D, I = ours.search(xq, 10, ef_search=20)
    np.testing.assert_array_equal(I, I_ref)
    np.testing.assert_array_equal(D, D_ref)
    np.testing.assert_array_equal(ours.last_search_ndis, _ndis(theirs, xq, 10))


def test_to_faiss_rescoring_is_index_refine_flat():
    x, xq = _data(1500, 24, 2), _data(40, 24, 3)
    ours = HNSWIndex(24, M=6, d_c=8, d_s=24)
    ours.add(x)
    theirs = to_faiss(ours)
    assert isinstance(theirs, faiss.IndexRefineFlat) and theirs.ntotal == 1500
    _inner(theirs.base_index).hnsw.efSearch = 30
    theirs.k_factor = 3.0
    D_ref, I_ref = theirs.search(xq, 10)
    D, I = ours.search(xq, 10, ef_search=30)
    np.testing.assert_array_equal(I, I_ref)
    np.testing.assert_array_equal(D, D_ref)
    back = from_faiss(theirs)
    assert (back.d_c, back.d_s) == (8, 24)
    np.testing.assert_array_equal(back._nbrs, ours._nbrs)


def test_query_time_prefix_walk_matches_faiss_on_the_same_graph():
    """AdANNS-HNSW-D: a graph built at D, walked with d_q-prefixes. faiss holding that graph
    and the d_q-prefixes as storage takes the same steps (ids, distances, ndis)."""
    x, xq = _data(1500, 32, 4), _data(40, 32, 5)
    full = HNSWIndex(32, M=6)
    full.add(x)
    alias = HNSWIndex(32, M=6, d_c=12, d_s=12)
    alias._set_graph(full._data, full._levels, full._offsets, full._nbrs, full.entry_point, full.max_level)
    theirs = to_faiss(alias)
    _inner(theirs).hnsw.efSearch = 16
    D_ref, I_ref = theirs.search(xq, 10)
    D, I = full.search(xq, 10, ef_search=16, d_c=12, d_s=12)
    np.testing.assert_array_equal(I, I_ref)
    np.testing.assert_array_equal(D, D_ref)
    np.testing.assert_array_equal(full.last_search_ndis, _ndis(theirs, xq, 10))


def test_from_faiss_reads_the_graph_and_keeps_adding_identically():
    faiss.omp_set_num_threads(1)
    x = _data(2000, 16, 6)
    ref = faiss.IndexHNSWFlat(16, 8)
    ref.hnsw.efConstruction = 30
    ref.add(x[:1200])
    ours = from_faiss(ref)
    assert (ours.M, ours.ef_construction, ours.ntotal) == (8, 30, 1200)
    ref.add(x[1200:])
    ours.add(x[1200:])  # the level RNG was advanced by the 1200 draws faiss made
    np.testing.assert_array_equal(ours._nbrs, faiss.vector_to_array(ref.hnsw.neighbors))
    np.testing.assert_array_equal(ours.levels, faiss.vector_to_array(ref.hnsw.levels) - 1)


def test_round_trip_with_prefix_chain_needs_matching_xb():
    x = _data(600, 20, 7)
    ours = HNSWIndex(20, M=4, d_c=8, d_s=8, normalize=True)
    ours.add(x)
    theirs = to_faiss(ours)
    with pytest.raises(ValueError, match="pass xb"):
        from_faiss(theirs)
    with pytest.raises(ValueError, match="bit for bit"):
        from_faiss(theirs, xb=x + 1)
    back = from_faiss(theirs, xb=x)
    assert repr(back) == repr(ours)
    for a, b in zip(back.search(x[:10], 5), ours.search(x[:10], 5)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="faiss has no counterpart"):
        to_faiss(HNSWIndex(20, d_c=8, d_s=12))
