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

Mixed precision (`mixed_funnel_search`): each stage also names the precision its candidates are
scored at, stages (d_i, p_i, k_i), e.g. binary@256 -> 200, int8@1024 -> 50, float@2048 -> 10,
as vector databases run Matryoshka embeddings (truncate, quantize, rescore):

    binary: Hamming distance between sign bits of the d-prefixes (`binary.binarize`; lower is
            better whatever the metric), stage 0 is faiss's IndexBinaryFlat
    int8:   faiss SQ8 (`sq`, qtype "8bit", minmax ranges trained on the database d-prefixes):
            distance of the float query prefix to each candidate's reconstruction; stage 0 is
            faiss's IndexScalarQuantizer
    float:  the float prefixes, as `funnel_search`

`oversample` has the vector databases' meaning (Qdrant's `oversampling`, sentence-transformers'
`rescore_multiplier`): a stage given shortlist None keeps ceil(oversample * k) candidates, k the
last stage's shortlist. Every stage returns each score with its own id (heap entries move as
pairs), so the scores always belong to the returned ids; sentence-transformers once returned
re-ranked ids next to scores in the old order. Cost per query: `cost.mixed_funnel_cost`.

faiss: a one-stage funnel is `search.exact.exact_search` (faiss's exact search). With more
stages, stage 0 at d_0 <= SCAN_MAX_DIM is the fused scan + top-k of `funnel.kernels`: for fewer
than BLAS_MIN_QUERIES queries in faiss's direct form (bit-identical to exact_search's and to
faiss's IndexFlatL2(d_0) at that batch size), for larger batches in faiss's BLAS form
||q||^2 + ||z||^2 - 2 <q, z> (the bits of faiss's BLAS path, which faiss 1.15 itself only takes
from nq * d_0 >= 128000: shortlists then differ from faiss's IndexFlatL2(d_0) only where the
distances at ranks k_0 and k_0 + 1 tie within float32 rounding); larger d_0 go through
exact_search. Re-ranking computes each candidate's distance directly (sum_t (q_t - x_t)^2, or
sum_t q_t x_t, in the order of faiss's fvec_L2sqr), as faiss's IndexRefineFlat and
knn_L2sqr_by_idx do, on the prefix rebuilt from the candidate's raw row in place
(`funnel.rerank_kernels.rerank_rows_sorted`, the rows of a whole batch read in ascending order):
only the shortlisted rows are read, so the database may be a memory map. faiss has no Matryoshka
re-normalisation, so only the flat, normalize=False case has a faiss counterpart. The scales of
the shortlisted rows are computed from gathered blocks of at most RERANK_BLOCK floats, unless a
`FunnelIndex` has them prepared. `FunnelIndex` (`funnel.index`) keeps the stage-0 prefix (and its
norms) and the scales of chosen dims, for repeated searches of one database.
"""
import numpy as np

from ..core.cost import funnel_flops, mixed_funnel_cost
from ..core.topk import FLT_MAX, finalize, new_heaps, sort_heaps
from ..core.truncate import divide_rows, prefix, row_scales
from ..core.validate import (as_bool, as_float32_matrix, as_ids, as_int, as_k, check_metric,
                             check_prefix_dim)
from ..indices.sqindex import SQIndex
from ..quantizers.binary import binarize, hamming_knn, hamming_rerank
from ..quantizers.sq import DECODE_ROUNDED, DECODE_SIMD, ScalarQuantizer, simd_lanes
from ..search.exact import exact_search
from .kernels import BLAS_MIN_QUERIES, SCAN_MAX_DIM, block_norms, from_blocks, scan_search, to_blocks
from .rerank_kernels import rerank_rows_sorted, shortlist_order

PRECISIONS = ("binary", "int8", "float")
RERANK_BLOCK = 1 << 24  # float32 values of gathered rows when scales are computed (64 MiB)


def _sorted_unique(a):
    """np.unique(a) for a 1-D int array via one sort (np.unique is hash-based and far slower here)."""
    srt = np.sort(a)
    return srt[np.concatenate(([True], srt[1:] != srt[:-1]))] if srt.size else srt


def _shortlist_scales(I, db, dim, s1=None):
    """(s1, s2) float64 (N,) `truncate.prefix_scales` of db at `dim`, filled only at the ids in I
    (the rest is never read); s1 given: only s2 is computed. Rows are gathered RERANK_BLOCK
    floats at a time (only the first `dim` columns once s1 is known)."""
    rows = _sorted_unique(I[I >= 0])
    if s1 is None:
        s1 = np.ones(db.shape[0], dtype=np.float64)
        step = max(1, RERANK_BLOCK // db.shape[1])
        for i0 in range(0, rows.size, step):
            r = rows[i0:i0 + step]
            s1[r] = row_scales(db[r])
    s2 = np.ones(db.shape[0], dtype=np.float64)
    step = max(1, RERANK_BLOCK // dim)
    for i0 in range(0, rows.size, step):
        r = rows[i0:i0 + step]
        s2[r] = row_scales(divide_rows(db[r, :dim], s1[r]))
    return s1, s2


def _rerank(I, db, q, dim, k, metric, normalize, s1=None, s2=None):
    """rerank on validated inputs: I int64 (nq, s) in [-1, N), db (N, D), q (nq, D) float32;
    s1, s2: prepared `truncate.prefix_scales` of all of db at `dim` (None: computed here for
    the shortlisted rows)."""
    hd, hi = new_heaps(q.shape[0], k)
    if normalize and s2 is None:
        s1, s2 = _shortlist_scales(I, db, dim, s1)
    elif not normalize:
        s1 = s2 = np.empty(0, dtype=np.float64)
    rerank_rows_sorted(prefix(q, dim, normalize), db, I, shortlist_order(I), s1, s2,
                       metric == "ip", hd, hi)
    sort_heaps(hd, hi)
    return finalize(hd, hi, metric)


def _stage0(q, db, d0, k0, metric, normalize, n_stages, blocks=None, norms=None):
    """The first stage's (D, I): exact search at prefix d0 for k0 results. A one-stage funnel is
    plain exact search (exact_search, bits included); a shortlist at a small d0 comes from the
    fused scan over `blocks` (the `to_blocks` layout of the prefix; None: built here), in the
    direct form below BLAS_MIN_QUERIES queries, else in the BLAS form with the row norms `norms`
    (`block_norms`; None: computed here)."""
    xq = prefix(q, d0, normalize)
    if n_stages == 1 or d0 > SCAN_MAX_DIM:
        xb = prefix(db, d0, normalize) if blocks is None else from_blocks(blocks, db.shape[0])
        return exact_search(xq, xb, k0, metric)
    if blocks is None or (norms is None and xq.shape[0] >= BLAS_MIN_QUERIES):
        z = prefix(db, d0, normalize)
        blocks = to_blocks(z) if blocks is None else blocks
        norms = block_norms(z) if norms is None else norms
    return scan_search(xq, blocks, db.shape[0], k0, metric,
                       norms if xq.shape[0] >= BLAS_MIN_QUERIES else None)


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
    normalize = as_bool(normalize, "normalize")
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


def check_stages(stages, full_dim, nq):
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
    normalize = as_bool(normalize, "normalize")
    return run_funnel(db, q, check_stages(stages, db.shape[1], q.shape[0]), metric, normalize)


def run_funnel(db, q, stages, metric, normalize, prepared=None):
    """funnel_search on validated inputs; `prepared`: a FunnelIndex whose scan layouts
    (`blocks`) and scales (`s1`, `s2`) are used for the dims it holds."""
    blocks, norms, s1, s2 = (({}, {}, None, {}) if prepared is None else
                             (prepared.blocks, prepared.norms, prepared.s1, prepared.s2))
    d0, k0 = stages[0]
    D, I = _stage0(q, db, d0, k0, metric, normalize, len(stages), blocks.get(d0), norms.get(d0))
    for d, k in stages[1:]:
        D, I = _rerank(I, db, q, d, k, metric, normalize, s1, s2.get(d))
    reranks = [(d, k_prev) for (d, _), (_, k_prev) in zip(stages[1:], stages[:-1])]
    return D, I, funnel_flops(d0, db.shape[0], reranks)


def _check_mixed_stages(stages, full_dim, oversample, nq):
    """stages -> list of (d_i, precision_i, k_i); None shortlists filled from oversample; every
    shortlist goes through the result-size guard (`check_result_size`) for nq queries."""
    try:
        stages = [tuple(s) for s in stages]
    except TypeError:
        raise TypeError(f"stages must be a sequence of (dim, precision, shortlist) triples, got {stages!r}") from None
    if not stages:
        raise ValueError("stages is empty; give e.g. [(256, 'binary', 200), (2048, 'float', 10)]")
    if oversample is not None:
        if isinstance(oversample, (bool, np.bool_)) or not np.isscalar(oversample) \
                or not np.isreal(oversample) or not oversample >= 1 or not np.isfinite(oversample):
            raise ValueError(f"oversample must be a finite number >= 1 (shortlist = oversample * k), "
                             f"got {oversample!r}")
    for i, stage in enumerate(stages):
        if len(stage) != 3:
            raise ValueError(f"stages[{i}] must be a (dim, precision, shortlist) triple, got {stage!r}")
        if stage[1] not in PRECISIONS:
            raise ValueError(f"stages[{i}] precision must be one of {PRECISIONS}, got {stage[1]!r}")
    if stages[-1][2] is None:
        raise ValueError("the last stage's shortlist is k, the number of results; it cannot be None")
    k_last = as_int(stages[-1][2], f"stages[{len(stages) - 1}] shortlist", 1)
    checked = []
    for i, (d, precision, k) in enumerate(stages):
        if k is None:
            if oversample is None:
                raise ValueError(f"stages[{i}] shortlist is None but no oversample was given")
            k = int(min(np.ceil(float(oversample) * k_last), 2.0**62))  # huge: refused by as_k
        d = check_prefix_dim(d, full_dim, f"stages[{i}] dim")
        k = as_k(k, nq, f"stages[{i}] shortlist")
        if checked and k > checked[-1][2]:
            raise ValueError(f"stages[{i}] keeps {k} but the previous stage only kept "
                             f"{checked[-1][2]}; shortlists must not grow along the funnel")
        checked.append((d, precision, k))
    return checked


def _sq8(zb, d):
    """faiss SQ8 of the database prefixes: the quantizer and the reconstructions its scan uses."""
    sq = ScalarQuantizer(d, "8bit").train(zb)
    mode = DECODE_SIMD if simd_lanes(d) > 1 else DECODE_ROUNDED
    return sq.reconstruct(sq.encode(zb), mode)


def mixed_funnel_search(db_full, q_full, stages, metric="l2", normalize=True, oversample=None):
    """Run a mixed-precision funnel -> (D float32 (nq, k), I int64 (nq, k), cost dict).

    stages: [(d_0, p_0, k_0), (d_1, p_1, k_1), ...] with precisions "binary", "int8", "float"
    (see the module docstring); a shortlist k_i may be None when `oversample` is given (then
    ceil(oversample * k_last)). D holds the last stage's scores (Hamming distances for a binary
    last stage), I their ids; -1 / +-FLT_MAX pad rows with fewer results. cost is
    `cost.mixed_funnel_cost(N, stages)` with the filled-in shortlists.
    """
    db, q, metric = _check_inputs(db_full, q_full, metric)
    normalize = as_bool(normalize, "normalize")
    stages = _check_mixed_stages(stages, db.shape[1], oversample, q.shape[0])
    D = I = None
    for i, (d, precision, k) in enumerate(stages):
        if precision == "binary":
            qc, bc = binarize(q, d), binarize(db, d)
            if i == 0:
                Dh, I = hamming_knn(qc, bc, k)
                D = np.where(I < 0, FLT_MAX, Dh).astype(np.float32)
            else:
                D, I = hamming_rerank(I, qc, bc, k)
        elif precision == "int8":
            zq, zb = prefix(q, d, normalize), prefix(db, d, normalize)
            if i == 0:
                index = SQIndex(d, "8bit", metric)
                index.train(zb)
                index.add(zb)
                D, I = index.search(zq, k)
            else:
                D, I = _rerank(I, _sq8(zb, d), zq, d, k, metric, False)
        elif i == 0:
            D, I = exact_search(prefix(q, d, normalize), prefix(db, d, normalize), k, metric)
        else:
            D, I = _rerank(I, db, q, d, k, metric, normalize)
    return D, I, mixed_funnel_cost(db.shape[0], stages)
