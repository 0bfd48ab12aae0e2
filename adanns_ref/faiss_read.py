"""Reading faiss indices back into ours: `from_faiss` and the readers of each faiss part.

The inverse of `faiss_bridge.to_faiss` (the conventions, the prefix chain and what faiss does
not hold are in `faiss_bridge`'s docstring): `_read_chain` splits a faiss index into the prefix
transforms `to_faiss` writes, an optional OPQ rotation and the inner index; the `_*_index`
readers rebuild our FlatIndex / IVFIndex / PQIndex / IVFPQIndex from that inner index (HNSW, SQ
and binary indices are read by `faiss_hnsw` and `faiss_bridge_codes`). Unsupported faiss types
or settings raise TypeError / ValueError naming them.
"""
import numpy as np

from ._validate import as_float32_matrix
from .faiss_bridge import (FaissAdannsIVF, _our_metric, _prefix_transforms, _require_faiss_object,
                           import_faiss)
from .faiss_hnsw import holds_hnsw, hnsw_from_faiss
from .flat import FlatIndex
from .ivf import IVFIndex
from .ivfpq import IVFPQIndex
from .opq import OPQ
from .pqindex import PQIndex
from .truncate import prefix

def _describe(faiss, t):
    """A comparable description of a faiss VectorTransform."""
    if isinstance(t, faiss.NormalizationTransform):
        return ("NormalizationTransform", t.d_in, float(t.norm))
    if isinstance(t, faiss.RemapDimensionsTransform):
        return ("RemapDimensionsTransform", t.d_in, t.d_out, tuple(faiss.vector_to_array(t.map).tolist()))
    return (type(t).__name__, t.d_in, t.d_out)


def _read_chain(faiss, index):
    """Split a faiss index into (D, normalize, OPQMatrix or None, inner index) for the chains
    `to_faiss` writes: the prefix transforms, then optionally an OPQMatrix."""
    if not isinstance(index, faiss.IndexPreTransform):
        return index.d, False, None, index
    inner = faiss.downcast_index(index.index)
    ts = [faiss.downcast_VectorTransform(index.chain.at(i)) for i in range(index.chain.size())]
    # an OPQMatrix, or the LinearTransform faiss.read_index makes of one
    opq = ts.pop() if ts and isinstance(ts[-1], faiss.LinearTransform) else None
    if opq is not None and (opq.have_bias or not opq.is_orthonormal or not opq.d_in == opq.d_out == inner.d):
        raise ValueError(f"{type(opq).__name__} {opq.d_in} -> {opq.d_out} (bias {opq.have_bias}) before "
                         f"a {inner.d}-dim index: only square rotations without bias (OPQ) have an "
                         f"adanns_ref counterpart")
    D = ts[0].d_in if ts else inner.d
    found = [_describe(faiss, t) for t in ts]
    for normalize in (False, True):
        if found == [_describe(faiss, t) for t in _prefix_transforms(faiss, D, inner.d, normalize)]:
            return D, normalize, opq, inner
    raise ValueError(f"unsupported transform chain {found}; from_faiss reads the Matryoshka prefix "
                     f"chain to_faiss writes (NormalizationTransform, RemapDimensionsTransform keeping "
                     f"the first dims, NormalizationTransform), optionally followed by an OPQMatrix")


def _read_lists(faiss, ivf):
    """(ids, lists, codes) of every inverted list of a faiss IVF, in list order; ids checked to be
    a permutation of 0..ntotal-1 (ours number vectors by insertion)."""
    from faiss.contrib.inspect_tools import get_invlist
    parts = [get_invlist(ivf.invlists, l) for l in range(ivf.nlist)]
    ids = np.concatenate([p[0] for p in parts] + [np.empty(0, np.int64)])
    codes = np.concatenate([p[1] for p in parts] + [np.empty((0, ivf.code_size), np.uint8)])
    lists = np.repeat(np.arange(ivf.nlist, dtype=np.int64), [len(p[0]) for p in parts])
    if not np.array_equal(np.sort(ids), np.arange(ids.shape[0])):
        raise ValueError(f"the faiss IVF stores ids that are not 0..{ids.shape[0] - 1} (added with "
                         f"add_with_ids?); adanns_ref indices number vectors by insertion order")
    return ids, lists, codes


def _quantizer_centroids(faiss, ivf):
    quantizer = faiss.downcast_index(ivf.quantizer)
    if not isinstance(quantizer, faiss.IndexFlat):
        raise ValueError(f"the IVF quantizer is a {type(quantizer).__name__}; adanns_ref routes "
                         f"exactly, so only IndexFlat quantizers have a counterpart")
    _check_centroid_count(quantizer, ivf.nlist)
    return quantizer.reconstruct_n(0, ivf.nlist)


def _check_centroid_count(quantizer, nlist):
    if quantizer.ntotal != nlist:
        raise ValueError(f"the IVF quantizer holds {quantizer.ntotal} centroids but the IVF has "
                         f"nlist={nlist} lists; train the faiss index (or add nlist centroids to "
                         f"its quantizer) before converting it")


