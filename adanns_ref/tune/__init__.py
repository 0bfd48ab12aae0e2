"""`python -m adanns_ref.tune`: which Matryoshka prefix and which index to serve, under a budget.

faiss's AutoTune sweeps the search-time parameters of one index; here the embedding's dimension
is an axis too, and every configuration is timed on the faiss index it exports. Modules: `grid`
(the coarse search space), `refine` (the second pass around the front), `measure` (build once,
sweep, measure), `latency` (faiss timings), `choose` (budgets, on the validation queries;
reproducible), `report` (tune.md / tune.json / pareto.png), `data` (inputs, metric, ground
truth, PCA, output paths), `progress`, `run` (the driver, `--rechoose`), `cli`.
"""
from .run import BudgetError, export_faiss, load_inputs, rechoose, tune

__all__ = ["BudgetError", "export_faiss", "load_inputs", "rechoose", "tune"]
