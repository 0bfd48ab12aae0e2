"""k-means with faiss's exact semantics (faiss 1.15 ``Clustering::train`` + ``IndexFlat`` search).

Lloyd's algorithm on n training points x_i in R^d (float32) and k centroids c_j:

    assign:    a_i = argmin_j ||x_i - c_j||^2          (metric "l2"; ties -> smaller j)
               a_i = argmax_j <x_i, c_j>               (metric "ip" / spherical; ties -> smaller j)
    objective: obj = sum_i dist(x_i, c_{a_i})          (float32, summed sequentially in i)
    update:    c_j = float32(1 / n_j) * sum_{i: a_i = j} x_i   (float32 sum in input order)

The faiss recipe around it, reproduced step by step (SPEC §4):

1. n < k: error. n > k * max_points_per_centroid: keep rows perm[:k * max_ppc] of
   rand_perm(n, seed) (see ``_mt19937``). If then n == k: centroids are the first k *input*
   rows (faiss copies from the caller's array), obj = [0.0], no iteration.
2. For redo r in 0..nredo-1: init centroids = rows perm[:k] of rand_perm(n, seed + 1 + r *
   15486557) ("random", the default), or rows from ``fit(x, init_centroids=...)`` (warm start;
   with m < k given rows, rows m..k-1 come from perm[m:k]). spherical: L2-normalise them.
3. Each iteration: assign, objective, update, then split every empty cluster ci: with a fresh
   mt19937(1234) per iteration, scan cj = 0, 1, ... cyclically and accept cj when
   rand_float() < p = float32((n_cj - 1) / float32(n - k)); after 10 k rejected draws take the
   largest cluster. c_ci = c_cj * (1 + eps) on even coordinates and (1 - eps) on odd ones,
   c_cj the opposite, eps = 1/1024; counts are floats: n_ci = n_cj / 2, n_cj -= n_ci.
   spherical: re-normalise c (x * float32(1.0 / sqrtf(||c||^2))).
4. Early stop (faiss >= 1.14, ``early_stop=True``): after iteration i > 0 stop when
   |obj_{i-1} - obj_i| / |obj_{i-1}| <= 0, i.e. the objective is exactly unchanged (never when
   obj_{i-1} == 0).
5. nredo > 1: keep the run with the lowest final obj (l2) or highest (ip). Like faiss, ``obj``
   then holds the per-iteration objectives of every run up to and including the kept one.

Distances, as faiss's ``knn_L2sqr`` / ``knn_inner_product`` compute them:

- n * d < 128000 (``distance_compute_blas_threshold``, counted over the whole search batch):
  one direct sum per pair, in the order of faiss's AVX-512 kernel (16 fused-multiply-add lanes,
  lanes l and l+8 added, one 8-lane step, halving tree, scalar FMA tail; see ``_faiss_sums``).
  On this path centroids, assignments and objectives are bit-identical to faiss on x86-64
  with AVX-512 (the level the faiss-cpu wheel dispatches to there). Builds that dispatch to
  another SIMD level sum in another order: results may then differ in the last bit, which only
  changes an assignment at an exact near-tie.
- otherwise (GEMM path): <x, c> by BLAS in blocks of 1024 centroids (faiss's column blocks),
  then faiss's top-1 rule: for l2 its exhaustive_L2sqr_blas_cmax kernel (8 lanes of
  ||c||^2 - 2 <x, c>, then + ||x||^2, clamped at 0; see ``_top1_l2_block``), for ip the first
  maximum. The GEMM itself rounds differently from faiss's OpenBLAS call (and faiss has fused
  kernels for small d), so distances match faiss to ~1e-7 relative, not always bit for bit;
  assignments differ only at near-ties (measured: identical on 60000 x 128, k = 1024).

Threads: kernels use numba's thread pool (``numba.set_num_threads``); BLAS is limited to one
thread during the GEMM path (blocks of points run in parallel instead, as in scikit-learn's
k-means), and kernels smaller than PARALLEL_MIN_WORK run on one thread. Results do not depend
on the number of threads.

Not faiss-identical: ``init="k-means++"`` (classic D^2 sampling with a NumPy Generator seeded
with seed + 1 + r * 15486557; faiss 1.15 has its own k-means++ with another RNG stream).
No warning is printed when n < min_points_per_centroid * k (faiss writes one to stderr).

Shapes: x (n, d) float32; centroids (k, d) float32; assign returns D (n,) float32 and
I (n,) int64, like ``faiss.Kmeans.assign`` (which ravels ``index.search(x, 1)``).
"""
import numba
import numpy as np
import threadpoolctl
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from ._mt19937 import MTState, mt_rand_float, rand_perm
from ._validate import as_float32_matrix, as_int, check_metric

