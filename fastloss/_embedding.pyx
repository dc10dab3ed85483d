# cython: language_level=3
"""Kernels of the embedding losses: contrastive, triplet, and triplet mining over a batch.

Design
------
A sample is a *row* (an embedding of ``d`` values), not an element, and every loss here is a
function of distances between rows. The code is in three layers, each written once:

1. Distance math (``distance``, ``dist_grad``): the p-norm of ``u = x - y + eps`` and its
   derivative with respect to one element ``u_k``, which for L1, L2 and squared L2 factors into
   a row part and an element part (``dist_factor(D) * dist_dir(u_k)``; mining uses the
   factors). Contrastive, triplet and mining all call these functions, so there is one
   definition of "distance" and of its behaviour at ``u = 0``.
   The metric is a small struct; its ``kind`` is invariant in every loop, so ``-O3`` unswitches
   the branch on it out of the loops.
2. Per-sample math: ``_contrastive_pair`` (loss and dL/dD of one pair from its distance) and the
   per-row functions ``_contrastive_row`` / ``_distance_row`` / ``_triplet_row``, which compute a
   row's loss and write its gradient rows.
3. Loops. ``rows`` is the one driver of the row-wise losses: it cuts the rows into fixed blocks
   of ``max(1, BLOCK // d)`` rows (about ``BLOCK`` elements each), runs them with
   ``prange(schedule="static")``, each block returning a float64 partial that is combined in block
   order, so the result is bitwise identical for any thread count. The per-row cost is O(d), so
   the task (loss/store/gradient/weights) is a per-row branch rather than a generated loop.
   ``batch_triplet`` is the mining driver (three passes, described at its definition).

Conventions as in every family: the stored loss is ``w * l``, gradients are
``scale * w * dl/dx``, with ``scale`` set by the Python layer (``1/sum(w)`` for a mean).

Distance at identical points: no eps is added unless asked (``eps`` argument, which reproduces
PyTorch's ``pairwise_distance``: ``||x - y + eps||_p``). At ``u = 0`` the distance is exactly 0 and
its gradient is taken as 0, the minimal-norm subgradient of a norm at 0; it is never a division by
zero.
"""

from cython.parallel import prange
from libc.math cimport fabs, sqrt, pow, ldexp, isnan, INFINITY, NAN
from libc.stdlib cimport malloc, free, qsort
from libc.stdint cimport int64_t

from fastloss._math cimport sign, nan_or
from fastloss._blocks cimport (
    BLOCK, n_blocks, threads_for, combine, fastloss_now, may_time_first, threads_after_first,
    note_threads,
)

ctypedef fused floating:
    float
    double


# ---------------------------------------------------------------------------- distance math

cdef enum:
    # Distance kinds (the metric's ``kind``); values are part of the Python <-> kernel interface.
    KIND_L1 = 1          # sum |u_k|
    KIND_L2 = 2          # sqrt(sum u_k^2), overflow/underflow safe
    KIND_SQL2 = 3        # sum u_k^2 (squared Euclidean)
    KIND_LP = 4          # (sum |u_k|^p)^(1/p), any real p >= 1

    # Tasks of the ``rows`` driver.
    TASK_CONTRASTIVE = 0           # x0, x1: (n, d) embeddings; labels: y in {0, 1}
    TASK_CONTRASTIVE_DISTANCE = 1  # x0: (n, 1) distances; labels: y in {0, 1}
    TASK_TRIPLET = 2               # x0, x1, x2: anchor, positive, negative

    # Mining modes of ``batch_triplet``.
    MINE_HARD = 0
    MINE_ALL = 1

    # Domain flags returned to the Python layer.
    FLAG_LABEL = 1       # a label not in {0, 1}
    FLAG_DISTANCE = 2    # a negative distance
    FLAG_MEMORY = 4      # a scratch allocation failed inside the parallel region


ctypedef struct Metric:
    int kind
    double p       # the exponent, for KIND_LP
    double eps     # added to every element of the difference (PyTorch's pairwise_distance)


cdef inline double _scaled_norm(const floating* x, const floating* y, Py_ssize_t d,
                                double eps, double p) noexcept nogil:
    """(sum |u_k|^p)^(1/p) with u scaled by max |u_k| first: no overflow or underflow.

    Used for general p, and for p = 2 when the plain sum of squares leaves the safe range.
    """
    cdef double mx = 0.0, u, s = 0.0
    cdef Py_ssize_t k
    for k in range(d):
        u = fabs(<double>x[k] - <double>y[k] + eps)
        if isnan(u):
            return u
        if u > mx:
            mx = u
    if mx == 0.0 or mx == INFINITY:
        return mx
    if p == 2.0:
        for k in range(d):
            u = (<double>x[k] - <double>y[k] + eps) / mx
            s += u * u
        return mx * sqrt(s)
    for k in range(d):
        s += pow(fabs(<double>x[k] - <double>y[k] + eps) / mx, p)
    return mx * pow(s, 1.0 / p)


