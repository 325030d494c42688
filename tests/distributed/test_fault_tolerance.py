"""Workers killed with SIGKILL in the middle of a trial: no trial is lost, the study completes.

The objective ``hang_once`` makes the first trial that reaches it write a marker file (its
process id, trial number and parameters) and hang; the test then kills that process.
"""

from __future__ import annotations

import os
import signal

import pytest

HEARTBEAT = {"heartbeat_interval": 0.2, "grace_period": 1.0}


def _config(url: str, tmp_path, **extra) -> dict:
    return {
        "url": url,
        "study": "faults",
        "log": str(tmp_path / "events.jsonl"),
        "marker": str(tmp_path / "hanging.json"),
        "objective": "hang_once",
        "sleep": 0.15,
        **HEARTBEAT,
        **extra,
    }


def _kill_then_finish(cfg, tmp_path, spawn_worker, finish, wait_for_file) -> dict:
    victim = spawn_worker(0, cfg)
    hanging = wait_for_file(tmp_path / "hanging.json", [victim])
    assert hanging["pid"] == victim.pid  # a serial run: the trial runs in the worker itself
    os.kill(victim.pid, signal.SIGKILL)
    assert victim.wait(timeout=30) == -signal.SIGKILL
    # The survivor starts after the kill, finds the dead worker's trial "running" and must
    # reclaim it once its heartbeat is older than the grace period.
    finish(spawn_worker(1, cfg))
    return hanging


def test_killed_process_trial_is_requeued_with_same_params(
    storage_url, tmp_path, spawn_worker, finish, wait_for_file, read_log, study_trials
) -> None:
    cfg = _config(storage_url, tmp_path, max_trials=8, retry_failed=1)
    hanging = _kill_then_finish(cfg, tmp_path, spawn_worker, finish, wait_for_file)

    trials = study_trials(storage_url, "faults")
    assert [t.number for t in trials] == list(range(8))
    assert all(t.state.value == "complete" for t in trials), [t.state for t in trials]
    lost = trials[hanging["number"]]
    assert lost.params == hanging["params"]
    assert lost.system_attrs.get("retries") == 1
    runs = [e for e in read_log(tmp_path / "events.jsonl") if e["event"] == "run"]
    reruns = [e for e in runs if e["number"] == hanging["number"]]
    # Run twice with the same parameters: by the killed worker, then by the survivor.
    assert [e["worker"] for e in reruns] == [0, 1]
    assert reruns[0]["params"] == reruns[1]["params"] == hanging["params"]
    # Every other trial ran exactly once.
    assert sorted(e["number"] for e in runs if e["number"] != hanging["number"]) == [
        n for n in range(8) if n != hanging["number"]
    ]


def test_killed_process_trial_fails_without_retries(
    postgres_url, tmp_path, spawn_worker, finish, wait_for_file, study_trials
) -> None:
    cfg = _config(postgres_url, tmp_path, max_trials=6, retry_failed=0)
    hanging = _kill_then_finish(cfg, tmp_path, spawn_worker, finish, wait_for_file)

    trials = study_trials(postgres_url, "faults")
    assert [t.number for t in trials] == list(range(6))
    lost = trials[hanging["number"]]
    assert lost.state.value == "failed"
    assert "heartbeat" in (lost.error or "")
    assert lost.params == hanging["params"]
    # The study still holds the requested number of finished trials: 5 complete, 1 failed.
    assert sum(t.state.value == "complete" for t in trials) == 5
    assert all(t.state.is_finished for t in trials)


@pytest.mark.slow
def test_killed_dask_worker_trial_completes(
    postgres_url, tmp_path, spawn_worker, finish, wait_for_file, read_log, study_trials
) -> None:
    cfg = _config(postgres_url, tmp_path, max_trials=8, retry_failed=1, dask_workers=2)
    driver = spawn_worker(0, cfg)
    hanging = wait_for_file(tmp_path / "hanging.json", [driver])
    events = read_log(tmp_path / "events.jsonl")
    dask_pids = next(e["worker_pids"] for e in events if e["event"] == "dask")
    # The trial runs in a dask worker process, not in the driver.
    assert hanging["pid"] in dask_pids and hanging["pid"] != driver.pid
    os.kill(hanging["pid"], signal.SIGKILL)
    finish(driver)

    trials = study_trials(postgres_url, "faults")
    assert [t.number for t in trials] == list(range(8))
    assert all(t.state.value == "complete" for t in trials), [(t.state, t.error) for t in trials]
    lost = trials[hanging["number"]]
    assert lost.params == hanging["params"]
    runs = [e for e in read_log(tmp_path / "events.jsonl") if e["event"] == "run"]
    reruns = [e for e in runs if e["number"] == hanging["number"]]
    assert len(reruns) == 2
    assert reruns[0]["pid"] == hanging["pid"] and reruns[1]["pid"] != hanging["pid"]
    assert reruns[1]["params"] == hanging["params"]
    done = [e for e in read_log(tmp_path / "events.jsonl") if e["event"] == "done"]
    assert done and done[0]["complete"] == 8


