"""Search cost model: floating-point operations per query and bytes per stored vector.

The MRL and AdANNS papers plot accuracy against "MFLOPs" per query but do not print their cost
formulas. The formulas below are **inferred from the plotted points and quoted ratios**, not
taken from the papers' text. They count one multiply-add per dimension per distance and ignore
heap updates, normalisation and memory traffic (SPEC §5). Example: MRL's adaptive retrieval
(shortlist 200 at 16 dims over N = 1.28M, re-rank at 2048) is quoted as "128x fewer MFLOPs"
than exact search at 2048, which is 2048 / 16, the ratio of the shortlisting terms; with the
re-rank term 200 * 2048 included, `funnel_flops` gives 125x.

Notation: N database size, d / d_0 a prefix dim, d_c the dim of the coarse (IVF) search over
N_C = nlist centroids, d_s the dim used to score candidates, nprobe probed lists, M PQ
sub-quantizers of ksub = 2^nbits centroids of dsub = d / M dims, r_i / k_i a re-ranking dim and
the number of candidates it re-scores.

- exact search:  d * N
- IVF (measured): d_c * N_C + d_s * sum(sizes of the probed lists)
- IVF (balanced, the papers' plots): d_c * N_C + nprobe * d_s * N / N_C
- funnel:        d_0 * N + sum_i k_i * r_i
- HNSW (measured): ndis * d_c + n_rescored * d_s (graph distances, then the re-score)
- PQ ADC:        table M * ksub * dsub * 3 (subtract, square, add) + N_scanned * M lookups;
                 lookups are table reads, not FLOPs, so they are reported separately.
- mixed precision (`mixed_funnel_cost`): stage i at d_i dims and precision p_i scores n_i
                 candidates (n_0 = N, n_i = k_{i-1}), reading n_i * bytes(d_i, p_i) bytes with
                 bytes = ceil(d / 8) (binary), d (int8), 4 d (float); its operations are
                 n_i * ceil(d_i / 64) popcounts on uint64 words (binary), n_i * d_i int8
                 multiply-adds (int8: faiss's SQ8 decode-and-accumulate) or n_i * d_i float
                 multiply-adds (float). Each kind is reported separately: they cost different
                 cycles on every CPU.
"""
import math

import numpy as np

from .validate import as_int


def exact_flops(d, N):
    """Brute-force search at d dims over N vectors: d * N."""
    return as_int(d, "d", 1) * as_int(N, "N", 0)


def ivf_flops(d_c, nlist, d_s, probed_sizes):
    """Measured IVF cost d_c * nlist + d_s * sum(probed list sizes).

    probed_sizes: sizes of the lists one query probed (1-D, returns an int), or one row per query
    (2-D (nq, nprobe), returns an int64 array (nq,)).
    """
    d_c, nlist, d_s = as_int(d_c, "d_c", 1), as_int(nlist, "nlist", 1), as_int(d_s, "d_s", 1)
    sizes = np.asarray(probed_sizes)
    if sizes.ndim not in (1, 2):
        raise ValueError(f"probed_sizes must be 1-D (one query) or 2-D (nq, nprobe), got shape {sizes.shape}")
    if sizes.size and sizes.dtype.kind not in "iu":
        raise TypeError(f"probed_sizes must be integer list sizes, got dtype {sizes.dtype}")
    sizes = sizes.astype(np.int64)
    if sizes.size and sizes.min() < 0:
        raise ValueError(f"probed_sizes must be >= 0, got {int(sizes.min())}")
    total = d_c * nlist + d_s * sizes.sum(axis=-1)
    return int(total) if sizes.ndim == 1 else total


