"""The top-level namespace: the ~25 names a user needs, and the names that left it in 0.2, still
reachable with one DeprecationWarning each until 0.3."""
import warnings

import pytest

import adanns_ref
from adanns_ref.evaluation import metrics, select, sweeps
from adanns_ref.quantizers import binary


def test_exports_are_the_user_facing_names():
    assert len(adanns_ref.__all__) <= 26
    for name in adanns_ref.__all__:
        assert getattr(adanns_ref, name) is not None
    assert not set(adanns_ref.MOVED) & set(adanns_ref.__all__)


def test_moved_names_warn_once_and_resolve(monkeypatch):
    monkeypatch.setattr(adanns_ref, "_warned", set())
    homes = {"knn_recall": metrics, "pareto_front": select, "adannsopq_sweep": sweeps,
             "quantize_embeddings": binary}
    for name, home in homes.items():
        with pytest.warns(DeprecationWarning, match=f"adanns_ref.{name} moved to {home.__name__}"):
            assert getattr(adanns_ref, name) is getattr(home, name)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the second access is silent
            assert getattr(adanns_ref, name) is getattr(home, name)


def test_unknown_names_raise_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'knn_serach'"):
        adanns_ref.knn_serach
