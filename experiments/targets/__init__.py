"""Findings report: every built-in conformance target on fixed seeded data and on Fashion-MNIST
MRL embeddings, written to experiments/results_targets/report.md.

    python -m experiments.targets [--out DIR]

Libraries whose package is not installed are listed as skipped. See `main` for the data.
"""
