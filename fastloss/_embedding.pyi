import numpy as np
import numpy.typing as npt

_F = npt.NDArray[np.floating]

def rows(
    task: int,
    x0: _F,
    x1: _F,
    x2: _F,
    labels: _F,
    sample_weight: _F,
    loss_out: _F,
    g0: _F,
    g1: _F,
    g2: _F,
    want_loss: bool,
    want_grad: bool,
    scale: float,
    n_threads: int,
    margin: float,
    kind: int = ...,
    p: float = ...,
    eps: float = ...,
    swap: bool = ...,
) -> tuple[float, int]: ...
def batch_triplet(
    mining: int,
    x: _F,
    labels: npt.NDArray[np.int64],
    sample_weight: _F,
    loss_out: _F,
    gradient_out: _F,
    work: npt.NDArray[np.float64],
    want_loss: bool,
    want_grad: bool,
    scale: float,
    n_threads: int,
    margin: float,
    kind: int = ...,
) -> tuple[float, int]: ...
