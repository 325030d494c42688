"""The ``kaizenml`` command: inspect and act on the embedded store, and run the demo.

Exit codes: 0 success; 1 an action ran and failed (for example a rollback refused by one of its
validation checks, or an artifact that fails its checksums); 2 a usage error (bad arguments, an
unknown model, study, feature or version, a bad storage URL or a store that cannot be opened).
Errors go to stderr as one line saying what to do.

The store is chosen by ``--storage URL`` (a SQLAlchemy database URL), else by the
``KAIZENML_HOME`` folder (``--home DIR`` sets it for one command), else ``~/.kaizenml``.
``--json`` prints machine-readable output on stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from . import __version__
from ._exceptions import (
    IntegrityError,
    KaizenError,
    NotFoundError,
    RollbackError,
    StorageError,
    ValidationError,
)
from ._jsonable import to_jsonable

__all__ = ["build_parser", "main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class _CommandFailed(Exception):
    """An action ran and did not succeed (exit code 1); the message says why."""

    def __init__(self, message: str, payload: Any = None) -> None:
        super().__init__(message)
        self.payload = payload


# --------------------------------------------------------------------------------------------
# output helpers
# --------------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def format_table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """A plain-text table with aligned columns (used by the command and the demo)."""
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    sep = "  ".join("-" * w for w in widths)
    body = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join([line, sep, *body])


def _emit(args: argparse.Namespace, payload: Any, text: Callable[[], str]) -> None:
    if args.json:
        print(json.dumps(to_jsonable(payload), indent=2, sort_keys=False))
    else:
        print(text())


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


# --------------------------------------------------------------------------------------------
# store access
# --------------------------------------------------------------------------------------------


def _feature_store(args: argparse.Namespace) -> Any:
    from .features import get_feature_store

    return get_feature_store(args.storage)


def _version_manager(args: argparse.Namespace) -> Any:
    from .versioning import ModelVersionManager, get_model_version_manager

    if args.storage or args.artifacts:
        return ModelVersionManager(storage=args.storage, artifacts=args.artifacts)
    return get_model_version_manager()


def _storage_url(args: argparse.Namespace) -> str:
    from .storage import default_storage_url

    return args.storage or default_storage_url()


# --------------------------------------------------------------------------------------------
# studies
# --------------------------------------------------------------------------------------------


def _study_results(args: argparse.Namespace, names: list[str] | None = None) -> list[Any]:
    from .optimize import OptimizationResult, SearchSpace, SQLStorage

    storage = SQLStorage(_storage_url(args))
    out = []
    for name in names if names is not None else sorted(storage.study_names()):
        rec = storage.get_study(name)
        out.append(
            OptimizationResult(
                study_name=rec.name,
                direction=rec.direction,
                metric=rec.metric,
                strategy=str(rec.sampler.get("name", "")),
                space=SearchSpace(rec.space),
                trials=storage.get_trials(rec.study_id),
            )
        )
    return out


def _best_or_none(result: Any) -> Any:
    return result.best_trial if result.completed_trials else None


def _cmd_studies_list(args: argparse.Namespace) -> int:
    results = _study_results(args)
    rows: list[tuple[Any, ...]] = []
    payload = []
    for r in results:
        best = _best_or_none(r)
        rows.append(
            (
                r.study_name,
                r.strategy,
                r.direction,
                r.metric,
                r.n_trials,
                r.n_complete,
                r.n_pruned,
                r.n_failed,
                None if best is None else best.value,
            )
        )
        payload.append(
            {
                "study": r.study_name,
                "strategy": r.strategy,
                "direction": r.direction,
                "metric": r.metric,
                "trials": r.n_trials,
                "complete": r.n_complete,
                "pruned": r.n_pruned,
                "failed": r.n_failed,
                "best_value": None if best is None else best.value,
            }
        )
    _emit(
        args,
        payload,
        lambda: (
            format_table(
                rows,
                [
                    "study",
                    "strategy",
                    "direction",
                    "metric",
                    "trials",
                    "complete",
                    "pruned",
                    "failed",
                    "best value",
                ],
            )
            if rows
            else "no studies in this store (run `kaizenml demo` to make some)"
        ),
    )
    return EXIT_OK


def _cmd_studies_show(args: argparse.Namespace) -> int:
    (result,) = _study_results(args, [args.name])
    trials = list(result.trials)
    best = _best_or_none(result)
    shown = trials[-args.limit :] if args.limit else trials
    payload = {
        "study": result.study_name,
        "strategy": result.strategy,
        "direction": result.direction,
        "metric": result.metric,
        "space": result.space.to_dict(),
        "counts": {
            "trials": result.n_trials,
            "complete": result.n_complete,
            "pruned": result.n_pruned,
            "failed": result.n_failed,
        },
        "best": None
        if best is None
        else {"number": best.number, "value": best.value, "params": best.params},
        "importance": result.importance if best is not None else {},
        "recommendations": result.recommendations() if best is not None else [],
        "trials": shown,
    }

    def text() -> str:
        lines = [
            f"study      {result.study_name}",
            f"strategy   {result.strategy}, {result.direction} {result.metric or 'value'}",
            f"trials     {result.n_trials} ({result.n_complete} complete, {result.n_pruned} "
            f"pruned, {result.n_failed} failed)",
        ]
        if best is not None:
            lines.append(
                f"best       #{best.number} value={_fmt(best.value)} params: {_fmt(best.params)}"
            )
            imp = payload["importance"]
            if imp:
                lines.append(
                    "importance "
                    + ", ".join(
                        f"{k} {v:.2f}" for k, v in sorted(imp.items(), key=lambda kv: -kv[1])
                    )
                )
            for rec in payload["recommendations"]:
                lines.append(f"hint       {rec['message']}")
        rows = [
            (
                t.number,
                t.state.value,
                t.value,
                t.duration,
                t.params,
                (t.error or "").strip().splitlines()[-1] if t.error else "",
            )
            for t in shown
        ]
        table = format_table(rows, ["#", "state", "value", "seconds", "params", "error"])
        return "\n".join(lines) + "\n\n" + (table if rows else "(no trials)")

    _emit(args, payload, text)
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# features
# --------------------------------------------------------------------------------------------


def _cmd_features_list(args: argparse.Namespace) -> int:
    store = _feature_store(args)
    defs = list(store.list_features())
    rows = [
        (
            _get(d, "name"),
            _get(d, "version"),
            _get(d, "type"),
            _get(d, "compute_function"),
            ", ".join(map(str, _get(d, "dependencies") or [])),
            "yes" if _get(d, "deprecated") else "",
            _get(d, "description"),
        )
        for d in defs
    ]
    _emit(
        args,
        defs,
        lambda: (
            format_table(
                rows,
                [
                    "feature",
                    "version",
                    "type",
                    "function",
                    "depends on",
                    "deprecated",
                    "description",
                ],
            )
            if rows
            else "no features registered in this store"
        ),
    )
    return EXIT_OK


def _cmd_features_stats(args: argparse.Namespace) -> int:
    store = _feature_store(args)
    stats = store.get_statistics(args.name)
    data = to_jsonable(stats)

    def text() -> str:
        flat = data if isinstance(data, dict) else {"value": data}
        rows: list[tuple[Any, Any]] = []
        for k, v in flat.items():
            if isinstance(v, dict):
                rows.extend((f"{k}.{kk}", vv) for kk, vv in v.items())
            else:
                rows.append((k, v))
        return f"statistics of {args.name}\n\n" + format_table(rows, ["statistic", "value"])

    _emit(args, stats, text)
    return EXIT_OK


def _cmd_features_lineage(args: argparse.Namespace) -> int:
    store = _feature_store(args)
    lineage = store.get_lineage(args.name)
    data = to_jsonable(lineage)

    def text() -> str:
        lines = [f"lineage of {args.name}"]
        flat = data if isinstance(data, dict) else {"lineage": data}
        for k, v in flat.items():
            if isinstance(v, list) and v and isinstance(v[0], dict):
                lines.append(f"  {k}:")
                for i, step in enumerate(v, 1):
                    lines.append(f"    {i}. {_fmt(step)}")
            else:
                lines.append(f"  {k}: {_fmt(v)}")
        return "\n".join(lines)

    _emit(args, lineage, text)
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------


def _version_str(v: Any) -> str | None:
    if v is None:
        return None
    ver = _get(v, "version", v)
    return str(ver)


def _cmd_models_list(args: argparse.Namespace) -> int:
    manager = _version_manager(args)
    names = list(manager.list_models())
    payload = []
    rows = []
    for name in names:
        name = _get(name, "name", name)
        history = list(manager.get_version_history(name))
        active = _version_str(manager.get_active_version(name))
        latest = _version_str(history[0]) if history else None
        payload.append(
            {"model": name, "versions": len(history), "latest": latest, "active": active}
        )
        rows.append((name, len(history), latest, active))
    _emit(
        args,
        payload,
        lambda: (
            format_table(rows, ["model", "versions", "latest", "active"])
            if rows
            else "no models in this store (run `kaizenml demo` to make some)"
        ),
    )
    return EXIT_OK


def _cmd_models_history(args: argparse.Namespace) -> int:
    manager = _version_manager(args)
    history = list(manager.get_version_history(args.name))
    if not history:
        raise NotFoundError(f"model {args.name!r} has no versions; see `kaizenml models list`")
    active = _version_str(manager.get_active_version(args.name))
    rows = [
        (
            ("* " if _version_str(v) == active else "  ") + str(_version_str(v)),
            _get(v, "change_type"),
            _get(v, "created_at"),
            _get(v, "metrics"),
            _get(v, "description"),
        )
        for v in history[: args.limit or None]
    ]
    deployments = []
    get_deploy = getattr(manager, "get_deployment_history", None)
    if get_deploy is not None:
        deployments = list(get_deploy(args.name))
    _emit(
        args,
        {"model": args.name, "active": active, "versions": history, "deployments": deployments},
        lambda: (
            f"{args.name} (* = active)\n\n"
            + format_table(rows, ["version", "change", "created", "metrics", "description"])
        ),
    )
    return EXIT_OK


def _cmd_models_compare(args: argparse.Namespace) -> int:
    manager = _version_manager(args)
    comparison = manager.compare_versions(args.name, args.v1, args.v2)

    def text() -> str:
        rows = [
            (
                d.name,
                d.value_a,
                d.value_b,
                d.absolute_change,
                d.relative_change,
                d.direction or "?",
                d.verdict,
            )
            for d in comparison.metrics
        ]
        rec = comparison.recommendation
        out = [f"{args.name}: {args.v1} -> {args.v2}", ""]
        if rows:
            out.append(
                format_table(
                    rows,
                    [
                        "metric",
                        args.v1,
                        args.v2,
                        "abs change",
                        "rel change",
                        "better",
                        args.v2 + " is",
                    ],
                )
            )
        out += [
            "",
            f"recommendation: {rec.action} (confidence {rec.confidence:.2f})",
            f"  {rec.reasoning}",
        ]
        return "\n".join(out)

    _emit(args, comparison, text)
    return EXIT_OK


def _checks_text(plan: Any) -> list[str]:
    lines = []
    for c in _get(plan, "checks", None) or _get(plan, "validation_checks", None) or []:
        mark = "PASS" if _get(c, "passed") else "FAIL"
        lines.append(f"  [{mark}] {_get(c, 'name')}: {_get(c, 'message')}")
    return lines


def _cmd_models_rollback(args: argparse.Namespace) -> int:
    if args.storage and not args.artifacts and not args.home:
        # the checks verify the target's artifact, which lives next to the store, not in
        # KAIZENML_HOME: guessing would fail every check and record a failed plan
        raise ValidationError(
            "models rollback with --storage needs --artifacts DIR, the artifact folder of that "
            "store (or --home DIR when the store is KAIZENML_HOME's)"
        )
    manager = _version_manager(args)
    if args.dry_run:
        plan = manager.create_rollback_plan(args.name, args.version, args.reason)
        ok = all(bool(_get(c, "passed")) for c in (_get(plan, "checks") or []))

        def text_plan() -> str:
            impact = plan.impact
            lines = [
                f"rollback plan for {args.name} -> {args.version} (not executed)",
                *_checks_text(plan),
            ]
            lines.append(
                f"  expected impact: risk {impact.risk}, version jump {impact.version_jump}"
            )
            rows = [
                (d.name, d.value_a, d.value_b, d.relative_change, d.verdict)
                for d in impact.metric_changes
            ]
            if rows:
                table = format_table(
                    rows, ["metric", "active", args.version, "rel change", "verdict"]
                )
                lines.extend("    " + line for line in table.splitlines())
            lines.append(
                "all checks pass" if ok else "a check fails: the rollback would be refused"
            )
            return "\n".join(lines)

        _emit(args, plan, text_plan)
        return EXIT_OK if ok else EXIT_FAILED
    try:
        result = manager.execute_rollback(args.name, args.version, reason=args.reason)
    except RollbackError as exc:
        raise _CommandFailed(f"rollback refused: {exc}") from exc
    success = bool(_get(result, "success", True))

    def text() -> str:
        lines = [
            f"rollback of {args.name} to {args.version}: " + ("done" if success else "REFUSED"),
            *_checks_text(_get(result, "plan", result)),
        ]
        why = _get(result, "message") or _get(result, "reason")
        if why:
            lines.append(f"  {why}")
        return "\n".join(lines)

    if not success:
        _emit(args, result, text)
        raise _CommandFailed(
            f"rollback of {args.name} to {args.version} refused by its checks; the active "
            "version is unchanged (see the failed checks above; `--dry-run` shows the plan)"
        )
    _emit(args, result, text)
    return EXIT_OK


def _cmd_models_activate(args: argparse.Namespace) -> int:
    manager = _version_manager(args)
    before = _version_str(manager.get_active_version(args.name))
    manager.get_version(args.name, args.version)  # NotFoundError names the version
    manager.set_active_version(args.name, args.version, reason=args.reason)
    payload = {"model": args.name, "from": before, "to": args.version}
    _emit(
        args, payload, lambda: f"{args.name}: active version {before or '(none)'} -> {args.version}"
    )
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    columns = {
        k: getattr(args, k)
        for k in (
            "timestamp_col",
            "open_col",
            "high_col",
            "low_col",
            "close_col",
            "volume_col",
            "symbol_col",
            "sep",
        )
        if getattr(args, k) is not None
    }
    report = run_demo(
        out=args.out,
        data=args.data,
        columns=columns,
        seed=args.seed,
        quick=args.quick,
        storage=args.storage,
        show_progress=not args.no_progress and not args.json,
        echo=None if args.json else print,
    )
    if args.json:
        print(json.dumps(to_jsonable(report.summary), indent=2))
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# parser
# --------------------------------------------------------------------------------------------


def _common() -> argparse.ArgumentParser:
    # defaults are SUPPRESS so that an option given before the subcommand is not reset by the
    # subcommand's own copy of it
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--storage",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="database URL of the store, e.g. sqlite:///path/kaizenml.db "
        "(default: kaizenml.db in KAIZENML_HOME)",
    )
    common.add_argument(
        "--home",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help="use DIR as KAIZENML_HOME (database and artifacts) for this command",
    )
    common.add_argument(
        "--artifacts",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help="the model versions' artifact folder, needed with --storage for the commands that "
        "read artifacts (default: artifacts in KAIZENML_HOME)",
    )
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print machine-readable JSON on stdout",
    )
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log progress messages to stderr",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``kaizenml`` command."""
    common = _common()
    parser = argparse.ArgumentParser(
        prog="kaizenml",
        description="Continuous improvement of ML models in trading research: inspect studies, "
        "features and model versions in the store, roll back safely, run the demo.",
        epilog="Start with `kaizenml demo`. Exit codes: 0 ok, 1 action failed (e.g. a rollback "
        "check, a corrupted artifact), 2 usage error, unknown name or a store that cannot be "
        "opened. KAIZENML_HOME selects the default store.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"kaizenml {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def group(name: str, help_: str) -> argparse._SubParsersAction:
        p = sub.add_parser(name, help=help_, description=help_, parents=[common])
        p.set_defaults(_group=p)
        return p.add_subparsers(dest="action", metavar="ACTION")

    def leaf(
        grp: argparse._SubParsersAction, name: str, help_: str, fn: Callable[..., int]
    ) -> argparse.ArgumentParser:
        p = grp.add_parser(name, help=help_, description=help_, parents=[common])
        p.set_defaults(_fn=fn)
        return p

    studies = group("studies", "hyperparameter optimization studies")
    leaf(studies, "list", "list the studies in the store", _cmd_studies_list)
    p = leaf(studies, "show", "show one study: best trial and its trials", _cmd_studies_show)
    p.add_argument("name", help="study name (see `kaizenml studies list`)")
    p.add_argument(
        "--limit", type=int, default=20, help="show the last N trials (0: all; default 20)"
    )

    features = group("features", "feature definitions, statistics and lineage")
    leaf(features, "list", "list registered feature definitions and versions", _cmd_features_list)
    p = leaf(features, "stats", "statistics of a feature's last computation", _cmd_features_stats)
    p.add_argument("name", help="feature name, optionally pinned: rsi_14@1.0")
    p = leaf(features, "lineage", "where a feature's values came from", _cmd_features_lineage)
    p.add_argument("name", help="feature name, optionally pinned: rsi_14@1.0")

    models = group("models", "model versions, comparison, activation and rollback")
    leaf(models, "list", "list models with their latest and active versions", _cmd_models_list)
    p = leaf(
        models, "history", "versions of a model, newest first (* = active)", _cmd_models_history
    )
    p.add_argument("name", help="model name (see `kaizenml models list`)")
    p.add_argument("--limit", type=int, default=0, help="show the newest N versions (0: all)")
    p = leaf(
        models,
        "compare",
        "compare the metrics of two versions, with a recommendation",
        _cmd_models_compare,
    )
    p.add_argument("name", help="model name")
    p.add_argument("v1", help="first version, e.g. 1.0.0")
    p.add_argument("v2", help="second version, e.g. 1.1.0")
    p = leaf(
        models,
        "rollback",
        "validate and switch the active version back to VERSION",
        _cmd_models_rollback,
    )
    p.add_argument("name", help="model name")
    p.add_argument("version", help="version to roll back to")
    p.add_argument(
        "--reason", default="rollback from the command line", help="recorded in the audit log"
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="only build and print the plan with its checks (exit 1 if one fails)",
    )
    p = leaf(
        models,
        "activate",
        "make VERSION the active version (no rollback checks)",
        _cmd_models_activate,
    )
    p.add_argument("name", help="model name")
    p.add_argument("version", help="version to activate")
    p.add_argument(
        "--reason", default="activated from the command line", help="recorded in the audit log"
    )

    demo = sub.add_parser(
        "demo",
        parents=[common],
        help="run the end-to-end demo (about a minute; --quick: seconds)",
        description="Generate (or load) market data, compute and describe features, tune a "
        "trading rule by genetic search and a classifier by Bayesian optimization, version, "
        "promote and roll back models, and write an HTML report. Running it again continues "
        "from the stored state.",
    )
    demo.set_defaults(_fn=_cmd_demo)
    demo.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="folder for the report (default: KAIZENML_HOME/demo)",
    )
    demo.add_argument(
        "--data",
        metavar="PATH",
        default=None,
        help="CSV or Parquet file of bars instead of generated data",
    )
    for col in ("timestamp", "open", "high", "low", "close", "volume", "symbol"):
        demo.add_argument(
            f"--{col}-col",
            dest=f"{col}_col",
            metavar="NAME",
            default=None,
            help=f"name of the {col} column in --data (default: found by name)",
        )
    demo.add_argument(
        "--sep",
        metavar="CHAR",
        default=None,
        help="field separator of a text --data file (default ,)",
    )
    demo.add_argument("--seed", type=int, default=0, help="seed of the generated data and searches")
    demo.add_argument("--quick", action="store_true", help="small sizes: finishes in seconds")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


_HINTS = {
    "models": "kaizenml models list",
    "features": "kaizenml features list",
    "studies": "kaizenml studies list",
}


def _setup_logging(args: argparse.Namespace) -> None:
    logger = logging.getLogger("kaizenml")
    if logger.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("kaizenml: %(levelname)s: %(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO if args.verbose else logging.WARNING)
    if args.command == "models" and not args.verbose:
        # these commands print the outcome (a refused rollback and its checks) themselves
        logging.getLogger("kaizenml.versioning").setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 for --help/--version
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    for key, default in (
        ("storage", None), ("home", None), ("artifacts", None), ("json", False), ("verbose", False)
    ):
        if not hasattr(args, key):
            setattr(args, key, default)
    fn = getattr(args, "_fn", None)
    if fn is None:
        target = getattr(args, "_group", parser)
        target.print_help(sys.stderr)
        return EXIT_USAGE
    if args.home:
        os.environ["KAIZENML_HOME"] = os.path.abspath(os.path.expanduser(args.home))
    _setup_logging(args)
    try:
        return int(fn(args))
    except _CommandFailed as exc:
        print(f"kaizenml: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except NotFoundError as exc:
        hint = _HINTS.get(getattr(args, "command", ""), "")
        print(f"kaizenml: {exc}" + (f" (see `{hint}`)" if hint else ""), file=sys.stderr)
        return EXIT_USAGE
    except (RollbackError, IntegrityError) as exc:
        print(f"kaizenml: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except StorageError as exc:
        print(f"kaizenml: storage error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KaizenError as exc:  # ValidationError, KaizenTypeError, StateError, ...
        print(f"kaizenml: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("kaizenml: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `kaizenml models list | head`
        return EXIT_OK
