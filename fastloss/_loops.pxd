# cython: language_level=3
"""The one loop of every element-wise kernel, written once for float32 and float64.

A kernel walks its block in chunks of ``CHUNK`` elements (see ``_blocks.pxd`` for blocks) and
calls the loss's *eval* function (generated per loss from ``_elementwise.tpi``) on each chunk.
The eval function computes the loss and/or the first and second derivatives in float64 (float32
arithmetic for float32 data of the NATIVE32 losses, see ``run_elementwise``), applies
the weights and the scale, and stores the outputs in the compute dtype, in one vectorised loop
with the element math inlined. A summed loss goes to a float64 stack buffer of the chunk, which
this module sums in a fixed order (``sum_chunk``). Only 8 kinds exist (L, G, LG, GH, LGH, with
the loss summed or stored), so each loss has 8 loops per dtype.

Without weights, the eval function reads a chunk of ones as its weights (``w * x`` with
``w = 1`` is exact): one loop serves both cases, and its cost is a load and a multiply from L1.

The eval function is called through a pointer once per chunk (a few ns per 512 elements), which
is what lets this loop, the threading and the reduction exist once instead of once per loss.
"""

from cython.parallel cimport prange
from libc.stdlib cimport malloc, free
from libc.math cimport fabs

cimport numpy as cnp

from fastloss._blocks cimport (
    BLOCK, CHUNK, n_blocks, threads_for, combine, sum_chunk, variant_code, fastloss_enter,
    fastloss_leave, fastloss_now, may_time_first, threads_after_first, note_threads,
)

ctypedef fused floating:
    float
    double

# The eval functions' pointers are `restrict`: inputs and outputs never overlap (an output the
# caller aliases with an input is copied first). Without it GCC must check every pair at run time
# before it may vectorise, and with six pointers it gives up (the loops ran scalar, 4x slower).
cdef extern from *:
    ctypedef const float* in_f32 "const float * __restrict__"
    ctypedef const double* in_f64 "const double * __restrict__"
    ctypedef float* out_f32 "float * __restrict__"
    ctypedef double* out_f64 "double * __restrict__"

# eval(y, p, w, m, Ls, lo, go, ho, scale, flag, params): for elements y[0:m], p[0:m] with weights
# w[0:m], write those of its kind among Ls[i] = w*l (float64, to be summed), lo[i] = w*l,
# go[i] = scale*w*l', ho[i] = scale*w*l'' (compute dtype); OR domain-flag bits into flag[0].
# A loss hands over a table of 16 of them indexed by the kind bits (1 loss, 2 gradient,
# 4 hessian, 8 loss stored rather than summed).
ctypedef void (*eval_f32_t)(in_f32 y, in_f32 p, in_f32 w, Py_ssize_t m, out_f64 Ls,
                            out_f32 lo, out_f32 go, out_f32 ho, double scale, char* flag,
                            const double* prm) noexcept nogil
ctypedef void (*eval_f64_t)(in_f64 y, in_f64 p, in_f64 w, Py_ssize_t m, out_f64 Ls,
                            out_f64 lo, out_f64 go, out_f64 ho, double scale, char* flag,
                            const double* prm) noexcept nogil


# Flag bit of an element whose float32-arithmetic output overflowed (or is NaN) from finite
# inputs: the call is redone in float64 arithmetic (run_elementwise).
cdef enum:
    REDO64 = 64


cdef inline bint native32_ok(double scale, const double* prm, int n_prm) noexcept nogil:
    """Whether a NATIVE32 loss may compute a float32 call in float32 arithmetic: the scale and
    every parameter are 0 or of magnitude in [2^-60, 2^60]. Outside that (a huge pos_weight, the
    1/sum(w) of enormous weights) float32 would round them to inf or to a few bits, or overflow
    a product whose result is finite; such calls compute in float64 as the other losses do."""
    cdef int k
    cdef double a
    for k in range(-1, n_prm):
        a = fabs(scale if k < 0 else prm[k])
        if a != 0.0 and not (8.673617379884035e-19 <= a <= 1.152921504606847e+18):
            return False
    return True


cdef inline char weights_vanish(const float* w, Py_ssize_t m, float sc) noexcept nogil:
    """``REDO64`` when a nonzero weight times the scale rounds to 0 in float32 arithmetic
    (weights below about 2^-89 in a mean): the stored ``(sc w) * g`` would be 0 where the
    float64 product is not, or ``0 * inf = NaN`` for an infinite ``g`` (found by the property
    tests: a weight of 1e-45 with ``y_true = inf``). A pass over a chunk of weights already in
    L1, for weighted float32 calls only: the same check in the element loop cost every call
    about 9% at n = 1e5."""
    cdef int z = 0
    cdef Py_ssize_t i
    for i in range(m):
        z |= (sc * w[i] == 0) & (w[i] != 0)
    return REDO64 if z else 0


