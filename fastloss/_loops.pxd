# cython: language_level=3
"""The one loop of every element-wise kernel, written once for float32 and float64.

A kernel is split in two phases per chunk of ``CHUNK`` elements (see ``_blocks.pxd`` for blocks):

1. the loss's *eval* function (generated per loss from ``_elementwise.tpi``) computes, in float64,
   the per-element loss and/or first and second derivatives of the chunk into stack buffers.
   Only 5 kinds exist (L, G, LG, GH, LGH), so each loss has 5 heavy loops per dtype, each
   vectorised by the compiler with the element math inlined;
2. this module applies weights and the reduction scale, stores the outputs in the compute dtype
   and sums the loss (``sum_lanes``), in small loops that are the same for every loss.

The eval function is called through a pointer once per chunk (a few ns per 512 elements), which
is what lets this loop, the threading and the reduction exist once instead of once per loss.
"""

from cython.parallel cimport prange
from libc.stdlib cimport malloc, free

from fastloss._blocks cimport (
    BLOCK, CHUNK, n_blocks, threads_for, combine, sum_lanes, check_sizes, variant_code,
)

ctypedef fused floating:
    float
    double

# eval(y, p, m, kind, L, G, H, flag, params): fill L/G/H[0:m] for elements y[0:m], p[0:m];
# kind bits: 1 loss, 2 gradient, 4 hessian; OR domain-flag bits into flag[0].
ctypedef void (*eval_f32_t)(const float* y, const float* p, Py_ssize_t m, int kind,
                            double* L, double* G, double* H, char* flag,
                            const double* prm) noexcept nogil
ctypedef void (*eval_f64_t)(const double* y, const double* p, Py_ssize_t m, int kind,
                            double* L, double* G, double* H, char* flag,
                            const double* prm) noexcept nogil


cdef inline double run_block(const floating* y, const floating* p, const floating* w,
                             floating* lo, floating* go, floating* ho, double scale,
                             Py_ssize_t start, Py_ssize_t stop, int variant, char* bad,
                             eval_f32_t f32, eval_f64_t f64, const double* prm) noexcept nogil:
    cdef double Lb[CHUNK]
    cdef double Gb[CHUNK]
    cdef double Hb[CHUNK]
    cdef bint want_l = variant & 1, store = variant & 2, weighted = variant & 16
    cdef int kind = (want_l or store) | ((variant >> 1) & 6)   # L | G(4>>1=2) | H(8>>1=4)
    cdef double acc = 0.0
    cdef char flag = 0
    cdef Py_ssize_t c0 = start, m, i
    while c0 < stop:
        m = stop - c0 if stop - c0 < CHUNK else CHUNK
        if floating is float:
            f32(y + c0, p + c0, m, kind, Lb, Gb, Hb, &flag, prm)
        else:
            f64(y + c0, p + c0, m, kind, Lb, Gb, Hb, &flag, prm)
        if kind & 1:
            if store:
                if weighted:
                    for i in range(m):
                        lo[c0 + i] = <floating>(w[c0 + i] * Lb[i])
                else:
                    for i in range(m):
                        lo[c0 + i] = <floating>Lb[i]
            else:
                if weighted:
                    for i in range(m):
                        Lb[i] = w[c0 + i] * Lb[i]
                acc += sum_lanes(Lb, m)
        if kind & 2:
            if weighted:
                for i in range(m):
                    go[c0 + i] = <floating>(scale * w[c0 + i] * Gb[i])
            else:
                for i in range(m):
                    go[c0 + i] = <floating>(scale * Gb[i])
        if kind & 4:
            if weighted:
                for i in range(m):
                    ho[c0 + i] = <floating>(scale * w[c0 + i] * Hb[i])
            else:
                for i in range(m):
                    ho[c0 + i] = <floating>(scale * Hb[i])
        c0 += m
    bad[0] = flag
    return acc


cdef inline object run_elementwise(const floating[::1] y_true, const floating[::1] y_pred,
                                   const floating[::1] sample_weight, floating[::1] loss_out,
                                   floating[::1] gradient_out, floating[::1] hessian_out,
                                   bint want_loss, double scale, int n_threads,
                                   double[::1] partials, eval_f32_t f32, eval_f64_t f64,
                                   const double* prm):
    """Check sizes, pick the variant, run the blocks in parallel, combine the partials in order.

    Returns ``(sum of w*l, domain flags)`` (see ``_elementwise.tpi`` for the arguments).
    """
    cdef Py_ssize_t n = y_pred.shape[0]
    check_sizes(n, y_true.shape[0], sample_weight.shape[0], loss_out.shape[0],
                gradient_out.shape[0], hessian_out.shape[0])
    if n == 0:
        return 0.0, 0
    cdef int variant = variant_code(want_loss, sample_weight.shape[0], loss_out.shape[0],
                                    gradient_out.shape[0], hessian_out.shape[0])
    cdef const floating* w = &sample_weight[0] if sample_weight.shape[0] else NULL
    cdef floating* lo = &loss_out[0] if loss_out.shape[0] else NULL
    cdef floating* go = &gradient_out[0] if gradient_out.shape[0] else NULL
    cdef floating* ho = &hessian_out[0] if hessian_out.shape[0] else NULL
    cdef const floating* yt = &y_true[0]
    cdef const floating* yp = &y_pred[0]
    cdef Py_ssize_t nb = n_blocks(n, BLOCK), b
    cdef int nt = threads_for(n, n_threads)
    cdef double total
    cdef int flags = 0
    if partials.shape[0] != 0 and partials.shape[0] != nb:
        raise ValueError(f"partials has {partials.shape[0]} slots, expected {nb}")
    cdef bint own = partials.shape[0] == 0
    cdef double* part = <double*>malloc(nb * sizeof(double)) if own else &partials[0]
    cdef char* bad = <char*>malloc(nb * sizeof(char))
    if part == NULL or bad == NULL:
        if own:
            free(part)
        free(bad)
        raise MemoryError()
    with nogil:
        for b in prange(nb, schedule="static", num_threads=nt, use_threads_if=nt > 1):
            part[b] = run_block(yt, yp, w, lo, go, ho, scale, b * BLOCK,
                                min(b * BLOCK + BLOCK, n), variant, &bad[b], f32, f64, prm)
        total = combine(part, nb)
        for b in range(nb):
            flags = flags | bad[b]
    if own:
        free(part)
    free(bad)
    return total, flags
