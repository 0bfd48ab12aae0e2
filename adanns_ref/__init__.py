"""adanns_ref: a readable, faiss-identical reference implementation of AdANNS.

Every index follows faiss's verbs (train / add / search -> (D, I)) and conventions
(squared-L2 float32 distances, int64 ids, ties to the smaller id, -1 / FLT_MAX padding).
"""
from .binary import BinaryFlatIndex, BinaryIVFIndex, binarize, quantize_embeddings
from .exact import knn_search
from .faiss_bridge import to_faiss
from .faiss_read import from_faiss
from .fastscan import IVFPQFastScanIndex, PQFastScanIndex
from .flat import FlatIndex
from .funnel import funnel_search, mixed_funnel_search, rerank
from .funnel_index import FunnelIndex
from .hnsw import HNSWIndex
from .io import load_vectors
from .ivf import IVFIndex
from .ivfpq import IVFPQIndex
from .kmeans import KMeans
from .metrics import knn_recall, map_at_k, recall_at_k, top1_accuracy
from .opq import OPQ
from .pq import ProductQuantizer
from .pqindex import PQIndex, adannsopq_sweep
from .select import best_under_budget, pareto_front
from .sq import ScalarQuantizer
from .sqindex import SQIndex
from .truncate import prefix

__all__ = ["BinaryFlatIndex", "BinaryIVFIndex", "PQFastScanIndex", "IVFPQFastScanIndex", "FlatIndex", "FunnelIndex", "HNSWIndex", "IVFIndex",
           "IVFPQIndex", "KMeans", "OPQ", "PQIndex", "ProductQuantizer", "SQIndex",
           "ScalarQuantizer", "adannsopq_sweep", "best_under_budget", "binarize", "from_faiss",
           "funnel_search", "knn_recall", "knn_search", "load_vectors", "map_at_k",
           "mixed_funnel_search", "pareto_front", "prefix", "quantize_embeddings", "recall_at_k",
           "rerank", "to_faiss", "top1_accuracy"]
