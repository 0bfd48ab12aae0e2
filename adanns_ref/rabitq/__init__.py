"""RaBitQ, faiss 1.15.1's ``RaBitQuantizer`` / ``IndexRaBitQ`` exactly.

Modules: `kernels` (encoding: centroid, sign bits, factors, ex-bits), `scan` (query factors, the
1-bit and multi-bit estimates, the two-stage scan), `quantizer` (the maths, the code layout, the
faiss deviations), `hadamard` (faiss's ``HR`` pre-rotation), `index` (``RaBitQIndex``), `ivf` (``IVFRaBitQIndex``).
"""
from .hadamard import HadamardRotation
from .index import RaBitQIndex
from .ivf import IVFRaBitQIndex
from .quantizer import RaBitQuantizer

__all__ = ["HadamardRotation", "IVFRaBitQIndex", "RaBitQIndex", "RaBitQuantizer"]