cdef inline double run_block(const floating* y, const floating* p, const floating* w,
                             floating* lo, floating* go, floating* ho, double scale,
                             Py_ssize_t start, Py_ssize_t stop, int variant, char* bad,
                             const eval_f32_t* f32, const eval_f64_t* f64,
                             const double* prm) noexcept nogil:
    cdef double Ls[CHUNK]
    cdef floating ones[CHUNK]
    cdef const floating* wc
    cdef floating* lc = NULL
    cdef floating* gc = NULL
    cdef floating* hc = NULL
    cdef bint want_l = variant & 1, store = variant & 2, weighted = variant & 16
    # kind bits: L (variant 1), G (4 >> 1 = 2), H (8 >> 1 = 4), stored (2 << 2 = 8)
    cdef int kind = want_l | ((variant >> 1) & 6) | ((variant & 2) << 2)
    cdef double acc = 0.0
    cdef char flag = 0
    cdef Py_ssize_t c0 = start, m, i
    if not weighted:
        for i in range(CHUNK):
            ones[i] = 1
    while c0 < stop:
        m = stop - c0 if stop - c0 < CHUNK else CHUNK
        wc = w + c0 if weighted else ones
        # (no offset on a NULL output: that is undefined behaviour in C, even unused)
        if lo != NULL:
            lc = lo + c0
        if go != NULL:
            gc = go + c0
        if ho != NULL:
            hc = ho + c0
        if floating is float:
            f32[kind](y + c0, p + c0, wc, m, Ls, lc, gc, hc, scale, &flag, prm)
            if weighted and kind & 2:
                # (only float32 arithmetic redoes on it: run_elementwise ignores the flag for
                # float64-arithmetic tables)
                flag = flag | weights_vanish(wc, m, <float>scale)
        else:
            f64[kind](y + c0, p + c0, wc, m, Ls, lc, gc, hc, scale, &flag, prm)
        if want_l and not store:
            acc += sum_chunk(Ls, m)
        c0 += m
    bad[0] = flag
    return acc


cdef inline double run_typed_block(int typenum, void* yt, void* yp, void* w, void* lo,
                                   void* go, void* ho, double scale, Py_ssize_t b, Py_ssize_t n,
                                   int variant, char* bad, const eval_f32_t* f32,
                                   const eval_f64_t* f64, const double* prm) noexcept nogil:
    """Block ``b`` of ``n`` elements, for the dtype ``typenum`` (float64 or float32)."""
    cdef Py_ssize_t start = b * BLOCK
    cdef Py_ssize_t stop = start + BLOCK if start + BLOCK < n else n
    if typenum == cnp.NPY_DOUBLE:
        return run_block(<const double*>yt, <const double*>yp, <const double*>w, <double*>lo,
                         <double*>go, <double*>ho, scale, start, stop, variant, bad, f32, f64,
                         prm)
    return run_block(<const float*>yt, <const float*>yp, <const float*>w, <float*>lo,
                     <float*>go, <float*>ho, scale, start, stop, variant, bad, f32, f64, prm)


cdef inline void* array_ptr(object arr, str name, int typenum, Py_ssize_t n,
                            bint allow_empty, bint writeable) except? NULL:
    """Data pointer of a C-contiguous array (any shape, read as its flat sequence) of
    ``typenum`` with ``n`` elements (or 0 when ``allow_empty``; then NULL). Checking the buffer
    here, with the NumPy C API, costs a few tens of ns where acquiring a typed memoryview costs
    about a microsecond, and the caller needs no reshape to 1-D."""
    if not cnp.PyArray_Check(arr):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(arr).__name__}")
    cdef cnp.ndarray a = <cnp.ndarray>arr
    if not cnp.PyArray_IS_C_CONTIGUOUS(a):
        raise ValueError(f"{name} must be C-contiguous")
    if cnp.PyArray_TYPE(a) != typenum:
        raise ValueError(f"{name} has dtype {a.dtype}, expected {cnp.PyArray_DescrFromType(typenum)}")
    cdef Py_ssize_t size = cnp.PyArray_SIZE(a)
    if size == 0 and allow_empty:
        return NULL
    if size != n:
        raise ValueError(f"{name} has {size} elements, expected {n}"
                         + (" (or none)" if allow_empty else ""))
    if writeable and not cnp.PyArray_ISWRITEABLE(a):
        raise ValueError(f"{name} must be writeable")
    return cnp.PyArray_DATA(a)