BLAS_THRESHOLD = 128000  # faiss distance_compute_blas_threshold: direct sums when n * d below
REDO_SEED_STRIDE = 15486557  # faiss: init seed of redo r is seed + 1 + r * 15486557
SPLIT_EPS = np.float32(1.0 / 1024)  # faiss's "a bit above machine epsilon for float16"
GEMM_COLS = 1024  # faiss distance_compute_blas_database_bs: its top-1 column blocks
GEMM_BLOCK_ELEMS = 1 << 18  # scores per GEMM block (1 MB: stays in cache for the merge)
FLT_MAX = np.float32(np.finfo(np.float32).max)  # faiss's "no result yet" (CMax::neutral)
# Work (~flops) below which a numba kernel runs on one thread: waking the pool costs ~20 us on
# an idle machine but milliseconds on a loaded one, so only clearly large kernels go parallel.
PARALLEL_MIN_WORK = 1 << 26
_INITS = ("random", "k-means++")


@intrinsic
def _fma(typingctx, a, b, c):
    """float32 a * b + c with a single rounding (llvm.fma), as the _mm512_fmadd_ps lanes."""
    sig = types.float32(types.float32, types.float32, types.float32)

    def codegen(context, builder, signature, args):
        f32 = ir.FloatType()
        fnty = ir.FunctionType(f32, [f32, f32, f32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.fma.f32")
        return builder.call(fn, args)

    return sig, codegen


@numba.njit(cache=True, inline="always")
def _lane_fma(a, xt, crow, ip):
    """a[j] = fma(x_t - c_jt, x_t - c_jt, a[j]) (l2) or fma(x_t, c_jt, a[j]) (ip), for all j."""
    if ip:
        for j in range(a.shape[0]):
            a[j] = _fma(xt, crow[j], a[j])
    else:
        for j in range(a.shape[0]):
            u = xt - crow[j]
            a[j] = _fma(u, u, a[j])


@numba.njit(cache=True, inline="always")
def _add_into(a, b):
    for j in range(a.shape[0]):
        a[j] = a[j] + b[j]


@numba.njit(cache=True)
def _faiss_sums(xi, ct, ip, acc):
    """||x_i - c_j||^2 (or <x_i, c_j> if ip) for every column c_j of ct (d, m), summed in the
    order of faiss's AVX-512 fvec_L2sqr / fvec_inner_product: 16 FMA lanes (lane l takes
    t = l mod 16 over the first 16 floor(d / 16) dims), lanes l and l + 8 added, one more 8-lane
    FMA step if >= 8 dims remain, lanes l and l + 4 added, then (0 + 2) + (1 + 3), then the
    remaining dims one FMA at a time. acc (16, m) float32 scratch; returns acc[0] (m,).
    The lanes are rows of acc and j is the inner loop, so LLVM vectorises across centroids.
    """
    d = ct.shape[0]
    m16 = d - d % 16
    acc[:] = 0
    for t in range(m16):
        _lane_fma(acc[t % 16], xi[t], ct[t], ip)
    for l in range(8):
        _add_into(acc[l], acc[l + 8])
    t = m16
    if d - t >= 8:
        for l in range(8):
            _lane_fma(acc[l], xi[t + l], ct[t + l], ip)
        t += 8
    for l in range(4):
        _add_into(acc[l], acc[l + 4])
    _add_into(acc[0], acc[2])
    _add_into(acc[1], acc[3])
    _add_into(acc[0], acc[1])
    for r in range(t, d):
        _lane_fma(acc[0], xi[r], ct[r], ip)
    return acc[0]


@numba.njit(cache=True)
def _simd_sum(x, y, l2, acc):
    """One pair: ||x - y||^2 (l2) or <x, y> in faiss's order; acc: float32[16] scratch.
    (Kept for tests elsewhere that use it as a scalar reference of the order.)"""
    d = x.shape[0]
    return _faiss_sums(x, np.ascontiguousarray(y).reshape((d, 1)), not l2, acc.reshape((16, 1)))[0]


@numba.njit(cache=True, parallel=True)
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
            sums = _faiss_sums(x[i], ct, ip, acc)
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
def _sq_norms(x):
    """||x_i||^2 per row, in faiss's fvec_norm_L2sqr order (serial: O(n d), once per fit)."""
    out = np.empty(x.shape[0], dtype=np.float32)
    acc = np.empty((16, 1), dtype=np.float32)
    for i in range(x.shape[0]):
        out[i] = _faiss_sums(x[i], x[i].reshape((x.shape[1], 1)), True, acc)[0]
    return out


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


@numba.njit(cache=True, parallel=True)
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


_blas_controller = None


def _blas_single_thread():
    """Context limiting every BLAS library to one thread (numba's threads parallelise instead)."""
    global _blas_controller
    if _blas_controller is None:
        _blas_controller = threadpoolctl.ThreadpoolController()
    return _blas_controller.limit(limits=1, user_api="blas")


class _threads_for:
    """Context: numba kernels on one thread when `work` (~flops) is too small to repay waking
    the thread pool (on a busy machine a parallel region can cost milliseconds)."""

    def __init__(self, work):
        self.single = work < PARALLEL_MIN_WORK

    def __enter__(self):
        self.previous = numba.get_num_threads()
        if self.single:
            numba.set_num_threads(1)

    def __exit__(self, *exc):
        numba.set_num_threads(self.previous)


def nearest_centroids(x, c, ip=False, x_norms=None):
    """faiss ``IndexFlat{L2,IP}.search(x, 1)`` on centroids c: (D (n,) float32, I (n,) int64).

    x (n, d), c (k, d): C-contiguous float32, already validated. Direct sums when
    n * d < BLAS_THRESHOLD, else blocked GEMM (see the module docstring). x_norms: optional
    precomputed ``_sq_norms(x)`` (k-means reuses it across iterations).
    """
    with _threads_for(x.shape[0] * x.shape[1] * c.shape[0]):
        if x.shape[0] * x.shape[1] < BLAS_THRESHOLD:
            dist, idx = _assign_direct(x, np.ascontiguousarray(c.T), ip)
        else:
            xn = cn = np.empty(0, np.float32)
            if not ip:
                xn = _sq_norms(x) if x_norms is None else x_norms
                cn = _sq_norms(c)
            block_rows = max(1, GEMM_BLOCK_ELEMS // min(c.shape[0], GEMM_COLS))
            with _blas_single_thread():
                dist, idx = _assign_gemm(x, c, xn, cn, ip, block_rows)
    if idx.size and idx.min() < 0:
        raise ValueError("squared distances overflow float32 (inf) for some rows; rescale x")
    return dist, idx


@numba.njit(cache=True)
def _sum_sequential(v):
    """float32 sum in index order (faiss's `obj += dis[j]` loop), not numpy's pairwise sum."""
    s = np.float32(0)
    for i in range(v.shape[0]):
        s += v[i]
    return s


@numba.njit(cache=True, parallel=True)
def _compute_centroids(x, assign, k):
    """c_j = float32(1 / n_j) * (float32 sum of rows assigned to j, in input order).

    Rows are bucketed by centroid with a stable counting sort so each centroid's sum keeps the
    input order (what makes it bit-identical to faiss) while centroids run in parallel.
    Returns (centroids (k, d), counts (k,) float32). Empty clusters get zero rows.
    """
    n, d = x.shape
    counts = np.zeros(k, dtype=np.int64)
    for i in range(n):
        counts[assign[i]] += 1
    start = np.zeros(k + 1, dtype=np.int64)
    for j in range(k):
        start[j + 1] = start[j] + counts[j]
    order = np.empty(n, dtype=np.int64)
    fill = start[:k].copy()
    for i in range(n):
        order[fill[assign[i]]] = i
        fill[assign[i]] += 1
    cent = np.zeros((k, d), dtype=np.float32)
    for j in numba.prange(k):
        for p in range(start[j], start[j + 1]):
            row = x[order[p]]
            for t in range(d):
                cent[j, t] += row[t]
        if counts[j] > 0:
            inv = np.float32(1) / np.float32(counts[j])
            for t in range(d):
                cent[j, t] *= inv
    return cent, counts.astype(np.float32)


@numba.njit(cache=True)
def _split_clusters(cent, counts, n, key, pos):
    """Re-seed each empty cluster from a probabilistically chosen big one (faiss split_clusters).

    key/pos: a fresh mt19937(1234) state. Modifies cent and counts; returns the number of splits.
    """
    k, d = cent.shape
    nsplit = 0
    denom = np.float64(np.float32(n - k))
    up = np.float32(1) + SPLIT_EPS
    down = np.float32(1) - SPLIT_EPS
    for ci in range(k):
        if counts[ci] != 0:
            continue
        cj = 0
        found = False
        for _ in range(10 * k):
            p = np.float32((np.float64(counts[cj]) - 1.0) / denom)
            if mt_rand_float(key, pos) < p:
                found = True
                break
            cj = (cj + 1) % k
        if not found:
            cj = 0
            for j in range(1, k):
                if counts[j] > counts[cj]:
                    cj = j
        for t in range(d):
            cent[ci, t] = cent[cj, t]
        for t in range(d):
            if t % 2 == 0:
                cent[ci, t] *= up
                cent[cj, t] *= down
            else:
                cent[ci, t] *= down
                cent[cj, t] *= up
        counts[ci] = counts[cj] / np.float32(2)
        counts[cj] -= counts[ci]
        nsplit += 1
    return nsplit


@numba.njit(cache=True)
def _renormalize_rows(c):
    """faiss fvec_renorm_L2: c_j *= float32(1.0 / sqrtf(||c_j||^2)) for non-zero rows."""
    acc = np.empty((16, 1), dtype=np.float32)
    for j in range(c.shape[0]):
        nr = _faiss_sums(c[j], c[j].reshape((c.shape[1], 1)), True, acc)[0]
        if nr > 0:
            inv = np.float32(1.0 / np.float64(np.sqrt(nr)))
            for t in range(c.shape[1]):
                c[j, t] *= inv


def _kmeanspp_init(x, k, seed):
    """k-means++ (Arthur & Vassilvitskii 2007) D^2 seeding in float64 (also for metric ip);
    NOT faiss-identical (see the module docstring). Returns k rows of x, (k, d) float32."""
    rng = np.random.default_rng(seed)
    n = x.shape[0]
    chosen = np.empty(k, dtype=np.int64)
    chosen[0] = rng.integers(n)
    xn = np.einsum("ij,ij->i", x, x, dtype=np.float64)
    best = np.full(n, np.inf)
    for m in range(1, k):
        c = x[chosen[m - 1]].astype(np.float64)
        d2 = np.maximum(xn + c @ c - 2.0 * (x @ c), 0.0)
        best = np.minimum(best, d2)
        total = best.sum()
        if total <= 0:  # every point coincides with a chosen centre: pick uniformly
            chosen[m] = rng.integers(n)
            continue
        u = rng.random() * total
        chosen[m] = min(int(np.searchsorted(np.cumsum(best), u, side="right")), n - 1)
    return np.ascontiguousarray(x[chosen])


class KMeans:
    """faiss-identical k-means (see the module docstring for the maths and the exact rules).

    Parameters: k clusters; niter Lloyd iterations per run; seed (0 <= seed < 2**31, faiss's
    `int seed`; negative seeds mean "clock" in faiss and are refused here); faiss's
    max_points_per_centroid / min_points_per_centroid (the latter only triggers a faiss warning,
    kept for parity); nredo runs keeping the best; spherical (inner-product assignment and
    L2-normalised centroids, as ``faiss.Kmeans(spherical=True)``; implies metric "ip");
    init "random" (faiss) or "k-means++" (not faiss-identical); early_stop (faiss >= 1.14 stops
    when the objective is exactly unchanged); metric "l2" or "ip".

    After ``fit``: ``centroids`` (k, d) float32, ``obj`` (float32 array of per-iteration
    objectives, faiss's ``Kmeans.obj``), ``nsplit`` (int64 per iteration), ``imbalance``
    (float64 per iteration, faiss's imbalance_factor), ``n_iter_`` (iterations of the kept run),
    ``n_train_`` (points actually used after subsampling).
    """

    def __init__(self, k, niter=25, seed=1234, max_points_per_centroid=256, nredo=1,
                 spherical=False, init="random", early_stop=True, metric="l2",
                 min_points_per_centroid=39):
        self.k = as_int(k, "k", low=1)
        self.niter = as_int(niter, "niter", low=1)
        self.seed = as_int(seed, "seed", low=0, high=2**31 - 1)
        self.max_points_per_centroid = as_int(max_points_per_centroid, "max_points_per_centroid", low=1)
        self.min_points_per_centroid = as_int(min_points_per_centroid, "min_points_per_centroid", low=0)
        self.nredo = as_int(nredo, "nredo", low=1)
        for name, flag in (("spherical", spherical), ("early_stop", early_stop)):
            if not isinstance(flag, (bool, np.bool_)):
                raise TypeError(f"{name} must be True or False, got {flag!r}")
        self.spherical = bool(spherical)
        self.early_stop = bool(early_stop)
        if init not in _INITS:
            raise ValueError(f"init must be one of {_INITS}, got {init!r}")
        self.init = init
        self.metric = check_metric(metric)
        self.centroids = None
        self.obj = None

    @property
    def _ip(self):
        return self.spherical or self.metric == "ip"

    def fit(self, x, init_centroids=None):
        """Train on x (n, d). init_centroids: optional (m, d) warm start, 1 <= m <= k (faiss
        ``Kmeans.train(x, init_centroids=...)``): rows 0..m-1 start there, the rest at random.
        Returns self."""
        x_in = as_float32_matrix(x, "x")
        n, d = x_in.shape
        k = self.k
        if n < k:
            raise ValueError(f"k-means with k={k} needs at least {k} training points, got n={n}; "
                             f"lower k or add points")
        warm = None
        if init_centroids is not None:
            warm = as_float32_matrix(init_centroids, "init_centroids", d=d, min_rows=1)
            if warm.shape[0] > k:
                raise ValueError(f"init_centroids has {warm.shape[0]} rows but k={k}; pass at most k")
        x = x_in
        if n > k * self.max_points_per_centroid:
            keep = rand_perm(n, self.seed)[: k * self.max_points_per_centroid]
            x = np.ascontiguousarray(x_in[keep])
        self.n_train_ = x.shape[0]
        if x.shape[0] == k:  # faiss copies the caller's first k rows, not the subsample
            self.centroids = x_in[:k].copy()
            self.obj = np.zeros(1, dtype=np.float32)
            self.nsplit = np.zeros(1, dtype=np.int64)
            self.imbalance = np.ones(1)
            self.n_iter_ = 0
            return self
        self._lloyd(x, warm)
        return self

    def _lloyd(self, x, warm):
        n, d = x.shape
        k = self.k
        ip = self._ip
        split_rng = MTState(1234)
        m = 0 if warm is None else warm.shape[0]
        cent = np.zeros((k, d), dtype=np.float32)
        if m:
            cent[:m] = warm
        x_norms = None if ip or n * d < BLAS_THRESHOLD else _sq_norms(x)
        obj_hist, split_hist, imb_hist = [], [], []
        best = None  # (obj, centroids, len(history), n_iter)
        for redo in range(self.nredo):
            init_seed = (self.seed + 1 + redo * REDO_SEED_STRIDE) & 0xFFFFFFFF
            if m < k:
                if self.init == "random":
                    perm = rand_perm(n, init_seed)
                    cent[m:] = x[perm[m:k]]
                else:
                    cent[m:] = _kmeanspp_init(x, k, init_seed)[m:]
            # faiss keeps rows 0..m-1 from the previous run on a redo (its centroid buffer is
            # reused), so a warm-started redo continues from the last run's first m centroids.
            if self.spherical:
                _renormalize_rows(cent)
            obj = np.float32(0)
            it = 0
            for it in range(self.niter):
                dist, assign = nearest_centroids(x, cent, ip, x_norms)
                obj = _sum_sequential(dist)
                with _threads_for(4 * n * d):
                    cent, counts = _compute_centroids(x, assign, k)
                hist = counts.astype(np.float64)
                imb_hist.append(float((hist * hist).sum() * k / (hist.sum() ** 2)))
                state = split_rng.copy()
                split_hist.append(_split_clusters(cent, counts, n, state.key, state.pos))
                obj_hist.append(obj)
                if self.spherical:
                    _renormalize_rows(cent)
                # faiss: stop when |prev - obj| / |prev| <= early_stop_threshold (0), prev != 0
                if self.early_stop and it > 0 and obj_hist[-2] != 0 and obj_hist[-2] == obj:
                    break
            if best is None or (obj > best[0] if ip else obj < best[0]):
                best = (obj, cent.copy(), len(obj_hist), it + 1)
        _, self.centroids, n_hist, self.n_iter_ = best
        self.obj = np.array(obj_hist[:n_hist], dtype=np.float32)
        self.nsplit = np.array(split_hist[:n_hist], dtype=np.int64)
        self.imbalance = np.array(imb_hist[:n_hist], dtype=np.float64)

    def assign(self, x):
        """Nearest centroid of each row of x: (D (n,) float32, I (n,) int64), as faiss.Kmeans.assign."""
        if self.centroids is None:
            raise ValueError("KMeans.assign called before fit(); call fit(x) first")
        x = as_float32_matrix(x, "x", d=self.centroids.shape[1])
        return nearest_centroids(x, self.centroids, self._ip)
