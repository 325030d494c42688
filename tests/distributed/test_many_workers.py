"""Independent processes running ``optimize_hyperparameters`` on one study, on both backends.

Each worker is a separate Python process (``_study_worker.py``) that knows only the storage URL
and the study name, as workers on different machines would.
"""

from __future__ import annotations

import numpy as np

N_WORKERS = 4
MAX_TRIALS = 40


def test_four_processes_share_one_study(
    storage_url, tmp_path, spawn_worker, finish, read_log, study_trials
) -> None:
    log = tmp_path / "events.jsonl"
    cfg = {
        "url": storage_url,
        "study": "shared",
        "max_trials": MAX_TRIALS,
        "log": str(log),
        "objective": "pruning",
        "sleep": 0.02,
        "pruner": "median",
        "pruner_options": {"n_startup_trials": 4, "n_warmup_steps": 0},
        "start_together": N_WORKERS,
    }
    finish(*[spawn_worker(i, cfg) for i in range(N_WORKERS)])
    events = read_log(log)
    trials = study_trials(storage_url, "shared")

    # Numbers are unique and dense; every trial finished; the budget is the study's total.
    assert [t.number for t in trials] == list(range(len(trials)))
    assert all(t.state.is_finished for t in trials)
    # The budget check shares the transaction that allocates a number: no overshoot.
    assert len(trials) == MAX_TRIALS
    done = [e for e in events if e["event"] == "done"]
    assert len(done) == N_WORKERS

    # No trial ran twice, and the stored parameters are those the objective received.
    runs = [e for e in events if e["event"] == "run"]
    assert sorted(e["number"] for e in runs) == [t.number for t in trials]
    by_number = {t.number: t for t in trials}
    for e in runs:
        assert by_number[e["number"]].params == e["params"]
    ran_by = {e["number"]: e["worker"] for e in runs}
    assert set(ran_by.values()) == set(range(N_WORKERS)), "every worker ran trials"

    # Each sampler saw every trial finished (by any worker) before it was asked; the margin
    # covers the gap between a trial's end time and its commit.
    finished_at = {t.number: t.datetime_complete.timestamp() for t in trials if t.datetime_complete}
    asks = [e for e in events if e["event"] == "ask"]
    assert asks
    saw_others = set()
    for ask in asks:
        seen = set(ask["finished"])
        expected = {n for n, t in finished_at.items() if t < ask["t"] - 0.25}
        assert expected <= seen, (ask["worker"], ask["number"], sorted(expected - seen))
        if any(ran_by.get(n) != ask["worker"] for n in seen):
            saw_others.add(ask["worker"])
    assert saw_others == {e["worker"] for e in asks}

    # Pruning happened, and every pruned trial was worse than the median of its peers.
    pruned = [t for t in trials if t.state.value == "pruned"]
    assert pruned, "the median pruner never pruned"
    completed = [t for t in trials if t.state.value == "complete"]
    assert completed
    for t in pruned:
        step = max(t.intermediate_values)
        peers = [
            c.intermediate_values[step]
            for c in completed
            if step in c.intermediate_values and c.datetime_complete < t.datetime_complete
        ]
        # Pruning needs peers that had completed before it was decided.
        assert len(peers) >= 1
        assert t.intermediate_values[step] > np.min(peers)


def test_pruning_compares_with_other_workers_trials(
    storage_url, tmp_path, spawn_worker, finish, read_log, study_trials
) -> None:
    """A worker that has completed nothing itself prunes against another worker's trials,
    exactly as the median rule over the whole study says."""
    log = tmp_path / "events.jsonl"
    base = {"url": storage_url, "study": "prune", "log": str(log), "objective": "pruning"}
    # Phase 1: worker 0 completes 8 trials without pruning.
    finish(spawn_worker(0, {**base, "max_trials": 8, "pruner": "none"}))
    # Phase 2: worker 1 (its own sampler stream) continues the study with a median pruner.
    options = {"n_startup_trials": 8, "n_warmup_steps": 0, "n_min_trials": 1}
    finish(
        spawn_worker(1, {**base, "max_trials": 20, "pruner": "median", "pruner_options": options})
    )
    trials = study_trials(storage_url, "prune")
    assert [t.number for t in trials] == list(range(20))
    runs = {e["number"]: e["worker"] for e in read_log(log) if e["event"] == "run"}
    assert [runs[n] for n in range(20)] == [0] * 8 + [1] * 12

    # Oracle: replay the median rule over the trials completed before each phase-2 trial.
    own_completed_before_first_prune = None
    n_pruned = 0
    for t in trials[8:]:
        peers = [c for c in trials[: t.number] if c.state.value == "complete"]
        expected_prune_step = None
        for step in range(4):
            value = t.intermediate_values.get(step)
            if value is None:
                break
            median = float(np.median([c.intermediate_values[step] for c in peers]))
            if value > median:
                expected_prune_step = step
                break
        if expected_prune_step is None:
            assert t.state.value == "complete", t
        else:
            assert t.state.value == "pruned", t
            assert max(t.intermediate_values) == expected_prune_step
            n_pruned += 1
            if own_completed_before_first_prune is None:
                own_completed_before_first_prune = sum(1 for c in peers if runs[c.number] == 1)
    assert n_pruned >= 2
    # The first prune of worker 1 relied on worker 0's trials: it had too few of its own.
    assert own_completed_before_first_prune is not None
    assert own_completed_before_first_prune < options["n_startup_trials"]
