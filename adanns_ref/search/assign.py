"""Nearest-centroid assignment: faiss ``IndexFlat{L2,IP}.search(x, 1)``, bit for bit where it can be.

For points x_i (n, d) and centroids c_j (k, d), float32:

    l2:  a_i = argmin_j ||x_i - c_j||^2,  D_i = the minimum      (ties -> smaller j)
    ip:  a_i = argmax_j <x_i, c_j>,       D_i = the maximum      (ties -> smaller j)

computed as faiss's ``knn_L2sqr`` / ``knn_inner_product`` with k = 1 do (k-means assigns with it,
IVF-style routing of one probe too):

- n * d < BLAS_THRESHOLD (faiss ``distance_compute_blas_threshold``, counted over the whole
  batch): one direct sum per pair in faiss's AVX-512 order (``core.simd`` order 1), then a strict
  comparison scan over j. Bit-identical to faiss on x86-64 where faiss dispatches to AVX-512.
- otherwise (GEMM path): <x, c> by BLAS in blocks of GEMM_COLS = 1024 centroids (faiss's column
  blocks), then faiss's top-1 rule: for l2 its exhaustive_L2sqr_blas_cmax kernel (8 lanes of
  ||c||^2 - 2 <x, c>, then + ||x||^2, clamped at 0; see ``_top1_l2_block``), for ip the first
  maximum. The GEMM itself rounds differently from faiss's OpenBLAS call (and faiss has fused
  kernels for small d), so distances match faiss to ~1e-7 relative, not always bit for bit;
  assignments differ only at near-ties (measured: identical on 60000 x 128, k = 1024).

Threads: the kernels use numba's thread pool (``numba.set_num_threads``); BLAS is limited to one
thread during the GEMM path (blocks of points run in parallel instead, as in scikit-learn's
k-means), and kernels smaller than PARALLEL_MIN_WORK run on one thread (`threads_for`). Results
do not depend on the number of threads.
"""
import numba
import numpy as np

from ..core.simd import simd_sums, sq_norms
from ..core.threads import BLAS_THRESHOLD, blas_single_thread, serial_or_parallel, threads_for
from ..core.topk import FLT_MAX
from ..distributed import Executor, block_bounds
from .exact import exact_search, search_plan

GEMM_COLS = 1024  # faiss distance_compute_blas_database_bs: its top-1 column blocks
GEMM_BLOCK_ELEMS = 1 << 18  # scores per GEMM block (1 MB: stays in cache for the merge)


@serial_or_parallel
def _assign_direct(x, ct, ip):
    """Nearest centroid of each row by direct per-pair sums (faiss's exhaustive_*_seq with a
    top-1 result: strict comparison, so ties keep the smaller j). ct: centroids (d, k)."""
    n, k = x.shape[0], ct.shape[1]
    dist = np.empty(n, dtype=np.float32)
    idx = np.empty(n, dtype=np.int64)
    nblocks = (n + 63) // 64
    for b in numba.prange(nblocks):
        acc = np.empty((16, k), dtype=np.float32)
        for i in range(b * 64, min(n, b * 64 + 64)):
            sums = simd_sums(x[i], ct, not ip, acc)
            best = -FLT_MAX if ip else FLT_MAX
            best_j = -1
            for j in range(k):
                if (sums[j] > best) if ip else (sums[j] < best):
                    best = sums[j]
                    best_j = j
            dist[i] = best
            idx[i] = best_j
    return dist, idx


