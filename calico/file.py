"""The file datastore: a multi-document YAML file of Calico v3 resources (what
`calicoctl apply -f` takes), read whole into a Snapshot.

    bgpd --datastore file:///etc/bgpd/cluster.yaml

Block affinities, which Calico keeps as IPAM keys, are written here as v3 BlockAffinity
resources (spec.node, spec.cidr, spec.state; an empty state is confirmed). A file with any
bad resource is refused as a whole, with one line that names the file, the resource and the
field, so a typo shows at start-up instead of as a missing session.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from calico.errors import ResourceError
from calico.model import Resource, parse_resource, resource_id
from calico.snapshot import Snapshot

__all__ = ["load_file", "load_text", "read_documents"]


class _Loader(yaml.SafeLoader):
    """YAML as Calico's Go reader sees it: booleans yes/no/on/off stay (YAML 1.1), but no
    base-60 numbers, so a community "100:55" stays a string instead of becoming 6055.
    The pure-Python loader, not libyaml's: its error messages name the offending character."""


_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, rx)
        for tag, rx in resolvers
        if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def load_file(path: str) -> Snapshot:
    """Read a YAML file of v3 resources. Raises ResourceError (one line, naming the file)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ResourceError(f"cannot read: {e.strerror or e}", source=path) from None
    except UnicodeDecodeError as e:
        raise ResourceError(f"not UTF-8 text ({e.reason})", source=path) from None
    return load_text(text, source=path)


def read_documents(text: str, *, source: str = "<string>") -> list[Any]:
    """The YAML documents of `text`, decoded as Calico's reader would (see _Loader)."""
    try:
        return list(yaml.load_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        reason = " ".join(p for p in (e.context, e.problem) if p) or "invalid YAML"
        raise ResourceError(
            reason,
            source=source,
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
        ) from None
    except yaml.YAMLError as e:
        raise ResourceError(f"invalid YAML: {e}", source=source) from None


def load_text(text: str, *, source: str = "<string>") -> Snapshot:
    """The same as load_file, from the file's text; `source` names it in errors."""
    docs = read_documents(text, source=source)
    resources: list[Resource] = []
    seen: dict[tuple[str, str], int] = {}
    for index, doc in enumerate(docs, start=1):
        if doc is None:
            continue  # an empty document, e.g. after a trailing '---'
        if isinstance(doc, dict) and doc.get("kind") == "List" and "items" in doc:
            raise ResourceError(
                "kind List is not supported; write one resource per document",
                source=source,
                index=index,
            )
        try:
            resource = parse_resource(doc)
        except ResourceError as e:
            raise e.located(source=source, index=index) from None
        if resource is None:
            continue
        key = (resource.kind, resource_id(resource))
        if key in seen:
            raise ResourceError(
                f"defined twice (documents {seen[key]} and {index})",
                kind=resource.kind,
                name=resource.name,
                source=source,
            )
        seen[key] = index
        resources.append(resource)
    return Snapshot.of(resources, source=source)
