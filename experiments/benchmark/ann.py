"""ANN workloads of experiments.benchmark: exact k-NN, k-means, IVF-Flat, AdANNS-IVF, PQ (faiss and
nanopq), OPQ, IVFPQ, funnel. Each ``bench_<key>(ctx)`` returns row dicts (times, quality, work)."""
import numpy as np

from .measure import NotAvailable, import_faiss, pair, recall


def bench_exact_knn(ctx):
    from adanns_ref.indices.flat import FlatIndex
    faiss = import_faiss()
    xb, xq, k = ctx.xb, ctx.xq, ctx.cfg["k"]
    ours = FlatIndex(xb.shape[1])
    ours.add(xb)
    peer = faiss.IndexFlatL2(xb.shape[1])
    peer.add(xb)
    t_o, (_, I_o), t_p, (_, I_p) = pair(ctx, lambda: ours.search(xq, k),
                                         lambda: peer.search(xq, k))
    flops = 2 * len(xq) * len(xb) * xb.shape[1]
    return [dict(ours=t_o, peer_timing=t_p, quality=recall(ctx, I_o, I_p, k),
                 work=("gflop", flops, flops))]


def bench_kmeans(ctx):
    from adanns_ref.quantizers.kmeans import KMeans
    faiss = import_faiss()
    xb, K, niter = ctx.xb, ctx.cfg["nlist"], ctx.cfg["kmeans_niter"]

    def peer():
        km = faiss.Kmeans(xb.shape[1], K, niter=niter, seed=1234)
        km.train(xb)
        return km
    t_o, o, t_p, p = pair(ctx, lambda: KMeans(K, niter=niter, seed=1234).fit(xb), peer)
    quality = {"metric": "final objective", "ours": float(o.obj[-1]), "peer": float(p.obj[-1]),
               "centroids_bit_identical": bool(np.array_equal(o.centroids, p.centroids))}
    per_iter = 2 * o.n_train_ * K * xb.shape[1]
    return [dict(ours=t_o, peer_timing=t_p, quality=quality,
                 work=("gflop", per_iter * len(o.obj), per_iter * len(p.obj)))]


def _ivf_flat_setup(ctx):
    from adanns_ref.indices.ivf import IVFIndex
    faiss = import_faiss()
    xb, d, nlist = ctx.xb, ctx.xb.shape[1], ctx.cfg["nlist"]
    ours = IVFIndex(d, nlist, normalize=False, niter=10, seed=1234)
    ours.train(xb)
    ours.add(xb)
    quantizer = faiss.IndexFlatL2(d)
    quantizer.add(np.ascontiguousarray(ours.centroids, dtype=np.float32))
    peer = faiss.IndexIVFFlat(quantizer, d, nlist)
    peer.add(xb)
    return ours, peer, quantizer


def bench_ivf_flat(ctx):
    ours, peer, quantizer = ctx.cached("ivf_flat", lambda: _ivf_flat_setup(ctx))
    xq, k, d, nlist = ctx.xq, ctx.cfg["k"], ctx.xb.shape[1], ctx.cfg["nlist"]
    sizes = np.asarray(ours.list_sizes(), dtype=np.int64)
    rows = []
    for nprobe in (1, 4, 16):
        peer.nprobe = nprobe
        t_o, (_, I_o), t_p, (_, I_p) = pair(ctx, lambda: ours.search(xq, k, nprobe=nprobe),
                                             lambda: peer.search(xq, k))
        _, probed = quantizer.search(xq, nprobe)
        scanned = 4 * d * (int(sizes[probed].sum()) + len(xq) * nlist)
        rows.append(dict(workload=f"IVF-Flat nlist={nlist} nprobe={nprobe}", ours=t_o,
                         peer_timing=t_p, quality=recall(ctx, I_o, I_p, k),
                         work=("gbyte", scanned, scanned)))
    return rows