cdef inline double _term(double u, bint square) noexcept nogil:
    return u * u if square else fabs(u)


cdef inline double _sum_terms(const floating* x, const floating* y, Py_ssize_t d, double eps,
                              bint square) noexcept nogil:
    """sum_k |u_k| or sum_k u_k^2 for u = x - y + eps, in float64.

    Eight running sums, combined pairwise at the end: a single running sum is one long chain of
    dependent additions (the compiler may not reorder them without -ffast-math), which bounds
    the loop by the latency of an addition; eight independent chains let it vectorise and
    pipeline. The order is fixed, so the result is still deterministic.
    """
    cdef double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0, s4 = 0.0, s5 = 0.0, s6 = 0.0, s7 = 0.0
    cdef Py_ssize_t k = 0
    while k + 8 <= d:
        s0 += _term(<double>x[k] - <double>y[k] + eps, square)
        s1 += _term(<double>x[k + 1] - <double>y[k + 1] + eps, square)
        s2 += _term(<double>x[k + 2] - <double>y[k + 2] + eps, square)
        s3 += _term(<double>x[k + 3] - <double>y[k + 3] + eps, square)
        s4 += _term(<double>x[k + 4] - <double>y[k + 4] + eps, square)
        s5 += _term(<double>x[k + 5] - <double>y[k + 5] + eps, square)
        s6 += _term(<double>x[k + 6] - <double>y[k + 6] + eps, square)
        s7 += _term(<double>x[k + 7] - <double>y[k + 7] + eps, square)
        k += 8
    while k < d:
        s0 += _term(<double>x[k] - <double>y[k] + eps, square)
        k += 1
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


cdef inline double distance(const floating* x, const floating* y, Py_ssize_t d,
                            Metric m) noexcept nogil:
    """The distance between rows ``x`` and ``y`` (``d`` values each) under metric ``m``."""
    cdef double s
    if m.kind == KIND_L1:
        return _sum_terms(x, y, d, m.eps, False)
    if m.kind == KIND_LP:
        return _scaled_norm(x, y, d, m.eps, m.p)
    s = _sum_terms(x, y, d, m.eps, True)
    if m.kind == KIND_SQL2:
        return s
    # Squares of |u| < 1e-154 underflow and of |u| > 1e154 overflow: outside (1e-280, inf) the
    # sum may be wrong, so it is recomputed scaled (rare: costs one more pass over the row).
    if 1e-280 < s < INFINITY:
        return sqrt(s)
    return _scaled_norm(x, y, d, m.eps, 2.0)


cdef inline double dist_dir(double u, Metric m) noexcept nogil:
    """The element part of d(distance)/d(u_k) for the factorable kinds: u_k (L2, squared L2),
    sign(u_k) (L1, 0 at 0). See ``dist_factor``."""
    if m.kind == KIND_L1:
        return sign(u)
    return u


cdef inline double dist_factor(double dist, Metric m) noexcept nogil:
    """The row part of d(distance)/d(u_k) for the factorable kinds: 1/D (L2; 0 at D = 0),
    2 (squared L2), 1 (L1). ``dist_grad = dist_factor(D) * dist_dir(u_k)``."""
    if m.kind == KIND_L2:
        return 1.0 / dist if dist != 0.0 else 0.0
    if m.kind == KIND_SQL2:
        return 2.0
    return 1.0


cdef inline double dist_grad(double u, double dist, Metric m) noexcept nogil:
    """d(distance)/d(u_k) for the element ``u_k = x_k - y_k + eps`` of a row at ``distance``.

    L2: u_k / D; squared L2: 2 u_k; L1: sign(u_k) (0 at 0); Lp: sign(u_k) (|u_k| / D)^(p-1)
    (not factored: this form cannot overflow). At D = 0 it is 0 (see the module note); NaN
    propagates.
    """
    if m.kind == KIND_LP:
        if dist == 0.0:
            return 0.0
        return sign(u) * pow(fabs(u) / dist, m.p - 1.0)
    if m.kind == KIND_L2:
        # u / D, not (1 / D) u: |u_k| <= D, so the quotient cannot overflow, where 1 / D does
        # for a subnormal D (then inf * u, and inf - inf = NaN in a triplet's gradient)
        return u / dist if dist != 0.0 else 0.0
    return dist_factor(dist, m) * dist_dir(u, m)


# ---------------------------------------------------------------------------- per-sample math

ctypedef struct PairDeriv:
    double loss
    double dd      # dL/dD


cdef inline PairDeriv _contrastive_pair(double dist, double label, double margin) noexcept nogil:
    """Hadsell et al.: (1 - y) D^2 / 2 + y max(0, m - D)^2 / 2 and its derivative in D."""
    cdef PairDeriv r
    cdef double h
    if label == 0.0:
        r.loss = (0.5 * dist) * dist          # not 0.5 * (D * D): D^2 overflows first
        r.dd = dist
        return r
    h = margin - dist
    if h > 0.0:
        r.loss = (0.5 * h) * h
        r.dd = -h
    else:
        r.loss = nan_or(h, 0.0)
        r.dd = nan_or(h, 0.0)
    return r


