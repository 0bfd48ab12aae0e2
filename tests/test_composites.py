"""Fashion-MNIST composites: the documented construction, re-derived by a plain loop; balance,
seeding, train / test separation and bad inputs."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mrl_ref.composites import load_fmnist3, make_composites
from mrl_ref.data import load_fashion_mnist


def _loop_reference(images, labels, n, seed, panels):
    """The module docstring's steps 1-4, one composite and one panel at a time."""
    rng = np.random.default_rng(seed)
    t = rng.permutation(n) % 10 ** panels
    pools = [[i for i in range(len(labels)) if labels[i] == c] for c in range(10)]
    digits = [[(int(t[i]) // 10 ** (panels - 1 - p)) % 10 for p in range(panels)] for i in range(n)]
    src = np.zeros((n, panels), np.int64)
    for p in range(panels):
        for c in range(10):
            rows = [i for i in range(n) if digits[i][p] == c]
            picks = rng.integers(0, len(pools[c]), size=len(rows))
            for i, j in zip(rows, picks):
                src[i, p] = pools[c][j]
    X = np.stack([np.hstack([images[src[i, p]] for p in range(panels)]) for i in range(n)])
    return X, t, src


@pytest.fixture(scope="module")
def embedded():
    return load_fashion_mnist("train", subset="embedded")


def test_matches_the_documented_construction(embedded):
    images, labels = embedded
    X, y, src = make_composites(images, labels, 500, seed=4)
    Xr, yr, srcr = _loop_reference(images, labels, 500, 4, 3)
    np.testing.assert_array_equal(y, yr)
    np.testing.assert_array_equal(src, srcr)
    np.testing.assert_array_equal(X, Xr)
    assert X.dtype == np.uint8 and X.shape == (500, 28, 84) and y.dtype == np.int64


def test_label_is_the_triple_of_panel_classes_and_classes_are_balanced(embedded):
    images, labels = embedded
    X, y, src = make_composites(images, labels, 6000, seed=0)
    for p in range(3):
        np.testing.assert_array_equal(labels[src[:, p]], (y // 10 ** (2 - p)) % 10)
        np.testing.assert_array_equal(X[:, :, 28 * p:28 * (p + 1)], images[src[:, p]])
    counts = np.bincount(y, minlength=1000)
    assert counts.min() == counts.max() == 6


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 400), panels=st.integers(1, 2), seed=st.integers(0, 2**32 - 1))
def test_class_counts_differ_by_at_most_one(n, panels, seed):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 3)
    images = rng.integers(0, 256, (30, 2, 3), dtype=np.uint8)
    X, y, src = make_composites(images, labels, n, seed, panels)
    counts = np.bincount(y, minlength=10 ** panels)
    assert counts.max() - counts.min() <= 1 and counts.sum() == n
    assert X.shape == (n, 2, 3 * panels)
    for p in range(panels):
        np.testing.assert_array_equal(labels[src[:, p]], (y // 10 ** (panels - 1 - p)) % 10)


def test_seeded_and_splits_are_separate():
    a, ya = load_fmnist3("train", n=2000, seed=1, subset="embedded")
    b, yb = load_fmnist3("train", n=2000, seed=1, subset="embedded")
    c, yc = load_fmnist3("train", n=2000, seed=2, subset="embedded")
    assert np.array_equal(a, b) and np.array_equal(ya, yb)
    assert not np.array_equal(ya, yc)
    assert a.dtype == np.float32 and a.shape == (2000, 2352) and 0 <= a.min() and a.max() <= 1
    q, yq = load_fmnist3("test", subset="embedded", seed=1)
    assert q.shape == (1000, 2352) and np.bincount(yq, minlength=1000).max() == 1
    # test composites use only test images: every panel is a row of the embedded test images
    test_images, _ = load_fashion_mnist("test", subset="embedded", flatten=True)
    panel = q.reshape(1000, 28, 84)[:, :, :28].reshape(1000, -1)
    lookup = {row.tobytes() for row in test_images}
    assert all(row.tobytes() in lookup for row in panel)


def test_bad_inputs(embedded):
    images, labels = embedded
    with pytest.raises(ValueError, match="uint8"):
        make_composites(images.astype(np.float32), labels, 10, 0)
    with pytest.raises(ValueError, match="no image"):
        make_composites(images[labels != 3], labels[labels != 3], 10, 0)
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        make_composites(images[:2], np.array([0, 10]), 10, 0)
    with pytest.raises(ValueError, match="panels"):
        make_composites(images, labels, 10, 0, panels=5)
    with pytest.raises(ValueError, match="n"):
        make_composites(images, labels, 0, 0)
    with pytest.raises(ValueError, match="split"):
        load_fmnist3("val", subset="embedded")


def test_full_split_from_the_installed_dataset():
    """The whole test split (Debian package `dataset-fashion-mnist` or $FASHION_MNIST_DIR): 10,000
    composites, 10 per class, every panel a test image of the class its digit names."""
    from mrl_ref.data import DatasetNotFoundError

    try:
        images, labels = load_fashion_mnist("test")
    except DatasetNotFoundError:
        pytest.skip("Fashion-MNIST files not installed (apt-get install -y dataset-fashion-mnist)")
    X, y = load_fmnist3("test", seed=0, flatten=False)
    assert X.shape == (10000, 28, 84) and np.bincount(y, minlength=1000).tolist() == [10] * 1000
    _, _, src = make_composites(images, labels, 10000,
                                int(np.random.SeedSequence(0).spawn(2)[1].generate_state(1)[0]))
    for p in range(3):
        np.testing.assert_array_equal(X[:, :, 28 * p:28 * (p + 1)], images[src[:, p]])
        np.testing.assert_array_equal(labels[src[:, p]], (y // 10 ** (2 - p)) % 10)


def test_reproduce_load_data_validates_the_composite_preset():
    from experiments.reproduce.main import load_data

    cfg = {"task": "fmnist3", "subset": "embedded", "per_class": None, "composites": (1200, 300)}
    Xtr, ytr, Xte, yte = load_data(cfg)
    assert Xtr.shape == (1200, 2352) and Xte.shape == (300, 2352)
    assert ytr.dtype == yte.dtype == np.int64 and ytr.max() < 1000
    np.testing.assert_array_equal(Xtr, load_fmnist3("train", n=1200, seed=0, subset="embedded")[0])
    for bad in (None, (1200,), (0, 10), (1.5, 10)):
        with pytest.raises(ValueError, match="composites="):
            load_data(dict(cfg, composites=bad))
    with pytest.raises(ValueError, match="task must be"):
        load_data(dict(cfg, task="cifar"))
