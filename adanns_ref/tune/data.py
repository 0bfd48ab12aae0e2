"""Inputs of `tune`: the base and query vectors, the metric, the exact ground truth, the split.

- ``--base`` / ``--queries``: any file `io.load_vectors` reads. A float32 .npy / .fbin base stays
  memory-mapped (indices read it through the map); other formats are read into RAM once.
- ``--hdf5``: an ann-benchmarks file; train / test / neighbors are used as they are (neighbour
  ids are checked: each in [0, N), none repeated in a row). Its ``distance`` attribute sets the
  metric ("euclidean" -> l2, "angular" -> cosine) unless a flag says otherwise; a flag that
  asks for other neighbours than the file's is an error (`resolve_metric`).
- nothing: the embedded Fashion-MNIST subset (6,000 train / 1,000 test images) embedded by an
  MRL model trained here (`embedded_mrl`), cached in the output directory.

The metric is what the user says (`resolve_metric`): ``l2`` is squared L2 on the vectors as
they are, ``ip`` the inner product as it is; normalisation happens only with ``--normalize`` or
``--metric cosine`` (searched as squared L2 between unit vectors, 2 - 2 cos: the same ranking).

Ground truth: exact top-k at full D (`search.knn.knn_search` on blocks of `GT_BLOCK` base rows, merged
with ties to the smaller id), cached in DIR/groundtruth.npz under a SHA-256 of *every* byte of
the base and the queries plus the shapes and the metric (`fingerprint`).
"""
import hashlib
import os

import numpy as np

from ..core.persist import load_npz, save_npz
from ..core.truncate import prefix
from ..core.validate import as_float32_matrix
from ..io import load_vectors, read_hdf5
from ..search.knn import knn_search

GT_BLOCK = 1 << 16
HASH_BLOCK_ROWS = 1 << 14
MRL_RECIPE = dict(nesting=[8, 16, 32, 64], hidden=(256, 256), epochs=5, batch_size=128, lr=0.05,
                  warmup=1, optimizer="sgd")
METRICS = ("l2", "ip", "cosine")
HDF5_METRICS = {"euclidean": "l2", "angular": "cosine"}


def resolve_metric(metric=None, normalize=False, file_distance=None, path=None):
    """The metric the user asked for -> (stated metric, search metric, normalize).

    stated: "l2" | "ip" | "cosine" (what tune.md / tune.json report); search metric: "l2" | "ip"
    (what the indices compute); normalize: whether vectors are scaled to unit norm (and each
    prefix re-normalised). metric None: the HDF5 file's distance, else "l2". A flag that gives
    other neighbours than the file's distance (e.g. --metric l2 on an angular file) raises."""
    if metric is not None and metric not in METRICS:
        raise ValueError(f"--metric {metric!r}: use one of {', '.join(METRICS)}")
    from_file = None
    if file_distance is not None:
        if file_distance not in HDF5_METRICS:
            raise ValueError(f"{path}: distance {file_distance!r} is not tunable here; use an "
                             f"'angular' or 'euclidean' file")
        from_file = HDF5_METRICS[file_distance]
    stated = metric or from_file or "l2"
    if normalize and stated != "cosine":
        stated = "cosine"  # l2 or ip between unit vectors both rank as cosine
    if from_file is not None and stated != from_file:
        asked = f"--metric {metric}" + (" --normalize" if normalize else "") if metric else \
            "--normalize"
        raise ValueError(f"{path}: the file's distance is {file_distance!r} ({from_file}) but "
                         f"{asked} asks for {stated} neighbours; drop the flag or use a file "
                         f"whose neighbours are {stated}")
    if stated == "cosine":
        return "cosine", ("ip" if metric == "ip" else "l2"), True
    return stated, stated, False


def _mmap_ok(path):
    return os.path.splitext(os.fspath(path))[1].lower() not in (".hdf5", ".h5")


def _exists(path, option):
    if not os.path.exists(path):
        raise FileNotFoundError(f"{option} {path}: no such file")


def _nonempty(x, path, option):
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{option} {path} holds no vectors (shape {x.shape}); pass a file with "
                         f"at least one row")


def load_files(base, queries):
    """(xb, xq) from two vector files; xb memory-mapped where the format allows."""
    _exists(base, "--base")
    _exists(queries, "--queries")
    xb = load_vectors(base, mmap=_mmap_ok(base))
    _nonempty(xb, base, "--base")
    xq = as_float32_matrix(load_vectors(queries, mmap=False), f"queries ({queries})")
    _nonempty(xq, queries, "--queries")
    if xb.shape[1] != xq.shape[1]:
        raise ValueError(f"dimension mismatch: base {base} has shape {xb.shape} but queries "
                         f"{queries} have {xq.shape[1]} dims; pass embeddings of the same model")
    if xb.dtype != np.float32 or not xb.flags.c_contiguous:
        # .fvecs/.bvecs maps interleave a dim header with each row, other dtypes need converting:
        # read into RAM once here, so the indices do not each copy the map again
        xb = as_float32_matrix(xb, f"base ({base})")
    return xb, xq


