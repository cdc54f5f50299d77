"""What a test needs from the machine, and what happens when it is missing: outside CI the test
is skipped, naming what is missing; with CI=true it fails instead, because a CI run that
silently skips the conformance corpus, the containerlab schema or ExaBGP checks nothing and
must not pass."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require(present: object, reason: str) -> None:
    """Go on when `present` is truthy; else skip (fail under CI=true) saying `reason`."""
    if present:
        return
    if in_ci():
        pytest.fail(f"CI=true, and {reason}", pytrace=False)
    pytest.skip(reason)


def require_module(name: str, reason: str) -> ModuleType:
    """The module `name`, imported; when it is not importable, as `require`."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        require(False, f"{reason} ({exc})")
        raise  # not reached: require skipped or failed
