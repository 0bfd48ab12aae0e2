"""The checks a `Target` is run through: one function per check family, each returning
`TargetResult` rows (verdict, deviation, reproducer). The oracle of each:

- flat: `FlatIndex` (faiss IndexFlatL2 / IP), `BinaryFlatIndex` (IndexBinaryFlat) for Hamming.
- hnsw search: `HNSWIndex` with the same M, efConstruction, ef and seed (faiss 1.15.1's graph);
  levels: faiss's level law P(l) = exp(-l / m_L)(1 - exp(-1 / m_L)), m_L = 1 / ln M. A target
  with another random generator can only be *equivalent in distribution*: every level count
  within 4 standard deviations (+2, for the sparse top levels) of n P(l).
- pq codes: `ProductQuantizer` encoding with the target's own codebooks (and rotation); ties are
  sub-vectors with two codewords at equal distance (relative 1e-6). pq search: ADC top-k of the
  target (its `pq_adc`, else its codebooks) vs our PQ trained with faiss's rules.
- quantize: sentence-transformers' documented rule (`reference_quantize`); ties are quotients
  within 1e-4 of a step boundary (int8 / uint8) and entries exactly 0 (binary).
- truncate: `truncate.prefix(x, d)` (L2-normalise at D, keep d, re-normalise) or x[:, :d].
- binarize: numpy.packbits(x > 0) per row; ties are entries exactly 0.
"""
from dataclasses import dataclass

import numpy as np

from ..core.truncate import prefix
from ..indices.binary import BinaryFlatIndex
from ..indices.flat import FlatIndex
from ..indices.hnsw import HNSWIndex, level_probabilities
from ..quantizers.binary import binarize
from ..quantizers.pq import ProductQuantizer
from . import target_data as td
from .target import capabilities, implements
from .verdicts import classify_codes, classify_floats, classify_knn, knn_recall

K = 10


@dataclass(frozen=True)
class TargetResult:
    """One check of one target: its verdict on the ladder, the deviation, a reproducer."""
    check: str
    capability: str
    verdict: str
    deviation: str
    reproducer: str = ""
    equivalent_in: str = "recall"  # what "equivalent only in ..." refers to for this check


def exact(xb, q, k, metric):
    if metric == "hamming":
        index = BinaryFlatIndex(xb.shape[1] * 8)
    else:
        index = FlatIndex(xb.shape[1], metric)
    index.add(xb)
    return index.search(q, k)


def _brute_force_source(metric):
    if metric == "ip":
        return "dist = -(xb @ q[0])                       # inner product, best first\n"
    if metric == "hamming":
        return "dist = np.unpackbits(xb ^ q[0], axis=1).sum(1)   # Hamming\n"
    return "dist = ((xb - q[0]) ** 2).sum(1)               # squared L2\n"


def _knn_repro(target, data, build, qi, k, search_params, metric, note=""):
    return td.script(
        target, data.code,
        _hamming_prep(metric),
        td.call_source(target, *build),
        f"q = xq[{qi}:{qi + 1}]\n",
        td.call_source(target, "search", q="q", k=k, **search_params),
        _brute_force_source(metric),
        f"ref = np.lexsort((np.arange(len(xb)), dist))[:{k}]      # ties: smaller id first\n",
        f"print('library  ids:', np.asarray(I)[0])\nprint('exact    ids:', ref)\n"
        f"print('exact  dists:', dist[ref])\n", note)


def _hamming_prep(metric):
    if metric != "hamming":
        return ""
    return ("xb = np.packbits(xb > 0, axis=1)              # codes: bit t = [x_t > 0], MSB first\n"
            "xq = np.packbits(xq > 0, axis=1)\n")


def check_flat(target, data):
    out = []
    for metric in target.metrics:
        xb, xq = (binarize(data.xb), binarize(data.xq)) if metric == "hamming" else (data.xb, data.xq)
        ref = exact(xb, xq, K, metric)
        target.build_flat(xb, metric)
        D, I = target.search(xq, K)
        got = (np.asarray(D, np.float32), np.asarray(I, np.int64))
        ref_f = (ref[0].astype(np.float32), ref[1])
        recall = knn_recall(xb, xq, got[1], ref[1], metric, per_query=True)
        verdict, dev, qi = classify_knn(ref_f, got, np.ones(len(xq)), recall)
        repro = "" if qi is None else _knn_repro(target, data, ("build_flat", {"xb": "xb", "metric": metric}),
                                                 qi, K, {}, metric)
        out.append(TargetResult(f"flat {metric} k={K}", "flat", verdict, dev, repro))
    return out


