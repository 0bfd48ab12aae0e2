"""Exact k-NN search, blocked: one BLAS GEMM per block of queries x database rows, merged into
the heaps (or reservoirs) of `topk`; faiss's ``knn_L2sqr`` / ``knn_inner_product``.

Exact search, for queries q_i (nq, d) and database x_j (nb, d), float32:

    l2:  D_ij = ||q_i||^2 + ||x_j||^2 - 2 <q_i, x_j>,  clamped at 0      (faiss's BLAS form)
    ip:  D_ij = <q_i, x_j>, results sorted by decreasing D_ij

computed block by block (``Q_BLOCK`` queries x ``DB_BLOCK`` database rows, one BLAS GEMM per
block, so memory stays O(Q_BLOCK * DB_BLOCK)) and merged into the per-query heaps by a parallel
numba kernel. As in faiss (`knn_L2sqr` / `knn_inner_product`), small problems with
nq * d < ``BLAS_THRESHOLD`` skip BLAS and compute each distance directly
(sum_t (q_t - x_t)^2 or sum_t q_t x_t).

Direct sums and the norms of the BLAS form use `core.simd.simd_sum`, the summation order of faiss's
AVX-512 `fvec_L2sqr` / `fvec_inner_product` (``core.simd`` order 1).

faiss-identical: the distance formulas and the BLAS/direct switch; direct-path distances are
bit-identical to faiss where faiss dispatches to AVX-512 (other SIMD levels sum in another
order: last-bit differences); -1 / +-FLT_MAX padding; the returned order. Not bit-identical:
the GEMM itself (numpy's OpenBLAS vs the one faiss links; about 97 % of the products agree bit
for bit, the rest within float32 rounding), so BLAS-path distances agree to ~1e-6 relative
(more where the L2 form cancels, i.e. near-duplicates; as in faiss, equal database vectors can
get distances differing in the last bit). Ties: here always the smaller id first, for both
metrics. faiss does the same for L2 exact search, but for inner product it lists equal
similarities by *decreasing* id, and the members it keeps of a tie group cut at rank k depend
on heap history; compare such groups as sets (`adanns_ref.testing.assert_knn_equal`). faiss
also splits the *database* over threads when nq < threads; here a single query runs on one
thread (same results, lower single-query throughput).
"""
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numba
import numpy as np

from ..core.simd import simd_sum, sq_norms
from ..core.threads import BLAS_THRESHOLD, blas_single_thread, serial_or_parallel
from ..core.topk import (RESERVOIR_MIN_K, finalize, heap_push, heap_sort, new_heaps, new_reservoirs,
                         push_chunk, reservoir_push_chunk, reservoir_to_row)

Q_BLOCK = 1024  # queries per GEMM block and worker (faiss: 4096; 1024 measured as fast or faster)
DB_BLOCK = 1024  # database rows per GEMM block (faiss: distance_compute_blas_database_bs)
MERGE_CHUNK = 128  # GEMM-block columns tested against a heap's root at once (SIMD)
POOL_MIN_WORK = 1 << 27  # nq * nb * d multiply-adds (a few ms) below which one thread searches


@numba.njit(cache=True, nogil=True)
def _l2_count_at_most(ip, qn, x_norms, thr):
    """How many of max(qn + x_norms[j] - 2 ip[j], 0) are <= thr (a vectorised pre-test)."""
    two = np.float32(2.0)
    zero = np.float32(0.0)
    n = 0
    for j in range(ip.shape[0]):  # a range from 0 over a slice: LLVM vectorises this loop
        n += np.int32(max(qn + x_norms[j] - two * ip[j], zero) <= thr)
    return n


@numba.njit(cache=True, nogil=True)
def _ip_count_at_most(ip, thr):
    """How many of -ip[j] are <= thr (vectorised pre-test)."""
    n = 0
    for j in range(ip.shape[0]):
        n += np.int32(-ip[j] <= thr)
    return n


