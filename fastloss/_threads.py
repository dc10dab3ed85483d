"""The default number of kernel threads."""

from __future__ import annotations

import os
from typing import Optional

from . import _core

_override: Optional[int] = None
_OPENMP = bool(_core.build_info()["openmp"])
_MAX_THREADS = 2**31 - 1


def _usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


# The CPUs this process may use, read once (a system call): every kernel call needs it.
_CPUS = _usable_cpus()


def get_num_threads() -> int:
    """Number of threads a kernel uses when ``n_threads`` is not given.

    The value set by :func:`set_num_threads` if any; otherwise OpenMP's ``omp_get_max_threads()``
    (which honours ``OMP_NUM_THREADS`` and limits set through threadpoolctl) capped at the CPUs
    this process may run on. Always 1 in a build without OpenMP, and in a process made by
    ``fork`` from a thread that had run a kernel on several threads (GNU OpenMP cannot start
    threads there; see ``fastloss._core.threads_lost_to_fork``).

    Returns
    -------
    int
        A positive thread count.

    Examples
    --------
    >>> import fastloss
    >>> fastloss.get_num_threads() >= 1
    True
    """
    if _core.threads_lost_to_fork():
        return 1
    if _override is not None:
        return _override
    if not _OPENMP:
        return 1
    n = _core.omp_max_threads()
    return n if n < _CPUS else _CPUS


def set_num_threads(n_threads: Optional[int]) -> None:
    """Set the default number of kernel threads (``None`` restores the automatic choice).

    Parameters
    ----------
    n_threads : int or None
        A positive number of threads, or ``None``.

    Examples
    --------
    >>> import fastloss
    >>> fastloss.set_num_threads(1)
    >>> fastloss.get_num_threads()
    1
    >>> fastloss.set_num_threads(None)
    """
    global _override
    _override = None if n_threads is None else check_n_threads(n_threads)


def check_n_threads(n_threads: object) -> int:
    if isinstance(n_threads, bool) or not isinstance(n_threads, (int,)) and not hasattr(
        n_threads, "__index__"
    ):
        raise TypeError(f"n_threads must be a positive integer or None, got {n_threads!r}")
    n = int(n_threads)  # type: ignore[call-overload]
    if n < 1:
        raise ValueError(f"n_threads must be a positive integer or None, got {n_threads!r}")
    # The kernels take a C int (and never start more threads than blocks): a larger request
    # means "as many as useful", not an OverflowError.
    return min(n, _MAX_THREADS)


def resolve_n_threads(n_threads: Optional[int]) -> int:
    if n_threads is None:
        return get_num_threads()
    if type(n_threads) is int and 0 < n_threads <= _MAX_THREADS:
        return n_threads
    return check_n_threads(n_threads)
