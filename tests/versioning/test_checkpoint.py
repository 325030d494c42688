"""Checkpointing a training loop: cadence, retention, restore, crash survival, promotion."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from kaizenml import NotFoundError, ValidationError
from kaizenml.versioning import ModelVersionManager
from kaizenml.versioning import _checkpoint as ckmod


def _weights(step: int) -> dict:
    return {"w": np.full(3, float(step)), "step": step}


def _loss(step: int) -> float:
    return (step - 6) ** 2 / 10 + 1.0  # best at step 6


def test_every_n_steps_cadence(manager: ModelVersionManager) -> None:
    ckpt = manager.checkpointer("m", every_n_steps=4, keep_last=100, keep_best=0)
    saved = [s for s in range(15) if ckpt.save(s, _weights(s))]
    assert saved == [0, 4, 8, 12]
    assert [c.step for c in ckpt.list()] == [0, 4, 8, 12]
    assert ckpt.save(13, _weights(13), force=True)
    assert ckpt.latest().step == 13


def test_every_seconds_cadence(
    manager: ModelVersionManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(ckmod.time, "time", lambda: clock[0])
    ckpt = manager.checkpointer("m", every_seconds=10, keep_last=100, keep_best=0)
    saved = []
    for step in range(12):
        if ckpt.save(step, _weights(step)):
            saved.append(step)
        clock[0] += 4.0  # 4 s per step -> a save every 3 steps
    assert saved == [0, 3, 6, 9]


def test_retention_keeps_last_and_best(manager: ModelVersionManager, art_root: Path) -> None:
    ckpt = manager.checkpointer("m", keep_last=3, keep_best=2, metric="val_loss")
    for step in range(15):
        assert ckpt.save(step, _weights(step), {"val_loss": _loss(step), "acc": step / 15})
    # last 3 by step, plus the 2 best by val_loss (steps 6, then 5/7 tie -> later step 7)
    assert [c.step for c in ckpt.list()] == [6, 7, 12, 13, 14]
    assert ckpt.best().step == 6 and ckpt.latest().step == 14
    folders = sorted(p.name for p in (art_root / "m" / "checkpoints").iterdir())
    assert len(folders) == 5 and all(f.startswith("step-") for f in folders)
    assert {int(f.split("-")[1]) for f in folders} == {6, 7, 12, 13, 14}
    restored = ckpt.restore(6)
    np.testing.assert_array_equal(restored["w"], [6.0, 6.0, 6.0])
    assert restored["step"] == 6 and ckpt.restore()["step"] == 14
    with pytest.raises(NotFoundError, match="step 3"):
        ckpt.restore(3)


def test_higher_is_better_metric_and_resave(manager: ModelVersionManager) -> None:
    ckpt = manager.checkpointer("m", keep_last=1, keep_best=1, metric="sharpe")
    for step, sharpe in enumerate([0.5, 1.4, 0.9, 1.1]):
        ckpt.save(step, _weights(step), {"sharpe": sharpe})
    assert [c.step for c in ckpt.list()] == [1, 3]
    ckpt.save(3, {"w": np.zeros(3), "step": -1}, {"sharpe": 2.0})  # replaces step 3
    assert [c.step for c in ckpt.list()] == [3]
    assert ckpt.best().metrics == {"sharpe": 2.0} and ckpt.restore(3)["step"] == -1


def test_checkpointer_arguments(manager: ModelVersionManager) -> None:
    with pytest.raises(ValidationError, match="metric="):
        manager.checkpointer("m", keep_best=1)
    with pytest.raises(ValidationError, match="direction"):
        manager.checkpointer("m", metric="mystery")
    with pytest.raises(ValidationError, match="keep_last"):
        manager.checkpointer("m", keep_last=0, keep_best=0)
    with pytest.raises(ValidationError, match="model_name"):
        manager.checkpointer("../m", keep_best=0)
    ckpt = manager.checkpointer("m", metric="mystery", direction="maximize")
    with pytest.raises(ValidationError, match="mystery"):
        ckpt.save(0, _weights(0), {"other": 1.0})
    assert ckpt.latest() is None and ckpt.best() is None


def test_promote(manager: ModelVersionManager) -> None:
    manager.create_version("m", _weights(-1), change_type="architecture")
    ckpt = manager.checkpointer("m", keep_last=2, keep_best=1, metric="val_loss")
    for step in range(10):
        ckpt.save(step, _weights(step), {"val_loss": _loss(step)})
    v = ckpt.promote(change_type="retrain", description="best epoch")
    assert v.version == "1.1.0" and v.tags == {"checkpoint_step": "6"}
    assert v.metrics == {"val_loss": 1.0}
    assert manager.load_artifact("m", "1.1.0")["step"] == 6
    v2 = ckpt.promote(9, change_type="bugfix")
    assert v2.version == "1.1.1" and manager.load_artifact("m", "1.1.1")["step"] == 9


_TRAINER = """
import sys, numpy as np
from kaizenml.versioning import ModelVersionManager
url, root = sys.argv[1], sys.argv[2]
ckpt = ModelVersionManager(url, root).checkpointer(
    "trainer", keep_last=2, keep_best=1, metric="val_loss")
