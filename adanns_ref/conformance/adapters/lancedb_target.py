"""LanceDB (pip install lancedb) as a target: an IVF_PQ or IVF_RQ (RaBitQ) index in a real
local database directory (a temporary directory), searched with every partition probed and
`refine_factor` (re-rank of refine_factor * k candidates with exact distances).

Checked through the flat capability: the results of the index against exact search. Expected
only in recall (a quantized first pass); the distances are squared L2 ("l2") as in faiss.
"""
import tempfile

import numpy as np

from ..target import Target


class LanceIVFPQ(Target):
    name = "lancedb IVF_PQ refine_factor=10"
    library = "lancedb"
    imports = "import tempfile\nimport lancedb\nimport pyarrow as pa\n"
    index_type = "IVF_PQ"
    metrics = ("l2",)
    partitions, refine = 8, 10
    claims = {"flat l2 k=10": "recall"}

    def build_flat(self, xb, metric):
        import lancedb
        import pyarrow as pa
        self.tmp = tempfile.TemporaryDirectory(prefix="adanns-lancedb-")
        db = lancedb.connect(self.tmp.name)
        d = xb.shape[1]
        vectors = pa.FixedSizeListArray.from_arrays(pa.array(xb.reshape(-1), pa.float32()), d)
        table = db.create_table("t", pa.table({"id": pa.array(np.arange(len(xb)), pa.int64()), "vector": vectors}))
        extra = {"num_sub_vectors": d // 4} if self.index_type == "IVF_PQ" else {}
        table.create_index(metric="l2", num_partitions=self.partitions, index_type=self.index_type, **extra)
        self.table = table

    def search(self, q, k, ef=None):
        D = np.full((len(q), k), np.inf, np.float32)
        I = np.full((len(q), k), -1, np.int64)
        for i, row in enumerate(q):
            query = self.table.search(row).distance_type("l2").nprobes(self.partitions)
            if self.refine:
                query = query.refine_factor(self.refine)
            res = query.limit(k).to_arrow()
            n = res.num_rows
            I[i, :n] = res["id"].to_numpy()
            D[i, :n] = res["_distance"].to_numpy()
        return D, I

    def snippet(self, method, **p):
        if method == "build_flat":
            extra = ", num_sub_vectors=xb.shape[1] // 4" if self.index_type == "IVF_PQ" else ""
            return ("db = lancedb.connect(tempfile.mkdtemp())\n"
                    "vectors = pa.FixedSizeListArray.from_arrays(pa.array(xb.reshape(-1), pa.float32()), xb.shape[1])\n"
                    "table = db.create_table('t', pa.table({'id': pa.array(np.arange(len(xb)), pa.int64()), 'vector': vectors}))\n"
                    f"table.create_index(metric='l2', num_partitions={self.partitions}, index_type={self.index_type!r}{extra})\n")
        if method == "search":
            refine = f".refine_factor({self.refine})" if self.refine else ""
            return (f"res = table.search({p['q']}[0]).distance_type('l2').nprobes({self.partitions})"
                    f"{refine}.limit({p['k']}).to_arrow()\n"
                    "I, D = res['id'].to_numpy()[None], res['_distance'].to_numpy()[None]\n")
        return None


class LanceRaBitQ(LanceIVFPQ):
    name = "lancedb IVF_RQ (RaBitQ) refine_factor=10"
    index_type = "IVF_RQ"


class LanceIVFPQNoRefine(LanceIVFPQ):
    """The same index without refine_factor: the ranking of the quantized distances."""
    name = "lancedb IVF_PQ, no refine"
    refine = None
    claims = {}  # no oracle for its quantized distances: the report states the recall


class LanceRaBitQNoRefine(LanceIVFPQ):
    name = "lancedb IVF_RQ (RaBitQ), no refine"
    index_type = "IVF_RQ"
    refine = None
    claims = {}
