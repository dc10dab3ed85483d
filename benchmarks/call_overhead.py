"""Per-call time of small element-wise calls, for two fastloss source trees side by side.

The VM's speed drifts by tens of percent, so the trees are timed alternately, in fresh
processes (``PYTHONPATH`` set to each tree, built in place), and each case keeps its best time
over every round (timeit: the minimum of repeats). Usage::

    python benchmarks/call_overhead.py /work/main /work/wt/fastpath [--rounds 5] [--n 1000]
"""

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, sys, timeit
import numpy as np
import fastloss
n = int(sys.argv[1])
rng = np.random.default_rng(0)
cases = {}
for dt in (np.float64, np.float32):
    y = rng.standard_normal(n).astype(dt)
    p = rng.standard_normal(n).astype(dt)
    b = (rng.random(n) < 0.5).astype(dt)
    mse, bce = fastloss.MSE(), fastloss.BinaryCrossEntropy(from_logits=True)
    name = np.dtype(dt).name
    cases[f"MSE.loss {name}"] = lambda mse=mse, y=y, p=p: mse.loss(y, p)
    cases[f"MSE.loss_gradient_hessian {name}"] = (
        lambda mse=mse, y=y, p=p: mse.loss_gradient_hessian(y, p))
    cases[f"BCE(logits).loss_gradient_hessian {name}"] = (
        lambda bce=bce, b=b, p=p: bce.loss_gradient_hessian(b, p))
    cases[f"numpy mean((y-p)**2) {name}"] = lambda y=y, p=p: np.mean((y - p) ** 2)
out = {}
for key, f in cases.items():
    f()
    number = 2000
    out[key] = min(timeit.repeat(f, number=number, repeat=7)) / number * 1e6
print(json.dumps(out))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trees", nargs="+", help="fastloss source trees (built in place)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--n", type=int, default=1000)
    args = ap.parse_args()
    best = {t: {} for t in args.trees}
    for _ in range(args.rounds):
        for tree in args.trees:
            env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
            res = subprocess.run([sys.executable, "-c", CHILD, str(args.n)], env=env, cwd="/",
                                 capture_output=True, text=True, check=True)
            for key, t in json.loads(res.stdout).items():
                best[tree][key] = min(t, best[tree].get(key, t))
    keys = list(best[args.trees[0]])
    width = max(map(len, keys))
    print(f"n = {args.n}, best of {args.rounds} alternating rounds, microseconds per call")
    print(f"{'case':{width}s}  " + "  ".join(f"{os.path.basename(t.rstrip('/')):>10s}"
                                            for t in args.trees))
    for key in keys:
        print(f"{key:{width}s}  " + "  ".join(f"{best[t][key]:10.2f}" for t in args.trees))


if __name__ == "__main__":
    main()
