"""Valid saved files of every class with save/load, and tools to take them apart and lie in them.

Shared by tests/test_loader_regressions.py and tests/test_fuzz_loaders.py.
"""
import contextlib
import io
import json
import os
import tracemalloc
import zipfile

import numpy as np

from adanns_ref import (BinaryFlatIndex, BinaryIVFIndex, FlatIndex, HNSWIndex, IVFIndex, IVFPQIndex,
                        PQIndex, SQIndex, binarize)
from adanns_ref.core.persist import load_npz, save_npz
from mrl_ref.train import MRLModel

ALLOC_SLACK = 64 << 20  # a load may allocate at most the file size plus this much


def _repro_arrays_load(path):
    from experiments.reproduce.stage import ARRAYS_KIND, ARRAYS_VERSION, _ARRAY_NAME
    return load_npz(path, ARRAYS_KIND, ARRAYS_VERSION, {}, extra=_ARRAY_NAME)


# class name -> loader of its .npz
LOADERS = {"FlatIndex": FlatIndex.load, "IVFIndex": IVFIndex.load, "PQIndex": PQIndex.load,
           "IVFPQIndex": IVFPQIndex.load, "MRLModel": MRLModel.load, "HNSWIndex": HNSWIndex.load,
           "SQIndex": SQIndex.load, "BinaryFlatIndex": BinaryFlatIndex.load,
           "BinaryIVFIndex": BinaryIVFIndex.load,
           "ReproStageArrays": _repro_arrays_load}


def write_valid_files(directory):
    """One small, valid, trained file per class in LOADERS -> {class name: path}."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((700, 8)).astype(np.float32)  # >= 39 * 16 points for 4-bit PQ
    paths = {name: os.path.join(directory, f"{name}.npz") for name in LOADERS}
    flat = FlatIndex(8)
    flat.add(x[:20])
    flat.save(paths["FlatIndex"])
    ivf = IVFIndex(8, 4, d_c=4, niter=2)
    ivf.train(x)
    ivf.add(x[:50])
    ivf.save(paths["IVFIndex"])
    pq = PQIndex(8, 2, nbits=4)
    pq.train(x)
    pq.add(x[:30])
    pq.save(paths["PQIndex"])
    ivfpq = IVFPQIndex(8, 4, 2, nbits=4, niter=2)
    ivfpq.train(x)
    ivfpq.add(x[:30])
    ivfpq.save(paths["IVFPQIndex"])
    MRLModel("mrl", (8, 6, 4), (2, 4), 3).save(paths["MRLModel"])
    hnsw = HNSWIndex(8, M=4, ef_construction=10)
    hnsw.add(x[:60])
    hnsw.save(paths["HNSWIndex"])
    sq = SQIndex(8, qtype="4bit")
    sq.train(x)
    sq.add(x[:30])
    sq.save(paths["SQIndex"])
    codes = binarize(x)
    bflat = BinaryFlatIndex(8)
    bflat.add(codes[:40])
    bflat.save(paths["BinaryFlatIndex"])
    bivf = BinaryIVFIndex(8, 2)
    bivf.train(codes[:200])
    bivf.add(codes[:40])
    bivf.save(paths["BinaryIVFIndex"])
    from experiments.reproduce.stage import ARRAYS_KIND, ARRAYS_VERSION
    save_npz(paths["ReproStageArrays"], ARRAYS_KIND, ARRAYS_VERSION, {"config_hash": "0" * 16},
             {"ids": np.arange(12).reshape(3, 4), "emb": x[:3]})
    return paths


def members(path):
    """{member name: raw .npy bytes} of a zip."""
    with zipfile.ZipFile(path) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def write_zip(path, entries, compression=zipfile.ZIP_DEFLATED, encrypt=()):
    """Write {member name: bytes} as a zip; names in `encrypt` get the encryption flag bit
    (patched into the local and central headers: zipfile will not write it)."""
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = compression
            zf.writestr(info, data)
    if encrypt:
        raw = bytearray(open(path, "rb").read())
        for sig, flag_at, name_at in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
            at = raw.find(sig)
            while at >= 0:
                if any(raw[at + name_at:at + name_at + len(n)] == n.encode() for n in encrypt):
                    raw[at + flag_at] |= 0x1
                at = raw.find(sig, at + 4)
        open(path, "wb").write(bytes(raw))
    return path


def npy_bytes(arr):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
    return buf.getvalue()


def lying_npy(shape, dtype, payload):
    """An .npy whose header claims `shape` but holds `payload` bytes."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                               "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue() + payload


def params_of(path):
    return json.loads(str(np.lib.format.read_array(io.BytesIO(members(path)["__params__.npy"]))))


def with_params(entries, params_text):
    out = dict(entries)
    out["__params__.npy"] = npy_bytes(np.array(params_text))
    return out


@contextlib.contextmanager
def address_space_cap(extra):
    """Cap this process's address space at its current size + `extra` bytes (Linux), so that a
    loader regressing to a huge allocation gets MemoryError instead of exhausting the machine."""
    try:
        import resource
        with open("/proc/self/status") as f:
            vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    except (ImportError, OSError, StopIteration):
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = vm + extra if hard == resource.RLIM_INFINITY else min(hard, vm + extra)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def check_load(load, path):
    """Run load(path): it must succeed or raise ValueError naming the path, and allocate at most
    the file size plus ALLOC_SLACK (traced by tracemalloc, which sees numpy's buffers; the
    address space is capped too, as a guard for the machine). Returns the exception or None."""
    size = os.path.getsize(path)
    tracemalloc.start()
    try:
        with address_space_cap(size + (1 << 30)):
            load(path)
        error = None
    except ValueError as exc:
        error = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak <= size + ALLOC_SLACK, f"loading a {size}-byte file allocated {peak} bytes"
    if error is not None:
        assert os.fspath(path) in str(error), f"error does not name the file: {error}"
        assert "allow_pickle" not in str(error)
    return error
