"""The official JavaScript socket.io-client and python-socketio's AsyncClient against our server.

Each client runs as a subprocess (Node 20 / an asyncio interpreter) and prints
one JSON line describing what it saw; our server runs in-process on an
ephemeral port. Polling-only, WebSocket-only and polling-then-upgrade are
each exercised with acks and binary in both directions.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import pytest
import trio

from protocol.engineio.config import EngineIOConfig
from protocol.server import ServerConfig, SocketIOServer
from protocol.transport import RequestInfo
from tests.socketio.subprocesses import HERE, PYTHON, REPO

NODE = shutil.which("node") or "/usr/bin/node"
CLIENT_DEADLINE_S = 30
MODES = ["polling", "websocket", "upgrade"]


def build_server() -> SocketIOServer:
    server = SocketIOServer(
        ServerConfig(
            engineio=EngineIOConfig(ping_interval_ms=2000, ping_timeout_ms=2000),
            connect_timeout_ms=5000,
        )
    )
    auths: dict[str, Any] = {}

    async def on_connect(sid: str, auth: Any, request: RequestInfo) -> None:
        auths[sid] = auth

    async def on_connected(sid: str) -> None:
        await server.emit("welcome", auths.get(sid), to=sid)

    async def echo(sid: str, *args: Any) -> tuple[Any, ...]:
        return args

    async def emit_back(sid: str, *args: Any) -> None:
        await server.emit("echoed", *args, to=sid)

    async def ask_client(sid: str, *args: Any) -> tuple[Any, ...]:
        return tuple(await server.call("question", *args, to=sid, timeout=5))

    server.on_connect(on_connect)
    server.on_connected(on_connected)
    server.on("echo", echo)
    server.on("emit_back", emit_back)
    server.on("ask_client", ask_client)
    return server


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with trio.open_nursery() as nursery:
        _, port = await nursery.start(partial(build_server().serve, "127.0.0.1", 0))
        yield f"http://127.0.0.1:{port}"
        nursery.cancel_scope.cancel()


async def run_client(args: list[str]) -> dict[str, Any]:
    with trio.fail_after(CLIENT_DEADLINE_S):
        done = await trio.run_process(
            args, capture_stdout=True, capture_stderr=True, check=False, cwd=REPO
        )
    out = done.stdout.decode()
    assert done.returncode == 0, f"client failed: {out}\n{done.stderr.decode()[-2000:]}"
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("mode", MODES)
async def test_official_js_client_talks_to_our_server(url: str, mode: str) -> None:
    result = await run_client([NODE, str(HERE / "js" / "client.cjs"), url, mode])
    expected_first = "websocket" if mode == "websocket" else "polling"
    assert result["firstTransport"] == expected_first
    assert result["finalTransport"] == ("polling" if mode == "polling" else "websocket")
    assert result["welcome"] == {"token": "js"}
    assert result["echo"] == ["a", 1, {"b": [True, None]}]
    assert result["binary"] == [[1, 2, 3], [255]]
    assert result["binaryIsBuffer"] is True
    assert result["echoed"] == ["x", [9]]
    assert result["asked"] == ["answer", "q"]


@pytest.mark.parametrize("mode", MODES)
async def test_python_socketio_async_client_talks_to_our_server(url: str, mode: str) -> None:
    result = await run_client([PYTHON, str(HERE / "py" / "psio_client.py"), url, mode])
    assert result["transport"] == ("polling" if mode == "polling" else "websocket")
    assert result["welcome"] == {"token": "py"}
    assert result["echo"] == ["a", 1, {"b": [True, None]}]
    assert result["binary"] == ["AQID", "ff"]
    assert result["echoed"] == ["x", "09"]
    assert result["asked"] == ["answer", "q"]
