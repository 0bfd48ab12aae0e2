"""usearch (pip install usearch) as a target: exact search (`usearch.index.search(...,
exact=True)`) and HNSW (`Index(connectivity=M, expansion_add=efC, expansion_search=ef)`) for the
scalar kinds f32, f16, i8 and b1 (Hamming over packed codes).

Distances are converted to faiss's: "l2sq" is squared L2 already; "ip" returns 1 - <q, x>.
Expected: f32 flat equal up to ties; f16 and i8 (lossy storage) only in recall; b1 Hamming flat
identical up to ties; HNSW only in recall (its own graph; usearch seeds no level generator
from the caller, so `seed` is not passed).
"""
import numpy as np

from ..target import Target


class UsearchF32(Target):
    name = "usearch f32"
    library = "usearch"
    imports = "from usearch.index import Index, search as exact_search\n"
    dtype = "f32"
    metrics = ("l2", "ip")
    claims = {"flat l2 k=10": "ties", "flat ip k=10": "ties", "hnsw M=16 efC=40 ef=64": "recall",
              "hnsw M=4 efC=16 ef=10": "recall"}
    _METRIC = {"l2": "l2sq", "ip": "ip", "hamming": "hamming"}

    def build_flat(self, xb, metric):
        self.xb, self.metric, self.index = xb, metric, None

    def build_hnsw(self, xb, M, ef_construction, seed):
        from usearch.index import Index
        self.metric = "l2"
        self.index = Index(ndim=xb.shape[1] * (8 if self.dtype == "b1" else 1), metric=self._METRIC["l2"],
                           dtype=self.dtype, connectivity=M, expansion_add=ef_construction)
        self.index.add(np.arange(len(xb)), xb, threads=1)

    def search(self, q, k, ef=None):
        from usearch.index import search as exact_search
        if self.index is None:
            m = exact_search(self._stored(self.xb), self._stored(q), k, self._METRIC[self.metric], exact=True, threads=1)
        else:
            self.index.expansion_search = ef
            m = self.index.search(q, k, threads=1)
        D, I = np.asarray(m.distances, np.float32), np.asarray(m.keys).astype(np.int64)
        I[I >= np.iinfo(np.int64).max // 2] = -1
        return (np.float32(1) - D if self.metric == "ip" else D), I

    def _stored(self, x):
        return x

    def snippet(self, method, **p):
        metric = self._METRIC.get(p.get("metric", "l2"))
        if method == "build_flat":
            return f"metric = {metric!r}\nbase = xb\n"
        if method == "build_hnsw":
            return (f"index = Index(ndim=xb.shape[1], metric='l2sq', dtype={self.dtype!r}, connectivity={p['M']}, "
                    f"expansion_add={p['ef_construction']})\nindex.add(np.arange(len(xb)), xb, threads=1)\n")
        if method == "search":
            if p.get("ef"):
                return (f"index.expansion_search = {p['ef']}\nm = index.search({p['q']}, {p['k']}, threads=1)\n"
                        "I, D = m.keys[None], m.distances[None]\n")
            return (f"m = exact_search(base, {p['q']}, {p['k']}, metric, exact=True, threads=1)\n"
                    "I, D = m.keys, m.distances\n")
        return None


class UsearchF16(UsearchF32):
    name = "usearch f16"
    dtype = "f16"
    metrics = ("l2",)
    claims = {"flat l2 k=10": "recall", "hnsw M=16 efC=40 ef=64": "recall",
              "hnsw M=4 efC=16 ef=10": "recall"}

    def _stored(self, x):  # exact_search has no storage kind: hand it the f16 values it would store
        return x.astype(np.float16)


class UsearchI8(UsearchF32):
    """usearch's i8 kind stores round-toward-zero(127 * x / ||x||) also for metric l2sq
    (measured on the seeded data: all 64,000 stored values equal np.trunc(127 * x / ||x||);
    rounding would differ at 30,070), so l2sq on i8 ranks by angle, not by L2; flat search runs on i8
    rows built the same way by an Index(dtype='i8') and read back."""
    name = "usearch i8"
    dtype = "i8"
    metrics = ("l2",)
    claims = {"flat l2 k=10": "recall", "hnsw M=16 efC=40 ef=64": "recall",
              "hnsw M=4 efC=16 ef=10": "recall"}

    def _stored(self, x):
        from usearch.index import Index
        index = Index(ndim=x.shape[1], metric="l2sq", dtype="i8")
        index.add(np.arange(len(x)), x, threads=1)
        return np.asarray(index.get(np.arange(len(x)), dtype="i8"), np.int8)


class UsearchB1(UsearchF32):
    name = "usearch b1"
    dtype = "b1"
    metrics = ("hamming",)
    claims = {"flat hamming k=10": "ties"}
    build_hnsw = Target.build_hnsw  # not overridden: the HNSW checks run on float vectors only
