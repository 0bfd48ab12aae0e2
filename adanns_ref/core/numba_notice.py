"""Say once on stderr when numba starts compiling this package's kernels.

The kernels are compiled on their first call and cached on disk (``cache=True``: next to the
sources in ``__pycache__``, or under NUMBA_CACHE_DIR), so the first run of a fresh install pauses
while they compile and later runs load them. `install` registers a numba event listener for
``numba:compile``, which numba fires only on a cache miss (not when loading from the cache); the
first such compile of a function defined in adanns_ref or mrl_ref prints MESSAGE to stderr,
once per process. ADANNS_REF_QUIET_COMPILE=1 silences it.
"""
import os
import sys

from numba.core import event

MESSAGE = "adanns_ref: compiling numba kernels (first run only; cached for the next runs)"
PACKAGES = ("adanns_ref.", "mrl_ref.")


class CompileNotice(event.Listener):
    """Prints MESSAGE to `stream` (default: sys.stderr at the time) at the first compile of one
    of PACKAGES' functions; `said` tells whether it has."""

    def __init__(self, stream=None):
        self.stream = stream
        self.said = False

    def on_start(self, ev):
        if self.said or os.environ.get("ADANNS_REF_QUIET_COMPILE") == "1":
            return
        dispatcher = (ev.data or {}).get("dispatcher")
        module = getattr(getattr(dispatcher, "py_func", None), "__module__", "") or ""
        if module.startswith(PACKAGES):
            self.said = True
            print(MESSAGE, file=self.stream or sys.stderr, flush=True)

    def on_end(self, ev):
        pass


_notice = None


def install():
    """Register the process-wide CompileNotice (idempotent); returns it."""
    global _notice
    if _notice is None:
        _notice = CompileNotice()
        event.register("numba:compile", _notice)
    return _notice
