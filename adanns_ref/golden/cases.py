"""The golden cases of `adanns_ref.golden`: deterministic inputs, one function per component.

Inputs are built from raw std::mt19937 draws (``core.mt19937.rand_uint32``: uniform values on a
2^-23 grid) with element-wise float64 +, * and rounding (correctly rounded in IEEE arithmetic)
and stable sorts, so they are the same bits on every machine and NumPy version. Each component
function maps (params, inputs) to a dict of outputs by calling the library (never a
re-implementation); `golden` uses the same function to generate a case and to re-check it.
`tolerance` gives each output its comparison rule: "exact" (ids, codes, list layout, counts) or
"close" (floating-point results).

Sizes are kept small (the committed set is about 350 KB) and below faiss's BLAS threshold
(n * d < 128000), so every case but the OPQ ones runs on the direct, fixed-order sums.
"""
import numpy as np

from ..core.mt19937 import rand_uint32
from ..evaluation import metrics
from ..funnel.funnel import funnel_search, mixed_funnel_search
from ..indices.binary import BinaryFlatIndex, BinaryIVFIndex
from ..indices.flat import FlatIndex
from ..indices.hnsw.index import HNSWIndex
from ..indices.ivf import IVFIndex
from ..indices.ivfpq import IVFPQIndex
from ..indices.pqindex import PQIndex
from ..indices.sqindex import SQIndex
from .families import RABITQ_CASES, run_fastscan, run_panorama, run_rabitq
from ..quantizers.binary import binarize
from ..quantizers.kmeans import KMeans
from ..quantizers.opq import OPQ
from ..quantizers.pq import ProductQuantizer

EXACT = {"compare": "exact"}
FLOAT = {"compare": "close", "rtol": 1e-5, "atol": 1e-6}  # float32 sums in another order (faiss's SIMD levels)
SCALAR = {"compare": "close", "rtol": 1e-12, "atol": 0.0}  # float64 means: only the summation order varies
VIA_LAPACK = {"compare": "close", "rtol": 1e-4, "atol": 1e-5}  # after GEMM + LAPACK (OPQ) on another BLAS


# --------------------------------------------------------------------- deterministic inputs

def _uniform(shape, seed):
    """float64 values in [-1, 1) on a 2^-23 grid, from raw mt19937 draws (exact everywhere)."""
    raw = rand_uint32(int(np.prod(shape)), seed).astype(np.uint64) >> np.uint64(8)
    return (raw.astype(np.float64) * 2.0 ** -23 - 1.0).reshape(shape)


def _ints(n, high, seed):
    return (rand_uint32(n, seed).astype(np.uint64) % np.uint64(high)).astype(np.int64)


def _blobs(n, d, n_blobs, seed, centre_seed):
    """n points round n_blobs centres (float32, (n, d)) and their blob labels (int64, (n,))."""
    labels = _ints(n, n_blobs, seed)
    x = _uniform((n_blobs, d), centre_seed)[labels] + 0.3 * _uniform((n, d), seed + 1)
    return x.astype(np.float32), labels


def _xb_xq(n, nq, d, n_blobs, seed):
    """Database and queries drawn round the same centres."""
    return {"xb": _blobs(n, d, n_blobs, seed, seed + 7)[0], "xq": _blobs(nq, d, n_blobs, seed + 3, seed + 7)[0]}


def _duplicates(n, d, n_distinct, seed):
    """n rows drawn from n_distinct vectors: k-means then has tied centroids and empty clusters."""
    return {"x": _uniform((n_distinct, d), seed).astype(np.float32)[_ints(n, n_distinct, seed + 1)]}


