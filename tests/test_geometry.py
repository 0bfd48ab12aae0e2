"""experiments/reproduce/geometry.py: spectrum facts against np.linalg.svd, the headroom line."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.reproduce import geometry as g


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(3, 60), d=st.integers(1, 12), rank=st.integers(1, 12))
def test_spectrum_matches_svd_of_the_centred_matrix(seed, n, d, rank):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, min(rank, d))) @ rng.standard_normal((min(rank, d), d)) + rng.standard_normal(d)
    lam = g.spectrum(x.astype(np.float32))
    s = np.linalg.svd(x.astype(np.float32).astype(np.float64) - x.astype(np.float32).astype(np.float64).mean(0),
                      compute_uv=False)
    np.testing.assert_allclose(np.sqrt(lam[:s.size]), s, rtol=1e-6, atol=1e-6 * max(s[0], 1))
    assert np.all(np.diff(lam) <= 0) and lam.min() >= 0
    # brute-force definitions from the singular values
    assert g.effective_rank(lam) == int(np.count_nonzero(np.sqrt(lam) >= 1e-3 * np.sqrt(lam[0]))) or lam[0] == 0
    total = (s ** 2).sum()
    if total > 0:
        k = g.dims_for_variance(lam)
        assert lam[:k].sum() >= 0.99 * lam.sum() * (1 - 1e-12)
        assert k == 1 or lam[:k - 1].sum() < 0.99 * lam.sum()


def test_rank_and_99_dims_on_a_known_spectrum():
    lam = np.array([1.0, 0.5, 1e-6, 0.99e-6, 0.0])
    assert g.effective_rank(lam) == 3     # sigma >= 1e-3 sigma_1  <=>  lambda >= 1e-6 lambda_1
    assert g.dims_for_variance(lam, 0.5) == 1 and g.dims_for_variance(lam, 0.99) == 2
    assert g.effective_rank(np.zeros(3)) == 0 and g.dims_for_variance(np.zeros(3)) == 0
    with pytest.raises(ValueError, match="2 rows"):
        g.spectrum(np.ones((1, 4)))


def test_a_linear_embedding_is_low_rank_and_a_gelu_one_is_not():
    from mrl_ref.autograd import Tensor, no_grad
    from mrl_ref.nn import MLP

    x = Tensor(np.random.default_rng(1).standard_normal((3000, 32)).astype(np.float32))
    with no_grad():
        lin = MLP((32, 64, 512), seed=0, embedding="linear")(x).data
        gelu = MLP((32, 64, 512), seed=0, embedding="gelu")(x).data
    assert g.effective_rank(g.spectrum(lin)) <= 65
    assert g.effective_rank(g.spectrum(gelu)) == 512


def _exp1(seed_values):
    rows = []
    for seed, (small, large) in seed_values.items():
        rows += [{"model": "FF", "dim": 8, "seed": seed, "map10": 0.9, "rprec": small, "mapr": small / 2},
                 {"model": "FF", "dim": 2048, "seed": seed, "map10": 0.91, "rprec": large, "mapr": large / 2},
                 {"model": "MRL", "dim": 8, "seed": seed, "map10": 0.5, "rprec": 0.0, "mapr": 0.0}]
    return rows


def test_headroom_is_ff_d_minus_ff_smallest_on_the_deciding_metric():
    h = g.headroom(_exp1({0: (0.10, 0.40), 1: (0.12, 0.38)}))
    assert h["metric"] == "rprec" and h["d_min"] == 8 and h["d_max"] == 2048
    assert h["other"] == ("mAP@R", pytest.approx(14.0))
    by_mapr = g.headroom(_exp1({0: (0.10, 0.40), 1: (0.12, 0.38)}), "mAP@R")
    assert by_mapr["metric"] == "mapr" and by_mapr["gap_pp"] == pytest.approx(14.0)
    assert by_mapr["other"] == ("R-precision", pytest.approx(28.0))
    assert h["gap_pp"] == pytest.approx(28.0) and h["gap_sd_pp"] == pytest.approx(np.std([30, 26], ddof=1))
    no_r = [{k: v for k, v in r.items() if k not in ("mapr", "rprec")} for r in _exp1({0: (0, 0)})]
    assert g.headroom(no_r)["metric"] == "map10" and g.headroom(no_r)["gap_pp"] == pytest.approx(1.0)
    lines = "".join(g.header_lines("fmnist3", [{"model": "MRL", "seed": 0, "D": 2048, "rank_1e-3": 2040,
                                                 "dims_99": 1500}], _exp1({0: (0.1, 0.4)}), 2048))
    assert "1,000 classes" in lines and "30.00" in lines and "enough" in lines and "On mAP@R: 15.00" in lines and "| MRL | 2048 | 2040 | 1500 |" in lines
    assert "NOT enough" in "".join(g.header_lines("fmnist", [], no_r, 2048))
    assert g.mflops_vs_k99(128.0, 2048, 512) == pytest.approx(32.0)
    with pytest.raises(ValueError, match="task must be"):
        g.task({"task": "mnist"})