cdef inline char _bad_label(double label) noexcept nogil:
    return FLAG_LABEL if (label != 0.0 and label != 1.0) else 0


cdef inline double _contrastive_row(const floating* x1, const floating* x2, floating* g1,
                                    floating* g2, Py_ssize_t d, double label, double margin,
                                    double c, bint grad) noexcept nogil:
    """One pair of embeddings: returns l, writes g1 = c dl/dx1 and g2 = -g1 when ``grad``."""
    cdef Metric m
    m.kind = KIND_L2
    m.p = 2.0
    m.eps = 0.0
    cdef double dist = distance(x1, x2, d, m)
    cdef PairDeriv pd = _contrastive_pair(dist, label, margin)
    cdef double coef, g
    cdef Py_ssize_t k
    if grad:
        coef = c * pd.dd
        for k in range(d):
            g = coef * dist_grad(<double>x1[k] - <double>x2[k], dist, m)
            g1[k] = <floating>g
            g2[k] = <floating>(-g)
    return pd.loss


cdef inline double _distance_row(const floating* dist, floating* gd, double label, double margin,
                                 double c, bint grad) noexcept nogil:
    """One precomputed distance: returns l, writes gd = c dl/dD when ``grad``."""
    cdef PairDeriv pd = _contrastive_pair(<double>dist[0], label, margin)
    if grad:
        gd[0] = <floating>(c * pd.dd)
    return pd.loss


cdef double _scaled_distance(const floating* x, const floating* y, Py_ssize_t d,
                             Metric m) noexcept nogil:
    """The distance of ``2^-600 (x - y + eps)``, scaled before the subtraction: finite where
    the plain one overflowed (even where x - y itself does).

    In units of 2^-600 (L1, L2, Lp) or 2^-1200 (squared L2). Only for the rare rows whose two
    distances both overflow (see _triplet_row); not fast, just right.
    """
    cdef double s = 0.0, u, mx = 0.0
    cdef Py_ssize_t k
    for k in range(d):
        u = ldexp(<double>x[k], -600) - ldexp(<double>y[k], -600) + ldexp(m.eps, -600)
        if m.kind == KIND_L1:
            s += fabs(u)
        elif m.kind == KIND_LP:
            mx = fabs(u) if fabs(u) > mx else mx
        else:
            s += u * u
    if m.kind == KIND_L1 or m.kind == KIND_SQL2:
        return s
    if m.kind == KIND_L2:
        return sqrt(s)
    if mx == 0.0:
        return 0.0
    for k in range(d):
        u = ldexp(<double>x[k], -600) - ldexp(<double>y[k], -600) + ldexp(m.eps, -600)
        s += pow(fabs(u) / mx, m.p)
    return mx * pow(s, 1.0 / m.p)


cdef inline double _triplet_row(const floating* a, const floating* p, const floating* n,
                                floating* ga, floating* gp, floating* gn, Py_ssize_t d,
                                Metric m, double margin, bint swap, double c,
                                bint grad) noexcept nogil:
    """max(0, d(a, p) - d(a, n) + margin), d(a, n) replaced by d(p, n) when ``swap`` and smaller.

    Gradients (written when ``grad``), with ``c`` the row's scale: active (loss > 0), no swap:
    ga = c (dD(a-p) - dD(a-n)), gp = -c dD(a-p), gn = c dD(a-n); with the swap taken
    ga = c dD(a-p), gp = -c (dD(a-p) + dD(p-n)), gn = c dD(p-n); zero where the loss is 0
    (exactly at the margin too: the flat side's derivative).
    """
    cdef double dap = distance(a, p, d, m)
    cdef double dan = distance(a, n, d, m)
    cdef double dpn, z, coef, gu, gv
    cdef bint swapped = False
    cdef Py_ssize_t k
    if swap:
        dpn = distance(p, n, d, m)
        if dpn < dan:
            dan = dpn
            swapped = True
    z = dap - dan + margin
    if dap == INFINITY and dan == INFINITY:
        # both distances overflowed (huge but finite inputs or eps): inf - inf would be NaN,
        # so the gap is taken between the distances of the rows scaled by 2^-600
        z = _scaled_distance(a, p, d, m) - (_scaled_distance(p, n, d, m) if swapped
                                             else _scaled_distance(a, n, d, m))
        z = ldexp(z, 1200 if m.kind == KIND_SQL2 else 600) + margin
    if grad:
        coef = c if z > 0.0 else nan_or(z, 0.0)
        if coef == 0.0:
            for k in range(d):
                ga[k] = 0
                gp[k] = 0
                gn[k] = 0
        elif swapped:
            for k in range(d):
                gu = dist_grad(<double>a[k] - <double>p[k] + m.eps, dap, m)
                gv = dist_grad(<double>p[k] - <double>n[k] + m.eps, dan, m)
                ga[k] = <floating>(coef * gu)
                gp[k] = <floating>(-coef * (gu + gv))
                gn[k] = <floating>(coef * gv)
        else:
            for k in range(d):
                gu = dist_grad(<double>a[k] - <double>p[k] + m.eps, dap, m)
                gv = dist_grad(<double>a[k] - <double>n[k] + m.eps, dan, m)
                ga[k] = <floating>(coef * (gu - gv))
                gp[k] = <floating>(-coef * gu)
                gn[k] = <floating>(coef * gv)
    return z if z > 0.0 else nan_or(z, 0.0)


