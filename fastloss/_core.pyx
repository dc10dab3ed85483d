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
    int fastloss_cpu_avx512() noexcept nogil
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


# The thread count of the last kernel call made by this thread (_blocks.pxd: how it is chosen).
cdef extern from *:
    """
    #if defined(_MSC_VER) && !defined(__clang__)
    static __declspec(thread) int fl_last_threads = 0;
    #else
    static __thread int fl_last_threads = 0;
    #endif
    """
    int fl_last_threads


cdef void note_threads(int n) noexcept nogil:
    """Record the thread count a kernel call chose (read by ``last_threads``)."""
    global fl_last_threads
    fl_last_threads = n


def last_threads():
    """The number of threads the last kernel call made from this Python thread ran on (0 before
    any). A test hook: the count follows the work (see ``_blocks.pxd``), never the results."""
    return fl_last_threads


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


def cpu_has_avx512():
    """Whether the running CPU can execute the ``*_avx512`` kernel modules."""
    return bool(fastloss_cpu_avx512())


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
    # Four interleaved sums in a fixed order (as _blocks.sum_lanes), so the loop vectorises:
    # a single running sum is a dependency chain that kept it scalar, about 1 ns per element
    # for every weighted call. The negative-weight flag is a 64-bit integer, the width of a
    # double (a char flag makes the vectoriser use 32 lanes and spill).
    cdef double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
    cdef long long neg = 0
    cdef Py_ssize_t i = start
    while i + 4 <= stop:
        s0 += w[i]
        s1 += w[i + 1]
        s2 += w[i + 2]
        s3 += w[i + 3]
        neg |= (w[i] < 0) | (w[i + 1] < 0) | (w[i + 2] < 0) | (w[i + 3] < 0)
        i += 4
    while i < stop:
        s0 += w[i]
        neg |= w[i] < 0
        i += 1
    bad[0] = neg != 0
    return (s0 + s1) + (s2 + s3)


def combine_partials(const double[::1] partials):
    """Combine block partial sums exactly as the kernels do (in order, compensated)."""
    if partials.shape[0] == 0:
        return 0.0
    return combine(&partials[0], partials.shape[0])


cdef int _weight_sum_into(const floating* w, Py_ssize_t n, int n_threads, double* partials,
                          double* total, bint* negative) noexcept nogil:
    """``total[0] = sum(w[0:n])`` and ``negative[0] = any(w < 0)`` over ``n > 0`` elements, by
    blocks (``partials``, when not NULL, receives each block's sum). Returns -1 when out of
    memory, else 0. Shared by ``weight_sum`` and the fast call path below."""
    cdef Py_ssize_t nb = n_blocks(n, BLOCK), b
    cdef int nt = threads_for(n, n_threads)
    cdef bint own = partials == NULL
    cdef double* part = <double*>malloc(nb * sizeof(double)) if own else partials
    cdef char* bad = <char*>malloc(nb * sizeof(char))
    if part == NULL or bad == NULL:
        if own:
            free(part)
        free(bad)
        return -1
    for b in prange(nb, schedule="static", num_threads=nt, use_threads_if=nt > 1):
        part[b] = _weight_block(w, b * BLOCK, min(b * BLOCK + BLOCK, n), &bad[b])
    total[0] = combine(part, nb)
    negative[0] = False
    for b in range(nb):
        if bad[b]:
            negative[0] = True
    if own:
        free(part)
    free(bad)
    return 0


