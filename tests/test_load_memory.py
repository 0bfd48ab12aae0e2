"""Loading a saved index peaks at <= the arrays it returns + 64 MiB (issue 26, item 15), measured
under an address-space cap: a child process warms up (imports, numba, one small load), then caps
RLIMIT_AS at its current size + the returned arrays + 64 MiB and loads the big file. The old
reader (whole member read into bytes, then copied) needed about 3x the array and fails here.

Every class with save / load is covered. Where encoding ~100 MiB of codes would take minutes
(PQ, IVFPQ, the fast-scan indices) or building the graph would (HNSW), the big file is a small
real index saved by the class itself, its stored rows then grown to GROWN = 48 MiB of valid content
(random codes, ids 0..N-1 in even lists, the graph's rows widened) and written back with the
same schema: the loader's work is the same, as its checks pass. 48 MiB is enough: the old
reader's extra copies (2 of the member) exceed the 64 MiB slack."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

SLACK = 64 << 20
GROWN = 48 << 20  # bytes of the largest member of a grown file
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import resource, sys
import numpy as np
from adanns_ref import {cls}
small, big, extra = sys.argv[1], sys.argv[2], int(sys.argv[3])
{cls}.load(small)  # imports, JIT and allocator arenas before the measurement
with open("/proc/self/status") as f:
    vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (vm + extra, resource.getrlimit(resource.RLIMIT_AS)[1]))
index = {cls}.load(big)
print("loaded", index.ntotal)
"""


def _array_bytes(obj):
    """Bytes of the numpy arrays an object holds (attributes, and dicts / tuples among them)."""
    seen, total, todo = set(), 0, list(vars(obj).values())
    while todo:
        v = todo.pop()
        if isinstance(v, np.ndarray):
            base = v if v.base is None else v.base
            if id(base) not in seen and isinstance(base, np.ndarray):
                seen.add(id(base))
                total += base.nbytes
        elif isinstance(v, dict):
            todo.extend(v.values())
        elif isinstance(v, (list, tuple)):
            todo.extend(v)
        elif hasattr(v, "__dict__") and type(v).__module__.startswith("adanns_ref"):
            todo.extend(vars(v).values())
    return total


