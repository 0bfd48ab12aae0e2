"""Self-contained faiss indices for what `faiss_bridge.to_faiss` would return as a Python wrapper.

``faiss.write_index`` only writes faiss objects, so a configuration meant to be served from a file
must be *one* faiss index taking the full D-dim queries. Two shapes need more than the prefix
chain of `faiss_bridge`:

AdANNS-IVF (d_c != d_s), as ``IndexIVFIndependentQuantizer(quantizer, index_ivf, vt)``. faiss
routes with ``quantizer.search(x, nprobe)`` on the input x, applies ``vt`` (one VectorTransform)
to x, then calls ``index_ivf.search_preassigned``. With z_d = `truncate.prefix(., d, normalize)`:

    normalize=False:  quantizer = [Remap(D, d_c)] Flat(d_c),  vt = Remap(D, d_s),  no outer chain
    normalize=True:   outer chain Norm(D), Remap(D, d_s), Norm(d_s) gives z_{d_s};
                      quantizer = [Remap(d_s, d_c), Norm(d_c)] Flat(d_c),  vt = None

The normalized case needs d_c <= d_s: the payload side takes a single VectorTransform and
z_{d_s} needs three, so z_{d_s} is computed once outside and z_{d_c} = z_{d_c}(z_{d_s}) (equal
in exact arithmetic, since normalising before truncating only rescales) is derived from it.
d_c > d_s with normalize=True raises ValueError. The lists, ids and d_s-prefixes are ours,
bit for bit (`faiss_bridge.ivf_flat`).

Funnel (shortlist k_0 at d_0, re-rank at r, keep k), as ``IndexRefine(base, refine)`` with
``k_factor = k_0 / k``: base = [prefix chain D -> d_0] Flat(d_0), refine = [prefix chain D -> r]
Flat(r). faiss asks the base for int(k * k_factor) candidates and re-scores them with refine's
distance computer, so the exported index serves one k (the tuned one); another k changes k_0.

AdANNS-HNSW (graph on the d_c-prefixes, max(ef, k) candidates re-scored at d_s), as
``IndexRefine(base, refine)`` with base = [prefix chain D -> d_c] IndexHNSWFlat holding our graph
(`faiss_bridge.hnsw.hnsw_to_faiss`, efSearch set) and refine = [prefix chain D -> d_s] Flat(d_s).
faiss asks the base for int(k * k_factor) = max(ef, k) results, and HNSW's candidate set holds
max(ef, that) = max(ef, k): the candidates our search re-scores. k_factor is stored as a float32,
so it is set to (max(ef, k) + 1/2) / k, whose product with k truncates to max(ef, k) exactly.
With d_s = d_c the base alone is returned. Like the funnel, the file serves one k.

Queries are prefixed by faiss (x * (1 / ||x||)) rather than by us (x / ||x||): distances agree
to float32 rounding and ids except at near-ties, as everywhere in `faiss_bridge`.
"""
import numpy as np

from ..core.truncate import prefix
from ..core.validate import as_int, check_prefix_dim
from ..indices.hnsw import HNSWIndex
from .common import flat_index, import_faiss, prefix_transforms, pretransform
from .hnsw import hnsw_to_faiss
from .ivf import ivf_flat


def adanns_ivf(index):
    """faiss IndexIVFIndependentQuantizer (maybe behind a prefix chain) for an IVFIndex with
    d_c != d_s; faiss.write_index writes it."""
    faiss = import_faiss()
    if index.normalize and index.d_c > index.d_s:
        raise ValueError(f"AdANNS-IVF with normalize=True and d_c={index.d_c} > d_s={index.d_s} "
                         f"has no single faiss index (the payload side takes one transform); "
                         f"use d_c <= d_s")
    placeholder = np.zeros((index.nlist, index.d_s), np.float32)
    ivf = ivf_flat(faiss, index, placeholder)
    ivf.nprobe = 1
    if index.normalize:
        outer = prefix_transforms(faiss, index.d, index.d_s, True)
        q_chain = prefix_transforms(faiss, index.d_s, index.d_c, False) + \
            [faiss.NormalizationTransform(index.d_c, 2.0)]
        vt = None
    else:
        outer = []
        q_chain = prefix_transforms(faiss, index.d, index.d_c, False)
        vt = faiss.RemapDimensionsTransform(index.d, index.d_s, False) if index.d_s < index.d else None
    quantizer = pretransform(faiss, q_chain, flat_index(faiss, index.centroids, index.metric))
    both = faiss.IndexIVFIndependentQuantizer(quantizer, ivf, vt)
    # faiss frees the parts with `both` only when it owns them; the SWIG objects then must not
    both.own_fields = True
    for part in (quantizer, ivf) + ((vt,) if vt is not None else ()):
        part.this.disown()
    return pretransform(faiss, outer, both)