step = 0
while True:
    loss = 1.0 + ((step * 7919) % 101) / 100.0
    ckpt.save(step, {"w": np.full(50_000, float(step)), "step": step}, {"val_loss": loss})
    print(step, flush=True)
    step += 1
"""


def test_checkpoints_survive_a_killed_training_process(
    child, db_url: str, art_root: Path
) -> None:
    proc = child(_TRAINER, db_url, str(art_root))
    printed = []
    while len(printed) < 6:  # let it save a few, then kill it mid-loop
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        printed.append(int(line))
    time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    mgr = ModelVersionManager(db_url, art_root)
    ckpt = mgr.checkpointer("trainer", keep_last=2, keep_best=1, metric="val_loss")
    found = ckpt.list()
    assert found and found[-1].step >= printed[-1]
    assert len(found) <= 4  # last 2 + best 1, plus at most one saved before pruning
    for c in found:  # every recorded checkpoint is complete and verified
        art = ckpt.restore(c.step)
        assert art["step"] == c.step and float(art["w"][0]) == c.step
    # training resumes after the latest step
    latest = ckpt.latest().step
    ckpt.save(latest + 1, {"w": np.zeros(3), "step": latest + 1}, {"val_loss": 0.5})
    assert ckpt.best().step == latest + 1
    assert len(ckpt.list()) <= 3
    mgr.clean_orphans(older_than=0)
    folders = (art_root / "trainer" / "checkpoints").iterdir()
    kept = sorted(int(p.name.split("-")[1]) for p in folders)
    assert kept == [c.step for c in ckpt.list()]


def test_a_restarted_run_keeps_its_new_checkpoints(manager: ModelVersionManager) -> None:
    """A training run restarted from step 0 after an earlier run reached step 300: its new
    checkpoints are the ones kept and restored, not the old run's higher steps."""
    first = manager.checkpointer("rs", every_n_steps=100, keep_last=2, keep_best=0)
    for step in (100, 200, 300):
        first.save(step, {"w": np.full(2, float(step)), "run": 1})
    second = manager.checkpointer("rs", every_n_steps=100, keep_last=2, keep_best=0)
    assert second.should_save(0)  # below the last step: a restart, due at once
    saved = [s for s in range(0, 260, 10) if second.save(s, {"w": np.full(2, float(s)), "run": 2})]
    assert saved == [0, 100, 200]
    assert [c.step for c in second.list()] == [100, 200]
    assert second.latest().step == 200
    back = second.restore()
    assert back["run"] == 2
    np.testing.assert_array_equal(back["w"], [200.0, 200.0])


@pytest.mark.parametrize("outcome", ["stored", "lost", "unknown"])
def test_a_failed_commit_leaves_checkpoints_consistent(
    manager: ModelVersionManager, monkeypatch: pytest.MonkeyPatch, outcome: str
) -> None:
    """The COMMIT reports an error: when the checkpoint was stored it is kept (and restores),
    when it was not its folder is removed, and when the store cannot tell the caller gets a
    StorageError with the folder left where a stored row would point."""
    from sqlalchemy.exc import OperationalError

    from kaizenml import StorageError

    ck = manager.checkpointer("ckc", every_n_steps=1, keep_best=0)
    ck.save(0, _weights(0), force=True)
    dialect = manager.engine.dialect
    real_commit = dialect.do_commit
    real_read = ckmod.read_connection
    failures = {"commit": 1}

    def failing_commit(dbapi_conn: object) -> None:
        if failures["commit"]:
            failures["commit"] = 0
            if outcome == "stored":
                real_commit(dbapi_conn)
            else:
                dbapi_conn.rollback()  # type: ignore[attr-defined]
            raise OperationalError("COMMIT", {}, Exception("server closed the connection"))
        real_commit(dbapi_conn)

    def unreadable(engine: object) -> object:
        raise OperationalError("SELECT", {}, Exception("server closed the connection"))

    monkeypatch.setattr(dialect, "do_commit", failing_commit)
    if outcome == "unknown":
        monkeypatch.setattr(ckmod, "read_connection", unreadable)
    if outcome == "stored":
        assert ck.save(1, _weights(1), force=True)
    else:
        expected = StorageError if outcome == "unknown" else OperationalError
        with pytest.raises(expected):
            ck.save(1, _weights(1), force=True)
    monkeypatch.setattr(ckmod, "read_connection", real_read)
    monkeypatch.setattr(dialect, "do_commit", real_commit)
    steps = [c.step for c in ck.list()]
    folders = sorted(p.name for p in (manager.artifact_root / "ckc" / "checkpoints").iterdir())
    if outcome == "stored":
        assert steps == [0, 1] or steps == [1, 0]
        np.testing.assert_array_equal(ck.restore(1)["w"], _weights(1)["w"])
        assert len(folders) == 2
    else:
        assert steps == [0]
        assert len(folders) == (2 if outcome == "unknown" else 1)
    np.testing.assert_array_equal(ck.restore(0)["w"], _weights(0)["w"])
