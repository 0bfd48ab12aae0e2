"""Bridge to faiss: export a trained index as the equivalent faiss object, read faiss indices back.

The path out of one machine: study and train a configuration here, ``to_faiss`` it, serve it
with faiss (``faiss.write_index`` works on every object below except `FaissAdannsIVF`, whose two
faiss parts are written separately). Nothing is retrained: faiss gets our centroids, codebooks,
rotation, inverted lists and codes, bit for bit.

    ours                                   faiss
    FlatIndex(d, metric)                   IndexFlatL2 / IndexFlatIP(d)
    IVFIndex, d_c = d_s = d                [prefix chain] IndexIVFFlat(IndexFlat(d), d, nlist)
    PQIndex(M, nbits, prefix_dim=d)        [prefix chain] IndexPQ(d, M, nbits)
    PQIndex(..., opq=True)                 [prefix chain] OPQMatrix(d, M) -> IndexPQ
    IVFPQIndex, d_c = d_s = d              [prefix chain] [OPQMatrix] IndexIVFPQ, precompute_table()
    IVFIndex / IVFPQIndex, d_c != d_s      FaissAdannsIVF: IndexFlat(d_c) + faiss IVF at d_s

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

from ._validate import as_float32_matrix, as_int, as_k
from .flat import FlatIndex
from .ivf import IVFIndex
from .ivfpq import IVFPQIndex
from .pqindex import PQIndex
from .opq import OPQ
from .truncate import prefix

FAISS_HINT = "pip install faiss-cpu==1.15.*"


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
    q = as_float32_matrix(q, "q", d=index.d)
    k = as_k(k, q.shape[0])
    nprobe = as_int(nprobe, "nprobe", 1)
    if isinstance(index, FaissAdannsIVF):
        return index.search(q, k, nprobe)
    if faiss.try_extract_index_ivf(index) is not None:
        return index.search(q, k, params=faiss.SearchParametersIVF(nprobe=nprobe))
    return index.search(q, k)


def _require_faiss_object(faiss, index, caller):
    """TypeError unless `index` is a faiss Index or a FaissAdannsIVF; ValueError if untrained
    (an untrained faiss index holds zero codebooks / centroids, which would read as trained)."""
    if not isinstance(index, (faiss.Index, FaissAdannsIVF)):
        raise TypeError(f"{caller} takes a faiss Index (or a FaissAdannsIVF from to_faiss), got "
                        f"{type(index).__name__}")
    trained = index.ivf.is_trained if isinstance(index, FaissAdannsIVF) else index.is_trained
    if not trained:
        raise ValueError(f"{caller} needs a trained faiss index, got an untrained "
                         f"{type(index).__name__}; train it in faiss first (index.train(x))")


# --------------------------------------------------------------------------- to_faiss

def to_faiss(index):
    """The faiss object equivalent to our trained index (table in the module docstring)."""
    faiss = import_faiss()
    if isinstance(index, FlatIndex):
        return _flat(faiss, index.xb, index.metric)
    if isinstance(index, IVFIndex):
        _require(index.is_trained, index)
        if index.d_c == index.d_s:
            ivf = _ivf_flat(faiss, index, index.centroids)
            return _pretransform(faiss, _prefix_transforms(faiss, index.d, index.d_s, index.normalize), ivf)
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
    raise TypeError(f"to_faiss takes a FlatIndex, IVFIndex, PQIndex or IVFPQIndex, got "
                    f"{type(index).__name__}")


def _require(trained, index):
    if not trained:
        raise ValueError(f"to_faiss needs a trained index, got an untrained {index!r}; train it first")


# --------------------------------------------------------------------------- from_faiss

def _describe(faiss, t):
    """A comparable description of a faiss VectorTransform."""
    if isinstance(t, faiss.NormalizationTransform):
        return ("NormalizationTransform", t.d_in, float(t.norm))
    if isinstance(t, faiss.RemapDimensionsTransform):
        return ("RemapDimensionsTransform", t.d_in, t.d_out, tuple(faiss.vector_to_array(t.map).tolist()))
    return (type(t).__name__, t.d_in, t.d_out)


def _read_chain(faiss, index):
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
        if found == [_describe(faiss, t) for t in _prefix_transforms(faiss, D, inner.d, normalize)]:
            return D, normalize, opq, inner
    raise ValueError(f"unsupported transform chain {found}; from_faiss reads the Matryoshka prefix "
                     f"chain to_faiss writes (NormalizationTransform, RemapDimensionsTransform keeping "
                     f"the first dims, NormalizationTransform), optionally followed by an OPQMatrix")


def _read_lists(faiss, ivf):
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


def _quantizer_centroids(faiss, ivf):
    quantizer = faiss.downcast_index(ivf.quantizer)
    if not isinstance(quantizer, faiss.IndexFlat):
        raise ValueError(f"the IVF quantizer is a {type(quantizer).__name__}; adanns_ref routes "
                         f"exactly, so only IndexFlat quantizers have a counterpart")
    return quantizer.reconstruct_n(0, ivf.nlist)


def _full_vectors(xb, ids, stored, D, d_s, normalize):
    """The D-dim vectors in id order: `stored` itself when faiss holds them, else `xb` after
    checking that its d_s-prefixes are the stored vectors (ids, stored in list order)."""
    if xb is None:
        if normalize or d_s < D:
            raise ValueError(f"faiss holds only the {d_s}-dim prefixes (normalize={normalize}) of the "
                             f"{D}-dim vectors an IVFIndex keeps; pass xb=the ({ids.shape[0]}, {D}) "
                             f"vectors in id order that the index was built from")
        full = np.empty_like(stored)
        full[ids] = stored
        return full
    xb = as_float32_matrix(xb, "xb", d=D)
    if xb.shape[0] != ids.shape[0]:
        raise ValueError(f"xb has {xb.shape[0]} rows but the faiss index holds {ids.shape[0]} vectors")
    bad = np.flatnonzero((prefix(xb[ids], d_s, normalize) != stored).any(axis=1))
    if bad.size:
        raise ValueError(f"xb row {int(ids[bad[0]])} does not give the vector faiss stores under that "
                         f"id ({bad.size} rows differ); pass the vectors the index was built from, "
                         f"in id order")
    return xb


def _ivf_index(faiss, ivf, centroids, D, d_c, normalize, xb):
    metric = _our_metric(faiss, ivf.metric_type)
    ids, lists, codes = _read_lists(faiss, ivf)
    stored = np.ascontiguousarray(codes).view(np.float32).reshape(-1, ivf.d)
    index = IVFIndex(D, ivf.nlist, d_c=d_c, d_s=ivf.d, metric=metric, normalize=normalize,
                     niter=ivf.cp.niter, seed=ivf.cp.seed,
                     max_points_per_centroid=ivf.cp.max_points_per_centroid)
    index.set_centroids(centroids)
    full = _full_vectors(xb, ids, stored, D, ivf.d, normalize)
    order = np.empty_like(lists)
    order[ids] = lists
    index.add_preassigned(full, order)
    return index


def _pq_index(faiss, fpq, D, normalize, opq):
    if fpq.metric_type != faiss.METRIC_L2 or fpq.search_type != faiss.IndexPQ.ST_PQ:
        raise ValueError("only IndexPQ with METRIC_L2 and search_type ST_PQ (plain ADC) has an "
                         "adanns_ref counterpart (PQIndex)")
    pq = fpq.pq
    index = PQIndex(D, pq.M, pq.nbits, opq=opq is not None, prefix_dim=fpq.d, normalize=normalize,
                    seed=pq.cp.seed, opq_niter=_opq_niter(opq))
    index.pq.set_codebooks(_codebooks(faiss, pq))
    if opq is not None:
        index.opq = _our_opq(opq, pq.M, pq.cp.seed)
    from faiss.contrib.inspect_tools import get_flat_codes
    index.codes = np.ascontiguousarray(get_flat_codes(fpq))
    return index


def _codebooks(faiss, fpq):
    return faiss.vector_to_array(fpq.centroids).reshape(fpq.M, fpq.ksub, fpq.dsub)


def _rotation(fopq):
    from faiss.contrib.inspect_tools import get_LinearTransform_matrix
    return np.ascontiguousarray(get_LinearTransform_matrix(fopq)[0], dtype=np.float32)


def _opq_niter(fopq):
    """OPQ iterations an OPQMatrix carries; 50 (the default) when there is none or it was read
    from a file (faiss writes it as a LinearTransform)."""
    return getattr(fopq, "niter", 50)


def _our_opq(fopq, M, seed):
    """Our OPQ holding the rotation of a faiss OPQMatrix / rotation LinearTransform."""
    opq = OPQ(fopq.d_in, M, niter=_opq_niter(fopq), seed=seed)
    opq.A = _rotation(fopq)
    return opq


def _ivfpq_index(faiss, ivf, opq, centroids, scoring, D, d_c, normalize):
    if ivf.polysemous_ht:
        raise ValueError(f"IndexIVFPQ with polysemous_ht={ivf.polysemous_ht} filters by Hamming "
                         f"distance; only plain ADC (polysemous_ht=0) has a counterpart")
    ids, lists, codes = _read_lists(faiss, ivf)
    offsets = np.zeros(ivf.nlist + 1, np.int64)
    np.cumsum(np.bincount(lists, minlength=ivf.nlist), out=offsets[1:])
    index = IVFPQIndex(D, ivf.nlist, ivf.pq.M, ivf.pq.nbits, d_c=d_c, d_s=ivf.d, opq=opq is not None,
                       by_residual=ivf.by_residual, metric=_our_metric(faiss, ivf.metric_type),
                       normalize=normalize, niter=ivf.cp.niter, seed=ivf.cp.seed,
                       opq_niter=_opq_niter(opq))
    index.set_quantizers(centroids, scoring, _codebooks(faiss, ivf.pq),
                         None if opq is None else _rotation(opq))
    return index.set_lists(codes, ids, offsets)


def from_faiss(index, xb=None):
    """Our index equivalent to a faiss index built as `to_faiss` builds them (or a FaissAdannsIVF).

    xb: the D-dim vectors in id order, needed only to rebuild an IVFIndex whose faiss side holds
    prefixes (normalize=True or d_s < D; see the module docstring). Unsupported faiss types or
    settings raise TypeError / ValueError naming them; so do a non-faiss object (TypeError) and an
    untrained faiss index (ValueError: its codebooks / centroids are zeros, not trained values).
    """
    faiss = import_faiss()
    _require_faiss_object(faiss, index, "from_faiss")
    if isinstance(index, FaissAdannsIVF):
        return _from_adanns(faiss, index, xb)
    outer = faiss.downcast_index(index)  # a non-owning view: `index` keeps the object alive
    D, normalize, opq, inner = _read_chain(faiss, outer)
    if type(inner) in (faiss.IndexFlat, faiss.IndexFlatL2, faiss.IndexFlatIP):
        if inner is not outer:
            raise ValueError("a FlatIndex has no transforms; read the inner index "
                             "(faiss.downcast_index(index.index)) and pass prefix(q, d) queries")
        from faiss.contrib.inspect_tools import get_flat_data
        flat = FlatIndex(inner.d, _our_metric(faiss, inner.metric_type))
        flat.add(get_flat_data(inner))
        return flat
    if type(inner) is faiss.IndexIVFFlat and opq is None:
        return _ivf_index(faiss, inner, _quantizer_centroids(faiss, inner), D, inner.d, normalize, xb)
    if type(inner) is faiss.IndexPQ:
        return _pq_index(faiss, inner, D, normalize, opq)
    if type(inner) is faiss.IndexIVFPQ:
        scoring = _quantizer_centroids(faiss, inner)
        # faiss routes rotated vectors against s_l = R c_l; ours routes c_l: recover it (rounding)
        centroids = scoring if opq is None else scoring @ _rotation(opq)
        return _ivfpq_index(faiss, inner, opq, centroids, scoring, D, inner.d, normalize)
    raise TypeError(f"from_faiss reads IndexFlat, IndexIVFFlat, IndexPQ and IndexIVFPQ (optionally "
                    f"behind the chains to_faiss writes) and FaissAdannsIVF, got "
                    f"{type(inner).__name__}" + (" behind an OPQMatrix" if opq is not None else ""))


def _from_adanns(faiss, wrapper, xb):
    centroids = wrapper.quantizer.reconstruct_n(0, wrapper.nlist)
    inner, opq = wrapper._inner()
    if type(inner) is faiss.IndexIVFFlat and opq is None:
        return _ivf_index(faiss, inner, centroids, wrapper.d, wrapper.d_c, wrapper.normalize, xb)
    if type(inner) is faiss.IndexIVFPQ:
        return _ivfpq_index(faiss, inner, opq, centroids, _quantizer_centroids(faiss, inner),
                            wrapper.d, wrapper.d_c, wrapper.normalize)
    raise TypeError(f"FaissAdannsIVF with a {type(inner).__name__} inside is not supported")
