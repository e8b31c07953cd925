"""Tunables of the Engine.IO server, in one immutable value.

Everything a deployment may want to change lives here so the daemon's
configuration maps onto one struct, and tests can build servers with short
timers.
"""

from __future__ import annotations

import msgspec


class EngineIOConfig(msgspec.Struct, frozen=True):
    """Engine.IO server settings; times in the protocol's own unit (ms) unless named ``_s``."""

    ping_interval_ms: int = 25000
    ping_timeout_ms: int = 20000
    # Largest message (WebSocket) or POST body (polling) accepted, in bytes.
    max_payload: int = 1_000_000
    path: str = "/socket.io/"
    # None: any origin is allowed and echoed back. (): no CORS headers, and a
    # browser request from a foreign origin is refused. A tuple: exactly those.
    cors_allowed_origins: tuple[str, ...] | None = ()
    # Concurrent Engine.IO sessions; a handshake beyond this gets HTTP 503.
    max_connections: int = 100
    # Outgoing messages buffered per session before ``send`` waits.
    send_queue_size: int = 256
    # A WebSocket that answered the probe must send "5" within this time.
    upgrade_timeout_ms: int = 10000
    # Deadline for a client to send a complete request head / body chunk, and
    # for us to write a response; also the idle keep-alive limit.
    http_timeout_s: float = 20.0
    # Largest request head (request line + headers) h11 buffers.
    max_header_bytes: int = 16384