def set_nprobe(index, nprobe):
    """Set the nprobe a faiss index from `to_faiss(..., writable=True)` searches with (saved with
    the file). Non-IVF indices are left alone."""
    faiss = import_faiss()
    nprobe = as_int(nprobe, "nprobe", 1)
    index = faiss.downcast_index(index)
    while isinstance(index, faiss.IndexPreTransform):
        index = faiss.downcast_index(index.index)
    if isinstance(index, faiss.IndexIVFIndependentQuantizer):
        faiss.downcast_index(index.index_ivf).nprobe = nprobe
    elif faiss.try_extract_index_ivf(index) is not None:
        faiss.extract_index_ivf(index).nprobe = nprobe


def flat_prefix(xb, d, metric="l2", normalize=True):
    """faiss Flat over the d-prefixes of xb (N, D), behind the prefix chain (D-dim queries)."""
    faiss = import_faiss()
    d = check_prefix_dim(d, xb.shape[1], "d")
    return pretransform(faiss, prefix_transforms(faiss, xb.shape[1], d, normalize),
                         flat_index(faiss, prefix(xb, d, normalize), metric))


def funnel(xb, d0, k0, r, k, metric="l2", normalize=True):
    """faiss IndexRefine serving the funnel [(d0, k0), (r, k)] over xb (N, D) for D-dim queries."""
    return refine_prefix(flat_prefix(xb, d0, metric, normalize), xb, k0, r, k, metric, normalize)


def refine_prefix(base, xb, k0, r, k, metric="l2", normalize=True):
    """faiss IndexRefine: base (any faiss index over xb taking D-dim queries, e.g. an SQ8 prefix
    from `faiss_bridge.to_faiss`) shortlists k0, exact re-rank at the r-prefix keeps k. Takes
    ownership of base."""
    faiss = import_faiss()
    k0, k = as_int(k0, "k0", 1), as_int(k, "k", 1)
    if k0 < k:
        raise ValueError(f"the shortlist k0={k0} must hold at least k={k} candidates")
    refine = flat_prefix(xb, r, metric, normalize)
    index = faiss.IndexRefine(base, refine)
    index.own_fields = True
    index.own_refine_index = True
    base.this.disown()
    refine.this.disown()
    index.k_factor = k0 / k
    return index


def hnsw(index, ef_search, k, d_s=None):
    """faiss index serving `index` (an HNSWIndex built with d_s = d_c) with efSearch ef_search,
    re-scoring at d_s (default d_c: rigid HNSW) for k results per full-D query (docstring)."""
    faiss = import_faiss()
    if not isinstance(index, HNSWIndex):
        raise TypeError(f"index must be an HNSWIndex, got {type(index).__name__}")
    if index.d_s != index.d_c:
        raise ValueError(f"build the HNSWIndex with d_s = d_c (got d_c={index.d_c}, d_s={index.d_s}) "
                         "and pass the re-scoring dims as d_s here")
    ef, k = as_int(ef_search, "ef_search", 1, 1 << 24), as_int(k, "k", 1)
    d_s = index.d_c if d_s is None else check_prefix_dim(d_s, index.d, "d_s")
    base = hnsw_to_faiss(faiss, index)
    graph = faiss.downcast_index(base.index) if isinstance(base, faiss.IndexPreTransform) else base
    graph.hnsw.efSearch = ef
    if d_s == index.d_c:
        return base
    refine = flat_prefix(index.vectors(), d_s, index.metric, index.normalize)
    out = faiss.IndexRefine(base, refine)
    out.own_fields = True
    out.own_refine_index = True
    base.this.disown()
    refine.this.disown()
    out.k_factor = (max(ef, k) + 0.5) / k
    return out
