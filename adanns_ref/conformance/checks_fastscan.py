"""Conformance checks of 4-bit PQ fast-scan (`fastscan`) against faiss's IndexPQFastScan and
IndexIVFPQFastScan (implem 12 / 13, bbs = 32), and their bridge rows. Registered in
`checks.CHECKS` as "pq_fastscan" and "ivfpq_fastscan"."""

from ..faiss_bridge.fastscan import fastscan_from_faiss, fastscan_to_faiss
from ..fastscan import IVFPQFastScanIndex, PQFastScanIndex
from . import compare as cmp


def _search_rows(record, ref_search, ours_search, ks):
    """k <= 20 (heap): ids and distances identical; k > 20 (reservoir): distances identical, ids
    up to ties (see `fastscan.scan`)."""
    for k in ks:
        ref, mine = ref_search(k), ours_search(k)
        if k <= 20:
            record(f"search k={k} identical", cmp.identical(ref, mine))
        else:
            record(f"search k={k} distances bit-exact", cmp.arrays(ref[0], mine[0]))
            record(f"search k={k} ids up to ties", cmp.knn(ref, mine, rtol=0, atol=0))


def check_pq_fastscan(case, n, d, M, metric, ks=(1, 10, 20, 40), nq=30, dup=0):
    """IndexPQFastScan trained by faiss vs PQFastScanIndex trained by us: codebooks and packed
    codes bit for bit, search, the bridge."""
    faiss = cmp.import_faiss()
    x, xq = cmp.blobs(n, d, n + 5 * M, dup), cmp.queries(nq, d, d + M)
    ref = faiss.IndexPQFastScan(d, M, 4, faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT, 32)
    ref.train(x)
    ref.add(x)
    ours = PQFastScanIndex(d, M, metric=metric, allow_small=True)
    ours.train(x)
    ours.add(x)
    results, record = cmp.recorder("pq_fastscan", case)
    record("codebooks bit-exact", cmp.arrays(faiss.vector_to_array(ref.pq.centroids).reshape(M, -1),
                                             ours.pq.codebooks.reshape(M, -1)))
    packed = faiss.rev_swig_ptr(ref.codes.get(), ref.codes.size()).copy().reshape(ours.codes.shape)
    record("packed codes", cmp.codes(packed, ours.codes))
    _search_rows(record, lambda k: ref.search(xq, k), lambda k: ours.search(xq, k), ks)
    exported = fastscan_to_faiss(ours)
    record("to_faiss search", cmp.identical(exported.search(xq, 10), ours.search(xq, 10)))
    back = fastscan_from_faiss(ref)
    record("from_faiss search", cmp.identical(ref.search(xq, 10), back.search(xq, 10)))
    return results


def check_ivfpq_fastscan(case, n, d, nlist, M, metric, nprobes, ks=(1, 10, 20, 30), nq=30, dup=0,
                         by_residual=False):
    """IndexIVFPQFastScan (by_residual False, or True: "...x4fsr", 3-D tables and uint16 biases)
    trained by faiss vs IVFPQFastScanIndex trained by us: centroids, codebooks, search per
    nprobe, the bridge."""
    faiss = cmp.import_faiss()
    x, xq = cmp.blobs(n, d, n + 7 * M, dup), cmp.queries(nq, d, d + nlist)
    quantizer = faiss.IndexFlatL2(d) if metric == "l2" else faiss.IndexFlatIP(d)
    ref = faiss.IndexIVFPQFastScan(quantizer, d, nlist, M, 4,
                                   faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT, 32)
    ref.by_residual = by_residual
    ref.train(x)
    ref.add(x)
    ours = IVFPQFastScanIndex(d, nlist, M, metric=metric, allow_small=True, by_residual=by_residual)
    ours.train(x)
    ours.add(x)
    results, record = cmp.recorder("ivfpq_fastscan", case)
    record("centroids bit-exact", cmp.arrays(quantizer.reconstruct_n(0, nlist), ours.ivf.centroids))
    record("codebooks bit-exact", cmp.arrays(faiss.vector_to_array(ref.pq.centroids).reshape(M, -1),
                                             ours.pq.codebooks.reshape(M, -1)))
    for nprobe in nprobes:
        ref.nprobe = nprobe
        _search_rows(lambda c, dm: record(f"nprobe={nprobe} {c}", dm), lambda k: ref.search(xq, k),
                     lambda k: ours.search(xq, k, nprobe=nprobe), ks)
    exported = fastscan_to_faiss(ours)
    exported.nprobe = nprobes[-1]
    record("to_faiss search", cmp.identical(exported.search(xq, 10), ours.search(xq, 10, nprobe=nprobes[-1])))
    back = fastscan_from_faiss(ref)
    record("from_faiss search", cmp.identical(ref.search(xq, 10), back.search(xq, 10, nprobe=nprobes[-1])))
    return results


FASTSCAN_CHECKS = {"pq_fastscan": check_pq_fastscan, "ivfpq_fastscan": check_ivfpq_fastscan}