def ivf_flops_balanced(d_c, nlist, d_s, nprobe, N):
    """Paper approximation d_c * nlist + nprobe * d_s * N / nlist (lists of equal size N / nlist).

    nprobe is clamped to nlist, as faiss does at search time.
    """
    d_c, nlist, d_s = as_int(d_c, "d_c", 1), as_int(nlist, "nlist", 1), as_int(d_s, "d_s", 1)
    nprobe, N = min(as_int(nprobe, "nprobe", 1), nlist), as_int(N, "N", 0)
    return float(d_c * nlist + nprobe * d_s * N / nlist)


def funnel_flops(d0, N, stages):
    """d0 * N + sum_i k_i * r_i for a funnel: exact search at d0, then re-ranking stages.

    stages: sequence of (r_i, k_i) pairs, dim first like ``funnel.funnel_search``: re-score k_i
    candidates at r_i dims. A shortlist cannot hold more than N items, so k_i is clamped to N.
    Adaptive retrieval 16 -> 2048 with a 200 shortlist: ``funnel_flops(16, N, [(2048, 200)])``.
    """
    d0, N = as_int(d0, "d0", 1), as_int(N, "N", 0)
    total = d0 * N
    for i, stage in enumerate(stages):
        if not isinstance(stage, (tuple, list)) or len(stage) != 2:
            raise ValueError(f"stages[{i}] must be a (dim, n_candidates) pair, got {stage!r}")
        r, k = as_int(stage[0], f"stages[{i}] dim", 1), as_int(stage[1], f"stages[{i}] candidates", 0)
        total += r * min(k, N)
    return total


def adc_flops(M, ksub, dsub, n_scanned):
    """PQ asymmetric distance cost: dict(table_flops=M*ksub*dsub*3, lookups=n_scanned*M)."""
    M, ksub, dsub = as_int(M, "M", 1), as_int(ksub, "ksub", 1), as_int(dsub, "dsub", 1)
    return {"table_flops": M * ksub * dsub * 3, "lookups": as_int(n_scanned, "n_scanned", 0) * M}


def ivfpq_flops(d_c, nlist, M, ksub, dsub, nprobe, n_scanned, by_residual=True):
    """IVFPQ cost per query: dict(coarse_flops, table_flops, flops, lookups).

    coarse_flops = d_c * nlist. With by_residual the query residual q - c differs per probed list,
    so the model counts one ADC table per list (nprobe tables); without it, one table. faiss's
    precomputed-table trick (IndexIVFPQ.precompute_table) replaces the per-list tables by one
    inner-product table plus nprobe * M * ksub additions; that saving is not modelled here.
    flops = coarse_flops + table_flops; lookups = n_scanned * M.
    """
    d_c, nlist = as_int(d_c, "d_c", 1), as_int(nlist, "nlist", 1)
    nprobe = min(as_int(nprobe, "nprobe", 1), nlist)
    adc = adc_flops(M, ksub, dsub, n_scanned)
    coarse = d_c * nlist
    table = adc["table_flops"] * (nprobe if by_residual else 1)
    return {"coarse_flops": coarse, "table_flops": table, "flops": coarse + table,
            "lookups": adc["lookups"]}


def bytes_per_vector_flat(d, ids=False):
    """Storage of one float32 vector: 4 * d bytes (+ 8 for the int64 id an IVF list keeps)."""
    return 4 * as_int(d, "d", 1) + (8 if ids else 0)


def bytes_per_vector_pq(M, nbits=8, ids=False):
    """Storage of one PQ code: ceil(M * nbits / 8) bytes (+ 8 for the int64 id of an IVF list)."""
    M, nbits = as_int(M, "M", 1), as_int(nbits, "nbits", 1, 24)
    return math.ceil(M * nbits / 8) + (8 if ids else 0)


