"""4-bit PQ fast-scan, faiss 1.15's ``IndexPQFastScan`` / ``IndexIVFPQFastScan`` exactly.

Modules: `lut` (table quantization), `packing` (bbs = 32 code layout), `scan` (exact uint16 /
int32 accumulation and faiss's result handlers), `pqfastscan`, `ivfpqfastscan` (the indices).
"""
from .ivfpqfastscan import IVFPQFastScanIndex
from .pqfastscan import PQFastScanIndex

__all__ = ["PQFastScanIndex", "IVFPQFastScanIndex"]
