"""Model versioning: semantic versions, safe artifacts, active version and rollback."""

from __future__ import annotations

from ._semver import Version

__all__ = ["Version"]
