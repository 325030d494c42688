"""A small numpy classifier trained by epochs: a one-hidden-layer MLP with Adam.

Called by the demo's Bayesian optimization (its objective trains one network per trial and
reports the validation loss after every epoch, so a pruner can stop poor trials early). The
weights are plain arrays, so a trained network is a versioning artifact as it is (``.npz``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .._exceptions import ValidationError

__all__ = ["MLPClassifier", "log_loss", "make_labeled_dataset"]

_EPS = 1e-12


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    """Mean binary cross-entropy, with probabilities clipped away from 0 and 1."""
    p = np.clip(p, _EPS, 1.0 - _EPS)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def make_labeled_dataset(
    features: Mapping[str, np.ndarray],
    close: np.ndarray,
    *,
    horizon: int = 12,
    target: str = "direction",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of features and a label about the next ``horizon`` bars.

    ``target="direction"``: the close rises over the next ``horizon`` bars.
    ``target="volatility"``: the next ``horizon`` bars move more (sum of absolute log returns)
    than the last ``horizon`` bars did, i.e. volatility expands.

    Features are causal (known at the close of bar t); the label looks ahead by construction,
    which is why users must split train/validation/test in time order with a gap of
    ``horizon`` bars. Rows with a missing feature or no full future are dropped.

    Returns ``(X, y, index)`` where ``index`` holds the kept row positions.
    """
    if target not in ("direction", "volatility"):
        raise ValidationError(f"target={target!r} must be 'direction' or 'volatility'")
    names = list(features)
    X = np.column_stack([np.asarray(features[k], dtype=np.float64) for k in names])
    close = np.asarray(close, dtype=np.float64)
    n = close.shape[0]
    log_c = np.log(close)
    label = np.full(n, np.nan)
    if target == "direction":
        label[: n - horizon] = (log_c[horizon:] - log_c[: n - horizon]) > 0
    else:
        # cum[t] = sum of |r_1..r_t|; past window (t-h, t], future window (t, t+h]
        cum = np.concatenate(([0.0], np.cumsum(np.abs(np.diff(log_c)))))
        t = np.arange(horizon, n - horizon)
        label[t] = (cum[t + horizon] - cum[t]) > (cum[t] - cum[t - horizon])
    keep = np.isfinite(X).all(axis=1) & np.isfinite(label)
    index = np.flatnonzero(keep)
    return X[keep], label[keep].astype(np.float64), index


