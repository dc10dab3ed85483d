# cython: language_level=3
"""Build facts and the small kernels every loss shares (weight checks and sums)."""

from cython.parallel import prange
from libc.stdlib cimport malloc, free

cimport numpy as cnp
from fastloss._blocks cimport BLOCK, n_blocks, threads_for, combine

cnp.import_array()

cdef extern from "_omp_compat.h":
    int FASTLOSS_OPENMP
    int FASTLOSS_OPENMP_VERSION
    int omp_get_max_threads() noexcept nogil
    int omp_get_num_procs() noexcept nogil
    const char* FASTLOSS_SIMD
    const char* FASTLOSS_SIMD_TARGETS
    const char* FASTLOSS_COMPILER
    const char* FASTLOSS_ARCH
    int FASTLOSS_OPENMP_REQUEST

cdef extern from "_omp_runtime.h":
    int fastloss_openmp_runtime(char* buf, int size) noexcept nogil

ctypedef fused floating:
    float
    double


def build_info():
    """Facts fixed when the extension was compiled."""
    return {
        "openmp": bool(FASTLOSS_OPENMP),
        "openmp_version": int(FASTLOSS_OPENMP_VERSION),
        "openmp_request": int(FASTLOSS_OPENMP_REQUEST),
        "simd_baseline": FASTLOSS_SIMD.decode(),
        "simd_targets": FASTLOSS_SIMD_TARGETS.decode().split(),
        "compiler": " ".join(FASTLOSS_COMPILER.decode().split()),
        "arch": FASTLOSS_ARCH.decode(),
        "block_size": BLOCK,
    }


def openmp_runtime():
    """Path of the OpenMP runtime library this module's calls resolve to, or None.

    None in a serial build, or where the platform cannot tell (a statically linked runtime).
    """
    cdef char buf[4096]
    if fastloss_openmp_runtime(buf, sizeof(buf)):
        return buf.decode("utf-8", "surrogateescape")
    return None


def omp_max_threads():
    """``omp_get_max_threads()``: honours OMP_NUM_THREADS and threadpoolctl limits (1 if serial)."""
    return omp_get_max_threads()


cdef double _weight_block(const floating* w, Py_ssize_t start, Py_ssize_t stop,
                          char* bad) noexcept nogil:
    cdef double acc = 0.0
    cdef Py_ssize_t i
    cdef char neg = 0
    for i in range(start, stop):
        acc += w[i]
        neg |= w[i] < 0
    bad[0] = neg
    return acc


def combine_partials(const double[::1] partials):
    """Combine block partial sums exactly as the kernels do (in order, compensated)."""
    if partials.shape[0] == 0:
        return 0.0
    return combine(&partials[0], partials.shape[0])


def weight_sum(const floating[::1] w, int n_threads, double[::1] partials=None):
    """Return ``(sum(w), any(w < 0))`` in one pass; the sum in float64, thread-count independent.

    ``partials``, when given, receives the per-block sums (one slot per block of ``BLOCK``).
    """
    cdef Py_ssize_t n = w.shape[0]
    if n == 0:
        return 0.0, False
    cdef Py_ssize_t nb = n_blocks(n, BLOCK), b
    cdef int nt = threads_for(n, n_threads)
    cdef bint own = partials is None or partials.shape[0] == 0
    if not own and partials.shape[0] != nb:
        raise ValueError(f"partials has {partials.shape[0]} slots, expected {nb}")
    cdef double* part = <double*>malloc(nb * sizeof(double)) if own else &partials[0]
    cdef char* bad = <char*>malloc(nb * sizeof(char))
    cdef double total
    cdef bint negative = False
    if part == NULL or bad == NULL:
        if own:
            free(part)
        free(bad)
        raise MemoryError()
    with nogil:
        for b in prange(nb, schedule="static", num_threads=nt, use_threads_if=nt > 1):
            part[b] = _weight_block(&w[0], b * BLOCK, min(b * BLOCK + BLOCK, n), &bad[b])
        total = combine(part, nb)
        for b in range(nb):
            if bad[b]:
                negative = True
    if own:
        free(part)
    free(bad)
    return total, negative
