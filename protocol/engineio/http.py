"""One HTTP/1.1 server connection on a Trio stream, parsed by h11, with hard limits.

Every read and write has a deadline, request heads are capped by h11's
``max_incomplete_event_size``, and bodies are counted as they stream in so an
oversized POST is refused without ever being held whole.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus

import h11
import msgspec
import trio

from protocol.transport import RequestInfo

log = logging.getLogger(__name__)

_RECV_CHUNK = 65536
# How long we keep reading (and discarding) after refusing a request whose body
# is still arriving, so the client reads our answer instead of a TCP reset.
_LINGER_S = 1.0


class Response(msgspec.Struct, frozen=True):
    """The application's answer to a plain HTTP request (a page, not Engine.IO)."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


# The application's hook for requests outside the Engine.IO path: called with
# the method and the request once it passed the server's own checks; None
# means "not mine" (404).
PageHandler = Callable[[str, RequestInfo], Awaitable[Response | None]]


class PayloadTooLarge(Exception):
    """The request body is over the limit (declared or counted)."""


class PeerGone(Exception):
    """The client closed the connection or stopped talking in time."""


class HTTPConnection:
    """Request/response plumbing for one client connection."""

    def __init__(self, stream: trio.SocketStream, timeout: float, max_header_bytes: int) -> None:
        self.stream = stream
        self.timeout = timeout
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=max_header_bytes)
        self.early_bytes = 0
        self.max_header_bytes = max_header_bytes
        try:
            peer = stream.socket.getpeername()
            self.peer: tuple[str, int] = (str(peer[0]), int(peer[1]))
        except (OSError, IndexError, TypeError, ValueError):
            self.peer = ("unknown", 0)

    async def next_event(self, deadline: float | None = None) -> h11.Event | type[h11.PAUSED]:
        """Next h11 event, read by ``deadline`` (default: the timeout from now).

        The deadline covers the whole event, not each read, so a client that
        drips a request head a byte at a time still runs out of time.
        """
        if deadline is None:
            deadline = trio.current_time() + self.timeout
        while True:
            event = self.h11.next_event()
            if event is h11.PAUSED or isinstance(event, h11.Event):
                return event
            with trio.move_on_at(deadline) as scope:
                try:
                    data = await self.stream.receive_some(self._chunk_size())
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    raise PeerGone from exc
            if scope.cancelled_caught:
                raise PeerGone("timed out waiting for the client")
            self.h11.receive_data(bytes(data))

    def _chunk_size(self) -> int:
        # While a request head is expected, read no more than the head limit at
        # once: h11 only enforces its limit on an incomplete head, so a big
        # read could carry an oversized but complete one past it.
        if self.h11.their_state is h11.IDLE:
            return self.max_header_bytes
        return _RECV_CHUNK

    async def read_body(self, limit: int) -> bytes:
        """The whole request body, refused with PayloadTooLarge past ``limit`` bytes."""
        chunks: list[bytes] = []
        total = 0
        deadline = trio.current_time() + self.timeout
        while True:
            event = await self.next_event(deadline)
            if isinstance(event, h11.Data):
                total += len(event.data)
                if total > limit:
                    raise PayloadTooLarge
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(chunks)
            else:
                raise PeerGone(f"unexpected {event!r} in request body")

    async def send(self, *events: h11.Event) -> None:
        data = b"".join(self.h11.send(e) or b"" for e in events)
        try:
            with trio.fail_after(self.timeout):
                await self.stream.send_all(data)
        except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise PeerGone from exc

    async def respond(
        self,
        status: int,
        body: bytes,
        headers: list[tuple[str, str]],
        *,
        close: bool = False,
    ) -> None:
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        if status != 204:
            raw.append((b"content-length", str(len(body)).encode("ascii")))
        if close:
            raw.append((b"connection", b"close"))
        phrase = HTTPStatus(status).phrase.encode("ascii")
        events: list[h11.Event] = [h11.Response(status_code=status, headers=raw, reason=phrase)]
        if body:
            events.append(h11.Data(data=body))
        events.append(h11.EndOfMessage())
        await self.send(*events)

    async def watch_for_eof(self, max_early_bytes: int) -> None:
        """Return when the client hangs up while we hold its request (a pending poll).

        Bytes that arrive meanwhile (a pipelined request) are kept for h11; too
        many of them count as a hang-up so memory stays bounded.
        """
        while True:
            try:
                data = await self.stream.receive_some(_RECV_CHUNK)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return
            self.early_bytes += len(data)
            if self.early_bytes > max_early_bytes:
                return
            self.h11.receive_data(bytes(data))

    async def linger_close(self) -> None:
        """Close after a refusal: stop writing, drain what the peer still sends, then close."""
        with trio.move_on_after(_LINGER_S):
            try:
                await self.stream.send_eof()
                while await self.stream.receive_some(_RECV_CHUNK):
                    pass
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
        await self.aclose()

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(1.0):
            await self.stream.aclose()