HNSW_SETTINGS = ((16, 40, 64), (4, 16, 10))  # (M, efConstruction, ef): easy, then hard


def check_hnsw(target, data):
    return [r for M, efc, ef in HNSW_SETTINGS for r in check_hnsw_at(target, data, M, efc, ef)]


def check_hnsw_at(target, data, M, ef_construction, ef, seed=12345):
    xb, xq = data.xb, data.xq
    oracle = HNSWIndex(xb.shape[1], M=M, ef_construction=ef_construction, seed=seed)
    oracle.add(xb)
    ref = oracle.search(xq, K, ef_search=ef)
    I_exact = exact(xb, xq, K, "l2")[1]
    target.build_hnsw(xb, M, ef_construction, seed)
    D, I = target.search(xq, K, ef)
    got = (np.asarray(D, np.float32), np.asarray(I, np.int64))
    r_ref, r_got = (knn_recall(xb, xq, I_, I_exact, "l2", per_query=True) for I_ in (ref[1], got[1]))
    verdict, dev, qi = classify_knn(ref, got, r_ref, r_got)
    r_ref, r_got = r_ref.mean(), r_got.mean()
    build = ("build_hnsw", {"xb": "xb", "M": M, "ef_construction": ef_construction, "seed": seed})
    note = (f"# adanns_ref.HNSWIndex (faiss 1.15.1's HNSW) at the same M, efConstruction, ef reaches "
            f"10-recall@10 {r_ref:.4f} on all {len(xq)} queries; this library {r_got:.4f}\n")
    repro = "" if qi is None else _knn_repro(target, data, build, qi, K, {"ef": ef}, "l2", note)
    name = f"hnsw M={M} efC={ef_construction} ef={ef}"
    out = [TargetResult(name, "hnsw", verdict, dev, repro)]
    if implements(target, "levels"):
        out.append(_check_levels(target, oracle, M, data, build))
    return out


def _check_levels(target, oracle, M, data, build):
    got, ref = np.asarray(target.levels(), np.int64), oracle.levels
    name = f"hnsw levels M={M}"
    if np.array_equal(got, ref):
        return TargetResult(name, "hnsw", "identical", "every level equal", equivalent_in="distribution")
    probas = level_probabilities(M)[0]
    n, top = len(ref), max(int(got.max()) + 1, len(probas))
    p = np.zeros(top)
    p[:len(probas)] = probas
    counts = np.bincount(got, minlength=top)
    expected = n * p
    z = np.abs(counts - expected) / np.sqrt(np.maximum(expected * (1 - p), 1e-12))
    ok = (np.abs(counts - expected) <= 4 * np.sqrt(expected * (1 - p)) + 2).all() and len(got) == n
    dev = (f"{int((got != ref).sum())} of {n} levels differ from faiss's draw; level counts "
           f"{counts.tolist()} vs expected {np.round(expected, 1).tolist()} (max z {z.max():.2f})")
    repro = td.script(target, data.code, td.call_source(target, *build), td.call_source(target, "levels"),
                      f"M = {M}\np = np.exp(-np.arange(8) / (1 / np.log(M))) * (1 - np.exp(-1 / (1 / np.log(M))))\n"
                      "print('level counts  :', np.bincount(levels))\n"
                      "print('expected n*p_l:', np.round(len(xb) * p[:levels.max() + 1], 1))\n")
    return TargetResult(name, "hnsw", "recall" if ok else "mismatch", dev, repro, "distribution")


def _adc(codebooks, R, q, codes):
    """(nq, n) float32 squared ADC distances ||q R - c(codes)||^2 summed per sub-space."""
    M, _, dsub = codebooks.shape
    qr = (q @ R if R is not None else q).astype(np.float32)
    out = np.zeros((len(q), len(codes)), np.float32)
    for m in range(M):
        table = ((qr[:, None, m * dsub:(m + 1) * dsub] - codebooks[m][None]) ** 2).sum(-1)
        out += table[:, codes[:, m]]
    return out


