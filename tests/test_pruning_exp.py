"""Exp. 9 (experiments/reproduce/quant.py, `exp9_pruning`): dims pruned per query and the claim's evidence."""
import numpy as np
import pytest

from adanns_ref import FlatIndex
from experiments.reproduce import quant as pruning
from experiments.reproduce.verdicts.evidence import NotApplicable


def _data(scale, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((1500, 32)) * scale).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_dims_pruned_is_exact_and_grows_with_front_loaded_energy():
    front, flat = _data(np.arange(1, 33) ** -1.0, 0), _data(np.ones(32), 0)
    fractions = []
    for x in (front, flat):
        I, pruned, rate = pruning.dims_pruned(x[100:], x[:100], [4, 8, 16])
        ref = FlatIndex(32)
        ref.add(x[100:])
        np.testing.assert_array_equal(I, ref.search(x[:100], pruning.PRUNING_K)[1])
        assert pruned.shape == (100,) and np.all((pruned >= 0) & (pruned < 1))
        assert rate.shape == (4,)
        fractions.append(pruned.mean())
    assert fractions[0] > fractions[1] + 0.2


def _rows(methods, seeds, nq=6):
    rng = np.random.default_rng(1)
    return [{"method": m, "seed": s, "_pq": {pruning.PRUNING_VEC: rng.random(nq)}} for m in methods for s in seeds]


def test_evidence_pairs_mrl_with_ff_and_the_permuted_control():
    ctx = {"seeds": [0, 1]}
    rows = _rows(["MRL", "MRL-permuted", "FF-32"], [0, 1])
    claim = pruning.PRUNING_CLAIM
    ev = pruning.pruning_evidence({"exp9_pruning": rows}, ctx, claim)
    x, y = ev.x, ev.y
    (name, kind, (xc, yc)), = ev.controls
    assert kind == "rigid" and "random order" in name
    assert x.shape == (2, 1, 6) and np.array_equal(y, yc) and ev.metric == "dims pruned"
    np.testing.assert_array_equal(x[1, 0], rows[1]["_pq"][pruning.PRUNING_VEC])
    np.testing.assert_array_equal(xc[0, 0], rows[2]["_pq"][pruning.PRUNING_VEC])
    with pytest.raises(NotApplicable, match="no FF model"):
        pruning.pruning_evidence({"exp9_pruning": _rows(["MRL", "MRL-permuted"], [0, 1])}, ctx, pruning.PRUNING_CLAIM)
    with pytest.raises(NotApplicable):
        pruning.pruning_evidence({"exp9_pruning": rows[:-1]}, ctx, pruning.PRUNING_CLAIM)


def test_pruning_queries_is_a_seeded_sorted_subset_or_refuses():
    assert np.array_equal(pruning.pruning_queries(7, None), np.arange(7))
    sub = pruning.pruning_queries(100, 30)
    assert np.array_equal(sub, pruning.pruning_queries(100, 30))          # seeded
    assert len(np.unique(sub)) == 30 and np.all(np.diff(sub) > 0) and sub.max() < 100
    assert np.array_equal(pruning.pruning_queries(5, 5), np.arange(5))
    for bad in (0, 101, 2.5, True, "10"):
        with pytest.raises(ValueError, match="pruning_queries must be an int"):
            pruning.pruning_queries(100, bad)
