"""Helpers every faiss bridge module uses; imports no other bridge module.

`import_faiss` (ImportError naming the package), the metric names both ways, a faiss Flat over
given rows, the Matryoshka prefix chain (`prefix_transforms`: faiss VectorTransforms computing
`core.truncate.prefix`, and `read_chain`, its inverse), the inverted-list readers, the checks of
the objects `to_faiss` / `from_faiss` / `faiss_search` take, and `FaissAdannsIVF`, the
two-part faiss form of AdANNS-IVF / -IVFPQ (d_c != d_s).
"""
import numpy as np

from ..core.truncate import prefix
from ..core.validate import as_float32_matrix, as_int, as_k

FAISS_HINT = "pip install faiss-cpu==1.15.*"


def import_faiss():
    """The faiss module, or an ImportError naming the package to install."""
    try:
        import faiss
    except ImportError as exc:
        raise ImportError(f"adanns_ref.faiss_bridge needs faiss: {FAISS_HINT}") from exc
    return faiss


def faiss_metric(faiss, metric):
    return faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT


def our_metric(faiss, metric_type):
    if metric_type == faiss.METRIC_L2:
        return "l2"
    if metric_type == faiss.METRIC_INNER_PRODUCT:
        return "ip"
    raise ValueError(f"faiss metric_type {metric_type} has no adanns_ref counterpart; only "
                     f"METRIC_L2 and METRIC_INNER_PRODUCT are supported")


