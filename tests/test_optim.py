"""SGD / Adam against torch.optim step by step; the warm-up + linear decay schedule."""
import numpy as np
import pytest

from mrl_ref.autograd import Tensor
from mrl_ref.heads import MatryoshkaHeads, matryoshka_ce_loss
from mrl_ref.nn import MLP
from mrl_ref.optim import SGD, Adam, warmup_linear_lr


def _tiny_model():
    body = MLP((6, 8, 8), seed=0, dtype=np.float64)
    heads = MatryoshkaHeads((2, 4, 8), 3, seed=1, dtype=np.float64)
    return body, heads


def _run_both(torch, make_ours, make_torch, steps=6):
    rng = np.random.default_rng(0)
    body, heads = _tiny_model()
    params = body.parameters() + heads.parameters()
    tparams = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    ours = make_ours(params)
    groups = [{"params": [t for t in tparams if t.ndim >= 2]},
              {"params": [t for t in tparams if t.ndim < 2], "weight_decay": 0.0}]
    theirs = make_torch(groups)
    F = torch.nn.functional
    for step in range(steps):
        x, y = rng.standard_normal((5, 6)), rng.integers(0, 3, 5)
        lr = warmup_linear_lr(step, steps, 2, 0.05)
        ours.lr = lr
        for group in theirs.param_groups:
            group["lr"] = lr
        ours.zero_grad()
        matryoshka_ce_loss(heads(body(Tensor(x))), y, label_smoothing=0.1).backward()
        ours.step()
        h = torch.tensor(x)
        for i in range(2):
            h = F.relu(F.linear(h, tparams[2 * i], tparams[2 * i + 1]))
        loss = sum(F.cross_entropy(F.linear(h[:, :m], tparams[4 + 2 * g], tparams[5 + 2 * g]),
                                   torch.tensor(y), label_smoothing=0.1) for g, m in enumerate((2, 4, 8)))
        theirs.zero_grad()
        loss.backward()
        theirs.step()
        for p, t in zip(params, tparams):
            np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-6, atol=1e-12,
                                       err_msg=f"step {step}")


def test_sgd_momentum_weight_decay_matches_torch():
    torch = pytest.importorskip("torch", reason="torch.optim is the reference optimiser")
    _run_both(torch, lambda p: SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-2),
              lambda g: torch.optim.SGD(g, lr=0.05, momentum=0.9, weight_decay=1e-2))


def test_plain_sgd_matches_torch():
    torch = pytest.importorskip("torch", reason="torch.optim is the reference optimiser")
    _run_both(torch, lambda p: SGD(p, lr=0.05), lambda g: torch.optim.SGD(g, lr=0.05))


def test_adam_matches_torch():
    torch = pytest.importorskip("torch", reason="torch.optim is the reference optimiser")
    _run_both(torch, lambda p: Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2),
              lambda g: torch.optim.Adam(g, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2))


def test_biases_are_not_decayed():
    w = Tensor(np.ones((2, 2)), requires_grad=True)
    b = Tensor(np.ones(2), requires_grad=True)
    w.grad, b.grad = np.zeros((2, 2)), np.zeros(2)
    SGD([w, b], lr=1.0, weight_decay=0.5).step()
    np.testing.assert_array_equal(w.data, 0.5)
    np.testing.assert_array_equal(b.data, 1.0)


def test_updates_stay_float32_and_never_touch_grads():
    w = Tensor(np.ones((2, 2), dtype=np.float32), requires_grad=True)
    grad = np.full((2, 2), 0.5, dtype=np.float32)
    for opt in (SGD([w], lr=0.1, momentum=0.9, weight_decay=1e-4), Adam([w], lr=0.1, weight_decay=1e-4)):
        w.grad = grad
        opt.step()
        opt.step()
        assert w.data.dtype == np.float32
        np.testing.assert_array_equal(grad, 0.5)


def test_schedule_warms_up_then_decays_linearly():
    total, warm, peak = 100, 10, 0.4
    lrs = np.array([warmup_linear_lr(s, total, warm, peak) for s in range(total)])
    assert lrs[warm - 1] == pytest.approx(peak) and lrs.max() == pytest.approx(peak)
    assert np.all(np.diff(lrs[:warm]) > 0) and np.all(np.diff(lrs[warm:]) < 0)
    np.testing.assert_allclose(np.diff(lrs[:warm]), peak / warm)
    np.testing.assert_allclose(np.diff(lrs[warm:]), -peak / (total - warm))
    assert lrs[0] > 0 and lrs[-1] > 0 and lrs[-1] == pytest.approx(peak / (total - warm))
    assert warmup_linear_lr(0, 10, 0, 1.0) == 1.0


def test_bad_optimizer_inputs():
    w = Tensor(np.ones(2), requires_grad=True)
    with pytest.raises(ValueError, match="lr"):
        SGD([w], lr=-0.1)
    with pytest.raises(ValueError, match="momentum"):
        SGD([w], lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match="no parameters"):
        SGD([], lr=0.1)
    with pytest.raises(TypeError, match="requires_grad"):
        Adam([Tensor(np.ones(2))])
    with pytest.raises(ValueError, match="beta1"):
        Adam([w], betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="betas"):
        Adam([w], betas=(0.9,))
    with pytest.raises(ValueError, match="warmup_steps"):
        warmup_linear_lr(0, 10, 10, 1.0)
    with pytest.raises(ValueError, match="step"):
        warmup_linear_lr(10, 10, 2, 1.0)
