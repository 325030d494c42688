"""Semantic Versioning 2.0.0 parsing and precedence, checked against the `semver` package."""

from __future__ import annotations

import functools
import random

import pytest
import semver

from kaizenml import KaizenTypeError, ValidationError
from kaizenml.versioning import Version


def _random_identifier(rng: random.Random, *, numeric_ok: bool = True) -> str:
    kind = rng.random()
    if numeric_ok and kind < 0.45:
        # small numbers so equal and near-equal identifiers are frequent
        return str(rng.choice([0, 1, 2, 3, 10, 11, 99, rng.randint(0, 10**6)]))
    alphabet = "abAB-019z"
    length = rng.randint(1, 4)
    text = "".join(rng.choice(alphabet) for _ in range(length))
    if text.isdigit():
        text = text + "x"  # keep it alphanumeric (a digit string may have leading zeros)
    return text


def _random_version(rng: random.Random) -> str:
    text = ".".join(str(rng.choice([0, 1, 2, 10, rng.randint(0, 500)])) for _ in range(3))
    if rng.random() < 0.6:
        n = rng.randint(1, 4)
        text += "-" + ".".join(_random_identifier(rng) for _ in range(n))
    if rng.random() < 0.3:
        n = rng.randint(1, 3)
        text += "+" + ".".join(
            rng.choice(["001", "sha", "5114f85", "build", "x-y", "0"]) for _ in range(n)
        )
    return text


@pytest.fixture(scope="module")
def random_versions() -> list[str]:
    rng = random.Random(20240607)
    return [_random_version(rng) for _ in range(3000)]


def _sign(x: int) -> int:
    return (x > 0) - (x < 0)


def test_random_versions_are_valid_for_both(random_versions: list[str]) -> None:
    for text in random_versions:
        assert semver.Version.is_valid(text), text
        assert Version.is_valid(text), text
        assert str(Version.parse(text)) == text
        ours = Version.parse(text)
        ref = semver.Version.parse(text)
        assert (ours.major, ours.minor, ours.patch) == (ref.major, ref.minor, ref.patch)
        assert ".".join(ours.prerelease) == (ref.prerelease or "")
        assert ".".join(ours.build) == (ref.build or "")


def test_pairwise_precedence_matches_semver(random_versions: list[str]) -> None:
    rng = random.Random(7)
    parsed = {t: Version.parse(t) for t in random_versions}
    pairs = [(rng.choice(random_versions), rng.choice(random_versions)) for _ in range(30000)]
    # also every pair among a block, which contains many equal-prefix pre-releases
    block = random_versions[:150]
    pairs += [(a, b) for a in block for b in block]
    mismatches = []
    ref = {t: semver.Version.parse(t) for t in random_versions}
    for a, b in pairs:
        expected = ref[a].compare(ref[b])
        va, vb = parsed[a], parsed[b]
        got = va.compare(vb)
        ops = (va < vb, va <= vb, va > vb, va >= vb)
        if got != expected or ops != (expected < 0, expected <= 0, expected > 0, expected >= 0):
            mismatches.append((a, b, expected, got))
    assert not mismatches, mismatches[:5]


def test_sorting_matches_semver(random_versions: list[str]) -> None:
    ours = sorted(random_versions, key=lambda t: Version.parse(t).precedence_key)
    ref_keys = [semver.Version.parse(t) for t in ours]
    # our order must be non-decreasing under semver's comparison
    for left, right in zip(ref_keys, ref_keys[1:], strict=False):
        assert left.compare(right) <= 0, (str(left), str(right))
    ref_sorted = sorted(
        random_versions,
        key=functools.cmp_to_key(lambda a, b: semver.Version.parse(a).compare(b)),
    )
    assert [Version.parse(t).precedence_key for t in ref_sorted] == [
        Version.parse(t).precedence_key for t in ours
    ]


def test_spec_example_chain() -> None:
    chain = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "2.0.0",
        "2.1.0",
        "2.1.1",
    ]
    versions = [Version.parse(t) for t in chain]
    for lower, higher in zip(versions, versions[1:], strict=False):
        assert lower < higher and higher > lower and not higher <= lower


def test_build_metadata_ignored_for_precedence_but_not_equality() -> None:
    a, b = Version.parse("1.0.0+a"), Version.parse("1.0.0+b")
    assert a.compare(b) == 0 and semver.Version.parse("1.0.0+a").compare("1.0.0+b") == 0
    assert not a < b and not b < a and a <= b and a >= b
    assert a != b and a == Version.parse("1.0.0+a") and hash(a) == hash(Version.parse("1.0.0+a"))
    assert a == "1.0.0+a"


@pytest.mark.parametrize(
    "text",
    ["1", "1.2", "01.2.3", "1.02.3", "1.2.03", "1.2.3-", "1.2.3-01", "1.2.3+", "1.2.3-a..b",
     "1.2.3+a..b", "v1.2.3", " 1.2.3", "1.2.3-é", "-1.2.3", "1.2.3.4", ""],
)
def test_invalid_strings_rejected_like_semver(text: str) -> None:
    assert not semver.Version.is_valid(text)
    assert not Version.is_valid(text)
    with pytest.raises(ValidationError, match="Semantic Versioning"):
        Version.parse(text)


def test_parse_type_error() -> None:
    with pytest.raises(KaizenTypeError):
        Version.parse(1.2)  # type: ignore[arg-type]


def test_bumps_match_semver_for_releases(random_versions: list[str]) -> None:
    for text in random_versions[:500]:
        v = Version.parse(text)
        if v.prerelease or v.build:
            continue
        ref = semver.Version.parse(text)
        assert str(v.bump_major()) == str(ref.bump_major())
        assert str(v.bump_minor()) == str(ref.bump_minor())
        assert str(v.bump_patch()) == str(ref.bump_patch())
    assert str(Version.parse("1.2.3-rc.1+b").bump_major()) == "2.0.0"
    assert str(Version(1, 9, 9).bump("minor")) == "1.10.0"
    with pytest.raises(ValidationError):
        Version(1).bump("micro")


def test_constructor_validates() -> None:
    assert str(Version(1, 2, 3, "rc.1", ["b", "7"])) == "1.2.3-rc.1+b.7"
    with pytest.raises(ValidationError):
        Version(1, 2, 3, "01")
    with pytest.raises(ValidationError):
        Version(-1, 0, 0)
    with pytest.raises(KaizenTypeError):
        Version(True, 0, 0)  # type: ignore[arg-type]