def weight_sum(const floating[::1] w, int n_threads, double[::1] partials=None):
    """Return ``(sum(w), any(w < 0))`` in one pass; the sum in float64, thread-count independent.

    ``partials``, when given, receives the per-block sums (one slot per block of ``BLOCK``).
    """
    cdef Py_ssize_t n = w.shape[0]
    if n == 0:
        return 0.0, False
    cdef Py_ssize_t nb = n_blocks(n, BLOCK)
    cdef bint own = partials is None or partials.shape[0] == 0
    if not own and partials.shape[0] != nb:
        raise ValueError(f"partials has {partials.shape[0]} slots, expected {nb}")
    cdef double total
    cdef bint negative = False
    cdef int status
    with nogil:
        status = _weight_sum_into(&w[0], n, n_threads, NULL if own else &partials[0], &total,
                                  &negative)
    if status != 0:
        raise MemoryError()
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
    double fl_exp_lp(double) noexcept nogil
    float fl_expf_nonpos(float) noexcept nogil
    float fl_log1p_unitf(float) noexcept nogil
    float fl_expm1f_poly_tail(float) noexcept nogil
    float fl_logf_normal(float) noexcept nogil
    float fl_expf(float) noexcept nogil
    float fl_expm1mxf_poly(float) noexcept nogil
    double fl_exp_m1_nonpos(double, double*) noexcept nogil
    float fl_expf_m1_nonpos(float, float*) noexcept nogil


# the second output of the functions that return two, as one-argument functions for the table
cdef double _exp_m1_nonpos_m(double x) noexcept nogil:
    cdef double m
    fl_exp_m1_nonpos(x, &m)
    return m


cdef float _expf_m1_nonpos_m(float x) noexcept nogil:
    cdef float m
    fl_expf_m1_nonpos(x, &m)
    return m


ctypedef double (*vfun64)(double) noexcept nogil
ctypedef float (*vfun32)(float) noexcept nogil


def vmath_eval(str name, const double[::1] x, double[::1] out):
    """Evaluate one of fastloss's vectorizable elementary functions over ``x`` (for tests; called
    through a pointer, so one element at a time: accuracy, not speed)."""
    cdef Py_ssize_t i, n = x.shape[0]
    if out.shape[0] != n:
        raise ValueError("out must have the length of x")
    cdef vfun64 f
    if name == "exp": f = fl_exp
    elif name == "expm1": f = fl_expm1
    elif name == "log": f = fl_log
    elif name == "log1p": f = fl_log1p
    elif name == "tanh": f = fl_tanh
    elif name == "log1p_unit": f = fl_log1p_unit
    elif name == "exp_lp": f = fl_exp_lp
    elif name == "exp_m1_nonpos_m": f = _exp_m1_nonpos_m  # e^x - 1, x <= 0
    else:
        raise ValueError(f"unknown function {name!r}")
    with nogil:
        for i in range(n):
            out[i] = f(x[i])


def vmath_eval_f32(str name, const float[::1] x, float[::1] out):
    """Evaluate one of the float32 functions of ``_vmath.h`` over ``x`` (for tests, as
    ``vmath_eval``)."""
    cdef Py_ssize_t i, n = x.shape[0]
    if out.shape[0] != n:
        raise ValueError("out must have the length of x")
    cdef vfun32 f
    if name == "exp_nonpos": f = fl_expf_nonpos
    elif name == "log1p_unit": f = fl_log1p_unitf
    elif name == "expm1_tail": f = fl_expm1f_poly_tail
    elif name == "log_normal": f = fl_logf_normal
    elif name == "exp": f = fl_expf
    elif name == "expm1mx": f = fl_expm1mxf_poly
    elif name == "exp_m1_nonpos_m": f = _expf_m1_nonpos_m
    else:
        raise ValueError(f"unknown function {name!r}")
    with nogil:
        for i in range(n):
            out[i] = f(x[i])


