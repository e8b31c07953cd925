"""An in-memory Engine.IO session, so the Socket.IO server can be tested packet by packet.

The test plays the client: it pushes Socket.IO messages in and reads what the
server sent, with no HTTP or WebSocket in between.
"""

from __future__ import annotations

import trio

from protocol.transport import CloseReason, RequestInfo, SessionClosed

REQUEST = RequestInfo(
    remote_host="127.0.0.1",
    remote_port=50000,
    path="/socket.io/",
    query={"EIO": "4", "transport": "websocket"},
    headers={"user-agent": "test"},
)


class FakeEngineIOSocket:
    """Satisfies :class:`protocol.transport.EngineIOSocket`; the test drives the far end."""

    def __init__(self, sid: str = "eio-1") -> None:
        self.sid = sid
        self.transport = "websocket"
        self.request = REQUEST
        self._in_send, self._in_recv = trio.open_memory_channel[str | bytes](100)
        self._out_send, self._out_recv = trio.open_memory_channel[str | bytes](100)
        self.close_reason: CloseReason | None = None
        self.closed = trio.Event()

    # -- the server's side ------------------------------------------------------
    async def receive(self) -> str | bytes:
        try:
            return await self._in_recv.receive()
        except (trio.ClosedResourceError, trio.EndOfChannel):
            raise SessionClosed(self.close_reason or CloseReason.TRANSPORT_CLOSE) from None

    async def send(self, message: str | bytes) -> None:
        if self.close_reason is not None:
            raise SessionClosed(self.close_reason)
        await self._out_send.send(message)

    async def close(self, reason: CloseReason = CloseReason.SERVER) -> None:
        if self.close_reason is None:
            self.close_reason = reason
            self._in_recv.close()
            self._out_send.close()
            self.closed.set()

    # -- the test's (client's) side ---------------------------------------------
    async def push(self, *messages: str | bytes) -> None:
        for message in messages:
            await self._in_send.send(message)

    async def expect(self) -> str | bytes:
        """The next message the server sent; fails if none comes within 2 s."""
        with trio.fail_after(2):
            return await self._out_recv.receive()

    async def expect_nothing(self, wait: float = 0.05) -> None:
        with trio.move_on_after(wait):
            message = await self._out_recv.receive()
            raise AssertionError(f"unexpected message {message!r}")

    async def hang_up(self, reason: CloseReason = CloseReason.TRANSPORT_CLOSE) -> None:
        """The transport went away under the session."""
        await self.close(reason)
