"""Study storage: both backends, SQL persistence, several processes, heartbeats."""

from __future__ import annotations

import json
import subprocess
import textwrap
import time

import pytest

from kaizenml import NotFoundError, StateError, ValidationError
from kaizenml.optimize import (
    Categorical,
    Float,
    HyperparameterOptimizer,
    Int,
    SQLStorage,
    TrialState,
    optimize_hyperparameters,
)

SPACE = {"x": Float(-1.0, 1.0), "k": Int(1, 8), "c": Categorical(["a", None, True, 2.5])}


def _new(storage, **kw):
    return storage.create_study(
        kw.get("name", "s"),
        direction="minimize",
        metric=None,
        space={},
        sampler={},
        load_if_exists=kw.get("load_if_exists", False),
    )


def test_trial_life_cycle_on_both_backends(storage) -> None:
    rec = _new(storage)
    sid = rec.study_id
    t0 = storage.create_trial(sid, 0, {"x": 0.5, "c": None}, owner="me")
    assert t0.number == 0 and t0.state == TrialState.WAITING
    assert storage.create_trial(sid, 0, {"x": 0.1}, owner="other") is None  # number taken
    assert storage.create_trial(sid, 1, {"x": 0.1}, owner="me", limit=1) is None  # budget full
    storage.start_trial(sid, 0)
    storage.report(sid, 0, 0, 3.0)
    storage.report(sid, 0, 2, 2.0)
    with pytest.raises(StateError, match="step 2"):
        storage.report(sid, 0, 2, 1.0)
    storage.set_user_attr(sid, 0, "note", {"a": [1, 2]})
    done = storage.finish_trial(sid, 0, TrialState.COMPLETE, value=1.5, metrics={"loss": 1.5})
    assert done.state == TrialState.COMPLETE and done.value == 1.5
    with pytest.raises(StateError, match="already complete"):
        storage.finish_trial(sid, 0, TrialState.FAILED, error="late")
    with pytest.raises(StateError):
        storage.report(sid, 0, 5, 1.0)
    with pytest.raises(NotFoundError):
        storage.get_trial(sid, 7)
    t = storage.get_trials(sid)[0]
    assert t.params == {"x": 0.5, "c": None}
    assert t.intermediate_values == {0: 3.0, 2: 2.0}
    assert t.metrics == {"loss": 1.5} and t.user_attrs == {"note": {"a": [1, 2]}}
    assert t.duration is not None and t.duration >= 0.0
    with pytest.raises(ValidationError, match="already exists"):
        _new(storage)
    assert _new(storage, load_if_exists=True).study_id == sid


def test_sql_study_reads_back_from_a_fresh_connection(sqlite_url) -> None:
    opt = HyperparameterOptimizer(
        SPACE,
        strategy="random",
        seed=1,
        storage=sqlite_url,
        study_name="persist",
        pruner=None,
        metric="loss",
    )
    for i in range(6):
        t = opt.ask()
        opt.start_trial(t.number)
        opt.report_intermediate_result(t.number, 1, float(i))
        if i == 4:
            opt.fail_trial(t.number, ZeroDivisionError("boom"))
        else:
            opt.complete_trial(t.number, {"loss": i * 0.5, "acc": 1.0 - i / 10})
    before = [t.to_dict() for t in opt.trials]
    opt.close()
    fresh = SQLStorage(sqlite_url)  # new cache, reads everything from the file
    rec = fresh.get_study("persist")
    after = [t.to_dict() for t in fresh.get_trials(rec.study_id)]
    assert after == before
    assert after[4]["state"] == "failed" and "ZeroDivisionError: boom" in after[4]["error"]
    assert after[2]["metrics"] == {"loss": 1.0, "acc": 0.8} and after[2]["value"] == 1.0
    assert (
        rec.space == HyperparameterOptimizer(SPACE, pruner=None, strategy="random").space.to_dict()
    )


def test_resume_continues_numbering_and_budget(sqlite_url) -> None:
    kw = dict(strategy="random", seed=3, storage=sqlite_url, study_name="budget", pruner=None)
    first = optimize_hyperparameters(SPACE, lambda p: p["x"] ** 2, max_trials=10, **kw)
    assert first.n_trials == 10
    second = optimize_hyperparameters(
        SPACE, lambda p: p["x"] ** 2, max_trials=25, load_if_exists=True, **kw
    )
    assert [t.number for t in second.trials] == list(range(25))
    # the resumed run draws what an uninterrupted run draws (seed + trial number)
    whole = optimize_hyperparameters(
        SPACE, lambda p: p["x"] ** 2, max_trials=25, strategy="random", seed=3, pruner=None
    )
    assert [t.params for t in second.trials] == [t.params for t in whole.trials]
    # budget already used: nothing more runs
    third = optimize_hyperparameters(
        SPACE, lambda p: p["x"] ** 2, max_trials=25, load_if_exists=True, **kw
    )
    assert third.n_trials == 25


