"""Golden-case runners for the families added in 0.2 (Panorama, 4-bit fast-scan, RaBitQ), beside
`cases.py`'s runners: each takes the case's parameters `p` and arrays `a` and returns the named
outputs the manifest records."""
import numpy as np

from ..fastscan import IVFPQFastScanIndex, PQFastScanIndex
from ..indices.flat import FlatIndex
from ..panorama import PanoramaFlatIndex, PanoramaIVFIndex, PanoramaRefineIndex
from ..rabitq import IVFRaBitQIndex, RaBitQIndex


def _panorama_out(index, D, I):
    s = index.last_search_stats
    return {"D": D, "I": I, "rows_per_level": s.rows_per_level,
            "stats": np.array([s.total_dims, s.total_dims_scanned], dtype=np.int64)}


def run_panorama(p, a):
    """Panorama flat / IVF / refine (faiss IndexFlatL2Panorama, IndexIVFFlatPanorama,
    IndexRefinePanorama): results, faiss's pruning counters, rows entering each level."""
    if p["form"] == "flat":
        index = PanoramaFlatIndex(**p["index"])
    elif p["form"] == "ivf":
        index = PanoramaIVFIndex(**p["index"])
        index.train(a["xb"])
    else:
        index = PanoramaRefineIndex(FlatIndex(a["xb"].shape[1], p["index"]["metric"]), **p["index"])
    index.add(a["xb"])
    out = _panorama_out(index, *index.search(a["xq"], **p["search"]))
    if p["form"] == "flat":
        out.update(level_codes=index.level_codes(), tail_norms=index.tail_norms())
    return out


def run_fastscan(p, a):
    ivf = "nlist" in p["index"]
    index = (IVFPQFastScanIndex if ivf else PQFastScanIndex)(**p["index"])
    index.train(a["xb"])
    index.add(a["xb"])
    Tq, scale, bias = index.quantized_tables(a["xq"])
    out = {"codes": index.codes, "Tq": Tq, "a": scale, "b": bias}
    for k in p["ks"]:
        D, I = index.search(a["xq"], k, **p["search"])
        out.update({f"D_k{k}": D, f"I_k{k}": I})
    return out


def run_rabitq(p, a):
    """RaBitQ flat / IVF (faiss IndexRaBitQ, "HR,RaBitQ", IndexIVFRaBitQ): centroid(s), code bytes
    (list order for IVF), and D / I per (qb, centered, k)."""
    ivf = "nlist" in p["index"]
    index = (IVFRaBitQIndex if ivf else RaBitQIndex)(**p["index"])
    index.train(a["xb"])
    index.add(a["xb"])
    out = {"codes": index.codes, "centroids": index.centroids if ivf else index.center[None]}
    if ivf:
        out["ids"] = index.ids
    for qb, centered, k in p["searches"]:
        D, I = index.search(a["xq"], k, qb=qb, centered=centered, **p["search"])
        out.update({f"D_qb{qb}{'c' if centered else ''}_k{k}": D, f"I_qb{qb}{'c' if centered else ''}_k{k}": I})
    return out


# (name, description, params, d, seed) of the RaBitQ golden cases (inputs: `cases._xb_xq`)
RABITQ_CASES = [
    ("rabitq_flat_l2_nb1", "faiss IndexRaBitQ(d=13, L2, nb_bits=1): centroid, sign bits + 2 factors "
     "per code, search with qb 0 / 4 / 8 centred, k=1, 10", {"index": {"d": 13, "metric": "l2", "nb_bits": 1},
     "search": {}, "searches": [[0, False, 1], [0, False, 10], [4, False, 10], [8, True, 10]]}, 13, 191),
    ("rabitq_hr_ip_nb4", "faiss \"HR,RaBitQ4\" (d=12 -> 16, IP, nb_bits=4): Hadamard rotation seed "
     "12345, ex-bit codes, two-stage search, k=5 and k=120 (faiss's reservoir)",
     {"index": {"d": 12, "metric": "ip", "nb_bits": 4, "hr_seed": 12345}, "search": {},
      "searches": [[0, False, 5], [4, True, 5], [8, False, 120]]}, 12, 196),
    ("ivf_rabitq_l2_nb3", "faiss IndexIVFRaBitQ(d=10, nlist=4, nb_bits=3), by residual: list "
     "centroids, codes in list order, nprobe=2", {"index": {"d": 10, "nlist": 4, "metric": "l2", "nb_bits": 3},
     "search": {"nprobe": 2}, "searches": [[0, False, 10], [4, True, 10]]}, 10, 201),
]
