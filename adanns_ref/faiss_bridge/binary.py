"""faiss bridge for binary codes, both ways.

    ours                                     faiss
    BinaryFlatIndex(d_bits)                  IndexBinaryFlat(d_bits)
    BinaryIVFIndex(d_bits, nlist)            IndexBinaryIVF(IndexBinaryFlat(d_bits), d_bits, nlist)

faiss gets our centroids, inverted lists and codes byte for byte (``invlists.add_entries``).
Binary indices take uint8 codes, so `faiss_search` passes the query codes through
(`quantizers.binary.binarize` makes them from vectors). A BinaryIVFIndex read from faiss keeps
faiss's list order (its scan order), so both search identically; faiss's ids must be 0..n-1 (no
add_with_ids). Training-only parameters (niter, seed, max_points_per_centroid) travel in faiss's
``cp`` in memory (faiss's index files do not store it: read back, they are faiss's defaults).
"""
import numpy as np

from ..indices.binary import BinaryFlatIndex, BinaryIVFIndex
from ..quantizers.binary import as_codes
from .common import require_trained


def binary_to_faiss(faiss, index):
    """The faiss object for a BinaryFlatIndex or a trained BinaryIVFIndex."""
    if isinstance(index, BinaryFlatIndex):
        fb = faiss.IndexBinaryFlat(index.d_bits)
        if index.ntotal:
            fb.add(index.codes)
        return fb
    require_trained(index.is_trained, index)
    quantizer = faiss.IndexBinaryFlat(index.d_bits)
    quantizer.add(index.centroids)
    fivf = faiss.IndexBinaryIVF(quantizer, index.d_bits, index.nlist)  # keeps a reference
    fivf.cp.niter, fivf.cp.seed = index.niter, index.seed
    fivf.cp.max_points_per_centroid = index.max_points_per_centroid
    fivf.is_trained = True
    for l in range(index.nlist):
        ids, codes = index.list_ids(l), index.list_codes(l)
        if ids.size:
            fivf.invlists.add_entries(l, int(ids.size), faiss.swig_ptr(ids), faiss.swig_ptr(codes))
    fivf.ntotal = index.ntotal
    return fivf


def binary_from_faiss(faiss, index):
    """BinaryFlatIndex / BinaryIVFIndex from a faiss IndexBinaryFlat / IndexBinaryIVF."""
    from faiss.contrib.inspect_tools import get_invlist
    inner = faiss.downcast_IndexBinary(index)
    if type(inner) is faiss.IndexBinaryFlat:
        ours = BinaryFlatIndex(inner.d)
        if inner.ntotal:
            ours.add(faiss.vector_to_array(inner.xb).reshape(inner.ntotal, inner.code_size))
        return ours
    if type(inner) is faiss.IndexBinaryIVF:
        quantizer = faiss.downcast_IndexBinary(inner.quantizer)
        if type(quantizer) is not faiss.IndexBinaryFlat:
            raise ValueError(f"the binary IVF quantizer is a {type(quantizer).__name__}; only "
                             f"IndexBinaryFlat quantizers (exact routing) have a counterpart")
        cp = inner.cp
        ours = BinaryIVFIndex(inner.d, inner.nlist, cp.niter, cp.seed, cp.max_points_per_centroid)
        if quantizer.ntotal:
            ours.set_centroids(faiss.vector_to_array(quantizer.xb).reshape(inner.nlist, inner.code_size))
        parts = [get_invlist(inner.invlists, l) for l in range(inner.nlist)]
        ids = np.concatenate([p[0] for p in parts] + [np.empty(0, np.int64)])
        if not np.array_equal(np.sort(ids), np.arange(ids.shape[0])):
            raise ValueError(f"the faiss IndexBinaryIVF stores ids that are not 0..{ids.shape[0] - 1} "
                             f"(added with add_with_ids?); adanns_ref numbers codes by insertion order")
        codes = np.concatenate([p[1] for p in parts] + [np.empty((0, inner.code_size), np.uint8)])
        sizes = [len(p[0]) for p in parts]
        ours.set_lists(codes, ids, np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64))
        return ours
    raise TypeError(f"from_faiss reads IndexBinaryFlat and IndexBinaryIVF among binary indices, got "
                    f"{type(inner).__name__}")


def binary_search(faiss, index, q, k, nprobe):
    """faiss_search for binary faiss indices: q are uint8 codes (n, code_size)."""
    q = as_codes(q, "q", index.code_size)
    if isinstance(faiss.downcast_IndexBinary(index), faiss.IndexBinaryIVF):
        return index.search(q, k, params=faiss.SearchParametersIVF(nprobe=int(nprobe)))
    return index.search(q, k)
