from typing import FrozenSet, Tuple

import numpy as np
import numpy.typing as npt

_F = npt.NDArray[np.floating]
_D = npt.NDArray[np.float64]

NATIVE32: FrozenSet[str]   # kernels whose float32 calls compute in float32 arithmetic

# Each kernel: (y_true, y_pred, sample_weight, loss_out, gradient_out, hessian_out, want_loss,
# scale, n_threads, partials, *params) -> (sum of w*l, domain flags); empty arrays mean "none".

def bce_logits(
    y_true: _F, y_pred: _F, sample_weight: _F, loss_out: _F, gradient_out: _F, hessian_out: _F,
    want_loss: bool, scale: float, n_threads: int, partials: _D,
    pos_weight: float, smoothing: float,
) -> Tuple[float, int]: ...

def bce_proba(
    y_true: _F, y_pred: _F, sample_weight: _F, loss_out: _F, gradient_out: _F, hessian_out: _F,
    want_loss: bool, scale: float, n_threads: int, partials: _D,
    pos_weight: float, smoothing: float, eps: float,
) -> Tuple[float, int]: ...

def focal_logits(
    y_true: _F, y_pred: _F, sample_weight: _F, loss_out: _F, gradient_out: _F, hessian_out: _F,
    want_loss: bool, scale: float, n_threads: int, partials: _D,
    alpha: float, gamma: float,
) -> Tuple[float, int]: ...

def focal_proba(
    y_true: _F, y_pred: _F, sample_weight: _F, loss_out: _F, gradient_out: _F, hessian_out: _F,
    want_loss: bool, scale: float, n_threads: int, partials: _D,
    alpha: float, gamma: float, eps: float,
) -> Tuple[float, int]: ...

def focal2_logits(   # gamma = 2
    y_true: _F, y_pred: _F, sample_weight: _F, loss_out: _F, gradient_out: _F, hessian_out: _F,
    want_loss: bool, scale: float, n_threads: int, partials: _D,
    alpha: float,
) -> Tuple[float, int]: ...

def focal2_proba(    # gamma = 2
    y_true: _F, y_pred: _F, sample_weight: _F, loss_out: _F, gradient_out: _F, hessian_out: _F,
    want_loss: bool, scale: float, n_threads: int, partials: _D,
    alpha: float, eps: float,
) -> Tuple[float, int]: ...

def hinge(
    y_true: _F, y_pred: _F, sample_weight: _F, loss_out: _F, gradient_out: _F, hessian_out: _F,
    want_loss: bool, scale: float, n_threads: int, partials: _D,
) -> Tuple[float, int]: ...

def squared_hinge(
    y_true: _F, y_pred: _F, sample_weight: _F, loss_out: _F, gradient_out: _F, hessian_out: _F,
    want_loss: bool, scale: float, n_threads: int, partials: _D,
) -> Tuple[float, int]: ...