def _adanns_setup(ctx, d_c, d_s):
    from adanns_ref.indices.ivf import IVFIndex
    from adanns_ref.core.truncate import prefix
    from faiss.contrib.ivf_tools import add_preassigned
    faiss = import_faiss()
    xb, d, nlist = ctx.xb, ctx.xb.shape[1], ctx.cfg["nlist"]
    ours = IVFIndex(d, nlist, d_c=d_c, d_s=d_s, normalize=True, niter=10, seed=1234)
    ours.train(xb)
    ours.add(xb)
    centroids = np.ascontiguousarray(ours.centroids, dtype=np.float32)
    if centroids.shape[1] != d_c:
        raise NotAvailable(f"IVFIndex.centroids has width {centroids.shape[1]}, expected d_c={d_c}")
    coarse = faiss.IndexFlatL2(d_c)
    coarse.add(centroids)
    assign = np.empty(len(xb), dtype=np.int64)
    for lst in range(nlist):
        assign[np.asarray(ours.list_ids(lst), dtype=np.int64)] = lst
    peer = faiss.IndexIVFFlat(faiss.IndexFlatL2(d_s), d_s, nlist)
    peer.is_trained = True  # lists are given by our routing; the d_s quantizer is never used
    add_preassigned(peer, prefix(xb, d_s), assign)
    return ours, peer, coarse


def bench_adanns_ivf(ctx, d_c=16):
    from faiss.contrib.ivf_tools import search_preassigned
    faiss = import_faiss()
    d_s = ctx.xb.shape[1]
    ours, peer, coarse = ctx.cached("adanns_ivf", lambda: _adanns_setup(ctx, d_c, d_s))
    xq, k, nlist = ctx.xq, ctx.cfg["k"], ctx.cfg["nlist"]
    sizes = np.asarray(ours.list_sizes(), dtype=np.int64)

    def peer_search(nprobe):
        # the same work as ours: re-normalised d_c / d_s query prefixes, route, scan
        qc = xq[:, :d_c].copy()
        faiss.normalize_L2(qc)
        qs = xq[:, :d_s].copy()
        faiss.normalize_L2(qs)
        dis, lists = coarse.search(qc, nprobe)
        peer.nprobe = nprobe
        return search_preassigned(peer, qs, k, lists, dis)
    rows = []
    for nprobe in (1, 4, 16):
        t_o, (_, I_o), t_p, (_, I_p) = pair(ctx, lambda: ours.search(xq, k, nprobe=nprobe),
                                             lambda: peer_search(nprobe))
        qc = xq[:, :d_c].copy()
        faiss.normalize_L2(qc)
        _, probed = coarse.search(qc, nprobe)
        scanned = 4 * (d_s * int(sizes[probed].sum()) + d_c * len(xq) * nlist)
        rows.append(dict(workload=f"AdANNS-IVF d_c={d_c} d_s={d_s} nlist={nlist} nprobe={nprobe}",
                         ours=t_o, peer_timing=t_p, quality=recall(ctx, I_o, I_p, k),
                         work=("gbyte", scanned, scanned)))
    return rows


def _pq_codebooks_into_faiss(pq, d, M):
    faiss = import_faiss()
    index = faiss.IndexPQ(d, M, 8)
    faiss.copy_array_to_vector(np.ascontiguousarray(pq.codebooks, dtype=np.float32).ravel(),
                               index.pq.centroids)
    index.is_trained = True
    return index