def _metric_inputs(nq, k, n_db, n_labels, seed):
    """Shortlists with missing results (-1); a rare label (3 database items, fewer than k, so
    standard mAP@k and the AdANNS one differ) and a query label no database item carries; exact
    and approximate distances with ties at the k-th place (for the tie-aware recall)."""
    shuffled = lambda s: np.argsort(_uniform((n_db,), s), kind="stable")[:k]
    I = np.stack([shuffled(seed + i) for i in range(nq)]).astype(np.int64)
    I[_ints(nq, nq, seed + 100)[:3], -2:] = -1
    rare = n_labels - 1
    db_labels = _ints(n_db, rare, seed + 101)
    db_labels[[5, 17, 40]] = rare
    q_labels = _ints(nq, n_labels + 1, seed + 102)
    q_labels[:2] = rare, n_labels  # n_labels: absent from the database
    I[0, :3] = 17, I[0, 0], 40  # query 0 finds two of the three rare items, at ranks 1 and 3
    D_exact = np.sort(np.round(_uniform((nq, k), seed + 103) * 4) / 4 + 2, axis=1)
    D_ann = np.sort(D_exact + np.abs(np.round(_uniform((nq, k), seed + 104) * 2) / 4), axis=1)
    I_exact = np.stack([shuffled(seed + 200 + i) for i in range(nq)])
    I_ann = np.where(_uniform((nq, k), seed + 105) < 0, I_exact, I[:, :k].clip(0))
    return {"I": I, "db_labels": db_labels, "q_labels": q_labels, "D_exact": D_exact.astype(np.float32),
            "D_ann": D_ann.astype(np.float32), "I_exact": I_exact.astype(np.int64),
            "I_ann": I_ann.astype(np.int64)}


# --------------------------------------------------------------------- components

def _run_kmeans(p, a):
    km = KMeans(**p["kmeans"]).fit(a["x"])
    D, I = km.assign(a["x"])
    return {"centroids": km.centroids, "obj": km.obj, "nsplit": km.nsplit,
            "n_iter": np.int64(km.n_iter_), "assign_D": D, "assign_I": I}


def _run_flat(p, a):
    index = FlatIndex(a["xb"].shape[1], p["metric"])
    index.add(a["xb"])
    D, I = index.search(a["xq"], p["k"])
    return {"D": D, "I": I}


def _run_ivf(p, a):
    index = IVFIndex(**p["index"])
    index.train(a["xb"])
    index.add(a["xb"])
    D, I = index.search(a["xq"], **p["search"])
    ids = [index.list_ids(l) for l in range(index.nlist)]
    return {"centroids": index.centroids, "list_sizes": index.list_sizes(),
            "list_ids": np.concatenate(ids), "D": D, "I": I,
            "flops": np.float64(index.last_search_flops)}


def _run_pq(p, a):
    pq = ProductQuantizer(**p["pq"]).train(a["xb"])
    codes = pq.encode(a["xb"])
    D, I = pq.search(codes, a["xq"], p["k"])
    return {"codebooks": pq.codebooks, "codes": codes, "decoded": pq.decode(codes[:8]),
            "tables": pq.distance_table(a["xq"][:1]), "D": D, "I": I}


def _run_opq(p, a):
    opq = OPQ(**p["opq"]).train(a["x"])
    return {"A": opq.A, "mse": np.array(opq.mse, dtype=np.float64)}


def _run_pqindex(p, a):
    index = PQIndex(**p["index"]).train(a["xb"])
    index.add(a["xb"])
    D, I = index.search(a["xq"], p["k"])
    out = {"codebooks": index.pq.codebooks, "codes": index.codes, "D": D, "I": I}
    if index.opq is not None:
        out["A"] = index.opq.A
    return out


def _run_ivfpq(p, a):
    index = IVFPQIndex(**p["index"])
    index.train(a["xb"])
    index.add(a["xb"])
    D, I = index.search(a["xq"], **p["search"])
    lists = range(index.nlist)
    out = {"centroids": index.centroids, "scoring_centroids": index.scoring_centroids,
           "codebooks": index.pq.codebooks, "list_sizes": index.list_sizes(),
           "list_ids": np.concatenate([index.list_ids(l) for l in lists]),
           "list_codes": np.concatenate([index.list_codes(l) for l in lists]), "D": D, "I": I}
    if index.opq is not None:
        out["A"] = index.opq.A
    return out


