"""k-means with faiss's exact semantics (faiss 1.15 ``Clustering::train`` + ``IndexFlat`` search).

Lloyd's algorithm on n training points x_i in R^d (float32) and k centroids c_j:

    assign:    a_i = argmin_j ||x_i - c_j||^2          (metric "l2"; ties -> smaller j)
               a_i = argmax_j <x_i, c_j>               (metric "ip" / spherical; ties -> smaller j)
    objective: obj = sum_i dist(x_i, c_{a_i})          (float32, summed sequentially in i)
    update:    c_j = float32(1 / n_j) * sum_{i: a_i = j} x_i   (float32 sum in input order)

The faiss recipe around it, reproduced step by step (SPEC §4):

1. n < k: error. n > k * max_points_per_centroid: keep rows perm[:k * max_ppc] of
   rand_perm(n, seed) (see ``core.mt19937``). If then n == k: centroids are the first k *input*
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

Assignment is ``assign.nearest_centroids`` (faiss ``IndexFlat.search(x, 1)``): direct sums in
faiss's AVX-512 order when n * d < 128000, else BLAS GEMM + faiss's top-1 merge. On the direct
path centroids, assignments and objectives are bit-identical to faiss on x86-64 where faiss
dispatches to AVX-512; builds that dispatch to another SIMD level sum in another order (last-bit
differences, which only change an assignment at an exact near-tie). On the GEMM path distances
match faiss to ~1e-7 relative and assignments differ only at near-ties (see `assign`). The
update and split kernels use numba's threads when large enough; results do not depend on the
number of threads.

``fit(x, client=...)`` runs the assignment of each block of x on Dask workers (`distributed`,
faiss's distributed k-means split: assignment on the workers; update, splits and objective on
the driver in input order): the same bits as in-process.

Not faiss-identical: ``init="k-means++"`` (classic D^2 sampling with a NumPy Generator seeded
with seed + 1 + r * 15486557; faiss 1.15 has its own k-means++ with another RNG stream).
Small training sets: when k <= n < min_points_per_centroid * k, faiss prints "WARNING clustering
n points to k centroids: please provide at least ... training points" to stderr and trains; here
the same text is a `SmallTrainingSetWarning` (``warnings.warn``) and training proceeds. Every
trainer (IVF, PQ, OPQ, IVFPQ) clusters through this class, so this is the one place it is
raised. faiss's note on subsampling (n > max_points_per_centroid * k, "Sampling a subset of
...") is printed only with ``verbose``, so no warning is raised for it.

Shapes: x (n, d) float32; centroids (k, d) float32; assign returns D (n,) float32 and
I (n,) int64, like ``faiss.Kmeans.assign`` (which ravels ``index.search(x, 1)``).
"""
import warnings

import numba
import numpy as np

from ..core.mt19937 import MTState, mt_rand_float, rand_perm
from ..core.simd import simd_sum, sq_norms
from ..core.threads import serial_or_parallel, threads_for
from ..core.threads import BLAS_THRESHOLD
from ..core.validate import as_bool, as_float32_matrix, as_int, check_metric
from ..search.assign import nearest_centroids

REDO_SEED_STRIDE = 15486557  # faiss: init seed of redo r is seed + 1 + r * 15486557
SPLIT_EPS = np.float32(1.0 / 1024)  # faiss's "a bit above machine epsilon for float16"
_INITS = ("random", "k-means++")


class SmallTrainingSetWarning(UserWarning):
    """k-means trained on fewer than min_points_per_centroid * k points (faiss's stderr warning).

    Silence it with ``warnings.filterwarnings("ignore", category=SmallTrainingSetWarning)``, or
    per quantizer with ``allow_small=True`` (`pq.ProductQuantizer`, `opq.OPQ`, the PQ indices).
    """


@numba.njit(cache=True)
def _sum_sequential(v):
    """float32 sum in index order (faiss's `obj += dis[j]` loop), not numpy's pairwise sum."""
    s = np.float32(0)
    for i in range(v.shape[0]):
        s += v[i]
    return s


