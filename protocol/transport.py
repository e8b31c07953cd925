"""The seam between the Engine.IO server adapter and the Socket.IO layer above it.

The Socket.IO server never sees HTTP or WebSocket: it gets one
:class:`EngineIOSocket` per Engine.IO session, whatever transport the session is
on or upgrades to. Keeping this contract tiny lets each side be tested alone.
"""

from __future__ import annotations

import enum
from typing import Protocol

import msgspec


class CloseReason(enum.Enum):
    """Why a session ended; the Socket.IO layer turns these into disconnect reasons."""

    CLIENT = "client namespace disconnect"
    TRANSPORT_CLOSE = "transport close"
    TRANSPORT_ERROR = "transport error"
    PING_TIMEOUT = "ping timeout"
    SERVER = "server namespace disconnect"
    PARSE_ERROR = "parse error"


class RequestInfo(msgspec.Struct, frozen=True):
    """What the opening HTTP request told us about the peer, for policy decisions."""

    remote_host: str
    remote_port: int
    path: str
    query: dict[str, str]
    # Header names are lower-case; repeated headers are joined with ", ".
    headers: dict[str, str]


class SessionClosed(Exception):
    """Raised by ``receive``/``send`` once the session is over."""

    def __init__(self, reason: CloseReason) -> None:
        super().__init__(reason.value)
        self.reason = reason


class EngineIOSocket(Protocol):
    """One Engine.IO session as the layer above sees it."""

    @property
    def sid(self) -> str: ...

    @property
    def transport(self) -> str:
        """``"polling"`` or ``"websocket"``: the transport currently carrying messages."""
        ...

    @property
    def request(self) -> RequestInfo: ...

    async def receive(self) -> str | bytes:
        """Next message from the peer; raises :class:`SessionClosed` when the session ends."""
        ...

    async def send(self, message: str | bytes) -> None:
        """Queue one message for the peer; raises :class:`SessionClosed` if it is gone.

        Must not wait for the peer to read it beyond the session's bounded queue.
        """
        ...

    async def close(self, reason: CloseReason = CloseReason.SERVER) -> None:
        """End the session (idempotent); pending ``receive`` calls raise SessionClosed."""
        ...