cdef inline object run_elementwise(object y_true, object y_pred, object sample_weight,
                                   object loss_out, object gradient_out, object hessian_out,
                                   bint want_loss, double scale, int n_threads, object partials,
                                   const eval_f32_t* f32, const eval_f64_t* f64,
                                   const double* prm, const eval_f32_t* f32_wide=NULL,
                                   int n_prm=0):
    """Check the arrays, pick the variant, run the blocks in parallel, combine in order.

    ``f32_wide`` (NATIVE32 losses, whose ``f32`` table computes in float32 arithmetic): the
    float64-arithmetic table for float32 data, used instead when the scale or a parameter is
    outside what float32 carries (``native32_ok``) or an output is an input (in place), and
    to redo the call when an element flags ``REDO64`` (a loss that overflowed float32 from
    finite inputs: its true value, times a weight or in a mean, may be finite; or a weight
    that the scale takes to 0 in float32, ``weights_vanish``).

    All arrays are C-contiguous (any shape; the flat sequence is used) of one float dtype (float32 or float64, that of ``y_pred``);
    empty optional arrays mean "none"; ``partials`` is float64 with one slot per block, or empty.
    Returns ``(sum of w*l, domain flags)`` (see ``_elementwise.tpi``).
    """
    if not cnp.PyArray_Check(y_pred):
        raise TypeError(f"y_pred must be a numpy.ndarray, got {type(y_pred).__name__}")
    cdef int typenum = cnp.PyArray_TYPE(<cnp.ndarray>y_pred)
    if typenum != cnp.NPY_DOUBLE and typenum != cnp.NPY_FLOAT:
        raise ValueError(f"y_pred must be float32 or float64, got {y_pred.dtype}")
    cdef Py_ssize_t n = cnp.PyArray_SIZE(<cnp.ndarray>y_pred)
    cdef void* yp = array_ptr(y_pred, "y_pred", typenum, n, False, False)
    cdef void* yt = array_ptr(y_true, "y_true", typenum, n, False, False)
    cdef void* w = array_ptr(sample_weight, "sample_weight", typenum, n, True, False)
    cdef void* lo = array_ptr(loss_out, "loss_out", typenum, n, True, True)
    cdef void* go = array_ptr(gradient_out, "gradient_out", typenum, n, True, True)
    cdef void* ho = array_ptr(hessian_out, "hessian_out", typenum, n, True, True)
    if n == 0:
        return 0.0, 0
    cdef int variant = variant_code(want_loss, w != NULL, lo != NULL, go != NULL, ho != NULL)
    cdef Py_ssize_t nb = n_blocks(n, BLOCK), b
    cdef double* part = <double*>array_ptr(partials, "partials", cnp.NPY_DOUBLE, nb, True, True)
    cdef long active = 0
    cdef int nt = threads_for(n, n_threads)
    cdef double total
    cdef int flags = 0
    cdef bint own = part == NULL
    # float32 arithmetic may be redone in float64 only when no output overwrote an input
    cdef bint can_redo = False
    if f32_wide != NULL and typenum == cnp.NPY_FLOAT:
        if (not native32_ok(scale, prm, n_prm)
                or (lo != NULL and (lo == yt or lo == yp or lo == w))
                or (go != NULL and (go == yt or go == yp or go == w))
                or (ho != NULL and (ho == yt or ho == yp or ho == w))):
            f32 = f32_wide
        else:
            can_redo = True
    if own:
        part = <double*>malloc(nb * sizeof(double))
    cdef char* bad = <char*>malloc(nb * sizeof(char))
    if part == NULL or bad == NULL:
        if own:
            free(part)
        free(bad)
        raise MemoryError()
    cdef Py_ssize_t first = 0
    cdef double t0
    with nogil:
        if may_time_first(nt, n_threads, nb):
            # below the element-count rule: the first block, timed, says what the rest is worth
            t0 = fastloss_now()
            part[0] = run_typed_block(typenum, yt, yp, w, lo, go, ho, scale, 0, n, variant,
                                      &bad[0], f32, f64, prm)
            nt = threads_after_first(nt, fastloss_now() - t0, BLOCK, n - BLOCK, nb - 1,
                                     n_threads)
            first = 1
        if nt > 1:
            # share the threads with kernel calls running concurrently (no oversubscription)
            active = fastloss_enter()
            if active > 1 and n_threads // <int>active < nt:
                nt = n_threads // <int>active if n_threads >= active else 1
        note_threads(nt)
        while True:
            if nt == 1:
                # no parallel region at all: even an if(false) one costs a microsecond
                for b in range(first, nb):
                    part[b] = run_typed_block(typenum, yt, yp, w, lo, go, ho, scale, b, n,
                                              variant, &bad[b], f32, f64, prm)
            else:
                for b in prange(first, nb, schedule="static", num_threads=nt):
                    part[b] = run_typed_block(typenum, yt, yp, w, lo, go, ho, scale, b, n,
                                              variant, &bad[b], f32, f64, prm)
            flags = 0
            for b in range(nb):
                flags = flags | bad[b]
            if not (can_redo and flags & REDO64):
                break
            f32 = f32_wide
            can_redo = False
            first = 0
        flags = flags & ~REDO64
        if active > 0:
            fastloss_leave()
        total = combine(part, nb)
    if own:
        free(part)
    free(bad)
    return total, flags
