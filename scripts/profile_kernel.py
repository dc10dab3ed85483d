"""Where a kernel's time goes, by the math helper and the source line (Linux ``perf``).

Runs one ``fastloss bench`` case (loss + gradient + hessian into preallocated outputs) in a
child process under ``perf record``, then attributes the samples to source lines (through the
debug info: build the tree with ``FASTLOSS_CFLAGS=-g``) and groups them twice:

- by function: the innermost inlined function of each sample (``fl_exp`` and the other
  ``_vmath.h`` helpers, the ``_math.pxd`` helpers such as ``expm1mx_poly``, a loss's
  ``*_elem``, the loop around it);
- by line: the ``.pyx`` line (from the comments Cython writes into the C file) or the
  ``_vmath.h`` line, with its text.

Usage::

    FASTLOSS_CFLAGS=-g python setup.py build_ext --inplace      # in TREE
    python scripts/profile_kernel.py TREE poisson:1e5:float32:1 [--top 25] [--seconds 3]

The case is ``loss:n:dtype:threads`` as in ``benchmarks/ab.py``. ``FASTLOSS_SIMD`` is passed
on (``avx2`` profiles the AVX2 twins on an AVX-512 machine). A profile is of one machine:
say which when quoting it.
"""

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile

CHILD = r'''
import sys, time
import numpy as np
import fastloss as fl
from fastloss import _bench
name, n, dt, th = sys.argv[1].split(":")
n, th, dt = int(float(n)), int(th), np.dtype(dt)
np_fn, factory, kind = _bench.BASELINES[name]
loss = factory()
y, p = _bench.make_data(kind, n, dt)
g, h = np.empty_like(p), np.empty_like(p)
t0 = time.perf_counter()
calls = 0
while time.perf_counter() - t0 < float(sys.argv[2]):
    loss.loss_gradient_hessian(y, p, gradient_out=g, hessian_out=h, n_threads=th)
    calls += 1
print(f"{(time.perf_counter() - t0) / calls / p.shape[0] * 1e9:.3f} ns per element (per row)")
'''

C_DEF = re.compile(r"^(?:static\s+)?(?:CYTHON_INLINE\s+)?[\w\s\*]*?\b((?:__pyx_\w+)|(?:fl_\w+))"
                   r"\s*\([^;]*$")
PYX_REF = re.compile(r'^\s*/\* "([^"]+\.(?:pyx|pxd|tpi))":(\d+)')


def demangle(name):
    """``__pyx_fuse_1__pyx_f_8fastloss_5_math_expm1mx_poly`` -> ``_math.expm1mx_poly``;
    ``__pyx_f_8fastloss_11_regression_log_cosh_elem`` -> ``_regression.log_cosh_elem``."""
    name = re.sub(r"^(__pyx_fuse_\d+)+", "", name)
    if not name.startswith("__pyx_f_"):
        return name
    rest, parts = name[len("__pyx_f_"):], []
    while True:
        m = re.match(r"(\d+)", rest)
        if not m:
            break
        k = int(m.group(1))
        parts.append(rest[len(m.group(1)):len(m.group(1)) + k])
        rest = rest[len(m.group(1)) + k:]
        rest = rest[1:] if rest.startswith("_") else rest     # the separator
    return ".".join(parts[1:] + [rest]) if parts else name


class Source:
    """One C source or header: the enclosing function and the .pyx line of each line."""

    def __init__(self, path):
        with open(path, errors="replace") as fh:
            self.lines = fh.read().split("\n")
        self.func, self.pyx = [], []
        func, pyx = "?", None
        for i, line in enumerate(self.lines):
            m = C_DEF.match(line)
            if m and not line.rstrip().endswith(";"):
                func = demangle(m.group(1))
            m = PYX_REF.match(line)
            if m:
                text = ""
                for follow in self.lines[i + 1:i + 8]:      # the line marked <<<<<<<<
                    if "# <<<<<<<<<<<<<<" in follow:
                        text = follow.lstrip(" *").split("# <<<<")[0].strip()
                        break
                pyx = (f"{os.path.basename(m.group(1))}:{m.group(2)}", text)
            self.func.append(func)
            self.pyx.append(pyx)

    def where(self, lineno, is_c):
        i = min(max(lineno - 1, 0), len(self.lines) - 1)
        if is_c and self.pyx[i] is not None:
            place, text = self.pyx[i]
        else:
            place, text = f"line {lineno}", self.lines[i].strip()
        return self.func[i], place, text


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("tree")
    ap.add_argument("case")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args(argv)
    tree = os.path.abspath(args.tree)
    env = dict(os.environ, PYTHONPATH=tree)
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "perf.data")
        run = subprocess.run(["perf", "record", "-q", "-o", data, sys.executable, "-c", CHILD,
                              args.case, str(args.seconds)], env=env, cwd=tree,
                             capture_output=True, text=True, check=True)
        print(args.case, run.stdout.strip())
        rep = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "-q",
                              "--sort", "dso,srcline", "--percent-limit", "0.05"],
                             capture_output=True, text=True, check=True).stdout
    by_func, by_line = collections.Counter(), collections.Counter()
    sources, total = {}, 0.0
    for line in rep.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+(.*?):(\d+)\s*$", line)
        if not m:
            m2 = re.match(r"\s*([\d.]+)%\s+(\S+)\s+(.*)$", line)
            if m2:
                by_func[f"[{m2.group(2)}]"] += float(m2.group(1))
                total += float(m2.group(1))
            continue
        pct, dso, path, lineno = float(m.group(1)), m.group(2), m.group(3), int(m.group(4))
        total += pct
        base = os.path.basename(path)
        local = next((p for p in (path, os.path.join(tree, "fastloss", base))
                      if os.path.isfile(p)), None)
        if local is None or not dso.startswith("_"):
            by_func[f"[{dso}] {base}"] += pct
            continue
        src = sources.setdefault(local, Source(local))
        func, place, text = src.where(lineno, base.endswith(".c"))
        by_func[func] += pct
        by_line[(func, place, text)] += pct
    print(f"\nby function (innermost inlined; {total:.1f}% of the samples attributed)")
    for func, pct in by_func.most_common(args.top):
        print(f"  {pct:6.2f}%  {func}")
    print("\nby source line")
    for (func, place, text), pct in by_line.most_common(args.top):
        print(f"  {pct:6.2f}%  {place:<22} {func:<28} {text[:70]}")


if __name__ == "__main__":
    main()
