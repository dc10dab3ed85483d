from typing import FrozenSet, Tuple

import numpy as np
import numpy.typing as npt

_F = npt.NDArray[np.floating]
_D = npt.NDArray[np.float64]
_L = npt.NDArray[np.int32] | npt.NDArray[np.int64]

# Each kernel: (y_pred (n, K), y_true (labels (n,) or rows (n, K)), sample_weight, loss_out,
# gradient_out, hessian_out, want_loss, scale, n_threads, partials, *params)
# -> (sum of w*l, domain flags); empty arrays mean "none".

NATIVE32: FrozenSet[str]   # kernels whose float32 calls compute in float32 (K <= 64 classes)

def rows_per_block(n_classes: int) -> int: ...
def label_weight_sum(
    y_true: _L, class_weight: _D, sample_weight: _F, ignore_index: int, has_ignore: bool,
    n_threads: int,
) -> Tuple[float, int]: ...

def ce_logits_label(
    y_pred: _F, y_true: _L, sample_weight: _F, loss_out: _F, gradient_out: _F, hessian_out: _F,
    want_loss: bool, scale: float, n_threads: int, partials: _D,
    class_weight: _D, smoothing: float, ignore_index: int, has_ignore: bool,
) -> Tuple[float, int]: ...

def ce_logits_proba(
    y_pred: _F, y_true: _F, sample_weight: _F, loss_out: _F, gradient_out: _F, hessian_out: _F,
    want_loss: bool, scale: float, n_threads: int, partials: _D,
    class_weight: _D, smoothing: float,
) -> Tuple[float, int]: ...

def ce_proba_label(
    y_pred: _F, y_true: _L, sample_weight: _F, loss_out: _F, gradient_out: _F, hessian_out: _F,
    want_loss: bool, scale: float, n_threads: int, partials: _D,
    class_weight: _D, smoothing: float, eps: float, ignore_index: int, has_ignore: bool,
) -> Tuple[float, int]: ...

def ce_proba_proba(
    y_pred: _F, y_true: _F, sample_weight: _F, loss_out: _F, gradient_out: _F, hessian_out: _F,
    want_loss: bool, scale: float, n_threads: int, partials: _D,
    class_weight: _D, smoothing: float, eps: float,
) -> Tuple[float, int]: ...

def kl_logits_proba(
    y_pred: _F, y_true: _F, sample_weight: _F, loss_out: _F, gradient_out: _F, hessian_out: _F,
    want_loss: bool, scale: float, n_threads: int, partials: _D,
) -> Tuple[float, int]: ...

def kl_logits_logproba(
    y_pred: _F, y_true: _F, sample_weight: _F, loss_out: _F, gradient_out: _F, hessian_out: _F,
    want_loss: bool, scale: float, n_threads: int, partials: _D,
) -> Tuple[float, int]: ...

def kl_proba_proba(
    y_pred: _F, y_true: _F, sample_weight: _F, loss_out: _F, gradient_out: _F, hessian_out: _F,
    want_loss: bool, scale: float, n_threads: int, partials: _D,
    eps: float,
) -> Tuple[float, int]: ...

def kl_proba_logproba(
    y_pred: _F, y_true: _F, sample_weight: _F, loss_out: _F, gradient_out: _F, hessian_out: _F,
    want_loss: bool, scale: float, n_threads: int, partials: _D,
    eps: float,
) -> Tuple[float, int]: ...

def kl_logproba_proba(
    y_pred: _F, y_true: _F, sample_weight: _F, loss_out: _F, gradient_out: _F, hessian_out: _F,
    want_loss: bool, scale: float, n_threads: int, partials: _D,
) -> Tuple[float, int]: ...

def kl_logproba_logproba(
    y_pred: _F, y_true: _F, sample_weight: _F, loss_out: _F, gradient_out: _F, hessian_out: _F,
    want_loss: bool, scale: float, n_threads: int, partials: _D,
) -> Tuple[float, int]: ...

def hinge_crammer_singer(
    y_pred: _F, y_true: _L, sample_weight: _F, loss_out: _F, gradient_out: _F, hessian_out: _F,
    want_loss: bool, scale: float, n_threads: int, partials: _D,
    margin: float, ignore_index: int, has_ignore: bool,
) -> Tuple[float, int]: ...

def hinge_weston_watkins(
    y_pred: _F, y_true: _L, sample_weight: _F, loss_out: _F, gradient_out: _F, hessian_out: _F,
    want_loss: bool, scale: float, n_threads: int, partials: _D,
    margin: float, ignore_index: int, has_ignore: bool,
) -> Tuple[float, int]: ...