# ---------------------------------------------------------------------------- row-wise driver

cdef double _rows_block(int task, const floating* x0, const floating* x1, const floating* x2,
                        const floating* lab, const floating* w, floating* lo, floating* g0,
                        floating* g1, floating* g2, Py_ssize_t d, Py_ssize_t start,
                        Py_ssize_t stop, double scale, bint store, bint grad, Metric m,
                        double margin, bint swap, char* bad) noexcept nogil:
    cdef Py_ssize_t i, r
    cdef double acc = 0.0, wi, l, label
    cdef char flag = 0
    for i in range(start, stop):
        r = i * d
        wi = <double>w[i] if w != NULL else 1.0
        if task == TASK_TRIPLET:
            l = _triplet_row(x0 + r, x1 + r, x2 + r, g0 + r, g1 + r, g2 + r, d, m, margin, swap,
                             scale * wi, grad)
        else:
            label = lab[i]
            flag |= _bad_label(label)
            if task == TASK_CONTRASTIVE:
                l = _contrastive_row(x0 + r, x1 + r, g0 + r, g1 + r, d, label, margin,
                                     scale * wi, grad)
            else:
                if x0[i] < 0:
                    flag |= FLAG_DISTANCE
                l = _distance_row(x0 + i, g0 + i, label, margin, scale * wi, grad)
        if store:
            lo[i] = <floating>(wi * l)
        else:
            acc += wi * l
    bad[0] = flag
    return acc


cdef int _check_rows(str name, Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t n, Py_ssize_t d,
                     bint used) except -1:
    """Every array the task uses must be (n, d); the others empty. Never read out of bounds."""
    if used:
        if rows != n or cols != d:
            raise ValueError(f"{name} has shape ({rows}, {cols}), expected ({n}, {d})")
    elif rows * cols != 0:
        raise ValueError(f"{name} is not used by this task and must be empty")
    return 0


cdef int _check_vec(str name, Py_ssize_t size, Py_ssize_t n, bint required) except -1:
    if (required and size != n) or (not required and size != 0 and size != n):
        raise ValueError(f"{name} has {size} elements, expected {n}" +
                         ("" if required else " (or none)"))
    return 0