def _run_funnel(p, a):
    D, I, flops = funnel_search(a["xb"], a["xq"], p["stages"], p["metric"], p["normalize"])
    return {"D": D, "I": I, "flops": np.int64(flops)}


def _run_metrics(p, a):
    I, db, q = a["I"], a["db_labels"], a["q_labels"]
    out = {"top1": metrics.top1_accuracy(I, db, q)}
    for k in p["ks"]:
        out[f"hit_rate_at_{k}"] = metrics.hit_rate_at_k(I, db, q, k)
        out[f"precision_at_{k}"] = metrics.precision_at_k(I, db, q, k)
        for mode in ("standard", "adanns"):
            out[f"map_at_{k}_{mode}"] = metrics.map_at_k(I, db, q, k, mode)
            out[f"recall_at_{k}_{mode}"] = metrics.recall_at_k(I, db, q, k, mode)
    for k, n in p["recall_k_n"]:
        out[f"knn_recall_{k}_at_{n}"] = metrics.knn_recall(a["I_exact"], a["I_ann"], k, n)
        out[f"knn_recall_tie_aware_{k}_at_{n}"] = metrics.knn_recall_tie_aware(
            a["D_exact"], a["D_ann"], k, n)
    return {name: np.float64(v) for name, v in out.items()}


def _run_sq(p, a):
    index = SQIndex(**p["index"])
    index.train(a["xb"])
    index.add(a["xb"])
    D, I = index.search(a["xq"], p["k"])
    return {"trained": index.sq.trained, "codes": index.codes,
            "decoded": index.sq.decode(index.codes[:8]), "D": D, "I": I}


def _run_binary_flat(p, a):
    index = BinaryFlatIndex(p["d_bits"])
    index.add(binarize(a["xb"], p["d_bits"]))
    D, I = index.search(binarize(a["xq"], p["d_bits"]), p["k"])
    return {"codes": index.codes, "D": D, "I": I}


def _run_binary_ivf(p, a):
    index = BinaryIVFIndex(**p["index"])
    codes = binarize(a["xb"])
    index.train(codes)
    index.add(codes)
    D, I = index.search(binarize(a["xq"]), **p["search"])
    return {"centroids": index.centroids, "list_sizes": index.list_sizes(),
            "list_ids": np.concatenate([index.list_ids(l) for l in range(index.nlist)]), "D": D, "I": I}


def _run_mixed_funnel(p, a):
    D, I, cost = mixed_funnel_search(a["xb"], a["xq"], p["stages"], p["metric"], p["normalize"],
                                     p["oversample"])
    return {"D": D, "I": I, **{key: np.int64(cost[key]) for key in
                               ("bytes", "popcounts", "int8_ops", "float_ops")}}


def _run_hnsw(p, a):
    index = HNSWIndex(**p["index"])
    for part in np.split(a["xb"], np.cumsum(p["batches"])):
        index.add(part)
    D, I = index.search(a["xq"], **p["search"])
    levels, offsets, neighbors, entry_point, max_level = index.graph()
    return {"levels": levels.copy(), "entry_point": np.int64(entry_point),
            "max_level": np.int64(max_level), "offsets": offsets.copy(),
            "neighbors": neighbors.copy(), "D": D, "I": I, "ndis": index.last_search_ndis,
            "flops": np.float64(index.last_search_flops)}


COMPONENTS = {"panorama": run_panorama, "kmeans": _run_kmeans, "flat": _run_flat, "ivf": _run_ivf, "pq": _run_pq,
              "opq": _run_opq, "pqindex": _run_pqindex, "ivfpq": _run_ivfpq,
              "funnel": _run_funnel, "metrics": _run_metrics, "sq": _run_sq,
              "binary_flat": _run_binary_flat, "binary_ivf": _run_binary_ivf,
              "mixed_funnel": _run_mixed_funnel, "hnsw": _run_hnsw,
              "fastscan": run_fastscan, "rabitq": run_rabitq}


