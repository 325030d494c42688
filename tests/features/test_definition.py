"""Feature definitions: validation, dict round trips and semantic-version ordering."""

from __future__ import annotations

import itertools

import pytest
import semver

from kaizenml import KaizenTypeError, ValidationError
from kaizenml.features import ComputationConfig, FeatureDefinition, parse_version


def test_config_from_plain_dict_with_params() -> None:
    cfg = ComputationConfig.from_dict(
        {
            "window_size": 5,
            "aggregation": "max",
            "fill_missing": "forward",
            "normalize": "minmax",
            "normalize_window": 10,
            "params": {"window": 7, "kind": "log"},
        }
    )
    assert cfg.window_size == 5 and cfg.aggregation == "max"
    assert cfg.params == {"window": 7, "kind": "log"}
    assert ComputationConfig.from_dict(cfg.to_dict()) == cfg
    d = FeatureDefinition(
        "f",
        "1.0",
        dependencies=["close"],
        compute_function="rsi",
        computation_config={"params": {"window": 3}},
    )
    assert isinstance(d.computation_config, ComputationConfig)
    assert FeatureDefinition.from_dict(d.to_dict()) == d


@pytest.mark.parametrize(
    "config, fragment",
    [
        ({"aggregation": "mean"}, "needs window_size"),
        ({"aggregation": "median", "window_size": 3}, "aggregation='median'"),
        ({"window_size": 0}, "window_size must be >= 1"),
        ({"window_size": 2.5}, "window_size must be an integer"),
        ({"normalize": True}, "ambiguous"),
        ({"normalize": "rank"}, "normalize='rank'"),
        ({"fill_missing": "backward"}, "look-ahead"),
        ({"fill_missing": "interpolate"}, "fill_missing='interpolate'"),
        ({"params": {"window": float("nan")}}, "finite"),
        ({"params": {"window_size": 3}}, "must not contain 'window_size'"),
        ({"windw": 3}, "unknown keys ['windw']"),
        ({"aggregation": "std", "window_size": 1}, "window_size >= 2"),
    ],
)
def test_config_errors_name_the_problem(config: dict, fragment: str) -> None:
    with pytest.raises((ValidationError, KaizenTypeError)) as err:
        ComputationConfig.from_dict(config)
    assert fragment in str(err.value)


def test_backward_fill_allowed_only_when_marked_non_causal() -> None:
    cfg = ComputationConfig(fill_missing="backward", causal=False)
    assert cfg.fill_missing == "backward" and cfg.causal is False


def test_params_must_be_json_values() -> None:
    with pytest.raises(KaizenTypeError, match="JSON values"):
        ComputationConfig(params={"fn": object()})


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"name": "a/b"}, "not a valid name"),
        ({"name": "..x"}, "not a valid name"),
        ({"version": "v1"}, "not a semantic version"),
        ({"type": "text"}, "type='text'"),
        ({"dependencies": "close"}, "list of column or feature names"),
        ({"dependencies": ["close", "close"]}, "same name twice"),
        ({"dependencies": ["f"]}, "cannot depend on itself"),
        ({"dependencies": ["my-col"]}, "valid Python identifiers"),
        ({"compute_function": ""}, "compute_function"),
        ({"type": "categorical", "computation_config": {"normalize": "zscore"}}, "meaningless"),
        ({"outputs": ["a", "a"]}, "twice"),
    ],
)
def test_definition_errors(kwargs: dict, fragment: str) -> None:
    base = {"name": "f", "version": "1.0.0", "dependencies": ["close"], "compute_function": "rsi"}
    with pytest.raises((ValidationError, KaizenTypeError)) as err:
        FeatureDefinition(**{**base, **kwargs})
    assert fragment in str(err.value)


def test_definition_hash_ignores_description_but_not_params() -> None:
    a = FeatureDefinition("f", "1.0.0", "one", dependencies=["close"], compute_function="rsi")
    b = FeatureDefinition(
        "f", "1.0.0", "two", dependencies=["close"], compute_function="rsi", tags=["x"]
    )
    c = FeatureDefinition(
        "f",
        "1.0.0",
        dependencies=["close"],
        compute_function="rsi",
        computation_config={"params": {"window": 9}},
    )
    assert a.definition_hash() == b.definition_hash() != c.definition_hash()


VERSIONS = [
    "0.0.1",
    "0.1.0",
    "0.9.0",
    "0.10.0",
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
    "1.0.1",
    "1.2.0",
    "1.10.0",
    "2.0.0+build.7",
    "10.0.0",
]


def test_version_order_matches_semver_package() -> None:
    for a, b in itertools.combinations(VERSIONS, 2):
        ours = (parse_version(a) > parse_version(b)) - (parse_version(a) < parse_version(b))
        assert ours == semver.Version.parse(a).compare(semver.Version.parse(b)), (a, b)


def test_short_versions_are_padded() -> None:
    assert parse_version("1") == parse_version("1.0") == parse_version("1.0.0")
    assert parse_version("1.2") < parse_version("1.10")
