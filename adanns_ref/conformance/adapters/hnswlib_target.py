"""hnswlib (pip install hnswlib) as a target: HNSW search at the same M / efConstruction / ef,
its levels (read from the index state), and brute-force flat search (hnswlib.BFIndex).

Expected: flat search equal up to ties (BFIndex scans every point; distances are sq-L2, and
1 - <q, x> for "ip", converted here); HNSW only in recall (its own graph construction) and its
levels only in distribution: hnswlib draws level = floor(-ln U * 1 / ln M) from its own
std::default_random_engine seeded with `random_seed`, faiss from mt19937 with a probability
table, so the same seed gives other levels but the same law.
"""
import numpy as np

from ..target import Target


class HnswlibTarget(Target):
    name = "hnswlib"
    library = "hnswlib"
    imports = "import hnswlib\n"
    claims = {"flat l2 k=10": "ties", "flat ip k=10": "ties", "hnsw M=16 efC=40 ef=64": "recall",
              "hnsw M=4 efC=16 ef=10": "recall", "hnsw levels M=16": "recall", "hnsw levels M=4": "recall"}
    documented = {f"hnsw levels M={M}": "hnswlib's `random_seed` seeds its own generator "
                  "(hnswalg.h: std::default_random_engine, level = floor(-ln U * mult)): levels "
                  "follow the same law as faiss's but are other draws." for M in (4, 16)}

    def build_flat(self, xb, metric):
        import hnswlib
        self.metric = metric
        self.index = hnswlib.BFIndex(space=metric, dim=xb.shape[1])
        self.index.init_index(max_elements=len(xb))
        self.index.add_items(xb, np.arange(len(xb)))

    def build_hnsw(self, xb, M, ef_construction, seed):
        import hnswlib
        self.metric = "l2"
        self.index = hnswlib.Index(space="l2", dim=xb.shape[1])
        self.index.init_index(max_elements=len(xb), M=M, ef_construction=ef_construction, random_seed=seed)
        self.index.set_num_threads(1)
        self.index.add_items(xb, np.arange(len(xb)))

    def search(self, q, k, ef=None):
        if ef is not None:
            self.index.set_ef(ef)
        I, D = self.index.knn_query(q, k=k)
        D = D.astype(np.float32)
        return (np.float32(1) - D if self.metric == "ip" else D), I.astype(np.int64)

    def levels(self):
        state = self.index.__getstate__()[0]  # hnswlib's pickle state: ({..., "element_levels"},)
        return np.asarray(state["element_levels"], np.int64)

    def snippet(self, method, **p):
        if method == "build_flat":
            return (f"index = hnswlib.BFIndex(space={p['metric']!r}, dim=xb.shape[1])\n"
                    "index.init_index(max_elements=len(xb))\nindex.add_items(xb, np.arange(len(xb)))\n")
        if method == "build_hnsw":
            return ("index = hnswlib.Index(space='l2', dim=xb.shape[1])\n"
                    f"index.init_index(max_elements=len(xb), M={p['M']}, ef_construction={p['ef_construction']}, "
                    f"random_seed={p['seed']})\nindex.set_num_threads(1)\nindex.add_items(xb, np.arange(len(xb)))\n")
        if method == "search":
            ef = f"index.set_ef({p['ef']})\n" if p.get("ef") else ""
            return ef + f"I, D = index.knn_query({p['q']}, k={p['k']})\n"
        if method == "levels":
            return "levels = np.asarray(index.__getstate__()[0]['element_levels'])\n"
        return None
