# cython: language_level=3
"""The block scheme shared by every kernel family.

An array of n elements is cut into fixed blocks of ``BLOCK`` elements. Threads take whole blocks
(``prange(..., schedule="static")``); each block sums its own loss into one float64 partial, and the
partials are combined afterwards in block order. Because the cut does not depend on the number of
threads, every result, reductions included, is bitwise identical for any ``n_threads``.

How many threads a call gets. A parallel region costs a few microseconds, so a thread is only
started for work that takes it longer than that. Work is known in elements, but its time is not:
an element of MSE takes 0.5 ns, one of log-cosh 8, a row of softmax depends on its width. So:

* ``threads_for``: from the element count alone. ``MIN_PER_THREAD`` elements per thread is
  enough for the cheapest loss; calls that large get every thread at once, with no timing.
* ``threads_after_first``: calls below that (``may_time_first`` says which) run their first
  block on the calling thread, timed, and the rest of the call gets as many threads as the
  estimated rest of its time allows, ``MIN_NS_PER_THREAD`` per thread. A log-cosh call of 1e5
  elements then runs on two threads, an MSE call of 2e4 on one.

The blocks do not depend on the choice, so results stay bitwise the same for any thread count
and any timing. ``_core.note_threads`` records the choice (``_core.last_threads()``, a test hook).
"""

cdef extern from "_omp_compat.h":
    int omp_get_max_threads() noexcept nogil
    int omp_in_parallel() noexcept nogil
    long fastloss_enter() noexcept nogil
    void fastloss_leave() noexcept nogil
    double fastloss_now() noexcept nogil
    int FASTLOSS_OPENMP

from fastloss._core cimport team_threads, note_threads

cdef enum:
    BLOCK = 8192                 # elements per block (a multiple of every SIMD width)
    CHUNK = 512                  # elements per stack buffer inside a block (fits in L1)
    MIN_PER_THREAD = 65536       # elements a thread must get before another thread is started
    MIN_NS_PER_THREAD = 12000    # or nanoseconds of measured work (see threads_after_first)


cdef inline double sum_lanes(const double* b, Py_ssize_t m) noexcept nogil:
    """Sum ``b[0:m]`` over 4 interleaved lanes, in a fixed order.

    A single running sum is a serial dependency the compiler may not reorder (that would need
    -ffast-math), which keeps the whole loop around it scalar. The kernels therefore write each
    chunk's terms to a small buffer in a vectorised loop and sum it here: the order depends only
    on the element index, so the result is the same for any thread count and any run.
    """
    cdef double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
    cdef Py_ssize_t j = 0
    while j + 4 <= m:
        s0 += b[j]
        s1 += b[j + 1]
        s2 += b[j + 2]
        s3 += b[j + 3]
        j += 4
    while j < m:
        s0 += b[j]
        j += 1
    return (s0 + s1) + (s2 + s3)


cdef inline double sum_chunk(const double* b, Py_ssize_t m) noexcept nogil:
    """Sum ``b[0:m]`` over 16 interleaved lanes (element j in lane j % 16), in a fixed order.

    For the element-wise chunk buffers (hundreds of terms). ``sum_lanes``' one vector of 4 lanes
    is a chain of dependent additions, 3 cycles per 4 terms: a quarter of the time of a float32
    MSE pass. Four independent vectors (16 lanes) take a cycle per 16. The order still depends
    only on the element index: the same result for any thread count.
    """
    cdef double s[16]
    cdef Py_ssize_t j = 0, l
    for l in range(16):
        s[l] = 0.0
    while j + 16 <= m:
        for l in range(16):
            s[l] += b[j + l]
        j += 16
    while j < m:
        s[j & 15] += b[j]
        j += 1
    for l in range(8):
        s[l] += s[l + 8]
    for l in range(4):
        s[l] += s[l + 4]
    return (s[0] + s[1]) + (s[2] + s[3])


cdef inline Py_ssize_t n_blocks(Py_ssize_t n, Py_ssize_t block) noexcept nogil:
    return (n + block - 1) // block


