"""adanns_ref: a readable, faiss-identical reference implementation of AdANNS.

Every index follows faiss's verbs (train / add / search -> (D, I)) and conventions
(squared-L2 float32 distances, int64 ids, ties to the smaller id, -1 / FLT_MAX padding).

The package is layered bottom-up; a module imports only from its own layer or lower ones
(tests/test_layers.py checks it): 0 `core`, 1 `io`, 2 `distributed`, 3 `search`,
4 `quantizers`, 5 `indices` (and `rabitq`, `fastscan`), 6 `funnel` (and `panorama`),
7 `faiss_bridge`, 8 `evaluation` and `testing`, 9 `golden`, `conformance`, `tune`.
This module exports the names a user needs; everything else is imported from its subpackage.
"""
import warnings

from .core.truncate import prefix
from .faiss_bridge import faiss_search, from_faiss, to_faiss
from .funnel import FunnelIndex, funnel_search, mixed_funnel_search, rerank
from .indices import (BinaryFlatIndex, BinaryIVFIndex, FlatIndex, HNSWIndex, IVFIndex, IVFPQIndex, PQIndex,
                      SQIndex)
from .io import load_vectors
from .panorama import PanoramaFlatIndex, PanoramaIVFIndex, PanoramaRefineIndex
from .quantizers import OPQ, KMeans, ProductQuantizer, ScalarQuantizer, SmallTrainingSetWarning, binarize
from .search import knn_search

__version__ = "0.1.0"

from .fastscan import IVFPQFastScanIndex, PQFastScanIndex
from .rabitq import IVFRaBitQIndex, RaBitQIndex

__all__ = ["BinaryFlatIndex", "BinaryIVFIndex", "FlatIndex", "FunnelIndex", "HNSWIndex", "IVFIndex",
           "IVFPQFastScanIndex", "IVFRaBitQIndex", "IVFPQIndex", "KMeans", "OPQ", "PQFastScanIndex", "PQIndex",
           "PanoramaFlatIndex", "PanoramaIVFIndex", "PanoramaRefineIndex", "ProductQuantizer", "RaBitQIndex",
           "SQIndex", "ScalarQuantizer",
           "SmallTrainingSetWarning", "binarize", "faiss_search", "from_faiss", "funnel_search",
           "knn_search", "load_vectors", "mixed_funnel_search", "prefix", "rerank", "to_faiss"]

# Names that left the top level in 0.2, with their public home. ``adanns_ref.<name>`` still
# works, with one DeprecationWarning per name, until 0.3 removes this table and `__getattr__`.
# This is the one module-level __getattr__ in the package (tests/test_layers.py allows exactly
# this one): PEP 562 is the standard way to deprecate a module attribute, it forwards only to
# public paths of lower layers, and it hides no import cycle (this module is the top layer).
MOVED = {"quantize_embeddings": "adanns_ref.quantizers.binary",
         "knn_recall": "adanns_ref.evaluation.metrics", "map_at_k": "adanns_ref.evaluation.metrics",
         "recall_at_k": "adanns_ref.evaluation.metrics", "top1_accuracy": "adanns_ref.evaluation.metrics",
         "adannsopq_sweep": "adanns_ref.evaluation.sweeps",
         "best_under_budget": "adanns_ref.evaluation.select", "pareto_front": "adanns_ref.evaluation.select"}
_warned = set()


def __getattr__(name):
    """``adanns_ref.<name>`` for a name in MOVED: the object, and a DeprecationWarning (once)."""
    if name not in MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib
    if name not in _warned:
        _warned.add(name)
        warnings.warn(f"adanns_ref.{name} moved to {MOVED[name]}.{name}; the top-level name goes "
                      f"in adanns_ref 0.3", DeprecationWarning, stacklevel=2)
    return getattr(importlib.import_module(MOVED[name]), name)
