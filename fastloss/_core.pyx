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
    int fastloss_cpu_avx2_fma() noexcept nogil
    const char* FASTLOSS_ARCH
    int FASTLOSS_OPENMP_REQUEST

cdef extern from "_omp_runtime.h":
    int fastloss_openmp_runtime(char* buf, int size) noexcept nogil

ctypedef fused floating:
    float
    double


# ---------------------------------------------------------------------------- OpenMP after fork
#
# GNU libgomp keeps a pool of worker threads per thread that has started a parallel region. A
# forked child inherits that bookkeeping but not the threads, so the next parallel region of the
# forking thread waits forever for workers that do not exist (multiprocessing with the "fork"
# start method after the parent ran a kernel on several threads: a classic hang). Other threads,
# and threads created in the child, have no stale pool and are not affected.
#
# The guard: every team of more than one thread is started through ``team_threads`` (from
# ``threads_for`` in _blocks.pxd), which records, per thread, that it has a pool. A
# ``pthread_atfork`` child handler, run in the forking thread of the child, turns that record
# into "pool lost"; from then on that thread runs every kernel on one thread, which is correct,
# only slower. State lives here, in one module, so that every kernel module shares it.
cdef extern from *:
    """
    #if defined(_OPENMP) && !defined(_WIN32)
    #include <pthread.h>
    static __thread int fl_has_team = 0;    /* this thread has started a team of > 1 threads */
    static __thread int fl_pool_lost = 0;   /* ...in the parent of this (forked) process */
    static void fl_after_fork_in_child(void) { if (fl_has_team) fl_pool_lost = 1; }
    static int fl_watch_fork(void) { return pthread_atfork(NULL, NULL, fl_after_fork_in_child); }
    static int fl_team_threads(int n)
    {
        if (n <= 1) return 1;
        if (fl_pool_lost) return 1;
        fl_has_team = 1;
        return n;
    }
    static int fl_threads_lost(void) { return fl_pool_lost; }
    #else
    static int fl_watch_fork(void) { return 0; }
    static int fl_team_threads(int n) { return n > 1 ? n : 1; }
    static int fl_threads_lost(void) { return 0; }
    #endif
    """
    int fl_watch_fork() noexcept nogil
    int fl_team_threads(int n) noexcept nogil
    int fl_threads_lost() noexcept nogil


cdef int team_threads(int n) noexcept nogil:
    """The threads to start for a team of ``n`` (1 in a forked child whose pool is lost)."""
    return fl_team_threads(n)


if fl_watch_fork() != 0:
    raise ImportError("fastloss: pthread_atfork failed")


def threads_lost_to_fork():
    """Whether this thread runs kernels on one thread because its OpenMP pool was lost in a fork.

    True in a child process made by ``fork`` (``multiprocessing``'s default start method on
    Linux) when the forking thread had run a kernel on several threads: GNU libgomp would hang
    there, so fastloss runs serially in that thread. Use the "spawn" or "forkserver" start
    method to keep every thread.
    """
    return bool(fl_threads_lost())


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


def cpu_has_avx2_fma():
    """Whether the running CPU can execute the ``*_avx2`` kernel modules."""
    return bool(fastloss_cpu_avx2_fma())


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


cdef void _probe_block(const floating* a, const floating* b, floating* c, floating* d,
                       Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(start, stop):
        c[i] = a[i] + b[i]
        d[i] = a[i] - b[i]


def stream_probe(const floating[::1] a, const floating[::1] b, floating[::1] c,
                 floating[::1] d, int n_threads):
    """Memory-bandwidth probe: read two arrays and write two, with no real arithmetic.

    It moves the same bytes as a fused loss + gradient + hessian call with the same blocks and
    threads, so its time is the floor such a call can reach on this machine.
    """
    cdef Py_ssize_t n = a.shape[0], nb, bk
    if b.shape[0] != n or c.shape[0] != n or d.shape[0] != n:
        raise ValueError("stream_probe needs four arrays of one length")
    if n == 0:
        return
    nb = n_blocks(n, BLOCK)
    cdef int nt = threads_for(n, n_threads)
    with nogil:
        for bk in prange(nb, schedule="static", num_threads=nt, use_threads_if=nt > 1):
            _probe_block(&a[0], &b[0], &c[0], &d[0], bk * BLOCK, min(bk * BLOCK + BLOCK, n))


cdef extern from "_vmath.h":
    double fl_exp(double) noexcept nogil
    double fl_expm1(double) noexcept nogil
    double fl_log(double) noexcept nogil
    double fl_log1p(double) noexcept nogil
    double fl_tanh(double) noexcept nogil
    double fl_log1p_unit(double) noexcept nogil


def vmath_eval(str name, const double[::1] x, double[::1] out):
    """Evaluate one of fastloss's vectorizable elementary functions over ``x`` (for tests)."""
    cdef Py_ssize_t i, n = x.shape[0]
    if out.shape[0] != n:
        raise ValueError("out must have the length of x")
    cdef int which
    try:
        which = ["exp", "expm1", "log", "log1p", "tanh", "log1p_unit"].index(name)
    except ValueError:
        raise ValueError(f"unknown function {name!r}") from None
    with nogil:
        if which == 0:
            for i in range(n):
                out[i] = fl_exp(x[i])
        elif which == 1:
            for i in range(n):
                out[i] = fl_expm1(x[i])
        elif which == 2:
            for i in range(n):
                out[i] = fl_log(x[i])
        elif which == 3:
            for i in range(n):
                out[i] = fl_log1p(x[i])
        elif which == 4:
            for i in range(n):
                out[i] = fl_tanh(x[i])
        else:
            for i in range(n):
                out[i] = fl_log1p_unit(x[i])
