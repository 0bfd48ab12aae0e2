"""Every autograd op against central finite differences in float64, plus graph mechanics."""
import itertools

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mrl_ref.autograd import Tensor, cross_entropy, dropout, linear, no_grad, unbroadcast

SETTINGS = settings(max_examples=25, deadline=None)


def numeric_grads(f, arrays, h=1e-6):
    """Central differences of the scalar f() w.r.t. every entry of every array (in place)."""
    grads = []
    for a in arrays:
        g = np.zeros_like(a)
        for idx in itertools.product(*map(range, a.shape)):
            old = a[idx]
            a[idx] = old + h
            plus = f()
            a[idx] = old - h
            minus = f()
            a[idx] = old
            g[idx] = (plus - minus) / (2 * h)
        grads.append(g)
    return grads


def rel_error(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), 1e-8)


def check_op(build, *arrays, seed=0):
    """Compare autograd gradients of <build(*inputs), R> with finite differences (float64)."""
    arrays = [np.array(a, dtype=np.float64) for a in arrays]
    tensors = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    out = build(*tensors)
    weights = np.random.default_rng(seed).standard_normal(out.data.shape)
    out.backward(weights)

    def f():
        return float(np.sum(build(*[Tensor(a) for a in arrays]).data * weights))
    for t, num in zip(tensors, numeric_grads(f, arrays)):
        assert t.grad is not None and t.grad.shape == t.data.shape
        assert rel_error(t.grad, num) < 1e-6, (t.grad, num)


def rand(rng, shape, low=-2.0, high=2.0):
    return rng.uniform(low, high, shape)


shape_pairs = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=4)


@SETTINGS
@given(shapes=shape_pairs, seed=st.integers(0, 2**31))
def test_add_sub_mul_broadcasting(shapes, seed):
    rng = np.random.default_rng(seed)
    a, b = (rand(rng, s) for s in shapes.input_shapes)
    check_op(lambda x, y: x + y, a, b, seed=seed)
    check_op(lambda x, y: x - y, a, b, seed=seed)
    check_op(lambda x, y: x * y, a, b, seed=seed)


@SETTINGS
@given(shapes=shape_pairs, seed=st.integers(0, 2**31))
def test_div_broadcasting(shapes, seed):
    rng = np.random.default_rng(seed)
    a = rand(rng, shapes.input_shapes[0])
    b = rng.uniform(0.5, 2.0, shapes.input_shapes[1]) * rng.choice([-1.0, 1.0], shapes.input_shapes[1])
    check_op(lambda x, y: x / y, a, b, seed=seed)


@SETTINGS
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=4), seed=st.integers(0, 2**31))
def test_scalar_operands_and_neg(shape, seed):
    a = rand(np.random.default_rng(seed), shape)
    check_op(lambda x: 2.5 - x * 3.0 + 1.0, a, seed=seed)
    check_op(lambda x: 1.5 / (x * x + 1.0), a, seed=seed)
    check_op(lambda x: -x, a, seed=seed)


@SETTINGS
@given(n=st.integers(1, 5), k=st.integers(1, 5), m=st.integers(1, 5), seed=st.integers(0, 2**31))
def test_matmul(n, k, m, seed):
    rng = np.random.default_rng(seed)
    check_op(lambda x, y: x @ y, rand(rng, (n, k)), rand(rng, (k, m)), seed=seed)


@SETTINGS
@given(n=st.integers(1, 5), i=st.integers(1, 5), o=st.integers(1, 5), seed=st.integers(0, 2**31))
def test_linear_fused(n, i, o, seed):
    rng = np.random.default_rng(seed)
    x, w, b = rand(rng, (n, i)), rand(rng, (o, i)), rand(rng, (o,))
    check_op(linear, x, w, b, seed=seed)
    check_op(lambda x, w: linear(x, w), x, w, seed=seed)
    out = linear(Tensor(x), Tensor(w), Tensor(b)).data
    np.testing.assert_allclose(out, x @ w.T + b, rtol=1e-12)


@SETTINGS
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=4), keepdims=st.booleans(),
       seed=st.integers(0, 2**31), data=st.data())
def test_sum_mean_over_axes(shape, keepdims, seed, data):
    a = rand(np.random.default_rng(seed), shape)
    axis = data.draw(st.one_of(st.none(), st.integers(-len(shape), len(shape) - 1),
                               st.lists(st.integers(0, len(shape) - 1), min_size=1, unique=True).map(tuple)))
    check_op(lambda x: x.sum(axis=axis, keepdims=keepdims), a, seed=seed)
    check_op(lambda x: x.mean(axis=axis, keepdims=keepdims), a, seed=seed)
    np.testing.assert_allclose(Tensor(a).mean(axis=axis, keepdims=keepdims).data,
                               a.mean(axis=axis, keepdims=keepdims), rtol=1e-12)


