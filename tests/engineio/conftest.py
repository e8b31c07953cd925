"""Fixtures: real Engine.IO servers on ephemeral loopback ports, and real clients."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
import trio
import trio_websocket

from protocol.conformance.engineio_echo import echo
from protocol.conformance.engineio_echo import serve as serve_echo
from protocol.engineio.config import EngineIOConfig
from protocol.engineio.server import EngineIOServer
from protocol.transport import EngineIOSocket, RequestInfo

WS_TIMEOUT = 5.0


class EIO:
    """Raw Engine.IO v4 requests against one server, the way the official suite makes them."""

    def __init__(self, http: httpx.AsyncClient, port: int, path: str = "/engine.io/") -> None:
        self.http = http
        self.port = port
        self.url = f"http://127.0.0.1:{port}{path}"
        self.ws_url = f"ws://127.0.0.1:{port}{path}"

    async def get(self, query: str, **kwargs: Any) -> httpx.Response:
        return await self.http.get(f"{self.url}?{query}", **kwargs)

    async def post(self, query: str, body: bytes | str, **kwargs: Any) -> httpx.Response:
        content = body.encode() if isinstance(body, str) else body
        return await self.http.post(f"{self.url}?{query}", content=content, **kwargs)

    async def handshake(self) -> str:
        response = await self.get("EIO=4&transport=polling")
        assert response.status_code == 200
        sid: str = json.loads(response.text[1:])["sid"]
        return sid

    async def poll(self, sid: str) -> httpx.Response:
        return await self.get(f"EIO=4&transport=polling&sid={sid}")

    async def push(self, sid: str, body: bytes | str) -> httpx.Response:
        return await self.post(f"EIO=4&transport=polling&sid={sid}", body)

    def websocket(
        self, query: str = "EIO=4&transport=websocket", **kwargs: Any
    ) -> Any:  # an async context manager of trio_websocket.WebSocketConnection
        return trio_websocket.open_websocket_url(
            f"{self.ws_url}?{query}", connect_timeout=WS_TIMEOUT, disconnect_timeout=1, **kwargs
        )


async def receive(ws: trio_websocket.WebSocketConnection) -> str | bytes:
    """One message, or fail the test after a few seconds."""
    with trio.fail_after(WS_TIMEOUT):
        return await ws.get_message()


async def closed_code(ws: trio_websocket.WebSocketConnection) -> int | None:
    """Wait until the server closes the WebSocket (skipping messages); its close code."""
    with trio.fail_after(WS_TIMEOUT):
        try:
            while True:
                await ws.get_message()
        except trio_websocket.ConnectionClosed as exc:
            return None if exc.reason is None else exc.reason.code


async def refused_status(eio: EIO, query: str, **kwargs: Any) -> int:
    """The HTTP status with which the server refuses a WebSocket handshake."""
    with pytest.raises(trio_websocket.ConnectionRejected) as info:
        async with eio.websocket(query, **kwargs):
            pass
    status: int = info.value.status_code
    return status


StartServer = Callable[..., Awaitable[EIO]]


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        yield client


@pytest.fixture
async def eio(nursery: trio.Nursery, http: httpx.AsyncClient) -> EIO:
    """The conformance echo server (ping 300 ms, timeout 200 ms, CORS any)."""
    _host, port = await nursery.start(serve_echo, 0)
    return EIO(http, port)


@pytest.fixture
def start_server(nursery: trio.Nursery, http: httpx.AsyncClient) -> StartServer:
    """Start an EngineIOServer with the given config and handler (echo by default)."""

    async def start(
        config: EngineIOConfig | None = None,
        handler: Callable[[EngineIOSocket], Awaitable[None]] = echo,
        check_request: Callable[[RequestInfo], str | None] | None = None,
    ) -> EIO:
        config = config or EngineIOConfig(path="/engine.io/", cors_allowed_origins=None)
        server = EngineIOServer(config, handler, check_request)
        _host, port = await nursery.start(server.serve, "127.0.0.1", 0)
        return EIO(http, port, config.path)

    return start