# ---------------------------------------------------------------------------- the fast call path
#
# Why this exists. A call such as ``MSE().loss(y, p)`` on 1,000 elements spends well under a
# microsecond in its kernel, but about four in the Python that leads there
# (``ElementwiseLoss._run``: checking the reduction, ``_prepare``, ``get_num_threads()``, the
# output arrays, the kernel lookup, building the scalar result). ``elementwise_call`` below does
# the same for the common call in C, two to three times faster overall:
#
#   * exact ``numpy.ndarray`` inputs whose dtype *is* the native float64 or float32 descriptor,
#     both C-contiguous, of one shape (what ``ElementwiseLoss._prepare`` passes through untouched);
#   * no weights, or weights of that same dtype, shape and layout, whose sum is non-negative,
#     non-zero for a "mean", and inside the range where ``mean_weights`` leaves them alone;
#   * a ``reduction`` the loss allows; ``n_threads`` None or a plain ``int`` in [1, 2**31 - 1];
#   * ``*_out`` arrays, if any, of exactly that dtype and shape, C-contiguous, writeable, and
#     sharing no memory with an input or each other (an in-place call goes to ``_run``);
#   * a class that keeps ``ElementwiseLoss._run`` and ``_prepare``.
#
# Everything else, and every call that would raise, or take a rare branch of ``_run`` (weights
# out of range, a negative or zero weight sum, the retry of a "mean" whose float64 sum overflowed),
# is handed to ``self._run`` with the arguments the public method passes, and ``_run`` redoes it
# from the start. ``_run`` is deterministic and nothing was written anywhere the caller can see
# (only into arrays the fast path made), so a fallback is never observable: errors
# are raised by the same code in the same order, and results are bitwise those of ``_run``. The
# fast path raises nothing itself except through ``self._raise_domain`` (domain flags), which is
# what ``_run`` calls at that point too; its arithmetic (``1 / sum(w)`` scale, ``total / wsum``,
# the final cast) is the same IEEE double arithmetic as ``_run``'s, done in C.
#
# What is re-read on every call: the loss's ``reductions``, its kernel cache ``_calls`` (filled
# through ``self._kernel_for`` on a miss, as ``_run`` does) and the default thread count
# (``default_threads``: the override of ``set_num_threads`` and ``_CPUS`` read from
# ``fastloss._threads`` itself, ``omp_get_max_threads()`` which follows OMP_NUM_THREADS and
# threadpoolctl, the fork guard), ``has_hessian``. What is cached: per class, whether it
# overrides ``_run``, ``_prepare``, ``_reduce`` or ``_require_hessian`` (a class whose methods
# are replaced after its first call is not seen; subclasses defined at any time are).

from cpython.object cimport PyObject
from cpython.dict cimport PyDict_GetItem
from libc.math cimport isinf, INFINITY, NAN

cdef extern from "numpy/arrayobject.h":
    object PyArray_Scalar(void* data, cnp.dtype descr, object base)

cdef object _ew_run = None          # ElementwiseLoss._run, _prepare, _reduce (set by fast_setup)
cdef object _ew_prepare = None
cdef object _ew_reduce = None
cdef object _ew_require_hessian = None
cdef object _to_dtype = None        # _base.to_dtype: cast of a non-float _reduce result
cdef dict _threads_ns = None        # fastloss._threads.__dict__ (read on every call)
cdef object _empty64 = None         # _validation.EMPTY: "not wanted" for the kernels
cdef object _empty32 = None
cdef object _no_partials = None
cdef dict _class_modes = {}         # class -> its _FAST | _DEFAULT_* bits
cdef unsigned long long _n_fast = 0       # calls completed on the fast path / handed to _run
cdef unsigned long long _n_fallback = 0
cdef bint _fast_enabled = True            # set_fast_path(False): every call to _run (tests)
cdef cnp.dtype _d64 = cnp.PyArray_DescrFromType(cnp.NPY_DOUBLE)
cdef cnp.dtype _d32 = cnp.PyArray_DescrFromType(cnp.NPY_FLOAT)

cdef enum:
    _FAST = 1           # the class keeps ElementwiseLoss._run and _prepare
    _DEFAULT_REDUCE = 2  # ... _reduce
    _DEFAULT_REQUIRE = 4  # ... _require_hessian
    _RED_MEAN = 0
    _RED_SUM = 1
    _RED_NONE = 2

cdef double _WSUM_LOW = 2.0 ** -600, _WSUM_HIGH = 2.0 ** 600   # as _base.mean_weights