@numba.njit(cache=True, nogil=True)
def _l2_into(ip, qn, x_norms, out):
    """out[j] = max(qn + x_norms[j] - 2 ip[j], 0), the operations of `_l2_count_at_most`."""
    two = np.float32(2.0)
    zero = np.float32(0.0)
    for j in range(ip.shape[0]):
        out[j] = max(qn + x_norms[j] - two * ip[j], zero)


@numba.njit(cache=True, nogil=True)
def _neg_into(ip, out):
    """out[j] = -ip[j]."""
    for j in range(ip.shape[0]):
        out[j] = -ip[j]


@numba.njit(cache=True, nogil=True)
def _merge_block(ip, q_norms, x_norms, j0, use_ip, hd, hi, bd, bi, count):
    """Turn a GEMM block ip[r, j] = <q_r, x_{j0+j}> into distances and offer them to query r's
    heap (hd, hi), or to its reservoir (bd, bi, count) when those are given (k >
    RESERVOIR_MIN_K; else they are empty arrays).

    l2: D_rj = max(||q_r||^2 + ||x_j||^2 - 2 ip_rj, 0) (faiss's BLAS form; cancellation can make
    identical vectors slightly negative); ip: -ip_rj. Chunks of MERGE_CHUNK columns are first
    counted against the threshold in SIMD without storing anything; only a chunk with a
    candidate is computed into a buffer (same operations, same bits) and offered. After the
    first blocks almost no chunk has one, so the merge costs one vectorised read of the block.
    """
    zero = np.float32(0.0)
    buf = np.empty(MERGE_CHUNK, dtype=np.float32)
    sel = np.empty(MERGE_CHUNK, dtype=np.int32)
    use_res = bd.shape[0] > 0
    n = ip.shape[1]
    for r in range(ip.shape[0]):
        row = ip[r]
        qn = zero if use_ip else q_norms[r]
        thr_row = bd[r, bd.shape[1] - 1:] if use_res else hd[r, :1]  # the threshold's slot
        for c in range(0, n, MERGE_CHUNK):
            e = min(c + MERGE_CHUNK, n)
            if use_ip:
                if _ip_count_at_most(row[c:e], thr_row[0]) == 0:
                    continue
                dis = buf[:e - c]
                _neg_into(row[c:e], dis)
            else:
                if _l2_count_at_most(row[c:e], qn, x_norms[c:e], thr_row[0]) == 0:
                    continue
                dis = buf[:e - c]
                _l2_into(row[c:e], qn, x_norms[c:e], dis)
            if use_res:
                reservoir_push_chunk(dis, j0 + c, bd[r], bi[r], count[r], sel)
            else:
                push_chunk(dis, j0 + c, hd[r], hi[r])


@serial_or_parallel
def _scan_direct(xq, xb, use_ip, hd, hi):
    """Direct-form exact search for small query batches: every (q, x) pair, heaps filled and
    sorted in place."""
    for r in numba.prange(xq.shape[0]):
        rd, ri = hd[r], hi[r]
        for j in range(xb.shape[0]):
            dis = simd_sum(xq[r], xb[j], not use_ip)
            if use_ip:
                dis = -dis
            if dis < rd[0]:
                heap_push(rd, ri, dis, j)
        heap_sort(rd, ri)


@numba.njit(cache=True, nogil=True)
def _finish_rows(hd, hi, bd, bi, count):
    """Sort every heap row, or fill it from its reservoir, on the calling thread (a worker of
    `_blas_search`)."""
    for r in range(hd.shape[0]):
        if bd.shape[0]:
            reservoir_to_row(bd[r], bi[r], count[r], hd[r], hi[r])
        else:
            heap_sort(hd[r], hi[r])


