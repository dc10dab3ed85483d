"""Kernel-call time per element for several fastloss source trees side by side (A/B).

The VM's speed drifts by tens of percent, so the trees are timed alternately, each round in a
fresh process per tree (``PYTHONPATH`` set to the tree, built in place), and each case keeps
its best time over every round (each round: the best of 7 repeats of enough calls for 50 ms).
Usage::

    ROUNDS=3 python benchmarks/ab.py TREE_A TREE_B ... -- CASE ...

A case is ``loss:n:dtype:threads:what``: ``loss`` one of ``fastloss bench``'s (``mse``,
``poisson``, ``softmax_ce`` ...; for ``softmax_ce`` n counts rows of 10 values) or ``probe``
(the memory-bandwidth probe, two arrays read, two written); ``what`` is ``lgh`` (loss +
gradient + hessian into preallocated outputs, as ``fastloss bench``), ``wlgh`` (the same with
sample weights), ``loss``, ``lg``, ``gh``, or ``numpy`` (the NumPy baseline). The table gives
ns per element (per row for ``softmax_ce``).
"""

import json
import os
import subprocess
import sys

CHILD = r'''
import json, sys, time
import numpy as np
import fastloss as fl
from fastloss import _bench
out = {}
for spec in json.loads(sys.argv[1]):
    name, n, dt, th, what = spec.split(":")
    n, th, dt = int(float(n)), int(th), np.dtype(dt)
    if name == "probe":
        a, b = (np.random.rand(n).astype(dt) for _ in range(2))
        c, d = np.empty_like(a), np.empty_like(a)
        f = lambda: fl._core.stream_probe(a, b, c, d, th)
    else:
        np_fn, factory, kind = _bench.BASELINES[name]
        loss = factory()
        y, p = _bench.make_data(kind, n, dt)
        g, h = np.empty_like(p), np.empty_like(p)
        w = np.random.rand(p.shape[0]).astype(dt)
        f = {
            "lgh": lambda: loss.loss_gradient_hessian(y, p, gradient_out=g, hessian_out=h,
                                                      n_threads=th),
            "wlgh": lambda: loss.loss_gradient_hessian(y, p, sample_weight=w, gradient_out=g,
                                                       hessian_out=h, n_threads=th),
            "loss": lambda: loss.loss(y, p, n_threads=th),
            "lg": lambda: loss.loss_gradient(y, p, gradient_out=g, n_threads=th),
            "gh": lambda: loss.gradient_hessian(y, p, gradient_out=g, hessian_out=h,
                                                n_threads=th),
            "numpy": lambda: np_fn(y, p),
        }[what]
    t0 = time.perf_counter()
    f()
    reps = max(3, int(0.05 / max(1e-7, time.perf_counter() - t0)))
    best = float("inf")
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(reps):
            f()
        best = min(best, (time.perf_counter() - t0) / reps)
    out[spec] = best
print(json.dumps(out))
'''


def main(argv):
    if "--" not in argv:
        print(__doc__)
        return 2
    sep = argv.index("--")
    trees, cases = argv[:sep], argv[sep + 1:]
    best = {t: {} for t in trees}
    for _ in range(int(os.environ.get("ROUNDS", 3))):
        for t in trees:
            env = dict(os.environ, PYTHONPATH=t)
            res = json.loads(subprocess.check_output(
                [sys.executable, "-c", CHILD, json.dumps(cases)], env=env, cwd="/"))
            for k, v in res.items():
                best[t][k] = min(v, best[t].get(k, float("inf")))
    names = [os.path.basename(t.rstrip("/")) or t for t in trees]
    print(f"{'case':32}" + "".join(f"{nm:>14}" for nm in names))
    for c in cases:
        n = float(c.split(":")[1])
        print(f"{c:32}" + "".join(f"{best[t][c] / n * 1e9:11.3f} ns" for t in trees))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