def fast_setup(base, dict threads_ns, empty64, empty32, no_partials, to_dtype):
    """Hand ``elementwise_call`` what it shares with ``fastloss._base`` (called once, there)."""
    global _ew_run, _ew_prepare, _ew_reduce, _threads_ns, _empty64, _empty32, _no_partials
    global _to_dtype, _ew_require_hessian
    _ew_run, _ew_prepare, _ew_reduce = base._run, base._prepare, base._reduce
    _ew_require_hessian = base._require_hessian
    _threads_ns, _empty64, _empty32, _no_partials = threads_ns, empty64, empty32, no_partials
    _to_dtype = to_dtype
    _class_modes.clear()


cdef int _default_threads() except -1:
    """``fastloss.get_num_threads()``, in C: the same rules, the same state, read every call."""
    if fl_threads_lost():
        return 1
    cdef PyObject* override = PyDict_GetItem(_threads_ns, "_override")
    if override != NULL and <object>override is not None:
        return <object>override
    if not FASTLOSS_OPENMP:
        return 1
    cdef int n = omp_get_max_threads()
    cdef int cpus = <object>PyDict_GetItem(_threads_ns, "_CPUS")
    return n if n < cpus else cpus


def fast_call_counts():
    """``(fast, fallback)``: how many calls ``elementwise_call`` completed itself and how many it
    handed to ``_run`` since the process started (a test hook; the counts are not reset)."""
    return _n_fast, _n_fallback


def set_fast_path(bint enabled):
    """Turn the fast path on or off (off: every call goes to ``_run``); returns the previous
    setting. For tests and for comparisons: results are the same either way."""
    global _fast_enabled
    previous = _fast_enabled
    _fast_enabled = enabled
    return previous


def default_threads():
    """What the fast call path uses for ``n_threads=None`` (equal to ``get_num_threads()``)."""
    return _default_threads()


cdef int _class_mode(cls) except -1:
    cdef PyObject* found = PyDict_GetItem(_class_modes, cls)
    if found != NULL:
        return <object>found
    cdef int mode = 0
    if getattr(cls, "_run", None) is _ew_run and getattr(cls, "_prepare", None) is _ew_prepare:
        mode |= _FAST
    if getattr(cls, "_reduce", None) is _ew_reduce:
        mode |= _DEFAULT_REDUCE
    if getattr(cls, "_require_hessian", None) is _ew_require_hessian:
        mode |= _DEFAULT_REQUIRE
    if len(_class_modes) >= 1024:     # (classes made on the fly must not pile up here)
        _class_modes.clear()
    _class_modes[cls] = mode
    return mode


cdef object _fallback(self, y_true, y_pred, sample_weight, reduction, n_threads, int what,
                      loss_out, gradient_out, hessian_out):
    """``self._run`` called exactly as the public method of ``what`` calls it, and its result
    shaped as that method returns it."""
    global _n_fallback
    _n_fallback += 1
    if what == 1:       # loss
        return self._run(y_true, y_pred, sample_weight, reduction, n_threads, loss=True,
                         grad=False, hess=False, loss_out=loss_out)[0]
    if what == 2:       # gradient
        return self._run(y_true, y_pred, sample_weight, reduction, n_threads, loss=False,
                         grad=True, hess=False, gradient_out=gradient_out)[1]
    if what == 3:       # loss_gradient
        value, g, _ = self._run(y_true, y_pred, sample_weight, reduction, n_threads, loss=True,
                                grad=True, hess=False, loss_out=loss_out,
                                gradient_out=gradient_out)
        return value, g
    if what == 7:       # loss_gradient_hessian
        return self._run(y_true, y_pred, sample_weight, reduction, n_threads, loss=True,
                         grad=True, hess=True, loss_out=loss_out, gradient_out=gradient_out,
                         hessian_out=hessian_out)
    if what == 6:       # gradient_hessian
        _, g, h = self._run(y_true, y_pred, sample_weight, reduction, n_threads, loss=False,
                            grad=True, hess=True, gradient_out=gradient_out,
                            hessian_out=hessian_out)
        return g, h
    raise ValueError(f"elementwise_call: unknown request {what}")


