"""HNSW: faiss 1.15.1's `IndexHNSWFlat` graph and search, and AdANNS-HNSW (walk at d_c,
re-score at d_s). `index` holds `HNSWIndex`; `kernels` the numba greedy descent, layer search,
neighbour heuristic and link update; `heaps` faiss's three heaps with their tie rules."""
from .index import HNSWIndex, level_probabilities, pruned_size

__all__ = ["HNSWIndex", "level_probabilities", "pruned_size"]
