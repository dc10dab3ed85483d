"""Which build of the kernels runs: the portable baseline, or its AVX2 + FMA or AVX-512 twin.

Every kernel module is compiled three times on x86-64: ``fastloss._<family>`` with the
portable baseline flags (SSE2), ``fastloss._<family>_avx2`` with ``-mavx2 -mfma`` and
``fastloss._<family>_avx512`` with AVX-512 F, DQ, VL and BW as well (512-bit vectors). At
import time the widest twin this CPU runs is used; ``FASTLOSS_SIMD=baseline`` (or ``avx2``,
``avx512``) forces a path. The paths give the same results to a few ulp (FMA contraction
rounds differently); each is deterministic for any thread count. ``fastloss info`` says which
path runs.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from functools import lru_cache
from types import ModuleType

from . import _core

# path -> (module suffix, the CPU check, what it needs)
_PATHS = {
    "avx512": ("_avx512", _core.cpu_has_avx512, "AVX-512 (F, DQ, VL, BW), AVX2 or FMA"),
    "avx2": ("_avx2", _core.cpu_has_avx2_fma, "AVX2 or FMA"),
}


def has_twin(path: str) -> bool:
    """Whether this build has the twin kernels of ``path`` (``"avx2"`` or ``"avx512"``)."""
    return importlib.util.find_spec(f"fastloss._core{_PATHS[path][0]}") is not None


@lru_cache(maxsize=None)
def simd_path() -> str:
    """``"avx512"``, ``"avx2"`` or ``"baseline"``: the kernel build this process uses."""
    forced = os.environ.get("FASTLOSS_SIMD", "").strip().lower()
    if forced not in ("", "auto", "baseline", *_PATHS):
        raise ValueError("FASTLOSS_SIMD must be 'baseline', 'avx2', 'avx512' or 'auto', "
                         f"got {forced!r}")
    if forced == "baseline":
        return "baseline"
    if forced in _PATHS:
        _, cpu_has, needs = _PATHS[forced]
        if not has_twin(forced):
            raise ImportError(f"FASTLOSS_SIMD={forced} but this build has no {forced} kernels")
        if not cpu_has():
            raise ImportError(f"FASTLOSS_SIMD={forced} but this CPU lacks {needs}")
        return forced
    for path, (_, cpu_has, _) in _PATHS.items():   # widest first
        if has_twin(path) and cpu_has():
            return path
    return "baseline"


def kernel_module(name: str, path: str = "") -> ModuleType:
    """The compiled module ``fastloss.<name>`` for the SIMD path in use (or the one named)."""
    path = path or simd_path()
    suffix = _PATHS[path][0] if path in _PATHS else ""
    return importlib.import_module(f"fastloss.{name}{suffix}")