cdef inline int threads_for(Py_ssize_t work, int n_threads) noexcept nogil:
    """Threads worth starting for ``work`` elements, at most ``n_threads``, at least 1.

    Every team of several threads is started through ``_core.team_threads``, which returns 1
    in a forked child where this thread's OpenMP pool was lost (see _core.pyx: GNU libgomp
    would hang).
    """
    cdef Py_ssize_t t = work // MIN_PER_THREAD
    if omp_in_parallel():
        return 1
    if t < 1:
        return 1
    if t < n_threads:
        return team_threads(<int>t)
    return team_threads(n_threads)


cdef inline bint may_time_first(int nt, int n_threads, Py_ssize_t nb) noexcept nogil:
    """Whether a call for which ``threads_for`` chose ``nt`` threads (of ``n_threads`` allowed)
    should time its first block of ``nb`` to choose again: more threads are allowed, and at
    least two blocks would be left to share."""
    return FASTLOSS_OPENMP and nt < n_threads and nb >= 3 and not omp_in_parallel()


cdef inline int threads_after_first(int nt, double seconds, Py_ssize_t done, Py_ssize_t rest,
                                    Py_ssize_t blocks_left, int n_threads) noexcept nogil:
    """Threads for the rest of a call, after its first ``done`` units of work took ``seconds``:
    ``rest`` units are left, in ``blocks_left`` blocks. Each thread must get
    ``MIN_NS_PER_THREAD`` of the estimated time and a block at least; never fewer than ``nt``
    (the element-count choice), never more than ``n_threads``."""
    cdef double t = seconds * 1e9 * (<double>rest / <double>(done if done > 0 else 1))
    t = t / MIN_NS_PER_THREAD
    cdef int k = n_threads
    if t < k:
        k = <int>t
    if blocks_left < k:
        k = <int>blocks_left
    if k <= nt:
        return nt
    return team_threads(k)


cdef inline double combine(const double* partials, Py_ssize_t nb) noexcept nogil:
    """Sum block partials in block order with Neumaier's compensation (deterministic).

    Once the sum is infinite (an infinite partial, or an overflow), the compensation term is
    ``inf - inf = NaN`` and meaningless: the sum itself (+-inf, or NaN for inf - inf) is returned.
    """
    cdef double s = 0.0, c = 0.0, t, x
    cdef Py_ssize_t b
    for b in range(nb):
        x = partials[b]
        t = s + x
        if (s if s >= 0 else -s) >= (x if x >= 0 else -x):
            c += (s - t) + x
        else:
            c += (x - t) + s
        s = t
    if s - s != 0.0:        # s is +-inf or NaN
        return s
    return s + c


cdef inline int check_sizes(Py_ssize_t n, Py_ssize_t n_true, Py_ssize_t n_w, Py_ssize_t n_lo,
                            Py_ssize_t n_go, Py_ssize_t n_ho) except -1:
    """Every kernel checks its array sizes itself, so no call can read or write out of bounds.

    ``y_true`` must have ``n`` elements; the optional arrays 0 (meaning "none") or ``n``.
    """
    if n_true != n:
        raise ValueError(f"y_true has {n_true} elements, y_pred has {n}")
    for name, size in (("sample_weight", n_w), ("loss_out", n_lo),
                       ("gradient_out", n_go), ("hessian_out", n_ho)):
        if size != 0 and size != n:
            raise ValueError(f"{name} has {size} elements, expected {n} (or none)")
    return 0


cdef inline int variant_code(bint want_loss, Py_ssize_t n_w, Py_ssize_t n_lo, Py_ssize_t n_go,
                             Py_ssize_t n_ho) except -1:
    """The bit code of what one pass computes (see the VARIANTS table of the loop templates).

    L (1): loss summed; S (2): loss stored per element; G (4): gradient; H (8): hessian;
    W (16): sample weights. Which optional arrays are non-empty says what is asked for.
    """
    cdef int store = n_lo > 0
    cdef int grad = n_go > 0
    cdef int hess = n_ho > 0
    if hess and not grad:
        raise ValueError("a hessian is only computed together with the gradient")
    if not (want_loss or store or grad):
        raise ValueError("nothing to compute")
    return (want_loss or store) | store << 1 | grad << 2 | hess << 3 | (n_w > 0) << 4
