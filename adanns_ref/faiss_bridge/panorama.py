"""Panorama indexes to and from faiss: `PanoramaFlatIndex` <-> `IndexFlatL2Panorama` /
`IndexFlatIPPanorama`, `PanoramaIVFIndex` <-> `IndexIVFFlatPanorama`, `PanoramaRefineIndex` <->
`IndexRefinePanorama` (its refine index an `IndexFlat*Panorama` with batch size 1).

to_faiss builds the faiss index from the stored rows with faiss's own `add` (so faiss lays out
the batches and computes the tail norms itself; the tests check they equal ours), the IVF form
with our centroids and lists (`ivf_tools.add_preassigned`). from_faiss reads the rows back
(`reconstruct_n`, or per list for the IVF form) and rebuilds ours. Only faiss's equal-block
layout exists in faiss: an index built with ``nesting=`` raises ValueError. IVF ids must be
0 .. ntotal - 1 in insertion order (what `add` gives); other ids raise ValueError.
"""
import numpy as np

from ..panorama import PanoramaFlatIndex, PanoramaIVFIndex, PanoramaRefineIndex
from .common import faiss_metric, our_metric


def require_faiss_layout(index):
    if not index.faiss_layout:
        raise ValueError(f"{index!r} uses Matryoshka nesting levels {index.bounds.tolist()}, which "
                         f"faiss cannot express; build it with n_levels= for a faiss twin")


def flat_panorama(faiss, d, metric, n_levels, batch_size):
    """IndexFlatL2Panorama / IndexFlatIPPanorama (faiss.downcast_index knows these two, not
    their base IndexFlatPanorama)."""
    make = faiss.IndexFlatL2Panorama if metric == "l2" else faiss.IndexFlatIPPanorama
    return make(d, n_levels, batch_size)


def is_panorama(faiss, index):
    """True for the faiss Panorama types this module reads."""
    return isinstance(index, (faiss.IndexFlatPanorama, faiss.IndexIVFFlatPanorama,
                              faiss.IndexRefinePanorama))


def panorama_to_faiss(faiss, index, to_faiss):
    """The faiss twin of one of our Panorama indexes (see the module docstring); to_faiss: the
    bridge's dispatch, for the base of a refine index."""
    require_faiss_layout(index)
    mt = faiss_metric(faiss, index.metric)
    if isinstance(index, PanoramaFlatIndex):
        out = flat_panorama(faiss, index.d, index.metric, index.n_levels, index.batch_size)
        if index.ntotal:
            out.add(index.reconstruct_n())
        return out
    if isinstance(index, PanoramaIVFIndex):
        if not index.is_trained:
            raise ValueError(f"to_faiss needs a trained index, got an untrained {index!r}")
        quantizer = faiss.IndexFlat(index.d, mt)
        quantizer.add(index.centroids)
        out = faiss.IndexIVFFlatPanorama(quantizer, index.d, index.nlist, index.n_levels, mt,
                                         True, index.batch_size)
        out.is_trained = True
        out.own_fields = True
        quantizer.this.disown()
        if index.ntotal:
            x = np.empty((index.ntotal, index.d), np.float32)
            lists = np.empty(index.ntotal, np.int64)
            for l in range(index.nlist):
                ids = index.list_ids(l)
                x[ids], lists[ids] = index.list_vectors(l), l
            from faiss.contrib.ivf_tools import add_preassigned
            add_preassigned(out, x, lists)
        return out
    if isinstance(index, PanoramaRefineIndex):
        base = to_faiss(index.base)
        refine = flat_panorama(faiss, index.d, index.metric, index.n_levels, 1)
        if index.ntotal:
            refine.add(index.rows())
        out = faiss.IndexRefinePanorama(base, refine)
        out.k_factor = index.k_factor
        out.own_fields = True
        base.this.disown()
        refine.this.disown()
        return out
    raise TypeError(f"panorama_to_faiss takes a Panorama index, got {type(index).__name__}")


def panorama_from_faiss(faiss, index, xb, from_faiss):
    """Our twin of a faiss Panorama index (see the module docstring); from_faiss: the bridge's
    dispatch, given xb, for the base of a refine index."""
    index = faiss.downcast_index(index)
    metric = our_metric(faiss, index.metric_type)
    if isinstance(index, faiss.IndexFlatPanorama):
        out = PanoramaFlatIndex(index.d, int(index.n_levels), metric, int(index.batch_size))
        if index.ntotal:
            out.add(index.reconstruct_n(0, index.ntotal))
        return out
    if isinstance(index, faiss.IndexIVFFlatPanorama):
        out = PanoramaIVFIndex(index.d, index.nlist, int(index.n_levels), metric,
                               int(index.batch_size))
        out.set_centroids(index.quantizer.reconstruct_n(0, index.nlist))
        if index.ntotal:
            out.add_preassigned(*ivf_rows(faiss, index))
        return out
    if isinstance(index, faiss.IndexRefinePanorama):
        refine = faiss.downcast_index(index.refine_index)
        if not isinstance(refine, faiss.IndexFlatPanorama) or refine.batch_size != 1:
            raise ValueError("IndexRefinePanorama's refine index must be an IndexFlat*Panorama "
                             "with batch_size 1 (faiss's own requirement)")
        base = from_faiss(index.base_index, xb)
        out = PanoramaRefineIndex.over_filled_base(base, int(refine.n_levels), metric,
                                                   float(index.k_factor))
        if refine.ntotal:
            out.add_rows_only(refine.reconstruct_n(0, refine.ntotal))
        return out
    raise TypeError(f"panorama_from_faiss reads IndexFlat*Panorama, IndexIVFFlatPanorama and "
                    f"IndexRefinePanorama, got {type(index).__name__}")


def ivf_rows(faiss, index):
    """(rows in id order (ntotal, d) float32, list of each row (ntotal,) int64) of a faiss
    IndexIVFFlatPanorama whose ids are 0 .. ntotal - 1 in insertion order."""
    n, d = index.ntotal, index.d
    x = np.empty((n, d), np.float32)
    lists = np.full(n, -1, np.int64)
    for l in range(index.nlist):
        size = index.invlists.list_size(l)
        if size == 0:
            continue
        ids = faiss.rev_swig_ptr(index.invlists.get_ids(l), size).copy()
        if ids.min() < 0 or ids.max() >= n or np.any(np.diff(ids) <= 0):
            raise ValueError(f"list {l} holds ids {ids[:8].tolist()}...; from_faiss needs ids "
                             f"0 .. ntotal-1 added in order (faiss add, not add_with_ids)")
        for j, i in enumerate(ids):
            index.reconstruct_from_offset(l, j, faiss.swig_ptr(x[i]))
        lists[ids] = l
    if np.any(lists < 0):
        raise ValueError("the lists do not hold every id 0 .. ntotal-1 once; from_faiss needs "
                         "ids added in order (faiss add, not add_with_ids)")
    return x, lists
