"""Comparison helpers for checking an ANN implementation against this oracle (or faiss).

Public and documented so other projects can import them::

    from adanns_ref.testing import assert_knn_equal
    assert_knn_equal(D_ref, I_ref, D, I, rtol=1e-5)

k-NN results are only defined up to ties: items at equal distance may come in any order, and a
tie group cut by the k-th position may keep different members. `assert_knn_equal` therefore
compares, per query row, the distances element-wise (rtol/atol) and the ids group-wise: the
positions whose reference distances are equal (within tolerance) form a group whose id *set*
must match, except the group that reaches the end of the row, where only the distances are
compared (faiss's `check_ref_knn_with_draws` follows the same idea). Missing results (-1) must be
at the same positions.
"""
import numpy as np


def _check_pair_shapes(a, b, what):
    if a.shape != b.shape:
        raise AssertionError(f"{what}: shapes differ, reference {a.shape} vs {b.shape}")


def _tie_groups(d_row, rtol, atol):
    """Split positions 0..k-1 into runs of (approximately) equal reference distance."""
    groups, start = [], 0
    for j in range(1, len(d_row) + 1):
        if j == len(d_row) or not np.isclose(d_row[j], d_row[start], rtol=rtol, atol=atol):
            groups.append((start, j))
            start = j
    return groups


def assert_knn_equal(D_ref, I_ref, D, I, rtol=1e-5, atol=1e-6):
    """Assert two k-NN results agree up to ties; raise AssertionError naming the first mismatch."""
    D_ref, I_ref, D, I = (np.asarray(a) for a in (D_ref, I_ref, D, I))
    _check_pair_shapes(D_ref, D, "distances")
    _check_pair_shapes(I_ref, I, "ids")
    _check_pair_shapes(D_ref, I_ref, "reference distances vs ids")
    missing_ref, missing = I_ref < 0, I < 0
    if not np.array_equal(missing_ref, missing):
        q = int(np.flatnonzero((missing_ref != missing).any(axis=1))[0])
        raise AssertionError(f"query {q}: missing results (-1) at different positions: {I_ref[q]} vs {I[q]}")
    valid = ~missing_ref
    close = np.isclose(D, D_ref, rtol=rtol, atol=atol) | ~valid
    if not close.all():
        q, j = (int(v) for v in np.argwhere(~close)[0])
        raise AssertionError(f"query {q}, rank {j}: distance {D[q, j]!r} vs reference {D_ref[q, j]!r} "
                             f"(rtol={rtol}, atol={atol})")
    for q in np.flatnonzero((I != I_ref).any(axis=1)):
        n_valid = int(valid[q].sum())
        for start, stop in _tie_groups(D_ref[q, :n_valid], rtol, atol):
            if stop == n_valid:
                break  # the group cut at k may hold different members of the same tie
            if set(I_ref[q, start:stop].tolist()) != set(I[q, start:stop].tolist()):
                raise AssertionError(f"query {q}, ranks {start}..{stop - 1}: ids {I[q, start:stop]} vs "
                                     f"reference {I_ref[q, start:stop]} (same distances, different items)")


def assert_codes_equal(codes_ref, codes):
    """Assert PQ codes are identical byte for byte; report the first differing vector."""
    codes_ref, codes = np.asarray(codes_ref), np.asarray(codes)
    _check_pair_shapes(codes_ref, codes, "codes")
    if codes_ref.dtype != codes.dtype:
        raise AssertionError(f"codes: dtype {codes.dtype} vs reference {codes_ref.dtype}")
    diff = codes_ref != codes
    if diff.any():
        n = int(np.flatnonzero(diff.reshape(len(codes), -1).any(axis=1))[0])
        raise AssertionError(f"codes differ for {int(diff.reshape(len(codes), -1).any(axis=1).sum())} "
                             f"vectors; first is vector {n}: {codes[n]} vs reference {codes_ref[n]}")


def assert_centroids_equal(c_ref, c, exact=True, rtol=1e-6, atol=0.0):
    """Assert centroids agree bit for bit (exact=True) or within rtol/atol; report max deviation."""
    c_ref, c = np.asarray(c_ref), np.asarray(c)
    _check_pair_shapes(c_ref, c, "centroids")
    if exact:
        ok = np.array_equal(c_ref, c)
    else:
        ok = np.allclose(c, c_ref, rtol=rtol, atol=atol)
    if not ok:
        dev = np.abs(c.astype(np.float64) - c_ref.astype(np.float64))
        row = int(np.unravel_index(np.argmax(dev), dev.shape)[0])
        raise AssertionError(f"centroids differ ({'bit-exact' if exact else f'rtol={rtol}'} required): "
                             f"max abs deviation {dev.max():.3g} in centroid {row}, "
                             f"{int((dev > 0).any(axis=1).sum())} centroids differ")


def max_deviation(a_ref, a):
    """Largest absolute difference, ignoring positions where both are the same +/-FLT_MAX pad."""
    a_ref, a = np.asarray(a_ref, np.float64), np.asarray(a, np.float64)
    both_pad = (np.abs(a_ref) >= 3.4e38) & (a_ref == a)
    dev = np.where(both_pad, 0.0, np.abs(a_ref - a))
    return float(dev.max()) if dev.size else 0.0
