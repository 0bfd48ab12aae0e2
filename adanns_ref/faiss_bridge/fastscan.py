"""faiss bridge for the fast-scan family (`adanns_ref.fastscan`), both directions.

- `fastscan_to_faiss(index)`: a `PQFastScanIndex` -> faiss ``IndexPQFastScan`` (bbs = 32), an
  `IVFPQFastScanIndex` -> ``IndexIVFPQFastScan`` (its ``by_residual``; L2 by_residual: the
  precomputed table rebuilt by faiss, ``use_precomputed_table`` 1 or -1 as ours; faiss's files
  do not store that choice: ``read_index`` rebuilds the table, so a precomputed=False export
  searches as ours in memory and as precomputed=True once written and read), holding our
  codebooks, centroids, ids and codes as they are (faiss packs the same codes into the same
  blocks; nothing is re-encoded), so ``faiss.write_index`` / ``read_index`` serve them.
- `fastscan_from_faiss(findex)`: the reverse, for faiss indices of those two classes with
  nbits = 4, bbs = 32 and (IVF) a flat coarse quantizer, by_residual either way (L2
  by_residual: ``use_precomputed_table`` 1 -> precomputed=True, -1 -> False; others refused).

The faiss objects search exactly as ours (tests: ``tests/test_fastscan_bridge.py``).
"""
import numpy as np

from .common import faiss_metric, import_faiss, our_metric
from ..fastscan import IVFPQFastScanIndex, PQFastScanIndex
from ..fastscan import packing


def _flat_pq(faiss, d, pq, metric, codes):
    """faiss IndexPQ(d, M, 4) with our codebooks and the flat codes (n, ceil(M / 2))."""
    flat = faiss.IndexPQ(d, pq.M, 4, faiss_metric(faiss, metric))
    faiss.copy_array_to_vector(pq.codebooks.ravel(), flat.pq.centroids)
    flat.is_trained = True
    if codes.shape[0]:
        faiss.copy_array_to_vector(np.ascontiguousarray(codes).ravel(), flat.codes)
    flat.ntotal = codes.shape[0]
    return flat


def fastscan_to_faiss(index):
    """faiss IndexPQFastScan / IndexIVFPQFastScan equal to `index` (trained)."""
    faiss = import_faiss()
    if not isinstance(index, (PQFastScanIndex, IVFPQFastScanIndex)):
        raise TypeError(f"fastscan_to_faiss takes a PQFastScanIndex or IVFPQFastScanIndex, got "
                        f"{type(index).__name__}")
    if not index.is_trained:
        raise ValueError(f"{type(index).__name__} is not trained; train it before exporting")
    if isinstance(index, PQFastScanIndex):
        flat = _flat_pq(faiss, index.d, index.pq, index.metric, packing.join_nibbles(index.sub_codes()))
        out = faiss.IndexPQFastScan(flat, 32)
        out.referenced_objects = [flat]  # its orig_codes point into `flat`
        return out
    quantizer = (faiss.IndexFlatL2 if index.metric == "l2" else faiss.IndexFlatIP)(index.d)
    quantizer.add(index.ivf.centroids)
    ivf = faiss.IndexIVFPQ(quantizer, index.d, index.nlist, index.M, 4, faiss_metric(faiss, index.metric))
    ivf.by_residual = index.by_residual
    faiss.copy_array_to_vector(index.pq.codebooks.ravel(), ivf.pq.centroids)
    ivf.is_trained = True
    if index.by_residual and index.metric == "l2":
        ivf.use_precomputed_table = 0 if index.precomputed else -1  # 0: faiss chooses 1 below 2 GiB
        ivf.precompute_table()
    for l in range(index.nlist):
        ids, codes = index.ivf.list_ids(l), np.ascontiguousarray(index.ivf.list_codes(l))
        if ids.size:
            ivf.invlists.add_entries(l, ids.size, faiss.swig_ptr(ids), faiss.swig_ptr(codes))
    ivf.ntotal = index.ntotal
    out = faiss.IndexIVFPQFastScan(ivf, 32)
    out.use_precomputed_table = ivf.use_precomputed_table
    out.referenced_objects = [quantizer, ivf]  # faiss's idiom: keep what `out` points to alive
    return out


