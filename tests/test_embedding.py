"""Embedding losses: contrastive, triplet, batch-hard and batch-all triplet mining.

Every expectation comes from an independent reference written here: the formulas in NumPy, a
brute-force enumeration of triplets, central (or one-sided) finite differences of those
references, and PyTorch (``triplet_margin_loss`` and autograd) when it is installed.
"""

import itertools
import pickle

import numpy as np
import pytest

import fastloss
from fastloss import BatchAllTriplet, BatchHardTriplet, Contrastive, Triplet

# ----------------------------------------------------------------------------- references


def np_dist(x, y, p=2.0, squared=False, eps=0.0):
    u = np.asarray(x, np.float64) - np.asarray(y, np.float64) + eps
    if squared:
        return np.sum(u * u, axis=-1)
    if p == 2.0:
        return np.sqrt(np.sum(u * u, axis=-1))
    return np.sum(np.abs(u) ** p, axis=-1) ** (1.0 / p)


def np_contrastive(x1, x2, y, margin):
    d = np_dist(x1, x2)
    return np_contrastive_d(d, y, margin)


def np_contrastive_d(d, y, margin):
    y = np.asarray(y, np.float64)
    return (1 - y) * d**2 / 2 + y * np.maximum(0.0, margin - d) ** 2 / 2


def np_triplet(a, p, n, margin=1.0, pn=2.0, swap=False, squared=False, eps=0.0):
    dap = np_dist(a, p, pn, squared, eps)
    dan = np_dist(a, n, pn, squared, eps)
    if swap:
        dan = np.minimum(dan, np_dist(p, n, pn, squared, eps))
    return np.maximum(0.0, dap - dan + margin)


def np_mining(x, labels, margin, p=2.0, squared=False, mining="hard"):
    """Brute force: per-anchor loss (hard: its one triplet; all: the sum over its triplets) and
    per-anchor triplet count, by enumerating every (a, p, n)."""
    x = np.asarray(x, np.float64)
    labels = list(labels)
    n = len(x)
    per = np.zeros(n)
    count = np.zeros(n)
    for a in range(n):
        pos = [j for j in range(n) if j != a and labels[j] == labels[a]]
        neg = [j for j in range(n) if labels[j] != labels[a]]
        if not pos or not neg:
            continue
        dp = [float(np_dist(x[a], x[j], p, squared)) for j in pos]
        dn = [float(np_dist(x[a], x[j], p, squared)) for j in neg]
        if mining == "hard":
            per[a] = max(0.0, max(dp) - min(dn) + margin)
            count[a] = 1
        else:
            per[a] = sum(max(0.0, u - v + margin) for u, v in itertools.product(dp, dn))
            count[a] = len(pos) * len(neg)
    return per, count


def reduce(per, w, reduction, count=None):
    w = np.ones(len(per)) if w is None else np.asarray(w, np.float64)
    count = np.ones(len(per)) if count is None else count
    if reduction == "none":
        return w * per
    if reduction == "sum":
        return np.sum(w * per)
    return np.sum(w * per) / np.sum(w * count)


def fd_grads(f, arrays, h=1e-6):
    """Central differences of the scalar f(*arrays) with respect to every element of each."""
    arrays = [np.array(a, np.float64) for a in arrays]
    out = []
    for k, arr in enumerate(arrays):
        g = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            plus = [a.copy() for a in arrays]
            minus = [a.copy() for a in arrays]
            plus[k][idx] += h
            minus[k][idx] -= h
            g[idx] = (f(*plus) - f(*minus)) / (2 * h)
        out.append(g)
    return out


def assert_flat_side(f, margin, arrays, grads, shift=1e-4):
    """At a kink of the hinge (z = 0 exactly) the gradient must be the limit from the flat side:
    the finite-difference gradient with the margin nudged down (those triplets inactive), and
    not the one with the margin nudged up (active), which must differ (a real kink)."""
    flat = fd_grads(lambda *x: f(margin - shift, *x), arrays, h=1e-7)
    active = fd_grads(lambda *x: f(margin + shift, *x), arrays, h=1e-7)
    for g, r in zip(grads, flat):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)
    assert any(not np.allclose(g, r, atol=1e-3) for g, r in zip(grads, active))


RNG = np.random.default_rng(20240611)


def rand(*shape, scale=1.0):
    return RNG.normal(scale=scale, size=shape)


# ----------------------------------------------------------------------------- contrastive

MARGINS = [0.0, 0.5, 1.5, 4.0]


