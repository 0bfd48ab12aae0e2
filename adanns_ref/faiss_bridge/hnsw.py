"""faiss bridge for `indices.hnsw.HNSWIndex`: faiss ``IndexHNSWFlat``, both ways.

    ours                                     faiss
    HNSWIndex, d_s = d_c                     [prefix chain] IndexHNSWFlat(d_c, M, metric)
    HNSWIndex, d_s = D, normalize=False      IndexRefineFlat([prefix chain] IndexHNSWFlat(d_c, M))

``to_faiss`` hands faiss our graph (levels, offsets, neighbour lists, entry point, max_level)
and the d_c-prefixes as its storage, bit for bit; nothing is rebuilt, and faiss then searches
exactly as we do (``hnsw.efSearch = ef``; with IndexRefineFlat also ``k_factor = max(ef, k) /
k``). The prefix chain is `faiss_bridge`'s: transforms mirroring `truncate.prefix` in front of
the index so that it answers D-dim queries (with normalize=True faiss normalises queries as
x * (1 / ||x||): distances agree to float32 rounding, not bit for bit). Re-scoring at a d_s
other than D, or with normalize=True, has no faiss counterpart here and raises ValueError.

``from_faiss`` reads an IndexHNSWFlat back (behind such a chain it needs ``xb``, the D-dim
vectors, and checks that their prefixes are faiss's stored vectors bit for bit). faiss's level
RNG is not readable; as faiss's ``add()`` draws one number per point, the returned index has
its RNG advanced by ntotal draws from 12345, so adding more vectors to it and to the live faiss
index gives the same graph (a faiss index read from a file restarts at 12345 instead).
"""
import numpy as np

from ..core.truncate import prefix
from ..indices.hnsw import HNSWIndex, level_probabilities
from .common import prefix_transforms, pretransform, read_chain


def hnsw_to_faiss(faiss, index):
    """The faiss object for `index` (table above)."""
    if index.d_s != index.d_c and (index.d_s != index.d or index.normalize):
        raise ValueError(f"faiss has no counterpart of re-scoring at d_s={index.d_s} with d_c="
                         f"{index.d_c}, normalize={index.normalize}: IndexRefineFlat re-scores the "
                         f"raw D={index.d} vectors only; use d_s = d_c or d_s = D without normalize")
    metric = faiss.METRIC_L2 if index.metric == "l2" else faiss.METRIC_INNER_PRODUCT
    fh = faiss.IndexHNSWFlat(index.d_c, index.M, metric)
    fh.hnsw.efConstruction = index.ef_construction
    levels, offsets, nbrs, entry_point, max_level = index.graph()
    fh.storage.add(index.vectors(prefixed=True))
    fh.ntotal = index.ntotal
    faiss.copy_array_to_vector((levels + 1).astype(np.int32), fh.hnsw.levels)
    faiss.copy_array_to_vector(offsets.astype(np.uint64), fh.hnsw.offsets)
    faiss.copy_array_to_vector(np.ascontiguousarray(nbrs), fh.hnsw.neighbors)
    fh.hnsw.entry_point, fh.hnsw.max_level = entry_point, max_level
    chained = pretransform(faiss, prefix_transforms(faiss, index.d, index.d_c, index.normalize), fh)
    if index.d_s == index.d_c:
        return chained
    # this constructor fills only the refine index with the D-dim vectors: the base is full
    return faiss.IndexRefineFlat(chained, faiss.swig_ptr(np.ascontiguousarray(index.vectors())))


def holds_hnsw(faiss, index):
    """True for the objects `hnsw_to_faiss` returns (a downcast faiss index)."""
    if isinstance(index, faiss.IndexRefineFlat):
        index = faiss.downcast_index(index.base_index)
    if isinstance(index, faiss.IndexPreTransform):
        index = faiss.downcast_index(index.index)
    return isinstance(index, faiss.IndexHNSWFlat)


def hnsw_from_faiss(faiss, index, xb):
    """HNSWIndex from an object `holds_hnsw` accepts (see the module docstring for xb)."""
    from faiss.contrib.inspect_tools import get_flat_data

    refine = isinstance(index, faiss.IndexRefineFlat)
    if refine:
        full = get_flat_data(faiss.downcast_index(index.refine_index))
        if xb is not None and not np.array_equal(np.asarray(xb, np.float32), full):
            raise ValueError("xb differs from the vectors the IndexRefineFlat holds")
        xb, index = full, faiss.downcast_index(index.base_index)
    D, normalize, opq, fh = read_chain(faiss, index)
    if opq is not None or (refine and normalize):
        raise ValueError("an HNSW behind an OPQ rotation, or re-scoring normalised vectors, has "
                         "no HNSWIndex counterpart")
    h = fh.hnsw
    cum = faiss.vector_to_array(h.cum_nneighbor_per_level).astype(np.int64)
    M = int(cum[2] - cum[1]) if cum.shape[0] > 2 else int(cum[1] // 2)
    probas, expected_cum = level_probabilities(M) if M >= 2 else (None, None)
    if M < 2 or not (np.array_equal(cum, expected_cum) and np.array_equal(
            faiss.vector_to_array(h.assign_probas), probas)):
        raise ValueError("the faiss HNSW does not use faiss's default level distribution for its M "
                         "(set_default_probas(M, 1 / ln M)); HNSWIndex supports only that one")
    stored = get_flat_data(faiss.downcast_index(fh.storage))
    if D == fh.d and not normalize:
        data = stored
    else:
        if xb is None:
            raise ValueError(f"this faiss HNSW stores {fh.d}-dim prefixes; pass xb, the {D}-dim "
                             f"vectors in id order, to rebuild an HNSWIndex")
        data = np.ascontiguousarray(xb, dtype=np.float32)
        if data.shape != (fh.ntotal, D) or not np.array_equal(prefix(data, fh.d, normalize), stored):
            raise ValueError(f"xb (shape {data.shape}) is not the vectors whose prefixes faiss stores "
                             f"(expected shape ({fh.ntotal}, {D}) matching bit for bit)")
    metric = "l2" if fh.metric_type == faiss.METRIC_L2 else "ip"
    index = HNSWIndex(D, M=M, ef_construction=int(h.efConstruction), metric=metric,
                      normalize=normalize, d_c=fh.d, d_s=D if refine else fh.d)
    levels = faiss.vector_to_array(h.levels).astype(np.int64) - 1
    offsets = faiss.vector_to_array(h.offsets).astype(np.int64)
    nbrs = faiss.vector_to_array(h.neighbors).astype(np.int32)
    problem = index.check_graph(data.shape[0], levels, offsets, nbrs, int(h.entry_point), int(h.max_level))
    if problem:
        raise ValueError(f"the faiss HNSW graph is not one HNSWIndex can hold: {problem}")
    index.set_graph(data, levels, offsets, nbrs, int(h.entry_point), int(h.max_level))
    index.set_level_rng(*_advanced(index.seed, data.shape[0]))
    return index


def _advanced(seed, draws):
    """mt19937(seed) state after `draws` numbers, as (key (624,) uint32, pos int)."""
    bg = np.random.MT19937()
    bg._legacy_seeding(seed)
    bg.random_raw(draws)
    state = bg.state["state"]
    return np.ascontiguousarray(state["key"], np.uint32), int(state["pos"])
