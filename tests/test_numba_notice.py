"""core.numba_notice: the first compile of one of our kernels is announced once on stderr."""
import io
import os
import subprocess
import sys

import numba
from numba.core import event

from adanns_ref.core.numba_notice import MESSAGE, CompileNotice

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _jitted(module, body="return x + 1"):
    """A fresh (uncached) numba function whose __module__ is `module`."""
    ns = {"__name__": module}
    exec(f"def f(x):\n    {body}\n", ns)
    return numba.njit(ns["f"])


def test_first_compile_of_our_kernel_is_announced_once():
    stream = io.StringIO()
    notice = CompileNotice(stream)
    with event.install_listener("numba:compile", notice):
        _jitted("someone_else.mod")(1)  # another package's kernel: not ours to announce
        assert stream.getvalue() == "" and not notice.said
        ours = _jitted("adanns_ref.fake")
        ours(1)
        ours(2.5)  # a second specialisation compiles too, silently
        _jitted("mrl_ref.fake", "return x * 2")(3)
    assert stream.getvalue() == MESSAGE + "\n" and notice.said


def test_loading_from_the_cache_says_nothing(tmp_path):
    """A fresh cache directory: the first process compiles and says so, the second loads."""
    code = "import numpy as np, adanns_ref as ar; ar.FlatIndex(4).add(np.ones((3, 4), np.float32))"
    code += "; ar.knn_search(np.ones((2, 4), np.float32), np.ones((3, 4), np.float32), 2)"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    env.pop("ADANNS_REF_QUIET_COMPILE", None)
    runs = [subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                           text=True, check=True) for _ in range(2)]
    assert runs[0].stderr.count(MESSAGE) == 1
    assert MESSAGE not in runs[1].stderr
