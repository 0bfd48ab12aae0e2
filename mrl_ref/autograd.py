"""Reverse-mode automatic differentiation on NumPy arrays (micrograd, for tensors).

A `Tensor` holds ``data`` (an ndarray), ``grad`` (same shape, filled by `backward`), the
tensors it was computed from and a closure that applies the chain rule locally: given
g = dL/d(out), it adds dL/d(parent) = g . d(out)/d(parent) to each parent that needs a
gradient. `Tensor.backward` is a topological sort followed by a reverse walk calling those
closures; every op below defines its backward right beside its forward.

Broadcasting: for ``out = a + b`` with b of shape (1, n) broadcast to (B, n), the gradient of
b is g summed over the broadcast axes (`unbroadcast`), as in HIPS/autograd.

dtypes: float32 by default and kept through the graph (a Python scalar operand takes the
tensor's dtype; mixing a float32 and a float64 tensor raises TypeError instead of silently
upcasting). float64 is supported so gradients can be checked by finite differences.

Gradients accumulate (like PyTorch): set ``p.grad = None`` between steps. A backward closure
never writes into the gradient it receives, so one array may be shared by several nodes.
"""
import contextlib

import numpy as np
import scipy.special


_GRAD_ENABLED = True
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _as_labels(y, n):
    """Target labels as (n,) int64; ValueError / TypeError naming what is wrong (this module
    stands alone: it imports nothing from adanns_ref)."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"target must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"target must be integers, got dtype {arr.dtype}")
    if arr.shape[0] != n:
        raise ValueError(f"target has {arr.shape[0]} entries but {n} were expected")
    return arr.astype(np.int64, copy=False)


@contextlib.contextmanager
def no_grad():
    """Inside this block ops record no graph (inference: no closures, no saved inputs)."""
    global _GRAD_ENABLED
    previous = _GRAD_ENABLED
    _GRAD_ENABLED = False
    try:
        yield
    finally:
        _GRAD_ENABLED = previous


def unbroadcast(grad, shape):
    """Sum `grad` over the axes along which an operand of `shape` was broadcast."""
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1)
    return grad.sum(axis=axes, keepdims=True).reshape(shape)


def _as_float_array(data, dtype):
    arr = np.asarray(data)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"Tensor data must be real numbers, got dtype {arr.dtype}")
    if dtype is None:
        dtype = arr.dtype if arr.dtype in _FLOATS else np.dtype(np.float32)
    elif np.dtype(dtype) not in _FLOATS:
        raise TypeError(f"Tensor dtype must be float32 or float64, got {np.dtype(dtype)}")
    return arr.astype(dtype, copy=False)


class Tensor:
    """An ndarray that remembers how it was computed.

    data: ndarray float32 (default) or float64. grad: None until backward() reaches it.
    requires_grad=True marks a leaf (a parameter) whose gradient is wanted.
    """
    __array_priority__ = 100  # ndarray (op) Tensor defers to Tensor's reflected op

    def __init__(self, data, requires_grad=False, dtype=None):
        self.data = _as_float_array(data, dtype)
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._parents = ()
        self._backward = None

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    def numpy(self):
        return self.data

    def __repr__(self):
        return f"Tensor(shape={self.data.shape}, dtype={self.data.dtype}, requires_grad={self.requires_grad})"

    def _accumulate(self, g):
        # Never += into self.grad: it may be the very array another node holds.
        self.grad = g if self.grad is None else self.grad + g

    def backward(self, grad=None):
        """Fill .grad of every tensor this one depends on (that requires a gradient)."""
        if grad is None:
            if self.data.size != 1:
                raise ValueError(f"backward() without grad needs a scalar, got shape {self.data.shape}; "
                                 "pass grad= of that shape")
            grad = np.ones_like(self.data)
        order, seen, stack = [], set(), [(self, False)]
        while stack:  # iterative depth-first post-order: parents before children in `order`
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
            elif id(node) not in seen:
                seen.add(id(node))
                stack.append((node, True))
                stack.extend((p, False) for p in node._parents if p.requires_grad)
        for node in order:  # a second backward() through the same graph must not re-add old grads
            if node._backward is not None:
                node.grad = None
        self._accumulate(np.asarray(grad, dtype=self.data.dtype))
        for node in reversed(order):
            if node._backward is not None and node.grad is not None:
                node._backward(node.grad)

    # ---- element-wise arithmetic (broadcasting) ----

    def _operand(self, other):
        if isinstance(other, Tensor):
            if other.data.dtype != self.data.dtype:
                raise TypeError(f"dtype mismatch: {self.data.dtype} and {other.data.dtype}; "
                                "cast one Tensor explicitly (no silent upcasting)")
            return other
        if isinstance(other, (bool, np.bool_)) or not isinstance(other, (int, float, np.number, np.ndarray)):
            raise TypeError(f"cannot combine a Tensor with {type(other).__name__}")
        if isinstance(other, np.ndarray) and other.dtype.kind == "f" and other.dtype != self.data.dtype:
            raise TypeError(f"dtype mismatch: Tensor {self.data.dtype} and ndarray {other.dtype}")
        return Tensor(np.asarray(other, dtype=self.data.dtype))

    def __add__(self, other):
        a, b = self, self._operand(other)

        def backward(g):
            if a.requires_grad:
                a._accumulate(unbroadcast(g, a.data.shape))
            if b.requires_grad:
                b._accumulate(unbroadcast(g, b.data.shape))
        return _node(a.data + b.data, (a, b), backward)

    def __mul__(self, other):
        a, b = self, self._operand(other)

        def backward(g):
            if a.requires_grad:
                a._accumulate(unbroadcast(g * b.data, a.data.shape))
            if b.requires_grad:
                b._accumulate(unbroadcast(g * a.data, b.data.shape))
        return _node(a.data * b.data, (a, b), backward)

    def __truediv__(self, other):
        a, b = self, self._operand(other)

        def backward(g):
            if a.requires_grad:
                a._accumulate(unbroadcast(g / b.data, a.data.shape))
            if b.requires_grad:
                b._accumulate(unbroadcast(-g * a.data / (b.data * b.data), b.data.shape))
        return _node(a.data / b.data, (a, b), backward)

    def __neg__(self):
        a = self
        return _node(-a.data, (a,), lambda g: a._accumulate(-g))

    def __sub__(self, other):
        return self + (-self._operand(other))

    def __radd__(self, other):
        return self._operand(other) + self

    def __rsub__(self, other):
        return self._operand(other) - self

    def __rmul__(self, other):
        return self._operand(other) * self

    def __rtruediv__(self, other):
        return self._operand(other) / self

    # ---- linear algebra ----

    def __matmul__(self, other):
        a, b = self, self._operand(other)
        if a.data.ndim != 2 or b.data.ndim != 2:
            raise ValueError(f"matmul supports 2-D @ 2-D, got shapes {a.data.shape} and {b.data.shape}")

        def backward(g):
            if a.requires_grad:
                a._accumulate(g @ b.data.T)
            if b.requires_grad:
                b._accumulate(a.data.T @ g)
        return _node(a.data @ b.data, (a, b), backward)

    # ---- reductions and shape ----

    def sum(self, axis=None, keepdims=False):
        a = self

        def backward(g):
            if not keepdims and axis is not None:
                g = np.expand_dims(g, axis)
            a._accumulate(np.broadcast_to(g, a.data.shape).copy())
        return _node(np.asarray(a.data.sum(axis=axis, keepdims=keepdims)), (a,), backward)

    def mean(self, axis=None, keepdims=False):
        count = self.data.size if axis is None else int(np.prod([self.data.shape[i] for i in np.atleast_1d(axis)]))
        return self.sum(axis=axis, keepdims=keepdims) * (1.0 / count)

    def __getitem__(self, index):
        """Basic slicing (``t[:, :m]`` for a Matryoshka prefix) and integer-array indexing."""
        a = self
        parts = index if isinstance(index, tuple) else (index,)
        if any(isinstance(i, Tensor) for i in parts):
            raise TypeError("index with ints, slices or integer ndarrays, not a Tensor")
        advanced = any(isinstance(i, (list, np.ndarray)) for i in parts)

        def backward(g):
            full = np.zeros_like(a.data)
            if advanced:
                np.add.at(full, index, g)  # repeated indices must add up
            else:
                full[index] = g  # a basic slice touches each element once
            a._accumulate(full)
        return _node(a.data[index], (a,), backward)

    def reshape(self, *shape):
        a = self
        return _node(a.data.reshape(*shape), (a,), lambda g: a._accumulate(g.reshape(a.data.shape)))

    def transpose(self, axes=None):
        a = self
        inverse = None if axes is None else tuple(np.argsort(axes))
        return _node(a.data.transpose(axes), (a,), lambda g: a._accumulate(g.transpose(inverse)))

    @property
    def T(self):
        return self.transpose()

    # ---- non-linearities ----

    def relu(self):
        a = self
        out = np.maximum(a.data, 0)
        return _node(out, (a,), lambda g: a._accumulate(g * (out > 0)))

    def gelu(self):
        """GELU, exact erf form (torch.nn.functional.gelu with approximate="none"):

            gelu(x) = x Phi(x) = x (1 + erf(x / sqrt 2)) / 2
            d gelu / dx = Phi(x) + x phi(x),   phi(x) = exp(-x^2 / 2) / sqrt(2 pi)

        Not the tanh approximation 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). Unlike
        ReLU it is non-zero for every x != 0 (no dead units, no all-zero prefixes). erf is
        scipy.special.erf, evaluated in the tensor's dtype.
        """
        a = self
        x = a.data
        cdf = x.dtype.type(0.5) * (x.dtype.type(1) + scipy.special.erf(x * x.dtype.type(_INV_SQRT2)))
        out = x * cdf

        def backward(g):
            pdf = np.exp(x * x * x.dtype.type(-0.5)) * x.dtype.type(_INV_SQRT_2PI)
            a._accumulate(g * (cdf + x * pdf))
        return _node(out, (a,), backward)


_INV_SQRT2 = 1.0 / np.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)


def _node(data, parents, backward):
    """The output of an op; it joins the graph only when some parent needs a gradient."""
    out = Tensor.__new__(Tensor)
    out.data, out.grad, out._parents, out._backward = data, None, (), None
    out.requires_grad = False
    if _GRAD_ENABLED and any(p.requires_grad for p in parents):
        out.requires_grad, out._parents, out._backward = True, parents, backward
    return out


def linear(x, weight, bias=None):
    """Fused ``x @ weight.T + bias`` (nn.Linear): x (B, in), weight (out, in), bias (out,).

    One node instead of transpose + matmul + add: the gradients come out C-contiguous
    (dW = g.T @ x, dx = g @ W, db = sum_B g) and no (B, out) temporary is made for the bias.
    """
    if x.data.dtype != weight.data.dtype or (bias is not None and bias.data.dtype != weight.data.dtype):
        raise TypeError("linear: x, weight and bias must share one dtype")
    if x.data.ndim != 2 or weight.data.ndim != 2 or x.data.shape[1] != weight.data.shape[1]:
        raise ValueError(f"linear: x {x.data.shape} and weight {weight.data.shape} do not fit "
                         "(need x (B, in), weight (out, in))")
    out = x.data @ weight.data.T
    if bias is not None:
        out += bias.data

    def backward(g):
        if x.requires_grad:
            x._accumulate(g @ weight.data)
        if weight.requires_grad:
            weight._accumulate(g.T @ x.data)
        if bias is not None and bias.requires_grad:
            bias._accumulate(g.sum(axis=0))
    parents = (x, weight) if bias is None else (x, weight, bias)
    return _node(out, parents, backward)


def cross_entropy(logits, target, label_smoothing=0.0):
    """Mean over the batch of the label-smoothed cross-entropy, fused with log-softmax.

    PyTorch definition: with p = log_softmax(z) over C classes and
    t = (1 - eps) * onehot(y) + eps / C, the loss is mean_i( -sum_c t_ic p_ic ).
    logits: Tensor (B, C); target: int array (B,) in [0, C). Returns a 0-d Tensor.
    dL/dz = (softmax(z) - t) / B.
    """
    z = logits.data
    if z.ndim != 2 or z.shape[0] == 0:
        raise ValueError(f"logits must be (B, C) with B >= 1, got shape {z.shape}")
    n, c = z.shape
    y = _as_labels(target, n)
    if y.size and (y.min() < 0 or y.max() >= c):
        raise ValueError(f"target labels must lie in [0, {c}), got range [{y.min()}, {y.max()}]")
    eps = float(label_smoothing)
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    rows = np.arange(n)
    shifted = z - z.max(axis=1, keepdims=True)  # exp cannot overflow
    exp = np.exp(shifted)
    sum_exp = exp.sum(axis=1, keepdims=True)
    log_p = shifted - np.log(sum_exp)
    per_row = (1.0 - eps) * -log_p[rows, y] + (eps / c) * -log_p.sum(axis=1)
    loss = np.asarray(per_row.mean(), dtype=z.dtype)

    def backward(g):
        d = exp / sum_exp
        d -= eps / c
        d[rows, y] -= 1.0 - eps
        d *= g / n
        logits._accumulate(d)
    return _node(loss, (logits,), backward)


def dropout(x, p, rng):
    """Inverted dropout: zero each entry with probability p, scale the rest by 1 / (1 - p).

    rng: numpy Generator (the mask is drawn from it, so a seed fixes it). Not PyTorch's
    random stream: masks differ from torch.nn.Dropout, the distribution is the same.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout p must be in [0, 1), got {p}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"dropout needs a numpy Generator, got {type(rng).__name__}")
    if p == 0.0:
        return x
    keep = rng.random(x.data.shape, dtype=x.data.dtype) >= p
    scale = keep * x.data.dtype.type(1.0 / (1.0 - p))
    return _node(x.data * scale, (x,), lambda g: x._accumulate(g * scale))