def bytes_per_vector_hnsw(d_c, M, d_s=None):
    """Expected storage of one vector in faiss's form of an (AdANNS-)HNSW index: the d_c-prefix,
    the d_s-prefix of the re-scoring index when d_s != d_c, and the graph: int32 links in
    2M + M * E[levels above 0] slots, E = sum_l P(level >= l) = sum_l M^-l = 1 / (M - 1), plus
    faiss's int32 level and uint64 offset. float, bytes."""
    d_c, M = as_int(d_c, "d_c", 1), as_int(M, "M", 2)
    d_s = d_c if d_s is None else as_int(d_s, "d_s", 1)
    vectors = bytes_per_vector_flat(d_c) + (bytes_per_vector_flat(d_s) if d_s != d_c else 0)
    return vectors + 4 * (2 * M + M / (M - 1)) + 4 + 8


PRECISION_BYTES = {"binary": None, "int8": 1, "float": 4}  # bytes per dim (binary: 1 bit)


def bytes_per_vector(d, precision):
    """Storage of one d-dim code: ceil(d / 8) (binary), d (int8) or 4 d (float) bytes."""
    d = as_int(d, "d", 1)
    if precision not in PRECISION_BYTES:
        raise ValueError(f"precision must be one of {tuple(PRECISION_BYTES)}, got {precision!r}")
    return math.ceil(d / 8) if precision == "binary" else PRECISION_BYTES[precision] * d


def mixed_funnel_cost(N, stages):
    """Per-query cost of a mixed-precision funnel -> dict(stages=[...], bytes, popcounts,
    int8_ops, float_ops), totals over the stages.

    stages: (d_i, precision_i, k_i) triples as ``funnel.mixed_funnel_search`` takes them; stage 0
    scans all N vectors, stage i re-scores min(k_{i-1}, N) candidates. Each stage's dict holds
    dim, precision, candidates, bytes, popcounts, int8_ops, float_ops.
    """
    N = as_int(N, "N", 0)
    rows, scored = [], N
    for i, stage in enumerate(stages):
        if not isinstance(stage, (tuple, list)) or len(stage) != 3:
            raise ValueError(f"stages[{i}] must be a (dim, precision, shortlist) triple, got {stage!r}")
        d, precision, k = stage
        row = {"dim": as_int(d, f"stages[{i}] dim", 1), "precision": precision, "candidates": scored,
               "bytes": scored * bytes_per_vector(d, precision), "popcounts": 0, "int8_ops": 0,
               "float_ops": 0}
        if precision == "binary":
            row["popcounts"] = scored * math.ceil(d / 64)
        else:
            row["int8_ops" if precision == "int8" else "float_ops"] = scored * d
        rows.append(row)
        scored = min(as_int(k, f"stages[{i}] shortlist", 1), N)
    totals = {key: sum(r[key] for r in rows) for key in ("bytes", "popcounts", "int8_ops", "float_ops")}
    return {"stages": rows, **totals}


def hnsw_flops(ndis, d_c, d_s=None, n_rescored=0):
    """Measured HNSW / AdANNS-HNSW cost ndis * d_c + n_rescored * d_s.

    ndis: distances computed by the graph search at d_c (`HNSWIndex.last_search_ndis`, faiss's
    hnsw_stats.ndis), one int or one per query (nq,); n_rescored: candidates re-scored at d_s
    (at most max(ef, k); 0 without re-scoring), an int or (nq,). Returns an int, or an int64
    array (nq,) when either count is an array.
    """
    d_c = as_int(d_c, "d_c", 1)
    d_s = d_c if d_s is None else as_int(d_s, "d_s", 1)
    counts = []
    for name, v in (("ndis", ndis), ("n_rescored", n_rescored)):
        a = np.asarray(v)
        if a.ndim > 1 or (a.size and a.dtype.kind not in "iu") or a.dtype == bool:
            raise TypeError(f"{name} must be an integer count or a 1-D integer array, got {v!r}")
        if a.size and a.min() < 0:
            raise ValueError(f"{name} must be >= 0, got {int(a.min())}")
        counts.append(a.astype(np.int64))
    total = counts[0] * d_c + counts[1] * d_s
    return int(total) if total.ndim == 0 else total
