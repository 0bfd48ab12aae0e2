"""Properties of the verdict ladder (hypothesis): equal inputs are identical, changes confined
to ties are "equal up to ties", any other change is at best "equivalent only in recall"."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from adanns_ref.conformance.verdicts import (classify_codes, classify_floats, classify_knn, knn_recall,
                                             recall_equivalent)

arrays = st.tuples(st.integers(1, 20), st.integers(1, 12), st.integers(0, 2**31 - 1))


def _codes(shape):
    n, d, seed = shape
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, d)).astype(np.uint8), rng


@settings(max_examples=60, deadline=None)
@given(arrays)
def test_codes_ladder(shape):
    ref, rng = _codes(shape)
    at_tie = rng.random(ref.shape) < 0.3
    assert classify_codes(ref, ref.copy(), at_tie, lambda c: 1.0)[0] == "identical"
    changed = ref.copy()
    changed[at_tie] ^= 1
    verdict = classify_codes(ref, changed, at_tie, lambda c: 1.0)[0]
    assert verdict == ("ties" if at_tie.any() else "identical")
    off = ref.copy()
    off[~at_tie] ^= 1
    if (~at_tie).any():
        assert classify_codes(ref, off, at_tie, lambda c: 1.0)[0] == "recall"
        recall = lambda c: 1.0 if c is ref else 0.5
        assert classify_codes(ref, off, at_tie, recall)[0] == "mismatch"


@settings(max_examples=60, deadline=None)
@given(arrays)
def test_floats_ladder(shape):
    n, d, seed = shape
    ref = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    assert classify_floats(ref, ref.copy(), lambda a: 1.0)[0] == "identical"
    nudged = np.nextafter(ref, np.float32(np.inf))
    assert classify_floats(ref, nudged, lambda a: 1.0)[0] == "ties"
    assert classify_floats(ref, ref + 1, lambda a: 0.0 if a is ref else 1.0)[0] == "recall"


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 8), st.integers(0, 2**31 - 1))
def test_knn_tie_order_is_ties_and_other_ids_are_not(k, seed):
    rng = np.random.default_rng(seed)
    xb = rng.standard_normal((30, 4)).astype(np.float32)
    xb[10:20] = xb[0]                                 # eleven copies of row 0: a tie group
    q = xb[:1] + np.float32(0)
    d = ((xb - q) ** 2).sum(1)
    order = np.lexsort((np.arange(30), d))[:k]
    ref = (d[order][None].astype(np.float32), order[None].astype(np.int64))
    ones = np.ones(1)
    assert classify_knn(ref, ref, ones, ones)[0] == "identical"
    flipped = (ref[0], ref[1][:, ::-1].copy())     # all k results are copies of row 0: same distance
    assert classify_knn(ref, flipped, ones, ones)[0] == ("identical" if k == 1 else "ties")
    assert knn_recall(xb, q, flipped[1], ref[1], "l2") == 1.0


def test_recall_equivalence_margin():
    r_ref = np.full(100, 0.9)
    assert recall_equivalent(r_ref, r_ref - 0.019)[0]
    assert not recall_equivalent(r_ref, r_ref - 0.021)[0]
    noisy = np.tile([0.8, 1.0], 50)                 # mean 0.9, per-query differences +-0.1
    ok, got, ref, allowed = recall_equivalent(r_ref, noisy - 0.02)
    assert ok and abs(allowed - (0.02 + 2 * 0.1 / np.sqrt(100) * np.sqrt(100 / 99))) < 1e-9
