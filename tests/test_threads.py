"""core.threads.serial_or_parallel: one kernel body compiled serially or in parallel, the form
picked by the work, the same bits either way, and a small first run compiling no parallel form."""
import itertools
import json
import os
import subprocess
import sys

import numpy as np

from adanns_ref.core.threads import PARALLEL_MIN_WORK, serial_or_parallel
from adanns_ref.core.simd import sq_norms
from adanns_ref.core.topk import new_heaps, new_reservoirs
from adanns_ref.funnel import kernels as fk


def test_for_work_picks_the_serial_form_below_the_threshold():
    k = fk._scan_kernel
    assert k.for_work(PARALLEL_MIN_WORK - 1) is k.serial
    assert k.for_work(PARALLEL_MIN_WORK) is k.parallel
    assert k.serial is not k.parallel
    assert k.serial.py_func.__qualname__ == "_scan_kernel_serial"  # its own cache file


def test_serial_and_parallel_forms_give_the_same_bits():
    rng = np.random.default_rng(5)
    xb = rng.standard_normal((3000, 16)).astype(np.float32)
    xq = rng.standard_normal((40, 16)).astype(np.float32)
    xb[1500:1600] = xb[:100]  # tied distances: the (distance, id) rule decides
    blocks = fk.to_blocks(xb)
    empty = np.empty(0, dtype=np.float32)
    norms = (empty, empty), (fk.block_norms(xb), sq_norms(xq))  # direct, BLAS form
    for k, (xn, qn) in itertools.product((5, 150), norms):  # heaps, then reservoirs (k > 100)
        out = []
        for form in (fk._scan_kernel.serial, fk._scan_kernel.parallel):
            hd, hi = new_heaps(xq.shape[0], k)
            bd, bi, count = new_reservoirs(xq.shape[0] if k > 100 else 0, k)
            form(xq, blocks, xb.shape[0], False, xn, qn, hd, hi, bd, bi, count)
            out.append((hd, hi))
        np.testing.assert_array_equal(out[0][0], out[1][0])
        np.testing.assert_array_equal(out[0][1], out[1][1])


def test_the_decorator_keeps_name_and_doc():
    @serial_or_parallel
    def twice(x):
        """x times 2."""
        return 2 * x

    assert twice.__name__ == "twice" and twice.__doc__ == "x times 2."
    assert twice.serial(3) == twice(3) == 6


def test_a_small_first_run_compiles_no_parallel_kernel(tmp_path):
    """The quick start's sizes (#23): every kernel it calls runs its serial form, so a fresh
    install compiles no parallel=True kernel (three times the compile time of a serial one).
    Counted in a child with an empty numba cache."""
    child = """
import json
import numpy as np
import adanns_ref as ar
from adanns_ref.core import topk
from adanns_ref.funnel import kernels as fk, rerank_kernels as rk
from adanns_ref.indices import ivf
from adanns_ref.indices.hnsw import kernels as hk
from adanns_ref.quantizers import binary, kmeans
from adanns_ref.search import assign, exact
rng = np.random.default_rng(0)
xb = rng.standard_normal((3000, 32)).astype(np.float32)
xq = rng.standard_normal((20, 32)).astype(np.float32)
ar.FlatIndex(16).add(ar.prefix(xb, 16))
f = ar.FlatIndex(16); f.add(ar.prefix(xb, 16)); f.search(ar.prefix(xq, 16), k=10)
i = ar.IVFIndex(32, nlist=32, d_c=8, d_s=16); i.train(xb); i.add(xb); i.search(xq, k=10, nprobe=4)
ar.funnel_search(xb, xq, stages=[(8, 200), (32, 10)])
ar.mixed_funnel_search(xb, xq, [(16, "binary", None), (32, "float", 10)], oversample=4)
h = ar.HNSWIndex(32, M=8); h.add(xb); h.search(xq, k=10, ef_search=32, d_c=16, d_s=32)
kernels = (topk._sort_heap_rows, fk._scan_kernel, rk._rerank_sorted, ivf._scan_lists,
           hk.forward_links_batch, hk.merge_reverse_batch, hk.search_batch, hk.rescore_batch,
           binary._scan_flat, kmeans._compute_centroids, assign._assign_gemm, assign._assign_direct,
           exact._scan_direct)
print(json.dumps({k.__name__: [len(k.serial.signatures), len(k.parallel.signatures)]
                  for k in kernels}))
"""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), ADANNS_REF_QUIET_COMPILE="1")
    run = subprocess.run([sys.executable, "-c", child], cwd=root, env=env, capture_output=True,
                         text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    counts = json.loads(run.stdout.strip().splitlines()[-1])
    assert {name: c[1] for name, c in counts.items()} == {name: 0 for name in counts}
    used = [name for name, c in counts.items() if c[0]]
    assert {"_scan_kernel", "_rerank_sorted", "_scan_lists", "forward_links_batch",
            "search_batch", "_scan_flat", "_compute_centroids"} <= set(used), counts