def bench_pq(ctx):
    from adanns_ref.quantizers.pq import ProductQuantizer
    faiss = import_faiss()
    xb, xq, k, M = ctx.xb, ctx.xq, ctx.cfg["k"], ctx.cfg["M"]
    n, d = xb.shape

    niter = ctx.cfg["pq_niter"]
    # Below 39 points per centroid (quick / tiny sizes) faiss warns and we refuse unless told:
    # opt in on our side and silence the warning on faiss's, so both just train.
    small = n < 39 * 256

    def ours_train():
        return ProductQuantizer(d, M, nbits=8, seed=1234, niter=niter, allow_small=small).train(xb)

    def peer_train():
        index = faiss.IndexPQ(d, M, 8)
        index.pq.cp.niter = niter
        if small:
            index.pq.cp.min_points_per_centroid = 0
        index.train(xb)
        return index
    rows = []
    t_o, pq, t_p, fpq = pair(ctx, ours_train, peer_train)
    mse = {"metric": "reconstruction MSE",
           "ours": float(np.mean((pq.decode(pq.encode(xb)) - xb) ** 2)),
           "peer": float(np.mean((fpq.sa_decode(fpq.sa_encode(xb)) - xb) ** 2))}
    train_flops = 2 * min(n, 256 * 256) * 256 * d * niter
    rows.append(dict(workload=f"PQ train M={M} nbits=8, {niter} iterations ({n} x {d})",
                     ours=t_o, peer_timing=t_p, quality=mse, work=("gflop", train_flops, train_flops)))
    pq = ctx.cached("pq", lambda: pq)  # the first thread count's codebooks serve every row
    peer = _pq_codebooks_into_faiss(pq, d, M)  # same codebooks: codes must agree
    t_o, codes, t_p, fcodes = pair(ctx, lambda: pq.encode(xb), lambda: peer.sa_encode(xb))
    ctx.cached("pq_codes", lambda: codes)
    same = {"metric": "identical codes (same codebooks)", "ours": 1.0,
            "peer": float(np.mean((codes == fcodes).all(axis=1)))}
    enc_flops = 2 * n * 256 * d
    rows.append(dict(workload=f"PQ encode M={M} ({n} x {d})", ours=t_o, peer_timing=t_p,
                     quality=same, work=("gflop", enc_flops, enc_flops)))
    peer.add(xb)
    t_o, (_, I_o), t_p, (_, I_p) = pair(ctx, lambda: pq.search(codes, xq, k),
                                         lambda: peer.search(xq, k))
    scanned = len(xq) * n * M
    rows.append(dict(workload=f"PQ ADC search M={M} ({len(xq)} q x {n} codes)", ours=t_o,
                     peer_timing=t_p, quality=recall(ctx, I_o, I_p, k),
                     work=("gbyte", scanned, scanned)))
    return rows


def bench_pq_nanopq(ctx):
    from adanns_ref.quantizers.pq import ProductQuantizer
    try:
        import nanopq
    except ImportError as exc:
        raise NotAvailable(f"nanopq is not installed ({exc})") from exc
    xb, k, M = ctx.xb, ctx.cfg["k"], ctx.cfg["M"]
    xq = ctx.xq[: ctx.cfg["n_query_nanopq"]]
    d = xb.shape[1]

    pq = ctx.cached("pq", lambda: ProductQuantizer(
        d, M, nbits=8, seed=1234, niter=ctx.cfg["pq_niter"], allow_small=len(xb) < 39 * 256).train(xb))
    codes = ctx.cached("pq_codes", lambda: pq.encode(xb))
    npq = nanopq.PQ(M=M, Ks=256, verbose=False)
    npq.Ds, npq.codewords = d // M, np.ascontiguousarray(pq.codebooks, dtype=np.float32)

    def peer():
        # nanopq's documented ADC (one query at a time), plus the top-k a user must add
        out = np.empty((len(xq), k), dtype=np.int64)
        for i, q in enumerate(xq):
            dist = npq.dtable(q).adist(codes)
            top = np.argpartition(dist, k)[:k]
            out[i] = top[np.lexsort((top, dist[top]))]
        return None, out
    t_o, (_, I_o), t_p, (_, I_p) = pair(ctx, lambda: pq.search(codes, xq, k), peer)
    scanned = len(xq) * len(xb) * M
    return [dict(ours=t_o, peer_timing=t_p, quality=recall(ctx, I_o, I_p, k),
                 work=("gbyte", scanned, scanned))]


def _rotated_pq_mse(x, A, M):
    """A neutral yardstick for a rotation: MSE of a faiss PQ trained on x @ A.T (10 iters)."""
    faiss = import_faiss()
    xr = np.ascontiguousarray(x @ A.T, dtype=np.float32)
    pq = faiss.ProductQuantizer(xr.shape[1], M, 8)
    pq.cp.niter = 10
    pq.cp.min_points_per_centroid = 0  # quick / tiny sizes: no "too few points" warning
    pq.train(xr)
    return float(np.mean((pq.decode(pq.compute_codes(xr)) - xr) ** 2))


