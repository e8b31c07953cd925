"""Who may drive the rig: one controlling client at a time.

A second client is refused with a CONNECT_ERROR naming the holder, and the
first keeps working. When the controller leaves (closed, crashed, cable
pulled: the heartbeat notices within ping interval + ping timeout) every
motion is stopped *before* control is freed, so the next client never starts
a move that the clean-up then cancels.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ephysd.api import Api
from ephysd.config import Settings
from protocol.engineio.config import EngineIOConfig
from protocol.server import ConnectRefused, ServerConfig, SocketIOServer
from protocol.transport import RequestInfo

log = logging.getLogger(__name__)


class ControlPolicy:
    """The one-controller rule, as Socket.IO connect / disconnect hooks."""

    def __init__(
        self, stop_all: Callable[[], Awaitable[str]], *, stop_on_disconnect: bool = True
    ) -> None:
        self._stop_all = stop_all
        self._stop_on_disconnect = stop_on_disconnect
        self.controller: str | None = None
        self._peer = ""
        self._free = trio.Event()
        self._free.set()

    async def wait_until_free(self) -> None:
        """Return once no client holds control (after its clean-up finished)."""
        await self._free.wait()

    async def on_connect(self, sid: str, auth: Any, request: RequestInfo) -> None:
        peer = f"{request.remote_host}:{request.remote_port}"
        if self.controller is not None:
            message = (
                f"Cannot connect {sid} as {self.controller} (from {self._peer})"
                " is already connected and controls this rig."
            )
            log.warning("connection refused: %s from %s: %s", sid, peer, message)
            raise ConnectRefused(message)
        # Claimed before any await, so two simultaneous joins cannot both win.
        self.controller = sid
        self._peer = peer
        self._free = trio.Event()
        log.info("connection granted: %s from %s now controls the rig", sid, peer)

    async def on_disconnect(self, sid: str, reason: str) -> None:
        if sid != self.controller:
            return
        log.info("controller %s disconnected (%s)", sid, reason)
        try:
            if self._stop_on_disconnect:
                errors = await self._stop_all()
                if errors:
                    log.error("stopping motion after disconnect failed: %s", errors)
                else:
                    log.info("all motion stopped after controller left")
        finally:
            self.controller = None
            self._peer = ""
            self._free.set()


def server_config(settings: Settings) -> ServerConfig:
    origins: tuple[str, ...] | None = settings.allow_origin
    if "*" in settings.allow_origin:
        origins = None
    return ServerConfig(
        engineio=EngineIOConfig(
            ping_interval_ms=settings.ping_interval_ms,
            ping_timeout_ms=settings.ping_timeout_ms,
            cors_allowed_origins=origins,
        ),
        # Pinpoint gives up after 2 s; a silent session need not live longer.
        connect_timeout_ms=10000,
    )


def build_server(
    api: Api,
    stop_all: Callable[[], Awaitable[str]],
    settings: Settings,
    config: ServerConfig | None = None,
) -> tuple[SocketIOServer, ControlPolicy]:
    """A Socket.IO server answering every event through ``api``."""
    server = SocketIOServer(config or server_config(settings))
    policy = ControlPolicy(stop_all, stop_on_disconnect=settings.stop_on_disconnect)

    async def on_event(sid: str, event: str, *args: Any) -> str:
        return await api.handle(event, args)

    server.on_any(on_event)
    server.on_connect(policy.on_connect)
    server.on_disconnect(policy.on_disconnect)
    return server, policy
