"""Type stubs of the compiled element-wise regression kernels (``_regression.pyx.tp``).

Each kernel: (y_true, y_pred, sample_weight, loss_out, gradient_out, hessian_out, want_loss,
scale, n_threads, partials, *params) -> (sum of w*l, domain flags). The arrays are C-contiguous,
of one float dtype and one size, any shape (read flat); empty arrays mean "none".
"""

from typing import FrozenSet, Tuple

import numpy as np
import numpy.typing as npt

_F = npt.NDArray[np.floating]
_D = npt.NDArray[np.float64]

NATIVE32: FrozenSet[str]   # kernels whose float32 calls compute in float32 arithmetic

def squared_error(
    y_true: _F, y_pred: _F, sample_weight: _F, loss_out: _F, gradient_out: _F, hessian_out: _F,
    want_loss: bool, scale: float, n_threads: int, partials: _D,
) -> Tuple[float, int]: ...

def absolute_error(
    y_true: _F, y_pred: _F, sample_weight: _F, loss_out: _F, gradient_out: _F, hessian_out: _F,
    want_loss: bool, scale: float, n_threads: int, partials: _D,
) -> Tuple[float, int]: ...

def huber(
    y_true: _F, y_pred: _F, sample_weight: _F, loss_out: _F, gradient_out: _F, hessian_out: _F,
    want_loss: bool, scale: float, n_threads: int, partials: _D,
    delta: float,
) -> Tuple[float, int]: ...

def pseudo_huber(
    y_true: _F, y_pred: _F, sample_weight: _F, loss_out: _F, gradient_out: _F, hessian_out: _F,
    want_loss: bool, scale: float, n_threads: int, partials: _D,
    delta: float,
) -> Tuple[float, int]: ...

def charbonnier(
    y_true: _F, y_pred: _F, sample_weight: _F, loss_out: _F, gradient_out: _F, hessian_out: _F,
    want_loss: bool, scale: float, n_threads: int, partials: _D,
    eps: float,
) -> Tuple[float, int]: ...

def log_cosh(
    y_true: _F, y_pred: _F, sample_weight: _F, loss_out: _F, gradient_out: _F, hessian_out: _F,
    want_loss: bool, scale: float, n_threads: int, partials: _D,
) -> Tuple[float, int]: ...

def pinball(
    y_true: _F, y_pred: _F, sample_weight: _F, loss_out: _F, gradient_out: _F, hessian_out: _F,
    want_loss: bool, scale: float, n_threads: int, partials: _D,
    quantile: float,
) -> Tuple[float, int]: ...

def poisson_deviance(
    y_true: _F, y_pred: _F, sample_weight: _F, loss_out: _F, gradient_out: _F, hessian_out: _F,
    want_loss: bool, scale: float, n_threads: int, partials: _D,
) -> Tuple[float, int]: ...

def gamma_deviance(
    y_true: _F, y_pred: _F, sample_weight: _F, loss_out: _F, gradient_out: _F, hessian_out: _F,
    want_loss: bool, scale: float, n_threads: int, partials: _D,
) -> Tuple[float, int]: ...

def tweedie_deviance(
    y_true: _F, y_pred: _F, sample_weight: _F, loss_out: _F, gradient_out: _F, hessian_out: _F,
    want_loss: bool, scale: float, n_threads: int, partials: _D,
    power: float,
) -> Tuple[float, int]: ...

def tweedie12_deviance(
    y_true: _F, y_pred: _F, sample_weight: _F, loss_out: _F, gradient_out: _F, hessian_out: _F,
    want_loss: bool, scale: float, n_threads: int, partials: _D,
    power: float,
) -> Tuple[float, int]: ...

def tweedie0_deviance(
    y_true: _F, y_pred: _F, sample_weight: _F, loss_out: _F, gradient_out: _F, hessian_out: _F,
    want_loss: bool, scale: float, n_threads: int, partials: _D,
) -> Tuple[float, int]: ...