def bench_opq(ctx):
    from adanns_ref.quantizers.opq import OPQ
    faiss = import_faiss()
    xb, M, niter, niter0 = ctx.xb, ctx.cfg["M"], ctx.cfg["opq_niter"], ctx.cfg["opq_niter_pq_0"]
    d = xb.shape[1]

    def ours():
        return OPQ(d, M, niter=niter, niter_pq_0=niter0, allow_small=len(xb) < 39 * 256).train(xb)

    def peer():
        opq = faiss.OPQMatrix(d, M)
        opq.niter, opq.niter_pq_0 = niter, niter0
        opq.train(xb)
        return opq
    t_o, o, t_p, p = pair(ctx, ours, peer)
    A_peer = faiss.vector_to_array(p.A).reshape(p.d_out, p.d_in)
    A_ours = np.asarray(o.A, dtype=np.float32)
    quality = {"metric": "PQ MSE after rotation (faiss PQ, 10 iters)",
               "ours": _rotated_pq_mse(xb, A_ours, M), "peer": _rotated_pq_mse(xb, A_peer, M),
               "max_abs_A_diff": float(np.abs(A_ours - A_peer).max())}
    return [dict(ours=t_o, peer_timing=t_p, quality=quality, work=(None, None, None))]


def bench_funnel(ctx):
    from adanns_ref.indices.flat import FlatIndex
    from adanns_ref.funnel.funnel import funnel_search
    xb, xq, c = ctx.xb, ctx.xq, ctx.cfg
    d, k, s, d0 = xb.shape[1], c["k_funnel"], c["shortlist"], 16
    exact = FlatIndex(d)
    exact.add(xb)
    t_o, (_, I_o, _), t_p, (_, I_p) = pair(ctx, lambda: funnel_search(xb, xq, [(d0, s), (d, k)]),
                                            lambda: exact.search(xq, k))
    nq, n = len(xq), len(xb)
    return [dict(ours=t_o, peer_timing=t_p, quality=recall(ctx, I_o, I_p, k),
                 work=("gflop", 2 * nq * (d0 * n + s * d), 2 * nq * d * n))]


def bench_ivfpq(ctx):
    from adanns_ref.indices.ivfpq import IVFPQIndex
    faiss = import_faiss()
    xb, xq, c = ctx.xb, ctx.xq, ctx.cfg
    d, nlist, M, nprobe, k = xb.shape[1], c["nlist"], c["M"], c["ivfpq_nprobe"], c["k"]

    def setup():
        # normalize=False: the faiss-identical configuration (the data is already unit-norm)
        ours = IVFPQIndex(d, nlist, M, nbits=8, normalize=False,
                          allow_small=len(xb) < 39 * 256)
        ours.train(xb)
        ours.add(xb)
        quantizer = faiss.IndexFlatL2(d)  # faiss gets our coarse centroids and PQ codebooks
        quantizer.add(np.ascontiguousarray(ours.centroids, dtype=np.float32))
        peer = faiss.IndexIVFPQ(quantizer, d, nlist, M, 8)
        faiss.copy_array_to_vector(np.ascontiguousarray(ours.pq.codebooks, np.float32).ravel(),
                                   peer.pq.centroids)
        peer.is_trained = True
        peer.precompute_table()  # without it faiss's by-residual distances are wrong (SPEC §6)
        peer.add(xb)
        return ours, peer, quantizer
    ours, peer, quantizer = ctx.cached("ivfpq", setup)
    peer.nprobe = nprobe
    t_o, (_, I_o), t_p, (_, I_p) = pair(ctx, lambda: ours.search(xq, k, nprobe=nprobe),
                                         lambda: peer.search(xq, k))
    sizes = np.asarray(ours.list_sizes(), dtype=np.int64)
    _, probed = quantizer.search(xq, nprobe)
    scanned = M * int(sizes[probed].sum()) + 4 * d * len(xq) * nlist
    return [dict(ours=t_o, peer_timing=t_p, quality=recall(ctx, I_o, I_p, k),
                 work=("gbyte", scanned, scanned))]
