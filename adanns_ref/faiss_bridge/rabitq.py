"""faiss bridge for the RaBitQ family (`adanns_ref.rabitq`), both directions.

- `rabitq_to_faiss(index)`: a `RaBitQIndex` -> faiss ``IndexRaBitQ`` (behind an
  ``IndexPreTransform(HadamardRotation)`` when the index has ``hr_seed``: faiss's "HR,RaBitQ"),
  an `IVFRaBitQIndex` -> ``IndexIVFRaBitQ`` with an ``IndexFlat`` coarse quantizer, holding our
  centroid(s), lists and code bytes as they are (nothing is re-encoded), so ``faiss.write_index``
  / ``read_index`` serve them. ``qb`` and (flat) ``centered`` are set on the faiss index;
  faiss's IVF has no ``centered`` field: pass ``IVFRaBitQSearchParameters(centered=...)``.
  faiss's index files keep ``qb`` but not ``centered`` (measured on 1.15.1: a read-back
  ``IndexRaBitQ`` has centered = False): set it again after ``read_index``.
- `rabitq_from_faiss(findex)`: the reverse, for those classes (nb_bits 1..9, L2 or IP).

The faiss objects search exactly as ours (tests: ``tests/test_rabitq_bridge.py``).
"""
import numpy as np

from .common import faiss_metric, import_faiss, our_metric
from ..rabitq import IVFRaBitQIndex, RaBitQIndex


def rabitq_to_faiss(index):
    """faiss IndexRaBitQ / IndexPreTransform(HR, IndexRaBitQ) / IndexIVFRaBitQ equal to `index`."""
    faiss = import_faiss()
    if not isinstance(index, (RaBitQIndex, IVFRaBitQIndex)):
        raise TypeError(f"rabitq_to_faiss takes a RaBitQIndex or IVFRaBitQIndex, got {type(index).__name__}")
    if not index.is_trained:
        raise ValueError(f"{type(index).__name__} is not trained; train it before exporting")
    metric = faiss_metric(faiss, index.metric)
    if isinstance(index, RaBitQIndex):
        inner = faiss.IndexRaBitQ(index.rabitq.d, metric, index.nb_bits)
        faiss.copy_array_to_vector(index.center, inner.center)
        inner.qb, inner.centered, inner.is_trained = index.qb, index.centered, True
        if index.ntotal:
            faiss.copy_array_to_vector(index.codes.ravel(), inner.codes)
        inner.ntotal = index.ntotal
        if index.rotation is None:
            return inner
        # faiss's Python layer keeps the rotation and `inner` alive as long as `out`
        return faiss.IndexPreTransform(faiss.HadamardRotation(index.d, index.hr_seed), inner)
    quantizer = (faiss.IndexFlatL2 if index.metric == "l2" else faiss.IndexFlatIP)(index.d)
    quantizer.add(index.centroids)
    out = faiss.IndexIVFRaBitQ(quantizer, index.d, index.nlist, metric, True, index.nb_bits)
    out.qb, out.is_trained = index.qb, True
    for l in range(index.nlist):
        ids, codes = index.list_ids(l), np.ascontiguousarray(index.list_codes(l))
        if ids.size:
            out.invlists.add_entries(l, ids.size, faiss.swig_ptr(ids), faiss.swig_ptr(codes))
    out.ntotal = index.ntotal
    out.referenced_objects = [quantizer]  # faiss's idiom: keep what `out` points to alive
    return out


def _flat_from(faiss, fi, d, hr_seed):
    out = RaBitQIndex(d, our_metric(faiss, fi.metric_type), fi.rabitq.nb_bits, fi.qb, bool(fi.centered),
                      hr_seed=hr_seed)
    if fi.is_trained:
        out.center = faiss.vector_to_array(fi.center).astype(np.float32)
        if fi.ntotal:
            out.codes = faiss.vector_to_array(fi.codes).reshape(fi.ntotal, fi.code_size)
    return out


def rabitq_from_faiss(findex):
    """Our index equal to a faiss IndexRaBitQ, IndexPreTransform(HadamardRotation, IndexRaBitQ)
    or IndexIVFRaBitQ (flat coarse quantizer)."""
    faiss = import_faiss()
    fi = faiss.downcast_index(findex)
    if isinstance(fi, faiss.IndexRaBitQ):
        return _flat_from(faiss, fi, fi.d, None)
    if isinstance(fi, faiss.IndexPreTransform):
        inner = faiss.downcast_index(fi.index)
        vt = faiss.downcast_VectorTransform(fi.chain.at(0)) if fi.chain.size() == 1 else None
        if not (isinstance(inner, faiss.IndexRaBitQ) and isinstance(vt, faiss.HadamardRotation)):
            raise ValueError("IndexPreTransform: only one HadamardRotation before an IndexRaBitQ "
                             "(faiss's 'HR,RaBitQ') is reproduced")
        return _flat_from(faiss, inner, vt.d_in, int(vt.seed))
    if isinstance(fi, faiss.IndexIVFRaBitQ):
        out = IVFRaBitQIndex(fi.d, fi.nlist, our_metric(faiss, fi.metric_type), fi.rabitq.nb_bits, fi.qb)
        if not fi.is_trained:
            return out
        q = faiss.downcast_index(fi.quantizer)
        if not isinstance(q, faiss.IndexFlat):
            raise ValueError(f"coarse quantizer {type(q).__name__}: only IndexFlat is supported")
        out.set_centroids(q.reconstruct_n(0, fi.nlist))
        codes, ids, offsets = [], [], [0]
        inv = fi.invlists
        for l in range(fi.nlist):
            n = inv.list_size(l)
            ids.append(faiss.rev_swig_ptr(inv.get_ids(l), n).copy() if n else np.empty(0, np.int64))
            codes.append(faiss.rev_swig_ptr(inv.get_codes(l), n * fi.code_size).copy().reshape(n, -1)
                         if n else np.empty((0, fi.code_size), np.uint8))
            offsets.append(offsets[-1] + n)
        out.set_lists(np.concatenate(codes), np.concatenate(ids), np.array(offsets, np.int64))
        return out
    raise TypeError(f"rabitq_from_faiss takes IndexRaBitQ, IndexPreTransform(HR, IndexRaBitQ) or "
                    f"IndexIVFRaBitQ, got {type(fi).__name__}")
