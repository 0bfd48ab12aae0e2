"""Layers for the MRL backbone: `Linear` (PyTorch nn.Linear init) and a ReLU `MLP`.

Linear(in, out): y = x @ W.T + b with W (out, in), b (out,), both initialised
U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in. That is PyTorch's nn.Linear default
(kaiming_uniform_(a=sqrt(5)) gives the same bound for W). Same distribution, not the same
numbers: we draw from a numpy Generator, PyTorch from its own stream.

MLP(sizes, embedding): sizes = (in, h_1, ..., h_L); L Linear layers, each hidden one followed
by ReLU. The output is the embedding z (B, h_L):
- embedding="relu" (default): the last layer is followed by ReLU too, z >= 0 (the analogue of
  ResNet-50's pooled post-ReLU features in the MRL paper). A unit whose pre-activation is
  negative on every input is dead, and a short prefix of dead units is all zero for that row
  (7-9 % of rows at a 2-dim prefix in the full preset);
- embedding="linear": the last layer is linear, z = h_{L-1} W_L^T + b_L (pre-activation), so no
  prefix collapses to zero. z is an affine map of h_{L-1}: its rank is at most h_{L-1} + 1
  (h_{L-1} from the weights, 1 from the bias), e.g. <= 257 for a 2048-dim embedding over a
  256-wide hidden layer: "D = 2048" is then nominal;
- embedding="gelu": z = GELU(h_{L-1} W_L^T + b_L), exact erf form x Phi(x) (`Tensor.gelu`,
  torch's approximate="none"). GELU is non-zero for every non-zero input (no dead units, no
  all-zero prefixes) and non-linear, so the embedding is not confined to an (h_{L-1} + 1)-dim
  subspace: on random weights, 2048 GELU units over a 256-wide ReLU layer have numerical rank
  2048 at 1e-3 of the largest singular value (tests/test_nn.py).
"""
import numpy as np

from adanns_ref.core.validate import as_int

from .autograd import Tensor, dropout, linear


def as_generator(rng=None, seed=None):
    """A numpy Generator from either an existing Generator or an integer seed (not both)."""
    if rng is not None and seed is not None:
        raise ValueError("pass either rng or seed, not both")
    if rng is not None:
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy Generator, got {type(rng).__name__}")
        return rng
    if seed is None:
        raise ValueError("a seed (int) or rng (numpy Generator) is required: every random choice is seeded")
    return np.random.default_rng(as_int(seed, "seed", 0))


def check_dtype(dtype):
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


class Linear:
    """y = x @ W.T + b. weight: Tensor (out, in), bias: Tensor (out,), dtype float32 by default."""

    def __init__(self, in_features, out_features, rng=None, seed=None, dtype=np.float32, init_fan_in=None):
        self.in_features = as_int(in_features, "in_features", 1)
        self.out_features = as_int(out_features, "out_features", 1)
        dtype = check_dtype(dtype)
        rng = as_generator(rng, seed)
        fan_in = self.in_features if init_fan_in is None else as_int(init_fan_in, "init_fan_in", 1)
        bound = 1.0 / np.sqrt(fan_in)
        self.weight = Tensor(rng.uniform(-bound, bound, (self.out_features, self.in_features)).astype(dtype),
                             requires_grad=True)
        self.bias = Tensor(rng.uniform(-bound, bound, self.out_features).astype(dtype), requires_grad=True)

    def __call__(self, x):
        return linear(x, self.weight, self.bias)

    def parameters(self):
        return [self.weight, self.bias]


EMBEDDINGS = ("relu", "linear", "gelu")


class MLP:
    """ReLU MLP backbone; __call__ returns the embedding (B, sizes[-1]), post-ReLU when
    embedding="relu", the last layer's pre-activation when embedding="linear", its GELU when
    embedding="gelu".

    dropout: probability applied after every hidden ReLU except the embedding's, only when
    a Generator is passed to __call__ (training); inference passes none.
    """

    def __init__(self, sizes, activation="relu", dropout=0.0, seed=0, dtype=np.float32, embedding="relu"):
        sizes = tuple(sizes)
        if len(sizes) < 2:
            raise ValueError(f"sizes must list at least (in, out), got {sizes!r}")
        self.sizes = tuple(as_int(s, "layer size", 1) for s in sizes)
        if activation != "relu":
            raise ValueError(f"activation must be 'relu' (the hidden layers are ReLU; choose the embedding "
                             f"with embedding=), got {activation!r}")
        self.activation = activation
        if embedding not in EMBEDDINGS:
            raise ValueError(f"embedding must be one of {EMBEDDINGS}, got {embedding!r}")
        self.embedding = embedding
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.dropout = float(dropout)
        rng = as_generator(seed=seed)
        self.layers = [Linear(a, b, rng=rng, dtype=dtype) for a, b in zip(self.sizes[:-1], self.sizes[1:])]

    def __call__(self, x, rng=None):
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last or self.embedding == "relu":
                x = x.relu()
            elif self.embedding == "gelu":
                x = x.gelu()
            if rng is not None and self.dropout > 0 and i < len(self.layers) - 1:
                x = dropout(x, self.dropout, rng)
        return x

    def parameters(self):
        return [p for layer in self.layers for p in layer.parameters()]
