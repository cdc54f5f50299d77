"""Runs the IPAM planner against a key-value store (calico.store.kv): read a view, apply the
planned step as one compare-and-swap transaction, and plan again, until the operation is
done (the loop is calico/ipam_txn.py's, shared with bgpctl). A lost race is a failed
compare: nothing was written, so the loop just re-reads.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import replace

from calico.errors import DatastoreError
from calico.ipam import (
    ASSIGNMENT_PREFIX,
    CONFIG_KEY,
    HANDLE_PREFIX,
    HOST_PREFIX,
    Block,
    IpamConfig,
    handle_key,
)
from calico.ipam_txn import (
    DATASTORE_RETRIES,
    MAX_STEPS,
    Contended,
    apply_step,
    backoff,
    run_steps,
)
from calico.store.kv import KVStore
from common.log import get_logger
from felix.ipam.allocator import (
    AssignRequest,
    IpamError,
    IpamView,
    ReleaseIP,
    Step,
    Versioned,
    handle_addresses,
    plan_assign,
    plan_release_affinity,
    plan_release_handle,
    plan_release_host,
    plan_release_ips,
)
from felix.ipam.view import NODES_PREFIX, POOLS_PREFIX, build_view

log = get_logger("felix.ipam")

__all__ = ["DATASTORE_RETRIES", "Contended", "IpamStore"]


class IpamStore:
    """IPAM over one KVStore (sqlite:// or etcd://). `clock` gives wall-clock seconds (block
    claim times and sequence numbers are wall-clock, as in Calico)."""

    def __init__(
        self,
        kv: KVStore,
        *,
        clock: Callable[[], float] = time.time,
        retries: int = DATASTORE_RETRIES,
    ) -> None:
        self.kv = kv
        self.clock = clock
        self.retries = retries
        self.conflicts = 0  # lost races so far (for tests and logs)
        # Blocks as last read, by key: unchanged ones (same mod revision) are not re-parsed.
        self._blocks: dict[str, Versioned[Block]] = {}

    # --- reading ----------------------------------------------------------------------------

    async def view(
        self, *, host: str | None = None, handles: Iterable[str] = (), all_handles: bool = False
    ) -> IpamView:
        """One consistent read of what the planner needs: pools, the host's Node (labels),
        the IPAM config, every block and affinity, and the named handles (or all)."""
        wanted = set(handles)
        prefixes = [ASSIGNMENT_PREFIX, HOST_PREFIX, CONFIG_KEY, POOLS_PREFIX]
        if host is not None:
            prefixes.append(NODES_PREFIX + host)
        if all_handles:
            prefixes.append(HANDLE_PREFIX)
        else:
            prefixes.extend(handle_key(h) for h in wanted)
        listing = await self.kv.list(*prefixes)
        return build_view(
            ((i.key, i.value, i.mod_revision) for i in listing.items),
            host=host,
            handles=None if all_handles else wanted,
            skipped=lambda key, error: log.warning("ipam.record_skipped", key=key, error=error),
            block_cache=self._blocks,
        )

    # --- the loop -----------------------------------------------------------------------------

    async def _apply(self, step: Step) -> bool:
        if not await apply_step(self.kv, step):
            self.conflicts += 1
            log.debug("ipam.race_lost", reason=step.reason)
            return False
        log.debug("ipam.step", reason=step.reason, addresses=list(step.addresses))
        return True

    async def _run(
        self, read: Callable[[], Awaitable[IpamView]], plan: Callable[[IpamView], Step], what: str
    ) -> list[Step]:
        """Plan and apply until a final step applies; the steps that applied."""
        return await run_steps(
            read, plan, what, apply=self._apply, pause=self.kv.pause, retries=self.retries
        )

    # --- operations ---------------------------------------------------------------------------

    async def auto_assign(self, req: AssignRequest) -> list[str]:
        """Assign `req.num` addresses; the IPs. Raises NoPools / NoFreeAddresses."""
        got: list[str] = []
        lost = 0
        for _ in range(MAX_STEPS):
            remaining = req.num - len(got)
            view = await self.view(host=req.host, handles=(req.handle_id,))
            step = plan_assign(view, replace(req, num=remaining), self.clock())
            if await self._apply(step):
                got.extend(step.addresses)
                if len(got) >= req.num:
                    return got
            else:
                lost += 1
                if lost > self.retries:
                    raise Contended(f"assign for {req.handle_id}: still contended")
                await self.kv.pause(backoff(lost))
        raise Contended(f"assign for {req.handle_id}: no progress after {MAX_STEPS} steps")

    async def release_by_handle(self, handle_id: str) -> list[str]:
        """Release every address of the handle; the IPs released (empty if none)."""
        steps = await self._run(
            lambda: self.view(handles=(handle_id,)),
            lambda v: plan_release_handle(v, handle_id),
            f"release {handle_id}",
        )
        return [a for s in steps for a in s.addresses]

    async def release_ips(self, releases: Sequence[ReleaseIP]) -> list[str]:
        """Release the given addresses; the ones that were already free."""
        already: list[str] = []

        def plan(view: IpamView) -> Step:
            step, free = plan_release_ips(view, releases)
            already[:] = free
            return step

        await self._run(lambda: self.view(all_handles=True), plan, "release IPs")
        return already

    async def release_affinity(self, host: str, cidr: str, *, require_empty: bool = False) -> None:
        await self._run(
            lambda: self.view(),
            lambda v: plan_release_affinity(v, host, cidr, require_empty=require_empty),
            f"release {cidr} of {host}",
        )

    async def release_host(self, host: str) -> None:
        """Give up every block affinity of `host` (the node is being removed)."""
        await self._run(lambda: self.view(), lambda v: plan_release_host(v, host), host)

    async def addresses_of(self, handle_id: str) -> list[str]:
        return handle_addresses(await self.view(handles=(handle_id,)), handle_id)

    async def config(self) -> IpamConfig:
        item = await self.kv.get(CONFIG_KEY)
        return IpamConfig() if item is None else IpamConfig.from_json(item.value)

    async def set_config(self, config: IpamConfig) -> None:
        """SetIPAMConfig, with Calico's checks."""
        problem = config.problem()
        if problem is not None:
            raise IpamError(problem)
        try:
            await self.kv.put(CONFIG_KEY, config.to_json())
        except DatastoreError as exc:
            raise IpamError(f"cannot write the IPAM config: {exc}") from exc
