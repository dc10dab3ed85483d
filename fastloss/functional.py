"""Functional shortcuts: ``fastloss.huber(y_true, y_pred, delta=1.0)`` returns the loss alone.

Each function is made from its loss class, so its parameters, defaults and validation are the
class's own: ``fastloss.huber(yt, yp, delta=2.0, reduction="sum")`` is
``fastloss.Huber(delta=2.0).loss(yt, yp, reduction="sum")``.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Dict

from ._registry import _CANONICAL, loss_class

__all__: list = []


def _make(cls: type) -> Callable[..., Any]:
    if getattr(cls, "takes_arrays", False):
        return _make_arrays(cls)
    names = [p.name for p in cls.params]

    def shortcut(y_true, y_pred, *, sample_weight=None, reduction="mean", n_threads=None,
                 **params):
        return cls(**params).loss(y_true, y_pred, sample_weight=sample_weight,
                                  reduction=reduction, n_threads=n_threads)

    P = inspect.Parameter
    sig = [P("y_true", P.POSITIONAL_OR_KEYWORD), P("y_pred", P.POSITIONAL_OR_KEYWORD)]
    sig += [P(p.name, P.KEYWORD_ONLY, default=p.default, annotation=float) for p in cls.params]
    sig += [P("sample_weight", P.KEYWORD_ONLY, default=None),
            P("reduction", P.KEYWORD_ONLY, default="mean", annotation=str),
            P("n_threads", P.KEYWORD_ONLY, default=None)]
    shortcut.__signature__ = inspect.Signature(sig)  # type: ignore[attr-defined]
    shortcut.__name__ = shortcut.__qualname__ = cls.name
    shortcut.__module__ = "fastloss"
    shortcut.__doc__ = (
        f"The {cls.__name__} loss of ``y_pred`` against ``y_true``: "
        f"``fastloss.{cls.__name__}({', '.join(n + '=...' for n in names)}).loss(...)``.\n\n"
        f"See :class:`fastloss.{cls.__name__}` for the formula and the parameters."
    )
    return shortcut


def _make_arrays(cls: type) -> Callable[..., Any]:
    """The shortcut of a loss whose methods take its arrays positionally (embedding losses):
    ``fastloss.triplet(anchor, positive, negative, margin=1.0)``."""
    names = [p.name for p in cls.params]

    def shortcut(*arrays, sample_weight=None, reduction="mean", n_threads=None, **params):
        return cls(**params).loss(*arrays, sample_weight=sample_weight, reduction=reduction,
                                  n_threads=n_threads)

    P = inspect.Parameter
    sig = [P("arrays", P.VAR_POSITIONAL)]
    sig += [P(p.name, P.KEYWORD_ONLY, default=p.default,
              annotation=bool if p.kind == "bool" else float) for p in cls.params]
    sig += [P("sample_weight", P.KEYWORD_ONLY, default=None),
            P("reduction", P.KEYWORD_ONLY, default="mean", annotation=str),
            P("n_threads", P.KEYWORD_ONLY, default=None)]
    shortcut.__signature__ = inspect.Signature(sig)  # type: ignore[attr-defined]
    shortcut.__name__ = shortcut.__qualname__ = cls.name
    shortcut.__module__ = "fastloss"
    shortcut.__doc__ = (
        f"The {cls.__name__} loss of the arrays {cls.inputs}: "
        f"``fastloss.{cls.__name__}({', '.join(n + '=...' for n in names)}).loss(*arrays, ...)``."
        f"\n\nSee :class:`fastloss.{cls.__name__}` for the formula and the parameters."
    )
    return shortcut


def _build() -> Dict[str, Callable[..., Any]]:
    out = {}
    for name in _CANONICAL:
        out[name] = _make(loss_class(name))
    return out
