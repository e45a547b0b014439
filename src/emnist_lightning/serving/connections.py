"""HTTP connections that cannot be held open by a client that sends slowly.

uvicorn times out only idle keep-alive connections: a client that sends its headers or body
a byte at a time keeps a connection (and its slot under the connection cap) for ever. Here
every request must arrive whole within `read_timeout` seconds of its first byte (or of the
connection opening), or the connection is closed.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class ReadTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for reading each request."""

    read_timeout: float = 10.0
    _read_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._read_deadline is None:
            self._arm()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._read_deadline = self.loop.call_later(self.read_timeout, self._read_timed_out)

    def _disarm(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _read_timed_out(self) -> None:
        self._read_deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def with_read_timeout(seconds: float) -> type[ReadTimeoutProtocol]:
    """The protocol class to pass as uvicorn's `http` setting."""
    return type("ReadTimeoutProtocol", (ReadTimeoutProtocol,), {"read_timeout": float(seconds)})