def rows(int task, const floating[:, ::1] x0, const floating[:, ::1] x1,
         const floating[:, ::1] x2, const floating[::1] labels,
         const floating[::1] sample_weight, floating[::1] loss_out, floating[:, ::1] g0,
         floating[:, ::1] g1, floating[:, ::1] g2, bint want_loss, bint want_grad, double scale,
         int n_threads, double margin, int kind=KIND_L2, double p=2.0, double eps=0.0,
         bint swap=False):
    """Run a row-wise embedding loss over ``n`` rows.

    ``task``: 0 contrastive on embeddings ``x0, x1`` (n, d) with ``labels`` in {0, 1}; 1
    contrastive on distances ``x0`` (n, 1); 2 triplet on ``x0, x1, x2`` (anchor, positive,
    negative). Unused arrays, and ``sample_weight`` / ``loss_out`` / ``g*`` when not wanted, are
    empty. The gradients ``g0, g1, g2`` of ``x0, x1, x2`` are written when ``want_grad``. Returns
    ``(sum of w*l, flags)``; the sum is 0 when the loss is stored per row in ``loss_out``.
    ``flags``: 1 a label not in {0, 1}, 2 a negative distance.
    """
    cdef Py_ssize_t n = x0.shape[0], d = x0.shape[1]
    if task not in (TASK_CONTRASTIVE, TASK_CONTRASTIVE_DISTANCE, TASK_TRIPLET):
        raise ValueError(f"unknown task {task}")
    if kind not in (KIND_L1, KIND_L2, KIND_SQL2, KIND_LP):
        raise ValueError(f"unknown distance kind {kind}")
    if task == TASK_CONTRASTIVE_DISTANCE and d != 1:
        raise ValueError(f"distances must be passed as an (n, 1) array, got (n, {d})")
    cdef bint grad = want_grad
    cdef bint store = loss_out.shape[0] != 0
    cdef bint two = task != TASK_CONTRASTIVE_DISTANCE
    cdef bint three = task == TASK_TRIPLET
    _check_rows("x1", x1.shape[0], x1.shape[1], n, d, two)
    _check_rows("x2", x2.shape[0], x2.shape[1], n, d, three)
    _check_vec("labels", labels.shape[0], n if task != TASK_TRIPLET else 0, True)
    _check_vec("sample_weight", sample_weight.shape[0], n, False)
    _check_vec("loss_out", loss_out.shape[0], n, False)
    _check_rows("g0", g0.shape[0], g0.shape[1], n, d, grad)
    _check_rows("g1", g1.shape[0], g1.shape[1], n, d, grad and two)
    _check_rows("g2", g2.shape[0], g2.shape[1], n, d, grad and three)
    if n == 0:      # before the next check: an empty loss_out is then a wanted one
        return 0.0, 0
    if not (want_loss or store or grad):
        raise ValueError("nothing to compute")
    cdef Metric m
    m.kind = kind
    m.p = p
    m.eps = eps
    cdef const floating* px1 = &x1[0, 0] if two and d > 0 else NULL
    cdef const floating* px2 = &x2[0, 0] if three and d > 0 else NULL
    cdef const floating* lab = &labels[0] if not three else NULL
    cdef const floating* w = &sample_weight[0] if sample_weight.shape[0] else NULL
    cdef floating* lo = &loss_out[0] if store else NULL
    cdef floating* pg0 = &g0[0, 0] if grad and d > 0 else NULL
    cdef floating* pg1 = &g1[0, 0] if grad and two and d > 0 else NULL
    cdef floating* pg2 = &g2[0, 0] if grad and three and d > 0 else NULL
    cdef const floating* px0 = &x0[0, 0] if d > 0 else NULL
    cdef Py_ssize_t per = BLOCK // d if 0 < d < BLOCK else 1
    cdef Py_ssize_t nb = n_blocks(n, per), b
    cdef int nt = threads_for(n * (d if d > 0 else 1), n_threads)
    cdef double total
    cdef int flags = 0
    cdef double* part = <double*>malloc(nb * sizeof(double))
    cdef char* bad = <char*>malloc(nb * sizeof(char))
    if part == NULL or bad == NULL:
        free(part)
        free(bad)
        raise MemoryError()
    cdef Py_ssize_t first = 0, unit = d if d > 0 else 1
    cdef double t0
    with nogil:
        if may_time_first(nt, n_threads, nb):
            # below the element-count rule: the first block, timed, says what the rest is worth
            t0 = fastloss_now()
            part[0] = _rows_block(task, px0, px1, px2, lab, w, lo, pg0, pg1, pg2, d, 0, per,
                                  scale, store, grad, m, margin, swap, &bad[0])
            nt = threads_after_first(nt, fastloss_now() - t0, per * unit, (n - per) * unit,
                                     nb - 1, n_threads)
            first = 1
        note_threads(nt)
        for b in prange(first, nb, schedule="static", num_threads=nt, use_threads_if=nt > 1):
            part[b] = _rows_block(task, px0, px1, px2, lab, w, lo, pg0, pg1, pg2, d,
                                  b * per, min(b * per + per, n), scale, store, grad, m,
                                  margin, swap, &bad[b])
        total = combine(part, nb)
        for b in range(nb):
            flags = flags | bad[b]
    free(part)
    free(bad)
    return total, flags


# ---------------------------------------------------------------------------- batch mining
#
# ``batch_triplet`` mines the triplets of one batch ``x`` (n, d) with integer labels, in three
# passes over an n x n float64 work matrix ``work`` (given by the caller):
#
# 1. Distances. ``work[i, j] = D(x_i, x_j)`` for every pair, computed once per unordered pair:
#    the pairs are cut into square tiles of rows (the rows of a tile stay in cache while they are
#    swept) and the tiles (I, J), J >= I, are shared among threads. Each entry is computed by the
#    same code whatever thread runs it, so the matrix is thread-count independent. O(n^2 d / 2).
# 2. Mining, per anchor a (blocks of anchors in parallel, loss partials per block): from row a,
#    the anchor's loss and the coefficient C[a, j] = w_a dL_a/dD(a, j) of every distance; row a
#    is then overwritten with K[a, j] = C[a, j] * dist_factor(D(a, j)) (no other anchor reads it).
#    Batch-hard: hardest positive (largest D, first on ties), hardest negative (smallest D, first
#    on ties); two non-zero entries per row. O(n) per anchor.
#    Batch-all: every (p, n) with y_p = y_a != y_n, p != a. With t_p = D(a, p) + margin, the
#    triplet is active when D(a, n) < t_p. The P positives' t are sorted with suffix sums, so
#    each negative's active positives, their count c_n and their loss sum take one binary search;
#    a difference array over the sorted positions gives each positive's count k_p of active
#    negatives. C[a, p] = w_a k_p, C[a, n] = -w_a c_n. O(P log P + N log P) per anchor instead
#    of the O(P N) triplets (P, N: the anchor's positives and negatives).
# 3. Gradient (only when asked). D(a, j) = D(j, a) depends on both rows, so K is symmetrised in
#    place (K + K^T, by tiles); then each row r gathers g_r = scale * sum_j K[r, j] dist_dir(x_r -
#    x_j) over the non-zero K[r, j], in ascending j, by tiles of j so the rows read stay in cache.
#    A gather, not a scatter: no two threads write one row and the order of every sum is fixed.
#    O(nnz(K) d): O(n d) for batch-hard, O(n^2 d) for batch-all.
#
# The factorisation dD/du_k = dist_factor(D) * dist_dir(u_k) is what lets pass 3 run without the
# distances, so mining takes the factorable metrics only (L1, L2, squared L2).
# Memory: the n x n float64 matrix, plus O(n) (batch-all) and O(tile * d) scratch per block.

