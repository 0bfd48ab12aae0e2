"""Threads: when BLAS runs single-threaded and when a numba kernel wakes the thread pool.

Every search and training loop here either runs BLAS (numpy's OpenBLAS GEMMs) or numba kernels;
mixing multi-threaded BLAS with numba's pool makes OpenBLAS's spinning threads starve numba's
(measured 5x slower on 2 cores), so the GEMM paths run BLAS on one thread and parallelise over
blocks instead (`blas_single_thread`). Small kernels stay on one thread (`threads_for`): waking
the pool costs ~20 us on an idle machine but milliseconds on a loaded one. Results never depend
on the number of threads.

BLAS_THRESHOLD is faiss's ``distance_compute_blas_threshold``: batches with nq * d below it use
direct sums, above it the BLAS form (`search.exact`, `search.assign`, `quantizers.kmeans`).
"""
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
