"""Check that the kernel loops vectorise on the portable targets, not only with AVX2.

``python scripts/check_vectorized.py [--targets sse2,neon,avx512] [--against TREE] [MODULE ...]``

The speed of every kernel rests on GCC vectorising its loops, and GCC's ability to do so differs
per target: AVX2 has masked loads and blends that SSE2 (the x86-64 baseline of the portable
kernels) and NEON (the aarch64 wheels) lack, so a loop can vectorise with AVX2 and silently run
one element at a time elsewhere. This happened: the softmax tiles ran scalar on SSE2 and NEON,
and so did the float64 loops of the checked losses on SSE2.

The script compiles the generated C of each module (``fastloss/<module>.c``, written by a build)
with the build's own flags (``OPT_FLAGS`` and ``INLINE_FLAGS`` of setup.py) three ways: for
x86-64 with AVX2, for the x86-64 baseline, for aarch64 with a cross compiler, and for the
AVX-512 twins (``AVX512_FLAGS``: masked loads and gathers there, but a loop can still be left
scalar, say by a cost model that prices 512-bit gathers differently). It asks GCC
which loops it vectorised (``-fopt-info-vec-optimized``), maps each loop to its line in the
``.pyx``, and reports every loop that vectorises with AVX2 but not on another target, with
the function it is in. Exits 1 when there is one (but for the known exceptions in ``ALLOWED``),
0 otherwise. A target whose compiler is missing is skipped with a message (``--require`` makes
that a failure). Needs GCC (the x86 compiler is ``gcc``, aarch64 ``aarch64-linux-gnu-gcc`` or
``aarch64-linux-gnu-gcc-12``; ``CC_X86`` / ``CC_AARCH64`` override), NumPy and Python headers.
Takes about a minute on two cores.

It also checks the AVX2 build on its own: every element-wise eval loop (``_<loss>_eval_<dtype>_<kind>``)
must vectorise there. A loop that the AVX2 build leaves scalar is scalar on every other target
too, so comparing the targets cannot catch it. This happened once: a select written with nested
conditions left log-cosh's loops scalar, 7x slower.

``--against TREE`` compares builds instead of targets: TREE is another built source tree (say
``git archive BASE | tar -x -C TREE`` and a build there), and the script lists, per function,
where this tree has fewer loops vectorised with AVX2 than TREE: a change that costs the AVX2
kernels a loop (a table read put under a condition once did) shows up there, not in the
comparison of targets.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

ROOT = Path(__file__).resolve().parent.parent
MODULES = ["_binary", "_regression", "_multiclass", "_embedding"]

# (target, function) pairs known not to vectorise there, with the reason.
ALLOWED = {
    # the first-maximum search of rows wider than the tiles: two selects on one comparison
    # (value and index), which SSE2 cannot blend; NEON can. A small part of those rows' time.
    ("sse2", "_ce_logits_label_row"),
}


def _setup_list(name: str) -> List[str]:
    """A list constant of setup.py, read without running it: a list literal, or a sum of
    such lists and of names of earlier ones (``AVX512_FLAGS = AVX2_FLAGS + [...]``)."""
    tree = ast.parse((ROOT / "setup.py").read_text())

    def value(node: ast.expr) -> List[str]:
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return value(node.left) + value(node.right)
        if isinstance(node, ast.Name):
            return _setup_list(node.id)
        return list(ast.literal_eval(node))

    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return value(node.value)
    raise SystemExit(f"setup.py defines no {name}")


def _compiler(env: str, names: List[str]) -> Optional[str]:
    if os.environ.get(env):
        return os.environ[env]
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


def _loop_report(cc: str, flags: List[str], c_file: Path) -> Tuple[Set[int], Set[int]]:
    """C line numbers of the loops GCC reports as vectorised, and of those it reports it could
    not vectorise."""
    import numpy

    cmd = [cc, *flags, "-fPIC", "-fopenmp", "-c", "-o", os.devnull,
           "-I" + sysconfig.get_paths()["include"], "-I" + numpy.get_include(),
           "-I" + str(c_file.parent), str(c_file), "-fopt-info-vec-optimized",
           "-fopt-info-vec-missed"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
    name = re.escape(c_file.name)
    done = re.compile(name + r":(\d+):\d+: optimized: loop vectorized")
    missed = re.compile(name + r":(\d+):\d+: missed: couldn't vectorize loop")
    return ({int(m.group(1)) for m in done.finditer(res.stderr)},
            {int(m.group(1)) for m in missed.finditer(res.stderr)})


def _vectorised_lines(cc: str, flags: List[str], c_file: Path) -> Set[int]:
    """C line numbers of the loops GCC reports as vectorised."""
    return _loop_report(cc, flags, c_file)[0]


# The element-wise kernels' heavy loops (_elementwise.tpi): each must vectorise with AVX2.
EVAL_LOOP = re.compile(r"_\w+_eval_(?:f32w?|f64)_\d+$")


def _scalar_eval_loops(report: Tuple[Set[int], Set[int]], where: List[int],
                       pyx: List[str]) -> List[str]:
    """The element-wise eval functions with no vectorised loop and a loop GCC could not
    vectorise: their kernel runs one element at a time on this target. (A function with no
    report at all was folded into an identical one by GCC, which the report then names.)"""
    done, missed = ({_function_of(pyx, where[n]) for n in lines if where[n]} for lines in report)
    return sorted(f for f in missed - done if EVAL_LOOP.match(f))


def _pyx_lines(c_file: Path, module: str) -> List[int]:
    """For each C line, the .pyx line Cython's comments place it under (0 before any)."""
    marker = re.compile(r'"fastloss/' + re.escape(module) + r'\.pyx":(\d+)')
    out, cur = [0], 0
    for line in c_file.read_text().split("\n"):
        m = marker.search(line)
        if m:
            cur = int(m.group(1))
        out.append(cur)
    return out


