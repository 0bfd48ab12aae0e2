"""Inputs of `tune`: the base and query vectors, the exact ground truth, the query split.

- ``--base`` / ``--queries``: any file `io.load_vectors` reads. A float32 .npy / .fbin base stays
  memory-mapped (indices read it through the map); other formats are read into RAM once.
- ``--hdf5``: an ann-benchmarks file; train / test / neighbors are used as they are, and its
  ``distance`` fixes the prefix rule: "angular" -> normalised prefixes, "euclidean" -> plain
  truncation (both searched with squared L2).
- nothing: the embedded Fashion-MNIST subset (6,000 train / 1,000 test images) embedded by an
  MRL model trained here (`embedded_mrl`), cached in the output directory.

Ground truth: exact top-k at full D (`search.knn.knn_search` on blocks of `GT_BLOCK` base rows, merged
with ties to the smaller id), cached in DIR/groundtruth.npz under a fingerprint of the inputs.
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
MRL_RECIPE = dict(nesting=[8, 16, 32, 64], hidden=(256, 256), epochs=5, batch_size=128, lr=0.05,
                  warmup=1, optimizer="sgd")


def _mmap_ok(path):
    return os.path.splitext(os.fspath(path))[1].lower() not in (".hdf5", ".h5")


def load_files(base, queries):
    """(xb, xq) from two vector files; xb memory-mapped where the format allows."""
    xb = load_vectors(base, mmap=_mmap_ok(base))
    xq = as_float32_matrix(load_vectors(queries, mmap=False), f"queries ({queries})")
    if xb.ndim != 2 or xb.shape[1] != xq.shape[1]:
        raise ValueError(f"dimension mismatch: base {base} has shape {xb.shape} but queries "
                         f"{queries} have {xq.shape[1]} dims; pass embeddings of the same model")
    if xb.dtype != np.float32 or not xb.flags.c_contiguous:
        # .fvecs/.bvecs maps interleave a dim header with each row, other dtypes need converting:
        # read into RAM once here, so the indices do not each copy the map again
        xb = as_float32_matrix(xb, f"base ({base})")
    return xb, xq


def load_hdf5(path, k):
    """(xb, xq, neighbors, normalize) from an ann-benchmarks file."""
    data = read_hdf5(path)
    if data.distance not in ("angular", "euclidean"):
        raise ValueError(f"{path}: distance {data.distance!r} is not tunable here; use an "
                         f"'angular' or 'euclidean' file")
    if data.neighbors.shape[1] < k:
        raise ValueError(f"{path}: neighbors holds {data.neighbors.shape[1]} ids per query but "
                         f"k={k}; lower --k")
    xb = as_float32_matrix(data.train, f"{path} train")
    xq = as_float32_matrix(data.test, f"{path} test")
    return xb, xq, data.neighbors[:, :k].astype(np.int64), data.distance == "angular"


def embedded_mrl(cache_dir, seed=0):
    """MRL embeddings (6,000 base, 1,000 queries, D = 64) of the embedded Fashion-MNIST subset,
    from `mrl_ref.train.train_mrl` with `MRL_RECIPE`, cached in cache_dir."""
    path = os.path.join(cache_dir, "embedded_mrl.npz")
    params = dict(MRL_RECIPE, hidden=list(MRL_RECIPE["hidden"]), seed=seed)
    if os.path.exists(path):
        found, arrays = load_npz(path, "TuneEmbeddings", 1, {"base": ("float32", 2), "queries": ("float32", 2)})
        if found == params:
            return arrays["base"], arrays["queries"]
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
    """Hex digest of the queries, 1,024 evenly spread base rows, the shapes and the settings."""
    h = hashlib.sha256(repr((xb.shape, xq.shape, k, metric, normalize)).encode())
    h.update(np.ascontiguousarray(xq).tobytes())
    rows = np.unique(np.linspace(0, xb.shape[0] - 1, 1024).astype(np.int64))
    h.update(np.ascontiguousarray(xb[rows]).tobytes())
    return h.hexdigest()


def exact_topk(xb, xq, k, metric, normalize, block=GT_BLOCK):
    """Exact top-k ids (nq, k) at full D, scanning the base in blocks of `block` rows."""
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
    return best_i


def ground_truth(xb, xq, k, metric, normalize, cache_dir):
    """exact_topk, read from / written to cache_dir/groundtruth.npz (atomic write)."""
    key = fingerprint(xb, xq, k, metric, normalize)
    path = os.path.join(cache_dir, "groundtruth.npz")
    if os.path.exists(path):
        params, arrays = load_npz(path, "TuneGroundTruth", 1, {"ids": ("int64", 2)})
        if params.get("fingerprint") == key:
            return arrays["ids"]
    ids = exact_topk(xb, xq, k, metric, normalize)
    save_npz(path, "TuneGroundTruth", 1, {"fingerprint": key}, {"ids": ids})
    return ids


def split_queries(nq, seed):
    """Seeded halves of the query rows -> {"val": sorted ids, "test": sorted ids}."""
    if nq < 2:
        raise ValueError(f"tuning needs at least 2 queries (a validation and a test half), got {nq}")
    perm = np.random.default_rng(seed).permutation(nq)
    return {"val": np.sort(perm[: nq // 2]), "test": np.sort(perm[nq // 2:])}