def test_resume_with_another_space_or_direction_is_refused(sqlite_url) -> None:
    HyperparameterOptimizer(
        SPACE, storage=sqlite_url, study_name="fixed", strategy="random"
    ).close()
    with pytest.raises(ValidationError, match="search space"):
        HyperparameterOptimizer(
            {"x": Float(0.0, 1.0)},
            storage=sqlite_url,
            study_name="fixed",
            load_if_exists=True,
            strategy="random",
        )
    with pytest.raises(ValidationError, match="direction"):
        HyperparameterOptimizer(
            SPACE,
            storage=sqlite_url,
            study_name="fixed",
            load_if_exists=True,
            direction="maximize",
            strategy="random",
        )
    with pytest.raises(ValidationError, match="study_name"):
        HyperparameterOptimizer(SPACE, storage=sqlite_url, study_name="../x", strategy="random")


_WORKER = textwrap.dedent(
    """
    import json, sys, time
    from kaizenml.optimize import Float, Int, HyperparameterOptimizer
    url, seed = sys.argv[1], int(sys.argv[2])
    opt = HyperparameterOptimizer(
        {"x": Float(0.0, 1.0), "k": Int(0, 9)}, strategy="random", seed=seed, storage=url,
        study_name="shared", load_if_exists=True, pruner=None, max_trials=60,
    )
    mine = []
    while True:
        t = opt._ask(limit=60)
        if t is None:
            break
        opt.start_trial(t.number)
        time.sleep(0.002)
        opt.complete_trial(t.number, t.params["x"] + t.params["k"])
        mine.append(t.number)
    opt.close()
    print(json.dumps(mine))
    """
)


