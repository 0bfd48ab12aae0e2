"""Place a target's output on the verdict ladder against the oracle's.

Each `classify_*` returns (verdict, deviation text, first offending row or None):

- k-NN results (`classify_knn`): *identical* = same ids in the same order and distances within
  rtol 1e-5 (different summation orders round differently); *equal up to ties* =
  `testing.assert_knn_equal` passes (equal-distance ids as sets); *equivalent only in recall* =
  the target's tie-aware k-recall@k against exact search is at least the oracle's minus
  `RECALL_MARGIN` (2 pp) and two standard errors of the paired per-query difference
  (`recall_equivalent`); else *mismatch*.
- codes (`classify_codes`): *identical* = equal; *equal up to ties* = every differing entry sits
  on a tie of the rule (`at_tie` mask: a binarised value exactly 0, a quantization quotient
  within 1e-4 of a step boundary, equidistant codewords); *equivalent only in recall* = the
  recall the caller computes from the target's codes is at least the oracle codes' minus the
  margin; else *mismatch*.
- float arrays (`classify_floats`): *identical* = bit for bit; *equal up to ties* = within
  rtol 1e-5, atol 1e-6 (rounding); *equivalent only in recall*; *mismatch*.
"""
import numpy as np

from ..testing import assert_knn_equal

RECALL_MARGIN = 0.02  # absolute 10-recall@10 the target may lose against the oracle
RTOL, ATOL = 1e-5, 1e-6


def true_distances(xb, q, I, metric):
    """float64 distances of the returned ids (nan where I < 0)."""
    xb64, q64 = xb.astype(np.float64), q.astype(np.float64)
    safe = np.where(I < 0, 0, I)
    if metric == "hamming":
        diff = np.unpackbits(xb[safe] ^ q[:, None, :], axis=-1)
        d = diff.sum(-1).astype(np.float64)
    elif metric == "ip":
        d = np.einsum("qkd,qd->qk", xb64[safe], q64)
    else:
        d = ((xb64[safe] - q64[:, None, :]) ** 2).sum(-1)
    return np.where(I < 0, np.nan, d)


def knn_recall(xb, q, I, I_exact, metric, per_query=False):
    """Tie-aware k-recall@k: a returned id counts if its true distance is no worse than the
    exact k-th distance (so any member of a tie group at the cut counts). per_query: return
    the (nq,) recalls instead of their mean."""
    d_exact = true_distances(xb, q, I_exact, metric)
    d = true_distances(xb, q, I, metric)
    kth = d_exact[:, -1:]
    tol = 1e-6 * np.maximum(np.abs(kth), 1.0)
    good = (d >= kth - tol) if metric == "ip" else (d <= kth + tol)
    distinct = np.array([len(set(row[row >= 0])) == (row >= 0).sum() for row in I])
    hits = np.where(distinct[:, None], good & (I >= 0), False)
    rows = hits.sum(axis=1) / I_exact.shape[1]
    return rows if per_query else float(rows.mean())


def recall_equivalent(r_ref, r_got, margin=RECALL_MARGIN):
    """(equivalent?, mean target recall, mean oracle recall, allowed loss): per-query recalls
    (nq,) of the target and the oracle on the same queries; equivalent if the mean loss is at
    most margin + 2 standard errors of the paired per-query difference (so 100 queries of two
    different HNSW graphs are not called different by sampling noise alone)."""
    r_ref, r_got = np.atleast_1d(r_ref).astype(np.float64), np.atleast_1d(r_got).astype(np.float64)
    diff = r_got - r_ref
    se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else 0.0
    allowed = margin + 2 * se
    return bool(diff.mean() >= -allowed), float(r_got.mean()), float(r_ref.mean()), float(allowed)


