"""Type stub of the compiled acquisition kernel (csrc/kaizenml/_ext/_acqf.pyx)."""

from __future__ import annotations

import numpy as np

ACQ_LOG_EI: int
ACQ_UCB: int
ACQ_LOG_PI: int

def log_h(z: float) -> tuple[float, float]: ...
def posterior_acquisition(
    X_train: np.ndarray,
    L: np.ndarray,
    alpha: np.ndarray,
    inv_ls2: np.ndarray,
    signal_var: float,
    X_cand: np.ndarray,
    kind: int,
    best: float,
    beta: float,
    compute_grad: bool = ...,
    n_threads: int = ...,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]: ...
def matern52_gram(X: np.ndarray, inv_ls2: np.ndarray, signal_var: float) -> np.ndarray: ...
def matern52_lml_gradient(
    X: np.ndarray, inv_ls2: np.ndarray, signal_var: float, Kinv: np.ndarray, alpha: np.ndarray
) -> tuple[np.ndarray, float, float]: ...
