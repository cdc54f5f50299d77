"""One allocator process for the IPAM concurrency test: assigns `count` addresses as `host`
(handles <tag>-<n>), releasing every fifth one again by handle right away, and prints the
(handle, address) pairs it still holds as JSON. Run as `python -m interop.ipam_worker`."""

from __future__ import annotations

import asyncio
import json
import sys

from calico.store.kv import open_kv
from felix.ipam.allocator import AssignRequest
from felix.ipam.store import IpamStore


async def main(url: str, host: str, tag: str, count: int) -> None:
    held: dict[str, str] = {}
    async with open_kv(url) as kv:
        ipam = IpamStore(kv)
        for n in range(count):
            handle = f"{tag}-{n}"
            (ip,) = await ipam.auto_assign(AssignRequest(host, handle, attrs={"node": host}))
            held[handle] = ip
            if n % 5 == 4:
                released = await ipam.release_by_handle(handle)
                assert released == [ip], (handle, ip, released)
                del held[handle]
        print(json.dumps({"held": held, "conflicts": ipam.conflicts}))


if __name__ == "__main__":
    import logging

    logging.disable(logging.CRITICAL)
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
