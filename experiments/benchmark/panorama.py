"""Panorama workloads of experiments.benchmark (issue 27): our exact Panorama search
(`adanns_ref.panorama.PanoramaFlatIndex`) against faiss's `IndexFlatL2Panorama`, same data, same
levels, same batch size (faiss's default 1024).

    panorama_one     one query per call (the latency case, where pruning pays most)
    panorama_batch   all queries in one call (up to 1,000)

Data: the Matryoshka-like model of `funnel.matryoshka_fbin` (variance decaying as j^-1/2 along
the dims, unit rows; the issue's 100,000 x 2048 at full size), memory-mapped from the cache and
copied into both indexes, untimed. Levels: `panorama_levels` equal blocks (32 at full size:
64 dims each). The rows check that both sides return identical ids, report faiss's fraction of
levels scanned, and put the bytes each side actually reads (levels entered x level width x 4
bytes, from the statistics) against the machine's DRAM read bandwidth (the Limit column).
"""
import numpy as np

from .funnel import matryoshka_fbin
from .measure import import_faiss, log, pair

K = 10


def _setup(ctx):
    faiss = import_faiss()

    def build():
        from adanns_ref.panorama import PanoramaFlatIndex
        c = ctx.cfg
        db, q = matryoshka_fbin(c["funnel_cache"], c["panorama_n_db"], c["panorama_dim"],
                                c["panorama_n_query"])
        db = np.ascontiguousarray(db)
        dim, levels = db.shape[1], c["panorama_levels"]
        log(f"panorama: building ours and faiss's IndexFlatL2Panorama({dim}, {levels}) over "
            f"{db.shape[0]:,} rows")
        ours = PanoramaFlatIndex(dim, levels)
        ours.add(db)
        ref = faiss.IndexFlatL2Panorama(dim, levels)
        ref.add(db)
        return {"ours": ours, "faiss": ref, "q": q, "n": db.shape[0], "dim": dim}
    return faiss, ctx.cached("panorama", build)


def _bytes_read(index, nq_scanned_levels):
    """Bytes of vector data a search read: levels entered x level width x 4 (+ the tail norms)."""
    width = index.bounds[1] - index.bounds[0]
    return float(nq_scanned_levels) * width * 4


def _row(ctx, faiss, s, q, call):
    ours, ref = s["ours"], s["faiss"]

    def run_ours():
        return call(ours.search, q)

    def run_faiss():
        faiss.cvar.indexPanorama_stats.reset()
        return call(ref.search, q)
    t_o, (_, I_o), t_p, (_, I_p) = pair(ctx, run_ours, run_faiss)
    scanned = faiss.cvar.indexPanorama_stats.total_dims_scanned  # levels entered (last faiss run)
    ratio = float(faiss.cvar.indexPanorama_stats.ratio_dims_scanned)
    bytes_read = _bytes_read(ours, scanned)
    quality = {"metric": "same ids as faiss", "ours": float(np.mean(I_o == I_p)),
               "peer": 1.0, "levels_scanned": ratio}
    note = (f"{len(q)} queries, {s['n']:,} x {s['dim']}, {ours.n_levels} levels, batch "
            f"{ours.batch_size}; faiss scanned {100 * ratio:.1f} % of the levels")
    return [dict(ours=t_o, peer_timing=t_p, quality=quality, note=note,
                 work=("gbps", bytes_read, bytes_read))]


def _one_by_one(search, q):
    out = [search(q[i:i + 1], K) for i in range(len(q))]
    return np.concatenate([d for d, _ in out]), np.concatenate([i for _, i in out])


def bench_panorama_one(ctx):
    faiss, s = _setup(ctx)
    return _row(ctx, faiss, s, s["q"][:ctx.cfg["panorama_n_query_one"]], _one_by_one)


def bench_panorama_batch(ctx):
    faiss, s = _setup(ctx)
    return _row(ctx, faiss, s, s["q"], lambda search, q: search(q, K))
