"""Sans-IO Engine.IO v4 server session: handshake, heartbeat, upgrade and close.

The state machine holds every protocol rule that does not need a socket or a
clock, so the rules are tested with plain values and the Trio adapter only
moves bytes and sleeps until :meth:`EngineIOSession.next_deadline`. Time is
always passed in as ``now`` (seconds, any monotonic origin).
"""

from __future__ import annotations

import enum

import msgspec

from protocol.engineio.config import EngineIOConfig
from protocol.engineio.packets import Packet, PacketType
from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.transport import CloseReason

POLLING = "polling"
WEBSOCKET = "websocket"
TRANSPORTS = (POLLING, WEBSOCKET)


class SessionState(enum.Enum):
    """Where a session is in its life; upgrade steps are states of their own."""

    OPEN = "open"
    # A WebSocket for this sid is connected but has not sent "2probe" yet.
    PROBING = "probing"
    # "3probe" was answered; the client is pausing polling and will send "5".
    UPGRADING = "upgrading"
    CLOSED = "closed"


# Events: what the adapter must act on. Named after the protocol's own words.
class Message(msgspec.Struct, frozen=True):
    """A message from the peer, for the application."""

    data: str | bytes


class Ping(msgspec.Struct, frozen=True):
    """A heartbeat ping is due: send ``2`` on the active transport."""


class Pong(msgspec.Struct, frozen=True):
    """Answer the upgrade probe: send ``3probe`` on the new transport."""

    data: str = "probe"


class UpgradeProbed(msgspec.Struct, frozen=True):
    """The probe succeeded: release any pending poll with a noop (``6``)."""


class Upgrade(msgspec.Struct, frozen=True):
    """The session now runs on WebSocket; polling for this sid is dead."""


class UpgradeAborted(msgspec.Struct, frozen=True):
    """The upgrading WebSocket went away; the session stays on polling."""


class Close(msgspec.Struct, frozen=True):
    """The session is over."""

    reason: CloseReason


Event = Message | Ping | Pong | UpgradeProbed | Upgrade | UpgradeAborted | Close


class EngineIOSession:
    """One Engine.IO session on the server side; no I/O, no clock."""

    def __init__(self, sid: str, config: EngineIOConfig, transport: str, now: float) -> None:
        if transport not in TRANSPORTS:
            raise LocalProtocolError(f"unknown transport {transport!r}")
        self.sid = sid
        self.config = config
        self.transport = transport
        self.state = SessionState.OPEN
        self.close_reason: CloseReason | None = None
        self._interval = config.ping_interval_ms / 1000
        self._timeout = config.ping_timeout_ms / 1000
        self._next_ping_at = now + self._interval
        self._pong_deadline: float | None = None

    # -- handshake -----------------------------------------------------------
    def open_packet(self) -> Packet:
        """The handshake packet: exactly the five keys the protocol defines."""
        upgrades = [WEBSOCKET] if self.transport == POLLING else []
        body = {
            "sid": self.sid,
            "upgrades": upgrades,
            "pingInterval": self.config.ping_interval_ms,
            "pingTimeout": self.config.ping_timeout_ms,
            "maxPayload": self.config.max_payload,
        }
        return Packet(PacketType.OPEN, msgspec.json.encode(body).decode("utf-8"))

    # -- packets on the session's current transport ---------------------------
    def receive(self, packet: Packet, now: float) -> list[Event]:
        """A packet arrived on the active transport (polling POST or the WebSocket)."""
        if self.state is SessionState.CLOSED:
            raise LocalProtocolError(f"session {self.sid} is closed; got {packet!r}")
        kind = packet.type
        if kind is PacketType.MESSAGE:
            return [Message(packet.data)]
        if kind is PacketType.PONG:
            self._pong_deadline = None
            self._next_ping_at = now + self._interval
            return []
        if kind is PacketType.NOOP:
            return []
        if kind is PacketType.CLOSE:
            return self.close(CloseReason.CLIENT)
        # v4 servers ping and clients pong; OPEN/UPGRADE never come this way.
        raise RemoteProtocolError(f"unexpected packet from client: {packet!r}")

    # -- heartbeat -------------------------------------------------------------
    def next_deadline(self) -> float:
        """When :meth:`tick` next has something to do."""
        if self._pong_deadline is not None:
            return self._pong_deadline
        return self._next_ping_at

    def tick(self, now: float) -> list[Event]:
        """What the heartbeat requires at ``now``: a ping, a ping-timeout close, or nothing."""
        if self.state is SessionState.CLOSED:
            return []
        if self._pong_deadline is not None:
            if now >= self._pong_deadline:
                return self.close(CloseReason.PING_TIMEOUT)
            return []
        if now >= self._next_ping_at:
            self._pong_deadline = now + self._timeout
            return [Ping()]
        return []

    # -- upgrade -----------------------------------------------------------------
    def start_upgrade(self) -> None:
        """A WebSocket arrived carrying this sid; only one, and only from polling."""
        if self.state is not SessionState.OPEN or self.transport != POLLING:
            raise RemoteProtocolError(
                f"session {self.sid} cannot upgrade (state {self.state.value}, "
                f"transport {self.transport})"
            )
        self.state = SessionState.PROBING

    def receive_upgrade(self, packet: Packet, now: float) -> list[Event]:
        """A packet arrived on the WebSocket that is upgrading this session."""
        if self.state is SessionState.PROBING:
            if packet == Packet(PacketType.PING, "probe"):
                self.state = SessionState.UPGRADING
                return [Pong("probe"), UpgradeProbed()]
        elif self.state is SessionState.UPGRADING:
            if packet.type is PacketType.UPGRADE:
                self.state = SessionState.OPEN
                self.transport = WEBSOCKET
                return [Upgrade()]
            if packet.type is PacketType.NOOP:
                return []
        else:
            raise LocalProtocolError(f"session {self.sid} is not upgrading; got {packet!r}")
        raise RemoteProtocolError(f"unexpected packet during upgrade: {packet!r}")

    def abort_upgrade(self) -> list[Event]:
        """The upgrading WebSocket failed or timed out before ``5``; keep polling."""
        if self.state in (SessionState.PROBING, SessionState.UPGRADING):
            self.state = SessionState.OPEN
            return [UpgradeAborted()]
        return []

    # -- close -------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self.state is SessionState.CLOSED

    def close(self, reason: CloseReason) -> list[Event]:
        """End the session; closing twice is a no-op so every path may call it."""
        if self.state is SessionState.CLOSED:
            return []
        self.state = SessionState.CLOSED
        self.close_reason = reason
        return [Close(reason)]
