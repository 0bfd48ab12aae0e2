"""Linear / MLP: PyTorch-style init, post-ReLU embeddings, gradients, seeding, bad inputs."""
import numpy as np
import pytest

from mrl_ref.autograd import Tensor
from mrl_ref.nn import MLP, Linear

from test_autograd import numeric_grads, rel_error


def test_linear_init_is_uniform_in_pytorch_bound():
    layer = Linear(100, 300, seed=0)
    bound = 1 / np.sqrt(100)
    w, b = layer.weight.data, layer.bias.data
    assert w.shape == (300, 100) and b.shape == (300,) and w.dtype == np.float32
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    # U(-a, a): mean 0, variance a^2 / 3 (30,000 draws: loose but failing for a wrong bound)
    assert abs(w.mean()) < 0.01 * bound
    assert w.var() == pytest.approx(bound ** 2 / 3, rel=0.03)


def test_linear_matches_torch_functional_linear():
    torch = pytest.importorskip("torch", reason="torch.nn.functional.linear is the reference")
    layer = Linear(5, 3, seed=1, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((4, 5))
    ref = torch.nn.functional.linear(torch.tensor(x), torch.tensor(layer.weight.data), torch.tensor(layer.bias.data))
    np.testing.assert_allclose(layer(Tensor(x)).data, ref.numpy(), rtol=1e-12)


def test_mlp_embedding_is_post_relu_and_seeded():
    x = Tensor(np.random.default_rng(0).standard_normal((16, 10)).astype(np.float32))
    a, b, c = MLP((10, 12, 6), seed=3), MLP((10, 12, 6), seed=3), MLP((10, 12, 6), seed=4)
    za = a(x).data
    assert za.shape == (16, 6) and za.dtype == np.float32 and np.all(za >= 0)
    assert np.array_equal(za, b(x).data)
    assert not np.array_equal(za, c(x).data)
    assert len(a.parameters()) == 4


def test_mlp_gradients_match_finite_differences():
    rng = np.random.default_rng(2)
    mlp = MLP((4, 5, 3), seed=0, dtype=np.float64)
    x = rng.standard_normal((3, 4))
    weights = rng.standard_normal((3, 3))
    mlp(Tensor(x)).backward(weights)
    params = [p.data for p in mlp.parameters()]

    def f():
        return float(np.sum(mlp(Tensor(x)).data * weights))
    for p, num in zip(mlp.parameters(), numeric_grads(f, params)):
        assert rel_error(p.grad, num) < 1e-6


def test_mlp_dropout_only_with_a_generator():
    mlp = MLP((10, 50, 50, 4), dropout=0.5, seed=0)
    x = Tensor(np.ones((8, 10), dtype=np.float32))
    plain = mlp(x).data
    assert np.array_equal(plain, mlp(x).data)  # inference: deterministic, no dropout
    d1 = mlp(x, rng=np.random.default_rng(1)).data
    d2 = mlp(x, rng=np.random.default_rng(1)).data
    assert np.array_equal(d1, d2) and not np.array_equal(d1, plain)


def test_bad_layer_inputs():
    with pytest.raises(ValueError, match="in_features must be >= 1"):
        Linear(0, 3, seed=0)
    with pytest.raises(TypeError, match="integer"):
        Linear(2.5, 3, seed=0)
    with pytest.raises(ValueError, match="seed"):
        Linear(2, 3)
    with pytest.raises(ValueError, match="either rng or seed"):
        Linear(2, 3, rng=np.random.default_rng(0), seed=0)
    with pytest.raises(TypeError, match="float32 or float64"):
        Linear(2, 3, seed=0, dtype=np.int64)
    with pytest.raises(ValueError, match="activation"):
        MLP((4, 3), activation="tanh")
    with pytest.raises(ValueError, match="at least"):
        MLP((4,))
    with pytest.raises(ValueError, match="dropout"):
        MLP((4, 3), dropout=1.0)
    with pytest.raises(ValueError, match="do not fit"):
        MLP((4, 3), seed=0)(Tensor(np.ones((2, 5), dtype=np.float32)))


def test_linear_embedding_is_the_last_pre_activation():
    """embedding="linear": same weights as "relu" (same seed), the output is the last layer's
    pre-activation, so it takes negative values and its ReLU is the "relu" embedding."""
    x = Tensor(np.random.default_rng(5).standard_normal((64, 10)).astype(np.float32))
    relu, lin = MLP((10, 12, 6), seed=3), MLP((10, 12, 6), seed=3, embedding="linear")
    assert all(np.array_equal(p.data, q.data) for p, q in zip(relu.parameters(), lin.parameters()))
    z, zr = lin(x).data, relu(x).data
    assert np.any(z < 0)
    np.testing.assert_array_equal(np.maximum(z, 0), zr)
    hidden = relu.layers[0](x).relu()
    np.testing.assert_array_equal(z, relu.layers[1](hidden).data)


def test_linear_embedding_gradients_match_finite_differences():
    rng = np.random.default_rng(7)
    mlp = MLP((4, 5, 6, 3), seed=1, dtype=np.float64, embedding="linear")
    x = rng.standard_normal((5, 4))
    weights = rng.standard_normal((5, 3))
    mlp(Tensor(x)).backward(weights)

    def f():
        return float(np.sum(mlp(Tensor(x)).data * weights))
    grads = numeric_grads(f, [p.data for p in mlp.parameters()])
    for p, num in zip(mlp.parameters(), grads):
        assert rel_error(p.grad, num) < 1e-6
    # the output layer's bias gradient is the upstream gradient summed over rows: no ReLU mask
    np.testing.assert_allclose(mlp.layers[-1].bias.grad, weights.sum(axis=0), rtol=1e-12)


def test_linear_embedding_matches_torch():
    torch = pytest.importorskip("torch", reason="torch.nn.Sequential is the reference")
    mlp = MLP((6, 8, 4), seed=2, dtype=np.float64, embedding="linear")
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4)).double()
    with torch.no_grad():
        for layer, ours in zip([net[0], net[2]], mlp.layers):
            layer.weight.copy_(torch.tensor(ours.weight.data))
            layer.bias.copy_(torch.tensor(ours.bias.data))
    x = np.random.default_rng(3).standard_normal((7, 6))
    xt = torch.tensor(x, requires_grad=True)
    out = net(xt)
    out.sum().backward()
    mlp(Tensor(x)).backward(np.ones((7, 4)))
    np.testing.assert_allclose(mlp(Tensor(x)).data, out.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(mlp.layers[0].weight.grad, net[0].weight.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(mlp.layers[1].bias.grad, net[2].bias.grad.numpy(), rtol=1e-10)


def test_bad_embedding():
    with pytest.raises(ValueError, match="embedding must be one of"):
        MLP((4, 3), seed=0, embedding="tanh")


def _rank_and_dims99(z):
    """(numerical rank at 1e-3 of the largest singular value, dims for 99 % of sum sigma^2)."""
    s = np.linalg.svd(z, compute_uv=False)
    energy = np.cumsum(s ** 2) / np.sum(s ** 2)
    return int(np.count_nonzero(s >= 1e-3 * s[0])), int(np.searchsorted(energy, 0.99) + 1)


def test_gelu_embedding_is_full_rank_and_linear_is_not():
    """Random weights, 4096 Gaussian inputs: a 2048-wide GELU layer over a 256-wide ReLU layer has
    rank 2048 at 1e-3 of its largest singular value; the linear one (same weights) is an affine
    map of 256 features, rank <= 257."""
    x = Tensor(np.random.default_rng(0).standard_normal((4096, 64)))
    gelu = MLP((64, 256, 2048), seed=0, dtype=np.float64, embedding="gelu")
    lin = MLP((64, 256, 2048), seed=0, dtype=np.float64, embedding="linear")
    z_gelu, z_lin = gelu(x).data, lin(x).data
    rank_gelu, dims_gelu = _rank_and_dims99(z_gelu)
    rank_lin, dims_lin = _rank_and_dims99(z_lin)
    assert rank_gelu == 2048
    assert rank_lin <= 257 and dims_lin <= 257
    assert dims_gelu > dims_lin
    # same weights: the GELU embedding is the GELU of the linear one
    np.testing.assert_allclose(z_gelu, Tensor(z_lin).gelu().data, rtol=1e-15, atol=0)


def test_gelu_embedding_gradients_match_finite_differences_and_torch():
    torch = pytest.importorskip("torch", reason="torch.nn.Sequential with nn.GELU() is the reference")
    rng = np.random.default_rng(8)
    mlp = MLP((4, 5, 6, 3), seed=1, dtype=np.float64, embedding="gelu")
    x = rng.standard_normal((5, 4))
    weights = rng.standard_normal((5, 3))
    mlp(Tensor(x)).backward(weights)

    def f():
        return float(np.sum(mlp(Tensor(x)).data * weights))
    grads = numeric_grads(f, [p.data for p in mlp.parameters()])
    for p, num in zip(mlp.parameters(), grads):
        assert rel_error(p.grad, num) < 1e-6
    net = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.ReLU(), torch.nn.Linear(5, 6),
                              torch.nn.ReLU(), torch.nn.Linear(6, 3), torch.nn.GELU()).double()
    with torch.no_grad():
        for layer, ours in zip([net[0], net[2], net[4]], mlp.layers):
            layer.weight.copy_(torch.tensor(ours.weight.data))
            layer.bias.copy_(torch.tensor(ours.bias.data))
    out = net(torch.tensor(x))
    out.backward(torch.tensor(weights))
    np.testing.assert_allclose(mlp(Tensor(x)).data, out.detach().numpy(), rtol=1e-12)
    for layer, ours in zip([net[0], net[2], net[4]], mlp.layers):
        np.testing.assert_allclose(ours.weight.grad, layer.weight.grad.numpy(), rtol=1e-10)
        np.testing.assert_allclose(ours.bias.grad, layer.bias.grad.numpy(), rtol=1e-10)


def test_gelu_embedding_has_no_all_zero_prefix_and_same_weights_as_relu():
    x = Tensor(np.random.default_rng(5).standard_normal((64, 10)).astype(np.float32))
    relu, gelu = MLP((10, 12, 6), seed=3), MLP((10, 12, 6), seed=3, embedding="gelu")
    assert all(np.array_equal(p.data, q.data) for p, q in zip(relu.parameters(), gelu.parameters()))
    z = gelu(x).data
    assert z.dtype == np.float32 and np.any(z < 0) and np.all(z != 0)
