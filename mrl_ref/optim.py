"""Optimisers with PyTorch's update rules, and the MRL learning-rate schedule.

SGD (torch.optim.SGD, dampening 0, not Nesterov), for each parameter p with gradient g:
    d = g + wd * p                      (weight decay as L2 on the gradient)
    buf = d on the first step, else buf = mu * buf + d
    p = p - lr * buf                    (p = p - lr * d when mu = 0)

Adam (torch.optim.Adam, amsgrad off; weight decay is L2 on the gradient, not AdamW):
    d = g + wd * p;  m = b1 m + (1 - b1) d;  v = b2 v + (1 - b2) d^2;  t = step count
    p = p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

Weight decay applies to weight matrices only (parameters with ndim >= 2); biases (1-D) are
not decayed, as in the MRL recipe ("off for norm/bias parameters"). In PyTorch terms: two
parameter groups, weight_decay=wd for matrices and 0 for vectors.

Updates are in place on p.data, in p's dtype (float32 stays float32). Gradients are only
read, never written: a .grad array may be shared with other graph nodes.
"""
import numpy as np


def _check_params(params):
    params = list(params)
    if not params:
        raise ValueError("the optimiser got no parameters")
    for p in params:
        if not getattr(p, "requires_grad", False):
            raise TypeError(f"parameters must be Tensors with requires_grad=True, got {p!r}")
    return params


def _check_rate(value, name, high=None):
    value = float(value)
    if not np.isfinite(value) or value < 0 or (high is not None and value >= high):
        bound = f"[0, {high})" if high is not None else ">= 0"
        raise ValueError(f"{name} must be finite and in {bound}, got {value}")
    return value


class SGD:
    """SGD with momentum mu and weight decay wd (PyTorch semantics, see module docstring)."""

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        self.params = _check_params(params)
        self.lr = _check_rate(lr, "lr")
        self.momentum = _check_rate(momentum, "momentum", 1.0)
        self.weight_decay = _check_rate(weight_decay, "weight_decay")
        self.buffers = [None] * len(self.params)

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def step(self):
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            d = p.grad
            if self.weight_decay and p.data.ndim >= 2:
                d = d + self.weight_decay * p.data
            if self.momentum:
                if self.buffers[i] is None:
                    self.buffers[i] = np.array(d, dtype=p.data.dtype, copy=True)
                else:
                    self.buffers[i] *= self.momentum
                    self.buffers[i] += d
                d = self.buffers[i]
            p.data -= self.lr * d


class Adam:
    """Adam with betas (b1, b2), eps and L2 weight decay (PyTorch semantics)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        self.params = _check_params(params)
        self.lr = _check_rate(lr, "lr")
        if len(betas) != 2:
            raise ValueError(f"betas must be a pair (b1, b2), got {betas!r}")
        self.beta1 = _check_rate(betas[0], "beta1", 1.0)
        self.beta2 = _check_rate(betas[1], "beta2", 1.0)
        self.eps = _check_rate(eps, "eps")
        self.weight_decay = _check_rate(weight_decay, "weight_decay")
        self.m = [np.zeros_like(p.data) for p in self.params]
        self.v = [np.zeros_like(p.data) for p in self.params]
        self.t = 0

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def step(self):
        self.t += 1
        step_size = self.lr / (1.0 - self.beta1 ** self.t)
        sqrt_bias2 = (1.0 - self.beta2 ** self.t) ** 0.5
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            d = p.grad
            if self.weight_decay and p.data.ndim >= 2:
                d = d + self.weight_decay * p.data
            m += (1.0 - self.beta1) * (d - m)
            v *= self.beta2
            v += (1.0 - self.beta2) * (d * d)
            denom = np.sqrt(v)
            denom /= sqrt_bias2
            denom += self.eps
            p.data -= step_size * (m / denom)


def warmup_linear_lr(step, total_steps, warmup_steps, peak):
    """The MRL/FFCV schedule per step: linear warm-up to `peak`, then linear decay to 0.

    lr(s) = peak * min((s + 1) / W, (T - s) / (T - W)) for s = 0 .. T-1 (W = warmup_steps,
    T = total_steps; the first factor is dropped when W = 0). The peak is reached on the
    last warm-up step; no step has lr exactly 0 (the FFCV recipe starts at 1e-4 * peak).
    """
    if not 0 <= warmup_steps < total_steps or not 0 <= step < total_steps:
        raise ValueError(f"need 0 <= warmup_steps ({warmup_steps}) < total_steps ({total_steps}) "
                         f"and 0 <= step ({step}) < total_steps")
    decay = (total_steps - step) / (total_steps - warmup_steps)
    if warmup_steps == 0:
        return peak * decay
    return peak * min((step + 1) / warmup_steps, decay)
