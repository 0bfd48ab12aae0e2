"""One ``check_<component>(case, **params)`` per component: build the faiss counterpart of one
case, run both sides, return one `Result` per check. `CHECKS` maps component names to them."""
import numpy as np

from . import compare as cmp
from .. import faiss_bridge
from ..core.truncate import prefix
from ..evaluation import metrics
from ..faiss_bridge.common import faiss_metric
from ..faiss_bridge.pq import codebooks, opq_matrix
from ..indices.flat import FlatIndex
from ..indices.hnsw.index import HNSWIndex
from ..indices.ivf import IVFIndex
from ..indices.ivfpq import IVFPQIndex
from ..indices.pqindex import PQIndex
from ..quantizers.kmeans import KMeans
from ..quantizers.opq import OPQ, random_rotation
from ..quantizers.pq import ProductQuantizer
from .checks_codes import CODE_CHECKS


def check_kmeans(case, n, d, k, niter=25, spherical=False, dup=0, max_ppc=256, nredo=1, gemm=False):
    """faiss.Kmeans vs KMeans: centroids and objectives bit for bit on the exact path (n * d <
    128000), to rounding on the GEMM path; assignments of the training points."""
    faiss = cmp.import_faiss()
    x = cmp.blobs(n, d, 11 * n + d, dup)
    ref = faiss.Kmeans(d, k, niter=niter, seed=1234, spherical=spherical, nredo=nredo,
                       max_points_per_centroid=max_ppc)
    with cmp.quiet_stderr():
        ref.train(x)
    ours = KMeans(k, niter=niter, spherical=spherical, nredo=nredo, max_points_per_centroid=max_ppc).fit(x)
    results, record = cmp.recorder("kmeans", case)
    exact = "" if gemm else " bit-exact"
    splits = f" ({int(ours.nsplit.sum())} cluster splits)" if ours.nsplit.sum() else ""
    record("centroids" + exact + splits, cmp.arrays(ref.centroids, ours.centroids, not gemm, rtol=1e-4, atol=1e-5))
    record("objective" + exact, cmp.arrays(ref.obj[None], ours.obj[None], not gemm, rtol=1e-5, atol=0))
    D_ref, I_ref = ref.index.search(x, 1)
    D, I = ours.assign(x)
    atol = cmp.form_atol(x, ours.centroids) if gemm else 1e-6
    record("assignment", cmp.knn((D_ref, I_ref), (D[:, None], I[:, None]), atol=atol))
    return results


def check_flat(case, n, d, nq, k, metric, dup=0):
    """IndexFlatL2/IP vs FlatIndex; the bridge round trip."""
    cmp.import_faiss()  # without faiss: the ImportError with the install hint, before any work
    xb, xq = cmp.blobs(n, d, n + d, dup), cmp.queries(nq, d, d)
    ours = FlatIndex(d, metric)
    ours.add(xb)
    ref = _faiss_flat(d, metric)
    ref.add(xb)
    results, record = cmp.recorder("flat", case)
    mine = ours.search(xq, k)
    record("search", cmp.knn(ref.search(xq, k), mine, atol=cmp.form_atol(xq, xb)))
    back = faiss_bridge.from_faiss(faiss_bridge.to_faiss(ours))
    record("round trip vectors", cmp.arrays(ours.xb, back.xb))
    record("round trip search", cmp.identical(mine, back.search(xq, k)))
    return results


def _faiss_flat(d, metric):
    faiss = cmp.import_faiss()
    return (faiss.IndexFlatL2 if metric == "l2" else faiss.IndexFlatIP)(d)


def _faiss_ivf_flat(d, nlist, metric, centroids=None):
    faiss = cmp.import_faiss()
    quantizer = _faiss_flat(d, metric)
    if centroids is not None:
        quantizer.add(centroids)
    ivf = faiss.IndexIVFFlat(quantizer, d, nlist, faiss_metric(faiss, metric))
    ivf.referenced_objects = [quantizer]
    return ivf


