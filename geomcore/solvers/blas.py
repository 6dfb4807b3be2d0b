"""BLAS thread limits for the host interior-point solvers (threadpoolctl)."""

from __future__ import annotations

import functools

from threadpoolctl import ThreadpoolController

__all__ = ["one_blas_thread"]


def one_blas_thread(fn):
    """Run ``fn`` with one thread in every loaded BLAS (threadpoolctl).

    The interior-point solvers alternate numpy products (numpy's OpenBLAS)
    with scipy's Cholesky factor and solves (scipy's own OpenBLAS). On two
    cores the idle threads of one library spin while the other works, so a
    (385 x 385) factor took 6.8 ms inside the streamed geometry against
    0.8 ms alone. With one thread each: full PUD POS, 7 layers, warm start,
    label distances 24.6-27.1 s -> 18.1-21.6 s (interior-point SVM finish
    5.0 -> 1.7 s).
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _blas_controller().limit(limits=1, user_api="blas"):
            return fn(*args, **kwargs)

    return wrapper


@functools.cache
def _blas_controller() -> ThreadpoolController:
    """The loaded thread pools, found once: ``threadpool_limits`` would scan
    the process's libraries again on every call (0.74 ms here, against 0.01 ms
    for a limit on this controller). numpy's and scipy's BLAS are both loaded
    by the time an interior-point solver first runs (their modules import
    scipy.linalg)."""
    return ThreadpoolController()
