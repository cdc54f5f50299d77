"""The metrics endpoint: a small HTTP/1.1 server on the daemon's event loop.

Scrapes are served on the loop itself, so the collector reads the daemon's state between
events, consistently and without locks (prometheus_client's own server would read it from
another thread). One request per connection; GET /metrics (or /) only.
"""

from __future__ import annotations

import asyncio
import contextlib

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from common.log import get_logger

log = get_logger("bgpd.metrics")

# A client gets this long to send its request head, and this much of it is read.
REQUEST_TIMEOUT = 10.0
MAX_HEAD = 8192


def parse_listen(text: str) -> tuple[str, int]:
    """'127.0.0.1:9179', '[::1]:9179' or ':9179' (all addresses) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected ADDR:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "::", int(port)


class MetricsServer:
    def __init__(self, host: str, port: int, collector: Collector) -> None:
        self.host = host
        self.port = port
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(self._serve, self.host, self.port)
        except OSError:
            if self.host != "::":
                raise
            # No IPv6 on this host: all IPv4 addresses instead.
            self._server = await asyncio.start_server(self._serve, "0.0.0.0", self.port)
        sockets = self._server.sockets
        if sockets and self.port == 0:
            self.port = int(sockets[0].getsockname()[1])
        log.info("metrics.listening", host=self.host, port=self.port)

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
            status, ctype, body = self._respond(head[:MAX_HEAD])
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            status, ctype, body = "400 Bad Request", "text/plain", b"bad request\n"
        except ConnectionError:
            writer.close()
            return
        try:
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
            )
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def _respond(self, head: bytes) -> tuple[str, str, bytes]:
        parts = head.split(b"\r\n", 1)[0].split()
        if len(parts) != 3 or parts[0] != b"GET":
            return "405 Method Not Allowed", "text/plain", b"GET /metrics only\n"
        path = parts[1].split(b"?", 1)[0]
        if path not in (b"/metrics", b"/"):
            return "404 Not Found", "text/plain", b"metrics are at /metrics\n"
        try:
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest(self.registry)
        except Exception:
            log.exception("metrics.collect_failed")
            return "500 Internal Server Error", "text/plain", b"collecting metrics failed\n"