cdef bint _overlaps(cnp.ndarray a, object other):
    """The bytes of ``a`` and of ``other`` (a C-contiguous ndarray) intersect; False when
    ``other`` is not an ndarray (None, or an out that ``_usable_out`` refuses on its own)."""
    if other is None or not cnp.PyArray_Check(other):
        return False
    cdef cnp.ndarray b = <cnp.ndarray>other
    cdef char* a0 = <char*>cnp.PyArray_DATA(a)
    cdef char* b0 = <char*>cnp.PyArray_DATA(b)
    return a0 < b0 + cnp.PyArray_NBYTES(b) and b0 < a0 + cnp.PyArray_NBYTES(a)


def overlap(a, b):
    """How the bytes of two C-contiguous arrays meet: 0 apart, 1 the same range, 2 otherwise
    overlapping. Exact for contiguous arrays, and about 50 ns (``np.may_share_memory`` costs
    ten times more); ``fastloss._validation.detach_inputs`` uses it."""
    if not (cnp.PyArray_Check(a) and cnp.PyArray_Check(b)):
        raise TypeError("overlap needs two numpy arrays")
    cdef cnp.ndarray x = <cnp.ndarray>a, y = <cnp.ndarray>b
    if not (cnp.PyArray_IS_C_CONTIGUOUS(x) and cnp.PyArray_IS_C_CONTIGUOUS(y)):
        raise ValueError("overlap needs C-contiguous arrays")
    if cnp.PyArray_NBYTES(x) == 0 or cnp.PyArray_NBYTES(y) == 0 or not _overlaps(x, y):
        return 0
    if (cnp.PyArray_DATA(x) == cnp.PyArray_DATA(y)
            and cnp.PyArray_NBYTES(x) == cnp.PyArray_NBYTES(y)):
        return 1
    return 2


cdef bint _usable_out(object out, cnp.ndarray yp, cnp.ndarray yt, object w, object o1,
                      object o2):
    """``out`` is None, or what ``check_out`` accepts for ``yp`` (exact ndarray of its dtype and
    shape, C-contiguous, writeable) and shares no memory with the inputs or the other outs."""
    if out is None:
        return True
    if not cnp.PyArray_CheckExact(out):
        return False
    cdef cnp.ndarray o = <cnp.ndarray>out
    if (<void*>cnp.PyArray_DESCR(o) != <void*>cnp.PyArray_DESCR(yp)
            or cnp.PyArray_NDIM(o) != cnp.PyArray_NDIM(yp) or not cnp.PyArray_SAMESHAPE(o, yp)
            or not cnp.PyArray_IS_C_CONTIGUOUS(o) or not cnp.PyArray_ISWRITEABLE(o)):
        return False
    if cnp.PyArray_SIZE(o) == 0:
        return True
    return not (_overlaps(o, yp) or _overlaps(o, yt) or _overlaps(o, w) or _overlaps(o, o1)
                or _overlaps(o, o2))


