"""Which build of the kernels runs: the portable baseline or the AVX2 + FMA twin.

Every kernel module is compiled twice on x86-64: ``fastloss._<family>`` with the portable
baseline flags (SSE2) and ``fastloss._<family>_avx2`` with ``-mavx2 -mfma``. At import time the
twin is used when the CPU has AVX2 and FMA; ``FASTLOSS_SIMD=baseline`` (or ``avx2``) forces a
path. Both paths give the same results to a few ulp (FMA contraction rounds differently); each is
deterministic for any thread count. ``fastloss info`` says which path runs.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from functools import lru_cache
from types import ModuleType

from . import _core


@lru_cache(maxsize=None)
def simd_path() -> str:
    """``"avx2"`` or ``"baseline"``: the kernel build this process uses."""
    forced = os.environ.get("FASTLOSS_SIMD", "").strip().lower()
    if forced not in ("", "auto", "baseline", "avx2"):
        raise ValueError(f"FASTLOSS_SIMD must be 'baseline', 'avx2' or 'auto', got {forced!r}")
    if forced == "baseline":
        return "baseline"
    has_twin = importlib.util.find_spec("fastloss._core_avx2") is not None
    if forced == "avx2":
        if not has_twin:
            raise ImportError("FASTLOSS_SIMD=avx2 but this build has no AVX2 kernels")
        if not _core.cpu_has_avx2_fma():
            raise ImportError("FASTLOSS_SIMD=avx2 but this CPU lacks AVX2 or FMA")
        return "avx2"
    return "avx2" if has_twin and _core.cpu_has_avx2_fma() else "baseline"


def kernel_module(name: str, path: str = "") -> ModuleType:
    """The compiled module ``fastloss.<name>`` for the SIMD path in use (or the one named)."""
    suffix = "_avx2" if (path or simd_path()) == "avx2" else ""
    return importlib.import_module(f"fastloss.{name}{suffix}")
