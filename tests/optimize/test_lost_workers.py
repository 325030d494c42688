"""A trial whose worker is lost (the executor's future raises) is retried with retry_failed."""

from __future__ import annotations

import concurrent.futures as cf
import threading
from typing import Any

import pytest

from kaizenml.optimize import Float, TrialState, optimize_hyperparameters


class LosesFirstAttempt(cf.ThreadPoolExecutor):
    """Runs tasks on threads, but the first attempt of every trial dies like a lost worker."""

    def __init__(self) -> None:
        super().__init__(max_workers=2)
        self.attempts: dict[int, int] = {}
        self._lock = threading.Lock()

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        task = args[0]
        with self._lock:
            n = self.attempts[task["number"]] = self.attempts.get(task["number"], 0) + 1
        if n == 1:
            fut: cf.Future[Any] = cf.Future()
            fut.set_exception(RuntimeError("worker lost"))
            return fut
        return super().submit(fn, *args, **kwargs)


@pytest.mark.parametrize("storage", [None, "sqlite"])
def test_lost_worker_requeues_with_same_params(storage: str | None, tmp_path) -> None:
    url = None if storage is None else f"sqlite:///{tmp_path / 'lost.db'}"
    ex = LosesFirstAttempt()
    try:
        res = optimize_hyperparameters(
            {"x": Float(0.0, 1.0)},
            lambda p: (p["x"] - 0.25) ** 2,
            strategy="random",
            max_trials=6,
            executor=ex,
            retry_failed=1,
            storage=url,
            study_name="lost" if url else None,
            seed=0,
            pruner=None,
        )
    finally:
        ex.shutdown()
    assert res.n_trials == 6
    assert all(t.state == TrialState.COMPLETE for t in res.trials)
    assert [t.number for t in res.trials] == list(range(6))
    # every trial ran twice: the lost attempt and the retry with the same number
    assert sorted(ex.attempts) == list(range(6))
    assert set(ex.attempts.values()) == {2}
    assert all(t.system_attrs.get("retries") == 1 for t in res.trials)
    for t in res.trials:
        assert t.value == pytest.approx((t.params["x"] - 0.25) ** 2)


def test_lost_worker_fails_the_trial_without_retries() -> None:
    ex = LosesFirstAttempt()
    try:
        res = optimize_hyperparameters(
            {"x": Float(0.0, 1.0)},
            lambda p: p["x"],
            strategy="random",
            max_trials=3,
            executor=ex,
            seed=0,
            pruner=None,
        )
    finally:
        ex.shutdown()
    assert [t.state for t in res.trials] == [TrialState.FAILED] * 3
    assert all("worker lost" in (t.error or "") for t in res.trials)
