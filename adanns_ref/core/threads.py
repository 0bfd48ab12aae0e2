"""Threads: when BLAS runs single-threaded and when a numba kernel wakes the thread pool.

Every search and training loop here either runs BLAS (numpy's OpenBLAS GEMMs) or numba kernels;
mixing multi-threaded BLAS with numba's pool makes OpenBLAS's spinning threads starve numba's
(measured 5x slower on 2 cores), so the GEMM paths run BLAS on one thread and parallelise over
blocks instead (`blas_single_thread`). Small kernels stay on one thread (`threads_for`): waking
the pool costs ~20 us on an idle machine but milliseconds on a loaded one. Results never depend
on the number of threads.

Compiling costs too: a `parallel=True` kernel takes about three times as long to compile as the
same loop compiled serially (numba outlines each prange body into a threaded ufunc and optimises
it again). `serial_or_parallel` compiles one kernel body both ways, each on first use, and
`for_work` hands out the serial form below PARALLEL_MIN_WORK, where `threads_for` would run the
parallel one on a single thread anyway: a first run on small data compiles only serial kernels.
Both forms run the same loop (prange is range when serial), so the results are the same bits.

BLAS_THRESHOLD is faiss's ``distance_compute_blas_threshold``: batches with nq * d below it use
direct sums, above it the BLAS form (`search.exact`, `search.assign`, `quantizers.kmeans`).
"""
import types

import numba
import threadpoolctl

BLAS_THRESHOLD = 128000  # faiss `distance_compute_blas_threshold`: nq * d below it -> direct form
# Work (~flops) below which a numba kernel runs on one thread: waking the pool costs ~20 us on
# an idle machine but milliseconds on a loaded one, so only clearly large kernels go parallel.
PARALLEL_MIN_WORK = 1 << 26

_blas_controller = None


def blas_single_thread():
    """Context limiting every BLAS library to one thread (numba's or our own threads parallelise
    instead). The controller is built once, at the first call (scanning the loaded libraries
    costs about 1 ms); numpy's BLAS is loaded by then, a BLAS loaded later is not limited."""
    global _blas_controller
    if _blas_controller is None:
        _blas_controller = threadpoolctl.ThreadpoolController()
    return _blas_controller.limit(limits=1, user_api="blas")


class threads_for:
    """Context: numba kernels on one thread when `work` (~flops) is too small to repay waking
    the thread pool (on a busy machine a parallel region can cost milliseconds)."""

    def __init__(self, work):
        self.single = work < PARALLEL_MIN_WORK

    def __enter__(self):
        self.previous = numba.get_num_threads()
        if self.single:
            numba.set_num_threads(1)

    def __exit__(self, *exc):
        numba.set_num_threads(self.previous)


class serial_or_parallel:
    """Decorator: one numba kernel body, compiled (cache=True) serially or with parallel=True,
    each form on its first call. ``kernel.for_work(work)`` is the form to call for `work` (~flops):
    serial below PARALLEL_MIN_WORK. ``kernel.serial`` / ``kernel.parallel`` are the dispatchers.
    The serial form compiles a renamed copy of the function, so the two never share a cache
    file (numba names cache files after the function and does not key them on `parallel`)."""

    def __init__(self, py_func):
        name = py_func.__name__ + "_serial"
        copy = types.FunctionType(py_func.__code__, py_func.__globals__, name, py_func.__defaults__,
                                  py_func.__closure__)
        copy.__qualname__ = py_func.__qualname__ + "_serial"
        copy.__doc__ = py_func.__doc__
        self.serial = numba.njit(cache=True)(copy)
        self.parallel = numba.njit(cache=True, parallel=True)(py_func)
        self.__doc__ = py_func.__doc__
        self.__name__ = py_func.__name__

    def __call__(self, *args):
        """The parallel form (what a plain `parallel=True` kernel would run)."""
        return self.parallel(*args)

    def for_work(self, work):
        """The serial dispatcher when work < PARALLEL_MIN_WORK, else the parallel one."""
        return self.serial if work < PARALLEL_MIN_WORK else self.parallel
