"""adanns_ref: a readable, faiss-identical reference implementation of AdANNS.

Every index follows faiss's verbs (train / add / search -> (D, I)) and conventions
(squared-L2 float32 distances, int64 ids, ties to the smaller id, -1 / FLT_MAX padding).
"""
from .truncate import prefix

__all__ = ["prefix"]