def check_pq(target, data, M=8, nbits=8):
    x, xq = data.xb, data.xq
    target.pq_train(x, M, nbits)
    codes = np.asarray(target.pq_encode(x), np.int64)
    I_exact = exact(x, xq, K, "l2")[1]
    oracle = ProductQuantizer(x.shape[1], M, nbits)
    oracle.train(x)
    ref = oracle.search(oracle.encode(x), xq, K)
    out = []
    has_books = implements(target, "pq_codebooks")
    books = np.asarray(target.pq_codebooks(), np.float32) if has_books else None
    R = np.asarray(target.pq_rotation(), np.float32) if implements(target, "pq_rotation") else None
    train = ("pq_train", {"x": "xb", "M": M, "nbits": nbits})
    if has_books:
        xr = np.ascontiguousarray(x @ R if R is not None else x, np.float32)
        mine = ProductQuantizer(x.shape[1], M, nbits)
        mine.set_codebooks(books)
        ref_codes = mine.unpack(mine.encode(xr)).astype(np.int64)
        dsub = x.shape[1] // M
        d2 = np.stack([((xr[:, None, m * dsub:(m + 1) * dsub] - books[m][None]) ** 2).sum(-1)
                       for m in range(M)], 1)                      # (n, M, ksub)
        best = np.take_along_axis(d2, ref_codes[..., None], -1)[..., 0]
        at_tie = np.take_along_axis(d2, codes[..., None], -1)[..., 0] <= best * (1 + 1e-6) + 1e-12
        recall_of = lambda c: knn_recall(x, xq, _top(_adc(books, R, xq, c)), I_exact, "l2")
        verdict, dev, row = classify_codes(ref_codes, codes, at_tie, recall_of)
        repro = "" if row is None else td.script(
            target, data.code, td.call_source(target, *train),
            td.call_source(target, "pq_encode", x="xb"), td.call_source(target, "pq_codebooks"),
            td.call_source(target, "pq_rotation") if R is not None else "R = np.eye(xb.shape[1], dtype=np.float32)\n",
            f"x = xb[{row}:{row + 1}] @ R\nM, ksub, dsub = codebooks.shape\n"
            "ref = [int(((x[0, m*dsub:(m+1)*dsub] - codebooks[m]) ** 2).sum(1).argmin()) for m in range(M)]\n"
            f"print('library codes:', np.asarray(codes)[{row}])\nprint('nearest      :', ref)\n")
        out.append(TargetResult(f"pq codes M={M} nbits={nbits}", "pq", verdict, dev, repro))
    if implements(target, "pq_adc") or has_books:
        adc = (np.asarray(target.pq_adc(xq, codes), np.float32) if implements(target, "pq_adc")
               else _adc(books, R, xq, codes))
        order = np.argsort(adc, axis=1, kind="stable")[:, :K]
        got = (np.take_along_axis(adc, order, 1), order.astype(np.int64))
        r_ref, r_got = (knn_recall(x, xq, I_, I_exact, "l2", per_query=True) for I_ in (ref[1], got[1]))
        verdict, dev, qi = classify_knn(ref, got, r_ref, r_got)
        r_ref, r_got = r_ref.mean(), r_got.mean()
        note = (f"# adanns_ref.ProductQuantizer (faiss's training) reaches 10-recall@10 {r_ref:.4f}; "
                f"this library {r_got:.4f}\n")
        repro = "" if qi is None else td.script(target, data.code, td.call_source(target, *train), note)
        out.append(TargetResult(f"pq search M={M} nbits={nbits}", "pq", verdict, dev, repro))
        if implements(target, "pq_adc") and has_books:
            recall_of = lambda a: knn_recall(x, xq, _top(a), I_exact, "l2")
            verdict, dev, qi = classify_floats(_adc(books, R, xq, codes), adc, recall_of)
            out.append(TargetResult(f"pq adc distances M={M}", "pq", verdict, dev, ""))
    return out


def _top(dist, k=K):
    return np.argsort(dist, axis=1, kind="stable")[:, :k].astype(np.int64)