def tolerance(output, exact_path):
    """The comparison rule of one output array: ids, codes and counts exact; float64 results
    (metrics, mean FLOPs) of an exact-path case SCALAR; other floats FLOAT, or VIA_LAPACK when the
    case goes through GEMM/LAPACK."""
    if output.dtype.kind in "biu":
        return EXACT
    if not exact_path:
        return VIA_LAPACK
    return SCALAR if output.dtype == np.float64 else FLOAT


# --------------------------------------------------------------------- the cases

def _km(k, niter=25, seed=1234, max_points_per_centroid=256, nredo=1, spherical=False, metric="l2"):
    return {"k": k, "niter": niter, "seed": seed, "max_points_per_centroid": max_points_per_centroid,
            "nredo": nredo, "spherical": spherical, "init": "random", "early_stop": True,
            "metric": metric}


def _ivf(d, nlist, d_c, d_s, metric, normalize, k, nprobe, search_d_c=None, search_d_s=None):
    return {"index": {"d": d, "nlist": nlist, "d_c": d_c, "d_s": d_s, "metric": metric,
                      "normalize": normalize, "niter": 10, "seed": 1234,
                      "max_points_per_centroid": 256},
            "search": {"k": k, "nprobe": nprobe, "d_c": search_d_c, "d_s": search_d_s}}


def _pq(d, M, nbits, niter=25):
    return {"d": d, "M": M, "nbits": nbits, "seed": 1234, "niter": niter,
            "max_points_per_centroid": 256, "allow_small": True}


def _ivfpq(d, nlist, M, nbits, d_c, d_s, opq, normalize, k, nprobe):
    return {"index": {"d": d, "nlist": nlist, "M": M, "nbits": nbits, "d_c": d_c, "d_s": d_s,
                      "opq": opq, "by_residual": True, "metric": "l2", "normalize": normalize,
                      "niter": 10, "seed": 1234, "allow_small": True, "opq_niter": 3},
            "search": {"k": k, "nprobe": nprobe}}