@SETTINGS
@given(rows=st.integers(1, 5), cols=st.integers(1, 6), seed=st.integers(0, 2**31), data=st.data())
def test_getitem_prefix_slices_and_fancy(rows, cols, seed, data):
    a = rand(np.random.default_rng(seed), (rows, cols))
    m = data.draw(st.integers(1, cols))
    check_op(lambda x: x[:, :m], a, seed=seed)
    check_op(lambda x: x[1:, ::2], a, seed=seed)
    idx = np.array(data.draw(st.lists(st.integers(0, rows - 1), min_size=1, max_size=6)))
    check_op(lambda x: x[idx], a, seed=seed)  # repeated rows must add their gradients


@SETTINGS
@given(shape=hnp.array_shapes(min_dims=2, max_dims=3, max_side=4), seed=st.integers(0, 2**31))
def test_reshape_transpose(shape, seed):
    a = rand(np.random.default_rng(seed), shape)
    check_op(lambda x: x.reshape(-1), a, seed=seed)
    check_op(lambda x: x.T, a, seed=seed)
    axes = tuple(np.random.default_rng(seed).permutation(len(shape)))
    check_op(lambda x: x.transpose(axes), a, seed=seed)


@SETTINGS
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=4), seed=st.integers(0, 2**31))
def test_relu_away_from_the_kink(shape, seed):
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.01, 2.0, shape) * rng.choice([-1.0, 1.0], shape)
    check_op(lambda x: x.relu(), a, seed=seed)
    assert np.all(Tensor(a).relu().data >= 0)


@SETTINGS
@given(n=st.integers(1, 5), c=st.integers(2, 5), eps=st.sampled_from([0.0, 0.1, 0.5]),
       seed=st.integers(0, 2**31))
def test_cross_entropy_with_label_smoothing(n, c, eps, seed):
    rng = np.random.default_rng(seed)
    z, y = rand(rng, (n, c), -4, 4), rng.integers(0, c, n)
    check_op(lambda t: cross_entropy(t, y, eps), z, seed=seed)
    # direct definition: -mean_i sum_c t_ic log_softmax(z)_ic
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    target = (1 - eps) * np.eye(c)[y] + eps / c
    assert float(cross_entropy(Tensor(z), y, eps).data) == pytest.approx(-(target * log_p).sum(1).mean(), rel=1e-12)


def test_cross_entropy_is_stable_for_huge_logits():
    z = Tensor(np.array([[1e4, 0.0, -1e4]], dtype=np.float32), requires_grad=True)
    loss = cross_entropy(z, [0], 0.1)
    loss.backward()
    assert np.isfinite(loss.data) and np.all(np.isfinite(z.grad))


@SETTINGS
@given(shape=hnp.array_shapes(min_dims=1, max_dims=2, max_side=5), p=st.sampled_from([0.0, 0.3, 0.7]),
       seed=st.integers(0, 2**31))
def test_dropout_with_a_fixed_mask(shape, p, seed):
    a = rand(np.random.default_rng(seed), shape)
    check_op(lambda x: dropout(x, p, np.random.default_rng(seed)), a, seed=seed)
    out = dropout(Tensor(a), p, np.random.default_rng(seed)).data
    kept = out != 0
    np.testing.assert_allclose(out[kept], a[kept] / (1 - p), rtol=1e-12)


def test_dropout_rate_and_determinism():
    x = Tensor(np.ones((200, 100), dtype=np.float32))
    a = dropout(x, 0.3, np.random.default_rng(5)).data
    b = dropout(x, 0.3, np.random.default_rng(5)).data
    assert a.dtype == np.float32 and np.array_equal(a, b)
    assert abs(np.mean(a == 0) - 0.3) < 0.02


def test_composite_expression_and_shared_subexpressions():
    rng = np.random.default_rng(1)
    x, w, v = rand(rng, (4, 3)), rand(rng, (3, 5)), rand(rng, (1, 5))
    # h is used twice: the gradients of both uses must add up
    check_op(lambda x, w, v: ((x @ w) * (x @ w) + v).relu()[:, :3] * (x @ w)[:, 1:4], x, w, v)
    check_op(lambda x: x + x * x, x)


def test_unbroadcast_sums_the_broadcast_axes():
    g = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(unbroadcast(g, (3, 1)), g.sum(axis=(0, 2))[:, None])
    np.testing.assert_array_equal(unbroadcast(g, ()), g.sum())
    assert unbroadcast(g, (2, 3, 4)) is g


def test_float32_is_kept_through_the_graph():
    rng = np.random.default_rng(0)
    x = Tensor(rng.random((4, 3), dtype=np.float32), requires_grad=True)
    w = Tensor(rng.random((2, 3), dtype=np.float32), requires_grad=True)
    h = linear(x, w).relu() * 0.5 + 1.0
    loss = cross_entropy(h - h.mean(axis=0), [0, 1, 1, 0], 0.1)
    loss.backward()
    assert loss.data.dtype == np.float32
    assert x.grad.dtype == np.float32 and w.grad.dtype == np.float32
    assert Tensor([1, 2]).dtype == np.float32  # ints become float32, not float64


