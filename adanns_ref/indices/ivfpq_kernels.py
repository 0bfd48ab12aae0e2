"""The numba scan of IVFPQ search and faiss's precomputed table, for `ivfpq.IVFPQIndex`.

`search_lists` scans the probed inverted lists of each query with the ADC table T of its
case (the distance forms are in `ivfpq`'s docstring and below); `precomputed_table` builds
term 2 of faiss's three-term L2 distance, ||r_m||^2 + 2 <s_lm, r_m> per list, sub-quantizer and
code (faiss ``IndexIVFPQ::precompute_table``). Tables and code sums follow faiss's SIMD orders
(`core.simd.table_into`, `core.simd.code_distance`); validation stays in `ivfpq`.
"""
import numba
import numpy as np

from ..core.simd import code_distance, simd_sum, sq_norms, table_into
from ..core.topk import heap_push, heap_sort


def precomputed_table(pq, scoring):
    """faiss ``precompute_table``: term2[l, m, j] = ||c_mj||^2 + 2 <s_lm, c_mj>, (nlist, M, ksub)
    float32, from the norms in fvec_norm_L2sqr order and `pq.inner_product_table(s)`; pq: the
    trained `pq.ProductQuantizer`, scoring (nlist, d_s): the scoring centroids s_l."""
    r_norms = sq_norms(pq.codebooks.reshape(-1, pq.dsub)).reshape(pq.M, pq.ksub)
    return r_norms + np.float32(2) * pq.inner_product_table(scoring)


@numba.njit(cache=True, parallel=True)
def search_lists(y, coarse, probes, scoring, cbT, term2, sub, ids, offsets, l2, by_residual,
                 coarse_is_term1, order, hd, hi):
    """Push d = b + sum_m T[m, code_m] (`core.simd.code_distance`) of every code in the probed lists
    of query r into heap (hd[r], hi[r]), then sort it. T and b of (r, list l), as faiss's scanner:

    - l2, by_residual, term2 (nlist, M, ksub) given: T = term2[l] - 2 <y_r, c> (x2 is exact: one
      rounding, as faiss's fvec_madd); b = coarse[r, p] if coarse_is_term1, else ||y_r - s_l||^2;
    - l2, by_residual, term2 empty: T = distances of the residual y_r - s_l; b = 0;
    - l2, not by_residual: T = distances of y_r; b = 0;
    - ip: T = <y_r, c>; b = <y_r, s_l> if by_residual, else 0.

    y (nq, d_s); coarse, probes (nq, nprobe); scoring (nlist, d_s); cbT (M, dsub, ksub); sub
    (N, M) in list order, ids (N,), offsets (nlist + 1,). Query tables live in thread-local
    buffers, hot in cache while the contiguous codes of each list are scanned.
    """
    M, dsub, ksub = cbT.shape
    per_list = l2 and by_residual
    two = np.float32(2)
    for r in numba.prange(probes.shape[0]):
        rd, ri = hd[r], hi[r]
        acc = np.empty((16, ksub), dtype=np.float32)
        query_table = np.empty((M, ksub), dtype=np.float32)
        list_table = np.empty((M, ksub), dtype=np.float32)
        residual = np.empty(y.shape[1], dtype=np.float32)
        if not per_list or term2.shape[0] > 0:
            for m in range(M):  # distances (l2 without residual) or inner products (ip, term 3)
                table_into(y[r], m * dsub, cbT[m], l2 and not by_residual, True, acc, query_table[m])
        for p in range(probes.shape[1]):
            lst = probes[r, p]
            if offsets[lst] == offsets[lst + 1]:
                continue
            T = query_table
            b = np.float32(0)
            if per_list and term2.shape[0] > 0:
                b = coarse[r, p] if coarse_is_term1 else simd_sum(y[r], scoring[lst], True)
                t2 = term2[lst]
                for m in range(M):
                    for c in range(ksub):
                        list_table[m, c] = t2[m, c] - two * query_table[m, c]
                T = list_table
            elif per_list:
                for t in range(residual.shape[0]):
                    residual[t] = y[r, t] - scoring[lst, t]
                for m in range(M):
                    table_into(residual, m * dsub, cbT[m], True, True, acc, list_table[m])
                T = list_table
            elif by_residual:
                b = simd_sum(y[r], scoring[lst], False)
            for j in range(offsets[lst], offsets[lst + 1]):
                s = b + code_distance(T, sub[j], order)
                heap_push(rd, ri, s if l2 else -s, ids[j])
        heap_sort(rd, ri)
