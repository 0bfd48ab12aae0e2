"""Bridge to faiss: export a trained index as the equivalent faiss object, read faiss indices back
(the reading half, ``from_faiss``, is in `faiss_read`; ``faiss_bridge.from_faiss`` still works).

The path out of one machine: study and train a configuration here, ``to_faiss`` it, serve it
with faiss (``faiss.write_index`` works on every object below except `FaissAdannsIVF`, whose two
faiss parts are written separately; ``to_faiss(ivf, writable=True)`` gives an IVFIndex with
d_c != d_s as one writable faiss index instead, see `faiss_serve`). Nothing is retrained: faiss gets our centroids, codebooks,
rotation, inverted lists and codes, bit for bit.

    ours                                   faiss
    FlatIndex(d, metric)                   IndexFlatL2 / IndexFlatIP(d)
    IVFIndex, d_c = d_s = d                [prefix chain] IndexIVFFlat(IndexFlat(d), d, nlist)
    PQIndex(M, nbits, prefix_dim=d)        [prefix chain] IndexPQ(d, M, nbits)
    PQIndex(..., opq=True)                 [prefix chain] OPQMatrix(d, M) -> IndexPQ
    IVFPQIndex, d_c = d_s = d              [prefix chain] [OPQMatrix] IndexIVFPQ, precompute_table()
    IVFIndex / IVFPQIndex, d_c != d_s      FaissAdannsIVF: IndexFlat(d_c) + faiss IVF at d_s
    SQIndex, BinaryFlatIndex, BinaryIVFIndex   see `faiss_bridge_codes`
    HNSWIndex                              see `faiss_hnsw`: [prefix chain] IndexHNSWFlat(d_c, M)

Prefix chain. Our indices take D-dim vectors and index their Matryoshka prefixes z_d =
`truncate.prefix(x, d, normalize)`; faiss sees exactly those d-dim vectors. So that the faiss
object answers the same D-dim queries, ``to_faiss`` puts transforms mirroring ``prefix`` in front
(an ``IndexPreTransform``): normalize=True: NormalizationTransform(D), RemapDimensionsTransform(D,
d) keeping dims 0..d-1 (only if d < D), NormalizationTransform(d); normalize=False, d < D: the
RemapDimensionsTransform alone; normalize=False, d = D: nothing. faiss normalises as
x * (1 / ||x||), we as x / ||x||, so query prefixes agree to float32 rounding (distances to
~1e-6, ids except at near-ties); the stored vectors and codes are ours exactly.

What faiss does not hold. An IVFIndex keeps the D-dim vectors and prefixes them at query time
(AdANNS-IVF-D); faiss keeps only the d_s-dim prefixes it scans. ``from_faiss`` therefore rebuilds
an IVFIndex from a prefix-chained IndexIVFFlat or a `FaissAdannsIVF` only when given ``xb``, the
D-dim vectors in id order, and checks that their prefixes are the stored vectors bit for bit
(without a chain the stored vectors are the D-dim vectors and ``xb`` is not needed). PQ and IVFPQ
indices hold only codes and come back from faiss alone. Parameters that only steer training
(niter, seed, max_points_per_centroid, opq_niter) travel in faiss's ``cp`` / ``OPQMatrix.niter``
(opq_niter only with an OPQMatrix, else it comes back as the default 50; faiss's index files
store an OPQMatrix as a plain LinearTransform, without niter); ``allow_small`` (it only
silences our `SmallTrainingSetWarning`) has no faiss counterpart and comes back False.

IVFPQ with OPQ (d_c = d_s): faiss routes rotated vectors, so its quantizer holds s_l = R c_l
(`IVFPQIndex.scoring_centroids`) while ours routes unrotated prefixes against c_l; ``from_faiss``
recovers c_l = s_l R, equal to float32 rounding, not bit for bit. Everything else round-trips
exactly: ``from_faiss(to_faiss(ours))`` has our centroids, list ids (ascending inside a list, as
ours), vectors or codes, codebooks and rotation, and searches bit-identically to ours.

Searching the faiss side: ``faiss_search(obj, q, k, nprobe)`` takes the same arguments as our
``search`` for every object ``to_faiss`` returns. It agrees with ours to ids (ties aside: faiss
orders equal inner products by decreasing id and may route an exact centroid tie to another
list) and distances to ~1e-6 relative (IVFPQ: faiss's 3-term L2 decomposition; BLAS forms:
absolute rounding of the cancelling terms); `adanns_ref.conformance` measures it case by case.
"""
import numpy as np

from ._validate import as_bool, as_float32_matrix, as_int, as_k
from .faiss_hnsw import hnsw_to_faiss
from .flat import FlatIndex
from .hnsw import HNSWIndex
from .ivf import IVFIndex
from .ivfpq import IVFPQIndex
from .pqindex import PQIndex
from .truncate import prefix

