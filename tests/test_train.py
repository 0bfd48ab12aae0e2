"""Training on a few hundred embedded Fashion-MNIST images: determinism, learning, persistence."""
import zipfile

import numpy as np
import pytest

from mrl_ref.autograd import Tensor
from mrl_ref.data import load_fashion_mnist
from mrl_ref.heads import matryoshka_ce_loss
from mrl_ref.train import MRLModel, load_model, train_fixed_feature, train_mrl

NESTING = [4, 8, 16]
SMALL = dict(hidden=(32,), epochs=3, batch_size=32, lr=0.2, warmup=0.5, progress=False)


@pytest.fixture(scope="module")
def data():
    X, y = load_fashion_mnist("train", subset="embedded", flatten=True)
    pick = np.random.default_rng(0).choice(X.shape[0], 400, replace=False)
    Xt, yt = load_fashion_mnist("test", subset="embedded", flatten=True)
    return X[pick], y[pick], Xt[:200], yt[:200]


@pytest.fixture(scope="module")
def model(data):
    X, y, _, _ = data
    return train_mrl(X, y, NESTING, seed=0, **SMALL)


def _same_bits(a, b):
    return all(np.array_equal(p.data, q.data) for p, q in zip(a.parameters(), b.parameters()))


def test_same_seed_same_bits_other_seed_differs(data, model):
    X, y, _, _ = data
    again = train_mrl(X, y, NESTING, seed=0, **SMALL)
    assert _same_bits(model, again)
    assert [h["loss"] for h in model.history] == [h["loss"] for h in again.history]
    other = train_mrl(X, y, NESTING, seed=1, **SMALL)
    assert not _same_bits(model, other)


def test_training_lowers_the_loss(data, model):
    X, y, _, _ = data
    untrained = MRLModel("mrl", (784, 32, 16), NESTING, 10, seed=0)
    initial = float(matryoshka_ce_loss(untrained.heads(untrained.body(Tensor(X))), y).data)
    trained = float(matryoshka_ce_loss(model.heads(model.body(Tensor(X))), y).data)
    assert trained < 0.9 * initial
    losses = [h["loss"] for h in model.history]
    assert losses[2] < losses[1] < losses[0]
    assert len(model.history) == 3 and len(model.history[0]["train_acc"]) == len(NESTING)


def test_embed_and_logits_shapes(data, model):
    _, _, Xt, _ = data
    Z = model.embed(Xt)
    assert Z.shape == (200, 16) and Z.dtype == np.float32 and np.all(Z >= 0)
    logits = model.logits(Xt)
    assert [lg.shape for lg in logits] == [(200, 10)] * 3 and logits[0].dtype == np.float32
    # BLAS picks kernels by matrix size, so other batch sizes agree to rounding, not bits
    np.testing.assert_allclose(model.embed(Xt, batch_size=7), Z, rtol=1e-5, atol=1e-5)


def test_tied_adam_validation_and_progress(data, capsys):
    X, y, Xt, yt = data
    m = train_mrl(X, y, NESTING, tied=True, optimizer="adam", X_val=Xt, y_val=yt, seed=0,
                  **{**SMALL, "progress": True, "lr": 1e-2})
    assert m.kind == "mrl-e" and len(m.parameters()) == 4 + 2
    assert len(m.history[0]["val_acc"]) == 3 and max(m.history[-1]["val_acc"]) > 0.3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and err[0].startswith("epoch 1/3 loss") and "val" in err[0]


def test_progress_callback_gets_each_epoch_row_and_bad_progress_is_refused(data, capsys):
    X, y, _, _ = data
    rows = []
    ff = train_fixed_feature(8, X, y, seed=0, **{**SMALL, "progress": rows.append})
    assert [r["epoch"] for r in rows] == [1, 2, 3] and rows == ff.history
    assert capsys.readouterr().err == ""
    with pytest.raises(TypeError, match="progress must be True, False or a callable"):
        train_fixed_feature(8, X, y, **{**SMALL, "progress": "yes"})


def test_fixed_feature_model(data):
    X, y, _, _ = data
    ff = train_fixed_feature(8, X, y, seed=0, **SMALL)
    assert ff.kind == "ff" and ff.nesting == (8,) and ff.embed(X[:5]).shape == (5, 8)
    assert ff.history[-1]["loss"] < ff.history[0]["loss"]


def test_save_load_round_trip(tmp_path, data, model):
    _, _, Xt, _ = data
    path = tmp_path / "mrl.npz"
    model.save(path)
    loaded = load_model(path)
    assert loaded.kind == model.kind and loaded.nesting == model.nesting
    np.testing.assert_array_equal(loaded.embed(Xt), model.embed(Xt))
    for a, b in zip(loaded.logits(Xt), model.logits(Xt)):
        np.testing.assert_array_equal(a, b)
    assert loaded.history == model.history
    assert loaded.config == model.config


