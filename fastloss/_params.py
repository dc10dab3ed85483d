"""Hyper-parameter kinds beyond a real number or a flag (see :class:`fastloss._base.Param`).

Each kind is a :class:`Param` subclass whose ``validate`` returns an immutable, hashable value, so
a loss holding it stays comparable, hashable and picklable, and its ``repr`` evaluates back to an
equal loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Tuple

import numpy as np

from ._base import Param


@dataclass(frozen=True)
class OptionalParam(Param):
    """A real number or ``None`` (``None`` switches the feature off)."""

    def describe(self) -> str:
        return super().describe() + " or None"

    def validate(self, owner: str, value: Any) -> Any:
        if value is None:
            return None
        try:
            return super().validate(owner, value)
        except TypeError:
            raise TypeError(
                f"{owner}: {self.name} must be a real number or None, got {value!r}"
            ) from None


@dataclass(frozen=True)
class IntParam(Param):
    """An integer, or ``None`` when ``optional``."""

    optional: bool = False

    def validate(self, owner: str, value: Any) -> Any:
        if value is None and self.optional:
            return None
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            none = " or None" if self.optional else ""
            raise TypeError(f"{owner}: {self.name} must be an integer{none}, got {value!r}")
        return int(value)


@dataclass(frozen=True)
class ChoiceParam(Param):
    """One string of ``choices``."""

    choices: Tuple[str, ...] = ()

    def validate(self, owner: str, value: Any) -> Any:
        if not isinstance(value, str) or value not in self.choices:
            raise ValueError(
                f"{owner}: {self.name} must be one of {', '.join(map(repr, self.choices))}, "
                f"got {value!r}"
            )
        return value


@dataclass(frozen=True)
class VectorParam(Param):
    """A 1-D sequence of finite reals (stored as a tuple of floats), or ``None``.

    ``low``/``high`` bound every entry; ``check`` (described by ``rule``) tests the whole tuple.
    """

    def validate(self, owner: str, value: Any) -> Any:
        if value is None:
            return None
        try:
            arr = np.asarray(value)
        except Exception:  # ragged or otherwise not array-like
            arr = np.asarray([None])
        if arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in "fiu":
            raise TypeError(
                f"{owner}: {self.name} must be a 1-D sequence of real numbers or None, "
                f"got {value!r}"
            )
        vals = tuple(float(v) for v in arr)
        ok = all(math.isfinite(v) for v in vals)
        if ok and self.low is not None:
            ok = all((v > self.low) if self.low_open else (v >= self.low) for v in vals)
        if ok and self.high is not None:
            ok = all((v < self.high) if self.high_open else (v <= self.high) for v in vals)
        if ok and self.check is not None:
            ok = bool(self.check(vals))
        if not ok:
            parts = []
            if self.low is not None:
                parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
            if self.high is not None:
                parts.append(f"{'<' if self.high_open else '<='} {self.high:g}")
            rule = "finite numbers" + (" " + " and ".join(parts) if parts else "")
            if self.rule:
                rule += ", " + self.rule
            raise ValueError(f"{owner}: {self.name} must hold {rule}, got {value!r}")
        return vals
