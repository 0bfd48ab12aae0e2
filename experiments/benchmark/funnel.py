"""The funnel speed workloads of experiments.benchmark (issue 14): a funnel d_0 = 16 -> D = 2048,
shortlist 200, k = 10, on a memory-mapped Matryoshka-like database of N = 250,000 x 2048.

    funnel_paper        ours: FunnelIndex(db, [16, D]).search(q, [(16, 200), (D, 10)])
                        peer: our exact search at D (FlatIndex over prefix(db, D))
    funnel_paper_faiss  ours: the same funnel
                        peer: faiss doing the same funnel as two calls, IndexFlatL2(16) over the
                        same 16-dim prefixes for the shortlist, then knn_L2sqr_by_idx re-ranking
                        the shortlisted database rows at D (IndexRefineFlat's second step)

Orders (faiss's two forms, `adanns_ref.funnel.kernels`): our stage 0 scans this batch of 1,000
queries in faiss's BLAS form (a batch >= BLAS_MIN_QUERIES), while faiss's IndexFlatL2(16) sums
it directly (1,000 * 16 < its BLAS threshold of 128,000), so the two shortlists differ only at
near-ties of the 200th distance; both re-ranks sum in faiss's fvec_L2sqr order.

Both sides are prepared once, untimed: our FunnelIndex (N x 16 prefix + scales, 17 MB) and
FlatIndex (an N x D copy, 2 GB); faiss's IndexFlatL2(16). Timed is the search of all queries.
The row reports the wall-clock speed-up (peer / ours), the MFLOPs ratio of the MRL paper's cost
model (exact D * N against d_0 * N + D * shortlist per query, `adanns_ref.core.cost`), 10-recall@10
of the funnel against exact search at D, and the peak RSS of each timed call.

Data (`matryoshka_fbin`): the generative model of `data.matryoshka_like` (C gaussian
centres, variance decaying as j^-1/2 along the dims, rows L2-normalised), drawn in float32 chunks
of CHUNK_ROWS rows, each from its own child of one SeedSequence, so the file's bytes depend only
on (N, D, seed). It is written once into the cache directory as .fbin (a temporary file renamed
into place, so an interrupted run leaves no partial file; progress on stderr) and memory-mapped.
"""
import os

import numpy as np

from .measure import import_faiss, log, pair

CHUNK_ROWS = 8192  # database rows drawn and written per step (64 MiB at D = 2048)
D0, SHORTLIST, K = 16, 200, 10


def _centres_and_scale(dim, n_clusters, seed):
    ss_centres, ss_db, ss_q = np.random.SeedSequence(seed).spawn(3)
    scale = (np.arange(1, dim + 1, dtype=np.float32) ** np.float32(-0.5)).astype(np.float32)
    centres = np.random.default_rng(ss_centres).standard_normal((n_clusters, dim), dtype=np.float32) * scale
    return centres, scale, ss_db, ss_q


def _draw(rng, n, centres, scale, sigma):
    from adanns_ref.core.truncate import normalize_rows
    labels = rng.integers(0, len(centres), size=n)
    x = centres[labels] + np.float32(sigma) * rng.standard_normal((n, len(scale)), dtype=np.float32) * scale
    return normalize_rows(x)