cdef inline void _tile_pair(Py_ssize_t q, Py_ssize_t nt, Py_ssize_t* ti,
                            Py_ssize_t* tj) noexcept nogil:
    """The q-th pair (I, J), J >= I, of ``nt`` tiles, in row-major order of the upper triangle."""
    cdef Py_ssize_t i = 0, row = nt
    while q >= row:
        q -= row
        i += 1
        row -= 1
    ti[0] = i
    tj[0] = i + q


cdef void _distance_tiles(const floating* x, double* work, Py_ssize_t n, Py_ssize_t d,
                          Py_ssize_t tile, Py_ssize_t q, Py_ssize_t ntiles,
                          Metric m) noexcept nogil:
    cdef Py_ssize_t ti, tj, i, j, j0, j1
    cdef double v
    _tile_pair(q, ntiles, &ti, &tj)
    j1 = min(tj * tile + tile, n)
    for i in range(ti * tile, min(ti * tile + tile, n)):
        j0 = tj * tile
        if ti == tj:
            work[i * n + i] = 0.0
            j0 = i + 1
        for j in range(j0, j1):
            v = distance(x + i * d, x + j * d, d, m)
            work[i * n + j] = v
            work[j * n + i] = v


cdef void _symmetrise_tiles(double* work, Py_ssize_t n, Py_ssize_t tile, Py_ssize_t q,
                            Py_ssize_t ntiles) noexcept nogil:
    cdef Py_ssize_t ti, tj, i, j, j0, j1
    cdef double v
    _tile_pair(q, ntiles, &ti, &tj)
    j1 = min(tj * tile + tile, n)
    for i in range(ti * tile, min(ti * tile + tile, n)):
        j0 = tj * tile
        if ti == tj:
            work[i * n + i] = 2.0 * work[i * n + i]
            j0 = i + 1
        for j in range(j0, j1):
            v = work[i * n + j] + work[j * n + i]
            work[i * n + j] = v
            work[j * n + i] = v


cdef int _cmp_double(const void* a, const void* b) noexcept nogil:
    cdef double x = (<const double*>a)[0]
    cdef double y = (<const double*>b)[0]
    return (x > y) - (x < y)


cdef inline Py_ssize_t _count_below(const double* s, Py_ssize_t size, double v) noexcept nogil:
    """Number of entries of the sorted ``s`` that are < v."""
    cdef Py_ssize_t lo = 0, hi = size, mid
    while lo < hi:
        mid = (lo + hi) // 2
        if s[mid] < v:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef inline Py_ssize_t _count_not_above(const double* s, Py_ssize_t size,
                                        double v) noexcept nogil:
    """Number of entries of the sorted ``s`` that are <= v."""
    cdef Py_ssize_t lo = 0, hi = size, mid
    while lo < hi:
        mid = (lo + hi) // 2
        if s[mid] <= v:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef inline double _no_triplet(double* row, Py_ssize_t n, double value) noexcept nogil:
    """Fill an anchor's coefficient row with 0 (no triplet) or NaN (a NaN distance)."""
    cdef Py_ssize_t j
    for j in range(n):
        row[j] = value
    return value


cdef double _mine_hard(double* row, const int64_t* lab, Py_ssize_t a, Py_ssize_t n, double wa,
                       double margin, Metric m) noexcept nogil:
    """Batch-hard for anchor a: returns l_a, overwrites ``row`` (D(a, .)) with K[a, .]."""
    cdef Py_ssize_t j, ip = -1, ineg = -1
    cdef double v, dp = 0.0, dn = 0.0, z, kp, kn
    cdef bint nan_seen = False
    cdef int64_t ya = lab[a]
    for j in range(n):
        if j == a:
            continue
        v = row[j]
        if lab[j] == ya:
            if ip < 0 or v > dp:
                ip = j
                dp = v
        elif ineg < 0 or v < dn:
            ineg = j
            dn = v
        nan_seen |= isnan(v)
    if ip < 0 or ineg < 0:          # no positive or no negative: no triplet
        return _no_triplet(row, n, 0.0)
    if nan_seen:
        _no_triplet(row, n, NAN)
        row[a] = 0.0
        return NAN
    z = dp - dn + margin
    kp = wa * dist_factor(dp, m)
    kn = -wa * dist_factor(dn, m)
    _no_triplet(row, n, 0.0)
    if z > 0.0:
        row[ip] = kp
        row[ineg] = kn
        return z
    return 0.0


