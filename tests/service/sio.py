"""A minimal Trio Socket.IO v5 client over a raw WebSocket, for the service tests.

The service tests need a client that runs in the test's own Trio loop and can
do what ordinary clients refuse to: send a foreign Origin, a wrong token, a
10 MB message, or vanish without closing. The protocol needed is a handful
of text frames: ``0{...}`` open, ``40`` connect, ``42<id>[...]`` event,
``43<id>[...]`` ack, ``2``/``3`` ping/pong.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import trio
from trio_websocket import (
    ConnectionClosed,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)


class Refused(Exception):
    """The server refused the WebSocket handshake (HTTP status) or the Socket.IO connect."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def url_for(port: int, host: str = "127.0.0.1") -> str:
    return f"ws://{host}:{port}/socket.io/?EIO=4&transport=websocket"


@asynccontextmanager
async def websocket(port: int, origin: str | None = None) -> AsyncIterator[WebSocketConnection]:
    """An Engine.IO WebSocket with its open packet read; Refused if the handshake fails."""
    headers = [(b"origin", origin.encode())] if origin is not None else None
    async with AsyncExitStack() as stack:
        try:
            connecting = open_websocket_url(
                url_for(port),
                extra_headers=headers,
                max_message_size=1 << 20,
                connect_timeout=10,
                disconnect_timeout=2,
            )
            ws = await stack.enter_async_context(connecting)
        except* HandshakeError as group:
            exc = _first_leaf(group)
            status = getattr(exc, "status_code", None)
            body = getattr(exc, "body", b"") or b""
            raise Refused(body.decode(errors="replace") or str(exc), status) from None
        with trio.fail_after(10):
            opening = await ws.get_message()
        assert isinstance(opening, str) and opening.startswith("0{"), opening
        yield ws


async def open_and_drop(port: int) -> None:
    """Open an Engine.IO WebSocket session, then vanish without a close frame (a pulled cable)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with trio.fail_after(10):
        await stream.send_all(request.encode())
        received = b""
        while b"\r\n\r\n" not in received or not received.split(b"\r\n\r\n", 1)[1]:
            chunk = await stream.receive_some(4096)
            assert chunk, "server closed before the open packet"
            received += chunk
    assert received.startswith(b"HTTP/1.1 101"), received
    await stream.aclose()


def _first_leaf(group: BaseExceptionGroup[HandshakeError]) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


class SioClient:
    """Socket.IO on one WebSocket; a reader task answers pings and routes acks."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self.sid = ""
        self._ids = itertools.count()
        self._acks: dict[int, trio.MemorySendChannel[Any]] = {}
        self.closed = trio.Event()
        # Events the server emitted to us: (name, arguments), in order.
        self.events: list[tuple[str, list[Any]]] = []
        self._new_event = trio.Event()

    async def join(self, auth: dict[str, Any] | None = None) -> None:
        await self.ws.send_message("40" + (json.dumps(auth) if auth is not None else ""))
        with trio.fail_after(10):
            while True:
                message = await self.ws.get_message()
                if message == "2":
                    await self.ws.send_message("3")
                    continue
                break
        assert isinstance(message, str)
        if message.startswith("44"):
            raise Refused(json.loads(message[2:]).get("message", message))
        assert message.startswith("40"), message
        self.sid = json.loads(message[2:])["sid"]

    async def read_forever(self) -> None:
        try:
            while True:
                message = await self.ws.get_message()
                if message == "2":
                    await self.ws.send_message("3")
                elif isinstance(message, str) and message.startswith("43"):
                    bracket = message.index("[")
                    ack_id = int(message[2:bracket])
                    channel = self._acks.pop(ack_id, None)
                    if channel is not None:
                        channel.send_nowait(json.loads(message[bracket:]))
                elif isinstance(message, str) and message.startswith("42["):
                    name, *args = json.loads(message[2:])
                    self.events.append((name, args))
                    self._new_event.set()
                    self._new_event = trio.Event()
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()

    async def next_event(self, name: str, timeout_s: float = 10) -> list[Any]:
        """The arguments of the next ``name`` event the server sends from now on."""
        seen = len(self.events)
        with trio.fail_after(timeout_s):
            while True:
                for event, args in self.events[seen:]:
                    if event == name:
                        return args
                seen = len(self.events)
                await self._new_event.wait()

    async def call(self, event: str, *args: Any, timeout_s: float = 20) -> Any:
        """Emit with an ack and return the ack's first argument."""
        ack_id = next(self._ids)
        send, receive = trio.open_memory_channel[Any](1)
        self._acks[ack_id] = send
        await self.ws.send_message(f"42{ack_id}" + json.dumps([event, *args]))
        with trio.fail_after(timeout_s):
            answer = await receive.receive()
        return answer[0] if answer else None


@asynccontextmanager
async def sio_client(
    port: int, auth: dict[str, Any] | None = None, origin: str | None = None
) -> AsyncIterator[SioClient]:
    """A connected Socket.IO client for the duration of the block."""
    async with websocket(port, origin) as ws:
        client = SioClient(ws)
        await client.join(auth)  # outside the nursery: Refused is raised bare
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.read_forever)
            try:
                yield client
            finally:
                nursery.cancel_scope.cancel()


@asynccontextmanager
async def sio_client_when_free(port: int, timeout_s: float = 10) -> AsyncIterator[SioClient]:
    """A connected client, retrying while the previous controller is still being released.

    The daemon frees control only after the departed controller's motion has
    been stopped, so a client that connects right after another one dropped
    may be refused for a moment; that is the policy, not a fault.
    """
    deadline = trio.current_time() + timeout_s
    async with AsyncExitStack() as stack:
        # No fail_after around the entry: the client's nursery outlives it.
        while True:
            try:
                client = await stack.enter_async_context(sio_client(port))
                break
            except Refused as refused:
                if "already connected" not in refused.reason:
                    raise
                if trio.current_time() > deadline:
                    raise
            await trio.sleep(0.05)
        yield client