@pytest.mark.parametrize("margin", MARGINS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_contrastive_matches_numpy(margin, reduction):
    x1, x2 = rand(40, 5), rand(40, 5)
    y = RNG.integers(0, 2, 40)
    w = RNG.uniform(0.1, 2.0, 40)
    for weights in (None, w):
        got = Contrastive(margin=margin).loss(x1, x2, y, sample_weight=weights,
                                              reduction=reduction)
        ref = reduce(np_contrastive(x1, x2, y, margin), weights, reduction)
        np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-15)
        # the distance form agrees with the embedding form
        got_d = Contrastive(margin=margin).loss(np_dist(x1, x2), y, sample_weight=weights,
                                                reduction=reduction)
        np.testing.assert_allclose(got_d, ref, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_contrastive_gradients_finite_differences(reduction):
    x1, x2 = rand(6, 3), rand(6, 3)
    y = np.array([0, 1, 1, 0, 1, 1])
    w = RNG.uniform(0.5, 2.0, 6)
    margin = 3.0  # most dissimilar pairs inside the margin, some outside
    loss = Contrastive(margin=margin)
    value, (g1, g2) = loss.loss_gradient(x1, x2, y, sample_weight=w, reduction=reduction)
    f = lambda a, b: np.sum(reduce(np_contrastive(a, b, y, margin), w, reduction))
    if reduction == "none":
        # per-sample derivatives: row i of g is d(w_i l_i)/dx_i, i.e. the gradient of the sum
        f = lambda a, b: np.sum(w * np_contrastive(a, b, y, margin))
    r1, r2 = fd_grads(f, [x1, x2])
    np.testing.assert_allclose(g1, r1, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(g2, r2, rtol=1e-6, atol=1e-8)


def test_contrastive_distance_form_gradient():
    d = np.array([0.3, 0.3, 2.0, 2.0, 0.9])
    y = np.array([0, 1, 0, 1, 1])
    loss, (gd,) = Contrastive(margin=1.2).loss_gradient(d, y, reduction="sum")
    (ref,) = fd_grads(lambda dd: np.sum(np_contrastive_d(dd, y, 1.2)), [d])
    np.testing.assert_allclose(gd, ref, rtol=1e-7, atol=1e-9)
    assert loss == pytest.approx(np.sum(np_contrastive_d(d, y, 1.2)), rel=1e-14)


def test_contrastive_identical_embeddings():
    """D = 0: defined gradient (0), the loss m^2/2 for a dissimilar pair, central FD agrees."""
    x1 = rand(4, 3)
    x2 = x1.copy()
    y = np.array([0, 1, 0, 1])
    loss, (g1, g2) = Contrastive(margin=2.0).loss_gradient(x1, x2, y, reduction="none")
    np.testing.assert_array_equal(loss, [0.0, 2.0, 0.0, 2.0])
    assert np.all(np.isfinite(g1)) and np.all(g1 == 0) and np.all(g2 == 0)
    r1, r2 = fd_grads(lambda a, b: np.sum(np_contrastive(a, b, y, 2.0)), [x1, x2])
    np.testing.assert_allclose(g1, r1, atol=1e-8)
    np.testing.assert_allclose(g2, r2, atol=1e-8)
    # distance form at D = 0: one-sided derivative -m (distances cannot go below 0)
    _, (gd,) = Contrastive(margin=2.0).loss_gradient([0.0, 0.0], [0, 1], reduction="sum")
    h = 1e-7
    fwd = (np_contrastive_d(np.array([h]), [1], 2.0) - np_contrastive_d(np.array([0.0]), [1],
                                                                          2.0)) / h
    np.testing.assert_allclose(gd, [0.0, fwd[0]], atol=1e-6)


def test_contrastive_at_the_margin():
    """D = m exactly (3-4-5 triangle): the loss is smooth there, gradient 0 both forms."""
    x1 = np.array([[0.0, 0.0], [1.0, 1.0]])
    x2 = np.array([[3.0, 4.0], [4.0, 5.0]])
    y = np.array([1, 1])
    loss, (g1, g2) = Contrastive(margin=5.0).loss_gradient(x1, x2, y, reduction="sum")
    assert loss == 0.0
    r1, r2 = fd_grads(lambda a, b: np.sum(np_contrastive(a, b, y, 5.0)), [x1, x2])
    np.testing.assert_allclose(g1, r1, atol=1e-6)
    np.testing.assert_allclose(g2, r2, atol=1e-6)
    _, (gd,) = Contrastive(margin=5.0).loss_gradient([5.0, 5.0], [1, 0], reduction="sum")
    (ref,) = fd_grads(lambda dd: np.sum(np_contrastive_d(dd, [1, 0], 5.0)), [[5.0, 5.0]])
    np.testing.assert_allclose(gd, ref, atol=1e-6)
    assert gd[0] == 0.0 and gd[1] == 5.0


# ----------------------------------------------------------------------------- triplet

TRIPLET_CASES = [
    dict(p=2.0), dict(p=1.0), dict(p=3.0), dict(p=1.5), dict(p=2.0, squared=True),
    dict(p=2.0, swap=True), dict(p=1.0, swap=True), dict(p=3.0, swap=True),
    dict(p=2.0, eps=1e-6), dict(p=2.0, squared=True, swap=True),
]


@pytest.mark.parametrize("case", TRIPLET_CASES, ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_triplet_matches_numpy(case, reduction):
    a, p, n = rand(50, 6), rand(50, 6), rand(50, 6)
    w = RNG.uniform(0.0, 2.0, 50)
    for margin in (0.0, 0.7, 2.0):
        for weights in (None, w):
            got = Triplet(margin=margin, **case).loss(a, p, n, sample_weight=weights,
                                                      reduction=reduction)
            ref = reduce(np_triplet(a, p, n, margin=margin, pn=case["p"],
                                    swap=case.get("swap", False),
                                    squared=case.get("squared", False),
                                    eps=case.get("eps", 0.0)), weights, reduction)
            np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("case", TRIPLET_CASES, ids=str)
def test_triplet_gradients_finite_differences(case):
    a, p, n = rand(5, 4), rand(5, 4), rand(5, 4)
    w = RNG.uniform(0.5, 2.0, 5)
    kw = dict(margin=1.0, pn=case["p"], swap=case.get("swap", False),
              squared=case.get("squared", False), eps=case.get("eps", 0.0))
    z = np_triplet(a, p, n, **kw)
    assert np.any(z > 0) and np.all((z == 0) | (z > 1e-4))   # away from the kink
    loss, (ga, gp, gn) = Triplet(margin=1.0, **case).loss_gradient(a, p, n, sample_weight=w)
    f = lambda *xs: np.sum(w * np_triplet(*xs, **kw)) / np.sum(w)
    ra, rp, rn = fd_grads(f, [a, p, n])
    for g, r in ((ga, ra), (gp, rp), (gn, rn)):
        np.testing.assert_allclose(g, r, rtol=1e-6, atol=1e-8)


def test_triplet_swap_is_taken():
    """A negative closer to the positive than to the anchor: the swap changes loss and gradient."""
    a = np.array([[0.0, 0.0]])
    p = np.array([[2.0, 0.0]])
    n = np.array([[3.0, 0.0]])   # d(a, n) = 3, d(p, n) = 1
    assert float(Triplet(margin=1.0).loss(a, p, n)) == 0.0
    loss, (ga, gp, gn) = Triplet(margin=1.0, swap=True).loss_gradient(a, p, n)
    assert float(loss) == pytest.approx(2.0 - 1.0 + 1.0)
    ra, rp, rn = fd_grads(lambda *x: np.sum(np_triplet(*x, swap=True)), [a, p, n])
    np.testing.assert_allclose(ga, ra, atol=1e-7)
    np.testing.assert_allclose(gp, rp, atol=1e-7)
    np.testing.assert_allclose(gn, rn, atol=1e-7)


@pytest.mark.parametrize("pn,squared", [(2.0, False), (1.0, False), (3.0, False), (2.0, True)])
def test_triplet_identical_points(pn, squared):
    """a == p and a == n: exact distance 0, finite zero gradient of that distance; the central
    finite difference (symmetric at the norm's cone) agrees."""
    a = rand(3, 4)
    far = a + np.array([[1.0, 0.0, 0.0, 0.0]])
    # row 0: a == p (active: 0 - 1 + 2 > 0); row 1: a == n (active); row 2: all three equal
    p = np.stack([a[0], far[1], a[2]])
    n = np.stack([far[0], a[1], a[2]])
    loss, grads = Triplet(margin=2.0, p=pn, squared=squared).loss_gradient(a, p, n,
                                                                         reduction="none")
    for g in grads:
        assert np.all(np.isfinite(g))
    ref = np_triplet(a, p, n, margin=2.0, pn=pn, squared=squared)
    np.testing.assert_allclose(loss, ref, rtol=1e-14)
    refs = fd_grads(lambda *x: np.sum(np_triplet(*x, margin=2.0, pn=pn, squared=squared)),
                    [a, p, n])
    for g, r in zip(grads, refs):
        np.testing.assert_allclose(g, r, atol=1e-7)
    # row 2 (all equal): the loss is the margin and every gradient is exactly 0
    assert loss[2] == 2.0
    for g in grads:
        assert np.all(g[2] == 0)


def test_triplet_identical_points_with_eps_is_smooth():
    a = rand(2, 3)
    loss, grads = Triplet(margin=1.0, eps=1e-3).loss_gradient(a, a.copy(), a + 0.5,
                                                              reduction="sum")
    refs = fd_grads(lambda *x: np.sum(np_triplet(*x, eps=1e-3)), [a, a.copy(), a + 0.5],
                    h=1e-7)
    for g, r in zip(grads, refs):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("swap", [False, True])
def test_triplet_exactly_at_the_margin(swap):
    """z = d(a,p) - d(a,n) + m = 0 exactly: loss 0, gradient of the flat side (0)."""
    a = np.array([[0.0, 0.0], [1.0, 1.0]])
    p = np.array([[3.0, 4.0], [4.0, 5.0]])      # d(a, p) = 5
    n = np.array([[-6.0, -8.0], [-5.0, -7.0]])  # d(a, n) = 10, d(p, n) = 15: no swap
    loss, grads = Triplet(margin=5.0, swap=swap).loss_gradient(a, p, n, reduction="sum")
    assert float(loss) == 0.0
    for g in grads:
        assert np.all(g == 0)
    f = lambda m, *x: np.sum(np_triplet(*x, margin=m, swap=swap))
    assert_flat_side(f, 5.0, [a, p, n], grads)


def test_triplet_float32_and_mixed_dtypes():
    a, p, n = rand(300, 8), rand(300, 8), rand(300, 8)
    l64, g64 = Triplet().loss_gradient(a, p, n)
    a32, p32, n32 = (v.astype(np.float32) for v in (a, p, n))
    l32, g32 = Triplet().loss_gradient(a32, p32, n32)
    assert l32.dtype == np.float32 and all(g.dtype == np.float32 for g in g32)
    ref32 = np.mean(np_triplet(a32, p32, n32))
    assert float(l32) == pytest.approx(ref32, rel=1e-6)
    for g, h in zip(g32, g64):
        np.testing.assert_allclose(g, h, rtol=1e-4, atol=1e-7)
    l_mixed, g_mixed = Triplet().loss_gradient(a32, p, n32)
    assert l_mixed.dtype == np.float64 and g_mixed[0].dtype == np.float64
    l16 = Triplet().loss(a.astype(np.float16), p.astype(np.float16), n.astype(np.float16))
    assert l16.dtype == np.float32
    lint = Contrastive().loss(np.zeros((2, 2), int), np.ones((2, 2), int), [0, 0])
    assert lint.dtype == np.float64 and float(lint) == pytest.approx(1.0, rel=1e-15)


# ----------------------------------------------------------------------------- PyTorch


def _torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("pn", [1.0, 2.0, 3.0])
@pytest.mark.parametrize("swap", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_triplet_against_pytorch(pn, swap, reduction, dtype):
    """PyTorch's distance is ||x - y + eps||_p with eps=1e-6: Triplet(eps=1e-6) maps it."""
    torch = _torch()
    rng = np.random.default_rng(5)
    a, p, n = (rng.normal(size=(64, 10)).astype(dtype) for _ in range(3))
    p[:4] = a[:4]                         # identical anchor/positive rows (the eps quirk)
    n[4:8] = a[4:8]                       # identical anchor/negative rows
    ts = [torch.tensor(v, requires_grad=True) for v in (a, p, n)]
    ref = torch.nn.functional.triplet_margin_loss(*ts, margin=0.8, p=pn, eps=1e-6, swap=swap,
                                                  reduction=reduction)
    ref.sum().backward()
    loss, grads = Triplet(margin=0.8, p=pn, swap=swap, eps=1e-6).loss_gradient(
        a, p, n, reduction=reduction)
    tol = dict(rtol=1e-12, atol=1e-14) if dtype == np.float64 else dict(rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(loss), ref.detach().numpy(), **tol)
    for g, t in zip(grads, ts):
        np.testing.assert_allclose(g, t.grad.numpy(), **tol)


def test_contrastive_against_pytorch_autograd():
    """The contrastive formula written in PyTorch, differentiated by autograd."""
    torch = _torch()
    x1, x2 = rand(30, 4), rand(30, 4)
    y = RNG.integers(0, 2, 30)
    w = RNG.uniform(0.2, 1.5, 30)
    t1, t2 = (torch.tensor(v, requires_grad=True) for v in (x1, x2))
    d = torch.linalg.vector_norm(t1 - t2, dim=1)
    ty, tw = torch.tensor(y, dtype=torch.float64), torch.tensor(w)
    per = (1 - ty) * d**2 / 2 + ty * torch.clamp(2.0 - d, min=0) ** 2 / 2
    ref = (tw * per).sum() / tw.sum()
    ref.backward()
    loss, (g1, g2) = Contrastive(margin=2.0).loss_gradient(x1, x2, y, sample_weight=w)
    assert float(loss) == pytest.approx(ref.item(), rel=1e-13)
    np.testing.assert_allclose(g1, t1.grad.numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(g2, t2.grad.numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("mining", ["hard", "all"])
def test_mining_against_pytorch_autograd(mining):
    """Brute-force batch-hard / batch-all written in PyTorch, differentiated by autograd."""
    torch = _torch()
    x = rand(12, 5)
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 3])
    tx = torch.tensor(x, requires_grad=True)
    D = torch.linalg.vector_norm(tx[:, None, :] - tx[None, :, :] + 0.0, dim=-1)
    same = torch.tensor(labels[:, None] == labels[None, :])
    eye = torch.eye(12, dtype=torch.bool)
    pos, neg = same & ~eye, ~same
    if mining == "hard":
        dp = torch.where(pos, D, torch.full_like(D, -np.inf)).max(dim=1).values
        dn = torch.where(neg, D, torch.full_like(D, np.inf)).min(dim=1).values
        ref = torch.clamp(dp - dn + 1.0, min=0).mean()
        cls = BatchHardTriplet
    else:
        z = D[:, :, None] - D[:, None, :] + 1.0
        valid = pos[:, :, None] & neg[:, None, :]
        ref = torch.clamp(z, min=0)[valid].sum() / valid.sum()
        cls = BatchAllTriplet
    ref.backward()
    loss, (g,) = cls(margin=1.0).loss_gradient(x, labels)
    assert float(loss) == pytest.approx(ref.item(), rel=1e-12)
    np.testing.assert_allclose(g, tx.grad.numpy(), rtol=1e-10, atol=1e-13)


# ----------------------------------------------------------------------------- batch mining

MINING_CASES = [dict(p=2.0), dict(p=1.0), dict(p=2.0, squared=True)]
LABELINGS = [
    np.array([0, 0, 1, 1, 2, 2, 0, 1]),
    np.array([3, 3, 3, 3, 7, 7, 7, -1]),        # a singleton class: anchor without positive
    np.array([0, 1, 2, 3, 4, 5, 0, 0]),         # mostly singletons
    np.array([1, 1, 1, 1, 2, 2, 2, 2]),
]


@pytest.mark.parametrize("mining,cls", [("hard", BatchHardTriplet), ("all", BatchAllTriplet)])
@pytest.mark.parametrize("case", MINING_CASES, ids=str)
@pytest.mark.parametrize("labels", LABELINGS, ids=lambda v: "".join(map(str, v)))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mining_matches_brute_force(mining, cls, case, labels, reduction):
    x = rand(len(labels), 3)
    w = RNG.uniform(0.2, 2.0, len(labels))
    for margin in (0.0, 0.5, 2.0):
        per, count = np_mining(x, labels, margin, case["p"], case.get("squared", False),
                               mining)
        for weights in (None, w):
            got = cls(margin=margin, **case).loss(x, labels, sample_weight=weights,
                                                  reduction=reduction)
            ref = reduce(per, weights, reduction, count)
            np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("mining,cls", [("hard", BatchHardTriplet), ("all", BatchAllTriplet)])
@pytest.mark.parametrize("case", MINING_CASES, ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mining_gradient_finite_differences(mining, cls, case, reduction):
    labels = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    x = rand(8, 3)
    w = RNG.uniform(0.5, 2.0, 8)
    sq = case.get("squared", False)
    loss, (g,) = cls(margin=1.0, **case).loss_gradient(x, labels, sample_weight=w,
                                                       reduction=reduction)

    def f(xx):
        per, count = np_mining(xx, labels, 1.0, case["p"], sq, mining)
        return reduce(per, w, reduction, count)

    (ref,) = fd_grads(f, [x])
    np.testing.assert_allclose(g, ref, rtol=1e-6, atol=1e-8)
    assert float(loss) == pytest.approx(f(x), rel=1e-12)


@pytest.mark.parametrize("mining,cls", [("hard", BatchHardTriplet), ("all", BatchAllTriplet)])
def test_mining_identical_embeddings(mining, cls):
    """Duplicate rows: a positive and a negative identical to the anchor (distance 0). The
    points are placed so that no hardest positive/negative is tied between two distinct rows
    (a tie at distance 0 is harmless: the gradient there is 0 either way)."""
    labels = np.array([0, 0, 0, 0, 1, 1, 1])
    x = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [-3.0, 0.0, 0.0], [3.2, 0.0, 0.0],
                  [0.0, 0.0, 0.0], [-3.0, 0.5, 0.0], [3.0, 0.6, 0.1]])
    # rows 0 and 1: identical positives; rows 0/1 and 4: identical anchor and negative
    loss, (g,) = cls(margin=1.0).loss_gradient(x, labels, reduction="sum")
    assert np.all(np.isfinite(g))

    def f(xx):
        return np.sum(np_mining(xx, labels, 1.0, mining=mining)[0])

    D = np_dist(x[:, None], x[None, :])
    z = D[:, :, None] - D[:, None, :] + 1.0
    assert np.min(np.abs(z)) > 1e-3                # no triplet at the kink
    assert float(loss) == pytest.approx(f(x), rel=1e-13)
    (ref,) = fd_grads(f, [x])
    np.testing.assert_allclose(g, ref, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("mining,cls", [("hard", BatchHardTriplet), ("all", BatchAllTriplet)])
def test_mining_at_the_margin(mining, cls):
    """1-D points where triplets sit exactly at the margin (z = 0): flat-side derivative."""
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    labels = np.array([0, 0, 1, 1])
    # anchor 0: d(0,1) = 1, hardest negative d(0,2) = 2: z = 1 - 2 + 1 = 0
    loss, (g,) = cls(margin=1.0).loss_gradient(x, labels, reduction="sum")

    def f(m, xx):
        return np.sum(np_mining(xx, labels, m, mining=mining)[0])

    assert float(loss) == pytest.approx(f(1.0, x), abs=1e-15)
    assert_flat_side(f, 1.0, [x], [g])


def test_mining_no_triplet():
    x = rand(4, 2)
    for cls in (BatchHardTriplet, BatchAllTriplet):
        for labels in ([0, 1, 2, 3], [5, 5, 5, 5]):
            with pytest.raises(ValueError, match="no valid triplet"):
                cls().loss(x, labels)
            loss, (g,) = cls().loss_gradient(x, labels, reduction="sum")
            assert loss == 0.0 and np.all(g == 0)
        zero_w = [0.0, 0.0, 1.0, 1.0]   # only anchors 2, 3 weighted, and they have no triplet
        with pytest.raises(ValueError, match="sample_weight"):
            cls().loss(x, [0, 0, 1, 2], sample_weight=zero_w)


def test_mining_labels():
    x = rand(6, 2)
    ints = np.array([4, 4, 9, 9, 4, 9])
    ref = BatchAllTriplet().loss(x, ints)
    assert BatchAllTriplet().loss(x, ints.astype(float)) == ref
    assert BatchAllTriplet().loss(x, ints == 4) == ref
    assert BatchAllTriplet().loss(x, list(ints - 100)) == ref
    with pytest.raises(ValueError, match="labels must be integers"):
        BatchAllTriplet().loss(x, [0.5, 0, 1, 1, 0, 1])
    with pytest.raises(ValueError, match="labels must be integers"):
        BatchAllTriplet().loss(x, [np.nan, 0, 1, 1, 0, 1])
    with pytest.raises(ValueError, match=r"labels must have shape \(6,\)"):
        BatchAllTriplet().loss(x, [0, 1])


def test_mining_too_large_batch_is_a_clear_memory_error():
    n = 2_000_000      # the n x n work matrix would take 29 TiB
    x = np.zeros((n, 1), np.float32)
    with pytest.raises(MemoryError, match=r"n=2000000 needs an n x n float64 work matrix"):
        BatchHardTriplet().loss(x, np.arange(n) % 2)


def test_mining_float32():
    x = rand(40, 6)
    labels = RNG.integers(0, 4, 40)
    for cls in (BatchHardTriplet, BatchAllTriplet):
        l64, (g64,) = cls().loss_gradient(x, labels)
        l32, (g32,) = cls().loss_gradient(x.astype(np.float32), labels)
        assert l32.dtype == np.float32 and g32.dtype == np.float32
        assert float(l32) == pytest.approx(float(l64), rel=1e-5)
        np.testing.assert_allclose(g32, g64, rtol=1e-3, atol=1e-6)


# ----------------------------------------------------------------------------- conventions


def _calls():
    """(loss object, arrays) for every embedding loss and form, with n = 7 samples."""
    a, p, n = rand(7, 3), rand(7, 3), rand(7, 3)
    y = np.array([0, 1, 1, 0, 1, 0, 1])
    labels = np.array([0, 0, 1, 1, 2, 2, 0])
    return [
        (Contrastive(margin=2.0), (a, p, y)),
        (Contrastive(margin=2.0), (np_dist(a, p), y)),
        (Triplet(margin=1.0), (a, p, n)),
        (Triplet(margin=1.0, p=1.0, swap=True), (a, p, n)),
        (BatchHardTriplet(margin=1.0), (a, labels)),
        (BatchAllTriplet(margin=1.0), (a, labels)),
    ]


CALLS = _calls()
CALL_IDS = ["contrastive", "contrastive_distance", "triplet", "triplet_l1_swap", "batch_hard",
            "batch_all"]


@pytest.mark.parametrize("loss,arrays", CALLS, ids=CALL_IDS)
def test_reductions_and_gradient_scaling(loss, arrays):
    w = RNG.uniform(0.5, 2.0, 7)
    none, g_none = loss.loss_gradient(*arrays, sample_weight=w, reduction="none")
    total, g_sum = loss.loss_gradient(*arrays, sample_weight=w, reduction="sum")
    mean, g_mean = loss.loss_gradient(*arrays, sample_weight=w, reduction="mean")
    assert none.shape == (7,)
    assert float(total) == pytest.approx(np.sum(none), rel=1e-13)
    ratio = float(total) / float(mean)       # the mean's denominator
    for gs, gn, gm in zip(g_sum, g_none, g_mean):
        np.testing.assert_array_equal(gs, gn)
        np.testing.assert_allclose(gm, gs / ratio, rtol=1e-13, atol=1e-16)
    # loss / gradient / loss_gradient agree
    assert loss.loss(*arrays, sample_weight=w) == mean
    for g1, g2 in zip(loss.gradient(*arrays, sample_weight=w), g_mean):
        np.testing.assert_array_equal(g1, g2)


@pytest.mark.parametrize("loss,arrays", CALLS, ids=CALL_IDS)
def test_out_arrays_and_inputs_untouched(loss, arrays):
    copies = [np.array(a, copy=True) for a in arrays]
    ro = [np.array(a, copy=True) for a in arrays]
    for a in ro:
        a.flags.writeable = False
    _, ref_g = loss.loss_gradient(*ro, reduction="sum")
    outs = tuple(np.empty_like(g) for g in ref_g)
    lo = np.empty(7)
    value, gs = loss.loss_gradient(*arrays, reduction="none", loss_out=lo, gradient_out=outs)
    assert value is lo
    assert all(g is o for g, o in zip(gs, outs))
    for g, r in zip(gs, ref_g):
        np.testing.assert_array_equal(g, r)
    for a, c in zip(arrays, copies):
        np.testing.assert_array_equal(a, c)
    # partial outs (None entries) and list outs
    gs2 = loss.gradient(*arrays, out=[None] * len(outs))
    assert len(gs2) == len(outs)
    # bad outs
    with pytest.raises(ValueError, match="gradient_out must"):
        loss.loss_gradient(*arrays, gradient_out=outs[0])
    with pytest.raises(ValueError, match="gradient_out must hold"):
        loss.loss_gradient(*arrays, gradient_out=outs + (None,))
    with pytest.raises(ValueError, match="dtype"):
        loss.gradient(*arrays, out=tuple(o.astype(np.float32) for o in outs))
    with pytest.raises(ValueError, match="loss_out is only used"):
        loss.loss(*arrays, loss_out=lo)
    with pytest.raises(ValueError, match="loss_out must have shape"):
        loss.loss(*arrays, reduction="none", loss_out=np.empty(6))


@pytest.mark.parametrize("loss,arrays", CALLS, ids=CALL_IDS)
def test_non_contiguous_and_lists(loss, arrays):
    ref = loss.loss(*arrays, reduction="none")
    fortran = [np.asfortranarray(a) if np.ndim(a) == 2 else a for a in arrays]
    strided = [np.repeat(np.asarray(a), 2, axis=0)[::2] for a in arrays]
    lists = [np.asarray(a).tolist() for a in arrays]
    for variant in (fortran, strided, lists):
        np.testing.assert_array_equal(loss.loss(*variant, reduction="none"), ref)


@pytest.mark.parametrize("loss,arrays", CALLS, ids=CALL_IDS)
def test_no_hessian_no_baseline(loss, arrays):
    with pytest.raises(NotImplementedError, match="no diagonal hessian"):
        loss.loss_gradient_hessian(*arrays)
    with pytest.raises(NotImplementedError, match="no diagonal hessian"):
        loss.gradient_hessian(*arrays)
    with pytest.raises(NotImplementedError, match="baseline does not apply"):
        loss.baseline(arrays[-1])
    assert loss.has_hessian is False


@pytest.mark.parametrize("loss,arrays", CALLS, ids=CALL_IDS)
def test_registry_pickle_functional(loss, arrays):
    again = fastloss.get(loss.name, **loss.get_params())
    assert again == loss and hash(again) == hash(loss)
    assert pickle.loads(pickle.dumps(loss)) == loss
    assert repr(loss).startswith(type(loss).__name__ + "(")
    shortcut = getattr(fastloss, loss.name)
    w = RNG.uniform(0.5, 2.0, 7)
    assert shortcut(*arrays, **loss.get_params(), sample_weight=w, reduction="sum") == \
        loss.loss(*arrays, sample_weight=w, reduction="sum")


def test_empty_batch():
    e = np.empty((0, 3))
    assert np.isnan(Triplet().loss(e, e, e))
    assert Triplet().loss(e, e, e, reduction="sum") == 0.0
    loss, (ga, gp, gn) = Triplet().loss_gradient(e, e, e, reduction="none")
    assert loss.shape == (0,) and ga.shape == (0, 3)
    assert Contrastive().loss(np.empty(0), np.empty(0), reduction="sum") == 0.0
    assert BatchAllTriplet().loss(e, np.empty(0, int), reduction="sum") == 0.0


def test_nan_propagates_per_row():
    a, p, n = rand(5, 3), rand(5, 3), rand(5, 3)
    a[2, 1] = np.nan
    loss, grads = Triplet(margin=10.0).loss_gradient(a, p, n, reduction="none")
    assert np.isnan(loss[2]) and np.all(np.isfinite(np.delete(loss, 2)))
    assert np.all(np.isnan(grads[0][2])) and np.all(np.isfinite(np.delete(grads[0], 2, 0)))
    y = np.array([0, 1, 0, 1, 1])
    lc = Contrastive().loss(a, p, y, reduction="none")
    assert np.isnan(lc[2]) and np.all(np.isfinite(np.delete(lc, 2)))
    assert np.isnan(Contrastive().loss(np.array([np.nan, 1.0]), [1, 1]))
    assert np.isnan(BatchAllTriplet().loss(a, [0, 0, 1, 1, 0]))


def test_extreme_magnitudes():
    """No overflow or underflow in the Euclidean distance (scaled fallback)."""
    big = np.array([[3e200, 4e200]])
    z = np.zeros((1, 2))
    assert float(Triplet(margin=0.0).loss(z, big, z, reduction="sum")) == pytest.approx(5e200)
    tiny = np.array([[3e-200, 4e-200]])
    assert float(Triplet(margin=0.0).loss(z, tiny, z)) == pytest.approx(5e-200)
    _, (ga, gp, gn) = Triplet(margin=1.0).loss_gradient(z, tiny, z)
    np.testing.assert_allclose(gp, [[0.6, 0.8]], rtol=1e-14)     # -(a - p)/|a - p|
    assert float(Triplet(margin=0.0, p=3.0).loss(z, big, z)) == pytest.approx(
        (27 + 64) ** (1 / 3) * 1e200)
    # contrastive, dissimilar tiny distance: the direction is still right
    _, (g1, _) = Contrastive(margin=1.0).loss_gradient(z, tiny, [1])
    np.testing.assert_allclose(g1, [[0.6, 0.8]], rtol=1e-14)   # -(1 - D)(x1 - x2)/D ~ +u/|u|


@pytest.mark.parametrize("loss,arrays,big", [
    (Triplet(margin=2.0), None, (20000, 8)),
    (Triplet(margin=1.0, p=3.0, swap=True), None, (9000, 16)),
    (Contrastive(margin=3.0), None, (30000, 5)),
    (BatchHardTriplet(margin=1.0), None, (300, 16)),
    (BatchAllTriplet(margin=1.0), None, (300, 16)),
], ids=["triplet", "triplet_p3_swap", "contrastive", "batch_hard", "batch_all"])
def test_bitwise_identical_for_any_thread_count(loss, arrays, big):
    n, d = big
    rng = np.random.default_rng(11)
    if isinstance(loss, Triplet):
        arrays = tuple(rng.normal(size=(n, d)) for _ in range(3))
    elif isinstance(loss, Contrastive):
        arrays = (rng.normal(size=(n, d)), rng.normal(size=(n, d)), rng.integers(0, 2, n))
    else:
        arrays = (rng.normal(size=(n, d)), rng.integers(0, 10, n))
    w = rng.uniform(0.0, 2.0, n)
    ref_loss, ref_g = loss.loss_gradient(*arrays, sample_weight=w, n_threads=1)
    for nt in (2, 3, 4):
        got_loss, got_g = loss.loss_gradient(*arrays, sample_weight=w, n_threads=nt)
        assert got_loss.tobytes() == ref_loss.tobytes()
        for g, r in zip(got_g, ref_g):
            assert g.tobytes() == r.tobytes()


# ----------------------------------------------------------------------------- bad input


def test_bad_input_messages():
    a, p = rand(4, 3), rand(4, 3)
    with pytest.raises(ValueError,
                       match=r"x1 and x2 must have the same shape .*\(4, 3\).*\(4, 2\)"):
        Contrastive().loss(a, p[:, :2], [0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"anchor and negative must have the same shape"):
        Triplet().loss(a, p, rand(5, 3))
    with pytest.raises(ValueError, match=r"positive must be a 2-D array .*1-D"):
        Triplet().loss(a, p[0], p)
    with pytest.raises(ValueError, match=r"y must have shape \(4,\)"):
        Contrastive().loss(a, p, [0, 1])
    for bad in ([0, 1, 2, 0], [0, -1, 1, 0], [0, 0.5, 1, 1], [0, np.nan, 1, 1]):
        with pytest.raises(ValueError, match="y must hold 0 .* or 1 .*, got"):
            Contrastive().loss(a, p, bad)
    with pytest.raises(ValueError, match="y must hold"):
        Contrastive().loss([0.1, 0.2], [1, 3])
    with pytest.raises(ValueError, match=r"distance must be >= 0, got -0\.5"):
        Contrastive().loss([0.1, -0.5], [1, 0])
    with pytest.raises(ValueError, match="distance must be a 1-D array"):
        Contrastive().loss(a, [0, 1, 0, 1])
    with pytest.raises(TypeError, match=r"\(x1, x2, y\) or \(distance, y\), got 1"):
        Contrastive().loss(a)
    with pytest.raises(TypeError, match=r"\(anchor, positive, negative\), got 2"):
        Triplet().loss(a, p)
    with pytest.raises(TypeError, match=r"\(embeddings, labels\), got 3"):
        BatchHardTriplet().loss(a, p, p)
    with pytest.raises(TypeError, match="real numbers"):
        Triplet().loss(a.astype(complex), p, p)
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(4,\)"):
        Triplet().loss(a, p, p, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="non-negative"):
        Triplet().loss(a, p, p, sample_weight=[1, -1, 1, 1])
    with pytest.raises(ValueError, match="must not sum to 0"):
        Triplet().loss(a, p, p, sample_weight=np.zeros(4))
    with pytest.raises(ValueError, match="reduction must be one of"):
        Triplet().loss(a, p, p, reduction="avg")


@pytest.mark.parametrize("cls,kwargs,match", [
    (Contrastive, dict(margin=-1.0), "margin must be a finite number >= 0"),
    (Triplet, dict(margin=-0.1), "margin must be a finite number >= 0"),
    (BatchHardTriplet, dict(margin=-2), "margin must be"),
    (BatchAllTriplet, dict(margin=np.inf), "margin must be"),
    (Triplet, dict(p=0.5), "p must be a finite number >= 1"),
    (Triplet, dict(p=1.0, squared=True), "squared=True needs p=2"),
    (Triplet, dict(eps=-1e-6), "eps must be"),
    (BatchHardTriplet, dict(p=3.0), "p must be .*1 or 2"),
    (BatchAllTriplet, dict(p=1, squared=True), "squared=True needs p=2"),
])
def test_bad_parameters(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_bad_parameter_types():
    with pytest.raises(TypeError, match="swap must be True or False"):
        Triplet(swap=1)
    with pytest.raises(TypeError, match="delta"):
        fastloss.get("triplet", delta=1.0)


@pytest.mark.parametrize("d", [0, 2])
def test_regression_mean_of_huge_losses_does_not_overflow(d):
    """A "mean" of losses near the float64 maximum was inf: the float64 sum of w*l overflowed
    although the mean is finite (found by test_weights_scale_per_sample: Triplet with
    margin=6e307 and rows of 0 columns). At distance 0 every row's loss is the margin, so every
    mean is the margin, weighted or not."""
    m = 6e307
    x = np.zeros((3, d))
    trip = Triplet(margin=m)
    assert trip.loss(x, x, x) == pytest.approx(m, rel=1e-15)
    w = np.array([1.0, 3.0, 0.25])
    value, grads = trip.loss_gradient(x, x, x, sample_weight=w)
    assert value == pytest.approx(m, rel=1e-15)
    for g, g1 in zip(grads, trip.gradient(x, x, x, sample_weight=w)):
        assert np.array_equal(g, g1)
    assert trip.loss(x, x, x, reduction="sum") == np.inf          # the sum really is inf
    # batch-all: the mean over the (anchor, positive, negative) triplets, each = margin
    ba = BatchAllTriplet(margin=m)
    assert ba.loss(np.zeros((4, d)), [0, 0, 1, 1]) == pytest.approx(m, rel=1e-15)
    assert ba.loss(np.zeros((4, d)), [0, 0, 1, 1], sample_weight=[1.0, 2.0, 3.0, 4.0]) \
        == pytest.approx(m, rel=1e-15)


def test_regression_float32_overflow_is_quiet():
    """A float32 "mean"/"sum" beyond the float32 range is inf (the correctly rounded value)
    without NumPy's "overflow encountered in cast" RuntimeWarning; "sum" is not divided."""
    import warnings
    z = np.zeros((2, 1), np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Triplet(margin=1e300).loss(z, z, z) == np.inf
        assert Triplet(margin=1e300).loss(z, z, z, reduction="sum") == np.inf
        value = fastloss.CategoricalCrossEntropy(from_logits=True).loss(
            [0], np.array([[-1e38, 3e38]], np.float32))
        assert value.dtype == np.float32 and value == np.inf
    assert Triplet(margin=1.0).loss(z, z, z, reduction="sum") == 2.0


@pytest.mark.parametrize("kw", [dict(squared=True), dict(), dict(p=1.0), dict(p=3.0)])
def test_triplet_distances_that_overflow(kw):
    """Distances past the float64 range (huge finite inputs): the loss is
    max(0, margin + d(a, p) - d(a, n)) computed exactly (mpmath) and rounded, +inf where that
    overflows, never inf - inf = NaN (found by the property tests, with eps = 2^512 then:
    eps is now at most 1)."""
    import mpmath
    mpmath.mp.dps = 700     # the margin 1 next to squared distances of 1e617
    big = 1e308
    eps = 0.0
    a = np.array([[big, big]])
    pos = np.array([[-big, -big]])
    far = np.array([[-big, -0.5 * big]])

    def dist(x, y):
        u = [mpmath.mpf(float(xi)) - mpmath.mpf(float(yi)) + eps for xi, yi in zip(x[0], y[0])]
        if kw.get("squared"):
            return sum(v * v for v in u)
        q = kw.get("p", 2.0)
        return sum(abs(v) ** q for v in u) ** (1 / mpmath.mpf(q))

    loss = fastloss.Triplet(margin=1.0, **kw)
    for x1, x2 in ((pos, pos.copy()), (pos, far), (far, pos)):
        ref = max(mpmath.mpf(0), 1 + dist(a, x1) - dist(a, x2))
        expect = float(ref) if ref < mpmath.mpf(np.finfo(np.float64).max) else np.inf
        got = float(loss.loss(a, x1, x2))
        assert got == pytest.approx(expect, rel=1e-12), (x1, x2, got, expect)


def test_triplet_eps_is_a_small_constant():
    with pytest.raises(ValueError, match="eps"):
        fastloss.Triplet(eps=2.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_triplet_gradient_at_subnormal_distances(dtype):
    """Rows a subnormal apart (here only eps = 5e-324 separates them): d(D)/du = u / D = +-1,
    so the gradients are (0, -1, 1), not 1/D = inf and inf - inf = NaN (found by the property
    tests on the wheel)."""
    z = np.zeros((1, 1), dtype)
    loss, (ga, gp, gn) = fastloss.Triplet(eps=5e-324).loss_gradient(z, z, z)
    assert float(loss) == 1.0
    assert (float(ga[0, 0]), float(gp[0, 0]), float(gn[0, 0])) == (0.0, -1.0, 1.0)
