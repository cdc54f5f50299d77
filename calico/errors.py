"""Errors of the datastore room.

A bad resource costs that resource only: readers log a `ResourceError` and skip it (the file
datastore refuses the whole file, so a typo is seen at start). The message is one line that
names where the resource came from, which resource, and which field, e.g.

    config.yaml: BGPPeer 'rack1-tor': spec.peerIP: '10.0.0.300' is not an IP address
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping


def describe(value: object) -> str:
    """A value as an error message names what was found: null, a boolean, the number 5,
    'text', a mapping, a list."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


class DatastoreError(Exception):
    """Base class of everything the datastore raises."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Where:
    source: str | None = None
    kind: str | None = None
    name: str | None = None
    index: int | None = None
    line: int | None = None
    column: int | None = None


class ResourceError(DatastoreError):
    """A resource (or the document holding it) that cannot be read.

    `reason` says what is wrong; the other parts locate it and are filled in by whoever knows
    them: the model knows kind, name and field, the file reader adds the file name and the
    document number (1-based), a YAML error carries line and column (1-based).
    """

    def __init__(
        self,
        reason: str,
        *,
        field: str | None = None,
        kind: str | None = None,
        name: str | None = None,
        source: str | None = None,
        index: int | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.reason = " ".join(reason.split())
        self.field = field
        self.where = _Where(source, kind, name, index, line, column)
        super().__init__(self.message)

    @property
    def kind(self) -> str | None:
        return self.where.kind

    @property
    def name(self) -> str | None:
        return self.where.name

    @property
    def source(self) -> str | None:
        return self.where.source

    @property
    def message(self) -> str:
        w = self.where
        parts: list[str] = []
        if w.source:
            parts.append(w.source)
        if w.line is not None:
            parts.append(f"line {w.line}" + (f", column {w.column}" if w.column else ""))
        if w.kind and w.name:
            parts.append(f"{w.kind} {w.name!r}")
        elif w.index is not None:
            parts.append(f"document {w.index}" + (f" ({w.kind})" if w.kind else ""))
        elif w.kind:
            parts.append(w.kind)
        if self.field:
            parts.append(self.field)
        parts.append(self.reason)
        return ": ".join(parts)

    def __str__(self) -> str:
        return self.message

    def located(self, *, source: str | None = None, index: int | None = None) -> ResourceError:
        """A copy with the source (and document number) filled in where still unknown."""
        w = self.where
        return ResourceError(
            self.reason,
            field=self.field,
            kind=w.kind,
            name=w.name,
            source=w.source if w.source is not None else source,
            index=w.index if w.index is not None else index,
            line=w.line,
            column=w.column,
        )


class Unavailable(DatastoreError):
    """The key-value store cannot be reached (every endpoint tried), or the call timed out."""


class Compacted(DatastoreError):
    """A watch asked for revisions the store has already compacted away: list afresh."""

    def __init__(self, requested: int, compact_revision: int) -> None:
        self.requested = requested
        self.compact_revision = compact_revision
        super().__init__(
            f"revision {requested} is compacted (history starts at {compact_revision})"
        )


class Conflict(DatastoreError):
    """A compare-and-swap write lost: the key changed (or appeared, or vanished) meanwhile."""

    def __init__(self, key: str, reason: str = "changed concurrently") -> None:
        self.key = key
        super().__init__(f"{key}: {reason}")


class LeaseNotFound(DatastoreError):
    """The lease expired or was revoked; keys written under it are gone."""


class DatastoreConfigError(DatastoreError):
    """The datastore settings cannot work: a bad URL, TLS files that do not go together or
    cannot be read, a user name without a password. Retrying does not help; fix the setting."""


class AccessDenied(DatastoreError):
    """The store answered but refused us: a TLS handshake it or we rejected, a wrong user name
    or password, or a permission the user lacks."""
