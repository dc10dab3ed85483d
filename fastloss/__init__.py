"""fastloss: fused, parallel loss, gradient and hessian kernels for NumPy arrays.

Every loss is a small immutable class (``fastloss.Huber(delta=1.0)``) with ``loss``,
``gradient``, ``loss_gradient``, ``loss_gradient_hessian``, ``gradient_hessian`` and
``baseline``; ``fastloss.get(name, **params)`` builds one by name and ``fastloss.<name>(...)``
returns the loss value alone. See README.md for the conventions.
"""

from ._version import __version__
from ._threads import get_num_threads, set_num_threads
from ._registry import get, available
from ._base import Loss, ElementwiseLoss
from .regression import (
    MSE, MAE, RMSE, Huber, PseudoHuber, Charbonnier, LogCosh, Quantile, Poisson, Gamma, Tweedie,
)
from .embedding import EmbeddingLoss, Contrastive, Triplet, BatchHardTriplet, BatchAllTriplet
from ._config import show_config
from .scoring import score_files, ScoreResult
from . import functional as _functional

globals().update(_functional._build())

__all__ = [
    "__version__", "get", "available", "get_num_threads", "set_num_threads", "show_config",
    "Loss", "ElementwiseLoss",
    "MSE", "MAE", "RMSE", "Huber", "PseudoHuber", "Charbonnier", "LogCosh", "Quantile",
    "Poisson", "Gamma", "Tweedie",
    "EmbeddingLoss", "Contrastive", "Triplet", "BatchHardTriplet", "BatchAllTriplet",
    *available(),
]
__all__ += ["score_files", "ScoreResult"]