def _grown(cls, rng, small_path, big_path):
    """Write big_path: the index saved at small_path with its largest member grown to GROWN bytes."""
    from adanns_ref.core.persist import save_npz
    with np.load(small_path) as z:
        members = {k: z[k] for k in z.files}
    kind, version = str(members.pop("__kind__")), int(members.pop("__version__"))
    params = json.loads(str(members.pop("__params__")))

    def codes(n, width):
        return rng.integers(0, 256, (n, width), dtype=np.uint8)
    if cls in ("PQIndex", "PQFastScanIndex"):
        width = members["codes"].shape[1]
        if cls == "PQIndex":
            members["codes"] = codes(GROWN // width, width)
        else:  # packed blocks of 32 rows
            members["codes"] = codes(GROWN // width, width)
            members["ntotal"] = np.array([members["codes"].shape[0] * 32 - 5], np.int64)
    elif cls in ("IVFPQIndex", "IVFPQFastScanIndex"):
        width, nlist = members["codes"].shape[1], params["nlist"]
        n = GROWN // width
        members.update(codes=codes(n, width), ids=np.arange(n, dtype=np.int64),
                       offsets=np.linspace(0, n, nlist + 1).astype(np.int64))
    else:  # HNSWIndex: the same graph over wider rows
        n = members["data"].shape[0]
        params["d"] = params["d_c"] = params["d_s"] = d = GROWN // (4 * n)
        members["data"] = rng.standard_normal((n, d), dtype=np.float32)
    save_npz(big_path, kind, version, params, members)


def _small(cls, rng):
    from adanns_ref import HNSWIndex, IVFPQIndex, PQIndex
    from adanns_ref.fastscan import IVFPQFastScanIndex, PQFastScanIndex
    x = rng.standard_normal((2048, 64), dtype=np.float32)
    if cls == "HNSWIndex":
        index = HNSWIndex(64, M=4, ef_construction=8)
        index.add(x)
        return index
    index = {"PQIndex": lambda: PQIndex(64, 64, nbits=8, allow_small=True),
             "PQFastScanIndex": lambda: PQFastScanIndex(64, 64),
             "IVFPQIndex": lambda: IVFPQIndex(64, 16, 64, nbits=8, allow_small=True),
             "IVFPQFastScanIndex": lambda: IVFPQFastScanIndex(64, 16, 64)}[cls]()
    index.train(x)
    index.add(x[:100])
    return index


def _build(cls, n, rng, zeros):
    from adanns_ref import BinaryFlatIndex, BinaryIVFIndex, FlatIndex, IVFIndex, SQIndex
    d = 64
    x = np.zeros((n, d), np.float32) if zeros else rng.standard_normal((n, d), dtype=np.float32)
    if cls == "FlatIndex":
        index = FlatIndex(d)
        index.add(x)
    elif cls == "SQIndex":
        index = SQIndex(d, "fp16")
        index.train(x[:1000])
        index.add(x)
    elif cls == "IVFIndex":
        index = IVFIndex(d, 16)
        index.train(rng.standard_normal((1000, d), dtype=np.float32))  # zeros would not split
        index.add(x)
    elif cls == "BinaryIVFIndex":
        codes = np.ascontiguousarray(x.view(np.uint8))
        index = BinaryIVFIndex(d * 32, 16)
        index.train(np.ascontiguousarray(rng.standard_normal((1000, d), dtype=np.float32).view(np.uint8)))
        index.add(codes)
    else:
        index = BinaryFlatIndex(d * 32)  # the float rows' bytes as codes
        index.add(np.ascontiguousarray(x.view(np.uint8)))
    return index


@pytest.mark.parametrize("cls,n,zeros", [
    ("FlatIndex", 1 << 20, False),     # 256 MiB stored (random floats barely deflate)
    ("FlatIndex", 1 << 20, True),      # 256 MiB of zeros in a ~0.25 MiB deflated file
    ("SQIndex", 1 << 20, False),       # 128 MiB of fp16 codes
    ("BinaryFlatIndex", 1 << 19, False),
    ("IVFIndex", 1 << 20, False),      # 256 MiB of vectors in 16 lists (+ 8 MiB of ids)
    ("BinaryIVFIndex", 1 << 19, False),  # its lists as saved, not rebuilt by re-assignment
    ("PQIndex", None, False),          # grown files (see the module docstring): 48 MiB of codes
    ("PQFastScanIndex", None, False),  # packed blocks
    ("IVFPQIndex", None, False),       # codes + ids in 16 lists (+ the unpacked sub-codes it keeps)
    ("IVFPQFastScanIndex", None, False),  # lists, and the packed blocks load() builds from them
    ("HNSWIndex", None, False),        # 2,048 rows of 6,144 floats and their graph
])
def test_load_peaks_within_returned_arrays_plus_64_mib(tmp_path, cls, n, zeros):
    if not sys.platform.startswith("linux"):
        pytest.skip("RLIMIT_AS and /proc/self/status are Linux's")
    rng = np.random.default_rng(0)
    if n is None:
        _small(cls, rng).save(tmp_path / "small.npz")
        _grown(cls, rng, tmp_path / "small.npz", tmp_path / "big.npz")
        big = getattr(__import__("adanns_ref", fromlist=[cls]), cls).load(tmp_path / "big.npz")
    else:
        small, big = _build(cls, 1000, rng, zeros), _build(cls, n, rng, zeros)
        small.save(tmp_path / "small.npz")
        big.save(tmp_path / "big.npz")
    returned = _array_bytes(big)
    assert returned >= GROWN
    del big
    run = subprocess.run([sys.executable, "-c", CHILD.format(cls=cls), str(tmp_path / "small.npz"),
                          str(tmp_path / "big.npz"), str(returned + SLACK)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and "loaded" in run.stdout, \
        f"{cls}.load of {returned >> 20} MiB of arrays exceeded +64 MiB: {run.stderr[-800:]}"