def check_ivf(case, n, d, nlist, metric, nprobes, k, normalize=False, dup=0, far_lists=0, nq=40):
    """IndexIVFFlat trained and filled by faiss vs IVFIndex (centroids bit for bit, lists,
    search per nprobe); with far_lists > 0 both use given centroids, far_lists of them far from
    the data (empty lists); then the bridge: to_faiss search and from_faiss round trip."""
    from faiss.contrib.inspect_tools import get_invlist
    xb, xq = cmp.blobs(n, d, n + d, dup), cmp.queries(nq, d, d)
    zb, zq = (prefix(xb, d), prefix(xq, d)) if normalize else (xb, xq)
    ours = IVFIndex(d, nlist, metric=metric, normalize=normalize)
    results, record = cmp.recorder("ivf", case)
    if far_lists:
        given = np.concatenate([zb[:nlist - far_lists], np.full((far_lists, d), 50, np.float32)])
        ref = _faiss_ivf_flat(d, nlist, metric, given)
        ours.set_centroids(given)
    else:
        ref = _faiss_ivf_flat(d, nlist, metric)
        with cmp.quiet_stderr():
            ref.train(zb)
        ours.train(xb)
        record("train centroids bit-exact", cmp.arrays(ref.quantizer.reconstruct_n(0, nlist), ours.centroids))
    ref.add(zb)
    ours.add(xb)
    same = all(np.array_equal(get_invlist(ref.invlists, l)[0], ours.list_ids(l)) for l in range(nlist))
    record(f"lists ({int((ours.list_sizes() == 0).sum())} empty)",
           (0.0, None if same else "inverted lists hold different ids"))
    exported = faiss_bridge.to_faiss(ours)
    back = faiss_bridge.from_faiss(exported, xb=xb)
    for nprobe in nprobes:
        mine = ours.search(xq, k, nprobe=nprobe)
        padded = " (-1 padded)" if (mine[1] < 0).any() else ""
        record(f"search nprobe={nprobe}{padded}", cmp.knn(cmp.ivf_search(ref, zq, k, nprobe), mine))
        record(f"to_faiss search nprobe={nprobe}", cmp.knn(faiss_bridge.faiss_search(exported, xq, k, nprobe), mine))
        record(f"round trip search nprobe={nprobe}", cmp.identical(mine, back.search(xq, k, nprobe=nprobe)))
    record("round trip centroids", cmp.arrays(ours.centroids, back.centroids))
    return results


def check_adanns_ivf(case, n, D, nlist, d_c, d_s, metric, nprobes, k, normalize=True, nq=40):
    """AdANNS-IVF (d_c != d_s) vs its faiss form (d_c quantizer + d_s IndexIVFFlat searched with
    ivf_tools.search_preassigned, built by the bridge); the from_faiss round trip."""
    xb, xq = cmp.blobs(n, D, n + D), cmp.queries(nq, D, D)
    ours = IVFIndex(D, nlist, d_c=d_c, d_s=d_s, metric=metric, normalize=normalize)
    ours.train(xb)
    ours.add(xb)
    exported = faiss_bridge.to_faiss(ours)
    back = faiss_bridge.from_faiss(exported, xb=xb)
    results, record = cmp.recorder("adanns_ivf", case)
    for nprobe in nprobes:
        mine = ours.search(xq, k, nprobe=nprobe)
        record(f"preassigned search nprobe={nprobe}", cmp.knn(exported.search(xq, k, nprobe), mine))
        record(f"round trip search nprobe={nprobe}", cmp.identical(mine, back.search(xq, k, nprobe=nprobe)))
    same = all(np.array_equal(back.list_ids(l), ours.list_ids(l)) for l in range(nlist))
    record("round trip lists", (0.0, None if same else "inverted lists hold different ids"))
    return results


