"""kaizenml.plot: each function draws the data it is given (checked on the artists)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402

from kaizenml import ValidationError  # noqa: E402
from kaizenml.plot import (  # noqa: E402
    plot_convergence,
    plot_feature_distribution,
    plot_optimization_history,
    plot_param_importances,
    plot_version_metrics,
)


def _ax():
    return Figure().add_subplot()


@dataclass
class _T:
    number: int
    value: float | None
    state: str = "complete"
    intermediate_values: dict = field(default_factory=dict)


def test_history_best_so_far_line() -> None:
    values = [5.0, 3.0, 4.0, 1.0, 2.0]
    ax = plot_optimization_history(values, ax=_ax())
    best = ax.lines[0].get_ydata()
    np.testing.assert_array_equal(best, [5, 3, 3, 1, 1])
    ax = plot_optimization_history(values, direction="maximize", ax=_ax())
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), [5, 5, 5, 5, 5])


def test_history_from_trials_marks_pruned_and_skips_failed() -> None:
    trials = [
        _T(0, 2.0),
        _T(1, None, "pruned", {0: 9.0, 3: 7.0}),
        _T(2, None, "failed"),
        _T(3, 1.5),
    ]
    ax = plot_optimization_history(trials, ax=_ax())
    done = ax.collections[0].get_offsets()
    pruned = ax.collections[1].get_offsets()
    np.testing.assert_array_equal(np.asarray(done), [[0, 2.0], [3, 1.5]])
    np.testing.assert_array_equal(np.asarray(pruned), [[1, 7.0]])
    best = ax.lines[0].get_ydata()
    assert best[0] == 2.0 and best[-1] == 1.5


def test_history_and_convergence_follow_trial_numbers_in_any_list_order() -> None:
    # trials listed in the order parallel workers finished them: 3, 0, 2, 1
    finished = [_T(3, 1.0), _T(0, 4.0), _T(2, 3.0), _T(1, 5.0)]
    for plot in (plot_optimization_history, plot_convergence):
        ax = plot(finished, ax=_ax())
        line = ax.lines[0]
        np.testing.assert_array_equal(line.get_xdata(), [0, 1, 2, 3])
        np.testing.assert_array_equal(line.get_ydata(), [4.0, 4.0, 3.0, 1.0])
    ax = plot_convergence(finished, ax=_ax())
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [4.0, 4.5, 4.0, 3.25])


def test_importances_sorted_bars() -> None:
    ax = plot_param_importances({"lr": 0.6, "hidden": 0.1, "l2": 0.3}, ax=_ax())
    widths = [p.get_width() for p in ax.patches]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert widths == [0.1, 0.3, 0.6] and labels == ["hidden", "l2", "lr"]

    class R:
        param_importances = {"a": 1.0}

    assert [p.get_width() for p in plot_param_importances(R(), ax=_ax()).patches] == [1.0]
    with pytest.raises(TypeError):
        plot_param_importances(object(), ax=_ax())


def test_convergence_from_values_and_generations() -> None:
    ax = plot_convergence([3.0, 1.0, 2.0], ax=_ax())
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), [3, 1, 1])
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [3, 2, 2])
    hist = {"best": [1.0, 2.0, 2.5], "mean": [0.1, 0.5, 1.0], "diversity": [0.3, 0.2, 0.1]}
    ax = plot_convergence(hist, ax=_ax())
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), hist["best"])
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), hist["mean"])
    assert ax.get_xlabel() == "generation"


def test_feature_distribution_histogram_counts() -> None:
    x = np.array([0.0, 0.1, 0.2, 0.9, np.nan, 1.0])
    ax = plot_feature_distribution(
        x, name="f", bins=2, ax=_ax(), statistics={"p5": 0.0, "p50": 0.2, "p95": 1.0}
    )
    heights = [p.get_height() for p in ax.patches]
    # density over 5 finite values split in bins [0, .5) and [.5, 1]: 3 and 2 values
    np.testing.assert_allclose(heights, [3 / 5 / 0.5, 2 / 5 / 0.5])
    assert len([ln for ln in ax.lines if ln.get_linestyle() == ":"]) == 3
    with pytest.raises(ValidationError):
        plot_feature_distribution({"a": x}, name="b", ax=_ax())


def test_version_metrics_sorted_by_time_with_active_star() -> None:
    t0 = datetime(2024, 1, 1)
    history = [
        {"version": "1.1.0", "created_at": t0 + timedelta(days=1), "metrics": {"sharpe": 1.5}},
        {"version": "1.0.0", "created_at": t0, "metrics": {"sharpe": 1.0, "loss": 0.7}},
    ]
    ax = plot_version_metrics(history, active="1.1.0", ax=_ax())
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["1.0.0", "1.1.0"]
    lines = {ln.get_label(): ln.get_ydata() for ln in ax.lines}
    np.testing.assert_array_equal(lines["sharpe"], [1.0, 1.5])
    assert np.isnan(lines["loss"][1])
    star = ax.collections[0].get_offsets()
    np.testing.assert_array_equal(np.asarray(star), [[1, 1.5]])
    with pytest.raises(ValidationError):
        plot_version_metrics([], ax=_ax())


def test_new_figure_when_no_axes_draws_the_study_best_so_far() -> None:
    import matplotlib.pyplot as plt

    from kaizenml.optimize import Float, optimize_hyperparameters

    res = optimize_hyperparameters(
        {"x": Float(0.0, 1.0)}, lambda p: p["x"], strategy="random", max_trials=8, seed=0
    )
    conv = res.convergence
    assert conv["best_so_far"] != conv["value"]  # some trials did not improve: a real check
    before = set(plt.get_fignums())
    ax = plot_optimization_history(res)
    try:
        assert set(plt.get_fignums()) - before == {ax.figure.number}  # one new pyplot figure
        line = ax.lines[0]
        np.testing.assert_array_equal(line.get_xdata(), conv["number"])
        np.testing.assert_array_equal(line.get_ydata(), conv["best_so_far"])
        np.testing.assert_array_equal(
            np.asarray(ax.collections[0].get_offsets()),
            np.column_stack([conv["number"], conv["value"]]),
        )
    finally:
        plt.close(ax.figure)
