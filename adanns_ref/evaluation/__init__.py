"""Layer 8: evaluation. `metrics` (top-1, mAP@k, recall@k, k-recall@N), `select` (Pareto fronts,
best configuration under a budget) and `sweeps` (hnsw_rows, adannsopq_sweep: a family over a
grid of parameters, with timing)."""
from .metrics import knn_recall, map_at_k, recall_at_k, top1_accuracy
from .select import best_under_budget, pareto_front, select_on_validation
from .sweeps import adannsopq_sweep, hnsw_rows

__all__ = ["adannsopq_sweep", "best_under_budget", "hnsw_rows", "knn_recall", "map_at_k",
           "pareto_front", "recall_at_k", "select_on_validation", "top1_accuracy"]
