"""A distributed-test worker: one ``optimize_hyperparameters`` call on a shared study.

Usage: python _study_worker.py WORKER_INDEX CONFIG_JSON

CONFIG_JSON keys: url, study, max_trials, seed, log (a JSON-lines file this worker appends to),
objective ("quadratic", "pruning", "hang_once"), sleep (seconds per trial), pruner,
pruner_options, retry_failed, heartbeat_interval, grace_period, marker (for "hang_once"),
dask_workers (run trials on a dask LocalCluster of that many worker processes),
dask_allowed_failures (the scheduler's re-runs of a task whose worker died).

Every suggestion the sampler makes is logged with the trials it saw, and every trial the
objective runs is logged with the process that ran it, so the tests can check what each worker
knew and did.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from kaizenml import TrialPruned
from kaizenml.optimize import Float, Sampler, make_sampler, optimize_hyperparameters

SPACE = {"x": Float(-5.0, 5.0), "y": Float(-5.0, 5.0)}


def _append(path: str, record: dict[str, Any]) -> None:
    # One write per line with O_APPEND: lines of concurrent writers never interleave.
    line = (json.dumps(record) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


class RecordingSampler(Sampler):
    """Random search that logs which trials it saw at each suggestion."""

    name = "recording"

    def __init__(self, log: str, worker: int, *, seed: int) -> None:
        super().__init__(seed=seed)
        self._inner = make_sampler("random", seed=seed)
        self._log = log
        self._worker = worker

    def suggest(self, ctx):  # type: ignore[no-untyped-def]
        _append(
            self._log,
            {
                "event": "ask",
                "worker": self._worker,
                "number": ctx.trial_number,
                "t": time.time(),
                "complete": sorted(t.number for t in ctx.complete()),
                "finished": sorted(t.number for t in ctx.trials if t.state.is_finished),
            },
        )
        return self._inner.suggest(ctx)


def quadratic(params: dict[str, float]) -> float:
    return (params["x"] - 1.0) ** 2 + (params["y"] + 2.0) ** 2


def make_objective(cfg: dict[str, Any], worker: int):  # type: ignore[no-untyped-def]
    log, kind, pause = cfg["log"], cfg.get("objective", "quadratic"), float(cfg.get("sleep", 0.0))

    def objective(params, trial):  # type: ignore[no-untyped-def]
        _append(
            log,
            {
                "event": "run",
                "worker": worker,
                "pid": os.getpid(),
                "number": trial.number,
                "params": params,
                "t": time.time(),
            },
        )
        if kind == "hang_once" and not os.path.exists(cfg["marker"]):
            # The first trial to get here announces itself, then hangs until it is killed.
            tmp = cfg["marker"] + f".{os.getpid()}.tmp"
            with open(tmp, "w") as fh:
                json.dump({"pid": os.getpid(), "number": trial.number, "params": params}, fh)
            os.replace(tmp, cfg["marker"])
            time.sleep(600)
        value = quadratic(params)
        if kind == "pruning":
            # Learning curves that converge to the final value; a bad trial is bad from step 0.
            for step in range(4):
                trial.report(step, value + 0.5 * (3 - step))
                if trial.should_prune():
                    _append(
                        log,
                        {"event": "pruned", "worker": worker, "number": trial.number, "step": step},
                    )
                    raise TrialPruned()
                time.sleep(pause / 4)
        elif pause:
            time.sleep(pause)
        return value

    return objective


def main() -> None:
    worker = int(sys.argv[1])
    cfg = json.loads(sys.argv[2])
    sampler = RecordingSampler(cfg["log"], worker, seed=int(cfg.get("seed", 0)) + 1000 * worker)
    kwargs: dict[str, Any] = dict(
        strategy=sampler,
        max_trials=int(cfg["max_trials"]),
        storage=cfg["url"],
        study_name=cfg["study"],
        load_if_exists=True,
        pruner=cfg.get("pruner", "none"),
        pruner_options=cfg.get("pruner_options"),
        retry_failed=int(cfg.get("retry_failed", 0)),
        heartbeat_interval=float(cfg.get("heartbeat_interval", 10.0)),
        grace_period=cfg.get("grace_period"),
    )
    objective = make_objective(cfg, worker)
    if cfg.get("start_together"):
        # every worker announces itself, then waits for all of them: a worker whose process
        # started late must still find part of the budget left
        ready = Path(cfg["log"]).with_name(f"ready.{worker}")
        ready.touch()
        deadline = time.time() + 120
        while len(list(ready.parent.glob("ready.*"))) < int(cfg["start_together"]):
            if time.time() > deadline:
                raise SystemExit("the other workers never started")
            time.sleep(0.01)
    started = time.time()
    if cfg.get("dask_workers"):
        import dask
        from dask.distributed import Client, LocalCluster

        if "dask_allowed_failures" in cfg:  # how often dask re-runs a task whose worker died
            dask.config.set(
                {"distributed.scheduler.allowed-failures": cfg["dask_allowed_failures"]}
            )

        with (
            LocalCluster(
                n_workers=int(cfg["dask_workers"]),
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
            ) as cluster,
            Client(cluster) as client,
        ):
            pids = client.run(os.getpid)
            _append(cfg["log"], {"event": "dask", "worker_pids": sorted(pids.values())})
            result = optimize_hyperparameters(
                SPACE, objective, executor=client.get_executor(), n_jobs=2, **kwargs
            )
    else:
        result = optimize_hyperparameters(SPACE, objective, **kwargs)
    _append(
        cfg["log"],
        {
            "event": "done",
            "worker": worker,
            "seconds": time.time() - started,
            "complete": result.n_complete,
            "pruned": result.n_pruned,
            "failed": result.n_failed,
            "n_trials": result.n_trials,
        },
    )


if __name__ == "__main__":
    main()