cdef double _mine_all(double* row, const int64_t* lab, Py_ssize_t a, Py_ssize_t n, double wa,
                      double margin, Metric m, double* ts, double* suffix,
                      double* active) noexcept nogil:
    """Batch-all for anchor a: returns the sum of its triplets' losses, overwrites ``row`` with
    K[a, .]. ``ts``, ``suffix`` and ``active`` are scratch of n, n + 1 and n + 1 doubles.

    Only the positives are sorted (there are usually far fewer of them): for each negative, one
    binary search in the sorted t_p = D(a, p) + margin gives its active positives
    ts[i:], their count and their loss sum suffix[i] - count * D(a, n); a difference array over
    the sorted positions accumulates, for each positive, its count of active negatives.
    O(P log P + N log P) for P positives and N negatives.
    """
    cdef Py_ssize_t j, np_ = 0, nn = 0, i
    cdef double v, t, cnt, total = 0.0
    cdef bint nan_seen = False
    cdef int64_t ya = lab[a]
    for j in range(n):
        if j == a:
            continue
        v = row[j]
        nan_seen |= isnan(v)
        if lab[j] == ya:
            ts[np_] = v + margin
            np_ += 1
        else:
            nn += 1
    if np_ == 0 or nn == 0:
        return _no_triplet(row, n, 0.0)
    if nan_seen:
        _no_triplet(row, n, NAN)
        row[a] = 0.0
        return NAN
    qsort(ts, np_, sizeof(double), _cmp_double)
    suffix[np_] = 0.0
    active[np_] = 0.0
    for i in range(np_ - 1, -1, -1):
        suffix[i] = suffix[i + 1] + ts[i]
        active[i] = 0.0
    for j in range(n):                       # negatives: loss, coefficient, difference array
        if j == a or lab[j] == ya:
            continue
        v = row[j]
        i = _count_not_above(ts, np_, v)     # ts[i:] > v: the active positives
        cnt = <double>(np_ - i)
        total += suffix[i] - cnt * v
        active[i] += 1.0
        row[j] = -wa * cnt * dist_factor(v, m)
    for i in range(1, np_):                  # active[i]: negatives active with sorted ts[i]
        active[i] += active[i - 1]
    row[a] = 0.0
    for j in range(n):                       # positives: equal t share one count
        if j == a or lab[j] != ya:
            continue
        v = row[j]
        t = v + margin
        row[j] = wa * active[_count_below(ts, np_, t)] * dist_factor(v, m)
    return total


cdef double _mine_block(int mining, double* work, const int64_t* lab, const floating* w,
                        floating* lo, bint store, Py_ssize_t n, Py_ssize_t start,
                        Py_ssize_t stop, double margin, Metric m, char* bad) noexcept nogil:
    cdef Py_ssize_t a
    cdef double acc = 0.0, wa, l
    cdef double* scratch = NULL
    bad[0] = 0
    if mining == MINE_ALL:
        scratch = <double*>malloc((3 * n + 2) * sizeof(double))
        if scratch == NULL:
            bad[0] = FLAG_MEMORY
            return 0.0
    for a in range(start, stop):
        wa = <double>w[a] if w != NULL else 1.0
        if mining == MINE_ALL:
            l = _mine_all(work + a * n, lab, a, n, wa, margin, m, scratch, scratch + n,
                          scratch + 2 * n + 1)
        else:
            l = _mine_hard(work + a * n, lab, a, n, wa, margin, m)
        if store:
            lo[a] = <floating>(wa * l)
        else:
            acc += wa * l
    free(scratch)
    return acc


cdef char _gather_block(const floating* x, const double* work, floating* g, Py_ssize_t n,
                        Py_ssize_t d, Py_ssize_t tile, Py_ssize_t start, Py_ssize_t stop,
                        double scale, Metric m) noexcept nogil:
    """g_r = scale * sum_j K[r, j] dist_dir(x_r - x_j) for the rows r in [start, stop)."""
    cdef Py_ssize_t r, j, k, j0 = 0, rows = stop - start
    cdef double s
    cdef double* acc = <double*>malloc((rows * d + 1) * sizeof(double))
    cdef double* ar
    cdef const floating* xr
    cdef const floating* xj
    if acc == NULL:
        return FLAG_MEMORY
    for k in range(rows * d):
        acc[k] = 0.0
    while j0 < n:
        for r in range(start, stop):
            ar = acc + (r - start) * d
            xr = x + r * d
            for j in range(j0, min(j0 + tile, n)):
                s = work[r * n + j]
                if s != 0.0:
                    xj = x + j * d
                    for k in range(d):
                        ar[k] += s * dist_dir(<double>xr[k] - <double>xj[k], m)
        j0 += tile
    for r in range(start, stop):
        for k in range(d):
            g[r * d + k] = <floating>(scale * acc[(r - start) * d + k])
    free(acc)
    return 0


