"""BIRD 1.6 (the BIRD calico-node ships) running a golden configuration in a lab node, and the
parser of its `birdc show route ... all` output.

The golden bird.cfg / bird6.cfg is used as confd wrote it, with its includes; only a log file
line goes in front and one protocol is appended (`EXTERNAL`: an eBGP peer with `import all`,
`export none`, whose routes the node's export filters then see). BIRD 1.6 is unpacked from
Debian's `bird` package into /opt/bird1.6 by scripts/setup.sh ($PYBGPD_BIRD16 overrides), as
the package conflicts with bird2.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from labs.harness.lab import LabError, Node

BIRD16 = Path(os.environ.get("PYBGPD_BIRD16", "/opt/bird1.6/usr/sbin"))


def missing() -> str | None:
    """Why BIRD 1.6 cannot run here, or None."""
    for name in ("bird", "bird6", "birdc"):
        if not os.access(BIRD16 / name, os.X_OK):
            return f"BIRD 1.6 not found at {BIRD16 / name} (scripts/setup.sh unpacks it)"
    return None


@dataclass(frozen=True, slots=True)
class BirdRoute:
    """One route of `show route ... all` in BIRD 1.6's words."""

    prefix: str
    protocol: str
    preference: int
    attrs: dict[str, str]

    @property
    def local_pref(self) -> int | None:
        v = self.attrs.get("BGP.local_pref")
        return int(v) if v is not None else None

    @property
    def as_path(self) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", self.attrs.get("BGP.as_path", "")))

    @property
    def communities(self) -> frozenset[tuple[int, int]]:
        pairs = re.findall(r"\((\d+),(\d+)\)", self.attrs.get("BGP.community", ""))
        return frozenset((int(a), int(b)) for a, b in pairs)

    @property
    def large(self) -> frozenset[tuple[int, int, int]]:
        found = re.findall(
            r"\((\d+),\s*(\d+),\s*(\d+)\)", self.attrs.get("BGP.large_community", "")
        )
        return frozenset((int(a), int(b), int(c)) for a, b, c in found)


_HEAD = re.compile(r"^(\S+)?\s+(?:via \S+ on \S+|dev \S+|blackhole|unreachable|prohibited)"
                   r"(?:\s+\S+)*?\s+\[(\S+) [^\]]*\]\s*\*?\s*\((\d+)(?:/\d+)?\)")


def parse_routes(text: str) -> list[BirdRoute]:
    out: list[BirdRoute] = []
    prefix: str | None = None
    current: tuple[str, str, int] | None = None
    attrs: dict[str, str] = {}

    def flush() -> None:
        if current is not None:
            out.append(BirdRoute(current[0], current[1], current[2], dict(attrs)))

    for line in text.splitlines():
        if not line.strip() or line.startswith(("BIRD ", "Access restricted")):
            continue
        if line.startswith(("\t", "        ")) and current is not None:
            key, sep, value = line.strip().partition(":")
            if sep:
                attrs[key.strip()] = value.strip()
            continue
        m = _HEAD.match(line)
        if m is None:
            continue
        flush()
        attrs = {}
        if m.group(1):
            prefix = str(ipaddress.ip_network(m.group(1), strict=False))
        assert prefix is not None
        current = (prefix, m.group(2), int(m.group(3)))
    flush()
    return out


class Bird16:
    """`bird -f` (or bird6) on a copy of a golden directory, in `node`."""

    def __init__(self, node: Node, golden: Path, version: int, extra: str = "") -> None:
        self.node = node
        self.version = version
        self.dir = node.workdir / f"bird{version}"
        shutil.copytree(golden, self.dir, dirs_exist_ok=True)
        main = self.dir / ("bird.cfg" if version == 4 else "bird6.cfg")
        self.log = self.dir / "bird.log"
        text = main.read_text()
        main.write_text(
            f'log "{self.log}" {{ info, warning, error, fatal, bug }};\n{text}\n{extra}\n'
        )
        self.config = main
        self.socket = node.lab.rundir / f"bird16-{version}.ctl"

    @property
    def program(self) -> str:
        return str(BIRD16 / ("bird" if self.version == 4 else "bird6"))

    def start(self) -> None:
        parsed = self.node.run(
            ["sh", "-c", f"cd {self.dir} && {self.program} -p -c {self.config.name}"],
            check=False,
        )
        if parsed.returncode != 0:
            raise LabError(f"BIRD 1.6 refuses {self.config}: {parsed.stderr.strip()}")
        self.node.popen(
            ["sh", "-c", f"cd {self.dir} && exec {self.program} -f -c {self.config.name} "
                         f"-s {self.socket}"],
            log_path=self.dir / "bird.out",
            label=f"{self.node.name}/bird16-v{self.version}",
        )
        self.node.lab.register_log(f"{self.node.name}/bird16-v{self.version}.log", self.log)

    def birdc(self, command: str) -> str:
        return self.node.run(
            [str(BIRD16 / "birdc"), "-s", str(self.socket), *command.split()], timeout=60
        ).stdout

    def ready(self) -> bool:
        try:
            return "BIRD 1.6" in self.birdc("show status")
        except LabError:
            return False

    def routes(self, where: str = "") -> list[BirdRoute]:
        return parse_routes(self.birdc(f"show route {where} all"))

    def protocol_info(self, name: str) -> str:
        return self.birdc(f"show protocols all {name}")
