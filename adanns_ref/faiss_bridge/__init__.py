"""Bridge to faiss: export a trained index as the equivalent faiss object (`to_faiss`), read
faiss indices back (`from_faiss`), search the exported objects like ours (`faiss_search`).

Layout: `common` (helpers, the prefix chain, `FaissAdannsIVF`; imports no other bridge module),
one module per index family holding both directions (`flat`, `ivf`, `pq` for PQIndex and
IVFPQIndex, `hnsw`, `sq`, `binary`), and `serve` (single-file faiss forms of AdANNS-IVF, funnels
and AdANNS-HNSW). This module only dispatches.

The path out of one machine: study and train a configuration here, ``to_faiss`` it, serve it
with faiss (``faiss.write_index`` works on every object below except `FaissAdannsIVF`, whose two
faiss parts are written separately; ``to_faiss(ivf, writable=True)`` gives an IVFIndex with
d_c != d_s as one writable faiss index instead, see `serve`). Nothing is retrained: faiss gets our centroids, codebooks,
rotation, inverted lists and codes, bit for bit.

    ours                                   faiss
    FlatIndex(d, metric)                   IndexFlatL2 / IndexFlatIP(d)
    IVFIndex, d_c = d_s = d                [prefix chain] IndexIVFFlat(IndexFlat(d), d, nlist)
    PQIndex(M, nbits, prefix_dim=d)        [prefix chain] IndexPQ(d, M, nbits)
    PQIndex(..., opq=True)                 [prefix chain] OPQMatrix(d, M) -> IndexPQ
    IVFPQIndex, d_c = d_s = d              [prefix chain] [OPQMatrix] IndexIVFPQ, precompute_table()
    IVFIndex / IVFPQIndex, d_c != d_s      FaissAdannsIVF: IndexFlat(d_c) + faiss IVF at d_s
    SQIndex                                [prefix chain] IndexScalarQuantizer (`sq`)
    BinaryFlatIndex, BinaryIVFIndex        IndexBinaryFlat, IndexBinaryIVF (`binary`)
    HNSWIndex                              [prefix chain] IndexHNSWFlat(d_c, M) (`hnsw`)

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

from . import serve
from ..core.validate import as_float32_matrix, as_int, as_k
from ..indices.binary import BinaryFlatIndex, BinaryIVFIndex
from ..indices.flat import FlatIndex
from ..indices.hnsw import HNSWIndex
from ..indices.ivf import IVFIndex
from ..indices.ivfpq import IVFPQIndex
from ..indices.pqindex import PQIndex
from ..indices.sqindex import SQIndex
from .binary import binary_from_faiss, binary_search, binary_to_faiss
from .common import FaissAdannsIVF, import_faiss, quantizer_centroids, read_chain, require_faiss_object
from .flat import flat_from_faiss, flat_to_faiss
from .hnsw import hnsw_from_faiss, hnsw_to_faiss, holds_hnsw
from .ivf import ivf_from_faiss, ivf_to_faiss
from .pq import ivfpq_from_faiss, ivfpq_to_faiss, pq_from_faiss, pq_to_faiss, rotation
from .sq import sq_from_faiss, sq_to_faiss

__all__ = ["FaissAdannsIVF", "faiss_search", "from_faiss", "import_faiss", "to_faiss"]


def to_faiss(index, writable=False):
    """The faiss object equivalent to our trained index (table in the module docstring).

    writable=True: an IVFIndex with d_c != d_s comes back as one faiss index that
    ``faiss.write_index`` writes (`serve.adanns_ivf`: an IndexIVFIndependentQuantizer)
    instead of a FaissAdannsIVF; the other types are already faiss indices."""
    faiss = import_faiss()
    if isinstance(index, FlatIndex):
        return flat_to_faiss(faiss, index)
    if isinstance(index, IVFIndex):
        if writable and index.is_trained and index.d_c != index.d_s:
            return serve.adanns_ivf(index)
        return ivf_to_faiss(faiss, index)
    if isinstance(index, PQIndex):
        return pq_to_faiss(faiss, index)
    if isinstance(index, IVFPQIndex):
        return ivfpq_to_faiss(faiss, index)
    if isinstance(index, HNSWIndex):
        return hnsw_to_faiss(faiss, index)
    if isinstance(index, SQIndex):
        return sq_to_faiss(faiss, index)
    if isinstance(index, (BinaryFlatIndex, BinaryIVFIndex)):
        return binary_to_faiss(faiss, index)
    raise TypeError(f"to_faiss takes a FlatIndex, IVFIndex, PQIndex, IVFPQIndex, HNSWIndex, SQIndex, "
                    f"BinaryFlatIndex or BinaryIVFIndex, got {type(index).__name__}")


def faiss_search(index, q, k, nprobe=1):
    """Search any object `to_faiss` returns with our calling convention -> (D, I).

    nprobe is passed to IVF indices as ``SearchParametersIVF`` (the index is not modified, except
    a FaissAdannsIVF, see there) and ignored by the others. Checked like our searches: a
    non-faiss object raises TypeError; an untrained index, bad queries, k < 1 (or a k whose
    results exceed `core.validate.MAX_RESULT_BYTES`) or nprobe < 1 raise ValueError."""
    faiss = import_faiss()
    require_faiss_object(faiss, index, "faiss_search")
    if isinstance(index, faiss.IndexBinary):
        return binary_search(faiss, index, q, as_k(k, len(q)), as_int(nprobe, "nprobe", 1))
    q = as_float32_matrix(q, "q", d=index.d)
    k = as_k(k, q.shape[0])
    nprobe = as_int(nprobe, "nprobe", 1)
    if isinstance(index, FaissAdannsIVF):
        return index.search(q, k, nprobe)
    if faiss.try_extract_index_ivf(index) is not None:
        return index.search(q, k, params=faiss.SearchParametersIVF(nprobe=nprobe))
    return index.search(q, k)


def from_faiss(index, xb=None):
    """Our index equivalent to a faiss index built as `to_faiss` builds them (or a FaissAdannsIVF).

    xb: the D-dim vectors in id order, needed only to rebuild an IVFIndex whose faiss side holds
    prefixes (normalize=True or d_s < D; see the module docstring). Unsupported faiss types or
    settings raise TypeError / ValueError naming them; so do a non-faiss object (TypeError) and an
    untrained faiss index (ValueError: its codebooks / centroids are zeros, not trained values).
    """
    faiss = import_faiss()
    require_faiss_object(faiss, index, "from_faiss")
    if isinstance(index, FaissAdannsIVF):
        return from_adanns(faiss, index, xb)
    if isinstance(index, faiss.IndexBinary):
        return binary_from_faiss(faiss, index)
    outer = faiss.downcast_index(index)  # a non-owning view: `index` keeps the object alive
    if holds_hnsw(faiss, outer):
        return hnsw_from_faiss(faiss, outer, xb)
    D, normalize, opq, inner = read_chain(faiss, outer)
    if type(inner) in (faiss.IndexFlat, faiss.IndexFlatL2, faiss.IndexFlatIP):
        return flat_from_faiss(faiss, inner, outer)
    if type(inner) is faiss.IndexIVFFlat and opq is None:
        return ivf_from_faiss(faiss, inner, quantizer_centroids(faiss, inner), D, inner.d, normalize, xb)
    if type(inner) is faiss.IndexPQ:
        return pq_from_faiss(faiss, inner, D, normalize, opq)
    if type(inner) is faiss.IndexScalarQuantizer:
        return sq_from_faiss(faiss, outer)
    if type(inner) is faiss.IndexIVFPQ:
        scoring = quantizer_centroids(faiss, inner)
        # faiss routes rotated vectors against s_l = R c_l; ours routes c_l: recover it (rounding)
        centroids = scoring if opq is None else scoring @ rotation(opq)
        return ivfpq_from_faiss(faiss, inner, opq, centroids, scoring, D, inner.d, normalize)
    raise TypeError(f"from_faiss reads IndexFlat, IndexIVFFlat, IndexPQ, IndexIVFPQ, IndexHNSWFlat, "
                    f"IndexScalarQuantizer, IndexBinaryFlat and IndexBinaryIVF (optionally behind "
                    f"the chains to_faiss writes) and FaissAdannsIVF, got "
                    f"{type(inner).__name__}" + (" behind an OPQMatrix" if opq is not None else ""))


def from_adanns(faiss, wrapper, xb):
    """Our IVFIndex / IVFPQIndex from a FaissAdannsIVF (xb as in `from_faiss`)."""
    centroids = wrapper.quantizer.reconstruct_n(0, wrapper.nlist)
    inner, opq = wrapper.inner()
    if type(inner) is faiss.IndexIVFFlat and opq is None:
        return ivf_from_faiss(faiss, inner, centroids, wrapper.d, wrapper.d_c, wrapper.normalize, xb)
    if type(inner) is faiss.IndexIVFPQ:
        return ivfpq_from_faiss(faiss, inner, opq, centroids, quantizer_centroids(faiss, inner),
                            wrapper.d, wrapper.d_c, wrapper.normalize)
    raise TypeError(f"FaissAdannsIVF with a {type(inner).__name__} inside is not supported")
