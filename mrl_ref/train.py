"""Training Matryoshka (MRL, MRL-E) and fixed-feature (FF) models on flat inputs.

Model: x (B, in) -> MLP in-h_1-...-h_L-D with ReLU after every hidden layer -> embedding z
(B, D), post-ReLU (z >= 0, embedding="relu", the default), the last layer's pre-activation
(embedding="linear", no all-zero prefixes, rank <= h_L + 1) or its GELU (embedding="gelu", full
rank; see `mrl_ref.nn`) -> heads: MRL/MRL-E give G logits
(one per nesting size m_g), FF gives one.
Loss: L = sum_g c_g CE_eps(logits_g, y) (see `heads.matryoshka_ce_loss`).

Recipe (MRL paper, scaled down): SGD momentum 0.9, weight decay 1e-4 on weight matrices
only, label smoothing 0.1, linear warm-up to the peak lr over `warmup` epochs then linear
decay to 0, updated every step. Mini-batches are drawn from a seeded permutation per epoch
(the last, smaller batch is kept). Same inputs and seed -> bit-identical weights for a fixed
BLAS kernel, at any thread count.

Threads: the training steps run their GEMMs on one BLAS thread. A multi-threaded OpenBLAS
splits the small GEMMs of a batch differently per thread count (other bits) and its idle
threads spin between GEMMs while the main thread runs the element-wise ops: beside one busy
process, 3 epochs (MLP 784-512-512-256, 6,000 rows) took 2.6x longer than alone with 2 BLAS
threads, and no longer than alone with 1 (1.20 s alone on an idle 2-core machine, 0.90 s
with 2 threads). Inference (`embed`, `logits`) keeps the caller's BLAS threads.

Seeds: one integer `seed` is expanded by numpy's SeedSequence into independent streams for
backbone init, head init, shuffling and dropout, so changing e.g. dropout leaves the
initial weights unchanged.
"""
import re
import sys
import time

import numpy as np

from adanns_ref.core.persist import load_npz, save_npz
from adanns_ref.core.threads import blas_single_thread
from adanns_ref.core.validate import as_float32_matrix, as_int, as_labels

from .autograd import Tensor, no_grad
from .heads import FixedFeatureHead, MatryoshkaHeads, check_nesting, check_weights, matryoshka_ce_loss
from .nn import MLP
from .optim import SGD, Adam, warmup_linear_lr

_KINDS = ("mrl", "mrl-e", "ff")
_FILE_KIND, _FILE_VERSION = "MRLModel", 1


