"""Build mrl_ref/fashion_mnist_embedded.npz, the offline Fashion-MNIST subset shipped in the package.

Selection (real images, class-stratified, no randomness): for every class c in 0..9, the first
600 training images and the first 100 test images with label c, in file order. Rows keep file
order (classes stay interleaved as in the originals). Stored arrays:

    train_images (6000, 28, 28) uint8   train_labels (6000,) uint8   train_indices (6000,) int64
    test_images  (1000, 28, 28) uint8   test_labels  (1000,) uint8   test_indices  (1000,) int64
    source_files (4,) str               source_sha256 (4,) str

`*_indices` are row numbers in the original IDX files, so tests can check the subset against them.

The output is byte-deterministic: `np.savez_compressed` stamps the current time into every zip
entry, so the zip is written here with a fixed entry order, date (1980-01-01) and attributes.
The same numpy .npy header format and zlib build then give the same bytes on every run; the
printed SHA-256 is what `mrl_ref.data.EMBEDDED_SHA256` must hold.

Usage: python -m experiments.make_embedded_subset [--root DIR] [--out PATH]
"""
import argparse
import hashlib
import io
import os
import sys
import zipfile

import numpy as np

from adanns_ref.core.persist import atomic_write
from mrl_ref import data

ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # earliest date a zip entry can hold


def first_per_class(labels, per_class, num_classes=data.NUM_CLASSES):
    """Row numbers of the first `per_class` rows of every class, sorted ascending (int64)."""
    chosen = []
    for c in range(num_classes):
        rows = np.flatnonzero(labels == c)[:per_class]
        if rows.size < per_class:
            raise ValueError(f"class {c} has only {rows.size} rows, {per_class} requested")
        chosen.append(rows)
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def build_subset(root=None):
    """Arrays of the embedded subset, read from the official files (hashes checked)."""
    arrays, names, hashes = {}, [], []
    for split in ("train", "test"):
        directory = data.locate_fashion_mnist(split, root)
        for name in data.FILES[split]:
            digest = data.sha256_file(os.path.join(directory, name))
            if digest != data.SHA256[name]:
                raise ValueError(f"{os.path.join(directory, name)}: SHA-256 {digest} is not the "
                                 "official file's; the subset must be built from the originals")
            names.append(name)
            hashes.append(digest)
        images, labels = data.load_fashion_mnist(split, root=directory)
        idx = first_per_class(labels, data.EMBEDDED_PER_CLASS[split])
        arrays[f"{split}_images"] = images[idx]
        arrays[f"{split}_labels"] = labels[idx]
        arrays[f"{split}_indices"] = idx
    arrays["source_files"] = np.array(names)
    arrays["source_sha256"] = np.array(hashes)
    return arrays


def deterministic_npz_bytes(arrays):
    """An .npz (zip of .npy, deflated) whose bytes depend only on `arrays` (name order kept)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, arr in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix; the default depends on the platform
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue(), compresslevel=9)
    return buf.getvalue()


def default_out():
    return os.path.join(os.path.dirname(os.path.abspath(data.__file__)), data.EMBEDDED_NAME)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", help="directory with the four Fashion-MNIST .gz files "
                                       "(default: the mrl_ref.data lookup order)")
    parser.add_argument("--out", default=default_out(), help="output .npz (default: %(default)s)")
    args = parser.parse_args(argv)
    payload = deterministic_npz_bytes(build_subset(args.root))

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(payload)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the file ships in the package
    atomic_write(args.out, write, suffix=".npz")
    digest = hashlib.sha256(payload).hexdigest()
    print(f"wrote {args.out} ({len(payload)} bytes)", file=sys.stderr)
    print(digest)
    return digest


if __name__ == "__main__":
    main()
