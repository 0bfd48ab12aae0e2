"""`python -m adanns_ref.tune`: which Matryoshka prefix and which index to serve, under a budget.

faiss's AutoTune sweeps the search-time parameters of one index; here the embedding's dimension
is an axis too. Modules: `grid` (the search space), `measure` (build once, sweep, measure),
`choose` (budgets, on the validation queries), `report` (tune.md / tune.json / pareto.png),
`data` (inputs, ground truth), `run` (the driver), `cli`.
"""
from .run import export_faiss, load_inputs, tune

__all__ = ["export_faiss", "load_inputs", "tune"]