def test_four_processes_share_one_sqlite_study(sqlite_url, python, subprocess_env) -> None:
    procs = [
        subprocess.Popen(
            [python, "-c", _WORKER, sqlite_url, str(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=subprocess_env,
            text=True,
        )
        for i in range(4)
    ]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
        outs.append(json.loads(out.strip().splitlines()[-1]))
    claimed = [n for o in outs for n in o]
    assert sorted(claimed) == list(range(60))  # none lost, none twice, budget exact
    storage = SQLStorage(sqlite_url)
    trials = storage.get_trials(storage.get_study("shared").study_id)
    assert [t.number for t in trials] == list(range(60))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert all(t.value == t.params["x"] + t.params["k"] for t in trials)


def test_live_heartbeat_protects_a_trial_and_a_stopped_one_is_reclaimed(sqlite_url) -> None:
    kw = dict(
        strategy="random",
        storage=sqlite_url,
        study_name="hb",
        pruner=None,
        heartbeat_interval=0.1,
        grace_period=0.6,
    )
    owner = HyperparameterOptimizer(SPACE, **kw)
    t = owner.ask()
    owner.start_trial(t.number)
    time.sleep(1.0)
    other = HyperparameterOptimizer(SPACE, load_if_exists=True, **kw)
    assert other.reclaim_stale_trials() == []
    assert other.get_trial(t.number).state == TrialState.RUNNING
    owner.close()  # the owner stops beating, as if its process died
    time.sleep(1.0)
    reclaimed = other.reclaim_stale_trials()
    assert [r.number for r in reclaimed] == [t.number]
    lost = other.get_trial(t.number)
    assert lost.state == TrialState.FAILED and "no heartbeat" in lost.error
    with pytest.raises(StateError):
        owner.complete_trial(t.number, 1.0)


def test_reclaim_never_takes_a_trial_claimed_since_it_was_found_stale(sqlite_url) -> None:
    """The reclaim is a compare-and-set on the heartbeat it saw: if the trial was re-queued
    and claimed by another worker between its SELECT and its UPDATE (possible on PostgreSQL),
    the claim stands."""
    import sqlalchemy as sa

    from kaizenml.optimize._storage import trials_table

    kw = dict(strategy="random", storage=sqlite_url, study_name="cas", pruner=None,
              heartbeat_interval=0.1, grace_period=0.3)
    owner = HyperparameterOptimizer(SPACE, **kw)
    t = owner.start_trial(owner.ask().number)
    other = HyperparameterOptimizer(SPACE, load_if_exists=True, **kw)  # opens while it is live
    owner.close()
    time.sleep(0.6)
    engine = other.storage.engine
    fresh = time.time() + 60.0
    fired: list[int] = []

    def claimed_meanwhile(conn, cursor, statement, parameters, context, executemany):
        # just before the reclaim's UPDATE, another worker's claim lands (same transaction
        # here, so that SQLite's single writer does not serialize it away)
        upper = statement.lstrip().upper()
        if not fired and upper.startswith("UPDATE") and "HEARTBEAT" in upper:
            fired.append(1)
            cursor.execute(
                f"UPDATE {trials_table.name} SET heartbeat = ?, owner = ? WHERE number = ?",
                (fresh, "worker-z", t.number),
            )

    sa.event.listen(engine, "before_cursor_execute", claimed_meanwhile)
    try:
        assert other.reclaim_stale_trials() == []
    finally:
        sa.event.remove(engine, "before_cursor_execute", claimed_meanwhile)
    assert fired
    kept = other.get_trial(t.number)
    assert kept.state == TrialState.RUNNING
    with engine.connect() as conn:
        owner_now = conn.execute(
            sa.select(trials_table.c.owner).where(trials_table.c.number == t.number)
        ).scalar()
    assert owner_now == "worker-z"


_KILLED = textwrap.dedent(
    """
    import os, sys, time
    from kaizenml.optimize import Float, HyperparameterOptimizer
    opt = HyperparameterOptimizer(
        {"x": Float(0.0, 1.0)}, strategy="random", seed=0, storage=sys.argv[1],
        study_name="killed", pruner=None, heartbeat_interval=0.1, grace_period=0.6,
        max_trials=5,
    )
    t = opt.ask()
    opt.start_trial(t.number)
    print(t.number, t.params["x"], flush=True)
    os._exit(9)  # dies in the middle of its trial, without telling anyone
    """
)


@pytest.mark.parametrize("retry_failed", [0, 1])
def test_killed_process_trial_is_reclaimed(
    sqlite_url, python, subprocess_env, retry_failed
) -> None:
    out = subprocess.run(
        [python, "-c", _KILLED, sqlite_url],
        capture_output=True,
        text=True,
        env=subprocess_env,
        timeout=120,
    )
    assert out.returncode == 9, out.stderr
    number, x = out.stdout.split()
    assert number == "0"
    time.sleep(0.8)
    res = optimize_hyperparameters(
        {"x": Float(0.0, 1.0)},
        lambda p: p["x"],
        strategy="random",
        seed=0,
        storage=sqlite_url,
        study_name="killed",
        load_if_exists=True,
        max_trials=5,
        pruner=None,
        heartbeat_interval=0.1,
        grace_period=0.6,
        retry_failed=retry_failed,
    )
    assert [t.number for t in res.trials] == [0, 1, 2, 3, 4]
    first = res.trials[0]
    if retry_failed:
        # re-queued with the same number and parameters, then run to completion
        assert first.state == TrialState.COMPLETE and first.params["x"] == float(x)
        assert first.system_attrs["retries"] == 1
        assert res.n_complete == 5
    else:
        assert first.state == TrialState.FAILED and "no heartbeat" in first.error
        assert res.n_complete == 4 and res.n_failed == 1


def test_enqueued_trial_is_asked_first(storage) -> None:
    opt = HyperparameterOptimizer(SPACE, strategy="random", storage=storage, pruner=None)
    q = opt.enqueue_trial({"x": 0.25, "k": 3, "c": True})
    t = opt.ask()
    assert t.number == q.number == 0 and t.params == {"x": 0.25, "k": 3, "c": True}
    assert opt.ask().number == 1
    with pytest.raises(ValidationError, match="outside"):
        opt.enqueue_trial({"x": 5.0, "k": 3, "c": True})


def test_reading_one_trial_first_does_not_hide_the_earlier_ones(sqlite_url) -> None:
    # a resumed process whose first read is one trial (claiming an enqueued trial, or reclaiming
    # a lost one) must still see every trial before it
    writer = SQLStorage(sqlite_url)
    sid = _new(writer).study_id
    for n in range(5):
        writer.create_trial(sid, n, {"x": n / 10}, owner="w")
        writer.finish_trial(sid, n, TrialState.COMPLETE, value=float(n))
    writer.enqueue_trial(sid, {"x": 0.9})
    expected = [t.to_dict() for t in SQLStorage(sqlite_url).get_trials(sid)]
    assert [t["number"] for t in expected] == [0, 1, 2, 3, 4, 5]

    fresh = SQLStorage(sqlite_url)
    assert fresh.get_trial(sid, 5).params == {"x": 0.9}
    assert [t.to_dict() for t in fresh.get_trials(sid)] == expected

    claimer = SQLStorage(sqlite_url)
    claimed = claimer.claim_waiting(sid, "me")
    assert claimed is not None and claimed.number == 5
    assert [t.number for t in claimer.get_trials(sid)] == [0, 1, 2, 3, 4, 5]
    claimer.finish_trial(sid, 5, TrialState.COMPLETE, value=9.0)
    values = [t.value for t in claimer.get_trials(sid)]
    assert values == [0.0, 1.0, 2.0, 3.0, 4.0, 9.0]
