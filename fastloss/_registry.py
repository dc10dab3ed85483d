"""The registry of losses by name: ``fastloss.get("huber", delta=2.0)``."""

from __future__ import annotations

from typing import Any, Dict, List, Type

_REGISTRY: Dict[str, type] = {}
_CANONICAL: List[str] = []


def register(cls: Type) -> Type:
    """Class decorator: make ``cls`` available under ``cls.name`` and its ``aliases``."""
    for key in (cls.name, *getattr(cls, "aliases", ())):
        if key in _REGISTRY and _REGISTRY[key] is not cls:
            raise ValueError(f"loss name {key!r} is already registered")
        _REGISTRY[key] = cls
    _CANONICAL.append(cls.name)
    return cls


def get(name: str, **params: Any):
    """Build a loss by its registered name.

    Parameters
    ----------
    name : str
        A name from :func:`available` (or an alias such as ``"pinball"``).
    **params
        The loss's hyper-parameters.

    Examples
    --------
    >>> import fastloss
    >>> fastloss.get("huber", delta=2.0)
    Huber(delta=2.0)
    """
    try:
        cls = _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown loss {name!r}; available: {', '.join(available())}"
        ) from None
    return cls(**params)


def available() -> List[str]:
    """Canonical names of every registered loss, in registration order.

    Examples
    --------
    >>> import fastloss
    >>> "huber" in fastloss.available()
    True
    """
    return list(_CANONICAL)


def loss_class(name: str) -> type:
    return _REGISTRY[name]
