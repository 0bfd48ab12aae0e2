"""Layer 5: indices, each with its kernels beside it. `flat` (FlatIndex), `invlists` (the CSR
inverted lists IVF and IVFPQ share), `ivf` (IVF / AdANNS-IVF), `ivfpq` + `ivfpq_kernels`
(IVFPQ / AdANNS-IVFOPQ), `pqindex` (exhaustive (O)PQ), `sqindex` (SQIndex), `binary`
(BinaryFlatIndex, BinaryIVFIndex) and `hnsw/` (HNSWIndex, AdANNS-HNSW)."""
from .binary import BinaryFlatIndex, BinaryIVFIndex
from .flat import FlatIndex
from .hnsw import HNSWIndex
from .ivf import IVFIndex
from .ivfpq import IVFPQIndex
from .pqindex import PQIndex
from .sqindex import SQIndex

__all__ = ["BinaryFlatIndex", "BinaryIVFIndex", "FlatIndex", "HNSWIndex", "IVFIndex", "IVFPQIndex",
           "PQIndex", "SQIndex"]
