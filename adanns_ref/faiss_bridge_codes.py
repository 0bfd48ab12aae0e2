"""faiss bridge for scalar and binary codes (the quantized half of `faiss_bridge`).

    ours                                     faiss
    SQIndex(d, qtype, metric, prefix_dim)    [prefix chain] IndexScalarQuantizer(prefix_dim, QT_*)
    BinaryFlatIndex(d_bits)                  IndexBinaryFlat(d_bits)
    BinaryIVFIndex(d_bits, nlist)            IndexBinaryIVF(IndexBinaryFlat(d_bits), d_bits, nlist)

`faiss_bridge.to_faiss` / `from_faiss` / `faiss_search` dispatch here for these types. Nothing
is re-encoded or retrained: faiss gets our `trained` ranges, centroids, inverted lists and codes
byte for byte (``add_sa_codes``, ``invlists.add_entries``), and reading back copies faiss's. The
prefix chain of an SQIndex is `faiss_bridge`'s (NormalizationTransform, RemapDimensionsTransform,
NormalizationTransform). Binary indices take uint8 codes, so `faiss_search` passes the query
codes through (`binary.binarize` makes them from vectors). A BinaryIVFIndex read from faiss keeps
faiss's list order (its scan order), so both search identically; faiss's ids must be 0..n-1
(no add_with_ids). Training-only parameters (niter, seed, max_points_per_centroid) travel in
faiss's ``cp`` in memory (faiss's index files do not store it: read back, they are faiss's
defaults); faiss's other qtypes (6bit, 8bit_direct, TurboQuant, EDEN, ...) have no counterpart
here (ValueError).
"""
import numpy as np

from .binary import BinaryFlatIndex, BinaryIVFIndex, as_codes
from .faiss_bridge import _faiss_metric, _our_metric, _prefix_transforms, _pretransform, _require
from .faiss_read import _read_chain
from .sq import QTYPES, RANGESTATS
from .sqindex import SQIndex

CODE_INDEX_TYPES = (SQIndex, BinaryFlatIndex, BinaryIVFIndex)


def _qt(faiss, qtype):
    return getattr(faiss.ScalarQuantizer, "QT_" + qtype)


def to_faiss_codes(faiss, index):
    """The faiss object equivalent to a trained SQIndex / BinaryFlatIndex / BinaryIVFIndex."""
    if isinstance(index, SQIndex):
        _require(index.is_trained, index)
        sq = index.sq
        fi = faiss.IndexScalarQuantizer(index.dim, _qt(faiss, sq.qtype), _faiss_metric(faiss, index.metric))
        fi.sq.rangestat = getattr(faiss.ScalarQuantizer, "RS_" + sq.rangestat)
        fi.sq.rangestat_arg = float(sq.rangestat_arg)
        faiss.copy_array_to_vector(sq.trained, fi.sq.trained)
        fi.is_trained = True
        if index.ntotal:
            fi.add_sa_codes(index.codes)
        return _pretransform(faiss, _prefix_transforms(faiss, index.d, index.dim, index.normalize), fi)
    if isinstance(index, BinaryFlatIndex):
        fb = faiss.IndexBinaryFlat(index.d_bits)
        if index.ntotal:
            fb.add(index.codes)
        return fb
    if isinstance(index, BinaryIVFIndex):
        _require(index.is_trained, index)
        quantizer = faiss.IndexBinaryFlat(index.d_bits)
        quantizer.add(index.centroids)
        fivf = faiss.IndexBinaryIVF(quantizer, index.d_bits, index.nlist)  # keeps a reference
        fivf.cp.niter, fivf.cp.seed = index.niter, index.seed
        fivf.cp.max_points_per_centroid = index.max_points_per_centroid
        fivf.is_trained = True
        for l in range(index.nlist):
            a, b = index._offsets[l], index._offsets[l + 1]
            if b > a:
                ids = np.ascontiguousarray(index._ids[a:b])
                codes = np.ascontiguousarray(index._codes[a:b])
                fivf.invlists.add_entries(l, int(b - a), faiss.swig_ptr(ids), faiss.swig_ptr(codes))
        fivf.ntotal = index.ntotal
        return fivf
    raise TypeError(f"to_faiss takes a FlatIndex, IVFIndex, PQIndex, IVFPQIndex, HNSWIndex, SQIndex, "
                    f"BinaryFlatIndex or BinaryIVFIndex, got {type(index).__name__}")


def sq_from_faiss(faiss, outer):
    """SQIndex from a (prefix-chained) faiss IndexScalarQuantizer."""
    D, normalize, opq, inner = _read_chain(faiss, outer)
    if opq is not None:
        raise ValueError("an IndexScalarQuantizer behind a rotation has no adanns_ref counterpart")
    names = {int(_qt(faiss, q)): q for q in QTYPES}
    if int(inner.sq.qtype) not in names:
        raise ValueError(f"faiss ScalarQuantizer qtype {inner.sq.qtype} has no adanns_ref counterpart; "
                         f"supported: {', '.join('QT_' + q for q in QTYPES)}")
    stats = {int(getattr(faiss.ScalarQuantizer, "RS_" + r)): r for r in RANGESTATS}
    if int(inner.sq.rangestat) not in stats:
        raise ValueError(f"faiss rangestat {inner.sq.rangestat} has no adanns_ref counterpart")
    index = SQIndex(D, names[int(inner.sq.qtype)], _our_metric(faiss, inner.metric_type),
                    stats[int(inner.sq.rangestat)], float(inner.sq.rangestat_arg), prefix_dim=inner.d,
                    normalize=normalize)
    trained = faiss.vector_to_array(inner.sq.trained)
    if inner.is_trained and trained.size:
        index.sq.set_trained(trained)
    codes = faiss.vector_to_array(inner.codes).reshape(inner.ntotal, inner.code_size)
    index.codes = as_codes(codes, "faiss codes", index.sq.code_size)
    return index


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
        ours._set_lists(codes, ids, np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64))
        return ours
    raise TypeError(f"from_faiss reads IndexBinaryFlat and IndexBinaryIVF among binary indices, got "
                    f"{type(inner).__name__}")


def faiss_search_codes(faiss, index, q, k, nprobe):
    """faiss_search for binary faiss indices: q are uint8 codes (n, code_size)."""
    q = as_codes(q, "q", index.code_size)
    if isinstance(faiss.downcast_IndexBinary(index), faiss.IndexBinaryIVF):
        return index.search(q, k, params=faiss.SearchParametersIVF(nprobe=int(nprobe)))
    return index.search(q, k)