def test_tampered_files_raise(tmp_path, data, model):
    path = tmp_path / "mrl.npz"
    model.save(path)
    raw = bytearray(path.read_bytes())
    bad = tmp_path / "flipped.npz"
    rejected = 0
    for offset in range(0, len(raw), max(1, len(raw) // 150)):
        flipped = bytearray(raw)
        flipped[offset] ^= 0xFF
        bad.write_bytes(bytes(flipped))
        try:  # a flip either is caught (ValueError only) or hit bytes that carry no data
            loaded = load_model(bad)
        except ValueError:
            rejected += 1
        else:
            assert all(np.array_equal(p.data, q.data) for p, q in zip(loaded.parameters(), model.parameters()))
    assert rejected > 100
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(bytes(raw[: len(raw) // 2]))
    with pytest.raises(ValueError):
        load_model(truncated)
    # a well-formed archive whose arrays no longer fit the architecture
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["param_0"] = arrays["param_0"][:, :-1]
    reshaped = tmp_path / "reshaped.npz"
    np.savez(reshaped, **arrays)
    with pytest.raises(ValueError, match="param_0"):
        load_model(reshaped)
    arrays = {k: v for k, v in arrays.items() if k != "param_3"}
    missing = tmp_path / "missing.npz"
    np.savez(missing, **arrays)
    with pytest.raises(ValueError, match="parameter arrays"):
        load_model(missing)
    with zipfile.ZipFile(tmp_path / "foreign.npz", "w") as zf:
        zf.writestr("x.npy", b"not numpy")
    with pytest.raises(ValueError):
        load_model(tmp_path / "foreign.npz")


def test_bad_training_inputs(data, model):
    X, y, _, _ = data
    with pytest.raises(ValueError, match="optimizer must be"):
        train_mrl(X, y, NESTING, optimizer="rmsprop", **SMALL)
    with pytest.raises(ValueError, match="strictly increasing"):
        train_mrl(X, y, [8, 4, 16], **SMALL)
    with pytest.raises(ValueError, match="empty"):
        train_mrl(X, y, [], **SMALL)
    with pytest.raises(ValueError, match="one entry per nesting size"):
        train_mrl(X, y, NESTING, weights=[1, 1], **SMALL)
    with pytest.raises(ValueError, match="num_classes=5"):
        train_mrl(X, y, NESTING, num_classes=5, **SMALL)
    with pytest.raises(ValueError, match=">= 0"):
        train_mrl(X, np.where(y == 0, -1, y.astype(np.int64)), NESTING, **SMALL)
    with pytest.raises(ValueError, match="400 entries but|has 399 entries"):
        train_mrl(X, y[:-1], NESTING, **SMALL)
    with pytest.raises(ValueError, match="NaN"):
        train_mrl(np.where(X == X.max(), np.nan, X), y, NESTING, **SMALL)
    with pytest.raises(ValueError, match="with epochs=1 pass warmup=0"):
        train_mrl(X, y, NESTING, **{**SMALL, "epochs": 1, "warmup": 1})
    with pytest.raises(ValueError, match="warmup must be in"):
        train_mrl(X, y, NESTING, **{**SMALL, "warmup": -0.5})
    with pytest.raises(TypeError, match="warmup must be a number"):
        train_mrl(X, y, NESTING, **{**SMALL, "warmup": "1"})
    with pytest.raises(ValueError, match="together"):
        train_mrl(X, y, NESTING, X_val=X, **SMALL)
    with pytest.raises(ValueError, match="784 were expected"):
        train_mrl(X, y, NESTING, X_val=X[:, :100], y_val=y, **SMALL)
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        train_mrl(X, y, NESTING, **{**SMALL, "epochs": 0})
    with pytest.raises(ValueError, match="784 were expected"):
        model.embed(X[:, :783])
    with pytest.raises(ValueError, match="d must be >= 1"):
        train_fixed_feature(0, X, y, **SMALL)


def test_default_warmup_fits_any_number_of_epochs(data):
    """The default warm-up (None) is min(1, epochs - 1): epochs=1 trains without warmup=0 and
    larger runs keep the 1-epoch warm-up they always had (same bits as warmup=1)."""
    X, y, _, _ = data
    kw = {**SMALL, "hidden": (8,)}
    kw.pop("warmup")
    one = train_mrl(X[:64], y[:64], NESTING, **{**kw, "epochs": 1})
    assert one.config["warmup"] == 0.0 and len(one.history) == 1
    default = train_mrl(X[:64], y[:64], NESTING, **{**kw, "epochs": 2})
    explicit = train_mrl(X[:64], y[:64], NESTING, warmup=1, **{**kw, "epochs": 2})
    assert default.config["warmup"] == 1.0
    assert _same_bits(default, explicit)
    tiny = train_mrl(X[:8], y[:8], NESTING, warmup=0.99, **{**kw, "epochs": 1, "batch_size": 8})
    assert len(tiny.history) == 1  # 0.99 epoch of 1 step rounds to 1 step: clamped below total


def test_linear_embedding_trains_saves_and_loads(tmp_path, data):
    X, y, Xt, _ = data
    m = train_fixed_feature(4, X, y, seed=0, embedding="linear", **SMALL)
    z = m.embed(Xt)
    assert m.body.embedding == "linear" and np.any(z < 0)
    assert np.all(np.any(z[:, :2] != 0, axis=1))  # no all-zero 2-prefix
    path = tmp_path / "lin.npz"
    m.save(path)
    loaded = load_model(path)
    assert loaded.body.embedding == "linear"
    np.testing.assert_array_equal(loaded.embed(Xt), z)
    relu = train_fixed_feature(4, X, y, seed=0, **SMALL)
    assert relu.body.embedding == "relu" and not np.array_equal(relu.embed(Xt), z)


def test_gelu_embedding_trains_saves_and_loads(tmp_path, data):
    X, y, Xt, _ = data
    m = train_fixed_feature(4, X, y, seed=0, embedding="gelu", **SMALL)
    z = m.embed(Xt)
    assert m.body.embedding == "gelu" and np.any(z < 0) and np.all(z != 0)
    path = tmp_path / "gelu.npz"
    m.save(path)
    loaded = load_model(path)
    assert loaded.body.embedding == "gelu"
    np.testing.assert_array_equal(loaded.embed(Xt), z)
