"""Adaptive retrieval and funnels over Matryoshka prefixes (MRL paper, SPEC §7).

Adaptive retrieval: shortlist k_0 candidates by exact search at a small prefix d_0 (e.g. 16),
then re-rank the shortlist with the distances at a larger prefix d_1 (e.g. 2048) and keep k_1:

    stage 0:  S_0 = top-k_0 of  dist(q_{d_0}, x_{d_0})  over all N database vectors
    stage i:  S_i = top-k_i of  dist(q_{d_i}, x_{d_i})  over x in S_{i-1}

A funnel is the same cascade with more stages, e.g. dims [16, 32, 64, 128, 2048] and shortlists
[200, 100, 50, 25, 10]. z_d is the re-normalised d-prefix of `truncate.prefix` (normalize=True)
or the plain truncation (normalize=False); dist is squared L2 ("l2") or inner product ("ip").
Cost per query (`cost.funnel_flops`): d_0 * N + sum_{i>=1} d_i * k_{i-1}.

`rerank` re-scores the shortlist of *any* index (I int64 (nq, s), -1 = empty slot) and never
writes into it: the MRL notebook re-ranked a shared id array in place, so every later funnel
read an already re-ranked list.

Shapes and dtypes: db_full (N, D), q_full (nq, D) real arrays (converted once to float32);
returns D float32 (nq, k), I int64 (nq, k), best first, ties to the smaller id, missing results
id -1 with +FLT_MAX ("l2") / -FLT_MAX ("ip").

faiss: stage 0 is `topk.exact_search` (faiss's exact search). Re-ranking computes each candidate's
distance directly (sum_t (q_t - x_t)^2, or sum_t q_t x_t), as faiss's IndexRefineFlat does;
faiss has no Matryoshka re-normalisation, so only the flat, normalize=False case has a faiss
counterpart. When N * dim <= RERANK_BLOCK the whole database is prefixed once; otherwise the
candidate rows are gathered and normalised per block of queries, so memory stays bounded by
RERANK_BLOCK floats rather than N * D.
"""
import numba
import numpy as np

from ._simd import inner, l2sqr
from ._validate import as_float32_matrix, as_ids, as_int, as_k, check_metric, check_prefix_dim
from .cost import funnel_flops
from .topk import exact_search, finalize, heap_push, new_heaps, sort_heaps
from .truncate import prefix

RERANK_BLOCK = 1 << 24  # float32 values of gathered candidate rows per query block (64 MiB)


@numba.njit(cache=True, parallel=True)
def _rerank_kernel(xq, xc, local, ids, use_ip, hd, hi):
    """Score candidate rows xc[local[r, j]] against xq[r]; push (distance, ids[r, j]) into heap r."""
    d = xq.shape[1]
    for r in numba.prange(local.shape[0]):
        rd, ri = hd[r], hi[r]
        for j in range(local.shape[1]):
            c = local[r, j]
            if c < 0:
                continue
            if use_ip:
                dis = -inner(xq[r], xc[c], d)
            else:
                dis = l2sqr(xq[r], xc[c], d)
            # No `dis < rd[0]` shortcut: shortlist ids are unordered, so an equal distance with a
            # smaller id must still reach heap_push's tie rule.
            heap_push(rd, ri, dis, ids[r, j])


def _sorted_unique(a):
    """np.unique(a) for a 1-D int array via one sort (np.unique is hash-based and far slower here)."""
    srt = np.sort(a)
    return srt[np.concatenate(([True], srt[1:] != srt[:-1]))] if srt.size else srt


