"""Kubernetes' name rules for what a secret reference holds, so a reference names a Secret
and one of its keys and nothing else.

A Secret's name is a DNS subdomain (RFC 1123: lower-case letters, digits, '-' and '.', each
dot-separated label starting and ending with a letter or digit, at most 253 characters); a
data key is `[-._a-zA-Z0-9]+`, at most 253 characters, neither "." nor "..", and not
starting with ".." (apimachinery `IsDNS1123Subdomain`, `IsConfigMapKey`; a mounted Secret
keeps its own `..data` directory beside the keys). Neither can hold a '/', so a
reference read as the file NAME/KEY under a secrets directory cannot leave it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_NAME_LENGTH = 253

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN = re.compile(rf"{_LABEL}(\.{_LABEL})*")
_KEY = re.compile(r"[-._a-zA-Z0-9]+")


def secret_name_problem(name: str) -> str | None:
    """Why `name` is not a Kubernetes Secret name, or None when it is one."""
    if not name:
        return "must not be empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"must be at most {MAX_NAME_LENGTH} characters"
    if _SUBDOMAIN.fullmatch(name) is None:
        return (
            f"{name!r} is not a Kubernetes secret name (lower-case letters, digits, '-' and "
            "'.', starting and ending with a letter or digit)"
        )
    return None


def secret_key_problem(key: str) -> str | None:
    """Why `key` is not a key of a Kubernetes Secret's data, or None when it is one."""
    if not key:
        return "must not be empty"
    if len(key) > MAX_NAME_LENGTH:
        return f"must be at most {MAX_NAME_LENGTH} characters"
    if key == "." or key.startswith(".."):
        return f"{key!r} is not a Kubernetes secret key (it must not be '.' or start with '..')"
    if _KEY.fullmatch(key) is None:
        return (
            f"{key!r} is not a Kubernetes secret key (letters, digits, '-', '_' and '.' only)"
        )
    return None


@dataclass(frozen=True, slots=True)
class SecretKeyRef:
    """A Kubernetes secret reference (passwords are only ever given this way). `name` and
    `key` follow the rules above, checked when the resource is read."""

    name: str
    key: str