def classify_knn(ref, got, recall_ref, recall_got, margin=RECALL_MARGIN):
    """(verdict, deviation, first query that differs) of k-NN results `got` vs `ref`;
    recall_ref / recall_got: per-query recalls (nq,) against exact search (or scalars)."""
    (D_ref, I_ref), (D, I) = ref, got
    equivalent, recall_got, recall_ref, allowed = recall_equivalent(recall_ref, recall_got, margin)
    if I.shape != I_ref.shape:
        return "mismatch", f"shape {I.shape}, expected {I_ref.shape}", 0
    differ = (I != I_ref).any(axis=1) | ~np.isclose(D, D_ref, RTOL, ATOL).all(axis=1)
    first = int(np.flatnonzero(differ)[0]) if differ.any() else None
    dev = (f"ids differ at {int((I != I_ref).sum())} of {I.size} positions ({int(differ.sum())} of "
           f"{len(I)} queries); max |dD| = {_maxabs(D, D_ref):.3g}; recall {recall_got:.4f} vs "
           f"oracle {recall_ref:.4f} (allowed loss {allowed:.4f})")
    if first is None:
        return "identical", f"max |dD| = {_maxabs(D, D_ref):.3g}", None
    try:
        assert_knn_equal(D_ref, I_ref, D, I, RTOL, ATOL)
        return "ties", dev, first
    except AssertionError:
        pass
    return ("recall" if equivalent else "mismatch"), dev, first


def classify_codes(ref, got, at_tie, recall_of, margin=RECALL_MARGIN):
    """Codes `got` vs `ref`; at_tie (same shape, bool): entries on a tie of the rule;
    recall_of(codes) -> float, the retrieval quality those codes give."""
    ref, got = np.asarray(ref), np.asarray(got)
    if ref.shape != got.shape:
        return "mismatch", f"shape {got.shape} {got.dtype}, expected {ref.shape} {ref.dtype}", 0
    bad = ref != got
    if not bad.any():
        return "identical", "all codes equal", None
    rows = bad.reshape(len(bad), -1).any(axis=1)
    first = int(np.flatnonzero(rows)[0])
    delta = np.abs(ref.astype(np.int64) - got.astype(np.int64))[bad]
    r_ref, r_got = recall_of(ref), recall_of(got)
    dev = (f"{int(bad.sum())} of {bad.size} entries differ ({int(rows.sum())} of {len(rows)} rows), "
           f"max |d| = {int(delta.max())}, {int((bad & at_tie).sum())} of them at ties; "
           f"recall {r_got:.4f} vs oracle {r_ref:.4f}")
    if not (bad & ~at_tie).any():
        return "ties", dev, first
    return ("recall" if r_got >= r_ref - margin else "mismatch"), dev, first


def classify_floats(ref, got, recall_of, margin=RECALL_MARGIN):
    """Float arrays `got` vs `ref`; recall_of(array) -> float as in classify_codes."""
    ref, got = np.asarray(ref), np.asarray(got)
    if ref.shape != got.shape:
        return "mismatch", f"shape {got.shape}, expected {ref.shape}", 0
    if np.array_equal(ref, got):
        return "identical", "bit for bit", None
    close = np.isclose(got, ref, RTOL, ATOL)
    rows = ~close.reshape(len(close), -1).all(axis=1)
    diff_rows = (ref != got).reshape(len(ref), -1).any(axis=1)
    first = int(np.flatnonzero(rows if rows.any() else diff_rows)[0])
    dev = f"max |d| = {_maxabs(got, ref):.3g}, {int((~close).sum())} of {close.size} beyond rtol {RTOL:g}"
    if close.all():
        return "ties", dev, first
    r_ref, r_got = recall_of(ref), recall_of(got)
    dev += f"; recall {r_got:.4f} vs oracle {r_ref:.4f}"
    return ("recall" if r_got >= r_ref - margin else "mismatch"), dev, first


def _maxabs(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    both = np.isfinite(a) & np.isfinite(b)
    return float(np.abs(a - b)[both].max()) if both.any() else 0.0
