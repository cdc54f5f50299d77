"""The control socket: a thin asyncio shell around `handlers`.

Each client connection carries any number of request lines and gets one response line for each,
in order. Responses are written in slices with a yield to the event loop between them, so a big
route dump never delays keepalives.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat

from bgpd.control.api import DaemonView
from bgpd.control.errors import ControlError, ControlSocketInUse
from bgpd.control.handlers import (
    MAX_REQUEST_BYTES,
    Response,
    complete,
    encode_response,
    error,
    handle_line,
    internal_error,
)
from common.log import get_logger

log = get_logger("bgpd.control")

# How long a live daemon on an existing socket gets to accept our probe connection.
PROBE_TIMEOUT = 1.0


class ControlServer:
    """Serve `view` on a unix stream socket at `path` (mode `mode`, group as the process)."""

    def __init__(self, path: str, view: DaemonView, *, mode: int = 0o660) -> None:
        self.path = path
        self.view = view
        self.mode = mode
        self._server: asyncio.AbstractServer | None = None
        self._inode: tuple[int, int] | None = None
        self._clients: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Bind and listen. Raises ControlSocketInUse if another process answers on `path`,
        ControlError if `path` is something other than a socket or cannot be bound."""
        if self._server is not None:
            raise ControlError("control server already started")
        parent = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(parent, mode=0o755, exist_ok=True)
        await self._clear_stale()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # The file is created with the socket inode's mode less the umask: start private,
            # widen to `mode` once bound, so it is never briefly more open than asked.
            os.fchmod(sock.fileno(), 0o600)
            sock.bind(self.path)
            os.chmod(self.path, self.mode)
            st = os.stat(self.path)
            self._inode = (st.st_dev, st.st_ino)
            self._server = await asyncio.start_unix_server(
                self._serve_client, sock=sock, limit=MAX_REQUEST_BYTES
            )
        except OSError as exc:
            sock.close()
            raise ControlError(f"cannot listen on {self.path}: {exc.strerror or exc}") from exc
        log.info("control.listening", path=self.path, mode=oct(self.mode))

    async def _clear_stale(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise ControlError(f"{self.path} exists and is not a socket; refusing to replace it")
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(self.path), PROBE_TIMEOUT
            )
        except (ConnectionRefusedError, FileNotFoundError):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            log.info("control.stale_socket_removed", path=self.path)
            return
        except TimeoutError:
            raise ControlSocketInUse(
                f"{self.path} is held by a process that does not answer; refusing to start"
            ) from None
        except OSError as exc:
            raise ControlError(f"cannot probe existing {self.path}: {exc.strerror or exc}") from exc
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        raise ControlSocketInUse(f"another daemon is listening on {self.path}; refusing to start")

    async def close(self) -> None:
        """Stop listening, drop clients and remove the socket file if it is still ours."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._clients):
            task.cancel()
        await asyncio.gather(*self._clients, return_exceptions=True)
        await server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            st = os.lstat(self.path)
            # Another process may have replaced the file since; only remove our own.
            if (st.st_dev, st.st_ino) == self._inode:
                os.unlink(self.path)
        log.info("control.closed", path=self.path)

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:
                    # Longer than the stream limit: answer once, then drop the connection,
                    # since the rest of that line cannot be framed.
                    await self._send(
                        writer, error(f"request longer than {MAX_REQUEST_BYTES} bytes")
                    )
                    break
                if not line:
                    break
                if line.strip():
                    await self._send(writer, await self._respond(line))
        except (ConnectionError, BrokenPipeError):
            pass
        finally:
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _respond(self, line: bytes) -> Response:
        try:
            return await complete(handle_line(line, self.view))
        except Exception as exc:
            log.exception("control.handler_failed", request=line[:200].decode(errors="replace"))
            return internal_error(exc)

    async def _send(self, writer: asyncio.StreamWriter, response: Response) -> None:
        written = False
        try:
            for piece in encode_response(response):
                writer.write(piece)
                written = True
                await writer.drain()
                await asyncio.sleep(0)
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as exc:
            # A record that cannot be encoded is a daemon bug. Before the first byte the client
            # still gets an error line; after it the line is broken, so drop the connection.
            log.exception("control.encode_failed")
            if written:
                raise ConnectionAbortedError("response encoding failed midway") from exc
            writer.write(b"".join(encode_response(internal_error(exc))))
            await writer.drain()
