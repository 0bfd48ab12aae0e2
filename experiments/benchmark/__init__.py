"""`python -m experiments.benchmark`: speed against faiss, nanopq and PyTorch.

`main` (workload table, CLI), `ann` and `mrl` (the workloads), `measure` (paired timing),
`data` (synthetic and loaded data), `report` (the Markdown report).
"""
