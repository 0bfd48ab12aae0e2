"""Conformance checks of the scalar, binary and RaBitQ code indices (`sq`, `sqindex`, `binary`,
`rabitq`) against faiss's ScalarQuantizer / IndexScalarQuantizer, IndexBinaryFlat,
IndexBinaryIVF, IndexRaBitQ (optionally behind "HR") and IndexIVFRaBitQ, and their bridge rows.
Registered in `checks.CHECKS` as "sq", "binary_flat", "binary_ivf", "rabitq" and "ivf_rabitq"."""
import numpy as np

from . import compare as cmp
from .. import faiss_bridge
from ..faiss_bridge.common import faiss_metric
from ..faiss_bridge.rabitq import rabitq_from_faiss, rabitq_to_faiss
from ..indices.binary import BinaryFlatIndex, BinaryIVFIndex
from ..indices.sqindex import SQIndex
from ..quantizers.binary import binarize
from ..rabitq import IVFRaBitQIndex, RaBitQIndex


def check_sq(case, n, d, qtype, metric, rangestat="minmax", rangestat_arg=0.0, nq=30, k=10, dup=0):
    """IndexScalarQuantizer trained and filled by faiss vs SQIndex: trained ranges and codes bit
    for bit, decode (sa_decode) bit for bit, search (distances bit for bit where faiss runs
    AVX-512; see `sqindex` for the one known last-bit gap), the bridge."""
    faiss = cmp.import_faiss()
    x, xq = cmp.blobs(n, d, n + 3 * d, dup), cmp.queries(nq, d, d)
    ref = faiss.IndexScalarQuantizer(d, getattr(faiss.ScalarQuantizer, "QT_" + qtype),
                                     faiss_metric(faiss, metric))
    ref.sq.rangestat = getattr(faiss.ScalarQuantizer, "RS_" + rangestat)
    ref.sq.rangestat_arg = rangestat_arg
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # faiss's per-dimension meanstd / quantiles training races
    try:
        ref.train(x)
    finally:
        faiss.omp_set_num_threads(threads)
    ref.add(x)
    ours = SQIndex(d, qtype, metric, rangestat, rangestat_arg)
    ours.train(x)
    ours.add(x)
    results, record = cmp.recorder("sq", case)
    trained = faiss.vector_to_array(ref.sq.trained)
    record("trained ranges bit-exact", cmp.arrays(trained[None], ours.sq.trained[None]))
    record("codes", cmp.codes(faiss.vector_to_array(ref.codes).reshape(ours.codes.shape), ours.codes))
    record("decode bit-exact", cmp.arrays(ref.sa_decode(ours.codes), ours.sq.decode(ours.codes)))
    mine = ours.search(xq, k)
    record("search", cmp.knn(ref.search(xq, k), mine))
    exported = faiss_bridge.to_faiss(ours)
    record("to_faiss search", cmp.knn(faiss_bridge.faiss_search(exported, xq, k), mine))
    back = faiss_bridge.from_faiss(exported)
    record("round trip codes", cmp.codes(ours.codes, back.codes))
    record("round trip search", cmp.identical(mine, back.search(xq, k)))
    return results


def _codes(n, d_bits, seed, dup=0):
    return binarize(cmp.blobs(n, d_bits, seed, dup, spread=0.5))


def _int_knn(ref, ours):
    """Hamming results: int32 distances and ids must be identical (ties included)."""
    (D_ref, I_ref), (D, I) = ref, ours
    return cmp.identical((D_ref.astype(np.float32), I_ref), (D.astype(np.float32), I))


def check_binary_flat(case, n, d_bits, nq=30, k=10, dup=0):
    """IndexBinaryFlat vs BinaryFlatIndex: Hamming distances and ids identical, ties included;
    the bridge."""
    faiss = cmp.import_faiss()
    xb, xq = _codes(n, d_bits, n + d_bits, dup), _codes(nq, d_bits, d_bits + 7)
    ref = faiss.IndexBinaryFlat(d_bits)
    ref.add(xb)
    ours = BinaryFlatIndex(d_bits)
    ours.add(xb)
    results, record = cmp.recorder("binary_flat", case)
    mine = ours.search(xq, k)
    record("search identical", _int_knn(ref.search(xq, k), mine))
    exported = faiss_bridge.to_faiss(ours)
    record("to_faiss search identical", _int_knn(faiss_bridge.faiss_search(exported, xq, k), mine))
    record("round trip search", _int_knn(mine, faiss_bridge.from_faiss(exported).search(xq, k)))
    return results


def check_binary_ivf(case, n, d_bits, nlist, nprobes, nq=30, k=10, dup=0):
    """IndexBinaryIVF trained and filled by faiss vs BinaryIVFIndex: binary centroids, list
    members, search per nprobe identical (ties included); the bridge."""
    from faiss.contrib.inspect_tools import get_invlist
    faiss = cmp.import_faiss()
    xb, xq = _codes(n, d_bits, n + d_bits, dup), _codes(nq, d_bits, d_bits + 7)
    quantizer = faiss.IndexBinaryFlat(d_bits)
    ref = faiss.IndexBinaryIVF(quantizer, d_bits, nlist)
    with cmp.quiet_stderr():
        ref.train(xb)
    ref.add(xb)
    ours = BinaryIVFIndex(d_bits, nlist)
    ours.train(xb)
    ours.add(xb)
    results, record = cmp.recorder("binary_ivf", case)
    record("centroids", cmp.codes(faiss.vector_to_array(quantizer.xb).reshape(nlist, -1), ours.centroids))
    lists_ok = all(np.array_equal(get_invlist(ref.invlists, l)[0], ours.list_ids(l)) for l in range(nlist))
    record("list members", (0.0, None if lists_ok else "list ids differ"))
    exported = faiss_bridge.to_faiss(ours)
    for nprobe in nprobes:
        mine = ours.search(xq, k, nprobe)
        record(f"search nprobe={nprobe}", _int_knn(cmp.ivf_search(ref, xq, k, nprobe), mine))
        record(f"to_faiss search nprobe={nprobe}",
               _int_knn(faiss_bridge.faiss_search(exported, xq, k, nprobe), mine))
    return results


