"""``fastloss bench``: fastloss against the NumPy code a user would write, side by side.

Each case times one call that returns the mean loss, its gradient and its hessian (the work a
training step or a boosting round needs) with fastloss and with a clear, vectorised, numerically
stable NumPy baseline, in the same run, best of several repeats. A memory-bandwidth probe with
the same traffic (two arrays read, two written) is timed in the same run, its rounds interleaved
with the other two (``best_times``), so every time is also given as a fraction of what the
machine's memory allows at that moment: ``bound = probe time / fastloss time``.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

import fastloss

from . import _core

# ---------------------------------------------------------------------------------------------
# NumPy baselines: what a careful user writes (vectorised, stable forms), returning the mean loss,
# the gradient of the mean and its hessian. They double as the reference implementations of
# benchmarks/.
# ---------------------------------------------------------------------------------------------


def np_mse(y, p):
    e = p - y
    n = e.size
    return np.mean(e * e), (2.0 / n) * e, np.full_like(e, 2.0 / n)


def np_mae(y, p):
    e = p - y
    n = e.size
    return np.mean(np.abs(e)), np.sign(e) / n, np.zeros_like(e)


def np_huber(y, p, delta=1.0):
    e = p - y
    a = np.abs(e)
    small = a <= delta
    n = e.size
    loss = np.where(small, 0.5 * e * e, delta * (a - 0.5 * delta))
    grad = np.where(small, e, delta * np.sign(e)) / n
    hess = small.astype(e.dtype) / n
    return np.mean(loss), grad, hess


def np_quantile(y, p, quantile=0.5):
    e = y - p
    n = e.size
    loss = np.maximum(quantile * e, (quantile - 1) * e)
    grad = np.where(e > 0, -quantile, np.where(e < 0, 1 - quantile, 0.0)).astype(e.dtype) / n
    return np.mean(loss), grad, np.zeros_like(e)


def np_log_cosh(y, p):
    e = p - y
    a = np.abs(e)
    n = e.size
    loss = a + np.log1p(np.exp(-2 * a)) - np.log(2.0)
    t = np.tanh(e)
    return np.mean(loss), t / n, (1 - t * t) / n


def np_poisson(y, p):
    mu = np.exp(p)
    n = p.size
    ylogy = np.where(y > 0, y * np.log(np.where(y > 0, y, 1)), 0)
    loss = 2 * (ylogy - y * p - y + mu)
    return np.mean(loss), 2 * (mu - y) / n, 2 * mu / n


def np_bce_logits(y, z):
    # log(1 + e^z) - y z, with a stable softplus; gradient sigmoid(z) - y, hessian p (1 - p)
    n = z.size
    loss = np.logaddexp(0, z) - y * z
    s = 0.5 * (1 + np.tanh(0.5 * z))
    return np.mean(loss), (s - y) / n, s * (1 - s) / n


def np_bce_proba(y, p):
    # -(y log c + (1 - y) log(1 - c)) with c = p clipped to [eps, 1 - eps] (scikit-learn's
    # log_loss); gradient (1 - y)/(1 - c) - y/c, hessian y/c^2 + (1 - y)/(1 - c)^2
    n = p.size
    eps = np.finfo(p.dtype).eps
    c = np.clip(p, eps, 1 - eps)
    r = 1 - c
    loss = -(y * np.log(c) + (1 - y) * np.log1p(-c))
    return np.mean(loss), ((1 - y) / r - y / c) / n, (y / (c * c) + (1 - y) / (r * r)) / n


def np_gamma(y, p):
    # unit deviance with log link: 2 (y e^-p + p - log y - 1)
    n = p.size
    r = y * np.exp(-p)
    return np.mean(2 * (r + p - np.log(y) - 1)), 2 * (1 - r) / n, 2 * r / n


def np_tweedie(y, p, power=1.5):
    a1, a2 = 1 - power, 2 - power
    n = p.size
    m1, m2 = np.exp(a1 * p), np.exp(a2 * p)
    loss = 2 * (y ** a2 / (a1 * a2) - y * m1 / a1 + m2 / a2)
    return np.mean(loss), 2 * (m2 - y * m1) / n, 2 * (a2 * m2 - a1 * y * m1) / n


def np_focal_logits(y, z, alpha=0.25, gamma=2.0):
    # l = a_t m^g ce with m = 1 - p_t, ce = -log p_t (stable softplus), hard labels y in {0, 1}
    n = z.size
    s = 0.5 * (1 + np.tanh(0.5 * z))
    q = 1 - s
    at = alpha * y + (1 - alpha) * (1 - y)
    m = y * q + (1 - y) * s
    ce = y * np.logaddexp(0, -z) + (1 - y) * np.logaddexp(0, z)
    dm = (1 - 2 * y) * s * q
    dce = s - y
    mg1 = m ** (gamma - 1)
    loss = at * m ** gamma * ce
    grad = at * (gamma * mg1 * dm * ce + m ** gamma * dce)
    hess = at * (gamma * (gamma - 1) * m ** (gamma - 2) * dm * dm * ce
                 + gamma * mg1 * dm * (1 - 2 * s) * ce + 2 * gamma * mg1 * dm * dce
                 + m ** gamma * s * q)
    return np.mean(loss), grad / n, hess / n


def np_softmax_ce(y, z):
    # integer labels y (n,), logits z (n, K): log-sum-exp - z_y; gradient p - onehot,
    # diagonal hessian p (1 - p)
    n = z.shape[0]
    rows = np.arange(n)
    y = np.asarray(y, dtype=np.intp)
    zmax = z.max(axis=1, keepdims=True)
    e = np.exp(z - zmax)
    s = e.sum(axis=1, keepdims=True)
    loss = np.mean(zmax[:, 0] + np.log(s[:, 0]) - z[rows, y])
    prob = e / s
    grad = prob.copy()
    grad[rows, y] -= 1
    return loss, grad / n, prob * (1 - prob) / n


BASELINES: Dict[str, Tuple[Callable, Callable[[], object], str]] = {
    # name: (numpy baseline, fastloss loss factory, data kind)
    "mse": (np_mse, lambda: fastloss.MSE(), "real"),
    "mae": (np_mae, lambda: fastloss.MAE(), "real"),
    "huber": (np_huber, lambda: fastloss.Huber(delta=1.0), "real"),
    "quantile": (np_quantile, lambda: fastloss.Quantile(quantile=0.5), "real"),
    "log_cosh": (np_log_cosh, lambda: fastloss.LogCosh(), "real"),
    "poisson": (np_poisson, lambda: fastloss.Poisson(), "count"),
    "gamma": (np_gamma, lambda: fastloss.Gamma(), "positive"),
    "tweedie": (np_tweedie, lambda: fastloss.Tweedie(power=1.5), "count"),
}
if "binary_cross_entropy" in fastloss.available():
    BASELINES["bce_logits"] = (
        np_bce_logits, lambda: fastloss.get("binary_cross_entropy", from_logits=True), "binary")
    BASELINES["bce_proba"] = (
        np_bce_proba, lambda: fastloss.get("binary_cross_entropy"), "probability")
    BASELINES["focal_logits"] = (
        np_focal_logits, lambda: fastloss.get("focal", from_logits=True), "binary")
    # n is the number of rows here (K = 10 classes), as in "10^7 x 10"
    BASELINES["softmax_ce"] = (
        np_softmax_ce, lambda: fastloss.get("categorical_cross_entropy", from_logits=True),
        "multiclass")

DEFAULT_LOSSES = ["mse", "huber", "log_cosh", "poisson"] + (
    ["bce_logits"] if "bce_logits" in BASELINES else [])


N_CLASSES = 10


def make_data(kind: str, n: int, dtype, seed: int = 0):
    rng = np.random.default_rng(seed)
    if kind == "multiclass":
        y = rng.integers(0, N_CLASSES, n)
        p = (rng.standard_normal((n, N_CLASSES)) * 2.0).astype(dtype)
    elif kind == "positive":
        y = rng.gamma(2.0, 1.5, n).astype(dtype)
        p = (np.log(y) + rng.standard_normal(n) * 0.5).astype(dtype)
    elif kind == "count":
        y = rng.poisson(3.0, n).astype(dtype)
        p = (rng.standard_normal(n) * 0.5 + 1.0).astype(dtype)
    elif kind == "probability":
        y = (rng.random(n) < 0.3).astype(dtype)
        p = rng.uniform(0.01, 0.99, n).astype(dtype)
    elif kind == "binary":
        y = (rng.random(n) < 0.3).astype(dtype)
        p = (rng.standard_normal(n) * 2.0).astype(dtype)
    else:
        y = rng.standard_normal(n).astype(dtype)
        p = (y + rng.standard_normal(n)).astype(dtype)
    return y, p


def _calls_per_round(fn: Callable[[], object], min_time: float) -> int:
    """How many back-to-back calls of ``fn`` take at least ``min_time`` (timeit-like)."""
    fn()  # warm up: page faults, thread start-up, caches
    number = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        dt = time.perf_counter() - t0
        if dt >= min_time or number >= 1 << 20:
            return number
        number *= 2 if dt == 0 else max(2, int(min_time / dt * 1.2))


def best_times(fns: Sequence[Callable[[], object]], repeats: Sequence[int],
               min_time: float = 0.02) -> List[float]:
    """Best seconds per call of each function, the functions timed in turn, round by round.

    Function ``i`` gets ``repeats[i]`` rounds, each of enough calls to last ``min_time``. The
    rounds are interleaved (fastloss, NumPy, probe, fastloss, ...) rather than run one function
    after the other, so that the minutes-long drifts of a shared machine (its memory bandwidth
    halved or doubled between runs) reach every time of a row alike, and their ratios stay
    meaningful.
    """
    numbers = [_calls_per_round(fn, min_time) for fn in fns]
    best = [float("inf")] * len(fns)
    for k in range(max(repeats)):
        for i, fn in enumerate(fns):
            if k >= repeats[i]:
                continue
            t0 = time.perf_counter()
            for _ in range(numbers[i]):
                fn()
            best[i] = min(best[i], (time.perf_counter() - t0) / numbers[i])
    return best


@dataclass
class Row:
    loss: str
    n: int
    dtype: str
    threads: int
    fastloss_s: float
    numpy_s: float
    speedup: float
    probe_s: float
    bound: float


def run_case(name: str, n: int, dtype, threads: int, repeat: int) -> Row:
    np_fn, factory, kind = BASELINES[name]
    loss = factory()
    y, p = make_data(kind, n, dtype)
    g = np.empty_like(p)
    h = np.empty_like(p)

    def fl():
        loss.loss_gradient_hessian(y, p, gradient_out=g, hessian_out=h, n_threads=threads)

    def base():
        np_fn(y, p)

    if y.shape == p.shape:
        a, b, c, d = y, p, g, h
    else:
        # row-wise: y_pred read, gradient and hessian written (n K each) and the labels read;
        # the probe moves as many bytes in four arrays of one length
        m = (3 * p.size * p.itemsize + y.nbytes) // (4 * p.itemsize)
        a, b, c, d = (np.ones(m, p.dtype) for _ in range(4))

    def probe():
        _core.stream_probe(a, b, c, d, threads)

    if n <= 10**8:
        t_fl, t_np, t_probe = best_times([fl, base, probe], [repeat, max(2, repeat // 2), repeat])
    else:
        (t_fl, t_probe), t_np = best_times([fl, probe], [repeat, repeat]), float("nan")
    return Row(name, n, np.dtype(dtype).name, threads, t_fl, t_np, t_np / t_fl, t_probe,
               t_probe / t_fl)


def _fmt_time(s: float) -> str:
    if s != s:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def format_table(rows: Sequence[Row]) -> str:
    head = ["loss", "n", "dtype", "threads", "fastloss", "numpy", "speed-up", "memory bound"]
    lines = [head]
    for r in rows:
        lines.append([r.loss, f"{r.n:.0e}".replace("e+0", "e"), r.dtype, str(r.threads),
                      _fmt_time(r.fastloss_s), _fmt_time(r.numpy_s), f"{r.speedup:.1f}x",
                      f"{100 * r.bound:.0f}%"])
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    out = []
    for k, row in enumerate(lines):
        out.append(" | ".join(c.rjust(w) if i else c.ljust(w)
                              for i, (c, w) in enumerate(zip(row, widths))))
        if k == 0:
            out.append("-+-".join("-" * w for w in widths))
    return "\n".join(out)


def plot(rows: Sequence[Row], path: str) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install 'fastloss[bench]'") from None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    keys = sorted({(r.loss, r.dtype, r.threads) for r in rows})
    for loss, dt, th in keys:
        sel = sorted((r for r in rows if (r.loss, r.dtype, r.threads) == (loss, dt, th)),
                     key=lambda r: r.n)
        ns = [r.n for r in sel]
        line, = ax.loglog(ns, [r.n / r.fastloss_s for r in sel], "o-",
                          label=f"fastloss {loss} {dt} {th}t")
        ax.loglog(ns, [r.n / r.numpy_s for r in sel], "x--", color=line.get_color(),
                  label=f"numpy {loss} {dt}")
    ax.set_xlabel("n (elements)")
    ax.set_ylabel("elements per second (loss + gradient + hessian)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _floats(text: str) -> List[int]:
    return [int(float(x)) for x in text.split(",") if x]


def add_parser(subparsers):
    p = subparsers.add_parser(
        "bench", help="benchmark fastloss against NumPy",
        description="Time loss + gradient + hessian (mean reduction) with fastloss and with the "
                    "NumPy baseline side by side, and as a fraction of a memory-bandwidth probe "
                    "with the same traffic. The default selection runs in well under a minute.")
    p.add_argument("--losses", default=",".join(DEFAULT_LOSSES),
                   help=f"comma-separated, from: {', '.join(BASELINES)}; or all (default: "
                        "%(default)s; softmax_ce's n is rows of 10 classes)")
    p.add_argument("--sizes", default="1e3,1e5,1e7", help="element counts (default: %(default)s)")
    p.add_argument("--dtypes", default="float64,float32", help="(default: %(default)s)")
    p.add_argument("--threads", default=None,
                   help="comma-separated thread counts (default: fastloss.get_num_threads())")
    p.add_argument("--repeat", type=int, default=5, help="repeats, best kept (default: 5)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="also plot throughput against n")
    return p


def run(args) -> int:
    losses = [s for s in args.losses.split(",") if s]
    if losses == ["all"]:
        losses = list(BASELINES)
    unknown = [s for s in losses if s not in BASELINES]
    if unknown:
        raise SystemExit(f"fastloss bench: unknown loss {unknown}; choose from {list(BASELINES)}")
    threads = _floats(args.threads) if args.threads else [fastloss.get_num_threads()]
    rows = []
    for name in losses:
        for n in _floats(args.sizes):
            for dt in args.dtypes.split(","):
                for t in threads:
                    rows.append(run_case(name, n, np.dtype(dt), t, args.repeat))
                    if not args.json and sys.stderr.isatty():
                        print(format_table(rows[-1:]).splitlines()[-1], file=sys.stderr)
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=1))
    else:
        print(format_table(rows))
    if args.plot:
        plot(rows, args.plot)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .cli import main as cli_main
    return cli_main(["bench", *(argv or [])])