def check_neighbors(ids, N, path):
    """Refuse ground-truth ids outside [0, N) or repeated within a query's row."""
    bad = np.flatnonzero(((ids < 0) | (ids >= N)).any(axis=1))
    if bad.size:
        row = int(bad[0])
        raise ValueError(f"{path}: neighbors row {row} holds id {int(ids[row][(ids[row] < 0) | (ids[row] >= N)][0])} "
                         f"outside the {N} train vectors; the file's ground truth does not match "
                         f"its train set")
    s = np.sort(ids, axis=1)
    dup = np.flatnonzero((s[:, 1:] == s[:, :-1]).any(axis=1))
    if dup.size:
        row = int(dup[0])
        raise ValueError(f"{path}: neighbors row {row} repeats an id ({ids[row].tolist()}); "
                         f"each query's neighbours must be distinct")


def load_hdf5(path, k):
    """(xb, xq, neighbors (nq, k) int64, the file's distance) from an ann-benchmarks file."""
    _exists(path, "--hdf5")
    data = read_hdf5(path)
    if data.distance not in HDF5_METRICS:
        raise ValueError(f"{path}: distance {data.distance!r} is not tunable here; use an "
                         f"'angular' or 'euclidean' file")
    if data.neighbors.shape[1] < k:
        raise ValueError(f"{path}: neighbors holds {data.neighbors.shape[1]} ids per query but "
                         f"k={k}; lower --k")
    xb = as_float32_matrix(data.train, f"{path} train")
    xq = as_float32_matrix(data.test, f"{path} test")
    _nonempty(xb, path, "--hdf5 (train)")
    _nonempty(xq, path, "--hdf5 (test)")
    if data.neighbors.shape[0] != xq.shape[0]:
        raise ValueError(f"{path}: neighbors has {data.neighbors.shape[0]} rows but test has "
                         f"{xq.shape[0]} queries")
    ids = np.asarray(data.neighbors[:, :k]).astype(np.int64)
    check_neighbors(ids, xb.shape[0], path)
    return xb, xq, ids, data.distance


def embedded_mrl(cache_dir, seed=0):
    """MRL embeddings (6,000 base, 1,000 queries, D = 64) of the embedded Fashion-MNIST subset,
    from `mrl_ref.train.train_mrl` with `MRL_RECIPE`, cached in cache_dir."""
    path = os.path.join(cache_dir, "embedded_mrl.npz")
    params = dict(MRL_RECIPE, hidden=list(MRL_RECIPE["hidden"]), seed=seed)
    if os.path.exists(path):
        try:
            found, arrays = load_npz(path, "TuneEmbeddings", 1,
                                     {"base": ("float32", 2), "queries": ("float32", 2)})
            base = as_float32_matrix(arrays["base"], f"{path}: base")
            queries = as_float32_matrix(arrays["queries"], f"{path}: queries", d=base.shape[1])
        except ValueError as exc:
            raise ValueError(f"{exc}\nthe cached MRL embeddings {path} are corrupt; delete that file "
                             f"and rerun to train them again") from exc
        if found == params:
            return base, queries
    from mrl_ref.data import load_fashion_mnist
    from mrl_ref.train import train_mrl
    Xtr, ytr = load_fashion_mnist("train", subset="embedded", flatten=True)
    Xte, _ = load_fashion_mnist("test", subset="embedded", flatten=True)
    recipe = dict(MRL_RECIPE)
    model = train_mrl(Xtr, ytr, recipe.pop("nesting"), seed=seed, progress=True, **recipe)
    base, queries = (np.ascontiguousarray(model.embed(X), dtype=np.float32) for X in (Xtr, Xte))
    save_npz(path, "TuneEmbeddings", 1, params, {"base": base, "queries": queries})
    return base, queries


def fingerprint(xb, xq, k, metric, normalize):
    """SHA-256 hex digest of every byte of xb and xq (xb read in blocks, so a memory map is
    paged through once), their shapes and the settings."""
    h = hashlib.sha256(repr((xb.shape, xq.shape, k, metric, bool(normalize))).encode())
    h.update(np.ascontiguousarray(xq, dtype=np.float32).tobytes())
    for r0 in range(0, xb.shape[0], HASH_BLOCK_ROWS):
        h.update(np.ascontiguousarray(xb[r0:r0 + HASH_BLOCK_ROWS], dtype=np.float32).tobytes())
    return h.hexdigest()


def exact_topk(xb, xq, k, metric, normalize, block=GT_BLOCK, on_block=None):
    """Exact top-k ids (nq, k) at full D, scanning the base in blocks of `block` rows;
    on_block(rows) is called after each block (progress)."""
    D = xb.shape[1]
    q = prefix(xq, D, normalize)
    best_d = best_i = None
    for r0 in range(0, xb.shape[0], block):
        chunk = prefix(np.asarray(xb[r0:r0 + block]), D, normalize)
        dist, ids = knn_search(q, chunk, k, metric)
        ids = np.where(ids >= 0, ids + r0, -1)
        if best_d is not None:
            dist, ids = np.hstack([best_d, dist]), np.hstack([best_i, ids])
            key = -dist if metric == "ip" else dist
            order = np.lexsort((np.where(ids < 0, np.iinfo(np.int64).max, ids), key), axis=1)[:, :k]
            dist, ids = np.take_along_axis(dist, order, 1), np.take_along_axis(ids, order, 1)
        best_d, best_i = dist, ids
        if on_block is not None:
            on_block(min(block, xb.shape[0] - r0))
    return best_i