def _rabitq_factory(nlist, nb_bits, hr):
    return ("HR," if hr else "") + (f"IVF{nlist}," if nlist else "") + "RaBitQ" + (str(nb_bits) if nb_bits > 1 else "")


def check_rabitq(case, n, d, metric, nb_bits, qbs=(0, 4, 8), hr=False, ks=(1, 10, 40), nq=30, dup=0):
    """faiss index_factory("[HR,]RaBitQ[nb]") trained and filled by faiss vs RaBitQIndex: centroid
    and code bytes bit for bit, search ids and distances bit for bit per (qb, centred, k), the
    bridge."""
    faiss = cmp.import_faiss()
    x, xq = cmp.blobs(n, d, n + d + nb_bits, dup), cmp.queries(nq, d, d + nb_bits)
    ref = faiss.index_factory(d, _rabitq_factory(0, nb_bits, hr), faiss_metric(faiss, metric))
    ref.train(x)
    ref.add(x)
    inner = faiss.downcast_index(ref.index if hr else ref)
    ours = RaBitQIndex(d, metric, nb_bits, hr_seed=12345 if hr else None).train(x)
    ours.add(x)
    results, record = cmp.recorder("rabitq", case)
    record("centroid bit-exact", cmp.arrays(faiss.vector_to_array(inner.center)[None], ours.center[None]))
    record("codes", cmp.codes(faiss.vector_to_array(inner.codes).reshape(ours.codes.shape), ours.codes))
    for qb in qbs:
        for centered in ((False, True) if qb else (False,)):
            inner.qb, inner.centered = qb, centered
            for k in ks:
                record(f"qb={qb} centered={centered} k={k} identical",
                       cmp.identical(ref.search(xq, k), ours.search(xq, k, qb=qb, centered=centered)))
    ours.qb, inner.qb, inner.centered = 4, 4, False
    record("to_faiss search", cmp.identical(rabitq_to_faiss(ours).search(xq, 10), ours.search(xq, 10)))
    record("from_faiss search", cmp.identical(ref.search(xq, 10), rabitq_from_faiss(ref).search(xq, 10)))
    return results


def check_ivf_rabitq(case, n, d, nlist, metric, nb_bits, nprobes, qbs=(0, 4, 8), ks=(1, 10, 120), nq=30, dup=0):
    """faiss index_factory("IVF{nlist},RaBitQ[nb]") vs IVFRaBitQIndex (our KMeans): centroids and
    list codes bit for bit, search per (nprobe, qb, centred, k) bit for bit, the bridge."""
    faiss = cmp.import_faiss()
    x, xq = cmp.blobs(n, d, n + nlist + nb_bits, dup), cmp.queries(nq, d, d + nlist)
    ref = faiss.index_factory(d, _rabitq_factory(nlist, nb_bits, False), faiss_metric(faiss, metric))
    ref.train(x)
    ref.add(x)
    ours = IVFRaBitQIndex(d, nlist, metric, nb_bits).train(x)
    ours.add(x)
    results, record = cmp.recorder("ivf_rabitq", case)
    record("centroids bit-exact", cmp.arrays(faiss.downcast_index(ref.quantizer).reconstruct_n(0, nlist),
                                             ours.centroids))
    inv = ref.invlists
    listed = [faiss.rev_swig_ptr(inv.get_codes(l), inv.list_size(l) * ref.code_size).copy()
              for l in range(nlist) if inv.list_size(l)]
    record("list codes", cmp.codes(np.concatenate(listed).reshape(ours.codes.shape), ours.codes))
    for nprobe in nprobes:
        for qb in qbs:
            for centered in ((False, True) if qb else (False,)):
                params = faiss.IVFRaBitQSearchParameters()
                params.qb, params.centered, params.nprobe = qb, centered, nprobe
                for k in ks:
                    record(f"nprobe={nprobe} qb={qb} centered={centered} k={k} identical",
                           cmp.identical(ref.search(xq, k, params=params),
                                         ours.search(xq, k, nprobe=nprobe, qb=qb, centered=centered)))
    exported, back = rabitq_to_faiss(ours), rabitq_from_faiss(ref)
    exported.nprobe = ref.nprobe = nprobes[-1]
    record("to_faiss search", cmp.identical(exported.search(xq, 10), ours.search(xq, 10, nprobe=nprobes[-1])))
    record("from_faiss search", cmp.identical(ref.search(xq, 10), back.search(xq, 10, nprobe=nprobes[-1])))
    return results


CODE_CHECKS = {"sq": check_sq, "binary_flat": check_binary_flat, "binary_ivf": check_binary_ivf,
               "rabitq": check_rabitq, "ivf_rabitq": check_ivf_rabitq}