@serial_or_parallel
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
    for j in range(c.shape[0]):
        nr = simd_sum(c[j], c[j], False)
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

    Parameters
        k                        int >= 1: clusters
        niter                    int: Lloyd iterations per run
        seed                     int, 0 <= seed < 2**31 (faiss's `int seed`; negative seeds mean
                                 "clock" in faiss and are refused here)
        max_points_per_centroid  int: subsample to k * this many points (faiss)
        nredo                    int: runs, keeping the best objective
        spherical                bool: inner-product assignment and L2-normalised centroids
                                 (``faiss.Kmeans(spherical=True)``; implies metric "ip")
        init                     str, "random" (faiss) or "k-means++" (not faiss-identical)
        early_stop               bool: stop when the objective is exactly unchanged (faiss >= 1.14)
        metric                   str, "l2" or "ip"
        min_points_per_centroid  int: fewer than this * k points raise a `SmallTrainingSetWarning`
                                 (faiss's warning; 0 never warns)

    Attributes (after ``fit``)
        centroids    (k, d) float32
        obj          (iterations,) float32: per-iteration objectives (faiss's ``Kmeans.obj``)
        nsplit       (iterations,) int64: empty-cluster splits per iteration
        imbalance    (iterations,) float64: faiss's imbalance_factor per iteration
        n_iter_      int: iterations of the kept run
        n_train_     int: points actually used after subsampling
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
        self.spherical = as_bool(spherical, "spherical")
        self.early_stop = as_bool(early_stop, "early_stop")
        if init not in _INITS:
            raise ValueError(f"init must be one of {_INITS}, got {init!r}")
        self.init = init
        self.metric = check_metric(metric)
        self.centroids = None
        self.obj = None

    @property
    def _ip(self):
        return self.spherical or self.metric == "ip"

    def fit(self, x, init_centroids=None, client=None):
        """Train on x (n, d). init_centroids: optional (m, d) warm start, 1 <= m <= k (faiss
        ``Kmeans.train(x, init_centroids=...)``): rows 0..m-1 start there, the rest at random.
        client: a ``distributed.Client`` to run the assignment of each block of x on its
        workers (`distributed`; same bits), None (default) in-process. Returns self."""
        x_in = as_float32_matrix(x, "x")
        rows = self.training_rows(x_in.shape[0])
        return self.fit_training_rows(x_in if rows is None else np.ascontiguousarray(x_in[rows]),
                                      init_centroids, client, n_total=x_in.shape[0])

    def training_rows(self, n):
        """The rows of an n-row x (n >= k) that `fit` trains on, in order, or None for all n:
        faiss's subsample rand_perm(n, seed)[:k * max_points_per_centroid] when n is larger,
        and the first k rows when that leaves exactly k (faiss then copies the caller's first k
        rows, not the subsample)."""
        if n <= self.k * self.max_points_per_centroid:
            return None
        keep = rand_perm(n, self.seed)[: self.k * self.max_points_per_centroid]
        return keep if keep.shape[0] > self.k else np.arange(self.k)

    def fit_training_rows(self, x, init_centroids=None, client=None, n_total=None):
        """`fit` on x = the rows `training_rows(n_total)` of the data (all rows if None), in
        that order: lets a caller gather only those rows (`distributed`). n_total: the rows of
        the data before subsampling (default: x's), for faiss's small-training-set warning,
        which faiss gives only when it does not subsample. Returns self."""
        x = as_float32_matrix(x, "x")
        n, d = x.shape
        k = self.k
        if n < k:
            raise ValueError(f"k-means with k={k} needs at least {k} training points, got n={n}; "
                             f"lower k or add points")
        warm = None
        if init_centroids is not None:
            warm = as_float32_matrix(init_centroids, "init_centroids", d=d, min_rows=1)
            if warm.shape[0] > k:
                raise ValueError(f"init_centroids has {warm.shape[0]} rows but k={k}; pass at most k")
        n_total = n if n_total is None else n_total
        if n_total <= k * self.max_points_per_centroid and n_total < k * self.min_points_per_centroid:
            # faiss: the same text on stderr, then trains
            warnings.warn(f"WARNING clustering {n} points to {k} centroids: please provide at least "
                          f"{k * self.min_points_per_centroid} training points",
                          SmallTrainingSetWarning, stacklevel=3)
        self.n_train_ = n
        if n == k:  # faiss copies the caller's first k rows (`training_rows` gave those)
            self.centroids = x[:k].copy()
            self.obj = np.zeros(1, dtype=np.float32)
            self.nsplit = np.zeros(1, dtype=np.int64)
            self.imbalance = np.ones(1)
            self.n_iter_ = 0
            return self
        if client is None:
            x_norms = None if self._ip or n * d < BLAS_THRESHOLD else sq_norms(x)
            self._lloyd(x, warm, lambda c: nearest_centroids(x, c, self._ip, x_norms))
        else:
            from ..search.assign import NearestCentroids
            assign = NearestCentroids(client, x, k, self._ip)
            try:
                self._lloyd(x, warm, assign)
            finally:
                assign.close()
        return self

    def _lloyd(self, x, warm, assign_all):
        """Lloyd's iterations on x; assign_all(c) -> (dist, idx), `nearest_centroids` of all of x
        (in-process, or block by block on a Dask cluster)."""
        n, d = x.shape
        k = self.k
        ip = self._ip
        split_rng = MTState(1234)
        m = 0 if warm is None else warm.shape[0]
        cent = np.zeros((k, d), dtype=np.float32)
        if m:
            cent[:m] = warm
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
                dist, assign = assign_all(cent)
                obj = _sum_sequential(dist)
                with threads_for(4 * n * d):
                    cent, counts = _compute_centroids.for_work(4 * n * d)(x, assign, k)
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