def _rerank(I, db, q, dim, k, metric, normalize):
    """rerank on validated inputs: I int64 (nq, s) in [-1, N), db (N, D), q (nq, D) float32."""
    nq, s = I.shape
    hd, hi = new_heaps(nq, k)
    if db.shape[0] * dim <= RERANK_BLOCK:
        # The whole database prefix fits the budget: one pass over db is cheaper than gathering
        # and re-normalising the candidate rows of every block (which overlap across blocks).
        _rerank_kernel(prefix(q, dim, normalize), prefix(db, dim, normalize), I, I,
                       metric == "ip", hd, hi)
        sort_heaps(hd, hi)
        return finalize(hd, hi, metric)
    block = max(1, RERANK_BLOCK // max(1, s * db.shape[1]))
    for i0 in range(0, nq, block):
        ids = I[i0:i0 + block]
        present = ids >= 0
        rows = _sorted_unique(ids[present])
        # Shortlist entry j of query r is gathered row local[r, j] (or -1: an empty slot, skipped).
        local = np.where(present, np.searchsorted(rows, ids), -1)
        xc = prefix(db[rows], dim, normalize)
        xq = prefix(q[i0:i0 + block], dim, normalize)
        _rerank_kernel(xq, xc, local, ids, metric == "ip", hd[i0:i0 + block], hi[i0:i0 + block])
    sort_heaps(hd, hi)
    return finalize(hd, hi, metric)


def _check_inputs(db_full, q_full, metric):
    metric = check_metric(metric)
    db = as_float32_matrix(db_full, "db_full")
    q = as_float32_matrix(q_full, "q_full", d=db.shape[1])
    return db, q, metric


def rerank(I, db_full, q_full, dim, k, metric="l2", normalize=True):
    """Re-rank each query's shortlist I[r] at prefix `dim` and keep the k best -> (D, I).

    I: (nq, s) integer ids into db_full; -1 entries are skipped; ids must be distinct per row.
    If a row holds fewer than k valid ids the tail is padded with -1 / +-FLT_MAX. The input I is
    never modified.
    """
    db, q, metric = _check_inputs(db_full, q_full, metric)
    I = as_ids(I, "I", n_db=db.shape[0])
    if I.shape[0] != q.shape[0]:
        raise ValueError(f"I has {I.shape[0]} rows but q_full has {q.shape[0]} queries; pass one "
                         f"shortlist row per query")
    dim = check_prefix_dim(dim, db.shape[1], "dim")
    k = as_k(k, q.shape[0])
    if I.shape[1] > 1:
        srt = np.sort(I, axis=1)
        dup = (srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)
        if dup.any():
            r, j = (int(v) for v in np.argwhere(dup)[0])
            raise ValueError(f"I row {r} lists id {int(srt[r, j + 1])} more than once; deduplicate "
                             f"each shortlist (replace repeats by -1)")
    return _rerank(I, db, q, dim, k, metric, normalize)


def _check_stages(stages, full_dim, nq):
    """stages -> list of (d_i, k_i) ints with 1 <= d_i <= D, k_i >= 1, k_i non-increasing."""
    try:
        stages = [tuple(s) for s in stages]
    except TypeError:
        raise TypeError(f"stages must be a sequence of (dim, k) pairs, got {stages!r}") from None
    if not stages:
        raise ValueError("stages is empty; give at least one (dim, k) pair, e.g. [(16, 200), (2048, 10)]")
    checked = []
    for i, stage in enumerate(stages):
        if len(stage) != 2:
            raise ValueError(f"stages[{i}] must be a (dim, k) pair, got {stage!r}")
        d = check_prefix_dim(stage[0], full_dim, f"stages[{i}] dim")
        k = as_k(stage[1], nq, f"stages[{i}] k")
        if checked and k > checked[-1][1]:
            raise ValueError(f"stages[{i}] keeps k={k} but the previous stage only kept "
                             f"{checked[-1][1]}; shortlists must not grow along the funnel")
        checked.append((d, k))
    return checked


def funnel_search(db_full, q_full, stages, metric="l2", normalize=True):
    """Run a funnel -> (D, I, flops): the last stage's (D, I) and the FLOPs per query.

    stages: [(d_0, k_0), (d_1, k_1), ...]. Stage 0 is exact search at prefix d_0 for k_0
    candidates; stage i re-ranks stage i-1's shortlist at d_i and keeps k_i. Dims may come in any
    order (the MRL funnels increase them), each in 1..D; shortlists k_i must be non-increasing.
    One stage is plain exact search at d_0; [(16, 200), (2048, 10)] is adaptive retrieval.
    flops = d_0 * N + sum_{i>=1} d_i * min(k_{i-1}, N)  (`cost.funnel_flops`).
    """
    db, q, metric = _check_inputs(db_full, q_full, metric)
    stages = _check_stages(stages, db.shape[1], q.shape[0])
    d0, k0 = stages[0]
    D, I = exact_search(prefix(q, d0, normalize), prefix(db, d0, normalize), k0, metric)
    for d, k in stages[1:]:
        D, I = _rerank(I, db, q, d, k, metric, normalize)
    reranks = [(d, k_prev) for (d, _), (_, k_prev) in zip(stages[1:], stages[:-1])]
    return D, I, funnel_flops(d0, db.shape[0], reranks)
