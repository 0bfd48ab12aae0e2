"""faiss bridge for `IVFIndex`, both ways.

    ours                                   faiss
    IVFIndex, d_c = d_s = d                [prefix chain] IndexIVFFlat(IndexFlat(d), d, nlist)
    IVFIndex, d_c != d_s                   FaissAdannsIVF: IndexFlat(d_c) + IndexIVFFlat at d_s
                                           (writable=True: `serve.adanns_ivf`, one faiss index)

An IVFIndex keeps the D-dim vectors and prefixes them at query time (AdANNS-IVF-D); faiss keeps
only the d_s-dim prefixes it scans, so reading one back needs ``xb`` (see `faiss_bridge`).
"""
import numpy as np

from ..core.truncate import prefix
from ..core.validate import as_float32_matrix
from ..indices.ivf import IVFIndex
from .common import (FaissAdannsIVF, faiss_metric, flat_index, our_metric, prefix_transforms, pretransform,
                     read_lists, require_trained, set_cp)


def ivf_flat(faiss, index, quantizer_rows):
    """IndexIVFFlat at d_s holding the d_s-prefixes of `index`'s vectors in our lists and order."""
    from faiss.contrib.ivf_tools import add_preassigned
    quantizer = flat_index(faiss, quantizer_rows, index.metric)
    ivf = faiss.IndexIVFFlat(quantizer, index.d_s, index.nlist, faiss_metric(faiss, index.metric))
    set_cp(ivf.cp, index.niter, index.seed, index.max_points_per_centroid)
    ids = np.concatenate([index.list_ids(l) for l in range(index.nlist)] + [np.empty(0, np.int64)])
    lists = np.repeat(np.arange(index.nlist, dtype=np.int64), index.list_sizes())
    data = np.concatenate([index.list_vectors(l) for l in range(index.nlist)] +
                          [np.empty((0, index.d), np.float32)])
    # prefixes of the list-ordered vectors: the very array IVFIndex.search scans
    add_preassigned(ivf, prefix(data, index.d_s, index.normalize), lists, ids)
    return ivf


def ivf_to_faiss(faiss, index):
    """The faiss object for a trained IVFIndex (table above; not the writable form)."""
    require_trained(index.is_trained, index)
    if index.d_c == index.d_s:
        ivf = ivf_flat(faiss, index, index.centroids)
        return pretransform(faiss, prefix_transforms(faiss, index.d, index.d_s, index.normalize), ivf)
    placeholder = np.zeros((index.nlist, index.d_s), np.float32)
    return FaissAdannsIVF(index.d, index.d_c, index.d_s, index.metric, index.normalize,
                          flat_index(faiss, index.centroids, index.metric),
                          ivf_flat(faiss, index, placeholder))


def full_vectors(xb, ids, stored, D, d_s, normalize):
    """The D-dim vectors in id order: `stored` itself when faiss holds them, else `xb` after
    checking that its d_s-prefixes are the stored vectors (ids, stored in list order)."""
    if xb is None:
        if normalize or d_s < D:
            raise ValueError(f"faiss holds only the {d_s}-dim prefixes (normalize={normalize}) of the "
                             f"{D}-dim vectors an IVFIndex keeps; pass xb=the ({ids.shape[0]}, {D}) "
                             f"vectors in id order that the index was built from")
        full = np.empty_like(stored)
        full[ids] = stored
        return full
    xb = as_float32_matrix(xb, "xb", d=D)
    if xb.shape[0] != ids.shape[0]:
        raise ValueError(f"xb has {xb.shape[0]} rows but the faiss index holds {ids.shape[0]} vectors")
    bad = np.flatnonzero((prefix(xb[ids], d_s, normalize) != stored).any(axis=1))
    if bad.size:
        raise ValueError(f"xb row {int(ids[bad[0]])} does not give the vector faiss stores under that "
                         f"id ({bad.size} rows differ); pass the vectors the index was built from, "
                         f"in id order")
    return xb


def ivf_from_faiss(faiss, ivf, centroids, D, d_c, normalize, xb):
    metric = our_metric(faiss, ivf.metric_type)
    ids, lists, codes = read_lists(faiss, ivf)
    stored = np.ascontiguousarray(codes).view(np.float32).reshape(-1, ivf.d)
    index = IVFIndex(D, ivf.nlist, d_c=d_c, d_s=ivf.d, metric=metric, normalize=normalize,
                     niter=ivf.cp.niter, seed=ivf.cp.seed,
                     max_points_per_centroid=ivf.cp.max_points_per_centroid)
    index.set_centroids(centroids)
    full = full_vectors(xb, ids, stored, D, ivf.d, normalize)
    order = np.empty_like(lists)
    order[ids] = lists
    index.add_preassigned(full, order)
    return index
