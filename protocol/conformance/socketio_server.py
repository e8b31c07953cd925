"""The Socket.IO conformance server of the official socket.io-protocol test suite.

Namespaces ``/`` and ``/custom``; each join is greeted with an ``auth`` event
echoing the client's auth payload; ``message`` is answered by ``message-back``
and ``message-with-ack`` is acked, both with the arguments as received (binary
attachments included). Timers are the suite's: ping 300/200 ms, connect 1 s.
"""

from __future__ import annotations

import contextlib
import logging
from functools import partial
from typing import Any

import trio

from protocol.engineio.config import EngineIOConfig
from protocol.server import ServerConfig, SocketIOServer
from protocol.transport import RequestInfo

log = logging.getLogger(__name__)

AUTH_ECHO_DELAY_S = 0.02

CONFIG = ServerConfig(
    engineio=EngineIOConfig(
        ping_interval_ms=300,
        ping_timeout_ms=200,
        max_payload=1_000_000,
        cors_allowed_origins=None,
    ),
    connect_timeout_ms=1000,
    namespaces=("/", "/custom"),
)


def build_server(config: ServerConfig = CONFIG) -> SocketIOServer:
    """A server with the suite's handlers on both namespaces."""
    server = SocketIOServer(config)
    auth_by_sid: dict[str, Any] = {}

    async def on_connect(sid: str, auth: Any, request: RequestInfo) -> None:
        auth_by_sid[sid] = auth

    async def on_disconnect(sid: str, reason: str) -> None:
        auth_by_sid.pop(sid, None)

    async def on_connected(sid: str) -> None:
        # The suite's Node.js harness registers one 'message' listener at a time,
        # so two frames delivered in one TCP read lose the second: let the CONNECT
        # answer go out on its own before the auth echo follows it.
        await trio.sleep(AUTH_ECHO_DELAY_S)
        # A sid names one client in one namespace, so emit(to=sid) needs no namespace.
        await server.emit("auth", auth_by_sid.get(sid, {}), to=sid)

    async def on_message(sid: str, *args: Any) -> None:
        await server.emit("message-back", *args, to=sid)

    async def on_message_with_ack(sid: str, *args: Any) -> tuple[Any, ...]:
        return args

    for namespace in ("/", "/custom"):
        server.on_connect(on_connect, namespace)
        server.on_connected(on_connected, namespace)
        server.on_disconnect(on_disconnect, namespace)
        server.on("message", on_message, namespace)
        server.on("message-with-ack", on_message_with_ack, namespace)
    return server


async def _listeners(host: str, port: int) -> list[trio.SocketListener]:
    if host != "localhost":
        return list(await trio.open_tcp_listeners(port, host=host))
    # Node.js may resolve "localhost" to ::1 first: serve both loopbacks on one port.
    listeners = list(await trio.open_tcp_listeners(port, host="127.0.0.1"))
    bound = listeners[0].socket.getsockname()[1]
    with contextlib.suppress(OSError):
        listeners += await trio.open_tcp_listeners(bound, host="::1")
    return listeners


async def serve(host: str, port: int) -> None:
    server = build_server()
    listeners = await _listeners(host, port)
    async with trio.open_nursery() as nursery:
        _, bound_port = await nursery.start(partial(server.serve_listeners, listeners))
        # Tests parse this line to learn the port when started with --port 0.
        log.info("socketio conformance server listening on http://%s:%d", host, bound_port)


def main(port: int, host: str = "localhost") -> None:
    trio.run(serve, host, port)
