"""Semantic Versioning 2.0.0 numbers: parsing, precedence and bumps.

The grammar and the precedence rules follow https://semver.org/spec/v2.0.0.html:

* ``MAJOR.MINOR.PATCH`` are non-negative integers without leading zeros;
* an optional pre-release ``-id.id...`` where each identifier is numeric (no leading zeros) or
  alphanumeric (``[0-9A-Za-z-]``);
* optional build metadata ``+id.id...`` (``[0-9A-Za-z-]``, leading zeros allowed).

Precedence compares major, minor and patch numerically; a version with a pre-release ranks
below the same version without one; pre-release identifiers compare left to right, numeric ones
numerically and below alphanumeric ones, alphanumeric ones by ASCII order, and a longer list
wins when all preceding identifiers are equal. Build metadata never affects precedence.
"""

from __future__ import annotations

import re
from typing import Any

from .._exceptions import KaizenTypeError, ValidationError

__all__ = ["Version"]

_NUM = r"0|[1-9][0-9]*"
_PRE_ID = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_BUILD_ID = r"[0-9A-Za-z-]+"
_SEMVER_RE = re.compile(
    rf"^(?P<major>{_NUM})\.(?P<minor>{_NUM})\.(?P<patch>{_NUM})"
    rf"(?:-(?P<pre>{_PRE_ID}(?:\.{_PRE_ID})*))?"
    rf"(?:\+(?P<build>{_BUILD_ID}(?:\.{_BUILD_ID})*))?$"
)
_PRE_ID_RE = re.compile(rf"^{_PRE_ID}$")
_BUILD_ID_RE = re.compile(rf"^{_BUILD_ID}$")


def _pre_key(prerelease: tuple[str, ...]) -> tuple[Any, ...]:
    # A release (no pre-release) must outrank every pre-release of the same triple, so the
    # release key (1,) is above every (0, ...) key. Inside a pre-release, numeric identifiers
    # become (0, int) and alphanumeric ones (1, str): numbers sort first, and Python's tuple
    # comparison gives "longer list wins when the prefix is equal" for free.
    if not prerelease:
        return (1,)
    return (0, tuple((0, int(p)) if p.isdigit() else (1, p) for p in prerelease))