def test_mixing_dtypes_raises():
    a = Tensor(np.ones(3, dtype=np.float32))
    b = Tensor(np.ones(3, dtype=np.float64))
    with pytest.raises(TypeError, match="dtype mismatch"):
        a + b
    with pytest.raises(TypeError, match="dtype mismatch"):
        a * np.ones(3, dtype=np.float64)
    with pytest.raises(TypeError, match="cannot combine"):
        a + "1"
    with pytest.raises(TypeError, match="float32 or float64"):
        Tensor([1.0], dtype=np.int32)


def test_no_grad_records_nothing():
    w = Tensor(np.ones((2, 2)), requires_grad=True)
    with no_grad():
        out = (w @ w).sum()
    assert not out.requires_grad and out._parents == ()
    out2 = (w @ w).sum()
    assert out2.requires_grad


def test_gradients_accumulate_until_reset():
    w = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    (w * 3.0).sum().backward()
    (w * 3.0).sum().backward()
    np.testing.assert_array_equal(w.grad, [6.0, 6.0])


def test_backward_twice_through_one_graph_adds_leaf_gradients_once_per_call():
    w = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    loss = ((w * w) * 3.0).sum()
    loss.backward()
    loss.backward()
    np.testing.assert_array_equal(w.grad, 2 * 6.0 * w.data)


def test_constant_inputs_get_no_gradient():
    x = Tensor(np.ones((2, 3)))
    w = Tensor(np.ones((4, 3)), requires_grad=True)
    linear(x, w).sum().backward()
    assert x.grad is None and w.grad is not None


def test_backward_of_a_non_scalar_needs_grad():
    t = Tensor(np.ones((2, 2)), requires_grad=True) * 2.0
    with pytest.raises(ValueError, match="scalar"):
        t.backward()


def test_bad_inputs():
    z = Tensor(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        cross_entropy(z, [0, 1, 4])
    with pytest.raises(ValueError, match="label_smoothing"):
        cross_entropy(z, [0, 1, 2], 1.5)
    with pytest.raises(ValueError, match="3 entries but|has 2 entries"):
        cross_entropy(z, [0, 1])
    with pytest.raises(ValueError, match="2-D"):
        Tensor(np.ones(3)) @ Tensor(np.ones((3, 2)))
    with pytest.raises(ValueError, match="do not fit"):
        linear(Tensor(np.ones((2, 3))), Tensor(np.ones((4, 5))))
    with pytest.raises(ValueError, match="dropout p"):
        dropout(z, 1.0, np.random.default_rng(0))
    with pytest.raises(TypeError, match="Generator"):
        dropout(z, 0.5, 0)
    with pytest.raises(TypeError, match="real numbers"):
        Tensor(np.array(["a"]))


@SETTINGS
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=4), seed=st.integers(0, 2**31))
def test_gelu_matches_finite_differences(shape, seed):
    """GELU is smooth everywhere (no kink to avoid): finite differences over [-4, 4]."""
    a = rand(np.random.default_rng(seed), shape, -4.0, 4.0)
    check_op(lambda x: x.gelu(), a, seed=seed)


def test_gelu_values_at_known_points():
    """x Phi(x): 0 at 0, Phi(1) = 0.841344746..., odd part x/2: gelu(x) - gelu(-x) = x."""
    x = np.array([-3.0, -1.0, 0.0, 1.0, 3.0])
    out = Tensor(x).gelu().data
    np.testing.assert_allclose(out[3], 0.8413447460685429, rtol=1e-15)
    assert out[2] == 0.0 and np.all(out[x != 0] != 0)
    np.testing.assert_allclose(out[::-1][:2] - out[:2], x[::-1][:2], rtol=1e-15)


@pytest.mark.parametrize("dtype, rtol, atol", [(np.float64, 1e-13, 1e-15), (np.float32, 1e-5, 2e-6)])
def test_gelu_matches_torch_exact_form(dtype, rtol, atol):
    """torch.nn.functional.gelu(approximate="none") (the erf form) on the same inputs, values and
    gradients; the tanh approximation differs by up to ~5e-4 and is not what we compute."""
    torch = pytest.importorskip("torch", reason="torch.nn.functional.gelu is the reference")
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((64, 33)) * 3).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    t = Tensor(x, requires_grad=True)
    out = t.gelu()
    out.backward(g)
    assert out.dtype == dtype and t.grad.dtype == dtype
    xt = torch.tensor(x, requires_grad=True)
    ref = torch.nn.functional.gelu(xt, approximate="none")
    ref.backward(torch.tensor(g))
    np.testing.assert_allclose(out.data, ref.detach().numpy(), rtol=rtol, atol=atol)
    np.testing.assert_allclose(t.grad, xt.grad.numpy(), rtol=rtol, atol=atol)
    tanh = torch.nn.functional.gelu(torch.tensor(x.astype(np.float64)), approximate="tanh").numpy()
    assert np.abs(tanh - out.data).max() > 1e-4  # the two forms are distinguishable here
