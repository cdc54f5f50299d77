"""nftables I/O for felix's table: transactions (libnftables in-process, as `nft -f`
runs them; the `nft` command where the library cannot be loaded), `nft -j list table` for
counters, and `nft monitor` to notice when someone else changes the table.

In-process, a small transaction takes ~5-20 ms against a table of thousands of chains
where starting `nft` costs as much again: the difference is most of a label change's time.

`PolicyDataplane.sync(index)` compiles the model (nft_compile, pure) and applies the
difference from what it applied last as one atomic transaction; the first sync, and the
first after a failed transaction or a change made behind felix's back, replaces the whole
table in one transaction instead. Only table `inet felix` is ever written.

`nft monitor` reports every ruleset change with the process that made it ("# new
generation N by process PID (nft)"); a change that touched `inet felix` from a process
other than felix's own `nft` runs marks the table for a full resync.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common.log import get_logger
from felix.dataplane.nft_compile import FAMILY, TABLE, Compiler, Ruleset, diff, render
from felix.policy.index import PolicyIndex

log = get_logger("felix.dataplane")

_GENERATION = re.compile(r"^# new generation \d+ by process (\d+)")
_OURS = re.compile(rf"\b{FAMILY} {TABLE}\b")


class NftError(Exception):
    """nft refused a transaction (nothing of it was applied) or could not run."""


def nft_available() -> bool:
    return shutil.which("nft") is not None


@dataclass(frozen=True, slots=True)
class RuleCounter:
    chain: str
    comment: str
    packets: int
    bytes: int


class _LibNftables:
    """libnftables through ctypes: nft_run_cmd_from_buffer is what `nft -f` calls."""

    def __init__(self) -> None:
        lib = ctypes.CDLL("libnftables.so.1")
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        for name in ("nft_ctx_buffer_error", "nft_ctx_buffer_output"):
            getattr(lib, name).argtypes = [ctypes.c_void_p]
        for name in ("nft_ctx_get_error_buffer", "nft_ctx_get_output_buffer"):
            getattr(lib, name).argtypes = [ctypes.c_void_p]
            getattr(lib, name).restype = ctypes.c_char_p
        self.lib = lib
        self.ctx = lib.nft_ctx_new(0)
        if not self.ctx:
            raise OSError("nft_ctx_new failed")
        lib.nft_ctx_buffer_error(self.ctx)
        lib.nft_ctx_buffer_output(self.ctx)
        self.lock = threading.Lock()  # a context serves one call at a time

    def run(self, text: str) -> None:
        with self.lock:
            rc = self.lib.nft_run_cmd_from_buffer(self.ctx, text.encode())
            error = self.lib.nft_ctx_get_error_buffer(self.ctx) or b""
            self.lib.nft_ctx_get_output_buffer(self.ctx)
        if rc != 0:
            raise NftError(error.decode(errors="replace").strip() or f"libnftables: {rc}")


def _load_library() -> _LibNftables | None:
    try:
        return _LibNftables()
    except (OSError, AttributeError):
        return None


class Nft:
    """Runs nft in felix's network namespace."""

    def __init__(self, binary: str = "nft", *, library: bool = True) -> None:
        self.binary = binary
        self.own_pids: collections.deque[int] = collections.deque(maxlen=256)
        self.own_pids.append(os.getpid())  # transactions made in-process
        # The kernel names the thread that commits a transaction (its TID), not the process:
        # in-process transactions run in worker threads, so their TIDs are felix's too.
        self.own_threads: set[int] = set()
        self._lib = _load_library() if library else None

    async def _run(self, *args: str, stdin: str | None = None) -> str:
        try:
            proc = await asyncio.create_subprocess_exec(
                self.binary,
                *args,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise NftError(f"cannot run {self.binary}: {exc}") from exc
        self.own_pids.append(proc.pid)
        out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
        if proc.returncode != 0:
            raise NftError(err.decode(errors="replace").strip() or f"nft exited {proc.returncode}")
        return out.decode(errors="replace")

    async def apply(self, transaction: str) -> None:
        """Apply `transaction` atomically (nft -f: all of it or nothing)."""
        if self._lib is not None:
            await asyncio.to_thread(self._apply_in_thread, self._lib, transaction)
        else:
            await self._run("-f", "-", stdin=transaction)

    def _apply_in_thread(self, lib: _LibNftables, transaction: str) -> None:
        self.own_threads.add(threading.get_native_id())  # before the commit is reported
        lib.run(transaction)

    async def list_table(self) -> dict[str, Any] | None:
        """`nft -j list table inet felix`; None when the table does not exist."""
        try:
            out = await self._run("-j", "list", "table", FAMILY, TABLE)
        except NftError as exc:
            if "No such file or directory" in str(exc):
                return None
            raise
        doc: dict[str, Any] = json.loads(out)
        return doc

    async def delete_table(self) -> None:
        with contextlib.suppress(NftError):
            await self.apply(f"table {FAMILY} {TABLE} {{}}\ndelete table {FAMILY} {TABLE}\n")

    async def monitor(self, on_foreign_change: Callable[[str], None]) -> None:
        """Follow `nft monitor` until cancelled; call `on_foreign_change(description)` for
        each ruleset change that touched felix's table and was not felix's own."""
        proc = await asyncio.create_subprocess_exec(
            self.binary,
            "monitor",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert proc.stdout is not None
        touched: list[str] = []
        try:
            while True:
                raw = await proc.stdout.readline()
                if not raw:
                    raise NftError(f"nft monitor exited ({await proc.wait()})")
                line = raw.decode(errors="replace").rstrip("\n")
                m = _GENERATION.match(line)
                if m is None:
                    if _OURS.search(line) and len(touched) < 5:
                        touched.append(line[:200])
                    continue
                pid = int(m.group(1))
                if touched and pid not in self.own_pids and pid not in self.own_threads:
                    on_foreign_change("; ".join(touched))
                touched = []
        finally:
            if proc.returncode is None:
                proc.kill()
                with contextlib.suppress(ProcessLookupError):
                    await proc.wait()


def counters(listing: dict[str, Any] | None) -> list[RuleCounter]:
    """Every rule's counter in a `nft -j list table` document, with its chain and comment."""
    out: list[RuleCounter] = []
    for item in (listing or {}).get("nftables", ()):
        rule = item.get("rule") if isinstance(item, dict) else None
        if not rule:
            continue
        for expr in rule.get("expr", ()):
            counter = expr.get("counter") if isinstance(expr, dict) else None
            if isinstance(counter, dict):
                out.append(
                    RuleCounter(
                        rule.get("chain", ""),
                        rule.get("comment", ""),
                        int(counter.get("packets", 0)),
                        int(counter.get("bytes", 0)),
                    )
                )
    return out


class PolicyDataplane:
    """Keeps table inet felix equal to the compiled model."""

    def __init__(self, nft: Nft | None = None) -> None:
        self.nft = nft or Nft()
        self.applied: Ruleset | None = None
        self.compiler = Compiler()
        self.full_needed = True
        self.transactions = 0
        self.full_syncs = 0
        self.compile_seconds = 0.0
        self.apply_seconds = 0.0

    def invalidate(self) -> None:
        """Replace the whole table at the next sync (someone changed it)."""
        self.full_needed = True

    async def sync(self, index: PolicyIndex) -> bool:
        """Bring the kernel to the model; whether anything was applied. Raises NftError
        when even a full replacement fails (the kernel keeps its previous table)."""
        started = time.perf_counter()
        new = self.compiler.compile(index)
        self.compile_seconds = time.perf_counter() - started
        started = time.perf_counter()
        try:
            return await self._apply(new)
        finally:
            self.apply_seconds = time.perf_counter() - started

    async def _apply(self, new: Ruleset) -> bool:
        if not self.full_needed and self.applied is not None:
            try:
                text = diff(self.applied, new)
            except ValueError:
                text = None
            if text == "":
                return False
            if text is not None:
                try:
                    await self.nft.apply(text)
                    self.applied = new
                    self.transactions += 1
                    return True
                except NftError as exc:
                    log.warning("felix.nft_incremental_failed", error=str(exc)[:500])
        self.full_needed = True
        await self.nft.apply(render(new))
        self.applied = new
        self.full_needed = False
        self.transactions += 1
        self.full_syncs += 1
        return True