def _from_independent(faiss, both, D, normalize, xb):
    """IVFIndex (AdANNS-IVF) from the IndexIVFIndependentQuantizer `faiss_serve.adanns_ivf`
    writes; any other layout raises ValueError / TypeError naming it."""
    ivf, quantizer = faiss.downcast_index(both.index_ivf), faiss.downcast_index(both.quantizer)
    flat, q_chain = quantizer, []
    if isinstance(quantizer, faiss.IndexPreTransform):
        flat = faiss.downcast_index(quantizer.index)
        q_chain = [faiss.downcast_VectorTransform(quantizer.chain.at(i))
                   for i in range(quantizer.chain.size())]
    if type(ivf) is not faiss.IndexIVFFlat or not isinstance(flat, faiss.IndexFlat):
        raise TypeError(f"an IndexIVFIndependentQuantizer over a {type(ivf).__name__} routed by a "
                        f"{type(flat).__name__} has no counterpart; from_faiss reads the "
                        f"IndexIVFFlat + IndexFlat form to_faiss(IVFIndex, writable=True) writes")
    d_c, d_s = flat.d, ivf.d
    vt = [] if both.vt is None else [faiss.downcast_VectorTransform(both.vt)]
    if normalize:
        want_q = _prefix_transforms(faiss, d_s, d_c, False) + [faiss.NormalizationTransform(d_c, 2.0)]
        want_vt = []
    else:
        want_q = _prefix_transforms(faiss, D, d_c, False)
        want_vt = [faiss.RemapDimensionsTransform(D, d_s, False)] if d_s < D else []
    found = ([_describe(faiss, t) for t in q_chain], [_describe(faiss, t) for t in vt])
    if found != ([_describe(faiss, t) for t in want_q], [_describe(faiss, t) for t in want_vt]) \
            or flat.metric_type != ivf.metric_type:
        raise ValueError(f"unsupported IndexIVFIndependentQuantizer layout (quantizer chain, vt) = "
                         f"{found}; from_faiss reads the one to_faiss(IVFIndex, writable=True) writes")
    _check_centroid_count(flat, ivf.nlist)
    return _ivf_index(faiss, ivf, flat.reconstruct_n(0, ivf.nlist), D, d_c, normalize, xb)


def _full_vectors(xb, ids, stored, D, d_s, normalize):
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


def _ivf_index(faiss, ivf, centroids, D, d_c, normalize, xb):
    metric = _our_metric(faiss, ivf.metric_type)
    ids, lists, codes = _read_lists(faiss, ivf)
    stored = np.ascontiguousarray(codes).view(np.float32).reshape(-1, ivf.d)
    index = IVFIndex(D, ivf.nlist, d_c=d_c, d_s=ivf.d, metric=metric, normalize=normalize,
                     niter=ivf.cp.niter, seed=ivf.cp.seed,
                     max_points_per_centroid=ivf.cp.max_points_per_centroid)
    index.set_centroids(centroids)
    full = _full_vectors(xb, ids, stored, D, ivf.d, normalize)
    order = np.empty_like(lists)
    order[ids] = lists
    index.add_preassigned(full, order)
    return index


def _pq_index(faiss, fpq, D, normalize, opq):
    if fpq.metric_type != faiss.METRIC_L2 or fpq.search_type != faiss.IndexPQ.ST_PQ:
        raise ValueError("only IndexPQ with METRIC_L2 and search_type ST_PQ (plain ADC) has an "
                         "adanns_ref counterpart (PQIndex)")
    pq = fpq.pq
    index = PQIndex(D, pq.M, pq.nbits, opq=opq is not None, prefix_dim=fpq.d, normalize=normalize,
                    seed=pq.cp.seed, opq_niter=_opq_niter(opq))
    index.pq.set_codebooks(_codebooks(faiss, pq))
    if opq is not None:
        index.opq = _our_opq(opq, pq.M, pq.cp.seed)
    from faiss.contrib.inspect_tools import get_flat_codes
    index.codes = np.ascontiguousarray(get_flat_codes(fpq))
    return index


def _codebooks(faiss, fpq):
    return faiss.vector_to_array(fpq.centroids).reshape(fpq.M, fpq.ksub, fpq.dsub)


def _rotation(fopq):
    from faiss.contrib.inspect_tools import get_LinearTransform_matrix
    return np.ascontiguousarray(get_LinearTransform_matrix(fopq)[0], dtype=np.float32)


def _opq_niter(fopq):
    """OPQ iterations an OPQMatrix carries; 50 (the default) when there is none or it was read
    from a file (faiss writes it as a LinearTransform)."""
    return getattr(fopq, "niter", 50)


def _our_opq(fopq, M, seed):
    """Our OPQ holding the rotation of a faiss OPQMatrix / rotation LinearTransform."""
    opq = OPQ(fopq.d_in, M, niter=_opq_niter(fopq), seed=seed)
    opq.A = _rotation(fopq)
    return opq


