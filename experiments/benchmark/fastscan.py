"""4-bit PQ fast-scan workloads of experiments.benchmark (issue 29): `PQFastScanIndex` and
`IVFPQFastScanIndex` search against faiss's IndexPQFastScan / IndexIVFPQFastScan holding the
same codebooks, centroids and codes (exported by the bridge, so both scan identical blocks).

Data: the `codes_n_db` x `codes_dim` Matryoshka-like database of the code-scan rows,
`codes_n_query` queries, k = 10 and k = 50 (heap and reservoir paths); M = 32 (16 bytes a
vector), nlist = 64 and nprobe = 8 for the IVF row. Training is not timed (it is the PQ's,
benchmarked in the "pq" row). Quality: share of ids equal to faiss's (1.0 expected for k = 10).
"""
from . import data as _bench_data
from .codes import _same_ids
from .measure import pair

FS_M, FS_NLIST, FS_NPROBE = 32, 64, 8


def _codes_data(ctx):
    c = ctx.cfg
    xb, xq, _, _ = _bench_data.matryoshka_like(c["codes_n_db"], c["codes_n_query"], c["codes_dim"])
    return xb, xq


def _scanned(xq, xb):
    return len(xq) * len(xb) * FS_M // 2  # half a byte per sub-quantizer


def bench_pq_fastscan(ctx):
    from adanns_ref.faiss_bridge.fastscan import fastscan_to_faiss
    from adanns_ref.fastscan import PQFastScanIndex
    xb, xq = ctx.cached("codes_data", lambda: _codes_data(ctx))
    d = xb.shape[1]
    ours = PQFastScanIndex(d, FS_M, allow_small=True)
    ours.train(xb)
    ours.add(xb)
    peer = fastscan_to_faiss(ours)
    rows = []
    for k in (10, 50):
        t_o, (_, I_o), t_p, (_, I_p) = pair(ctx, lambda: ours.search(xq, k), lambda: peer.search(xq, k))
        rows.append(dict(workload=f"PQ{FS_M}x4fs scan {len(xq)} q x {len(xb)} x {d}, k={k}",
                         ours=t_o, peer_timing=t_p, quality=_same_ids(I_o, I_p, k),
                         work=("gbyte", _scanned(xq, xb), _scanned(xq, xb))))
    return rows


def bench_ivfpq_fastscan(ctx):
    from adanns_ref.faiss_bridge.fastscan import fastscan_to_faiss
    from adanns_ref.fastscan import IVFPQFastScanIndex
    xb, xq = ctx.cached("codes_data", lambda: _codes_data(ctx))
    d, k = xb.shape[1], ctx.cfg["k"]
    ours = IVFPQFastScanIndex(d, FS_NLIST, FS_M, allow_small=True)
    ours.train(xb)
    ours.add(xb)
    peer = fastscan_to_faiss(ours)
    peer.nprobe = FS_NPROBE
    t_o, (_, I_o), t_p, (_, I_p) = pair(ctx, lambda: ours.search(xq, k, nprobe=FS_NPROBE),
                                         lambda: peer.search(xq, k))
    scanned = _scanned(xq, xb) * FS_NPROBE // FS_NLIST
    return [dict(workload=f"IVF{FS_NLIST},PQ{FS_M}x4fs nprobe={FS_NPROBE}, {len(xq)} q x {len(xb)}, "
                          f"k={k}", ours=t_o, peer_timing=t_p, quality=_same_ids(I_o, I_p, k),
                 work=("gbyte", scanned, scanned))]
