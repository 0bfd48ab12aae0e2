"""The MRL training-epoch workload of experiments.benchmark: our NumPy autograd MLP vs PyTorch."""
import importlib.util

import numpy as np

from . import data as _bench_data
from .measure import NotAvailable, pair


MRL_NESTING = (8, 16, 32, 64, 128, 256)
MRL_HIDDEN = (512, 512)
MRL_RECIPE = dict(batch_size=256, lr=0.05, momentum=0.9, weight_decay=1e-4, label_smoothing=0.1)


def _mrl_data(ctx):
    """Fashion-MNIST train rows (flattened, [0, 1]) if installed, else seeded stand-in images."""
    n = ctx.cfg["mrl_rows"]
    if ctx.mrl_data != "synthetic":
        from mrl_ref.data import DatasetNotFoundError, load_fashion_mnist
        try:
            X, y = load_fashion_mnist("train", subset=None if n == 60000 else n, flatten=True)
            return X, y.astype(np.int64), f"Fashion-MNIST train, first {n} rows"
        except DatasetNotFoundError:
            if ctx.mrl_data == "fashion-mnist":
                raise
    X, y = _bench_data.image_like(n)
    return X, y, f"seeded synthetic 784-dim images ({n} rows; Fashion-MNIST not used)"


def _torch_epoch(X, y, seed=0):
    """One epoch of the same model and step in PyTorch: MLP 784-512-512-256 (ReLU), one
    nn.Linear head per nesting size on z[:, :m], summed label-smoothed CE, SGD momentum with
    decay off for biases, per-step linear lr decay, per-size train accuracy counted (as
    mrl_ref's loop does for its history). Returns the mean train loss of the epoch."""
    import torch
    from torch import nn
    torch.manual_seed(seed)
    sizes = (X.shape[1],) + MRL_HIDDEN + (MRL_NESTING[-1],)
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    body = nn.Sequential(*layers)
    heads = nn.ModuleList(nn.Linear(m, int(y.max()) + 1) for m in MRL_NESTING)
    params = list(body.parameters()) + list(heads.parameters())
    peak = MRL_RECIPE["lr"]
    opt = torch.optim.SGD([{"params": [p for p in params if p.ndim > 1],
                            "weight_decay": MRL_RECIPE["weight_decay"]},
                           {"params": [p for p in params if p.ndim == 1], "weight_decay": 0.0}],
                          lr=peak, momentum=MRL_RECIPE["momentum"])
    ce = nn.CrossEntropyLoss(label_smoothing=MRL_RECIPE["label_smoothing"])
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(X)))
    bs, n = MRL_RECIPE["batch_size"], len(X)
    steps = -(-n // bs)
    loss_sum, correct = 0.0, torch.zeros(len(MRL_NESTING), dtype=torch.int64)
    for step, start in enumerate(range(0, n, bs)):
        idx = order[start:start + bs]
        yb = yt[idx]
        for group in opt.param_groups:
            group["lr"] = peak * (steps - step) / steps
        z = body(Xt[idx])
        logits = [h(z[:, :m]) for h, m in zip(heads, MRL_NESTING)]
        loss = sum(ce(lg, yb) for lg in logits)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += float(loss.detach()) * len(idx)
        with torch.no_grad():
            correct += torch.stack([(lg.argmax(dim=1) == yb).sum() for lg in logits])
    return loss_sum / n


def bench_mrl_epoch(ctx):
    from mrl_ref.train import train_mrl
    if importlib.util.find_spec("torch") is None:
        raise NotAvailable("PyTorch is not installed (pip install adanns-ref[torch])")
    X, y, source = ctx.cached("mrl_data", lambda: _mrl_data(ctx))

    def ours():
        model = train_mrl(X, y, list(MRL_NESTING), hidden=MRL_HIDDEN, epochs=1, warmup=0,
                          batch_size=MRL_RECIPE["batch_size"], lr=MRL_RECIPE["lr"],
                          optimizer="sgd", momentum=MRL_RECIPE["momentum"],
                          weight_decay=MRL_RECIPE["weight_decay"],
                          label_smoothing=MRL_RECIPE["label_smoothing"], seed=0, progress=False)
        return float(model.history[-1]["loss"])
    t_o, loss_o, t_p, loss_p = pair(ctx, ours, lambda: _torch_epoch(X, y))
    sizes = (X.shape[1],) + MRL_HIDDEN + (MRL_NESTING[-1],)
    n_classes = int(y.max()) + 1
    macs = sum(a * b for a, b in zip(sizes[:-1], sizes[1:])) + n_classes * sum(MRL_NESTING)
    # per sample: forward 2 MACs, weight gradients 2 MACs, input gradients 2 MACs except for
    # the first layer (the images need no gradient)
    flops = len(X) * (6 * macs - 2 * sizes[0] * sizes[1])
    quality = {"metric": "mean train loss of the epoch", "ours": loss_o, "peer": loss_p}
    return [dict(ours=t_o, peer_timing=t_p, note=source, quality=quality,
                 work=("gflop", flops, flops))]
