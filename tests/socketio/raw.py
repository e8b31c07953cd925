"""Raw Engine.IO/Socket.IO frames, the way the official protocol test suite talks.

The suite drives a server with bare WebSocket frames and HTTP requests, not a
Socket.IO client, so these helpers do the same with trio-websocket and httpx.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

STEP_S = 2.0  # deadline for any single expected frame or response


class RawSocket:
    """One raw WebSocket to ``/socket.io/``; every wait has a deadline."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws

    async def send(self, message: str | bytes) -> None:
        await self.ws.send_message(message)

    async def recv(self) -> str | bytes:
        """The very next frame, pings included."""
        with trio.fail_after(STEP_S):
            return await self.ws.get_message()

    async def recv_packet(self) -> str | bytes:
        """The next frame that is not a ping; pings are answered, as a client would."""
        while True:
            message = await self.recv()
            if message == "2":
                await self.send("3")
                continue
            return message

    async def recv_or_close(self) -> str | bytes | None:
        """The next frame, or None once the server has closed the connection."""
        try:
            return await self.recv()
        except ConnectionClosed:
            return None

    async def wait_closed(self, within: float = STEP_S) -> None:
        """Read until the server closes the connection; fail if it does not in time."""
        with trio.fail_after(within):
            try:
                while True:
                    await self.ws.get_message()
            except ConnectionClosed:
                return

    async def handshake(self) -> dict[str, Any]:
        opening = await self.recv()
        assert isinstance(opening, str) and opening.startswith("0")
        value: dict[str, Any] = json.loads(opening[1:])
        return value

    async def join(self, namespace_part: str = "") -> str:
        """Engine.IO handshake, then CONNECT (``namespace_part`` like ``/custom,``); the sid."""
        await self.send("40" + namespace_part)
        answer = await self.recv()
        assert isinstance(answer, str)
        prefix = "40" + (namespace_part.split(",")[0] + "," if namespace_part else "")
        assert answer.startswith(prefix), answer
        sid: str = json.loads(answer[len(prefix) :])["sid"]
        return sid


@asynccontextmanager
async def raw_socket(
    port: int, query: str = "EIO=4&transport=websocket", path: str = "/socket.io/"
) -> AsyncIterator[RawSocket]:
    url = f"ws://127.0.0.1:{port}{path}?{query}"
    async with open_websocket_url(url, connect_timeout=STEP_S, disconnect_timeout=1) as ws:
        yield RawSocket(ws)


@asynccontextmanager
async def connected_socket(port: int) -> AsyncIterator[RawSocket]:
    """The suite's ``initSocketIOConnection``: handshake, CONNECT to ``/``, auth echo read."""
    async with raw_socket(port) as sock:
        await sock.handshake()
        await sock.join()
        assert await sock.recv() == '42["auth",{}]'
        yield sock


def http_client(port: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=STEP_S)


async def open_polling_session(http: httpx.AsyncClient) -> str:
    response = await http.get("/socket.io/", params={"EIO": "4", "transport": "polling"})
    assert response.status_code == 200
    sid: str = json.loads(response.text[1:])["sid"]
    return sid