def batch_triplet(int mining, const floating[:, ::1] x, const int64_t[::1] labels,
                  const floating[::1] sample_weight, floating[::1] loss_out,
                  floating[:, ::1] gradient_out, double[:, ::1] work, bint want_loss,
                  bint want_grad, double scale, int n_threads, double margin,
                  int kind=KIND_L2):
    """Batch-hard (``mining=0``) or batch-all (``mining=1``) triplet loss of one batch.

    ``x`` (n, d) embeddings, ``labels`` (n,) int64; ``work`` an (n, n) float64 scratch matrix
    (overwritten). ``sample_weight`` (n,) weighs each anchor's triplets. ``loss_out`` (n,)
    receives ``w_a * l_a`` (batch-all: the sum of the anchor's triplet losses) with
    ``reduction="none"``; ``gradient_out`` (n, d) receives ``scale * dL/dx`` when
    ``want_grad``. Empty arrays mean "not wanted". ``kind``: 1 L1, 2 L2, 3 squared L2.
    Returns ``(sum of w_a * l_a, flags)``.
    """
    cdef Py_ssize_t n = x.shape[0], d = x.shape[1]
    if mining not in (MINE_HARD, MINE_ALL):
        raise ValueError(f"unknown mining {mining}")
    if kind not in (KIND_L1, KIND_L2, KIND_SQL2):
        raise ValueError(f"mining takes distance kinds 1, 2 or 3, got {kind}")
    cdef bint store = loss_out.shape[0] != 0
    _check_vec("labels", labels.shape[0], n, True)
    _check_vec("sample_weight", sample_weight.shape[0], n, False)
    _check_vec("loss_out", loss_out.shape[0], n, False)
    _check_rows("gradient_out", gradient_out.shape[0], gradient_out.shape[1], n, d, want_grad)
    if work.shape[0] != n or work.shape[1] != n:
        raise ValueError(f"work has shape ({work.shape[0]}, {work.shape[1]}), "
                         f"expected ({n}, {n})")
    if n == 0:      # before the next check: an empty loss_out is then a wanted one
        return 0.0, 0
    if not (want_loss or store or want_grad):
        raise ValueError("nothing to compute")
    cdef Metric m
    m.kind = kind
    m.p = 2.0
    m.eps = 0.0
    # A tile of rows holds about 4096 values (32 KiB of float64): it stays in cache while swept.
    cdef Py_ssize_t tile = max(4, min(64, 4096 // max(d, 1)))
    cdef Py_ssize_t ntiles = n_blocks(n, tile)
    cdef Py_ssize_t npairs = ntiles * (ntiles + 1) // 2, q
    cdef Py_ssize_t per = max(1, BLOCK // n)         # anchors per mining block
    cdef Py_ssize_t nb = n_blocks(n, per), b
    cdef int nt = threads_for(n * n * max(d, 1), n_threads)
    cdef bint grad = want_grad and d > 0
    cdef const floating* px = &x[0, 0] if d > 0 else NULL
    cdef const int64_t* lab = &labels[0]
    cdef const floating* w = &sample_weight[0] if sample_weight.shape[0] else NULL
    cdef floating* lo = &loss_out[0] if store else NULL
    cdef floating* pg = &gradient_out[0, 0] if grad else NULL
    cdef double* pw = &work[0, 0]
    cdef double total = 0.0
    cdef int flags = 0
    cdef double* part = <double*>malloc(nb * sizeof(double))
    cdef char* bad = <char*>malloc(max(nb, ntiles) * sizeof(char))
    if part == NULL or bad == NULL:
        free(part)
        free(bad)
        raise MemoryError()
    with nogil:
        for q in prange(npairs, schedule="static", num_threads=nt, use_threads_if=nt > 1):
            _distance_tiles(px, pw, n, d, tile, q, ntiles, m)
        for b in prange(nb, schedule="static", num_threads=nt, use_threads_if=nt > 1):
            part[b] = _mine_block(mining, pw, lab, w, lo, store, n, b * per,
                                  min(b * per + per, n), margin, m, &bad[b])
        total = combine(part, nb)
        for b in range(nb):
            flags = flags | bad[b]
        if grad and not flags:
            for q in prange(npairs, schedule="static", num_threads=nt, use_threads_if=nt > 1):
                _symmetrise_tiles(pw, n, tile, q, ntiles)
            for b in prange(ntiles, schedule="static", num_threads=nt, use_threads_if=nt > 1):
                bad[b] = _gather_block(px, pw, pg, n, d, tile, b * tile,
                                       min(b * tile + tile, n), scale, m)
            for b in range(ntiles):
                flags = flags | bad[b]
    free(part)
    free(bad)
    if flags & FLAG_MEMORY:
        raise MemoryError("batch_triplet: could not allocate per-thread scratch")
    return total, flags