def cases():
    """The golden cases in file order: dicts name, component, description, exact_path, params,
    inputs (name -> ndarray)."""
    c = []

    def add(name, component, description, params, inputs, exact_path=True):
        c.append({"name": name, "component": component, "description": description,
                  "exact_path": exact_path, "params": params, "inputs": inputs})

    add("kmeans_l2", "kmeans", "faiss Kmeans(d=8, k=10), 200 points in 12 blobs: centroids, "
        "objective per iteration, splits, final assignment", {"kmeans": _km(10)},
        {"x": _blobs(200, 8, 12, 11, 12)[0]})
    add("kmeans_empty_split", "kmeans", "40 rows copied from 5 distinct vectors, k=8: tied "
        "centroids leave clusters empty, which faiss splits (nsplit > 0)", {"kmeans": _km(8, niter=10)},
        _duplicates(40, 6, 5, 21))
    add("kmeans_subsample", "kmeans", "n=200 > k * max_points_per_centroid = 80: faiss's "
        "rand_perm subsample, odd d=5", {"kmeans": _km(4, niter=15, max_points_per_centroid=20)},
        {"x": _blobs(200, 5, 6, 31, 32)[0]})
    add("kmeans_spherical_nredo", "kmeans", "spherical k-means (inner product, unit centroids), "
        "nredo=2 keeps the best run (here the second); obj lists both runs", {"kmeans": _km(6, niter=12, nredo=2, spherical=True)},
        {"x": _blobs(150, 7, 8, 43, 44)[0]})
    add("flat_l2_padding", "flat", "exact L2 search, k=25 > N=20: ids -1 and +FLT_MAX distances",
        {"metric": "l2", "k": 25}, _xb_xq(20, 6, 7, 4, 51))
    add("flat_ip", "flat", "exact inner-product search (largest first)", {"metric": "ip", "k": 8},
        _xb_xq(60, 6, 12, 5, 56))
    add("ivf_flat_l2", "ivf", "rigid IVF = faiss IndexIVFFlat (d_c = d_s = D, normalize=False): "
        "coarse centroids, inverted lists, search", _ivf(16, 8, 16, 16, "l2", False, 10, 3),
        _xb_xq(200, 12, 16, 10, 61))
    add("ivf_adanns_dc8_ds16", "ivf", "AdANNS-IVF: clusters and routing at d_c=8, scoring at "
        "d_s=16 of D=24, re-normalised prefixes", _ivf(24, 8, 8, 16, "l2", True, 10, 2),
        _xb_xq(120, 10, 24, 10, 66))
    add("ivf_adanns_dc16_ds6", "ivf", "AdANNS-IVF with d_s < d_c (d_c=16, d_s=6 of D=24)",
        _ivf(24, 6, 16, 6, "l2", True, 10, 2), _xb_xq(120, 10, 24, 8, 71))
    add("ivf_adanns_d_query_time", "ivf", "AdANNS-IVF-D: built at d_c = d_s = D = 24, searched "
        "at d_c=8, d_s=12 without rebuilding", _ivf(24, 8, None, None, "l2", True, 10, 3, 8, 12),
        _xb_xq(120, 10, 24, 10, 76))
    add("ivf_ip_padding", "ivf", "inner-product IVF (spherical coarse k-means), nprobe=1, k=40 "
        "exceeds the probed list: -1 / -FLT_MAX padding", _ivf(16, 12, None, None, "ip", True, 40, 1),
        _xb_xq(160, 8, 16, 12, 81))
    add("pq_nbits8", "pq", "PQ(d=12, M=4, nbits=8), dsub=3, trained on xb: codebooks, codes, "
        "decode, ADC tables and ADC search", {"pq": _pq(12, 4, 8), "k": 10}, _xb_xq(320, 5, 12, 20, 93))
    add("pq_nbits4", "pq", "PQ(d=20, M=5, nbits=4), trained on xb: 20 bits LSB-first in "
        "3-byte codes", {"pq": _pq(20, 5, 4), "k": 10}, _xb_xq(160, 5, 20, 20, 98))
    add("opq_rotation", "opq", "OPQ(d=8, M=2), 4 outer iterations: rotation A and per-iteration "
        "PQ reconstruction MSE (GEMM and LAPACK: tolerance-checked)",
        {"opq": {"d": 8, "M": 2, "niter": 4, "niter_pq": 4, "niter_pq_0": 10,
                 "max_train_points": 65536, "seed": 1234, "allow_small": True}},
        {"x": _blobs(256, 8, 16, 101, 102)[0]}, exact_path=False)
    add("pqindex_adanns_opq", "pqindex", "AdANNS-OPQ: PQIndex with OPQ on the d=8 prefix of D=16, "
        "M=4 bytes (the rotation goes through GEMM and LAPACK: tolerance-checked)",
        {"index": {"d": 16, "M": 4, "nbits": 8, "opq": True, "prefix_dim": 8, "normalize": True,
                   "seed": 1234, "allow_small": True, "opq_niter": 3}, "k": 10},
        _xb_xq(256, 6, 16, 16, 106), exact_path=False)
    add("ivfpq_l2", "ivfpq", "IVFPQ = faiss IndexIVFPQ(D=8, nlist=6, M=4, nbits=8), by_residual, "
        "normalize=False: coarse centroids, codebooks, lists, codes, ADC search",
        _ivfpq(8, 6, 4, 8, 8, 8, False, False, 10, 2), _xb_xq(300, 8, 8, 12, 126))
    add("pq_fastscan_l2", "fastscan", "faiss IndexPQFastScan(d=12, M=6, 4 bits, bbs=32): packed "
        "codes, per-column quantized tables (a, b), exact uint16 sums; k=1, 5 (heap), 25 (reservoir)",
        {"index": {"d": 12, "M": 6, "metric": "l2", "allow_small": True}, "ks": [1, 5, 25],
         "search": {}}, _xb_xq(300, 6, 12, 10, 136))
    add("ivfpq_fastscan_ip", "fastscan", "faiss IndexIVFPQFastScan(d=8, nlist=4, M=4), IP, "
        "by_residual=False: 65535-bounded tables, lists in ascending number, nprobe=2",
        {"index": {"d": 8, "nlist": 4, "M": 4, "metric": "ip", "allow_small": True}, "ks": [1, 5],
         "search": {"nprobe": 2}}, _xb_xq(300, 6, 8, 8, 141))
    add("ivfpq_adanns_opq_nbits4", "ivfpq", "AdANNS-IVFOPQ: routing at d_c=4, OPQ + PQ(M=4, "
        "nbits=4) at d_s=8 of D=16, re-normalised prefixes (the rotation goes through GEMM and "
        "LAPACK: tolerance-checked)", _ivfpq(16, 6, 4, 4, 4, 8, True, True, 10, 3),
        _xb_xq(256, 8, 16, 12, 131), exact_path=False)
    add("funnel_l2", "funnel", "MRL funnel over re-normalised prefixes: dims 4, 8, 16, 32 with "
        "shortlists 40, 20, 10, 5", {"stages": [[4, 40], [8, 20], [16, 10], [32, 5]],
                                      "metric": "l2", "normalize": True}, _xb_xq(120, 8, 32, 12, 111))
    add("funnel_ip_adaptive", "funnel", "adaptive retrieval, inner product, plain truncation: "
        "shortlist 20 at d=8, re-rank at D=24", {"stages": [[8, 20], [24, 5]], "metric": "ip",
                                                 "normalize": False}, _xb_xq(120, 8, 24, 10, 116))
    add("hnsw_l2_three_adds", "hnsw", "HNSW = faiss 1.15.1 IndexHNSWFlat(d=8, M=4), efConstruction "
        "16, added as 1 + 40 + 159 points: levels, entry point, every neighbour list (faiss's "
        "layout), search k=10 ef_search=16 with ndis per query",
        {"index": {"d": 8, "M": 4, "ef_construction": 16}, "batches": [1, 40],
         "search": {"k": 10, "ef_search": 16}}, _xb_xq(200, 12, 8, 6, 141))
    add("hnsw_ip_duplicates_k_above_ef", "hnsw", "inner-product HNSW(d=6, M=3) over 150 rows drawn "
        "from 30 distinct vectors (ties everywhere), k=12 > ef_search=4 (the relative-distance stop)",
        {"index": {"d": 6, "M": 3, "ef_construction": 10, "metric": "ip"}, "batches": [],
         "search": {"k": 12, "ef_search": 4}},
        {"xb": _duplicates(150, 6, 30, 146)["x"], "xq": _blobs(8, 6, 4, 148, 149)[0]})
    add("hnsw_adanns_dc8_ds24", "hnsw", "AdANNS-HNSW: graph on the re-normalised d_c=8 prefix of "
        "D=24, walked at d_c, the ef_search=20 candidates re-scored at d_s=24",
        {"index": {"d": 24, "M": 4, "ef_construction": 16, "normalize": True, "d_c": 8, "d_s": 24},
         "batches": [], "search": {"k": 5, "ef_search": 20}}, _xb_xq(160, 10, 24, 8, 151))
    add("metrics", "metrics", "label metrics (standard and AdANNS compat: mAP divided by k, recall "
        "by 1300), k-recall@N and its tie-aware variant; -1 ids, a label with fewer than k database "
        "items and one with none",
        {"ks": [1, 5, 10], "recall_k_n": [[1, 1], [5, 5], [5, 10], [10, 10]]},
        _metric_inputs(24, 10, 80, 6, 121))
    add("sq_8bit_l2", "sq", "faiss IndexScalarQuantizer(d=16, QT_8bit), minmax ranges per "
        "dimension: trained [vmin, vdiff], codes, decode, L2 search (16-lane AVX-512 order)",
        {"index": {"d": 16, "qtype": "8bit", "metric": "l2", "rangestat": "minmax",
                   "rangestat_arg": 0.0, "prefix_dim": 16, "normalize": False}, "k": 10},
        _xb_xq(200, 8, 16, 10, 141))
    add("sq_4bit_uniform_ip_quantiles", "sq", "QT_4bit_uniform, RS_quantiles 0.02, inner "
        "product, d=20 (faiss's scalar kernel: d % 8 != 0)",
        {"index": {"d": 20, "qtype": "4bit_uniform", "metric": "ip", "rangestat": "quantiles",
                   "rangestat_arg": 0.02, "prefix_dim": 20, "normalize": False}, "k": 10},
        _xb_xq(200, 8, 20, 10, 146))
    add("sq_fp16_prefix", "sq", "QT_fp16 on the re-normalised d=16 prefix of D=24 (faiss's "
        "ties-away half rounding)",
        {"index": {"d": 24, "qtype": "fp16", "metric": "l2", "rangestat": "minmax",
                   "rangestat_arg": 0.0, "prefix_dim": 16, "normalize": True}, "k": 10},
        _xb_xq(150, 8, 24, 10, 151))
    add("binary_flat", "binary_flat", "faiss IndexBinaryFlat over sign bits of the 24-dim prefix "
        "(3-byte codes): Hamming distances, ties to the smaller id, k=30 cuts tie groups",
        {"d_bits": 24, "k": 30}, _xb_xq(200, 8, 32, 6, 156))
    add("binary_ivf", "binary_ivf", "faiss IndexBinaryIVF(64 bits, nlist=6): k-means on +-1 floats, "
        "binary centroids, lists, search with nprobe=2",
        {"index": {"d_bits": 64, "nlist": 6, "niter": 10, "seed": 1234, "max_points_per_centroid": 256},
         "search": {"k": 10, "nprobe": 2}}, _xb_xq(240, 8, 64, 8, 161))
    add("mixed_funnel", "mixed_funnel", "mixed-precision funnel binary@16 -> oversample 4 x 5, "
        "int8@24 -> 10, float@32 -> 5 over re-normalised prefixes; bytes and operations per query",
        {"stages": [[16, "binary", None], [24, "int8", 10], [32, "float", 5]], "metric": "l2",
         "normalize": True, "oversample": 4}, _xb_xq(160, 8, 32, 10, 166))
    add("panorama_flat_l2", "panorama", "faiss IndexFlatL2Panorama(d=13, n_levels=4, batch 16): "
        "levels 4+4+4+1, 50 rows (last batch partial), level-major codes, tail norms, search "
        "k=10, pruning counters", {"form": "flat", "index": {"d": 13, "n_levels": 4,
                                                            "batch_size": 16}, "search": {"k": 10}},
        _xb_xq(50, 8, 13, 5, 171))
    add("panorama_flat_ip_nesting", "panorama", "Panorama extension: inner product, levels at the "
        "Matryoshka sizes 2, 4, 8 of d=12, 60 rows from 15 distinct vectors (ties)",
        {"form": "flat", "index": {"d": 12, "nesting": [2, 4, 8], "metric": "ip", "batch_size": 32},
         "search": {"k": 8}},
        {"xb": _duplicates(60, 12, 15, 176)["x"], "xq": _blobs(6, 12, 4, 178, 179)[0]})
    add("panorama_ivf", "panorama", "faiss IndexIVFFlatPanorama(d=10, nlist=4, n_levels=3, batch "
        "8): levels 4+4+2, nprobe=2, k=20", {"form": "ivf", "index": {"d": 10, "nlist": 4,
                                                                       "n_levels": 3, "batch_size": 8},
                                             "search": {"k": 20, "nprobe": 2}},
        _xb_xq(120, 8, 10, 6, 181))
    add("panorama_refine", "panorama", "faiss IndexRefinePanorama over IndexFlatL2, refine "
        "IndexFlatL2Panorama(d=12, n_levels=3, batch 1), k_factor=4, k=5",
        {"form": "refine", "index": {"n_levels": 3, "metric": "l2", "k_factor": 4.0},
         "search": {"k": 5}}, _xb_xq(100, 8, 12, 6, 186))
    for name, description, params, d, seed in RABITQ_CASES:
        add(name, "rabitq", description, params, _xb_xq(300, 6, d, 10, seed))
    return c