def matryoshka_fbin(cache_dir, n, dim, n_query, n_clusters=100, sigma=0.6, seed=2024):
    """(memory-mapped database (n, dim), queries (n_query, dim)) float32 unit rows; the database
    is generated into `cache_dir` on the first call and reused afterwards."""
    from adanns_ref.io import read_fbin
    centres, scale, ss_db, ss_q = _centres_and_scale(dim, n_clusters, seed)
    queries = _draw(np.random.default_rng(ss_q), n_query, centres, scale, sigma)
    path = os.path.join(cache_dir, f"matryoshka_{n}x{dim}_c{n_clusters}_s{sigma}_seed{seed}.fbin")
    if not os.path.exists(path):
        os.makedirs(cache_dir, exist_ok=True)
        tmp = f"{path}.tmp{os.getpid()}"
        chunks = ss_db.spawn(-(-n // CHUNK_ROWS))
        try:
            with open(tmp, "wb") as f:
                np.array([n, dim], dtype=np.int32).tofile(f)
                for i, ss in enumerate(chunks):
                    rows = min(CHUNK_ROWS, n - i * CHUNK_ROWS)
                    _draw(np.random.default_rng(ss), rows, centres, scale, sigma).tofile(f)
                    if i % 8 == 0 or i == len(chunks) - 1:
                        log(f"funnel data: {i * CHUNK_ROWS + rows:,} / {n:,} rows -> {path}")
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    db = read_fbin(path, mmap=True)
    if db.shape != (n, dim):
        raise ValueError(f"{path} holds {db.shape} vectors, expected {(n, dim)}; delete it to regenerate")
    return db, queries


def _setup(ctx):
    """Data, our prepared funnel, our exact index at D and its results (the ground truth)."""
    def build():
        from adanns_ref.indices.flat import FlatIndex
        from adanns_ref.funnel.index import FunnelIndex
        from adanns_ref.core.truncate import prefix
        c = ctx.cfg
        db, q = matryoshka_fbin(c["funnel_cache"], c["funnel_n_db"], c["funnel_dim"], c["funnel_n_query"])
        dim = db.shape[1]
        log(f"funnel: preparing FunnelIndex and FlatIndex({dim}) over {db.shape[0]:,} rows")
        index = FunnelIndex(db, [D0, dim])
        exact = FlatIndex(dim)
        exact.add(prefix(db, dim))
        q_full = prefix(q, dim)
        return {"db": db, "q": q, "q_full": q_full, "index": index, "exact": exact,
                "gt": exact.search(q_full, K)[1]}
    return ctx.cached("funnel_paper", build)


def _funnel(s):
    return s["index"].search(s["q"], [(D0, SHORTLIST), (s["db"].shape[1], K)])[:2]


def _flops(s):
    from adanns_ref.core.cost import exact_flops, funnel_flops
    n, dim = s["db"].shape
    return funnel_flops(D0, n, [(dim, SHORTLIST)]), exact_flops(dim, n)


def _recall(gt, I):
    from adanns_ref.evaluation.metrics import knn_recall
    return knn_recall(gt, I, K, K)


def bench_funnel_paper(ctx):
    s = _setup(ctx)
    t_o, (_, I_o), t_p, (_, I_p) = pair(ctx, lambda: _funnel(s), lambda: s["exact"].search(s["q_full"], K))
    f_funnel, f_exact = _flops(s)
    nq = len(s["q"])
    quality = {"metric": f"{K}-recall@{K} vs exact at {s['db'].shape[1]}", "ours": _recall(I_p, I_o),
               "peer": _recall(s["gt"], I_p), "speed_up": t_p["median_s"] / t_o["median_s"],
               "mflops_per_query": f"{f_funnel / 1e6:.3g} / {f_exact / 1e6:.3g}",
               "mflops_ratio": f_exact / f_funnel}
    note = (f"{nq} queries; prepared: FunnelIndex "
            f"{s['index'].nbytes / 2**20:.0f} MB, FlatIndex {s['exact'].xb.nbytes / 2**20:.0f} MB")
    return [dict(ours=t_o, peer_timing=t_p, quality=quality, note=note,
                 work=("gflop", 2 * nq * f_funnel, 2 * nq * f_exact))]


def bench_funnel_paper_faiss(ctx):
    faiss = import_faiss()
    s = _setup(ctx)
    db, dim = s["db"], s["db"].shape[1]

    def setup_faiss():
        from adanns_ref.funnel.kernels import from_blocks
        from adanns_ref.core.truncate import prefix
        flat = faiss.IndexFlatL2(D0)
        flat.add(from_blocks(s["index"].blocks[D0], db.shape[0]))  # our 16-dim prefixes, same bits
        return flat, prefix(s["q"], D0)
    flat, q0 = ctx.cached("funnel_paper_faiss", setup_faiss)

    def peer():
        _, shortlist = flat.search(q0, SHORTLIST)
        nq = len(q0)
        D = np.empty((nq, K), dtype=np.float32)
        I = np.empty((nq, K), dtype=np.int64)
        faiss.knn_L2sqr_by_idx(faiss.swig_ptr(s["q_full"]), faiss.swig_ptr(db), faiss.swig_ptr(shortlist),
                               dim, nq, db.shape[0], SHORTLIST, K, faiss.swig_ptr(D), faiss.swig_ptr(I),
                               SHORTLIST)
        return D, I
    t_o, (_, I_o), t_p, (_, I_p) = pair(ctx, lambda: _funnel(s), peer)
    f_funnel, _ = _flops(s)
    nq = len(s["q"])
    # faiss re-ranks the stored rows (unit norm already) where ours re-normalises their prefix
    # at D, and its stage 0 sums directly where ours uses the BLAS form: the same ranking up to
    # last-bit ties
    quality = {"metric": f"{K}-recall@{K} vs exact at {dim}", "ours": _recall(s["gt"], I_o),
               "peer": _recall(s["gt"], I_p), "same_ids": float(np.mean(I_o == I_p))}
    return [dict(ours=t_o, peer_timing=t_p, quality=quality,
                 work=("gflop", 2 * nq * f_funnel, 2 * nq * f_funnel))]