def test_running_survivor_waits_for_and_reruns_a_dead_workers_trial(
    storage_url, tmp_path, spawn_worker, finish, wait_for_file, read_log, study_trials
) -> None:
    """Both workers run when one dies holding the last of the budget: the survivor does not
    leave with the study short, it reclaims the trial after the grace period and runs it."""
    cfg = _config(storage_url, tmp_path, max_trials=4, retry_failed=1, sleep=0.0)
    workers = [spawn_worker(i, cfg) for i in range(2)]
    hanging = wait_for_file(tmp_path / "hanging.json", workers)
    victim = next(w for w in workers if w.pid == hanging["pid"])
    survivor = next(w for w in workers if w is not victim)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    finish(survivor)

    trials = study_trials(storage_url, "faults")
    assert [t.number for t in trials] == list(range(4))
    assert all(t.state.value == "complete" for t in trials), [t.state for t in trials]
    lost = trials[hanging["number"]]
    assert lost.params == hanging["params"] and lost.system_attrs.get("retries") == 1
    runs = [e for e in read_log(tmp_path / "events.jsonl") if e["event"] == "run"]
    rerun = [e for e in runs if e["number"] == hanging["number"]]
    assert len(rerun) == 2 and rerun[1]["pid"] == survivor.pid


def test_dask_giving_up_on_a_killed_worker_fails_that_trial_only(
    tmp_path, spawn_worker, finish, wait_for_file, read_log, study_trials
) -> None:
    """With dask's re-runs disabled, the killed worker's task ends in KilledWorker: that trial
    alone is failed (with the reason), and the study still ends with max_trials finished."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    cfg = _config(url, tmp_path, max_trials=6, dask_workers=2, dask_allowed_failures=0)
    driver = spawn_worker(0, cfg)
    hanging = wait_for_file(tmp_path / "hanging.json", [driver])
    assert hanging["pid"] != driver.pid
    os.kill(hanging["pid"], signal.SIGKILL)
    finish(driver)

    trials = study_trials(url, "faults")
    assert [t.number for t in trials] == list(range(6))
    lost = trials[hanging["number"]]
    assert lost.state.value == "failed" and lost.params == hanging["params"]
    assert "died" in lost.error
    assert sum(t.state.value == "complete" for t in trials) == 5
    runs = [e for e in read_log(tmp_path / "events.jsonl") if e["event"] == "run"]
    assert sum(e["number"] == hanging["number"] for e in runs) == 1  # not re-run by dask


def test_dask_giving_up_on_a_killed_worker_requeues_with_retry_failed(
    tmp_path, spawn_worker, finish, wait_for_file, read_log, study_trials
) -> None:
    """Same as above with retry_failed=1: the trial dask gave up on goes back in the queue with
    its number and parameters and runs again, so the study ends with every trial complete."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    cfg = _config(
        url, tmp_path, max_trials=6, dask_workers=2, dask_allowed_failures=0, retry_failed=1
    )
    driver = spawn_worker(0, cfg)
    hanging = wait_for_file(tmp_path / "hanging.json", [driver])
    os.kill(hanging["pid"], signal.SIGKILL)
    finish(driver)

    trials = study_trials(url, "faults")
    assert [t.number for t in trials] == list(range(6))
    assert all(t.state.value == "complete" for t in trials), [(t.state, t.error) for t in trials]
    lost = trials[hanging["number"]]
    assert lost.params == hanging["params"] and lost.system_attrs.get("retries") == 1
    runs = [e for e in read_log(tmp_path / "events.jsonl") if e["event"] == "run"]
    assert sum(e["number"] == hanging["number"] for e in runs) == 2
