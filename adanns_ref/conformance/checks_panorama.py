"""Conformance of the Panorama forms (`adanns_ref.panorama`) against faiss 1.15.1's
IndexFlatL2/IPPanorama, IndexIVFFlatPanorama and IndexRefinePanorama: storage (level codes and
tail norms) bit for bit, search ids and distances (bit for bit unless a level width is 8..64 in
steps of 8, where faiss's unrolled dot product rounds differently: then to rtol 1e-5 with ties
as sets), faiss's pruning statistics, and the bridge round trip."""
import numpy as np

from .. import faiss_bridge
from ..indices.flat import FlatIndex
from ..panorama import PanoramaFlatIndex, PanoramaIVFIndex, PanoramaRefineIndex
from . import compare as cmp


def unrolled(bounds):
    w = np.diff(bounds)
    return bool(np.any((w % 8 == 0) & (w <= 64)))


def stats_check(ours, faiss):
    s = faiss.cvar.indexPanorama_stats
    ref = (int(s.total_dims), int(s.total_dims_scanned))
    mine = (ours.last_search_stats.total_dims, ours.last_search_stats.total_dims_scanned)
    msg = None if ref == mine else f"faiss (total_dims, total_dims_scanned) {ref}, ours {mine}"
    return float(abs(ref[1] - mine[1])), msg


def search_check(ref, mine, bounds):
    return cmp.knn(ref, mine, atol=1e-4) if unrolled(bounds) else cmp.identical(ref, mine)


def searched(faiss, ref_search, ours_search):
    """Run faiss then ours, with faiss's global statistics reset before faiss's search, which
    runs on one thread: faiss adds each query's counters to one global struct without a lock
    ("not robust to internal threading", PanoramaStats.h)."""
    faiss.cvar.indexPanorama_stats.reset()
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        ref = ref_search()
    finally:
        faiss.omp_set_num_threads(before)
    return ref, ours_search()


def check_panorama_flat(case, n, d, n_levels, k, metric, batch_size, nq=30, dup=0):
    """IndexFlat*Panorama vs PanoramaFlatIndex: layout, search, statistics, bridge."""
    faiss = cmp.import_faiss()
    xb, xq = cmp.blobs(n, d, n + d, dup), cmp.queries(nq, d, d)
    mt = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
    with cmp.quiet_stderr():
        ref = faiss.IndexFlatPanorama(d, mt, n_levels, batch_size)
    ours = PanoramaFlatIndex(d, n_levels, metric, batch_size)
    ref.add(xb)
    ours.add(xb)
    results, record = cmp.recorder("panorama_flat", case)
    record("level codes bit-exact", cmp.arrays(faiss.vector_to_array(ref.codes).view(np.float32)[None],
                                               ours.level_codes()[None]))
    record("tail norms bit-exact", cmp.arrays(faiss.vector_to_array(ref.cum_sums)[None],
                                              ours.tail_norms()[None]))
    D_ref, mine = searched(faiss, lambda: ref.search(xq, k), lambda: ours.search(xq, k))
    record("pruning statistics", stats_check(ours, faiss))
    record("search", search_check(D_ref, mine, ours.bounds))
    back = faiss_bridge.from_faiss(faiss_bridge.to_faiss(ours))
    record("round trip search", cmp.identical(mine, back.search(xq, k)))
    return results


def check_panorama_ivf(case, n, d, nlist, n_levels, metric, nprobes, k, batch_size, nq=30,
                       dup=0):
    """IndexIVFFlatPanorama trained by faiss vs PanoramaIVFIndex: centroids, list ids, search
    per nprobe, statistics, bridge."""
    faiss = cmp.import_faiss()
    xb, xq = cmp.blobs(n, d, n + d, dup), cmp.queries(nq, d, d)
    mt = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
    quantizer = faiss.IndexFlat(d, mt)
    with cmp.quiet_stderr():
        ref = faiss.IndexIVFFlatPanorama(quantizer, d, nlist, n_levels, mt, False, batch_size)
        ref.referenced_objects = [quantizer]
        ref.train(xb)
    ref.add(xb)
    ours = PanoramaIVFIndex(d, nlist, n_levels, metric, batch_size)
    ours.train(xb)
    ours.add(xb)
    results, record = cmp.recorder("panorama_ivf", case)
    record("centroids bit-exact", cmp.arrays(quantizer.reconstruct_n(0, nlist), ours.centroids))
    same = all(np.array_equal(faiss.rev_swig_ptr(ref.invlists.get_ids(l), ref.invlists.list_size(l)),
                              ours.list_ids(l)) for l in range(nlist))
    record("list ids", (0.0, None if same else "list contents differ"))
    for nprobe in nprobes:
        ref.nprobe = nprobe
        D_ref, mine = searched(faiss, lambda: ref.search(xq, k), lambda: ours.search(xq, k, nprobe))
        record(f"statistics nprobe={nprobe}", stats_check(ours, faiss))
        record(f"search nprobe={nprobe}", search_check(D_ref, mine, ours.bounds))
    back = faiss_bridge.from_faiss(faiss_bridge.to_faiss(ours))
    record("round trip search", cmp.identical(mine, back.search(xq, k, nprobes[-1])))
    return results


def check_panorama_refine(case, n, d, n_levels, metric, k, k_factor, nq=30, dup=0):
    """IndexRefinePanorama(IndexFlat, IndexFlat*Panorama batch 1) vs PanoramaRefineIndex over
    FlatIndex: search and statistics (the refine dots follow `_simd` order 1, faiss's AVX-512
    order: bit for bit there), bridge."""
    faiss = cmp.import_faiss()
    xb, xq = cmp.blobs(n, d, n + d, dup), cmp.queries(nq, d, d)
    mt = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
    with cmp.quiet_stderr():
        refine = faiss.IndexFlatPanorama(d, mt, n_levels, 1)
    base = faiss.IndexFlat(d, mt)
    ref = faiss.IndexRefinePanorama(base, refine)
    ref.referenced_objects = [base, refine]
    ref.k_factor = k_factor
    ref.add(xb)
    ours = PanoramaRefineIndex(FlatIndex(d, metric), n_levels, metric, k_factor)
    ours.add(xb)
    results, record = cmp.recorder("panorama_refine", case)
    _, labels = base.search(xq, int(k * k_factor))  # one shortlist for both: ties in the base aside
    D_ref, mine = searched(faiss, lambda: ref.search(xq, k), lambda: ours.search_subset(xq, k, labels))
    record("pruning statistics", stats_check(ours, faiss))
    from ..core.simd import faiss_runs_avx512
    record("search", cmp.identical(D_ref, mine) if faiss_runs_avx512(faiss)
           else cmp.knn(D_ref, mine, atol=1e-4))
    back = faiss_bridge.from_faiss(faiss_bridge.to_faiss(ours))
    record("round trip search", cmp.identical(ours.search(xq, k), back.search(xq, k)))
    return results


PANORAMA_CHECKS = {"panorama_flat": check_panorama_flat, "panorama_ivf": check_panorama_ivf,
                   "panorama_refine": check_panorama_refine}
