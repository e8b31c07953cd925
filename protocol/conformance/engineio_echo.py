"""Engine.IO conformance server: every message a client sends comes straight back.

The official engine.io-protocol test suite drives it at
``http://localhost:3000/engine.io/`` with short timers (ping 300 ms, timeout
200 ms) so heartbeat failures show up within a test's timeout.
"""

from __future__ import annotations

import contextlib
import logging

import trio

from protocol.engineio.config import EngineIOConfig
from protocol.engineio.server import EngineIOServer
from protocol.transport import EngineIOSocket, SessionClosed

log = logging.getLogger(__name__)

CONFIG = EngineIOConfig(
    ping_interval_ms=300,
    ping_timeout_ms=200,
    max_payload=1_000_000,
    path="/engine.io/",
    cors_allowed_origins=None,
)


async def echo(socket: EngineIOSocket) -> None:
    """Send every message back until the session ends."""
    try:
        while True:
            await socket.send(await socket.receive())
    except SessionClosed:
        pass


async def _listeners(port: int) -> list[trio.SocketListener]:
    # "localhost" may resolve to ::1 first (Node.js does), so listen on both
    # loopback addresses when the machine has IPv6.
    listeners = list(await trio.open_tcp_listeners(port, host="127.0.0.1"))
    bound = listeners[0].socket.getsockname()[1]
    with contextlib.suppress(OSError):
        listeners += await trio.open_tcp_listeners(bound, host="::1")
    return listeners


async def serve(
    port: int, *, task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run the echo server on loopback ``port`` (0: any free port) until cancelled."""
    server = EngineIOServer(CONFIG, echo)
    await server.serve_listeners(await _listeners(port), task_status=task_status)


def main(port: int) -> None:
    """Run until Ctrl-C (the caller handles KeyboardInterrupt)."""
    trio.run(serve, port)