def fastscan_from_faiss(findex):
    """Our index equal to a faiss IndexPQFastScan / IndexIVFPQFastScan (nbits 4, bbs 32)."""
    faiss = import_faiss()
    fi = faiss.downcast_index(findex)
    if isinstance(fi, faiss.IndexPQFastScan):
        if fi.pq.nbits != 4 or fi.bbs != 32:
            raise ValueError(f"IndexPQFastScan with nbits={fi.pq.nbits}, bbs={fi.bbs}: only 4 / 32 "
                             f"are reproduced")
        out = PQFastScanIndex(fi.d, fi.M, metric=our_metric(faiss, fi.metric_type), allow_small=True)
        if fi.is_trained:
            out.pq.set_codebooks(faiss.vector_to_array(fi.pq.centroids).reshape(fi.M, 16, -1))
            nb = -(-fi.ntotal // 32)
            blocks = faiss.rev_swig_ptr(fi.codes.get(), fi.codes.size()).copy()
            blocks = blocks[:nb * out.M2 // 2 * 32].reshape(nb, -1)
            out.add_sub_codes(packing.unpack_codes(blocks, fi.ntotal, fi.M))
        return out
    if isinstance(fi, faiss.IndexIVFPQFastScan):
        if fi.pq.nbits != 4 or fi.bbs != 32:
            raise ValueError(f"IndexIVFPQFastScan with nbits={fi.pq.nbits}, bbs={fi.bbs}: only 4 / "
                             f"32 are reproduced")
        metric = our_metric(faiss, fi.metric_type)
        upt = fi.use_precomputed_table
        if fi.by_residual and metric == "l2" and fi.is_trained and upt not in (1, -1):
            raise ValueError(f"IndexIVFPQFastScan by_residual with use_precomputed_table={upt}: only "
                             f"1 (faiss's choice below 2 GiB) and -1 are reproduced")
        out = IVFPQFastScanIndex(fi.d, fi.nlist, fi.pq.M, metric=metric, allow_small=True,
                                 by_residual=bool(fi.by_residual), precomputed=upt != -1)
        if not fi.is_trained:
            return out
        q = faiss.downcast_index(fi.quantizer)
        if not isinstance(q, faiss.IndexFlat):
            raise ValueError(f"coarse quantizer {type(q).__name__}: only IndexFlat is supported")
        centroids = q.reconstruct_n(0, fi.nlist)
        codebooks = faiss.vector_to_array(fi.pq.centroids).reshape(fi.pq.M, 16, -1)
        out.ivf.set_quantizers(centroids, centroids, codebooks)
        codes, ids, offsets = [], [], [0]
        inv = fi.invlists
        for l in range(fi.nlist):
            n = inv.list_size(l)
            lids = faiss.rev_swig_ptr(inv.get_ids(l), n).copy() if n else np.empty(0, np.int64)
            nb = -(-n // 32)
            raw = faiss.rev_swig_ptr(inv.get_codes(l), nb * out.M2 // 2 * 32).copy() if n else \
                np.empty(0, np.uint8)
            sub = packing.unpack_codes(raw.reshape(nb, -1), n, fi.pq.M) if n else \
                np.empty((0, fi.pq.M), np.uint8)
            codes.append(packing.join_nibbles(sub))
            ids.append(lids)
            offsets.append(offsets[-1] + n)
        out.ivf.set_lists(np.concatenate(codes), np.concatenate(ids), np.array(offsets, np.int64))
        out.repack()
        return out
    raise TypeError(f"fastscan_from_faiss takes IndexPQFastScan or IndexIVFPQFastScan, got "
                    f"{type(fi).__name__}")
