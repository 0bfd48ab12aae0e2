"""adanns_ref: a readable, faiss-identical reference implementation of AdANNS.

Every index follows faiss's verbs (train / add / search -> (D, I)) and conventions
(squared-L2 float32 distances, int64 ids, ties to the smaller id, -1 / FLT_MAX padding).
"""
from .flat import FlatIndex
from .funnel import funnel_search, rerank
from .io import load_vectors
from .ivf import IVFIndex
from .kmeans import KMeans
from .metrics import knn_recall, map_at_k, recall_at_k, top1_accuracy
from .select import best_under_budget, pareto_front
from .topk import knn_search
from .truncate import prefix

__all__ = ["FlatIndex", "IVFIndex", "KMeans", "best_under_budget", "funnel_search", "knn_recall",
           "knn_search", "load_vectors", "map_at_k", "pareto_front", "prefix", "recall_at_k",
           "rerank", "top1_accuracy"]