@numba.njit(cache=True)
def _top1_l2_block(st, xn, cn, j0, best, best_j, lv, li):
    """Merge one GEMM block st[t, r] = <c_{j0+t}, x_r> into the running top-1 (best, best_j).

    faiss's top-1 L2 kernel (exhaustive_L2sqr_blas_cmax) for a block of <= GEMM_COLS columns:
    8 lanes per row keep the smallest u = fma(ip, -2, ||c||^2) = ||c||^2 - 2 ip (exact: the
    product by 2 does not round) over columns t = l mod 8 of the first 16 * floor(cols / 16);
    a lane keeps its old value on ties and starts, as in faiss, from (best - ||x||^2, t = 0).
    Each lane's candidate max(u + ||x||^2, 0) is merged with ties to the smaller index; the
    leftover columns use max(||x||^2 + ||c||^2 - 2 ip, 0). Rows are the inner loop so LLVM
    vectorises across rows. lv (8, R) float32 and li (8, R) int64 are scratch.
    """
    cols, rows = st.shape
    c16 = cols - cols % 16
    two = np.float32(2)
    zero = np.float32(0)
    for l in range(8):
        for r in range(rows):
            lv[l, r] = best[r] - xn[r]
            li[l, r] = 0
    for t in range(c16):
        lvl = lv[t % 8]
        lil = li[t % 8]
        c2 = cn[j0 + t]
        line = st[t]
        for r in range(rows):
            u = c2 - two * line[r]
            better = u < lvl[r]
            lvl[r] = u if better else lvl[r]
            lil[r] = t if better else lil[r]
    for l in range(8):
        for r in range(rows):
            cand = max(lv[l, r] + xn[r], zero)
            j = li[l, r] + j0
            if cand < best[r] or (cand == best[r] and j < best_j[r]):
                best[r] = cand
                best_j[r] = j
    for t in range(c16, cols):
        for r in range(rows):
            v = max((xn[r] + cn[j0 + t]) - two * st[t, r], zero)
            if v < best[r]:
                best[r] = v
                best_j[r] = j0 + t


@numba.njit(cache=True)
def _top1_ip_block(st, j0, best, best_j):
    """Merge one GEMM block st[t, r] = <c_{j0+t}, x_r>: running argmax, ties -> smaller index
    (faiss's strict-greater scan in column order; rows are the vectorised inner loop)."""
    for t in range(st.shape[0]):
        line = st[t]
        for r in range(st.shape[1]):
            better = line[r] > best[r]
            best[r] = line[r] if better else best[r]
            best_j[r] = j0 + t if better else best_j[r]


