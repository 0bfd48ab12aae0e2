"""faiss bridge for `FlatIndex`: IndexFlatL2 / IndexFlatIP(d) holding our vectors, both ways."""
from ..indices.flat import FlatIndex
from .common import flat_index, our_metric


def flat_to_faiss(faiss, index):
    """faiss IndexFlatL2/IP holding the vectors of a FlatIndex."""
    return flat_index(faiss, index.xb, index.metric)


def flat_from_faiss(faiss, inner, outer):
    """FlatIndex from a faiss IndexFlat (not behind transforms: it has no prefix chain)."""
    from faiss.contrib.inspect_tools import get_flat_data
    if inner is not outer:
        raise ValueError("a FlatIndex has no transforms; read the inner index "
                         "(faiss.downcast_index(index.index)) and pass prefix(q, d) queries")
    flat = FlatIndex(inner.d, our_metric(faiss, inner.metric_type))
    flat.add(get_flat_data(inner))
    return flat
