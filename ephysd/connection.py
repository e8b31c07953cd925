"""Who may drive the rig, and how the Socket.IO server reaches the API.

Admission happens in three places. Every HTTP/WebSocket request passes the
:class:`~ephysd.security.AccessPolicy` (network allow list, browser Origin)
before an Engine.IO session exists; so does every request for the rig page
(:mod:`ephysd.page`), served on the same port. A Socket.IO CONNECT must carry
the token if one is configured. A client that asks for the observer role
(:mod:`ephysd.observers`) then joins read-only, up to a limit, and never
touches control. Every other client is under the one-controller rule: a second
one is refused with a CONNECT_ERROR naming the holder, and the first keeps
working.

When the controller leaves (closed, crashed, cable pulled: the heartbeat
notices within ping interval + ping timeout) every motion is stopped *before*
control is freed, so the next client never starts a move that the clean-up
then cancels. Each connection has a request budget: a request over it waits
for budget before it is served (not answered with an error, unless the client
floods so far past it that half its handler slots already wait, see
:class:`~ephysd.security.RequestRateLimiter`), while ``stop``, ``stop_all``
and ``abort_jackhammer`` never wait.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ephysd.api import Answer, Api
from ephysd.config import Settings, observer_limit
from ephysd.observers import OBSERVER, Observers, RoleError, client_label, requested_role
from ephysd.page import serve_page
from ephysd.security import (
    DEFAULT_BURST,
    DEFAULT_RATE_PER_S,
    MAX_WAITING,
    NEVER_LIMITED,
    TOO_MANY_REQUESTS,
    AccessPolicy,
    RequestRateLimiter,
)
from ephysd.startup import access_policy
from protocol.engineio.config import EngineIOConfig
from protocol.server import ConnectRefused, ServerConfig, SocketIOServer
from protocol.transport import RequestInfo

log = logging.getLogger(__name__)


class ControlPolicy:
    """The one-controller rule (and token check), as Socket.IO connect / disconnect hooks."""

    def __init__(
        self,
        stop_all: Callable[[], Awaitable[str]],
        *,
        stop_on_disconnect: bool = True,
        access: AccessPolicy | None = None,
        rate: float = DEFAULT_RATE_PER_S,
        burst: float = DEFAULT_BURST,
        max_observers: int = 8,
        max_waiting: int = MAX_WAITING,
    ) -> None:
        self._stop_all = stop_all
        self._stop_on_disconnect = stop_on_disconnect
        self._access = access
        self._rate = rate
        self._burst = burst
        self._max_waiting = max_waiting
        self.observers = Observers(max_observers, lambda: self._new_limiter().delay_s)
        self.controller: str | None = None
        self._peer = ""
        self._limiter: RequestRateLimiter | None = None
        self._free = trio.Event()
        self._free.set()
        # Told "host:port" of the new controller, or None when control is free.
        self.on_control_change: Callable[[str | None], Awaitable[None]] | None = None

    def _new_limiter(self) -> RequestRateLimiter:
        return RequestRateLimiter(self._rate, self._burst, max_waiting=self._max_waiting)

    async def _announce(self, client: str | None) -> None:
        if self.on_control_change is not None:
            try:
                await self.on_control_change(client)
            except Exception:
                log.exception("control-change hook failed")

    @property
    def controller_peer(self) -> str | None:
        """``host:port`` of the controlling client, None when control is free."""
        return self._peer if self.controller is not None else None

    async def wait_until_free(self) -> None:
        """Return once no client holds control (after its clean-up finished)."""
        await self._free.wait()

    def admit(self, sid: str, event: str) -> float | None:
        """How long this request of ``sid`` must wait for its budget (0.0: serve
        it now), or None to refuse it: ``sid`` neither holds control nor
        observes (stops from anyone still pass), or floods far past its budget.
        Each observer has a budget of its own."""
        if sid in self.observers:
            return self.observers.delay_s(sid, event)
        if sid != self.controller or self._limiter is None:
            return 0.0 if event in NEVER_LIMITED else None
        return self._limiter.delay_s(event)

    async def on_connect(self, sid: str, auth: Any, request: RequestInfo) -> None:
        peer = f"{request.remote_host}:{request.remote_port}"
        if self._access is not None:
            refusal = self._access.check_auth(auth)
            if refusal is not None:
                log.warning("connection refused: %s from %s: %s", sid, peer, refusal)
                raise ConnectRefused(refusal)
        try:
            role = requested_role(auth)
        except RoleError as exc:
            log.warning("connection refused: %s from %s: %s", sid, peer, exc)
            raise ConnectRefused(str(exc)) from None
        if role == OBSERVER:
            refusal = self.observers.admit(sid, peer, client_label(auth))
            if refusal is not None:
                log.warning("connection refused: %s from %s: %s", sid, peer, refusal)
                raise ConnectRefused(refusal)
            return
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
        self._limiter = self._new_limiter()
        self._free = trio.Event()
        log.info("connection granted: %s from %s now controls the rig", sid, peer)
        await self._announce(peer)

    async def on_disconnect(self, sid: str, reason: str) -> None:
        if self.observers.leave(sid, reason) or sid != self.controller:
            return
        log.info("controller %s disconnected (%s)", sid, reason)
        try:
            if self._stop_on_disconnect:
                errors = await self._stop_all()
                if errors:
                    log.error("stopping motion after disconnect failed: %s", errors)
                else:
                    log.info("all motion stopped after the controller left")
        finally:
            self.controller = None
            self._peer = ""
            self._limiter = None
            self._free.set()
        await self._announce(None)


def server_config(settings: Settings) -> ServerConfig:
    return ServerConfig(
        engineio=EngineIOConfig(
            ping_interval_ms=settings.ping_interval_ms,
            ping_timeout_ms=settings.ping_timeout_ms,
            # The Origin rule is AccessPolicy.check_request's (SIGHUP can change
            # it; this frozen config cannot): the Engine.IO layer only echoes
            # CORS headers, and a foreign origin is refused (403) by the policy.
            cors_allowed_origins=None,
            max_connections=settings.limits.max_connections,
            max_payload=settings.limits.max_payload,
        ),
        # Pinpoint gives up after 2 s; a silent session need not live longer.
        connect_timeout_ms=10000,
    )


def build_server(
    api: Api,
    stop_all: Callable[[], Awaitable[str]],
    settings: Settings,
    config: ServerConfig | None = None,
    access: AccessPolicy | None = None,
) -> tuple[SocketIOServer, ControlPolicy]:
    """A Socket.IO server answering every event through ``api``."""
    access = access or access_policy(settings)
    config = config or server_config(settings)
    server = SocketIOServer(config, check_request=access.check_request, pages=serve_page)
    policy = ControlPolicy(
        stop_all,
        stop_on_disconnect=settings.stop_on_disconnect,
        access=access,
        rate=settings.limits.rate,
        burst=settings.limits.burst,
        max_observers=observer_limit(settings.limits),
        # Requests waiting for budget never take more than half a client's
        # handler slots: the rest read and run its stop at once.
        max_waiting=config.max_concurrent_handlers // 2,
    )
    observers = policy.observers

    async def on_event(sid: str, event: str, *args: Any) -> Answer:
        wait_s = policy.admit(sid, event)
        if wait_s is None:
            return TOO_MANY_REQUESTS
        if wait_s:
            # Over budget: slowed down. Only this request waits, on its own
            # handler task; the client's later stops are still read.
            await trio.sleep(wait_s)
        if sid in observers:
            return await observers.answer(api, sid, event, args)
        return await api.answer(event, args)

    server.on_any(on_event)
    server.on_connect(policy.on_connect)
    server.on_disconnect(policy.on_disconnect)
    return server, policy