FAISS_HINT = "pip install faiss-cpu==1.15.*"


def __getattr__(name):
    """`from_faiss` lives in `faiss_read` (which imports this module, so it is fetched on first
    use rather than imported here); ``faiss_bridge.from_faiss`` keeps working."""
    if name == "from_faiss":
        from .faiss_read import from_faiss
        return from_faiss
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def import_faiss():
    """The faiss module, or an ImportError naming the package to install."""
    try:
        import faiss
    except ImportError as exc:
        raise ImportError(f"adanns_ref.faiss_bridge needs faiss: {FAISS_HINT}") from exc
    return faiss


def _faiss_metric(faiss, metric):
    return faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT


def _our_metric(faiss, metric_type):
    if metric_type == faiss.METRIC_L2:
        return "l2"
    if metric_type == faiss.METRIC_INNER_PRODUCT:
        return "ip"
    raise ValueError(f"faiss metric_type {metric_type} has no adanns_ref counterpart; only "
                     f"METRIC_L2 and METRIC_INNER_PRODUCT are supported")


def _flat(faiss, vectors, metric):
    """faiss IndexFlatL2/IP holding the rows of `vectors` (n, d) float32."""
    index = (faiss.IndexFlatL2 if metric == "l2" else faiss.IndexFlatIP)(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def _prefix_transforms(faiss, D, d, normalize):
    """faiss VectorTransforms that compute `truncate.prefix(x, d, normalize)` of D-dim x."""
    chain = [faiss.NormalizationTransform(D, 2.0)] if normalize else []
    if d < D:
        chain.append(faiss.RemapDimensionsTransform(D, d, False))  # uniform=False: map[i] = i
    if normalize:
        chain.append(faiss.NormalizationTransform(d, 2.0))
    return chain


def _pretransform(faiss, transforms, index):
    """`index` behind `transforms` (applied first to last), or `index` itself if there are none."""
    if not transforms:
        return index
    wrapped = faiss.IndexPreTransform(index)
    for t in reversed(transforms):
        wrapped.prepend_transform(t)
    return wrapped


def _opq_matrix(faiss, A, M, niter):
    opq = faiss.OPQMatrix(A.shape[1], M, A.shape[0])
    faiss.copy_array_to_vector(np.ascontiguousarray(A, dtype=np.float32).ravel(), opq.A)
    opq.niter = niter
    opq.is_trained = True
    opq.set_is_orthonormal()
    return opq


def _set_cp(cp, niter, seed, max_points_per_centroid):
    """Our k-means parameters into a faiss ClusteringParameters (they only matter for training)."""
    cp.niter, cp.seed, cp.max_points_per_centroid = niter, seed, max_points_per_centroid


def _ivf_flat(faiss, index, quantizer_rows):
    """IndexIVFFlat at d_s holding the d_s-prefixes of `index`'s vectors in our lists and order."""
    from faiss.contrib.ivf_tools import add_preassigned
    quantizer = _flat(faiss, quantizer_rows, index.metric)
    ivf = faiss.IndexIVFFlat(quantizer, index.d_s, index.nlist, _faiss_metric(faiss, index.metric))
    _set_cp(ivf.cp, index.niter, index.seed, index.max_points_per_centroid)
    ids = np.concatenate([index.list_ids(l) for l in range(index.nlist)] + [np.empty(0, np.int64)])
    lists = np.repeat(np.arange(index.nlist, dtype=np.int64), index.list_sizes())
    data = np.concatenate([index.list_vectors(l) for l in range(index.nlist)] +
                          [np.empty((0, index.d), np.float32)])
    # prefixes of the list-ordered vectors: the very array IVFIndex.search scans
    add_preassigned(ivf, prefix(data, index.d_s, index.normalize), lists, ids)
    return ivf


def _ivf_pq(faiss, index, quantizer_rows):
    """IndexIVFPQ at d_s with our codebooks and our codes in our lists, precompute_table() called."""
    quantizer = _flat(faiss, quantizer_rows, index.metric)
    ivf = faiss.IndexIVFPQ(quantizer, index.d_s, index.nlist, index.M, index.nbits,
                           _faiss_metric(faiss, index.metric))
    ivf.by_residual = index.by_residual
    _set_cp(ivf.cp, index.niter, index.seed, 256)  # IVFPQIndex's coarse k-means: faiss's default
    _set_pq(faiss, ivf.pq, index.pq)
    ivf.is_trained = True
    for l in range(index.nlist):  # our codes as they are: faiss must not re-encode
        ids, codes = index.list_ids(l), np.ascontiguousarray(index.list_codes(l))
        if ids.size:
            ivf.invlists.add_entries(l, ids.size, faiss.swig_ptr(ids), faiss.swig_ptr(codes))
    ivf.ntotal = index.ntotal
    # faiss's L2 by_residual scan adds a per-list table ||r||^2 + 2 <c, r>: build it from *our*
    # centroids and codebooks (a table left from other parameters gives wrong distances)
    ivf.precompute_table()
    return ivf


def _set_pq(faiss, fpq, pq):
    """Our ProductQuantizer's codebooks and k-means parameters into faiss's ProductQuantizer."""
    faiss.copy_array_to_vector(pq.codebooks.ravel(), fpq.centroids)
    _set_cp(fpq.cp, pq.niter, pq.seed, pq.max_points_per_centroid)


def _opq_chain(faiss, index):
    """[OPQMatrix holding our rotation] for an index with OPQ, else []."""
    return [] if index.opq is None else [_opq_matrix(faiss, index.opq.A, index.M, index.opq_niter)]


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

    def _inner(self):
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
        inner, opq = self._inner()
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


def faiss_search(index, q, k, nprobe=1):
    """Search any object `to_faiss` returns with our calling convention -> (D, I).

    nprobe is passed to IVF indices as ``SearchParametersIVF`` (the index is not modified, except
    a FaissAdannsIVF, see there) and ignored by the others. Checked like our searches: a
    non-faiss object raises TypeError; an untrained index, bad queries, k < 1 (or a k whose
    results exceed `_validate.MAX_RESULT_BYTES`) or nprobe < 1 raise ValueError."""
    faiss = import_faiss()
    _require_faiss_object(faiss, index, "faiss_search")
    if isinstance(index, faiss.IndexBinary):
        from .faiss_bridge_codes import faiss_search_codes  # imports this module: no cycle at load
        return faiss_search_codes(faiss, index, q, as_k(k, len(q)), as_int(nprobe, "nprobe", 1))
    q = as_float32_matrix(q, "q", d=index.d)
    k = as_k(k, q.shape[0])
    nprobe = as_int(nprobe, "nprobe", 1)
    if isinstance(index, FaissAdannsIVF):
        return index.search(q, k, nprobe)
    if faiss.try_extract_index_ivf(index) is not None:
        return index.search(q, k, params=faiss.SearchParametersIVF(nprobe=nprobe))
    return index.search(q, k)


def _require_faiss_object(faiss, index, caller):
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


# --------------------------------------------------------------------------- to_faiss

def to_faiss(index, writable=False):
    """The faiss object equivalent to our trained index (table in the module docstring).

    writable=True: an IVFIndex with d_c != d_s comes back as one faiss index that
    ``faiss.write_index`` writes (`faiss_serve.adanns_ivf`: an IndexIVFIndependentQuantizer)
    instead of a FaissAdannsIVF; the other types are already faiss indices."""
    faiss = import_faiss()
    writable = as_bool(writable, "writable")
    if isinstance(index, FlatIndex):
        return _flat(faiss, index.xb, index.metric)
    if isinstance(index, IVFIndex):
        _require(index.is_trained, index)
        if index.d_c == index.d_s:
            ivf = _ivf_flat(faiss, index, index.centroids)
            return _pretransform(faiss, _prefix_transforms(faiss, index.d, index.d_s, index.normalize), ivf)
        if writable:
            from .faiss_serve import adanns_ivf
            return adanns_ivf(index)
        placeholder = np.zeros((index.nlist, index.d_s), np.float32)
        return FaissAdannsIVF(index.d, index.d_c, index.d_s, index.metric, index.normalize,
                              _flat(faiss, index.centroids, index.metric),
                              _ivf_flat(faiss, index, placeholder))
    if isinstance(index, PQIndex):
        _require(index.is_trained, index)
        fpq = faiss.IndexPQ(index.dim, index.M, index.nbits)
        _set_pq(faiss, fpq.pq, index.pq)
        fpq.is_trained = True
        fpq.add_sa_codes(index.codes)
        chain = _prefix_transforms(faiss, index.d, index.dim, index.normalize) + _opq_chain(faiss, index)
        return _pretransform(faiss, chain, fpq)
    if isinstance(index, IVFPQIndex):
        _require(index.is_trained, index)
        ivf = _ivf_pq(faiss, index, index.scoring_centroids)
        if index.d_c == index.d_s:
            chain = _prefix_transforms(faiss, index.d, index.d_s, index.normalize) + _opq_chain(faiss, index)
            return _pretransform(faiss, chain, ivf)
        return FaissAdannsIVF(index.d, index.d_c, index.d_s, index.metric, index.normalize,
                              _flat(faiss, index.centroids, index.metric),
                              _pretransform(faiss, _opq_chain(faiss, index), ivf))
    if isinstance(index, HNSWIndex):
        return hnsw_to_faiss(faiss, index)
    from .faiss_bridge_codes import to_faiss_codes  # SQ and binary indices; TypeError otherwise
    return to_faiss_codes(faiss, index)


def _require(trained, index):
    if not trained:
        raise ValueError(f"to_faiss needs a trained index, got an untrained {index!r}; train it first")
