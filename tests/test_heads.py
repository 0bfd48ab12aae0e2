"""Matryoshka heads and loss: validation, init, finite differences, and PyTorch equivalence."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mrl_ref.autograd import Tensor
from mrl_ref.heads import FixedFeatureHead, MatryoshkaHeads, check_nesting, matryoshka_ce_loss
from mrl_ref.nn import MLP

from test_autograd import numeric_grads, rel_error

NESTING = (2, 4, 8)
WEIGHTS = (0.5, 1.0, 2.0)


def test_separate_heads_shapes_and_init_bounds():
    heads = MatryoshkaHeads((8, 16, 64), 10, seed=0)
    assert [layer.weight.data.shape for layer in heads.layers] == [(10, 8), (10, 16), (10, 64)]
    for m, layer in zip((8, 16, 64), heads.layers):
        bound = 1 / np.sqrt(m)  # fan_in = m_g for separate heads
        assert np.abs(layer.weight.data).max() <= bound and np.abs(layer.bias.data).max() <= bound
        assert np.abs(layer.weight.data).max() > 0.8 * bound
        assert layer.weight.data.dtype == np.float32
    logits = heads(Tensor(np.ones((3, 64), dtype=np.float32)))
    assert [lg.data.shape for lg in logits] == [(3, 10)] * 3


def test_tied_heads_share_one_matrix_and_one_bias():
    heads = MatryoshkaHeads((8, 16, 64), 10, tied=True, seed=0)
    assert len(heads.parameters()) == 2
    w, b = heads.layers[0].weight.data, heads.layers[0].bias.data
    assert w.shape == (10, 64) and b.shape == (10,)
    assert np.abs(w).max() <= 1 / np.sqrt(64)  # MRL-E init uses fan_in = D
    z = np.random.default_rng(0).random((5, 64)).astype(np.float32)
    logits = heads(Tensor(z))
    for m, lg in zip((8, 16, 64), logits):
        np.testing.assert_allclose(lg.data, z[:, :m] @ w[:, :m].T + b, rtol=1e-5, atol=1e-6)


def test_same_seed_same_heads_and_fixed_feature_head():
    a, b = MatryoshkaHeads((4, 8), 3, seed=7), MatryoshkaHeads((4, 8), 3, seed=7)
    assert all(np.array_equal(p.data, q.data) for p, q in zip(a.parameters(), b.parameters()))
    c = MatryoshkaHeads((4, 8), 3, seed=8)
    assert not np.array_equal(a.parameters()[0].data, c.parameters()[0].data)
    ff = FixedFeatureHead(8, 3, seed=0)
    out = ff(Tensor(np.ones((2, 8), dtype=np.float32)))
    assert len(out) == 1 and out[0].data.shape == (2, 3) and ff.nesting == (8,)


@settings(max_examples=15, deadline=None)
@given(tied=st.booleans(), n=st.integers(1, 4), seed=st.integers(0, 2**31))
def test_loss_gradients_match_finite_differences(tied, n, seed):
    rng = np.random.default_rng(seed)
    heads = MatryoshkaHeads(NESTING, 3, tied=tied, seed=seed, dtype=np.float64)
    z, y = rng.standard_normal((n, 8)), rng.integers(0, 3, n)
    params = [p.data for p in heads.parameters()]
    zt = Tensor(z.copy(), requires_grad=True)
    matryoshka_ce_loss(heads(zt), y, WEIGHTS, 0.1).backward()

    def f():
        return float(matryoshka_ce_loss(heads(Tensor(z)), y, WEIGHTS, 0.1).data)
    numeric = numeric_grads(f, [z] + params)
    for analytic, num in zip([zt.grad] + [p.grad for p in heads.parameters()], numeric):
        assert rel_error(analytic, num) < 1e-6


def _torch_reference(torch, body, heads, x, y, weights, eps):
    """The same computation written with PyTorch modules (float64), weights copied from ours."""
    F = torch.nn.functional
    params = [torch.tensor(p.data, requires_grad=True) for p in body.parameters() + heads.parameters()]
    h = torch.tensor(x)
    for i in range(len(body.layers)):
        h = F.relu(F.linear(h, params[2 * i], params[2 * i + 1]))
    hp = params[2 * len(body.layers):]
    total = 0
    for g, m in enumerate(heads.nesting):
        if heads.tied:
            logits = F.linear(h[:, :m], hp[0][:, :m], hp[1])
        else:
            logits = F.linear(h[:, :m], hp[2 * g], hp[2 * g + 1])
        ce = F.cross_entropy(logits, torch.tensor(y), label_smoothing=eps)
        total = total + weights[g] * ce
    total.backward()
    return total.item(), [p.grad.numpy() for p in params]


@pytest.mark.parametrize("tied", [False, True])
def test_full_matryoshka_loss_equals_pytorch(tied):
    torch = pytest.importorskip("torch", reason="PyTorch is the independent reference for the loss")
    rng = np.random.default_rng(3)
    nesting, weights = (2, 4, 8, 16), (0.25, 0.5, 1.0, 2.0)
    body = MLP((12, 10, 16), seed=1, dtype=np.float64)
    heads = MatryoshkaHeads(nesting, 5, tied=tied, seed=2, dtype=np.float64)
    x, y = rng.standard_normal((7, 12)), rng.integers(0, 5, 7)
    loss = matryoshka_ce_loss(heads(body(Tensor(x))), y, weights, label_smoothing=0.1)
    loss.backward()
    ref_loss, ref_grads = _torch_reference(torch, body, heads, x, y, weights, 0.1)
    assert float(loss.data) == pytest.approx(ref_loss, rel=1e-6)
    for p, g in zip(body.parameters() + heads.parameters(), ref_grads):
        np.testing.assert_allclose(p.grad, g, rtol=1e-6, atol=1e-12)


def test_loss_is_a_sum_over_sizes_not_a_mean():
    heads = MatryoshkaHeads((2, 4), 3, seed=0, dtype=np.float64)
    z = Tensor(np.random.default_rng(0).standard_normal((5, 4)))
    y = np.array([0, 1, 2, 0, 1])
    logits = heads(z)
    one = [float(matryoshka_ce_loss([lg], y).data) for lg in logits]
    assert float(matryoshka_ce_loss(logits, y).data) == pytest.approx(sum(one), rel=1e-12)
    assert float(matryoshka_ce_loss(logits, y, [2.0, 0.0]).data) == pytest.approx(2 * one[0], rel=1e-12)


@pytest.mark.parametrize("nesting, match", [
    ([], "empty"),
    ([8, 4, 16], "strictly increasing"),
    ([4, 4, 16], "strictly increasing"),
    ([0, 4, 16], "positive"),
    ([-2, 4, 16], "positive"),
    ([4, 8, 12], "D=16"),
])
def test_bad_nesting(nesting, match):
    with pytest.raises(ValueError, match=match):
        check_nesting(nesting, 16)


def test_bad_nesting_types_and_head_inputs():
    with pytest.raises(TypeError, match="integer"):
        MatryoshkaHeads([4.5, 8], 3)
    with pytest.raises(TypeError, match="list of ints"):
        MatryoshkaHeads(16, 3)
    with pytest.raises(ValueError, match="positive"):
        MatryoshkaHeads([0, 8], 3)
    heads = MatryoshkaHeads([4, 8], 3)
    with pytest.raises(ValueError, match=r"\(B, 8\)"):
        heads(Tensor(np.ones((2, 6), dtype=np.float32)))
    with pytest.raises(ValueError, match="num_classes must be >= 2"):
        MatryoshkaHeads([4, 8], 1)
    with pytest.raises(ValueError, match=r"\(B, 5\)"):
        FixedFeatureHead(5, 3)(Tensor(np.ones((2, 4), dtype=np.float32)))


def test_bad_loss_inputs():
    heads = MatryoshkaHeads([2, 4], 3, seed=0)
    logits = heads(Tensor(np.ones((3, 4), dtype=np.float32)))
    with pytest.raises(ValueError, match="one entry per nesting size"):
        matryoshka_ce_loss(logits, [0, 1, 2], weights=[1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=">= 0"):
        matryoshka_ce_loss(logits, [0, 1, 2], weights=[1.0, -1.0])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        matryoshka_ce_loss(logits, [0, 1, 3])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        matryoshka_ce_loss(logits, [0, -1, 2])
    with pytest.raises(TypeError, match="integers"):
        matryoshka_ce_loss(logits, [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="non-empty list"):
        matryoshka_ce_loss([], [0])
    with pytest.raises(ValueError, match="expected"):
        matryoshka_ce_loss([logits[0], logits[1][:2]], [0, 1, 2])