class Version:
    """A Semantic Versioning 2.0.0 version number.

    Ordering operators (``<``, ``<=``, ``>``, ``>=``) follow SemVer precedence, in which build
    metadata is ignored. Equality (``==``) and hashing are exact: ``1.0.0+a`` and ``1.0.0+b``
    have the same precedence (:meth:`compare` returns 0) but are different versions.

    Parameters
    ----------
    major, minor, patch:
        Non-negative integers.
    prerelease:
        Pre-release identifiers, e.g. ``("rc", "1")``; empty for a release.
    build:
        Build-metadata identifiers, e.g. ``("sha", "5114f85")``.

    Examples
    --------
    >>> v = Version.parse("1.2.3-rc.1+build.7")
    >>> v.major, v.prerelease, v.build
    (1, ('rc', '1'), ('build', '7'))
    >>> Version.parse("1.0.0-alpha") < Version.parse("1.0.0-alpha.1") < Version.parse("1.0.0")
    True
    >>> str(v.bump_minor())
    '1.3.0'
    """

    __slots__ = ("major", "minor", "patch", "prerelease", "build", "_key")

    def __init__(
        self,
        major: int,
        minor: int = 0,
        patch: int = 0,
        prerelease: tuple[str, ...] | list[str] | str | None = None,
        build: tuple[str, ...] | list[str] | str | None = None,
    ) -> None:
        for name, value in (("major", major), ("minor", minor), ("patch", patch)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise KaizenTypeError(f"{name} must be an int, got {value!r}")
            if value < 0:
                raise ValidationError(f"{name} must be >= 0, got {value}")
        pre = self._identifiers(prerelease, "prerelease", _PRE_ID_RE)
        bld = self._identifiers(build, "build", _BUILD_ID_RE)
        self.major = major
        self.minor = minor
        self.patch = patch
        self.prerelease: tuple[str, ...] = pre
        self.build: tuple[str, ...] = bld
        self._key = (major, minor, patch, _pre_key(pre))

    @staticmethod
    def _identifiers(value: Any, param: str, pattern: re.Pattern[str]) -> tuple[str, ...]:
        if value is None:
            return ()
        if isinstance(value, str):
            parts = tuple(value.split(".")) if value else ()
        elif isinstance(value, (tuple, list)):
            parts = tuple(str(p) for p in value)
        else:
            raise KaizenTypeError(f"{param} must be a str or a sequence of str, got {value!r}")
        for part in parts:
            if not pattern.match(part):
                raise ValidationError(
                    f"{param} identifier {part!r} is not valid SemVer: use [0-9A-Za-z-]+ "
                    "(and no leading zeros in numeric pre-release identifiers)"
                )
        return parts

    @classmethod
    def parse(cls, text: str | Version) -> Version:
        """Parse a SemVer 2.0.0 string (a :class:`Version` is returned unchanged).

        Raises
        ------
        ValidationError
            If ``text`` is not a valid SemVer 2.0.0 version.
        """
        if isinstance(text, Version):
            return text
        if not isinstance(text, str):
            raise KaizenTypeError(f"version must be a str, got {type(text).__name__}")
        match = _SEMVER_RE.match(text)
        if match is None:
            raise ValidationError(
                f"version={text!r} is not a Semantic Versioning 2.0.0 number; expected "
                "MAJOR.MINOR.PATCH with optional -prerelease and +build, e.g. '1.4.2-rc.1'"
            )
        pre = match.group("pre")
        build = match.group("build")
        return cls(
            int(match.group("major")),
            int(match.group("minor")),
            int(match.group("patch")),
            tuple(pre.split(".")) if pre else (),
            tuple(build.split(".")) if build else (),
        )

    @staticmethod
    def is_valid(text: str) -> bool:
        """Whether ``text`` is a valid SemVer 2.0.0 string."""
        return isinstance(text, str) and _SEMVER_RE.match(text) is not None

    # --- bumps -------------------------------------------------------------------------------
    def bump_major(self) -> Version:
        """``(MAJOR+1).0.0``; pre-release and build are dropped."""
        return Version(self.major + 1, 0, 0)

    def bump_minor(self) -> Version:
        """``MAJOR.(MINOR+1).0``; pre-release and build are dropped."""
        return Version(self.major, self.minor + 1, 0)

    def bump_patch(self) -> Version:
        """``MAJOR.MINOR.(PATCH+1)``; pre-release and build are dropped."""
        return Version(self.major, self.minor, self.patch + 1)

    def bump(self, part: str) -> Version:
        """Bump ``"major"``, ``"minor"`` or ``"patch"``."""
        if part == "major":
            return self.bump_major()
        if part == "minor":
            return self.bump_minor()
        if part == "patch":
            return self.bump_patch()
        raise ValidationError(f"part={part!r} is not supported; use 'major', 'minor' or 'patch'")

    @property
    def is_prerelease(self) -> bool:
        return bool(self.prerelease)

    @property
    def precedence_key(self) -> tuple[Any, ...]:
        """A key whose natural ordering is SemVer precedence (build metadata excluded)."""
        return self._key

    def compare(self, other: str | Version) -> int:
        """-1, 0 or 1 as ``self`` has lower, equal or higher precedence than ``other``."""
        other_key = Version.parse(other)._key
        return (self._key > other_key) - (self._key < other_key)

    # --- dunder ------------------------------------------------------------------------------
    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(self.prerelease)
        if self.build:
            text += "+" + ".".join(self.build)
        return text

    def __repr__(self) -> str:
        return f"Version('{self}')"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            if not Version.is_valid(other):
                return False
            other = Version.parse(other)
        if not isinstance(other, Version):
            return NotImplemented
        return self._key == other._key and self.build == other.build

    def __hash__(self) -> int:
        return hash((self._key, self.build))

    def _other_key(self, other: object) -> Any:
        if isinstance(other, (str, Version)):
            return Version.parse(other)._key
        return NotImplemented

    def __lt__(self, other: object) -> bool:
        key = self._other_key(other)
        return NotImplemented if key is NotImplemented else self._key < key

    def __le__(self, other: object) -> bool:
        key = self._other_key(other)
        return NotImplemented if key is NotImplemented else self._key <= key

    def __gt__(self, other: object) -> bool:
        key = self._other_key(other)
        return NotImplemented if key is NotImplemented else self._key > key

    def __ge__(self, other: object) -> bool:
        key = self._other_key(other)
        return NotImplemented if key is NotImplemented else self._key >= key
