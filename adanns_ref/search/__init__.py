"""Layer 3: exact search. `exact` (blocked BLAS / direct k-NN into the heaps), `assign`
(nearest centroids, IVF routing; k-means' Dask assignment step) and `knn` (`knn_search`, the
validated entry point, in process or fanned out over Dask and merged)."""
from .knn import knn_search

__all__ = ["knn_search"]
