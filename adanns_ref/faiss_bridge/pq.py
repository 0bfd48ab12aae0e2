"""faiss bridge for `PQIndex` and `IVFPQIndex` (with or without OPQ), both ways.

    ours                                   faiss
    PQIndex(M, nbits, prefix_dim=d)        [prefix chain] IndexPQ(d, M, nbits)
    PQIndex(..., opq=True)                 [prefix chain] OPQMatrix(d, M) -> IndexPQ
    IVFPQIndex, d_c = d_s = d              [prefix chain] [OPQMatrix] IndexIVFPQ, precompute_table()
    IVFPQIndex, d_c != d_s                 FaissAdannsIVF: IndexFlat(d_c) + [OPQMatrix] IndexIVFPQ(d_s)

Our codebooks, rotation and codes go to faiss as they are (nothing re-encoded); read back, faiss's
routing centroids s_l = R c_l give c_l = s_l R to float32 rounding (see `faiss_bridge`).
"""
import numpy as np

from ..indices.ivfpq import IVFPQIndex
from ..indices.pqindex import PQIndex
from ..quantizers.opq import OPQ
from .common import (FaissAdannsIVF, faiss_metric, flat_index, our_metric, prefix_transforms, pretransform,
                     read_lists, require_trained, set_cp)


def opq_matrix(faiss, A, M, niter):
    opq = faiss.OPQMatrix(A.shape[1], M, A.shape[0])
    faiss.copy_array_to_vector(np.ascontiguousarray(A, dtype=np.float32).ravel(), opq.A)
    opq.niter = niter
    opq.is_trained = True
    opq.set_is_orthonormal()
    return opq


def ivf_pq(faiss, index, quantizer_rows):
    """IndexIVFPQ at d_s with our codebooks and our codes in our lists, precompute_table() called."""
    quantizer = flat_index(faiss, quantizer_rows, index.metric)
    ivf = faiss.IndexIVFPQ(quantizer, index.d_s, index.nlist, index.M, index.nbits,
                           faiss_metric(faiss, index.metric))
    ivf.by_residual = index.by_residual
    set_cp(ivf.cp, index.niter, index.seed, 256)  # IVFPQIndex's coarse k-means: faiss's default
    set_pq(faiss, ivf.pq, index.pq)
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


def set_pq(faiss, fpq, pq):
    """Our ProductQuantizer's codebooks and k-means parameters into faiss's ProductQuantizer."""
    faiss.copy_array_to_vector(pq.codebooks.ravel(), fpq.centroids)
    set_cp(fpq.cp, pq.niter, pq.seed, pq.max_points_per_centroid)


def opq_chain(faiss, index):
    """[OPQMatrix holding our rotation] for an index with OPQ, else []."""
    return [] if index.opq is None else [opq_matrix(faiss, index.opq.A, index.M, index.opq_niter)]


def pq_to_faiss(faiss, index):
    """The faiss object for a trained PQIndex."""
    require_trained(index.is_trained, index)
    fpq = faiss.IndexPQ(index.dim, index.M, index.nbits)
    set_pq(faiss, fpq.pq, index.pq)
    fpq.is_trained = True
    fpq.add_sa_codes(index.codes)
    chain = prefix_transforms(faiss, index.d, index.dim, index.normalize) + opq_chain(faiss, index)
    return pretransform(faiss, chain, fpq)


def ivfpq_to_faiss(faiss, index):
    """The faiss object for a trained IVFPQIndex (FaissAdannsIVF when d_c != d_s)."""
    require_trained(index.is_trained, index)
    ivf = ivf_pq(faiss, index, index.scoring_centroids)
    if index.d_c == index.d_s:
        chain = prefix_transforms(faiss, index.d, index.d_s, index.normalize) + opq_chain(faiss, index)
        return pretransform(faiss, chain, ivf)
    return FaissAdannsIVF(index.d, index.d_c, index.d_s, index.metric, index.normalize,
                          flat_index(faiss, index.centroids, index.metric),
                          pretransform(faiss, opq_chain(faiss, index), ivf))


def pq_from_faiss(faiss, fpq, D, normalize, opq):
    if fpq.metric_type != faiss.METRIC_L2 or fpq.search_type != faiss.IndexPQ.ST_PQ:
        raise ValueError("only IndexPQ with METRIC_L2 and search_type ST_PQ (plain ADC) has an "
                         "adanns_ref counterpart (PQIndex)")
    pq = fpq.pq
    index = PQIndex(D, pq.M, pq.nbits, opq=opq is not None, prefix_dim=fpq.d, normalize=normalize,
                    seed=pq.cp.seed, opq_niter=opq_niter(opq))
    index.pq.set_codebooks(codebooks(faiss, pq))
    if opq is not None:
        index.opq = our_opq(opq, pq.M, pq.cp.seed)
    from faiss.contrib.inspect_tools import get_flat_codes
    index.codes = np.ascontiguousarray(get_flat_codes(fpq))
    return index


def codebooks(faiss, fpq):
    return faiss.vector_to_array(fpq.centroids).reshape(fpq.M, fpq.ksub, fpq.dsub)


def rotation(fopq):
    from faiss.contrib.inspect_tools import get_LinearTransform_matrix
    return np.ascontiguousarray(get_LinearTransform_matrix(fopq)[0], dtype=np.float32)


def opq_niter(fopq):
    """OPQ iterations an OPQMatrix carries; 50 (the default) when there is none or it was read
    from a file (faiss writes it as a LinearTransform)."""
    return getattr(fopq, "niter", 50)


def our_opq(fopq, M, seed):
    """Our OPQ holding the rotation of a faiss OPQMatrix / rotation LinearTransform."""
    opq = OPQ(fopq.d_in, M, niter=opq_niter(fopq), seed=seed)
    opq.A = rotation(fopq)
    return opq


def ivfpq_from_faiss(faiss, ivf, opq, centroids, scoring, D, d_c, normalize):
    if ivf.polysemous_ht:
        raise ValueError(f"IndexIVFPQ with polysemous_ht={ivf.polysemous_ht} filters by Hamming "
                         f"distance; only plain ADC (polysemous_ht=0) has a counterpart")
    ids, lists, codes = read_lists(faiss, ivf)
    offsets = np.zeros(ivf.nlist + 1, np.int64)
    np.cumsum(np.bincount(lists, minlength=ivf.nlist), out=offsets[1:])
    index = IVFPQIndex(D, ivf.nlist, ivf.pq.M, ivf.pq.nbits, d_c=d_c, d_s=ivf.d, opq=opq is not None,
                       by_residual=ivf.by_residual, metric=our_metric(faiss, ivf.metric_type),
                       normalize=normalize, niter=ivf.cp.niter, seed=ivf.cp.seed,
                       opq_niter=opq_niter(opq))
    index.set_quantizers(centroids, scoring, codebooks(faiss, ivf.pq),
                         None if opq is None else rotation(opq))
    return index.set_lists(codes, ids, offsets)
