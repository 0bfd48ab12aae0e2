"""Matryoshka classification heads and the Matryoshka loss (Kusupati et al., NeurIPS 2022).

Nesting M = (m_1 < m_2 < ... < m_G = D), embedding z (B, D), C classes.

- MRL (separate heads, ``tied=False``): one Linear per size on the prefix,
  logits_g = z[:, :m_g] @ W_g.T + b_g, W_g (C, m_g), b_g (C,), init fan_in = m_g.
- MRL-E (weight-tied, ``tied=True``): one W (C, D) and ONE shared bias b (C,),
  logits_g = z[:, :m_g] @ W[:, :m_g].T + b, init fan_in = D.
- FF (fixed feature, "rigid"): `FixedFeatureHead`, one Linear on a d-dim embedding of an
  independently trained model.

Loss: L = sum_g c_g * CE_eps(logits_g, y), summed over g (not averaged), each CE a mean
over the batch with PyTorch label smoothing (target (1 - eps) onehot + eps / C); c_g = 1
by default, eps = 0.1 in the MRL recipe.
"""
import numpy as np

from adanns_ref.core.validate import as_int, as_labels

from .autograd import cross_entropy, linear
from .nn import Linear, as_generator, check_dtype


def check_nesting(nesting, full_dim=None):
    """Validate a nesting list: non-empty, positive ints, strictly increasing, last == full_dim."""
    if isinstance(nesting, (str, bytes)) or not hasattr(nesting, "__len__"):
        raise TypeError(f"nesting must be a list of ints like [8, 16, 32], got {nesting!r}")
    sizes = [as_int(m, "nesting entry") for m in nesting]
    if not sizes:
        raise ValueError("nesting is empty; give the prefix sizes, e.g. [8, 16, ..., D]")
    if sizes[0] < 1:
        raise ValueError(f"nesting sizes must be positive, got {sizes}")
    if any(b <= a for a, b in zip(sizes, sizes[1:])):
        raise ValueError(f"nesting must be strictly increasing, got {sizes}; sort it and drop duplicates")
    if full_dim is not None and sizes[-1] != full_dim:
        raise ValueError(f"nesting must end at the embedding dim D={full_dim}, got last size {sizes[-1]}")
    return tuple(sizes)


class MatryoshkaHeads:
    """G linear classifiers on nested prefixes of a D-dim embedding.

    __call__(z: Tensor (B, D)) -> list of G Tensors (B, C). Parameters float32 unless dtype.
    """

    def __init__(self, nesting, num_classes, tied=False, seed=0, dtype=np.float32):
        self.nesting = check_nesting(nesting)
        self.dim = self.nesting[-1]
        self.num_classes = as_int(num_classes, "num_classes", 2)
        self.tied = bool(tied)
        dtype = check_dtype(dtype)
        rng = as_generator(seed=seed)
        if self.tied:
            self.layers = [Linear(self.dim, self.num_classes, rng=rng, dtype=dtype)]
        else:
            self.layers = [Linear(m, self.num_classes, rng=rng, dtype=dtype) for m in self.nesting]

    def __call__(self, z):
        if z.data.ndim != 2 or z.data.shape[1] != self.dim:
            raise ValueError(f"embedding must be (B, {self.dim}), got shape {z.data.shape}")
        if self.tied:
            head = self.layers[0]
            return [linear(z[:, :m], head.weight[:, :m], head.bias) for m in self.nesting]
        return [linear(z[:, :m], head.weight, head.bias) for m, head in zip(self.nesting, self.layers)]

    def parameters(self):
        return [p for layer in self.layers for p in layer.parameters()]


class FixedFeatureHead:
    """One Linear(d, C) on a rigid d-dim embedding; __call__ returns a one-element list
    so the same loss and training loop serve MRL and FF."""

    def __init__(self, d, num_classes, seed=0, dtype=np.float32):
        self.dim = as_int(d, "d", 1)
        self.nesting = (self.dim,)
        self.num_classes = as_int(num_classes, "num_classes", 2)
        self.layers = [Linear(self.dim, self.num_classes, seed=seed, dtype=check_dtype(dtype))]

    def __call__(self, z):
        if z.data.ndim != 2 or z.data.shape[1] != self.dim:
            raise ValueError(f"embedding must be (B, {self.dim}), got shape {z.data.shape}")
        return [self.layers[0](z)]

    def parameters(self):
        return self.layers[0].parameters()


def check_weights(weights, num_sizes):
    """Relative importance c_g per size: None -> all 1; else G finite non-negative numbers."""
    if weights is None:
        return (1.0,) * num_sizes
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.shape[0] != num_sizes:
        raise ValueError(f"weights must have one entry per nesting size ({num_sizes}), got {np.shape(weights)}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"weights must be finite and >= 0, got {list(w)}")
    return tuple(float(v) for v in w)


def matryoshka_ce_loss(logits_per_size, y, weights=None, label_smoothing=0.1):
    """L = sum_g c_g * CE_ls(logits_g, y) as a 0-d Tensor.

    logits_per_size: list of G Tensors (B, C); y: int labels (B,) in [0, C).
    """
    if not isinstance(logits_per_size, (list, tuple)) or not logits_per_size:
        raise ValueError("logits_per_size must be a non-empty list of (B, C) Tensors, one per size")
    n, c = logits_per_size[0].data.shape
    for g, logits in enumerate(logits_per_size):
        if logits.data.shape != (n, c):
            raise ValueError(f"logits {g} has shape {logits.data.shape}, expected {(n, c)} like logits 0")
    y = as_labels(y, "y", n)
    if y.size and (y.min() < 0 or y.max() >= c):
        raise ValueError(f"labels must be ints in [0, {c}), got range [{y.min()}, {y.max()}]")
    c_g = check_weights(weights, len(logits_per_size))
    total = None
    for weight, logits in zip(c_g, logits_per_size):
        term = cross_entropy(logits, y, label_smoothing)
        if weight != 1.0:  # x * 1.0 == x exactly; skipping saves a node per size
            term = term * weight
        total = term if total is None else total + term
    return total
