"""`python -m experiments.reproduce`: the MRL and AdANNS experiments on Fashion-MNIST.

One module per concern: `main` (presets, pipeline, CLI), `stage` (the cached stage runner),
`rows` (result rows with per-query evidence), `mrl` (training and experiments 1-3), `ann`
(experiments 4-6), `rules` (the verdict rules), `claims` (the declared claims), `evidence`
(how each claim reads its rows), `plots` (figures) and `report` (report.md).
"""
