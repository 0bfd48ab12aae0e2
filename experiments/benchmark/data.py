"""Seeded data for the benchmark: Matryoshka-like embeddings, image-like inputs, ground truth.

Embeddings (when no real MRL embeddings are given) imitate what a Matryoshka model produces,
because the speed of pruned search (IVF, funnels) depends on the data's structure:

    mu_c ~ N(0, diag(s^2)),  c = 1..C            (C gaussian cluster centres)
    x    = mu_y + sigma * eps,  eps ~ N(0, diag(s^2)),  y ~ U{1..C}
    s_j  = j^(-1/2),  j = 1..D                  (variance decays along the dims)

then every row is L2-normalised, so the leading dims carry most of the signal (a d-prefix is a
coarse version of the vector) and search is on the unit sphere, as for real MRL embeddings.
i.i.d. Gaussian data would make every IVF cell equally useless and every prefix equally bad.

Database and queries share the centres and use independent streams of one `SeedSequence`, so
the same seed gives the same bits on every machine (NumPy's PCG64 is platform independent).
"""
import numpy as np

from adanns_ref.core.truncate import normalize_rows, prefix
from adanns_ref.core.validate import as_float32_matrix, as_int
from adanns_ref.io import read_npy

FLT_MAX = np.float32(3.4028235e38)


def matryoshka_like(n_db, n_query, dim=128, n_clusters=100, sigma=0.6, decay=0.5, seed=2024):
    """Return (xb (n_db, dim), xq (n_query, dim)) float32 unit rows, and their cluster labels.

    Output: ``xb, xq, yb, yq``; labels are int64 cluster ids in [0, n_clusters).
    """
    n_db = as_int(n_db, "n_db", 1)
    n_query = as_int(n_query, "n_query", 1)
    dim = as_int(dim, "dim", 1)
    n_clusters = as_int(n_clusters, "n_clusters", 1)
    ss_centres, ss_db, ss_q = np.random.SeedSequence(seed).spawn(3)
    scale = np.arange(1, dim + 1, dtype=np.float64) ** (-decay)
    centres = np.random.default_rng(ss_centres).standard_normal((n_clusters, dim)) * scale

    def draw(n, ss):
        rng = np.random.default_rng(ss)
        labels = rng.integers(0, n_clusters, size=n)
        x = centres[labels] + sigma * rng.standard_normal((n, dim)) * scale
        return normalize_rows(x.astype(np.float32)), labels.astype(np.int64)

    xb, yb = draw(n_db, ss_db)
    xq, yq = draw(n_query, ss_q)
    return xb, xq, yb, yq


def load_embeddings(path, n_db, n_query, dim=128):
    """Real embeddings from a .npy file (n, D >= dim): rows [0, n_db) are the database, the
    next n_query rows the queries; the dim-prefix is taken and re-normalised (SPEC §2)."""
    arr = read_npy(path)  # checked reader: no pickle, header checked against the file size
    x = as_float32_matrix(arr, f"embeddings in {path}")
    need = n_db + n_query
    if x.shape[0] < need:
        raise ValueError(f"{path} has {x.shape[0]} rows but the benchmark needs n_db + n_query = "
                         f"{need}; pass a larger file or a smaller size (--quick)")
    if x.shape[1] < dim:
        raise ValueError(f"{path} has {x.shape[1]} dims but the benchmark uses {dim}-dim prefixes")
    x = prefix(x[:need], dim, normalize=True)
    return np.ascontiguousarray(x[:n_db]), np.ascontiguousarray(x[n_db:need])


def image_like(n, n_features=784, n_classes=10, seed=7):
    """Seeded stand-in for Fashion-MNIST when it is not installed: (X (n, 784) in [0, 1], y).

    Class templates plus noise, clipped to [0, 1]; learnable but not trivial. Only used to time
    a training epoch, never to report accuracy.
    """
    rng = np.random.default_rng(seed)
    templates = rng.random((n_classes, n_features))
    y = rng.integers(0, n_classes, size=n)
    X = np.clip(templates[y] * 0.7 + 0.5 * rng.random((n, n_features)) - 0.1, 0.0, 1.0)
    return X.astype(np.float32), y.astype(np.int64)


def exact_ground_truth(xq, xb, k, block=256):
    """Exact k-NN by squared L2, (D float32, I int64) of shape (nq, k).

    Independent of both systems under test: plain NumPy, BLAS form ||q||^2 + ||x||^2 - 2 q.x
    clamped at 0 (the form faiss and our FlatIndex use, so rounding is comparable), blocked over
    queries so memory stays at block * nb floats. Ties inside the selected k go to the smaller
    id; a tie straddling rank k may keep either member (argpartition), which on continuous data
    only happens for duplicate vectors.
    """
    nq, nb = xq.shape[0], xb.shape[0]
    k_eff = min(k, nb)
    D = np.full((nq, k), FLT_MAX, dtype=np.float32)
    I = np.full((nq, k), -1, dtype=np.int64)
    xb_norm = np.einsum("ij,ij->i", xb, xb)
    for start in range(0, nq, block):
        q = xq[start:start + block]
        dist = np.einsum("ij,ij->i", q, q)[:, None] + xb_norm[None, :] - 2 * (q @ xb.T)
        np.maximum(dist, 0, out=dist)
        part = np.argpartition(dist, k_eff - 1, axis=1)[:, :k_eff] if k_eff < nb else \
            np.broadcast_to(np.arange(nb), (len(q), nb))
        part_d = np.take_along_axis(dist, part, axis=1)
        # lexsort: last key is primary -> sort by distance, then by id for ties
        order = np.lexsort((part, part_d), axis=1)
        D[start:start + len(q), :k_eff] = np.take_along_axis(part_d, order, axis=1)
        I[start:start + len(q), :k_eff] = np.take_along_axis(part, order, axis=1)
    return D, I