def elementwise_call(self, y_true, y_pred, sample_weight, reduction, n_threads, int what,
                     loss_out, gradient_out, hessian_out):
    """The public methods of ``ElementwiseLoss`` (see the design comment above).

    ``what`` names the method by the kind bits it computes: 1 ``loss``, 2 ``gradient``,
    3 ``loss_gradient``, 7 ``loss_gradient_hessian``, 6 ``gradient_hessian`` (with
    ``reduction="none"``); the result is that method's. The methods with a hessian call
    ``self._require_hessian()`` first (inlined when the class keeps it); calls outside the fast
    path then go to ``self._run``, with the same outcome.
    """
    cdef bint want_l = what & 1, want_g = what & 2, want_h = what & 4
    cdef int mode = _class_mode(type(self))
    if want_h:
        # first, as the public methods do: ElementwiseLoss._require_hessian inlined
        if not mode & _DEFAULT_REQUIRE or not self.has_hessian:
            self._require_hessian()
    if not _fast_enabled or not (what == 1 or what == 2 or what == 3 or what == 6 or what == 7):
        return _fallback(self, y_true, y_pred, sample_weight, reduction, n_threads, what,
                         loss_out, gradient_out, hessian_out)
    if not mode & _FAST or type(reduction) is not str:
        return _fallback(self, y_true, y_pred, sample_weight, reduction, n_threads, what,
                         loss_out, gradient_out, hessian_out)
    cdef int red
    if reduction == "mean":
        red = _RED_MEAN
    elif reduction == "sum":
        red = _RED_SUM
    elif reduction == "none":
        red = _RED_NONE
    else:
        red = -1
    if red < 0 or reduction not in self.reductions:
        return _fallback(self, y_true, y_pred, sample_weight, reduction, n_threads, what,
                         loss_out, gradient_out, hessian_out)
    # the arrays: as ElementwiseLoss._prepare's own shortcut accepts them, and weights alike
    if not (cnp.PyArray_CheckExact(y_pred) and cnp.PyArray_CheckExact(y_true)):
        return _fallback(self, y_true, y_pred, sample_weight, reduction, n_threads, what,
                         loss_out, gradient_out, hessian_out)
    cdef cnp.ndarray yp = <cnp.ndarray>y_pred, yt = <cnp.ndarray>y_true, w = None
    cdef void* descr = <void*>cnp.PyArray_DESCR(yp)
    if ((descr != <void*>_d64 and descr != <void*>_d32)
            or <void*>cnp.PyArray_DESCR(yt) != descr
            or not cnp.PyArray_IS_C_CONTIGUOUS(yp) or not cnp.PyArray_IS_C_CONTIGUOUS(yt)
            or cnp.PyArray_NDIM(yp) != cnp.PyArray_NDIM(yt)
            or not cnp.PyArray_SAMESHAPE(yp, yt)):
        return _fallback(self, y_true, y_pred, sample_weight, reduction, n_threads, what,
                         loss_out, gradient_out, hessian_out)
    if sample_weight is not None:
        if not cnp.PyArray_CheckExact(sample_weight):
            return _fallback(self, y_true, y_pred, sample_weight, reduction, n_threads, what,
                             loss_out, gradient_out, hessian_out)
        w = <cnp.ndarray>sample_weight
        if (<void*>cnp.PyArray_DESCR(w) != descr or not cnp.PyArray_IS_C_CONTIGUOUS(w)
                or cnp.PyArray_NDIM(w) != cnp.PyArray_NDIM(yp)
                or not cnp.PyArray_SAMESHAPE(w, yp)):
            return _fallback(self, y_true, y_pred, sample_weight, reduction, n_threads, what,
                             loss_out, gradient_out, hessian_out)
    # threads: as resolve_n_threads, whose other cases (errors, numpy integers) _run handles
    cdef int nt
    if n_threads is None:
        nt = _default_threads()
    elif type(n_threads) is int and 0 < n_threads <= 2147483647:
        nt = n_threads
    else:
        return _fallback(self, y_true, y_pred, sample_weight, reduction, n_threads, what,
                         loss_out, gradient_out, hessian_out)
    cdef bint f64 = descr == <void*>_d64
    cdef Py_ssize_t n = cnp.PyArray_SIZE(yp)
    cdef double wsum = <double>n
    cdef bint negative = False
    cdef int status = 0
    if w is not None and n > 0:
        with nogil:
            if f64:
                status = _weight_sum_into(<const double*>cnp.PyArray_DATA(w), n, nt, NULL,
                                          &wsum, &negative)
            else:
                status = _weight_sum_into(<const float*>cnp.PyArray_DATA(w), n, nt, NULL,
                                          &wsum, &negative)
        # _run raises (negative, or zero sum for a mean), or rescales the weights: its call
        if status != 0 or negative or (red == _RED_MEAN
                                       and not _WSUM_LOW <= wsum <= _WSUM_HIGH):
            return _fallback(self, y_true, y_pred, sample_weight, reduction, n_threads, what,
                             loss_out, gradient_out, hessian_out)
    elif w is not None:
        wsum = 0.0
    cdef double scale = 1.0 / wsum if (red == _RED_MEAN and wsum > 0) else 1.0
    cdef bint store = want_l and red == _RED_NONE
    empty = _empty64 if f64 else _empty32
    lo = go = ho = empty
    cdef int typenum = cnp.NPY_DOUBLE if f64 else cnp.NPY_FLOAT
    cdef int nd = cnp.PyArray_NDIM(yp)
    cdef cnp.npy_intp* dims = cnp.PyArray_DIMS(yp)
    # the user's out arrays when they fit exactly and overlap nothing (any doubt: _run, which
    # checks them, raises the right error, or copies an overlapped input)
    if loss_out is not None or gradient_out is not None or hessian_out is not None:
        if ((loss_out is not None and not store)
                or not _usable_out(loss_out, yp, yt, w, gradient_out, hessian_out)
                or not _usable_out(gradient_out, yp, yt, w, loss_out, hessian_out)
                or not _usable_out(hessian_out, yp, yt, w, loss_out, gradient_out)):
            return _fallback(self, y_true, y_pred, sample_weight, reduction, n_threads, what,
                             loss_out, gradient_out, hessian_out)
    if store:
        lo = cnp.PyArray_EMPTY(nd, dims, typenum, 0) if loss_out is None else loss_out
    if want_g:
        go = cnp.PyArray_EMPTY(nd, dims, typenum, 0) if gradient_out is None else gradient_out
    if want_h:
        ho = cnp.PyArray_EMPTY(nd, dims, typenum, 0) if hessian_out is None else hessian_out
    # the kernel and its scalar arguments, from the loss's own cache (as _run)
    dtype = <object>descr
    cdef PyObject* entry = PyDict_GetItem(self._calls, dtype)
    call = <object>entry if entry != NULL else self._kernel_for(dtype)
    kernel, args = call
    cdef Py_ssize_t nargs = len(args)
    wa = empty if w is None else w
    want = want_l and not store
    if nargs == 0:
        res = kernel(yt, yp, wa, lo, go, ho, want, scale, nt, _no_partials)
    elif nargs == 1:
        res = kernel(yt, yp, wa, lo, go, ho, want, scale, nt, _no_partials, args[0])
    elif nargs == 2:
        res = kernel(yt, yp, wa, lo, go, ho, want, scale, nt, _no_partials, args[0], args[1])
    else:
        res = kernel(yt, yp, wa, lo, go, ho, want, scale, nt, _no_partials, *args)
    cdef double total = res[0]
    flags = res[1]
    if flags:
        self._raise_domain(flags)
    cdef double v
    cdef float v32
    if store:
        value = lo
    elif want_l:
        if red == _RED_MEAN and isinf(total) and 0 < wsum < INFINITY:
            # sum(w*l) overflowed: _run's retry with rescaled weights (rare; redo it all there)
            return _fallback(self, y_true, y_pred, sample_weight, reduction, n_threads, what,
                             loss_out, gradient_out, hessian_out)
        if mode & _DEFAULT_REDUCE:
            if red == _RED_MEAN:
                v = total / wsum if wsum > 0 else NAN
            else:
                v = total
            reduced = None
        else:
            reduced = self._reduce(total, wsum, reduction)
            if type(reduced) is float:
                v = reduced
                reduced = None
        if reduced is not None:     # an overridden _reduce returned something else: as _run
            value = dtype.type(reduced) if f64 else _to_dtype(reduced, dtype)
        elif f64:
            value = PyArray_Scalar(&v, _d64, None)
        else:
            # the C cast rounds to nearest (inf beyond the float32 range), as numpy's does,
            # without numpy's overflow warning (as _base.to_dtype)
            v32 = <float>v
            value = PyArray_Scalar(&v32, _d32, None)
    else:
        value = None
    global _n_fast
    _n_fast += 1
    if what == 1:
        return value
    if what == 2:
        return go
    if what == 3:
        return value, go
    if what == 7:
        return value, go, ho
    return go, ho