def ground_truth(xb, xq, k, metric, normalize, cache_dir, on_block=None):
    """exact_topk, read from / written to cache_dir/groundtruth.npz (atomic write)."""
    key = fingerprint(xb, xq, k, metric, normalize)
    path = os.path.join(cache_dir, "groundtruth.npz")
    if os.path.exists(path):
        params, arrays = load_npz(path, "TuneGroundTruth", 1, {"ids": ("int64", 2)})
        if params.get("fingerprint") == key:
            return arrays["ids"]
    ids = exact_topk(xb, xq, k, metric, normalize, on_block=on_block)
    save_npz(path, "TuneGroundTruth", 1, {"fingerprint": key}, {"ids": ids})
    return ids


def fit_pca(xb, centre=True):
    """PCA of the base, the rotation faiss's PCAMatrix applies -> (mean (D,) float32,
    A (D, D) float32 whose rows are the principal axes by decreasing variance, eigenvalues (D,)
    float64). Covariance accumulated in float64 over blocks of rows (a memory map is paged
    once); each axis's sign makes its largest-magnitude entry positive (deterministic).
    centre=False (metrics ip / cosine): the mean is taken as 0, so that y = A x is a rotation
    preserving inner products and norms (centring would change the ip ranking)."""
    N, D = xb.shape
    total, second = np.zeros(D), np.zeros((D, D))
    for r0 in range(0, N, HASH_BLOCK_ROWS):
        x = np.asarray(xb[r0:r0 + HASH_BLOCK_ROWS], dtype=np.float64)
        total += x.sum(axis=0)
        second += x.T @ x
    mean = total / N if centre else np.zeros(D)
    w, V = np.linalg.eigh(second / N - np.outer(mean, mean))
    order = np.argsort(-w, kind="stable")
    A = V[:, order].T
    A *= np.where(A[np.arange(D), np.abs(A).argmax(axis=1)] < 0, -1.0, 1.0)[:, None]
    return mean.astype(np.float32), np.ascontiguousarray(A, dtype=np.float32), w[order]


def apply_pca(x, mean, A):
    """y = A x - A mean for each row of x (n, D), float32 (faiss LinearTransform's y = A x + b
    with b = -A mean), in blocks of rows."""
    b = -(A @ mean)
    out = np.empty((x.shape[0], A.shape[0]), np.float32)
    for r0 in range(0, x.shape[0], HASH_BLOCK_ROWS):
        out[r0:r0 + HASH_BLOCK_ROWS] = np.asarray(x[r0:r0 + HASH_BLOCK_ROWS], np.float32) @ A.T + b
    return out


def split_queries(nq, seed):
    """Seeded halves of the query rows -> {"val": sorted ids, "test": sorted ids}."""
    if nq < 2:
        raise ValueError(f"tuning needs at least 2 queries (a validation and a test half), got {nq}")
    perm = np.random.default_rng(seed).permutation(nq)
    return {"val": np.sort(perm[: nq // 2]), "test": np.sort(perm[nq // 2:])}


def timing_sample(nq, n, seed):
    """The fixed query rows faiss latencies are measured on: min(n, nq) rows, seeded, sorted."""
    if nq <= n:
        return np.arange(nq)
    return np.sort(np.random.default_rng(seed + 1).choice(nq, n, replace=False))


def check_outputs(inputs, outputs):
    """One output-path rule, checked before any work: no output may be an input file, and every
    output's directory must be writable. inputs: {option: path or None}; outputs: {option: path
    or None} (a directory option such as --out is checked as a directory)."""
    ins = {opt: os.path.realpath(p) for opt, p in inputs.items() if p is not None}
    for opt, path in outputs.items():
        if path is None:
            continue
        real = os.path.realpath(path)
        for in_opt, in_real in ins.items():
            if real == in_real:
                raise ValueError(f"{opt} {path} is the {in_opt} input file; writing there would "
                                 f"replace your vectors: choose another path")
        if opt == "--out":
            if os.path.exists(path) and not os.path.isdir(path):
                raise ValueError(f"--out {path} exists and is not a directory")
            parent = real
            while not os.path.exists(parent):   # os.makedirs creates the missing levels
                parent = os.path.dirname(parent)
        else:
            if os.path.isdir(path):
                raise ValueError(f"{opt} {path} is a directory; give a file path")
            parent = os.path.dirname(real)
        if not os.path.isdir(parent):
            raise ValueError(f"{opt} {path}: directory {parent} does not exist")
        if not os.access(parent, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
            raise ValueError(f"{opt} {path} is not writable; choose a path you can write")
