"""Engine.IO v4 packet codec for WebSocket frames and HTTP long-polling payloads.

Pure functions, so both transports and the fuzz tests share one definition of
the wire format. Decoders only ever raise :class:`RemoteProtocolError`: whatever
a peer sends must turn into a protocol error the adapter can answer, never a
crash.
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Sequence

import msgspec

from protocol.errors import LocalProtocolError, RemoteProtocolError

RECORD_SEPARATOR = "\x1e"
_BINARY_PREFIX = "b"


class PacketType(enum.IntEnum):
    """The seven Engine.IO packet types; the value is the digit on the wire."""

    OPEN = 0
    CLOSE = 1
    PING = 2
    PONG = 3
    MESSAGE = 4
    UPGRADE = 5
    NOOP = 6


class Packet(msgspec.Struct, frozen=True):
    """One Engine.IO packet; ``data`` is ``bytes`` only for a binary MESSAGE."""

    type: PacketType
    data: str | bytes = ""


# Digit <-> type lookups: calling the enum per packet is measurably slow on the
# per-message path.
_BY_DIGIT = {str(int(t)): t for t in PacketType}
_DIGIT = {t: str(int(t)) for t in PacketType}


def _digit(p: Packet) -> str:
    try:
        return _DIGIT[p.type]
    except KeyError:
        raise LocalProtocolError(f"not an Engine.IO packet type: {p.type!r}") from None


def _check_encodable(p: Packet) -> None:
    if isinstance(p.data, bytes) and p.type is not PacketType.MESSAGE:
        raise LocalProtocolError(f"only MESSAGE packets may carry bytes, got {p!r}")


def encode_packet(p: Packet) -> str | bytes:
    """Frame one packet for WebSocket: a text frame, or raw bytes for a binary message."""
    if isinstance(p.data, bytes):
        _check_encodable(p)
        return p.data
    return _digit(p) + p.data


def _decode_text(text: str) -> Packet:
    if not text:
        raise RemoteProtocolError("empty Engine.IO packet")
    kind = _BY_DIGIT.get(text[0])
    if kind is None:
        raise RemoteProtocolError(f"unknown Engine.IO packet type {text[0]!r} in {text[:64]!r}")
    return Packet(kind, text[1:])


def decode_packet(frame: str | bytes) -> Packet:
    """Parse one WebSocket frame; a bytes frame is a binary MESSAGE."""
    if isinstance(frame, bytes):
        return Packet(PacketType.MESSAGE, frame)
    return _decode_text(frame)


def _encode_record(p: Packet) -> str:
    _check_encodable(p)
    if isinstance(p.data, bytes):
        return _BINARY_PREFIX + base64.b64encode(p.data).decode("ascii")
    if RECORD_SEPARATOR in p.data:
        # The separator cannot be escaped in a polling payload; sending it would
        # silently split the packet on the peer's side.
        raise LocalProtocolError(f"a polling packet cannot contain \\x1e: {p.data[:64]!r}")
    return _digit(p) + p.data


def encode_payload(packets: Sequence[Packet]) -> bytes:
    """Join packets into one long-polling body: records separated by ``\\x1e``."""
    if not packets:
        raise LocalProtocolError("a polling payload needs at least one packet")
    return RECORD_SEPARATOR.join(_encode_record(p) for p in packets).encode("utf-8")


def _decode_record(record: str) -> Packet:
    if record.startswith(_BINARY_PREFIX):
        try:
            data = base64.b64decode(record[1:], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise RemoteProtocolError(f"bad base64 in binary packet {record[:64]!r}") from exc
        return Packet(PacketType.MESSAGE, data)
    return _decode_text(record)


def decode_payload(body: bytes) -> list[Packet]:
    """Split a long-polling body into packets; empty records are malformed."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RemoteProtocolError(f"polling payload is not UTF-8: {body[:64]!r}") from exc
    return [_decode_record(record) for record in text.split(RECORD_SEPARATOR)]