def reference_quantize(x, precision, calibration=None):
    """sentence-transformers' rule: ranges [min, max] per dim of calibration (else x);
    step = (max - min) / 255 (1 where 0); uint8 = clip(floor((x - min) / step), 0, 255);
    int8 = uint8 - 128; ubinary = packbits(x > 0) per row; binary = ubinary - 128 (int8).
    Returns (codes, quotient (x - min) / step as float32 or None)."""
    if precision in ("binary", "ubinary"):
        ub = np.packbits(x > 0, axis=-1)
        return (ub if precision == "ubinary" else (ub.astype(np.int16) - 128).astype(np.int8)), None
    cal = x if calibration is None else calibration
    lo, hi = cal.min(axis=0), cal.max(axis=0)
    step = (hi - lo) / 255
    step = np.where(step == 0, 1, step)
    quot = (x - lo) / step
    u = np.clip(np.floor(quot), 0, 255)
    return (u.astype(np.uint8) if precision == "uint8" else (u - 128).astype(np.int8)), quot


def _as_bits(codes, precision):
    c = np.asarray(codes)
    return np.unpackbits((c.astype(np.int16) + 128).astype(np.uint8) if precision == "binary" else c.astype(np.uint8), axis=1)


def check_quantize(target, data):
    x, xq = data.xb, data.xq
    I_exact = exact(x, xq, K, "l2")[1]
    out = []
    for precision in target.precisions:
        cals = (None, "xb[:500]") if precision.endswith("int8") else (None,)
        for cal in cals:
            calibration = None if cal is None else x[:500]
            ref, quot = reference_quantize(x, precision, calibration)
            got = np.asarray(target.quantize(x, precision, calibration))
            if precision.endswith("binary"):
                at_tie = np.zeros((len(x), ref.shape[1] * 8), bool)
                at_tie[:, :x.shape[1]] = x == 0
                qcodes = np.packbits(xq > 0, axis=1)
                recall_of = lambda bits: knn_recall(x, xq, exact(np.packbits(bits, axis=1), qcodes, K, "hamming")[1], I_exact, "l2")
                ref_c, got_c = _as_bits(ref, precision), (_as_bits(got, precision) if got.ndim == 2 and got.shape == ref.shape else got)
                rule = "ref = np.packbits(x > 0, axis=-1)" + (" .astype(np.int16) - 128" if precision == "binary" else "")
            else:
                at_tie = np.abs(quot - np.round(quot)) < 1e-4
                cal_ = x if calibration is None else calibration
                lo, step = cal_.min(0), np.where(cal_.max(0) == cal_.min(0), 1, (cal_.max(0) - cal_.min(0)) / 255)
                shift = 128 if precision == "int8" else 0
                recall_of = lambda c: knn_recall(x, xq, exact(lo + (c.astype(np.float32) + shift + 0.5) * step, xq, K, "l2")[1], I_exact, "l2")
                ref_c, got_c = ref, got
            verdict, dev, row = classify_codes(ref_c, got_c, at_tie, recall_of)
            name = f"quantize {precision}" + ("" if precision.endswith("binary") else
                                              (" calibrated" if cal else " self-calibrated"))
            repro = "" if row is None else _quantize_repro(target, data, x, precision, calibration, row)
            out.append(TargetResult(name, "quantize", verdict, dev, repro))
    return out


def _quantize_repro(target, data, x, precision, calibration, row):
    if calibration is None and precision.endswith("int8"):
        cal_rows = np.stack([x.min(0), x.max(0)])      # the same per-dim ranges as all of x
        return td.script(target, td.literal("calibration", cal_rows), td.literal("x", x[row:row + 1]),
                         "# ranges from the data itself: these 2 rows hold its per-dim min and max\n"
                         "x2 = np.concatenate([calibration, x])\n",
                         td.call_source(target, "quantize", x="x2", precision=precision, calibration=None),
                         "got = np.asarray(got)[2:]\n", _quantize_ref_source(precision))
    cal_src = "" if calibration is None else td.literal("calibration", np.stack([calibration.min(0), calibration.max(0)]))
    return td.script(target, cal_src, td.literal("x", x[row:row + 1]),
                     td.call_source(target, "quantize", x="x", precision=precision,
                                    calibration="calibration" if calibration is not None else None),
                     _quantize_ref_source(precision))


