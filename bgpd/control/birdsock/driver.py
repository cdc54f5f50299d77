"""The BIRD socket's asyncio shell: a unix stream socket (mode 0660, as BIRD's), a
`BirdCli` per connection, the hello on connect, then one reply per command line, written
in pieces with a yield to the event loop between them."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable

from bgpd.control.birdsock.dialect import Dialect
from bgpd.control.birdsock.protocol import BirdCli
from bgpd.control.birdsock.view import BirdView
from bgpd.control.server import ControlServer
from common.log import get_logger

log = get_logger("bgpd.birdsock")


class BirdSocketServer(ControlServer):
    """`families` this socket answers for: ("ipv4",) as bird.ctl, ("ipv6",) as bird6.ctl,
    or both. Binding, refusing a socket another daemon holds, and removing only our own
    file on close are the control server's."""

    def __init__(
        self,
        path: str,
        view: BirdView,
        dialect: Dialect,
        families: Iterable[str],
        *,
        mode: int = 0o660,
    ) -> None:
        super().__init__(path, view, mode=mode)  # type: ignore[arg-type]
        self.bird_view = view
        self.dialect = dialect
        self.families = tuple(families)
        # Fail now, not at the first client, on an empty family list.
        BirdCli(view, dialect, self.families)

    async def start(self) -> None:
        await super().start()
        log.info("birdsock.listening", path=self.path, dialect=self.dialect.name,
                 families=list(self.families))

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        cli = BirdCli(self.bird_view, self.dialect, self.families)
        try:
            writer.write(cli.hello())
            await writer.drain()
            while True:
                try:
                    raw = await reader.readline()
                except ValueError:
                    # Longer than the stream limit: BIRD's answer, then drop the connection.
                    writer.write(cli.too_long())
                    await writer.drain()
                    break
                if not raw:
                    break
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if not line.strip():
                    continue
                try:
                    for piece in cli.replies(line, time.time()):
                        writer.write(piece)
                        await writer.drain()
                        await asyncio.sleep(0)
                except (ConnectionError, asyncio.CancelledError):
                    raise
                except Exception:
                    # A daemon bug: BIRD's clients wait for a final line, so give them one.
                    log.exception("birdsock.command_failed", command=line[:200])
                    writer.write(b"8000 internal error in bgpd\n")
                    await writer.drain()
        except (ConnectionError, BrokenPipeError):
            pass
        finally:
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()
