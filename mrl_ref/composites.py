"""Fashion-MNIST composites: a 1,000-class retrieval task with headroom, built offline from real images.

Why: on Fashion-MNIST itself (10 classes, ~6,000 database items a class) an 8-dim embedding is
almost as good as a 2048-dim one (linear top-1 within 0.5 pp, mAP@10 within 1 pp) and raw pixels
reach 82.5 % 1-NN, so no claim about dimensions can be decided. A composite of P images side by
side whose label is the P-tuple of their classes has 10^P classes; with P = 3, 1,000 classes of
~60 database items each, and an embedding must keep the three classes apart to retrieve it.

Construction (`make_composites(images, labels, n, seed, panels=3)`), all from one
``numpy.random.default_rng(seed)``, in this order:

1. class labels: ``t = rng.permutation(n) % C`` with C = 10^P, so every composite class occurs
   floor(n / C) or ceil(n / C) times (exactly n / C when C divides n: 60 per class for 60,000
   composites, 10 for 10,000) and the order is random;
2. digits: the class of panel p (p = 0 left .. P-1 right) is ``(t // 10^(P-1-p)) % 10``, i.e.
   t is the P-digit decimal number c_0 c_1 c_2 (class 352 = sandal | shirt | pullover);
3. images: for p = 0, ..., P-1, then for c = 0, ..., 9, the composites whose panel p has class c
   (in composite order) get ``pools[c][rng.integers(0, n_c, size=count)]``: uniformly and with
   replacement one of the n_c source images of class c (the rows of `labels` == c, in file
   order). An image can appear in several composites (60,000 composites x 3 panels drawn from
   60,000 images);
4. pixels: ``X[i] = concatenate(images[s_i0], images[s_i1], images[s_i2], axis=1)``, uint8
   (n, 28, 28 P); flattened and scaled by 1/255 to float32 (n, 784 P) by `load_fmnist3`.

The train composites are drawn from the training images only and the test composites from the
test images only (no image is shared between database and queries), each with its own seed
(`load_fmnist3` derives them from one seed with numpy's SeedSequence: train = spawn 0, test =
spawn 1).
"""
import numpy as np

from adanns_ref.core.validate import as_int, as_labels

from .data import NUM_CLASSES, load_fashion_mnist

MAX_PANELS = 4  # 10^4 classes; beyond that the class counts of a 60,000 set fall below 6


def make_composites(images, labels, n, seed, panels=3):
    """n composites of `panels` source images side by side (construction in the module docstring).

    images: uint8 (m, h, w); labels: ints (m,) in [0, 10), every class present.
    Returns (X uint8 (n, h, w * panels), y int64 (n,) in [0, 10^panels), sources int64
    (n, panels): the rows of `images` used, left to right).
    """
    images = np.asarray(images)
    if images.ndim != 3 or images.dtype != np.uint8 or min(images.shape) == 0:
        raise ValueError(f"images must be a non-empty uint8 array (m, h, w), got {images.dtype} "
                         f"{images.shape}")
    labels = as_labels(labels, "labels", n=images.shape[0])
    if labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise ValueError(f"labels must lie in [0, {NUM_CLASSES}), got [{labels.min()}, {labels.max()}]")
    missing = sorted(set(range(NUM_CLASSES)) - set(np.unique(labels).tolist()))
    if missing:
        raise ValueError(f"source classes {missing} have no image: every one of the {NUM_CLASSES} "
                         "classes is needed to draw every composite class")
    n = as_int(n, "n", 1)
    panels = as_int(panels, "panels", 1)
    if panels > MAX_PANELS:
        raise ValueError(f"panels must be in [1, {MAX_PANELS}], got {panels}")
    seed = as_int(seed, "seed", 0)
    rng = np.random.default_rng(seed)
    n_classes = NUM_CLASSES ** panels
    y = rng.permutation(n).astype(np.int64) % n_classes
    pools = [np.flatnonzero(labels == c) for c in range(NUM_CLASSES)]
    sources = np.empty((n, panels), dtype=np.int64)
    for p in range(panels):
        digit = (y // NUM_CLASSES ** (panels - 1 - p)) % NUM_CLASSES
        for c in range(NUM_CLASSES):
            rows = np.flatnonzero(digit == c)
            sources[rows, p] = pools[c][rng.integers(0, len(pools[c]), size=rows.size)]
    X = np.concatenate([images[sources[:, p]] for p in range(panels)], axis=2)
    return X, y, sources


def load_fmnist3(split="train", n=None, seed=0, subset=None, panels=3, flatten=True):
    """Composites of Fashion-MNIST `split` images: (X, y).

    n: number of composites (default: as many as source images: 60,000 train / 10,000 test, or
        6,000 / 1,000 with subset="embedded"). subset: passed to `load_fashion_mnist` (None: the
        whole split, from the Debian package / $FASHION_MNIST_DIR / cache; "embedded": the
        offline 600 + 100 per class subset). seed: the train composites use SeedSequence(seed)
        spawn 0, the test ones spawn 1, so one seed fixes both and they differ.
    flatten: True -> X float32 (n, 784 P) in [0, 1] (division by 255); False -> uint8 (n, 28, 28 P).
    y: int64 (n,) composite classes in [0, 10^P).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    images, labels = load_fashion_mnist(split, subset=subset)
    n = len(images) if n is None else as_int(n, "n", 1)
    child = np.random.SeedSequence(as_int(seed, "seed", 0)).spawn(2)[0 if split == "train" else 1]
    X, y, _ = make_composites(images, labels, n, int(child.generate_state(1)[0]), panels)
    if flatten:
        X = X.reshape(n, -1).astype(np.float32) / np.float32(255)
    return X, y