def _quantize_ref_source(precision):
    if precision.endswith("binary"):
        ref = "ref = np.packbits(x > 0, axis=-1)\n"
        if precision == "binary":
            ref += "ref = (ref.astype(np.int16) - 128).astype(np.int8)\n"
    else:
        ref = ("lo, hi = calibration.min(0), calibration.max(0)\nstep = (hi - lo) / 255\n"
               "ref = np.clip(np.floor((x - lo) / step), 0, 255)\n"
               + ("ref = (ref - 128).astype(np.int8)\n" if precision == "int8" else "ref = ref.astype(np.uint8)\n"))
    return ref + "print('library:', np.asarray(got)[0])\nprint('rule   :', ref[0])\n" \
                 "print('differ at', np.flatnonzero(np.asarray(got)[0] != ref[0]))\n"


def check_truncate(target, data):
    x, xq = data.xb, data.xq
    D = x.shape[1]
    out = []
    for d in sorted({max(1, D // 4), max(1, D // 2)}):
        for normalize in (True, False):
            ref = prefix(x, d) if normalize else np.ascontiguousarray(x[:, :d])
            got = np.asarray(target.truncate(x, d, normalize), np.float32)
            metric = "ip" if normalize else "l2"
            q = prefix(xq, d) if normalize else np.ascontiguousarray(xq[:, :d])
            I_exact = exact(ref, q, K, metric)[1]
            recall_of = lambda y: knn_recall(ref, q, exact(np.ascontiguousarray(y, np.float32), q, K, metric)[1], I_exact, metric)
            verdict, dev, row = classify_floats(ref, got, recall_of)
            if normalize and got.shape == ref.shape:
                norms = np.linalg.norm(got.astype(np.float64), axis=1)
                dev += f"; row norms {norms.min():.6f}..{norms.max():.6f}"
            repro = "" if row is None else td.script(
                target, td.literal("x", x[row:row + 1]),
                td.call_source(target, "truncate", x="x", d=d, normalize=normalize),
                ("y = x / np.linalg.norm(x, axis=1, keepdims=True)\ny = y[:, :%d]\n"
                 "ref = y / np.linalg.norm(y, axis=1, keepdims=True)   # normalise at D, keep d, re-normalise\n" % d)
                if normalize else f"ref = x[:, :{d}]\n",
                "print('library:', np.asarray(got)[0])\nprint('rule   :', ref[0])\n"
                "print('norms  :', np.linalg.norm(np.asarray(got), axis=1), np.linalg.norm(ref, axis=1))\n")
            out.append(TargetResult(f"truncate d={d} normalize={normalize}", "truncate", verdict, dev, repro))
    return out


def check_binarize(target, data):
    x, xq = data.xb, data.xq
    ref = np.packbits(x > 0, axis=1)
    got = np.asarray(target.binarize(x))
    at_tie = np.zeros((len(x), ref.shape[1] * 8), bool)
    at_tie[:, :x.shape[1]] = x == 0
    I_exact = exact(x, xq, K, "l2")[1]
    qcodes = np.packbits(xq > 0, axis=1)
    recall_of = lambda bits: knn_recall(x, xq, exact(np.packbits(bits, axis=1), qcodes, K, "hamming")[1], I_exact, "l2")
    got_c = np.unpackbits(got.astype(np.uint8), axis=1) if got.shape == ref.shape else got
    verdict, dev, row = classify_codes(np.unpackbits(ref, axis=1), got_c, at_tie, recall_of)
    repro = "" if row is None else td.script(
        target, td.literal("x", x[row:row + 1]), td.call_source(target, "binarize", x="x"),
        "ref = np.packbits(x > 0, axis=1)                 # bit t = [x_t > 0], MSB first\n"
        "print('library bits:', np.unpackbits(np.asarray(got, np.uint8), axis=1)[0])\n"
        "print('rule bits   :', np.unpackbits(ref, axis=1)[0])\nprint('x           :', x[0])\n")
    return [TargetResult("binarize x > 0", "binarize", verdict, dev, repro)]


CHECKS = {"flat": check_flat, "hnsw": check_hnsw, "pq": check_pq, "quantize": check_quantize,
          "truncate": check_truncate, "binarize": check_binarize}


def run_checks(target, data):
    """Every check of every capability `target` implements, on `data` -> list of TargetResult."""
    results = []
    for cap in capabilities(target):
        results.extend(CHECKS[cap](target, data))
    return results
