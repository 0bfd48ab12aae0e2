"""Golden-case runners for the families added in 0.2 (Panorama, 4-bit fast-scan), beside
`cases.py`'s runners: each takes the case's parameters `p` and arrays `a` and returns the named
outputs the manifest records."""
import numpy as np

from ..fastscan import IVFPQFastScanIndex, PQFastScanIndex
from ..indices.flat import FlatIndex
from ..panorama import PanoramaFlatIndex, PanoramaIVFIndex, PanoramaRefineIndex


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