def _ivfpq_index(faiss, ivf, opq, centroids, scoring, D, d_c, normalize):
    if ivf.polysemous_ht:
        raise ValueError(f"IndexIVFPQ with polysemous_ht={ivf.polysemous_ht} filters by Hamming "
                         f"distance; only plain ADC (polysemous_ht=0) has a counterpart")
    ids, lists, codes = _read_lists(faiss, ivf)
    offsets = np.zeros(ivf.nlist + 1, np.int64)
    np.cumsum(np.bincount(lists, minlength=ivf.nlist), out=offsets[1:])
    index = IVFPQIndex(D, ivf.nlist, ivf.pq.M, ivf.pq.nbits, d_c=d_c, d_s=ivf.d, opq=opq is not None,
                       by_residual=ivf.by_residual, metric=_our_metric(faiss, ivf.metric_type),
                       normalize=normalize, niter=ivf.cp.niter, seed=ivf.cp.seed,
                       opq_niter=_opq_niter(opq))
    index.set_quantizers(centroids, scoring, _codebooks(faiss, ivf.pq),
                         None if opq is None else _rotation(opq))
    return index.set_lists(codes, ids, offsets)


def from_faiss(index, xb=None):
    """Our index equivalent to a faiss index built as `to_faiss` builds them (or a FaissAdannsIVF).

    xb: the D-dim vectors in id order, needed only to rebuild an IVFIndex whose faiss side holds
    prefixes (normalize=True or d_s < D; see the module docstring). Unsupported faiss types or
    settings raise TypeError / ValueError naming them; so do a non-faiss object (TypeError) and an
    untrained faiss index (ValueError: its codebooks / centroids are zeros, not trained values).
    """
    faiss = import_faiss()
    _require_faiss_object(faiss, index, "from_faiss")
    if isinstance(index, FaissAdannsIVF):
        return _from_adanns(faiss, index, xb)
    from . import faiss_bridge_codes as codes_bridge  # SQ and binary indices
    if isinstance(index, faiss.IndexBinary):
        return codes_bridge.binary_from_faiss(faiss, index)
    outer = faiss.downcast_index(index)  # a non-owning view: `index` keeps the object alive
    if holds_hnsw(faiss, outer):
        return hnsw_from_faiss(faiss, outer, xb)
    D, normalize, opq, inner = _read_chain(faiss, outer)
    if type(inner) in (faiss.IndexFlat, faiss.IndexFlatL2, faiss.IndexFlatIP):
        if inner is not outer:
            raise ValueError("a FlatIndex has no transforms; read the inner index "
                             "(faiss.downcast_index(index.index)) and pass prefix(q, d) queries")
        from faiss.contrib.inspect_tools import get_flat_data
        flat = FlatIndex(inner.d, _our_metric(faiss, inner.metric_type))
        flat.add(get_flat_data(inner))
        return flat
    if type(inner) is faiss.IndexIVFFlat and opq is None:
        return _ivf_index(faiss, inner, _quantizer_centroids(faiss, inner), D, inner.d, normalize, xb)
    if type(inner) is faiss.IndexIVFIndependentQuantizer and opq is None:
        return _from_independent(faiss, inner, D, normalize, xb)
    if type(inner) is faiss.IndexPQ:
        return _pq_index(faiss, inner, D, normalize, opq)
    if type(inner) is faiss.IndexScalarQuantizer:
        return codes_bridge.sq_from_faiss(faiss, outer)
    if type(inner) is faiss.IndexIVFPQ:
        scoring = _quantizer_centroids(faiss, inner)
        # faiss routes rotated vectors against s_l = R c_l; ours routes c_l: recover it (rounding)
        centroids = scoring if opq is None else scoring @ _rotation(opq)
        return _ivfpq_index(faiss, inner, opq, centroids, scoring, D, inner.d, normalize)
    raise TypeError(f"from_faiss reads IndexFlat, IndexIVFFlat, IndexIVFIndependentQuantizer, "
                    f"IndexPQ, IndexIVFPQ, IndexHNSWFlat, "
                    f"IndexScalarQuantizer, IndexBinaryFlat and IndexBinaryIVF (optionally behind "
                    f"the chains to_faiss writes) and FaissAdannsIVF, got "
                    f"{type(inner).__name__}" + (" behind an OPQMatrix" if opq is not None else ""))


def _from_adanns(faiss, wrapper, xb):
    inner, opq = wrapper._inner()
    _check_centroid_count(wrapper.quantizer, inner.nlist)
    centroids = wrapper.quantizer.reconstruct_n(0, inner.nlist)
    if type(inner) is faiss.IndexIVFFlat and opq is None:
        return _ivf_index(faiss, inner, centroids, wrapper.d, wrapper.d_c, wrapper.normalize, xb)
    if type(inner) is faiss.IndexIVFPQ:
        return _ivfpq_index(faiss, inner, opq, centroids, _quantizer_centroids(faiss, inner),
                            wrapper.d, wrapper.d_c, wrapper.normalize)
    raise TypeError(f"FaissAdannsIVF with a {type(inner).__name__} inside is not supported")
