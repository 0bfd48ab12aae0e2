"""Graph and code-scan workloads of experiments.benchmark: HNSW build and search (issue 15) and
the SQ8 and Hamming scans (issue 18), each against the faiss index it reproduces.

HNSW: 60,000 x 128 (the run's database), M=32, efConstruction=40; build timed over `hnsw_runs`
alternating runs (a build takes seconds), search at efSearch 16 / 64 / 256 with the faiss
index holding the same graph (both sides build it identically). SQ8 / Hamming: a separate
`codes_n_db` x `codes_dim` Matryoshka-like database (the run's 128-dim one is too small for a
scan-bound row), `codes_n_query` queries, k=10.
"""
import numpy as np

from . import data as _bench_data
from .measure import import_faiss, measure_pair, pair, recall


def bench_hnsw(ctx):
    from adanns_ref.indices.hnsw.index import HNSWIndex
    faiss = import_faiss()
    xb, xq, k = ctx.xb, ctx.xq, ctx.cfg["k"]
    d, M, efc = xb.shape[1], 32, 40

    def ours_build():
        index = HNSWIndex(d, M=M, ef_construction=efc)
        index.add(xb)
        return index

    def peer_build():
        index = faiss.IndexHNSWFlat(d, M)
        index.hnsw.efConstruction = efc
        index.add(xb)
        return index
    t_o, ours, t_p, peer = measure_pair(ours_build, peer_build, ctx.cfg["hnsw_runs"])
    same_levels = bool(np.array_equal(ours.levels, faiss.vector_to_array(peer.hnsw.levels) - 1))
    rows = [dict(workload=f"HNSW build {len(xb)} x {d}, M={M}, efConstruction={efc}", ours=t_o,
                 peer_timing=t_p, quality={"metric": "identical levels", "ours": 1.0,
                                           "peer": float(same_levels)}, work=(None, 0, 0))]
    for ef in (16, 64, 256):
        peer.hnsw.efSearch = ef
        t_o, (_, I_o), t_p, (_, I_p) = pair(ctx, lambda: ours.search(xq, k, ef_search=ef),
                                             lambda: peer.search(xq, k))
        rows.append(dict(workload=f"HNSW search efSearch={ef} ({len(xq)} queries, k={k})",
                         ours=t_o, peer_timing=t_p, quality=recall(ctx, I_o, I_p, k),
                         work=(None, 0, 0)))
    return rows


def _codes_data(ctx):
    c = ctx.cfg
    xb, xq, _, _ = _bench_data.matryoshka_like(c["codes_n_db"], c["codes_n_query"], c["codes_dim"])
    return xb, xq


def _same_ids(I_o, I_p, k):
    return {"metric": "same ids as the peer", "ours": 1.0,
            "peer": float(np.mean(I_o[:, :k] == I_p[:, :k]))}


def bench_sq8(ctx):
    from adanns_ref.indices.sqindex import SQIndex
    faiss = import_faiss()
    xb, xq = ctx.cached("codes_data", lambda: _codes_data(ctx))
    k, d = ctx.cfg["k"], xb.shape[1]
    ours = SQIndex(d, "8bit")
    ours.train(xb)
    ours.add(xb)
    peer = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit)
    peer.train(xb)
    peer.add(xb)
    t_o, (_, I_o), t_p, (_, I_p) = pair(ctx, lambda: ours.search(xq, k), lambda: peer.search(xq, k))
    scanned = len(xq) * len(xb) * d  # one byte per dim
    return [dict(workload=f"SQ8 scan {len(xq)} q x {len(xb)} x {d}, k={k}", ours=t_o,
                 peer_timing=t_p, quality=_same_ids(I_o, I_p, k), work=("gbyte", scanned, scanned))]


def bench_hamming(ctx):
    from adanns_ref.indices.binary import BinaryFlatIndex
    from adanns_ref.quantizers.binary import binarize
    faiss = import_faiss()
    xb, xq = ctx.cached("codes_data", lambda: _codes_data(ctx))
    k, d = ctx.cfg["k"], xb.shape[1]
    cb, cq = binarize(xb), binarize(xq)
    ours = BinaryFlatIndex(d)
    ours.add(cb)
    peer = faiss.IndexBinaryFlat(d)
    peer.add(cb)
    t_o, (_, I_o), t_p, (_, I_p) = pair(ctx, lambda: ours.search(cq, k), lambda: peer.search(cq, k))
    scanned = len(cq) * cb.nbytes
    return [dict(workload=f"Hamming scan {len(cq)} q x {len(cb)} x {d} bits, k={k}", ours=t_o,
                 peer_timing=t_p, quality=_same_ids(I_o, I_p, k), work=("gbyte", scanned, scanned))]