def flat_index(faiss, vectors, metric):
    """faiss IndexFlatL2/IP holding the rows of `vectors` (n, d) float32."""
    index = (faiss.IndexFlatL2 if metric == "l2" else faiss.IndexFlatIP)(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def prefix_transforms(faiss, D, d, normalize):
    """faiss VectorTransforms that compute `truncate.prefix(x, d, normalize)` of D-dim x."""
    chain = [faiss.NormalizationTransform(D, 2.0)] if normalize else []
    if d < D:
        chain.append(faiss.RemapDimensionsTransform(D, d, False))  # uniform=False: map[i] = i
    if normalize:
        chain.append(faiss.NormalizationTransform(d, 2.0))
    return chain


def pretransform(faiss, transforms, index):
    """`index` behind `transforms` (applied first to last), or `index` itself if there are none."""
    if not transforms:
        return index
    wrapped = faiss.IndexPreTransform(index)
    for t in reversed(transforms):
        wrapped.prepend_transform(t)
    return wrapped


def set_cp(cp, niter, seed, max_points_per_centroid):
    """Our k-means parameters into a faiss ClusteringParameters (they only matter for training)."""
    cp.niter, cp.seed, cp.max_points_per_centroid = niter, seed, max_points_per_centroid


def _describe(faiss, t):
    """A comparable description of a faiss VectorTransform."""
    if isinstance(t, faiss.NormalizationTransform):
        return ("NormalizationTransform", t.d_in, float(t.norm))
    if isinstance(t, faiss.RemapDimensionsTransform):
        return ("RemapDimensionsTransform", t.d_in, t.d_out, tuple(faiss.vector_to_array(t.map).tolist()))
    return (type(t).__name__, t.d_in, t.d_out)


def read_chain(faiss, index):
    """Split a faiss index into (D, normalize, OPQMatrix or None, inner index) for the chains
    `to_faiss` writes: the prefix transforms, then optionally an OPQMatrix."""
    if not isinstance(index, faiss.IndexPreTransform):
        return index.d, False, None, index
    inner = faiss.downcast_index(index.index)
    ts = [faiss.downcast_VectorTransform(index.chain.at(i)) for i in range(index.chain.size())]
    # an OPQMatrix, or the LinearTransform faiss.read_index makes of one
    opq = ts.pop() if ts and isinstance(ts[-1], faiss.LinearTransform) else None
    if opq is not None and (opq.have_bias or not opq.is_orthonormal or not opq.d_in == opq.d_out == inner.d):
        raise ValueError(f"{type(opq).__name__} {opq.d_in} -> {opq.d_out} (bias {opq.have_bias}) before "
                         f"a {inner.d}-dim index: only square rotations without bias (OPQ) have an "
                         f"adanns_ref counterpart")
    D = ts[0].d_in if ts else inner.d
    found = [_describe(faiss, t) for t in ts]
    for normalize in (False, True):
        if found == [_describe(faiss, t) for t in prefix_transforms(faiss, D, inner.d, normalize)]:
            return D, normalize, opq, inner
    raise ValueError(f"unsupported transform chain {found}; from_faiss reads the Matryoshka prefix "
                     f"chain to_faiss writes (NormalizationTransform, RemapDimensionsTransform keeping "
                     f"the first dims, NormalizationTransform), optionally followed by an OPQMatrix")


def read_lists(faiss, ivf):
    """(ids, lists, codes) of every inverted list of a faiss IVF, in list order; ids checked to be
    a permutation of 0..ntotal-1 (ours number vectors by insertion)."""
    from faiss.contrib.inspect_tools import get_invlist
    parts = [get_invlist(ivf.invlists, l) for l in range(ivf.nlist)]
    ids = np.concatenate([p[0] for p in parts] + [np.empty(0, np.int64)])
    codes = np.concatenate([p[1] for p in parts] + [np.empty((0, ivf.code_size), np.uint8)])
    lists = np.repeat(np.arange(ivf.nlist, dtype=np.int64), [len(p[0]) for p in parts])
    if not np.array_equal(np.sort(ids), np.arange(ids.shape[0])):
        raise ValueError(f"the faiss IVF stores ids that are not 0..{ids.shape[0] - 1} (added with "
                         f"add_with_ids?); adanns_ref indices number vectors by insertion order")
    return ids, lists, codes


def quantizer_centroids(faiss, ivf):
    quantizer = faiss.downcast_index(ivf.quantizer)
    if not isinstance(quantizer, faiss.IndexFlat):
        raise ValueError(f"the IVF quantizer is a {type(quantizer).__name__}; adanns_ref routes "
                         f"exactly, so only IndexFlat quantizers have a counterpart")
    return quantizer.reconstruct_n(0, ivf.nlist)


class FaissAdannsIVF:
    """AdANNS-IVF / -IVFPQ (d_c != d_s) served by faiss: route at d_c, scan a d_s faiss IVF.

        P(q)   = quantizer.search(z_{d_c}(q), nprobe)               (nprobe clamped to nlist)
        result = ivf_tools.search_preassigned(ivf, z_{d_s}(q), k, P, coarse)

    with z_d = `truncate.prefix(., d, normalize)` (computed here, so the same D-dim queries as
    the IVFIndex / IVFPQIndex it came from). `quantizer`: faiss IndexFlatL2/IP(d_c) with the
    centroids c_l. `ivf`: either an IndexIVFFlat(d_s) holding the d_s-prefixes in our lists (its
    own quantizer is a zero placeholder faiss requires and is never searched) or an
    IndexIVFPQ(d_s), optionally behind an OPQMatrix, whose quantizer holds the scoring centroids
    s_l; then coarse = ||y(q) - s_l||^2 with y(q) = R z_{d_s}(q), the first term of faiss's
    precomputed-table distance for "l2" by_residual (ignored otherwise).

    Attributes: d (= D), d_c, d_s, nlist, metric, normalize, ntotal, quantizer, ivf.
    `search` sets ``nprobe`` on the faiss IVF (search_preassigned requires it).
    """

    def __init__(self, d, d_c, d_s, metric, normalize, quantizer, ivf):
        self.d, self.d_c, self.d_s = d, d_c, d_s
        self.metric, self.normalize = metric, normalize
        self.quantizer, self.ivf = quantizer, ivf

    def inner(self):
        """(the faiss IVF inside `ivf`, downcast; its OPQ / LinearTransform or None)."""
        faiss = import_faiss()
        ivf = faiss.downcast_index(self.ivf)
        if isinstance(ivf, faiss.IndexPreTransform):
            return faiss.downcast_index(ivf.index), faiss.downcast_VectorTransform(ivf.chain.at(0))
        return ivf, None

    @property
    def nlist(self):
        return self.quantizer.ntotal

    @property
    def ntotal(self):
        return self.ivf.ntotal

    def search(self, q, k, nprobe=1):
        """k best ids of each D-dim query row -> (D float32 (nq, k), I int64 (nq, k))."""
        from faiss.contrib.ivf_tools import search_preassigned
        q = as_float32_matrix(q, "q", d=self.d)
        k = as_k(k, q.shape[0])
        nprobe = min(as_int(nprobe, "nprobe", 1), self.nlist)
        coarse_dis, probes = self.quantizer.search(prefix(q, self.d_c, self.normalize), nprobe)
        z = prefix(q, self.d_s, self.normalize)
        inner, opq = self.inner()
        faiss = import_faiss()
        if isinstance(inner, faiss.IndexIVFPQ) and inner.by_residual and self.metric == "l2":
            # faiss's precomputed tables add the coarse distance of the *scoring* space
            y = z if opq is None else opq.apply(z)
            r = y[:, None, :] - inner.quantizer.reconstruct_n(0, self.nlist)[probes]
            coarse_dis = np.einsum("qpt,qpt->qp", r, r, dtype=np.float32)
        inner.nprobe = nprobe
        return search_preassigned(self.ivf, z, k, probes, np.ascontiguousarray(coarse_dis))

    def __repr__(self):
        return (f"FaissAdannsIVF(d={self.d}, d_c={self.d_c}, d_s={self.d_s}, nlist={self.nlist}, "
                f"metric={self.metric!r}, normalize={self.normalize}, ntotal={self.ntotal})")


def require_faiss_object(faiss, index, caller):
    """TypeError unless `index` is a faiss Index, IndexBinary or a FaissAdannsIVF; ValueError if
    untrained (an untrained faiss index holds zero codebooks / centroids, which would read as
    trained)."""
    if not isinstance(index, (faiss.Index, faiss.IndexBinary, FaissAdannsIVF)):
        raise TypeError(f"{caller} takes a faiss Index or IndexBinary (or a FaissAdannsIVF from "
                        f"to_faiss), got "
                        f"{type(index).__name__}")
    trained = index.ivf.is_trained if isinstance(index, FaissAdannsIVF) else index.is_trained
    if not trained:
        raise ValueError(f"{caller} needs a trained faiss index, got an untrained "
                         f"{type(index).__name__}; train it in faiss first (index.train(x))")


def require_trained(trained, index):
    if not trained:
        raise ValueError(f"to_faiss needs a trained index, got an untrained {index!r}; train it first")
