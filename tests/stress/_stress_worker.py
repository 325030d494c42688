"""Worker process of the stress tests.

Usage:
    python _stress_worker.py study WORKER URL STUDY MAX_TRIALS
        one optimize_hyperparameters call; prints the trial numbers it ran, as JSON
    python _stress_worker.py versions WORKER URL ARTIFACTS MODEL COUNT
        COUNT create_version calls; prints the versions it got, as JSON
    python _stress_worker.py crash-sweep 0 URL ARTIFACTS MODEL
        for K = 1, 2, ...: fork a child that SIGKILLs itself at its K-th durable step (an
        fsync, a rename, or a database commit) while creating a version, until a child gets
        through; prints the crash points and what each left behind, as JSON
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import numpy as np


def run_study(worker: int, url: str, study: str, max_trials: int) -> None:
    from kaizenml.optimize import Float, Int, optimize_hyperparameters

    ran: list[list] = []

    def objective(params):  # type: ignore[no-untyped-def]
        value = (params["x"] - 0.5) ** 2 + params["k"] * 0.01
        ran.append([params["x"], params["k"], value])
        return value

    space = {"x": Float(-3.0, 3.0), "k": Int(0, 9)}
    result = optimize_hyperparameters(
        space,
        objective,
        strategy="random",
        seed=worker,
        max_trials=max_trials,
        storage=url,
        study_name=study,
        load_if_exists=True,
        pruner=None,
    )
    print(json.dumps({"worker": worker, "ran": ran, "n_trials": result.n_trials}))


def _artifact(worker: int, i: int, size: int = 1000) -> dict:
    rng = np.random.default_rng([worker, i])
    return {"weights": rng.standard_normal(size), "worker": worker, "i": i}


CHANGES = ("retrain", "bugfix", "hyperparameter", "data", "retrain")


def run_versions(worker: int, url: str, artifacts: str, model: str, count: int) -> None:
    from kaizenml.versioning import ModelVersionManager

    mgr = ModelVersionManager(url, artifacts)
    got = []
    for i in range(count):
        v = mgr.create_version(
            model,
            _artifact(worker, i),
            change_type=CHANGES[(worker + i) % len(CHANGES)],
            metrics={"sharpe": worker + i / 100},
            created_by=f"worker-{worker}",
        )
        got.append(v.version)
    print(json.dumps({"worker": worker, "versions": got}))


def _crash_at(k: int, engine) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL this process just before or just after its k-th fsync, rename or commit."""
    state = {"n": 0}

    def step(name: str) -> None:
        state["n"] += 1
        if state["n"] == k:
            os.kill(os.getpid(), signal.SIGKILL)

    def wrap(fn, name):  # type: ignore[no-untyped-def]
        def hooked(*args, **kwargs):  # type: ignore[no-untyped-def]
            step(name)
            out = fn(*args, **kwargs)
            step(name + ":after")
            return out

        return hooked

    os.fsync = wrap(os.fsync, "fsync")
    os.replace = wrap(os.replace, "replace")
    os.rename = wrap(os.rename, "rename")
    # the database commit itself: crash just before it, and just after it returned
    engine.dialect.do_commit = wrap(engine.dialect.do_commit, "commit")


def crash_sweep(url: str, artifacts: str, model: str) -> None:
    from kaizenml.versioning import ModelVersionManager

    mgr = ModelVersionManager(url, artifacts)
    mgr.create_version(model, _artifact(0, 0), change_type="retrain")
    outcomes = []
    for k in range(1, 200):
        before = [v.version for v in mgr.get_version_history(model)]
        pid = os.fork()
        if pid == 0:  # the child: a fresh engine (one per process), then crash at step k
            try:
                child = ModelVersionManager(url, artifacts)
                _crash_at(k, child.engine)
                child.create_version(model, _artifact(1, k, 200_000), change_type="retrain")
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        after = [v.version for v in mgr.get_version_history(model)]
        # Every listed version must load with valid checksums, the new one included.
        for version in after:
            mgr.load_artifact(model, version)
        outcomes.append({"k": k, "killed": killed, "before": before, "after": after})
        if not killed:
            break
    print(json.dumps({"outcomes": outcomes, "t": time.time()}))


def main() -> None:
    mode, worker = sys.argv[1], int(sys.argv[2])
    if mode == "study":
        run_study(worker, sys.argv[3], sys.argv[4], int(sys.argv[5]))
    elif mode == "versions":
        run_versions(worker, sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]))
    elif mode == "crash-sweep":
        crash_sweep(sys.argv[3], sys.argv[4], sys.argv[5])
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