def check_pq(case, n, d, M, nbits, niter=25, nq=30, k=10):
    """ProductQuantizer trained by faiss vs ours (codebooks bit for bit), codes, ADC tables (bit
    for bit when dsub < 16, dsub != 12), ADC search against IndexPQ; the bridge."""
    faiss = cmp.import_faiss()
    x, xq = cmp.blobs(n, d, n + d), cmp.queries(nq, d, d)
    ref = faiss.ProductQuantizer(d, M, nbits)
    ref.cp.niter = niter
    with cmp.quiet_stderr():
        ref.train(x)
    ours = ProductQuantizer(d, M, nbits, niter=niter, allow_small=True).train(x)
    results, record = cmp.recorder("pq", case)
    record("codebooks bit-exact", cmp.arrays(codebooks(faiss, ref), ours.codebooks))
    codes = ours.encode(x)
    record("codes", cmp.codes(ref.compute_codes(x), codes))
    tables = np.empty((nq, M, 1 << nbits), dtype=np.float32)
    ref.compute_distance_tables(nq, faiss.swig_ptr(xq), faiss.swig_ptr(tables))
    exact = d // M < 16 and d // M != 12
    atol = 1e-6 if exact else cmp.form_atol(xq.reshape(-1, d // M), ours.codebooks.reshape(-1, d // M))
    record("ADC tables" + (" bit-exact" if exact else ""),
           cmp.arrays(tables, ours.distance_table(xq), exact, atol=atol))
    index = PQIndex(d, M, nbits, normalize=False)
    index.pq.set_codebooks(ours.codebooks)
    index.add(x)
    ref_index = faiss.IndexPQ(d, M, nbits)
    faiss.copy_array_to_vector(faiss.vector_to_array(ref.centroids), ref_index.pq.centroids)
    ref_index.is_trained = True
    ref_index.add(x)
    mine = index.search(xq, k)
    record("ADC search", cmp.knn(ref_index.search(xq, k), mine, atol=M * atol))
    _bridge_pq(record, index, xq, k, mine, M * atol)
    return results


def _bridge_pq(record, index, xq, k, mine, atol=1e-6):
    exported = faiss_bridge.to_faiss(index)
    record("to_faiss search", cmp.knn(faiss_bridge.faiss_search(exported, xq, k), mine, atol=atol))
    back = faiss_bridge.from_faiss(exported)
    record("round trip codes", cmp.codes(index.codes, back.codes))
    record("round trip search", cmp.identical(mine, back.search(xq, k)))


def check_opq(case, n, d, M, niter, nq=30, k=10):
    """OPQMatrix vs OPQ trained from the same start rotation A (niter iterations; the rotations
    agree to rounding unless an inner k-means near-tie resolves differently, see `opq`); applying
    one rotation; a PQIndex(opq=True) on our rotation through the bridge."""
    faiss = cmp.import_faiss()
    x, xq = cmp.blobs(n, d, n + d, spread=4.0), cmp.queries(nq, d, d)
    start = random_rotation(d, 7)
    ref = faiss.OPQMatrix(d, M)
    ref.niter, ref.niter_pq_0 = niter, 10
    faiss.copy_array_to_vector(start.ravel(), ref.A)
    with cmp.quiet_stderr():
        ref.train(x)
    ours = OPQ(d, M, niter=niter, niter_pq_0=10, init=start, allow_small=True).train(x)
    A_ref = faiss.vector_to_array(ref.A).reshape(d, d)
    results, record = cmp.recorder("opq", case)
    record("rotation from the same A", cmp.arrays(A_ref, ours.A, exact=False, rtol=0, atol=1e-4))
    same_A = opq_matrix(faiss, ours.A, M, niter)  # rounding of x @ A.T only
    record("apply (same A)", cmp.arrays(same_A.apply(xq), ours.apply(xq), exact=False, rtol=1e-5,
                                     atol=cmp.form_atol(xq, ours.A)))
    index = PQIndex(d, M, opq=True, normalize=False, allow_small=True, opq_niter=niter)
    index.opq = ours
    index.pq = ours.pq
    index.add(x)
    _bridge_pq(record, index, xq, k, index.search(xq, k))
    return results


def check_ivfpq(case, n, d, nlist, M, nbits, metric, nprobes, k=10, opq=False, by_residual=True,
                normalize=False, d_c=None, d_s=None, nq=30):
    """IndexIVFPQ trained and filled by faiss vs IVFPQIndex: centroids and codebooks bit for bit,
    search per nprobe. With OPQ faiss clusters the rotated vectors, so only the rotation and the
    centroids are compared (to rounding): the residual k-means may then resolve a near-tie
    differently and drift (see `ivfpq`). Always: faiss encoding the data with our parameters
    gives our lists and codes (d_c = d_s); the bridge. Prefix dims d_c, d_s < d and AdANNS-IVFOPQ
    (d_c != d_s, `FaissAdannsIVF`) have no faiss training to compare with."""
    faiss = cmp.import_faiss()
    xb, xq = cmp.blobs(n, d, n + d), cmp.queries(nq, d, d)
    zb, zq = (prefix(xb, d), prefix(xq, d)) if normalize else (xb, xq)
    ours = IVFPQIndex(d, nlist, M, nbits, d_c=d_c, d_s=d_s, opq=opq, by_residual=by_residual, metric=metric,
                      normalize=normalize, allow_small=True, opq_niter=4)
    ours.train(xb)
    ours.add(xb)
    results, record = cmp.recorder("ivfpq", case)
    atol = cmp.form_atol(zq, ours.scoring_centroids)
    exported = faiss_bridge.to_faiss(ours)
    back = faiss_bridge.from_faiss(exported)
    if ours.d_c == ours.d_s == d:
        ivf = faiss.IndexIVFPQ(_faiss_flat(d, metric), d, nlist, M, nbits,
                               faiss_metric(faiss, metric))
        ivf.by_residual = by_residual
        ref = ivf
        if opq:
            fopq = faiss.OPQMatrix(d, M)
            fopq.niter = 4
            ref = faiss.IndexPreTransform(fopq, ivf)
        with cmp.quiet_stderr():
            ref.train(zb)
        ref.add(zb)
        if opq:  # faiss clusters R x, we x: centroids to rounding, then the residual k-means drifts
            record("OPQ rotation", cmp.arrays(faiss.vector_to_array(fopq.A).reshape(d, d), ours.opq.A,
                                           exact=False, rtol=0, atol=1e-3))
            record("train centroids (rotated)", cmp.arrays(ivf.quantizer.reconstruct_n(0, nlist),
                                                        ours.scoring_centroids, exact=False, atol=1e-4))
        else:
            record("train centroids bit-exact", cmp.arrays(ivf.quantizer.reconstruct_n(0, nlist), ours.centroids))
            record("codebooks bit-exact", cmp.arrays(codebooks(faiss, ivf.pq), ours.pq.codebooks))
            for nprobe in nprobes:
                record(f"search nprobe={nprobe}", cmp.knn(cmp.ivf_search(ref, zq, k, nprobe),
                                                       ours.search(xq, k, nprobe=nprobe), atol=atol))
    # rigid OPQ: faiss holds R c_l, from_faiss recovers c_l to rounding, so routing to near-ties
    exact_back = not (ours.d_c == ours.d_s and ours.opq is not None)
    for nprobe in nprobes:
        mine = ours.search(xq, k, nprobe=nprobe)
        record(f"to_faiss search nprobe={nprobe}", cmp.knn(faiss_bridge.faiss_search(exported, xq, k, nprobe),
                                                        mine, atol=atol))
        again = back.search(xq, k, nprobe=nprobe)
        record(f"round trip search nprobe={nprobe}", cmp.identical(mine, again) if exact_back else cmp.knn(mine, again))
    record("round trip codes", cmp.codes(_list_codes(ours), _list_codes(back)))
    if ours.d_c == ours.d_s:  # faiss encodes our data with our parameters: the same lists and codes
        inner = faiss.extract_index_ivf(exported)
        inner.reset()
        zs = prefix(xb, ours.d_s, normalize)
        inner.add(zs if ours.opq is None else ours.opq.apply(zs))
        from faiss.contrib.inspect_tools import get_invlist
        lists = [get_invlist(inner.invlists, l) for l in range(nlist)]
        record("lists with our parameters", (0.0, None if all(np.array_equal(ids, ours.list_ids(l))
                                                                for l, (ids, _) in enumerate(lists))
                                             else "inverted lists hold different ids"))
        record("codes with our parameters", cmp.codes(np.concatenate([c for _, c in lists]), _list_codes(ours)))
    return results


def _list_codes(index):
    """All codes of an IVFPQIndex in list order (N, code_size)."""
    return np.concatenate([index.list_codes(l) for l in range(index.nlist)])


def check_metrics(case, n, d, nq, k, n_classes):
    """k-recall@N against faiss's intersection count (faiss.eval_intersection); label metrics
    against a per-query loop (faiss has no label metrics)."""
    faiss = cmp.import_faiss()
    xb, xq = cmp.blobs(n, d, n + d), cmp.queries(nq, d, d)
    rng = np.random.default_rng(n)
    yb, yq = rng.integers(0, n_classes, n), rng.integers(0, n_classes, nq)
    exact, approximate = FlatIndex(d), FlatIndex(d // 2)  # "ANN": exact search on half the dims
    exact.add(xb)
    approximate.add(np.ascontiguousarray(xb[:, :d // 2]))
    I_exact = exact.search(xq, k)[1]
    I_ann = approximate.search(np.ascontiguousarray(xq[:, :d // 2]), 2 * k)[1]
    results, record = cmp.recorder("metrics", case)
    for kk, nn in ((1, 1), (k, k), (1, 2 * k), (k, 2 * k)):
        ref = faiss.eval_intersection(I_exact[:, :kk], I_ann[:, :nn]) / (nq * kk)
        got = metrics.knn_recall(I_exact, I_ann, kk, nn)
        record(f"{kk}-recall@{nn}", cmp.arrays(np.array([ref]), np.array([got]), exact=False, rtol=1e-12, atol=0))
    hits = [[yb[j] == yq[i] for j in I_ann[i, :k]] for i in range(nq)]
    n_rel = [int((yb == yq[i]).sum()) for i in range(nq)]
    ap = [sum(sum(h[:r + 1]) / (r + 1) for r in range(k) if h[r]) for h in hits]
    loops = {
        "top-1": (np.mean([h[0] for h in hits]), metrics.top1_accuracy(I_ann, yb, yq)),
        f"hit-rate@{k}": (np.mean([any(h) for h in hits]), metrics.hit_rate_at_k(I_ann, yb, yq, k)),
        f"precision@{k}": (np.mean([sum(h) / k for h in hits]), metrics.precision_at_k(I_ann, yb, yq, k)),
        f"mAP@{k}": (np.mean([a / min(k, r) if r else 0 for a, r in zip(ap, n_rel)]),
                     metrics.map_at_k(I_ann, yb, yq, k)),
        f"mAP@{k} adanns": (np.mean([a / k for a in ap]), metrics.map_at_k(I_ann, yb, yq, k, "adanns")),
        f"recall@{k}": (np.mean([sum(h) / r if r else 0 for h, r in zip(hits, n_rel)]),
                        metrics.recall_at_k(I_ann, yb, yq, k)),
    }
    for name, (ref, got) in loops.items():
        record(name, cmp.arrays(np.array([ref]), np.array([got]), exact=False, rtol=1e-12, atol=1e-15))
    return results


def check_hnsw(case, n, D, M, metric, searches, efc=40, batches=(), dup=0, d_c=None, nq=40):
    """IndexHNSWFlat built by faiss (1 thread, same M / efConstruction / adds) vs HNSWIndex:
    levels, entry point, every neighbour list (bit-identical distances needed: AVX-512), then
    per (k, ef): ids and distances identical and hnsw_stats.ndis per query; with d_c < D the
    faiss side is IndexRefineFlat over an HNSW on the d_c-prefix (AdANNS-HNSW, d_s = D, ef
    candidates re-scored). Then the bridge: to_faiss search and from_faiss round trip."""
    faiss = cmp.import_faiss()
    faiss.omp_set_num_threads(1)
    d_c = D if d_c is None else d_c
    xb, xq = cmp.blobs(n, D, n + D, dup), cmp.queries(nq, D, D)
    ours = HNSWIndex(D, M=M, ef_construction=efc, metric=metric, d_c=d_c, d_s=D)
    inner = faiss.IndexHNSWFlat(d_c, M, faiss_metric(faiss, metric))
    inner.hnsw.efConstruction = efc
    ref = inner if d_c == D else faiss.IndexRefineFlat(
        faiss.IndexPreTransform(faiss.RemapDimensionsTransform(D, d_c, False), inner))
    for part in np.split(xb, np.cumsum(batches)):
        ref.add(part)
        ours.add(part)
    results, record = cmp.recorder("hnsw" if d_c == D else "adanns_hnsw", case)
    levels = faiss.vector_to_array(inner.hnsw.levels).astype(np.int64) - 1
    record("levels", cmp.arrays(levels, ours.levels))
    record("entry point, max_level", cmp.arrays([inner.hnsw.entry_point, inner.hnsw.max_level],
                                                [ours.entry_point, ours.max_level]))
    record("neighbour lists", cmp.arrays(faiss.vector_to_array(inner.hnsw.neighbors), ours.graph()[2]))
    exported = faiss_bridge.to_faiss(ours)
    back = faiss_bridge.from_faiss(exported)
    for k, ef in searches:
        inner.hnsw.efSearch = ef
        outer = faiss.downcast_index(exported.base_index) if d_c < D else exported
        faiss.downcast_index(getattr(outer, "index", outer)).hnsw.efSearch = ef
        if d_c < D:
            ref.k_factor = exported.k_factor = max(ef, k) / k
        mine = ours.search(xq, k, ef_search=ef)
        theirs, ndis = cmp.hnsw_search_with_ndis(ref, xq, k)
        record(f"search k={k} ef={ef}", cmp.identical(theirs, mine))
        if d_c == D:  # IndexRefineFlat's base search runs with k * k_factor: other ndis
            record(f"ndis k={k} ef={ef}", cmp.arrays(ndis, ours.last_search_ndis))
        record(f"to_faiss search k={k} ef={ef}", cmp.identical(exported.search(xq, k), mine))
        record(f"round trip search k={k} ef={ef}", cmp.identical(mine, back.search(xq, k, ef_search=ef)))
    return results


CHECKS = {"kmeans": check_kmeans, "flat": check_flat, "ivf": check_ivf, "adanns_ivf": check_adanns_ivf,
          "pq": check_pq, "opq": check_opq, "ivfpq": check_ivfpq, "metrics": check_metrics,
          "hnsw": check_hnsw, "adanns_hnsw": check_hnsw, **CODE_CHECKS}