class MRLModel:
    """A trained backbone + heads. kind: "mrl" (separate heads), "mrl-e" (tied), "ff" (rigid).

    .nesting: sizes (m_1, ..., m_G) the heads read ((d,) for FF); .dim = D; .history: one
    dict per epoch (loss, train_acc per size, lr, seconds, and val_acc when validated).
    """

    def __init__(self, kind, sizes, nesting, num_classes, dropout=0.0, seed=0, embedding="relu"):
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
        self.kind = kind
        body_seed, head_seed, self._shuffle_seed, self._dropout_seed = np.random.SeedSequence(
            as_int(seed, "seed", 0)).generate_state(4)
        self.body = MLP(sizes, dropout=dropout, seed=body_seed, embedding=embedding)
        self.nesting = check_nesting(nesting, self.body.sizes[-1])
        if kind == "ff":
            self.heads = FixedFeatureHead(self.nesting[-1], num_classes, seed=head_seed)
        else:
            self.heads = MatryoshkaHeads(self.nesting, num_classes, tied=(kind == "mrl-e"), seed=head_seed)
        self.num_classes = self.heads.num_classes
        self.seed = int(seed)
        self.history = []
        self.config = {}

    @property
    def dim(self):
        return self.nesting[-1]

    @property
    def in_dim(self):
        return self.body.sizes[0]

    def parameters(self):
        return self.body.parameters() + self.heads.parameters()

    def embed(self, X, batch_size=4096):
        """Embeddings z (post-ReLU or linear, as built): X (n, in) -> float32 (n, D), no graph."""
        X = as_float32_matrix(X, "X", d=self.in_dim)
        batch_size = as_int(batch_size, "batch_size", 1)
        out = np.empty((X.shape[0], self.dim), dtype=np.float32)
        with no_grad():
            for s in range(0, X.shape[0], batch_size):
                out[s:s + batch_size] = self.body(Tensor(X[s:s + batch_size])).data
        return out

    def logits(self, X, batch_size=4096):
        """Per-size logits: list of G float32 arrays (n, C), in nesting order."""
        Z = self.embed(X, batch_size)
        with no_grad():
            return [lg.data for lg in self.heads(Tensor(Z))]

    # ---- persistence (versioned .npz, no pickle) ----

    def save(self, path):
        arrays = {f"param_{i}": p.data for i, p in enumerate(self.parameters())}
        epochs = len(self.history)
        arrays["history_loss"] = np.array([h["loss"] for h in self.history], dtype=np.float64)
        arrays["history_train_acc"] = np.array([h["train_acc"] for h in self.history],
                                               dtype=np.float64).reshape(epochs, len(self.nesting))
        arrays["history_lr"] = np.array([h["lr"] for h in self.history], dtype=np.float64)
        arrays["history_seconds"] = np.array([h["seconds"] for h in self.history], dtype=np.float64)
        has_val = bool(self.history) and "val_acc" in self.history[0]
        if has_val:
            arrays["history_val_acc"] = np.array([h["val_acc"] for h in self.history], dtype=np.float64)
        params = {"kind": self.kind, "sizes": list(self.body.sizes), "nesting": list(self.nesting),
                  "num_classes": self.num_classes, "dropout": self.body.dropout, "seed": self.seed,
                  "embedding": self.body.embedding, "config": self.config, "has_val": has_val}
        save_npz(path, _FILE_KIND, _FILE_VERSION, params, arrays)

    @classmethod
    def load(cls, path):
        """Read a file written by save(); any inconsistency raises ValueError."""
        params, arrays = load_npz(path, _FILE_KIND, _FILE_VERSION, {
            "history_loss": (np.float64, 1), "history_train_acc": (np.float64, 2),
            "history_lr": (np.float64, 1), "history_seconds": (np.float64, 1)},
            optional=("history_val_acc",), extra=_PARAM_NAME)
        # building the model allocates its weights: first check that the sizes in params describe
        # exactly the weight arrays the file stores, so a lying header cannot allocate more
        shapes = _weight_shapes(params)
        if shapes is None:
            raise ValueError(f"{path}: sizes and nesting must be lists of ints >= 1 and num_classes an "
                             f"int >= 1, got {repr(_shape_params(params))[:300]}")
        stored = [k for k in arrays if _PARAM_NAME.fullmatch(k)]
        if len(stored) != len(shapes):
            raise ValueError(f"{path}: {len(stored)} parameter arrays, the architecture needs {len(shapes)}")
        for i, shape in enumerate(shapes):
            a = arrays.get(f"param_{i}")
            if a is None or a.shape != shape:
                raise ValueError(f"{path}: param_{i} is {'missing' if a is None else a.shape}, the "
                                 f"architecture {repr(_shape_params(params))[:300]} needs {shape}")
        try:
            model = cls(params["kind"], params["sizes"], params["nesting"], params["num_classes"],
                        dropout=params["dropout"], seed=params["seed"],
                        embedding=params.get("embedding", "relu"))  # files before the option: relu
            config, has_val = dict(params["config"]), bool(params["has_val"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: inconsistent model parameters ({exc})") from exc
        for i, p in enumerate(model.parameters()):
            a = arrays[f"param_{i}"]
            if a.shape != p.data.shape or a.dtype != p.data.dtype:
                raise ValueError(f"{path}: param_{i} is {a.dtype} {a.shape}, expected "
                                 f"{p.data.dtype} {p.data.shape}")
            if not np.isfinite(a).all():
                raise ValueError(f"{path}: param_{i} contains NaN or Inf")
            p.data = np.ascontiguousarray(a)
        epochs = arrays["history_loss"].shape[0]
        keys = ["history_train_acc", "history_lr", "history_seconds"] + (["history_val_acc"] if has_val else [])
        for k in keys:
            if k not in arrays or arrays[k].shape[0] != epochs:
                raise ValueError(f"{path}: {k} does not have one row per epoch ({epochs})")
        model.config = config
        for e in range(epochs):
            row = {"epoch": e + 1, "loss": float(arrays["history_loss"][e]),
                   "train_acc": [float(v) for v in arrays["history_train_acc"][e]],
                   "lr": float(arrays["history_lr"][e]), "seconds": float(arrays["history_seconds"][e])}
            if has_val:
                row["val_acc"] = [float(v) for v in arrays["history_val_acc"][e]]
            model.history.append(row)
        return model


_PARAM_NAME = re.compile(r"param_[0-9]{1,6}")


def _shape_params(params):
    return {k: params.get(k) for k in ("kind", "sizes", "nesting", "num_classes")}


def _weight_shapes(params):
    """Shapes of the weights (W (b, a) then bias (b,) of every Linear(a, b), body then heads) of
    the architecture in `params`, or None when a size is not a positive int. The heads read
    D = m_G: "mrl" has one Linear(m_g, C) per size, "mrl-e" and "ff" one Linear(D, C)."""
    sizes, nesting, classes = params.get("sizes"), params.get("nesting"), params.get("num_classes")

    def ints(v):
        return isinstance(v, list) and v and all(type(s) is int and s >= 1 for s in v)
    if not (ints(sizes) and ints(nesting) and type(classes) is int and classes >= 1):
        return None
    layers = list(zip(sizes[:-1], sizes[1:]))
    layers += [(m, classes) for m in (nesting if params.get("kind") == "mrl" else nesting[-1:])]
    return [shape for a, b in layers for shape in ((b, a), (b,))]


def load_model(path):
    return MRLModel.load(path)


def train_mrl(X, y, nesting, hidden=(512, 512), tied=False, epochs=10, batch_size=256, lr=None,
              optimizer="sgd", weights=None, label_smoothing=0.1, weight_decay=1e-4, momentum=0.9,
              warmup=None, dropout=0.0, num_classes=None, seed=0, progress=True, X_val=None, y_val=None,
              embedding="relu"):
    """Train an MRL (tied=False) or MRL-E (tied=True) model; returns an `MRLModel`.

    X: (n, in) real array (converted once to float32); y: int labels (n,) in [0, C).
    Backbone in-hidden...-D with D = nesting[-1]. lr: peak learning rate (None: 0.1 for
    "sgd", 1e-3 for "adam"). warmup: epochs of linear warm-up, 0 <= warmup < epochs (None: 1
    epoch, or 0 when epochs = 1).
    weights: c_g per size (None: all 1). X_val/y_val: optional, adds val_acc per epoch.
    embedding: "relu" (post-ReLU embedding layer), "linear" (pre-activation) or "gelu" (GELU of
        the pre-activation, full rank), `mrl_ref.nn`.
    progress: True (one line per epoch on stderr), False, or a callable taking each epoch's
        history row (dict: epoch, loss, train_acc, lr, seconds[, val_acc]).
    """
    X = as_float32_matrix(X, "X", min_rows=1)
    D = check_nesting(nesting)[-1]
    sizes = (X.shape[1], *_check_hidden(hidden), D)
    y, C = _check_labels(y, X.shape[0], num_classes)
    check_weights(weights, len(nesting))
    model = MRLModel("mrl-e" if tied else "mrl", sizes, nesting, C, dropout=dropout, seed=seed,
                     embedding=embedding)
    return _fit(model, X, y, epochs, batch_size, lr, optimizer, weights, label_smoothing,
                weight_decay, momentum, warmup, progress, X_val, y_val)


def train_fixed_feature(d, X, y, hidden=(512, 512), epochs=10, batch_size=256, lr=None, optimizer="sgd",
                        label_smoothing=0.1, weight_decay=1e-4, momentum=0.9, warmup=None, dropout=0.0,
                        num_classes=None, seed=0, progress=True, X_val=None, y_val=None,
                        embedding="relu"):
    """Train a rigid (FF) model whose embedding has exactly d dims; returns an `MRLModel`
    with kind "ff" and nesting (d,). Same recipe and arguments as `train_mrl`."""
    X = as_float32_matrix(X, "X", min_rows=1)
    d = as_int(d, "d", 1)
    sizes = (X.shape[1], *_check_hidden(hidden), d)
    y, C = _check_labels(y, X.shape[0], num_classes)
    model = MRLModel("ff", sizes, (d,), C, dropout=dropout, seed=seed, embedding=embedding)
    return _fit(model, X, y, epochs, batch_size, lr, optimizer, None, label_smoothing,
                weight_decay, momentum, warmup, progress, X_val, y_val)


def _check_hidden(hidden):
    if isinstance(hidden, (int, np.integer)):
        hidden = (hidden,)
    return tuple(as_int(h, "hidden layer size", 1) for h in hidden)


def _check_labels(y, n, num_classes):
    y = as_labels(y, "y", n)
    if y.min() < 0:
        raise ValueError(f"labels must be >= 0, got {y.min()}")
    C = int(y.max()) + 1 if num_classes is None else as_int(num_classes, "num_classes", 2)
    if C < 2:
        raise ValueError("need at least 2 classes; y holds a single label")
    if y.max() >= C:
        raise ValueError(f"labels must lie in [0, num_classes={C}), got max {y.max()}")
    return y, C


def _check_warmup(warmup, epochs):
    """Warm-up epochs as a float in [0, epochs); None -> the default min(1, epochs - 1)."""
    if warmup is None:
        return float(min(1, epochs - 1))
    if isinstance(warmup, (bool, np.bool_)) or not isinstance(warmup, (int, float, np.integer, np.floating)):
        raise TypeError(f"warmup must be a number of epochs, got {warmup!r}")
    if not 0 <= float(warmup) < epochs:
        hint = "; with epochs=1 pass warmup=0 (or leave the default)" if epochs == 1 else ""
        raise ValueError(f"warmup must be in [0, epochs={epochs}) epochs, got {warmup}{hint}")
    return float(warmup)


def _make_optimizer(name, params, lr, weight_decay, momentum):
    if name == "sgd":
        return SGD(params, 0.1 if lr is None else lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return Adam(params, 1e-3 if lr is None else lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'sgd' or 'adam', got {name!r}")


def _fit(model, X, y, epochs, batch_size, lr, optimizer, weights, label_smoothing, weight_decay,
         momentum, warmup, progress, X_val, y_val):
    epochs = as_int(epochs, "epochs", 1)
    batch_size = as_int(batch_size, "batch_size", 1)
    if not (isinstance(progress, (bool, np.bool_)) or callable(progress)):
        raise TypeError(f"progress must be True, False or a callable(row), got {progress!r}")
    if not 0.0 <= float(label_smoothing) <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    warmup = _check_warmup(warmup, epochs)
    if (X_val is None) != (y_val is None):
        raise ValueError("pass X_val and y_val together (or neither)")
    if X_val is not None:
        X_val = as_float32_matrix(X_val, "X_val", d=X.shape[1])
        y_val = as_labels(y_val, "y_val", X_val.shape[0])
    opt = _make_optimizer(optimizer, model.parameters(), lr, weight_decay, momentum)
    peak = opt.lr
    model.config = {"epochs": epochs, "batch_size": batch_size, "lr": peak, "optimizer": optimizer,
                    "weights": None if weights is None else list(check_weights(weights, len(model.nesting))),
                    "label_smoothing": float(label_smoothing), "weight_decay": float(weight_decay),
                    "momentum": float(momentum), "warmup": float(warmup), "n_train": int(X.shape[0])}
    n = X.shape[0]
    steps_per_epoch = -(-n // batch_size)
    total = epochs * steps_per_epoch
    warm = min(int(round(warmup * steps_per_epoch)), total - 1)  # warmup < epochs, in whole steps
    shuffle_rng = np.random.default_rng(model._shuffle_seed)
    dropout_rng = np.random.default_rng(model._dropout_seed) if model.body.dropout > 0 else None
    step = 0
    for epoch in range(epochs):
        start = time.perf_counter()
        order = shuffle_rng.permutation(n)
        loss_sum, correct = 0.0, np.zeros(len(model.nesting), dtype=np.int64)
        with blas_single_thread():  # see the module docstring: same bits, fair under load
            for s in range(0, n, batch_size):
                idx = order[s:s + batch_size]
                yb = y[idx]
                opt.lr = warmup_linear_lr(step, total, warm, peak)
                logits = model.heads(model.body(Tensor(X[idx]), rng=dropout_rng))
                loss = matryoshka_ce_loss(logits, yb, weights, label_smoothing)
                opt.zero_grad()
                loss.backward()
                opt.step()
                step += 1
                loss_sum += float(loss.data) * idx.size
                for g, lg in enumerate(logits):
                    correct[g] += np.count_nonzero(lg.data.argmax(axis=1) == yb)
        row = {"epoch": epoch + 1, "loss": loss_sum / n, "train_acc": [float(c) / n for c in correct],
               "lr": opt.lr, "seconds": time.perf_counter() - start}
        if not np.isfinite(row["loss"]):
            raise FloatingPointError(f"training diverged at epoch {epoch + 1} (loss {row['loss']}); lower lr")
        if X_val is not None:
            row["val_acc"] = [float(np.mean(lg.argmax(axis=1) == y_val)) for lg in model.logits(X_val)]
        model.history.append(row)
        if callable(progress):
            progress(dict(row))
        elif progress:
            _report(model, row, epochs)
    return model


def _report(model, row, epochs):
    accs = " ".join(f"{m}:{a:.3f}" for m, a in zip(model.nesting, row["train_acc"]))
    val = ""
    if "val_acc" in row:
        val = " | val " + " ".join(f"{m}:{a:.3f}" for m, a in zip(model.nesting, row["val_acc"]))
    print(f"epoch {row['epoch']}/{epochs} loss {row['loss']:.4f} | train acc {accs}{val} | "
          f"lr {row['lr']:.4g} | {row['seconds']:.1f}s", file=sys.stderr, flush=True)
