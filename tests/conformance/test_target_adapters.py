"""Each built-in adapter on small seeded data, skipped by name where its package is missing.
Each test asserts the adapter's claims hold (or are documented deviations) and pins the one
known finding (usearch i8)."""
import os

import pytest

from adanns_ref.conformance import target_data as td
from adanns_ref.conformance.target import load_target
from adanns_ref.conformance.target_run import run_target

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # only functions are tested: never a model download


@pytest.fixture(scope="module")
def data():
    return td.seeded(seed=5, n=800, nq=50, d=16, dup=80)


def _statuses(name, data):
    rows = run_target(load_target(name), data)
    return {r.check: (r.verdict, s) for r, s in rows}


@pytest.mark.parametrize("name,package", [
    ("hnswlib", "hnswlib"), ("nanopq", "nanopq"), ("nanopq-opq", "nanopq"),
    ("sentence-transformers", "sentence_transformers"), ("usearch", "usearch"),
    ("usearch-f16", "usearch"), ("usearch-b1", "usearch"),
    ("lancedb-ivfpq", "lancedb"), ("lancedb-rabitq", "lancedb")])
def test_adapter_meets_its_claims(name, package, data):
    pytest.importorskip(package)
    statuses = _statuses(name, data)
    assert statuses, f"{name}: no check applied"
    assert not [c for c, (_, s) in statuses.items() if s == "FINDING"], statuses


def test_sentence_transformers_quantize_is_identical(data):
    pytest.importorskip("sentence_transformers")
    statuses = _statuses("sentence-transformers", data)
    assert {c: v for c, (v, _) in statuses.items() if c.startswith("quantize")} == {
        f"quantize {p}": "identical" for p in ("int8 self-calibrated", "int8 calibrated", "uint8 self-calibrated",
                                               "uint8 calibrated", "binary", "ubinary")}


def test_normalize_module_then_truncate_dim_is_not_renormalised(data):
    pytest.importorskip("sentence_transformers")
    statuses = _statuses("sentence-transformers-normalize", data)
    assert statuses["truncate d=4 normalize=True"][0] == "mismatch"
    assert statuses["truncate d=4 normalize=False"] == ("identical", "not claimed")


def test_usearch_i8_l2_is_a_finding(data):
    pytest.importorskip("usearch")
    statuses = _statuses("usearch-i8", data)
    assert statuses["flat l2 k=10"] == ("mismatch", "FINDING")