def _function_of(pyx: List[str], line: int) -> str:
    for j in range(line - 1, 0, -1):
        m = re.match(r"\s*(?:cdef|cpdef|def)\s[^(]*?(\w+)\(", pyx[j - 1])
        if m:
            return m.group(1)
    return "?"


def _per_function(cc: str, flags: List[str], root: Path, module: str) -> Dict[str, int]:
    """Number of AVX2-vectorised loop lines per function of a built tree's module."""
    c_file = root / "fastloss" / f"{module}.c"
    if not c_file.is_file():
        raise SystemExit(f"{c_file} is missing: build that tree first")
    where = _pyx_lines(c_file, module)
    pyx = (root / "fastloss" / f"{module}.pyx").read_text().split("\n")
    counts: Dict[str, int] = {}
    for n in {where[n] for n in _vectorised_lines(cc, flags, c_file)} - {0}:
        f = _function_of(pyx, n)
        counts[f] = counts.get(f, 0) + 1
    return counts


def _against(cmd: List[str], other: Path, modules: List[str]) -> int:
    lost = 0
    for module in modules:
        mine = _per_function(cmd[0], cmd[1:], ROOT, module)
        theirs = _per_function(cmd[0], cmd[1:], other, module)
        worse = sorted(f for f in theirs if mine.get(f, 0) < theirs[f])
        print(f"{module} avx2 against {other}: {len(worse)} functions with fewer vectorised loops")
        for f in worse:
            print(f"    {f}: {theirs[f]} -> {mine.get(f, 0)}")
        lost += len(worse)
    return 1 if lost else 0


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("modules", nargs="*", default=MODULES)
    ap.add_argument("--targets", default="sse2,neon,avx512")
    ap.add_argument("--require", action="store_true",
                    help="fail when a target's compiler is missing")
    ap.add_argument("--against", type=Path, default=None,
                    help="another built tree: compare the AVX2 builds instead of the targets")
    args = ap.parse_args(argv)

    base = _setup_list("OPT_FLAGS") + _setup_list("INLINE_FLAGS")
    x86 = _compiler("CC_X86", ["gcc"])
    arm = _compiler("CC_AARCH64", ["aarch64-linux-gnu-gcc", "aarch64-linux-gnu-gcc-12"])
    targets: Dict[str, Optional[List[str]]] = {
        "avx2": [x86, *base, *_setup_list("AVX2_FLAGS")] if x86 else None,
        "sse2": [x86, *base] if x86 else None,
        "avx512": [x86, *base, *_setup_list("AVX512_FLAGS")] if x86 else None,
        "neon": [arm, *base] if arm else None,
    }
    wanted = [t.strip() for t in args.targets.split(",") if t.strip()]
    if targets["avx2"] is None:
        print("check_vectorized: no x86-64 gcc: nothing to compare against")
        return 1 if args.require else 0
    if args.against is not None:
        return _against(targets["avx2"], args.against.resolve(), args.modules)
    missing = [t for t in wanted if targets.get(t) is None]
    for t in missing:
        print(f"check_vectorized: no compiler for {t}: skipped")
    if missing and args.require:
        return 1
    wanted = [t for t in wanted if targets.get(t) is not None]

    jobs = {}
    with ThreadPoolExecutor(max(1, os.cpu_count() or 1)) as pool:
        for module in args.modules:
            c_file = ROOT / "fastloss" / f"{module}.c"
            if not c_file.is_file():
                raise SystemExit(f"{c_file} is missing: build first (it is generated)")
            for t in ["avx2", *wanted]:
                cmd = targets[t]
                jobs[module, t] = pool.submit(_loop_report, cmd[0], cmd[1:], c_file)

    failures = 0
    for module in args.modules:
        c_file = ROOT / "fastloss" / f"{module}.c"
        where = _pyx_lines(c_file, module)
        pyx = (ROOT / "fastloss" / f"{module}.pyx").read_text().split("\n")
        got = {t: {where[n] for n in jobs[module, t].result()[0]} - {0}
               for t in ["avx2", *wanted]}
        # a loop scalar with AVX2 itself passes the comparison of targets (it is scalar on
        # every one): the element-wise eval loops are checked on their own
        scalar = _scalar_eval_loops(jobs[module, "avx2"].result(), where, pyx)
        print(f"{module} avx2: {len(scalar)} element-wise eval loops scalar")
        for f in scalar:
            print(f"    {f}")
        failures += len(scalar)
        for t in wanted:
            lost = sorted(got["avx2"] - got[t])
            bad = [(n, _function_of(pyx, n)) for n in lost]
            bad = [(n, f) for n, f in bad if (t, f) not in ALLOWED]
            print(f"{module} {t}: {len(got[t])} vectorised loop lines (AVX2: {len(got['avx2'])}), "
                  f"{len(bad)} AVX2 loops scalar here"
                  + (f" ({len(lost) - len(bad)} allowed)" if len(lost) > len(bad) else ""))
            for n, f in bad:
                print(f"    {module}.pyx:{n} in {f}: {pyx[n - 1].strip()}")
            failures += len(bad)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