@serial_or_parallel
def _assign_gemm(x, c, xn, cn, ip, block_rows):
    """Nearest centroid by blocked GEMM + top-1 merge (faiss's exhaustive_*_blas path).

    Blocks of block_rows points x GEMM_COLS centroids (faiss's column blocks); the scores are
    computed transposed, (centroids, points), so the merge vectorises across points. Blocks of
    points run in parallel on numba's threads, each calling single-threaded BLAS (as scikit-learn's
    k-means does): one thread pool, no hand-offs between numba's and BLAS's pools.
    xn, cn: squared norms (ignored for ip). Returns (dist (n,) float32, idx (n,) int64).
    """
    n, k = x.shape[0], c.shape[0]
    cols = min(k, GEMM_COLS)
    dist = np.empty(n, dtype=np.float32)
    idx = np.full(n, -1, dtype=np.int64)
    dist[:] = -FLT_MAX if ip else FLT_MAX
    for b in numba.prange((n + block_rows - 1) // block_rows):
        i0 = b * block_rows
        i1 = min(n, i0 + block_rows)
        xbt = x[i0:i1].T
        st = np.empty((cols, i1 - i0), dtype=np.float32)
        lv = np.empty((8, i1 - i0), dtype=np.float32)
        li = np.empty((8, i1 - i0), dtype=np.int64)
        for j0 in range(0, k, GEMM_COLS):
            cb = c[j0:j0 + GEMM_COLS]
            out = st[:cb.shape[0]]
            np.dot(cb, xbt, out)
            if ip:
                _top1_ip_block(out, j0, dist[i0:i1], idx[i0:i1])
            else:
                _top1_l2_block(out, xn[i0:i1], cn, j0, dist[i0:i1], idx[i0:i1], lv, li)
    return dist, idx


def uses_gemm(n, d):
    """Whether a batch of n rows of d dims takes the GEMM path (faiss decides per batch)."""
    return n * d >= BLAS_THRESHOLD


def gemm_block_rows(k):
    """Rows per GEMM block against k centroids. Blocks start at multiples of it, and a GEMM's
    bits depend on its shape, so a caller that splits a batch (`distributed`) cuts it there."""
    return max(1, GEMM_BLOCK_ELEMS // min(k, GEMM_COLS))


def nearest_centroids(x, c, ip=False, x_norms=None, gemm=None):
    """faiss ``IndexFlat{L2,IP}.search(x, 1)`` on centroids c: (D (n,) float32, I (n,) int64).

    x (n, d), c (k, d): C-contiguous float32, already validated. Direct sums when
    n * d < BLAS_THRESHOLD, else blocked GEMM (see the module docstring). x_norms: optional
    precomputed ``sq_norms(x)`` (k-means reuses it across iterations). gemm: force the path
    (`uses_gemm` of the whole batch when x is one part of it, cut at `gemm_block_rows`); then
    each row gets the bits it gets in the whole batch.
    """
    gemm = uses_gemm(*x.shape) if gemm is None else gemm
    work = x.shape[0] * x.shape[1] * c.shape[0]
    with threads_for(work):
        if not gemm:
            dist, idx = _assign_direct.for_work(work)(x, np.ascontiguousarray(c.T), ip)
        else:
            xn = cn = np.empty(0, np.float32)
            if not ip:
                xn = sq_norms(x) if x_norms is None else x_norms
                cn = sq_norms(c)
            with blas_single_thread():
                dist, idx = _assign_gemm.for_work(work)(x, c, xn, cn, ip, gemm_block_rows(c.shape[0]))
    if idx.size and idx.min() < 0:
        raise ValueError("squared distances overflow float32 (inf) for some rows; rescale x")
    return dist, idx


def routing_plan(n, d, k, nprobe):
    """How `search_centroids` cuts a batch of n rows (d dims, k centroids): (plan, rows), where
    plan fixes the path of the whole batch and a part starting at a multiple of `rows` gets the
    same bits as inside the batch (`distributed` splits batches there)."""
    if nprobe == 1:
        return uses_gemm(n, d), gemm_block_rows(k)
    plan = search_plan(n, d)
    return plan, plan.q_block


def search_centroids(x, c, nprobe, metric, plan=None):
    """faiss ``quantizer.search(x, nprobe)`` for IVF routing: (D, I), both (n, nprobe).

    nprobe == 1 goes through `nearest_centroids`, faiss's top-1 rule (its Top1 result handler:
    the same distances, bit for bit on the direct path, and half the time of a k-NN search);
    nprobe > 1 is the exact k-NN `exact.exact_search`. x, c validated float32; metric "l2" / "ip".
    plan: `routing_plan(...)[0]` of the whole batch when x is a part of it (default: x's own).
    """
    if nprobe == 1:
        D, I = nearest_centroids(x, c, ip=metric == "ip", gemm=plan)
        return D[:, None], I[:, None]
    return exact_search(x, c, nprobe, metric, plan=plan)


# ----------------------------------------------------------------------- on Dask

def _nearest_block(x, centroids, ip, gemm):
    return nearest_centroids(x, centroids, ip, gemm=gemm)


class NearestCentroids:
    """k-means' assignment step on a client: the blocks of x (n, d) float32 stay on the workers
    for every iteration; ``self(c)`` returns nearest_centroids(x, c, ip) of the whole x
    (dist (n,) float32, idx (n,) int64) with the in-process bits."""

    def __init__(self, client, x, k, ip):
        self.ex = Executor(client)
        self.ip = ip
        self.gemm = uses_gemm(*x.shape)
        align = gemm_block_rows(k) if self.gemm else 1
        self.blocks = self.ex.blocks(x, block_bounds(x.shape[0], align, x.shape[1], self.ex.n_threads))

    def __call__(self, centroids):
        parts = self.ex.map(_nearest_block, self.blocks, self.ex.put(centroids), self.ip, self.gemm)
        dist = np.concatenate([p[0] for p in parts])
        idx = np.concatenate([p[1] for p in parts])
        if idx.size and idx.min() < 0:
            raise ValueError("squared distances overflow float32 (inf) for some rows; rescale x")
        return dist, idx

    def close(self):
        """Release the blocks on the workers."""
        self.ex.client.cancel(self.blocks)
        self.blocks = []
