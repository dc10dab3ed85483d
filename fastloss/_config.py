"""What this build of fastloss is: ``fastloss.show_config()`` and ``fastloss info``."""

from __future__ import annotations

import platform
import sys
from typing import Any, Dict

import numpy as np

from . import _core
from ._registry import available
from ._threads import get_num_threads
from ._version import __version__


def config() -> Dict[str, Any]:
    """The build and runtime facts as a dict."""
    from ._dispatch import kernel_module, simd_path

    path = simd_path()
    info = dict(_core.build_info())
    info["simd_baseline"] = info.pop("simd_baseline")
    info["simd_path"] = f"{path} ({kernel_module('_core').build_info()['simd_baseline']})"
    info["cpu_avx2_fma"] = _core.cpu_has_avx2_fma()
    return {
        "version": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": np.__version__,
        **info,
        "default_threads": get_num_threads(),
        "losses": available(),
    }


def show_config() -> None:
    """Print version, compiler, OpenMP, threads, SIMD baseline, NumPy version and losses.

    Examples
    --------
    >>> import fastloss
    >>> fastloss.show_config()  # doctest: +ELLIPSIS
    fastloss ...
    """
    c = config()
    print(f"fastloss {c['version']}")
    for key in ("python", "platform", "numpy", "compiler", "openmp", "openmp_version",
                "simd_baseline", "cpu_avx2_fma", "simd_path", "default_threads", "block_size"):
        print(f"  {key:16s} {c[key]}")
    print(f"  {'losses':16s} {', '.join(c['losses'])}")


def add_parser(subparsers):
    p = subparsers.add_parser("info", help="how this build of fastloss was made",
                              description="Version, compiler, OpenMP, threads, SIMD, losses.")
    p.add_argument("--json", action="store_true", help="print the facts as JSON")
    return p


def run(args) -> int:
    if args.json:
        import json

        print(json.dumps(config(), indent=2))
    else:
        show_config()
    return 0
