"""Fashion-MNIST: IDX parsing, dataset lookup, verified download and the embedded offline subset.

Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017): 70,000 grey-scale 28 x 28 images of 10 clothing
classes, 60,000 for training and 10,000 for testing, shipped as four gzip-compressed IDX files.
An IDX file is a big-endian header followed by raw uint8 values:

    magic (uint32) = 0x0000 | type 0x08 (unsigned byte) | ndims      images: 2051, labels: 2049
    dims  (ndims x uint32)                                           images: n, 28, 28; labels: n
    payload: prod(dims) bytes, row-major

Every header field and the exact payload size are checked; anything else raises ``ValueError``
naming the file.

Where the files are looked for, first match wins:

1. ``root=`` if given (authoritative: a root without the files is an error, never skipped);
2. ``$FASHION_MNIST_DIR`` if set (authoritative too, for the same reason);
3. ``/usr/share/datasets/fashion-mnist`` (Debian/Ubuntu package ``dataset-fashion-mnist``);
4. the user cache ``$XDG_CACHE_HOME/adanns-ref/fashion-mnist`` (default ``~/.cache/...``).

``download=True`` fetches the missing files of the requested split from the official mirror into
the first authoritative location (``root``, else ``$FASHION_MNIST_DIR``, else the cache), writes
them atomically and checks their SHA-256; a mismatch deletes the file and raises ``ValueError``.
Files found on disk are not hashed by default (50 MB of hashing per load for a check that the
structural IDX validation mostly covers); ``verify=True`` hashes them too.

``subset="embedded"`` needs no file at all: it reads ``fashion_mnist_embedded.npz`` shipped inside
this package, a class-stratified real subset (the first 600 training and the first 100 test images
of every class, in file order; built by ``experiments/make_embedded_subset.py``), whose own
SHA-256 (`EMBEDDED_SHA256`) is checked on every load.
"""
import gzip
import hashlib
import http.client
import importlib.resources
import io
import math
import os
import urllib.error
import urllib.request
import zlib

import numpy as np

from adanns_ref.core.persist import atomic_write, sha256_file
from adanns_ref.core.validate import as_int

FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
SHA256 = {
    "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}
BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"
ENV_VAR = "FASHION_MNIST_DIR"

IMAGES_MAGIC = 2051  # type 0x08 (ubyte), 3 dims
LABELS_MAGIC = 2049  # type 0x08 (ubyte), 1 dim
IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10

EMBEDDED_NAME = "fashion_mnist_embedded.npz"
EMBEDDED_SHA256 = "28708c8f71b3af8bd4a35b1d541fe0a3933b54f7e46b62aa0ff5dbcc00dc58a8"
EMBEDDED_PER_CLASS = {"train": 600, "test": 100}

_HOW_TO_GET = (
    "get it in one of three ways: `apt-get install -y dataset-fashion-mnist` (Debian/Ubuntu, "
    f"installs into {SYSTEM_DIR}); set {ENV_VAR} to a directory holding the four .gz files; or "
    "pass download=True. For a small offline subset that needs no files, pass subset=\"embedded\"."
)


class DatasetNotFoundError(FileNotFoundError):
    """Fashion-MNIST files are not where they were looked for; the message says how to get them."""


def read_idx(path, magic=None):
    """Parse a gzip-compressed IDX file of unsigned bytes -> uint8 array of the header's shape.

    `magic`: expected magic number (2051 images, 2049 labels); None accepts any ubyte IDX.
    """
    path = os.fspath(path)
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise ValueError(f"{path}: not a valid gzip file ({exc}); delete it and fetch it again") from exc
    if len(raw) < 4:
        raise ValueError(f"{path}: {len(raw)} bytes after decompression, too short for an IDX header")
    found = int.from_bytes(raw[:4], "big")
    if magic is not None and found != magic:
        raise ValueError(f"{path}: IDX magic number {found}, expected {magic}")
    if found >> 8 != 0x08:
        raise ValueError(f"{path}: IDX magic {found:#010x} is not an unsigned-byte IDX file (0x000008nn)")
    ndims = found & 0xFF
    if ndims == 0:
        raise ValueError(f"{path}: IDX header declares 0 dimensions")
    header_len = 4 + 4 * ndims
    if len(raw) < header_len:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} bytes, {header_len} needed)")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndims))
    expected = math.prod(dims)
    payload = len(raw) - header_len
    if payload < expected:
        raise ValueError(f"{path}: truncated: header {dims} needs {expected} payload bytes, "
                         f"found {payload}; delete the file and fetch it again")
    if payload > expected:
        raise ValueError(f"{path}: {payload - expected} trailing bytes after the {expected} "
                         f"payload bytes announced by header {dims}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(dims).copy()


def cache_dir():
    """The user cache directory used by download=True when neither root nor $FASHION_MNIST_DIR is set."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "adanns-ref", "fashion-mnist")


def download_fashion_mnist(directory=None, splits=("train", "test")):
    """Fetch the IDX files of `splits` into `directory` (default: `cache_dir()`); returns it.

    Files already present with the right SHA-256 are kept. Each download is written atomically
    and hashed; a mismatch leaves no file behind and raises ValueError.
    """
    directory = os.fspath(directory) if directory is not None else cache_dir()
    for split in splits:
        _check_split(split)
        for name in FILES[split]:
            target = os.path.join(directory, name)
            if os.path.exists(target) and sha256_file(target) == SHA256[name]:
                continue
            _fetch(BASE_URL + name, target, SHA256[name])
    return directory


def _fetch(url, target, sha256):
    def write(tmp):
        h = hashlib.sha256()
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
                for block in iter(lambda: response.read(1 << 20), b""):
                    h.update(block)
                    out.write(block)
        # network failures only: a local write error should surface as itself
        except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as exc:
            raise ConnectionError(f"could not download {url} ({exc}); offline? {_HOW_TO_GET}") from exc
        if h.hexdigest() != sha256:
            # raising inside atomic_write removes the temporary file: nothing corrupt is left
            raise ValueError(f"{url}: SHA-256 {h.hexdigest()} != expected {sha256}; "
                             "download deleted, retry or use another source")
    atomic_write(target, write, suffix=".part")


def _check_split(split):
    if split not in FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")


def _has_split(directory, split):
    return all(os.path.isfile(os.path.join(directory, name)) for name in FILES[split])


def locate_fashion_mnist(split="train", root=None, download=False):
    """Directory holding the two files of `split`, looked up in the module docstring's order."""
    _check_split(split)
    if root is not None:
        authoritative, origin = os.fspath(root), "root"
    elif os.environ.get(ENV_VAR):
        authoritative, origin = os.environ[ENV_VAR], f"${ENV_VAR}"
    else:
        authoritative, origin = None, None
    if authoritative is not None:
        if not _has_split(authoritative, split) and download:
            download_fashion_mnist(authoritative, splits=(split,))
        if not _has_split(authoritative, split):
            raise DatasetNotFoundError(
                f"{origin}={authoritative!r} does not contain {' and '.join(FILES[split])}; {_HOW_TO_GET}")
        return authoritative
    for directory in (SYSTEM_DIR, cache_dir()):
        if _has_split(directory, split):
            return directory
    if download:
        return download_fashion_mnist(cache_dir(), splits=(split,))
    raise DatasetNotFoundError(
        f"Fashion-MNIST {split} files not found in {SYSTEM_DIR} or {cache_dir()}; {_HOW_TO_GET}")


def _embedded_bytes():
    return (importlib.resources.files(__package__) / EMBEDDED_NAME).read_bytes()


def load_embedded():
    """The committed subset as a dict of arrays, after checking its SHA-256 against EMBEDDED_SHA256.

    Keys: train_images (6000, 28, 28) uint8, train_labels (6000,) uint8, train_indices (6000,)
    int64 (rows of the original training file), the same three for test (1000 rows), and
    source_files / source_sha256 (the four original .gz names and hashes).
    """
    raw = _embedded_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != EMBEDDED_SHA256:
        raise ValueError(f"{EMBEDDED_NAME}: SHA-256 {digest} != EMBEDDED_SHA256 {EMBEDDED_SHA256}; "
                         "the file was modified; restore it from git or rebuild it with "
                         "`python -m experiments.make_embedded_subset` and update EMBEDDED_SHA256")
    with np.load(io.BytesIO(raw), allow_pickle=False) as z:
        return {name: z[name] for name in z.files}


def load_fashion_mnist(split="train", root=None, subset=None, flatten=False, download=False,
                       verify=False):
    """Fashion-MNIST images and labels -> (X, y).

    split: "train" (60,000 rows) or "test" (10,000).
    subset: None (the whole split), "embedded" (the offline subset shipped in the package:
        6,000 train / 1,000 test rows, 600 / 100 per class; no files or network needed), or an
        int n (the first n rows of the split, in file order, not stratified).
    flatten: False -> X uint8 (n, 28, 28); True -> X float32 (n, 784) scaled to [0, 1] by 1/255.
    download, root, verify: see the module docstring.
    y: uint8 (n,) class ids 0..9.
    """
    _check_split(split)
    if isinstance(subset, str):
        if subset != "embedded":
            raise ValueError(f"subset must be None, 'embedded' or a positive int, got {subset!r}")
        arrays = load_embedded()
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
    else:
        n = None if subset is None else as_int(subset, "subset", low=1)
        directory = locate_fashion_mnist(split, root, download)
        image_path, label_path = (os.path.join(directory, name) for name in FILES[split])
        if verify:
            for path in (image_path, label_path):
                digest = sha256_file(path)
                if digest != SHA256[os.path.basename(path)]:
                    raise ValueError(f"{path}: SHA-256 {digest} != expected "
                                     f"{SHA256[os.path.basename(path)]}; replace the file")
        images = read_idx(image_path, IMAGES_MAGIC)
        labels = read_idx(label_path, LABELS_MAGIC)
        if images.shape[1:] != IMAGE_SHAPE:
            raise ValueError(f"{image_path}: images are {images.shape[1:]}, expected {IMAGE_SHAPE}")
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{image_path} has {images.shape[0]} images but {label_path} has "
                             f"{labels.shape[0]} labels; the pair does not belong together")
        if labels.size and labels.max() >= NUM_CLASSES:
            raise ValueError(f"{label_path}: label {int(labels.max())} outside 0..{NUM_CLASSES - 1}")
        if n is not None:
            if n > images.shape[0]:
                raise ValueError(f"subset={n} exceeds the {images.shape[0]} rows of split {split!r}")
            images, labels = images[:n].copy(), labels[:n].copy()
    if flatten:
        # division (not multiplication by 1/255) keeps 255 -> exactly 1.0
        images = images.reshape(len(images), -1).astype(np.float32) / np.float32(255)
    return images, labels
