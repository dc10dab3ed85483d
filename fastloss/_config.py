"""What this build of fastloss is: ``fastloss.show_config()`` and ``fastloss info``.

Every fact comes from where it is decided: the compiler, OpenMP and SIMD facts from the compiled
extension's own predefined macros (``_omp_compat.h``), the OpenMP runtime from the library that the
extension's OpenMP calls resolve to at run time (``_omp_runtime.h``), the threads from the same
function the kernels use. Nothing is copied from the build script or guessed from the platform.
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any, Dict, List, Optional

import numpy as np

from . import _core
from ._registry import available
from ._threads import get_num_threads
from ._version import __version__

# _OPENMP (yyyymm) -> the OpenMP specification it announces
_OPENMP_SPECS = {
    199810: "1.0", 200203: "2.0", 200505: "2.5", 200805: "3.0", 201107: "3.1", 201307: "4.0",
    201511: "4.5", 201811: "5.0", 202011: "5.1", 202111: "5.2", 202411: "6.0",
}

# why a build is serial, by FASTLOSS_OPENMP_REQUEST (see setup.py)
_SERIAL_REASONS = {
    0: "disabled at build time (FASTLOSS_OPENMP=0)",
    2: "the compiler could not build OpenMP code",
}

# SIMD extensions worth naming, as NumPy's run-time CPU dispatcher calls them
_CPU_FEATURES = ("SSE", "SSE2", "SSE3", "SSSE3", "SSE41", "SSE42", "AVX", "FMA3", "AVX2",
                 "AVX512F", "NEON", "ASIMD", "SVE")


def _runtime_name(path: str) -> str:
    base = os.path.basename(path).lower()
    if "gomp" in base:
        return "libgomp (GNU)"
    if "iomp" in base:
        return "libiomp (Intel)"
    if "vcomp" in base:
        return "vcomp (Microsoft)"
    if "omp" in base:
        return "libomp (LLVM)"
    return os.path.basename(path)


def _is_bundled(path: str) -> bool:
    """Whether the runtime ships inside the installed package (a repaired wheel)."""
    pkg = os.path.dirname(os.path.realpath(_core.__file__))
    site = os.path.dirname(pkg)
    lib = os.path.realpath(path)
    places = (pkg, os.path.join(site, "fastloss.libs"))
    return any(os.path.commonpath([lib, p]) == p for p in places if os.path.isdir(p))


def openmp_runtime() -> Optional[Dict[str, Any]]:
    """The OpenMP runtime library in use: name, path and whether the wheel bundles it.

    None in a serial build. The path is that of the library the extension's OpenMP calls resolve
    to in this process, so a runtime replaced with ``LD_PRELOAD`` is reported as such.
    """
    if not _core.build_info()["openmp"]:
        return None
    path = _core.openmp_runtime()
    if path is None:
        return {"name": "unknown (linked statically or not found)", "path": None,
                "bundled": False}
    return {"name": _runtime_name(path), "path": path, "bundled": _is_bundled(path)}


def _cpu_simd() -> List[str]:
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as feats
    except ImportError:  # NumPy 1.x
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as feats
        except ImportError:
            return []
    return [f for f in _CPU_FEATURES if feats.get(f)]


def config() -> Dict[str, Any]:
    """The build and runtime facts as a dict (what ``fastloss info --json`` prints).

    Returns
    -------
    dict
        ``version``, ``python``, ``platform``, ``numpy`` (the NumPy running now), ``compiler``,
        ``arch``, ``openmp`` (bool), ``openmp_version`` (the ``_OPENMP`` date, 0 if serial),
        ``openmp_spec``, ``openmp_runtime`` (dict or None), ``openmp_note`` (why a build is
        serial), ``default_threads``, ``simd_baseline`` (the widest SIMD set the portable kernels
        may use), ``simd_targets`` (every set they may use), ``simd_twin`` and
        ``simd_twin_avx512`` (whether the AVX2 + FMA and the AVX-512 twins were built),
        ``simd_path`` (the kernels this process runs) and ``simd_path_targets`` (their
        instruction sets), ``cpu_avx2_fma``, ``cpu_avx512`` and ``cpu_simd`` (what this CPU
        has), ``block_size``, ``losses``.

    Examples
    --------
    >>> import fastloss._config
    >>> c = fastloss._config.config()
    >>> isinstance(c["openmp"], bool) and c["default_threads"] >= 1
    True
    """
    from ._dispatch import has_twin, kernel_module, simd_path

    path = simd_path()
    info = dict(_core.build_info())
    request = info.pop("openmp_request")
    omp = info["openmp"]
    # the twin is imported only when it runs: its code may not execute on this CPU
    running = kernel_module("_core").build_info()
    info["simd_twin"] = has_twin("avx2")
    info["simd_twin_avx512"] = has_twin("avx512")
    info["simd_path"] = f"{path} ({running['simd_baseline']})"
    info["simd_path_targets"] = running["simd_targets"]
    info["cpu_avx2_fma"] = _core.cpu_has_avx2_fma()
    info["cpu_avx512"] = _core.cpu_has_avx512()
    return {
        "version": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": np.__version__,
        **info,
        "openmp_spec": _OPENMP_SPECS.get(info["openmp_version"]) if omp else None,
        "openmp_runtime": openmp_runtime(),
        "openmp_note": None if omp else _SERIAL_REASONS.get(request, "built without OpenMP"),
        "default_threads": get_num_threads(),
        "cpu_simd": _cpu_simd(),
        "losses": available(),
    }


def _lines(c: Dict[str, Any]) -> List[str]:
    if c["openmp"]:
        spec = c["openmp_spec"] or str(c["openmp_version"])
        omp = f"on (OpenMP {spec})"
    else:
        omp = f"off: {c['openmp_note']}"
    rt = c["openmp_runtime"]
    if rt is None:
        runtime = "none"
    else:
        runtime = rt["name"] + (f" {rt['path']}" if rt["path"] else "")
        runtime += " (bundled with fastloss)" if rt["bundled"] else ""
    rows = [
        ("python", c["python"]),
        ("platform", c["platform"]),
        ("numpy", c["numpy"]),
        ("compiler", f"{c['compiler']} ({c['arch']})"),
        ("openmp", omp),
        ("openmp_runtime", runtime),
        ("default_threads", c["default_threads"]),
        ("simd_targets", f"{' '.join(c['simd_targets']) or 'none'} (portable kernels); "
                         f"AVX2 + FMA twins {'built' if c['simd_twin'] else 'not built'}, "
                         f"AVX-512 twins {'built' if c['simd_twin_avx512'] else 'not built'}"),
        ("simd_path", f"{c['simd_path']}: {' '.join(c['simd_path_targets']) or 'none'}"),
        ("cpu_simd", " ".join(c["cpu_simd"]) or "unknown"),
        ("block_size", c["block_size"]),
        ("losses", ", ".join(c["losses"])),
    ]
    return [f"fastloss {c['version']}"] + [f"  {k:16s} {v}" for k, v in rows]


def show_config() -> None:
    """Print version, compiler, OpenMP and its runtime, threads, SIMD, NumPy version and losses.

    ``simd_targets`` are the instruction sets the portable kernels may use (fixed when they were
    compiled: a wheel targets the x86-64 or aarch64 baseline). On x86-64 every kernel module also
    has an AVX2 + FMA twin and an AVX-512 one, and the widest the CPU has runs: ``simd_path``
    says which kernels this process runs and what they use. ``cpu_simd`` is what this CPU has.

    Examples
    --------
    >>> import fastloss
    >>> fastloss.show_config()  # doctest: +ELLIPSIS
    fastloss ...
    """
    print("\n".join(_lines(config())))


def add_parser(subparsers):
    p = subparsers.add_parser("info", help="how this build of fastloss was made",
                              description="Version, compiler, OpenMP and its runtime, threads, "
                                          "SIMD, NumPy version, losses.")
    p.add_argument("--json", action="store_true", help="print the facts as JSON")
    return p


def run(args) -> int:
    if args.json:
        import json

        print(json.dumps(config(), indent=2))
    else:
        show_config()
    return 0