def _blas_search(xq, xb, use_ip, hd, hi, q_block):
    """BLAS-form search filling heaps hd/hi (nq, k): GEMM block by block, then merge.

    Each worker thread takes whole query blocks and runs GEMM with single-threaded BLAS and the
    merge kernel (which releases the GIL). One pool of numba.get_num_threads() workers, rather
    than multi-threaded BLAS alternating with a parallel numba merge: numpy's OpenBLAS threads
    spin after each call and starve numba's threads (measured 5x slower on 2 cores).
    """
    nq, nb = xq.shape[0], xb.shape[0]
    empty = np.empty(0, dtype=np.float32)
    x_norms = empty if use_ip else sq_norms(xb)
    q_norms = empty if use_ip else sq_norms(xq)
    k = hd.shape[1]
    workers = numba.get_num_threads()
    db_block = min(nb, DB_BLOCK)

    def search_block(i0):
        q = xq[i0:i0 + q_block]
        heaps = hd[i0:i0 + q_block], hi[i0:i0 + q_block]
        reservoirs = new_reservoirs(q.shape[0] if k > RESERVOIR_MIN_K else 0, k)
        qn = q_norms[i0:i0 + q_block]
        buf = np.empty(q.shape[0] * db_block, dtype=np.float32)
        for j0 in range(0, nb, db_block):
            x = xb[j0:j0 + db_block]
            ip = buf[:q.shape[0] * x.shape[0]].reshape(q.shape[0], x.shape[0])
            np.matmul(q, x.T, out=ip)
            _merge_block(ip, qn, x_norms[j0:j0 + db_block], j0, use_ip, *heaps, *reservoirs)
        _finish_rows(*heaps, *reservoirs)

    if workers == 1 or nq * nb * xq.shape[1] < POOL_MIN_WORK:
        for i0 in range(0, nq, q_block):  # the thread pool's setup would cost more than it saves
            search_block(i0)
        return
    with blas_single_thread(), ThreadPoolExecutor(workers) as pool:
        list(pool.map(search_block, range(0, nq, q_block)))  # list() re-raises worker errors


class SearchPlan(NamedTuple):
    """How `exact_search` computes a batch: BLAS form or direct sums, and the queries per GEMM
    block. A GEMM's bits depend on its shape, so a part of the batch that starts at a multiple
    of q_block and is searched with the batch's plan gets the batch's bits (`distributed`)."""
    blas: bool
    q_block: int


def search_plan(nq, d):
    """The `SearchPlan` of a batch of nq queries of d dims: BLAS form from nq * d >=
    BLAS_THRESHOLD (faiss), query blocks of at most Q_BLOCK, as many as a multiple of
    numba.get_num_threads() (a balanced load)."""
    workers = numba.get_num_threads()
    n_blocks = workers * max(1, -(-nq // (workers * Q_BLOCK)))
    return SearchPlan(nq * d >= BLAS_THRESHOLD, max(1, -(-nq // n_blocks)))


def exact_search(xq, xb, k, metric="l2", plan=None):
    """Exact k-NN of each row of xq among the rows of xb -> (D float32 (nq, k), I int64 (nq, k)).

    Inputs must already be validated (`knn_search` is the checked entry point): float32,
    C-contiguous, 2-D, equal widths, finite; k >= 1, metric "l2" or "ip". Results are sorted
    best first; with fewer than k database rows the tail is padded with id -1 and distance
    +FLT_MAX ("l2") / -FLT_MAX ("ip"). Uses numba.get_num_threads() threads. plan: the
    `search_plan` of the whole batch when xq is a part of it (default: xq's own); database rows
    may be any DB_BLOCK-aligned part too.
    """
    nq, d = xq.shape
    plan = search_plan(nq, d) if plan is None else plan
    hd, hi = new_heaps(nq, k)
    use_ip = metric == "ip"
    if nq == 0 or xb.shape[0] == 0:
        pass
    elif not plan.blas:
        _scan_direct.for_work(nq * xb.shape[0] * d)(xq, xb, use_ip, hd, hi)
    else:
        _blas_search(xq, xb, use_ip, hd, hi, plan.q_block)
    return finalize(hd, hi, metric)
