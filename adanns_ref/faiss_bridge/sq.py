"""faiss bridge for `SQIndex`: [prefix chain] IndexScalarQuantizer(prefix_dim, QT_*), both ways.

Nothing is re-encoded or retrained: faiss gets our `trained` ranges and codes byte for byte
(``add_sa_codes``), and reading back copies faiss's. faiss's other qtypes (6bit, 8bit_direct,
TurboQuant, EDEN, ...) have no counterpart here (ValueError).
"""
from ..indices.sqindex import SQIndex
from ..quantizers.binary import as_codes
from ..quantizers.sq import QTYPES, RANGESTATS
from .common import faiss_metric, our_metric, prefix_transforms, pretransform, read_chain, require_trained


def _qt(faiss, qtype):
    return getattr(faiss.ScalarQuantizer, "QT_" + qtype)


def sq_to_faiss(faiss, index):
    """The faiss object for a trained SQIndex."""
    require_trained(index.is_trained, index)
    sq = index.sq
    fi = faiss.IndexScalarQuantizer(index.dim, _qt(faiss, sq.qtype), faiss_metric(faiss, index.metric))
    fi.sq.rangestat = getattr(faiss.ScalarQuantizer, "RS_" + sq.rangestat)
    fi.sq.rangestat_arg = float(sq.rangestat_arg)
    faiss.copy_array_to_vector(sq.trained, fi.sq.trained)
    fi.is_trained = True
    if index.ntotal:
        fi.add_sa_codes(index.codes)
    return pretransform(faiss, prefix_transforms(faiss, index.d, index.dim, index.normalize), fi)


def sq_from_faiss(faiss, outer):
    """SQIndex from a (prefix-chained) faiss IndexScalarQuantizer."""
    D, normalize, opq, inner = read_chain(faiss, outer)
    if opq is not None:
        raise ValueError("an IndexScalarQuantizer behind a rotation has no adanns_ref counterpart")
    names = {int(_qt(faiss, q)): q for q in QTYPES}
    if int(inner.sq.qtype) not in names:
        raise ValueError(f"faiss ScalarQuantizer qtype {inner.sq.qtype} has no adanns_ref counterpart; "
                         f"supported: {', '.join('QT_' + q for q in QTYPES)}")
    stats = {int(getattr(faiss.ScalarQuantizer, "RS_" + r)): r for r in RANGESTATS}
    if int(inner.sq.rangestat) not in stats:
        raise ValueError(f"faiss rangestat {inner.sq.rangestat} has no adanns_ref counterpart")
    index = SQIndex(D, names[int(inner.sq.qtype)], our_metric(faiss, inner.metric_type),
                    stats[int(inner.sq.rangestat)], float(inner.sq.rangestat_arg), prefix_dim=inner.d,
                    normalize=normalize)
    trained = faiss.vector_to_array(inner.sq.trained)
    if inner.is_trained and trained.size:
        index.sq.set_trained(trained)
    codes = faiss.vector_to_array(inner.codes).reshape(inner.ntotal, inner.code_size)
    index.codes = as_codes(codes, "faiss codes", index.sq.code_size)
    return index
