"""Exact (brute-force) search: faiss `IndexFlatL2` / `IndexFlatIP`.

The index stores N database vectors x_j (float32, d dims) in insertion order; id j is the
position of x_j. A search returns, for each query q, the k ids with the smallest

    l2:  ||q - x_j||^2      (float32, faiss's BLAS form, see `exact.exact_search`)
    ip:  <q, x_j>            (largest first)

Cost: d * N multiply-adds per query (`cost.exact_flops`), stored in `last_search_flops`.

faiss-identical: distances (to float32 rounding of the summation order), ids (ties: smaller id
first; for "ip" faiss orders equal similarities differently, see `exact`), padding with id -1 and
+FLT_MAX ("l2") / -FLT_MAX ("ip") when k > N, all -1 on an empty index. The index does not
normalise or truncate: pass `truncate.prefix(x, d)` vectors for Matryoshka search.
"""
import numpy as np

from ..core import cost
from ..core.persist import load_npz, save_npz
from ..core.validate import as_float32_matrix, as_int, as_k, check_metric
from ..search.exact import exact_search

_KIND, _VERSION = "FlatIndex", 1


class FlatIndex:
    """Brute-force k-NN index over d-dim float32 vectors (faiss `IndexFlatL2` / `IndexFlatIP`).

    Parameters
        d                   int >= 1: vector width
        metric              str, "l2" (squared distances) or "ip" (inner products)

    Attributes
        d                   int
        metric              str
        ntotal              int: stored vectors
        xb                  (ntotal, d) float32: read-only view of the stored vectors, id = row
        last_search_flops   int: FLOPs per query of the last search
    """

    def __init__(self, d, metric="l2"):
        self.d = as_int(d, "d", 1)
        self.metric = check_metric(metric)
        self._buf = np.empty((0, self.d), dtype=np.float32)  # capacity grows geometrically
        self.ntotal = 0
        self.last_search_flops = 0

    @property
    def xb(self):
        view = self._buf[:self.ntotal]
        view.flags.writeable = False
        return view

    def add(self, x):
        """Append the rows of x (n, d); they get ids ntotal .. ntotal + n - 1."""
        x = as_float32_matrix(x, "x", d=self.d)
        need = self.ntotal + x.shape[0]
        if need > self._buf.shape[0]:
            grown = np.empty((max(need, 2 * self._buf.shape[0]), self.d), dtype=np.float32)
            grown[:self.ntotal] = self._buf[:self.ntotal]
            self._buf = grown
        self._buf[self.ntotal:need] = x
        self.ntotal = need

    def search(self, q, k):
        """k nearest stored vectors of each query row -> (D float32 (nq, k), I int64 (nq, k))."""
        q = as_float32_matrix(q, "q", d=self.d)
        k = as_k(k, q.shape[0])
        D, I = exact_search(q, self._buf[:self.ntotal], k, self.metric)
        self.last_search_flops = cost.exact_flops(self.d, self.ntotal)
        return D, I

    def reset(self):
        """Remove all vectors (d and metric are kept)."""
        self._buf = np.empty((0, self.d), dtype=np.float32)
        self.ntotal = 0

    def save(self, path):
        """Write the index to a versioned .npz file (atomic)."""
        save_npz(path, _KIND, _VERSION, {"d": self.d, "metric": self.metric},
                 {"xb": self._buf[:self.ntotal]})

    @classmethod
    def load(cls, path):
        """Read an index written by `save`; a corrupt or foreign file raises ValueError."""
        params, arrays = load_npz(path, _KIND, _VERSION, {"xb": (np.float32, 2)})
        try:
            index = cls(params["d"], params["metric"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: invalid FlatIndex parameters {params!r} ({exc})") from exc
        index.add(as_float32_matrix(arrays["xb"], f"{path}: xb", d=index.d))
        return index

    def __repr__(self):
        return f"FlatIndex(d={self.d}, metric={self.metric!r}, ntotal={self.ntotal})"
