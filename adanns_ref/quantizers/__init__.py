"""Layer 4: quantizers. `kmeans` (faiss's Clustering), `pq` (ProductQuantizer), `opq` (OPQMatrix
rotation), `sq` (ScalarQuantizer) and `binary` (sign codes, Hamming k-NN, sentence-transformers'
quantize_embeddings)."""
from .binary import binarize
from .kmeans import KMeans, SmallTrainingSetWarning
from .opq import OPQ
from .pq import ProductQuantizer
from .sq import ScalarQuantizer

__all__ = ["KMeans", "OPQ", "ProductQuantizer", "ScalarQuantizer", "SmallTrainingSetWarning", "binarize"]