class MLPClassifier:
    """Binary classifier: inputs standardized with training statistics, a tanh hidden layer,
    a sigmoid output, L2 penalty, trained with Adam on mini-batches.

    Parameters
    ----------
    hidden:
        Hidden units (>= 1).
    learning_rate, l2:
        Adam step size and weight decay.
    batch_size:
        Rows per mini-batch.
    seed:
        Seeds the initial weights and the batch order.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(500, 3)); y = (X[:, 0] + 0.1 * rng.normal(size=500) > 0) * 1.0
    >>> clf = MLPClassifier(hidden=4, learning_rate=0.05, seed=0)
    >>> for _ in range(20):
    ...     _ = clf.train_epoch(X, y)
    >>> bool(clf.accuracy(X, y) > 0.9)
    True
    """

    def __init__(
        self,
        *,
        hidden: int = 16,
        learning_rate: float = 0.01,
        l2: float = 1e-4,
        batch_size: int = 128,
        seed: int = 0,
    ) -> None:
        if hidden < 1 or batch_size < 1 or not learning_rate > 0 or l2 < 0:
            raise ValidationError(
                f"need hidden >= 1, batch_size >= 1, learning_rate > 0 and l2 >= 0; got "
                f"hidden={hidden}, batch_size={batch_size}, learning_rate={learning_rate}, l2={l2}"
            )
        self.hidden = int(hidden)
        self.learning_rate = float(learning_rate)
        self.l2 = float(l2)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self._rng = np.random.default_rng(seed)
        self.weights: dict[str, np.ndarray] | None = None
        self._adam: dict[str, np.ndarray] = {}
        self._step = 0
        self.epochs_trained = 0

    # -- parameters -----------------------------------------------------------------------
    def _init(self, X: np.ndarray) -> None:
        d = X.shape[1]
        mean = X.mean(axis=0)
        scale = X.std(axis=0)
        scale[scale == 0] = 1.0
        h = self.hidden
        self.weights = {
            "mean": mean,
            "scale": scale,
            "W1": self._rng.normal(0.0, 1.0 / math.sqrt(d), size=(d, h)),
            "b1": np.zeros(h),
            "W2": self._rng.normal(0.0, 1.0 / math.sqrt(h), size=(h,)),
            "b2": np.zeros(1),
        }
        for k in ("W1", "b1", "W2", "b2"):
            self._adam["m" + k] = np.zeros_like(self.weights[k])
            self._adam["v" + k] = np.zeros_like(self.weights[k])

    def _forward(self, Xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = self.weights
        assert w is not None
        hid = np.tanh(Xs @ w["W1"] + w["b1"])  # (n, hidden)
        logits = hid @ w["W2"] + w["b2"][0]
        with np.errstate(over="ignore"):
            p = 1.0 / (1.0 + np.exp(-logits))
        return hid, p

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probability of the positive class for each row."""
        if self.weights is None:
            raise ValidationError("the classifier is not trained yet; call train_epoch first")
        Xs = (np.asarray(X, dtype=np.float64) - self.weights["mean"]) / self.weights["scale"]
        return self._forward(Xs)[1]

    def accuracy(self, X: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean((self.predict_proba(X) > 0.5) == (np.asarray(y) > 0.5)))

    # -- training -------------------------------------------------------------------------
    def train_epoch(self, X: np.ndarray, y: np.ndarray) -> float:
        """One pass over the training rows in a random order; returns the training loss."""
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if self.weights is None:
            self._init(X)
        w = self.weights
        assert w is not None
        Xs = (X - w["mean"]) / w["scale"]
        order = self._rng.permutation(X.shape[0])
        b1, b2, eps = 0.9, 0.999, 1e-8
        for lo in range(0, X.shape[0], self.batch_size):
            idx = order[lo : lo + self.batch_size]
            xb, yb = Xs[idx], y[idx]
            hid, p = self._forward(xb)
            g_logit = (p - yb) / idx.shape[0]  # (batch,)
            grads = {
                "W2": hid.T @ g_logit + self.l2 * w["W2"],
                "b2": np.array([g_logit.sum()]),
            }
            g_hid = np.outer(g_logit, w["W2"]) * (1.0 - hid**2)
            grads["W1"] = xb.T @ g_hid + self.l2 * w["W1"]
            grads["b1"] = g_hid.sum(axis=0)
            self._step += 1
            c1 = 1.0 - b1**self._step
            c2 = 1.0 - b2**self._step
            for k, g in grads.items():
                m = self._adam["m" + k]
                v = self._adam["v" + k]
                m *= b1
                m += (1.0 - b1) * g
                v *= b2
                v += (1.0 - b2) * g * g
                w[k] -= self.learning_rate * (m / c1) / (np.sqrt(v / c2) + eps)
        self.epochs_trained += 1
        return log_loss(y, self._forward(Xs)[1])

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        *,
        epochs: int,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
        on_epoch: Callable[[int, float], bool] | None = None,
    ) -> MLPClassifier:
        """Train ``epochs`` epochs; after each one ``on_epoch(epoch, val_loss)`` may return True
        to stop (it is how a pruner is consulted)."""
        for epoch in range(epochs):
            self.train_epoch(X, y)
            if on_epoch is not None and X_val is not None and y_val is not None:
                if on_epoch(epoch, log_loss(y_val, self.predict_proba(X_val))):
                    break
        return self

    # -- artifacts ------------------------------------------------------------------------
    def to_artifact(self) -> dict[str, Any]:
        """Weights and configuration as a versioning artifact (arrays and JSON values)."""
        if self.weights is None:
            raise ValidationError("the classifier is not trained yet")
        out: dict[str, Any] = {k: v.copy() for k, v in self.weights.items()}
        out["config"] = {
            "hidden": self.hidden,
            "learning_rate": self.learning_rate,
            "l2": self.l2,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "epochs_trained": self.epochs_trained,
        }
        return out

    @classmethod
    def from_artifact(cls, artifact: Mapping[str, Any]) -> MLPClassifier:
        """Rebuild a trained classifier from :meth:`to_artifact` output."""
        cfg = dict(artifact["config"])
        epochs = int(cfg.pop("epochs_trained", 0))
        clf = cls(**cfg)
        clf.weights = {
            k: np.asarray(artifact[k], dtype=np.float64)
            for k in ("mean", "scale", "W1", "b1", "W2", "b2")
        }
        clf.epochs_trained = epochs
        return clf
