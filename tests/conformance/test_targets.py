"""The target protocol: the oracle passes its own checks, a deliberately broken target has each
break caught with the right verdict and a reproducer that runs and shows it."""
import contextlib
import io

import numpy as np
import pytest

from adanns_ref.conformance import target_checks as tc
from adanns_ref.conformance import target_data as td
from adanns_ref.conformance.adapters.reference import ReferenceTarget
from adanns_ref.conformance.cli import main
from adanns_ref.conformance import Target, capabilities, load_target
from adanns_ref.conformance.target_run import run_target, status
from tests.conformance.broken_target import BrokenTarget


@pytest.fixture(scope="module")
def data():
    return td.seeded(seed=3, n=600, nq=40, d=16, dup=60)


def _run_repro(source):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(source, "<reproducer>", "exec"), {})
    return out.getvalue()


def test_capabilities_follow_overridden_methods():
    class OnlyBinarize(Target):
        def binarize(self, x):
            return np.packbits(x > 0, axis=1)
    assert capabilities(OnlyBinarize()) == ["binarize"]
    assert capabilities(Target()) == []
    assert set(capabilities(ReferenceTarget())) == {"flat", "hnsw", "pq", "quantize", "truncate", "binarize"}


def test_load_target_rejects_bad_specs():
    with pytest.raises(ValueError, match="module:Class"):
        load_target("no-such-adapter")
    with pytest.raises(ValueError, match="cannot import"):
        load_target("no_such_module_xyz:T")
    with pytest.raises(ValueError, match="not a subclass"):
        load_target("numpy:ndarray")


def test_reference_is_identical_on_flat_quantize_binarize_truncate(data):
    t = ReferenceTarget()
    results = tc.check_flat(t, data) + tc.check_quantize(t, data) + tc.check_binarize(t, data) \
        + tc.check_truncate(t, data)
    assert [r.check for r in results if r.verdict != "identical"] == []
    assert all(status(t, r) == "as claimed" for r in results)


def test_wrong_tie_order_is_equal_up_to_ties(data):
    t = BrokenTarget()
    l2 = next(r for r in tc.check_flat(t, data) if r.check == "flat l2 k=10")
    assert l2.verdict == "ties" and status(t, l2) == "FINDING"
    assert "recall 1.0000 vs oracle 1.0000" in l2.deviation
    out = _run_repro(l2.reproducer)
    lib, ref = (np.array(line.split(":")[1].strip(" []").split(), int) for line in out.splitlines()[:2])
    assert sorted(lib) == sorted(ref) and not np.array_equal(lib, ref)  # same set, other order


def test_off_by_one_int8_is_a_mismatch(data):
    """Every code one step up: off the ties (not "equal up to ties"), and the dequantized
    database loses 2.5 pp of 10-recall@10 (more than the 2 pp margin)."""
    t = BrokenTarget()
    rows = {r.check: r for r in tc.check_quantize(t, data)}
    for name in ("quantize int8 self-calibrated", "quantize int8 calibrated"):
        r = rows[name]
        assert r.verdict == "mismatch" and status(t, r) == "FINDING"
        assert "9587 of 9600 entries differ" in r.deviation and "max |d| = 1," in r.deviation
        out = _run_repro(r.reproducer)
        assert "differ at [" in out and "differ at []" not in out
    assert rows["quantize uint8 calibrated"].verdict == "identical"


def test_binarize_at_zero_is_caught_at_the_ties(data):
    t = BrokenTarget()
    r, = tc.check_binarize(t, data)
    assert r.verdict == "ties" and status(t, r) == "FINDING"
    n_zero = int((data.xb == 0).sum())
    assert r.deviation.startswith(f"{n_zero} of ") and f"{n_zero} of them at ties" in r.deviation
    out = _run_repro(r.reproducer)
    lib = np.array(out.splitlines()[0].split(":")[1].strip(" []").split(), int)
    ref = np.array(out.splitlines()[1].split(":")[1].strip(" []").split(), int)
    assert (lib != ref).any()


def test_cli_exits_1_on_a_finding_and_0_on_the_reference(capsys):
    assert main(["--target", "tests.conformance.broken_target:BrokenTarget", "--seed", "1"]) == 1
    text = capsys.readouterr().out
    assert "FINDING" in text and "```python" in text
    assert main(["--target", "no-such-adapter"]) == 2


def test_claims_must_be_on_the_ladder():
    class Bad(Target):
        claims = {"binarize x > 0": "perfect"}
    import sys
    sys.modules[__name__].Bad = Bad
    with pytest.raises(ValueError, match="each claim"):
        load_target(f"{__name__}:Bad")
