"""Socket.IO v5 packet codec: text packets, namespaces, ack ids, binary attachments.

Pure and sans-IO, so the server, the client and the fuzz tests share one
definition of the wire format. The decoder is as strict as the reference
parser (socket.io-parser 4.x) and a little stricter where the reference lets
nonsense through (ack ids on CONNECT, an ACK with no id): whatever a peer
sends either becomes a :class:`Packet` or raises :class:`RemoteProtocolError`,
which the adapters answer by closing the connection.

Binary packets travel as one text message (``51-[...]`` with
``{"_placeholder":true,"num":i}`` where each ``bytes`` was) followed by one
binary message per attachment. Decoded packets are always reported as
``EVENT``/``ACK`` with the ``bytes`` put back in place, so callers never see
placeholders.
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec

from protocol.errors import LocalProtocolError, RemoteProtocolError

# Event names the reference implementation keeps for itself; a peer must not send
# them and we must not emit them.
RESERVED_EVENTS = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}
)
DEFAULT_MAX_ATTACHMENTS = 10
# JavaScript peers hold ack ids in a double; beyond 2**53 they stop being exact.
MAX_ACK_ID = 2**53 - 1
_MAX_ID_DIGITS = 16
_MAX_ATTACHMENT_DIGITS = 6

_json_encode = msgspec.json.encode
_json_decode = msgspec.json.decode
_BINARY_TYPES = (bytes, bytearray, memoryview)


class PacketType(enum.IntEnum):
    """The seven Socket.IO packet types; the value is the digit on the wire."""

    CONNECT = 0
    DISCONNECT = 1
    EVENT = 2
    ACK = 3
    CONNECT_ERROR = 4
    BINARY_EVENT = 5
    BINARY_ACK = 6


class Packet(msgspec.Struct, frozen=True):
    """One Socket.IO packet.

    ``data`` is the JSON payload as Python values (``None`` when absent), with
    ``bytes`` wherever a binary attachment goes. ``attachments`` is informative
    on decoded packets (how many binary messages followed) and ignored when
    encoding: the encoder counts the ``bytes`` itself.
    """

    type: PacketType
    namespace: str = "/"
    data: Any = None
    id: int | None = None
    attachments: int = 0


def event_packet(
    event: str, args: tuple[Any, ...] | list[Any], namespace: str = "/", id: int | None = None
) -> Packet:
    """An EVENT (binary or not, the encoder decides) emitting ``event`` with ``args``."""
    return Packet(PacketType.EVENT, namespace, [event, *args], id)


def ack_packet(args: tuple[Any, ...] | list[Any], id: int, namespace: str = "/") -> Packet:
    """An ACK answering ack ``id`` with ``args``."""
    return Packet(PacketType.ACK, namespace, list(args), id)


# --------------------------------------------------------------------------- encoding


_SCALAR_TYPES = frozenset({str, int, float, bool, type(None)})


def _has_binary(data: Any) -> bool:
    # Called on every outgoing event and ack: scalars are checked by exact type
    # first, which is most of what the daemon sends.
    t = type(data)
    if t in _SCALAR_TYPES:
        return False
    if t is list or t is tuple:
        return any(type(item) not in _SCALAR_TYPES and _has_binary(item) for item in data)
    if t is dict:
        return any(type(v) not in _SCALAR_TYPES and _has_binary(v) for v in data.values())
    if isinstance(data, _BINARY_TYPES):
        return True
    if isinstance(data, list | tuple):
        return any(_has_binary(item) for item in data)
    if isinstance(data, dict):
        return any(_has_binary(item) for item in data.values())
    return False


def _deconstruct(data: Any, buffers: list[bytes]) -> Any:
    """Replace each binary value with a numbered placeholder, collecting the bytes."""
    if isinstance(data, _BINARY_TYPES):
        buffers.append(bytes(data))
        return {"_placeholder": True, "num": len(buffers) - 1}
    if isinstance(data, list | tuple):
        return [_deconstruct(item, buffers) for item in data]
    if isinstance(data, dict):
        return {key: _deconstruct(value, buffers) for key, value in data.items()}
    return data


_SEQUENCES = (list, tuple)


def _check_outgoing(packet: Packet) -> None:
    # On every emit and ack: exact-type tests first, the error text only on failure.
    ns = packet.namespace
    if ns != "/" and (not ns.startswith("/") or "," in ns):
        raise LocalProtocolError(f"namespace must start with '/' and hold no ',': {ns!r}")
    t = packet.type
    data = packet.data
    ack_id = packet.id
    if ack_id is not None and (
        type(ack_id) is not int or not 0 <= ack_id <= MAX_ACK_ID or t not in _ID_TYPES
    ):
        raise LocalProtocolError(f"bad ack id {ack_id!r} for {t.name}")
    if t is PacketType.EVENT or t is PacketType.BINARY_EVENT:
        ok = (
            isinstance(data, _SEQUENCES)
            and len(data) > 0
            and isinstance(data[0], str)
            and data[0] not in RESERVED_EVENTS
        )
    elif t is PacketType.ACK or t is PacketType.BINARY_ACK:
        ok = isinstance(data, _SEQUENCES) and ack_id is not None
    elif t is PacketType.CONNECT:
        ok = data is None or isinstance(data, dict)
    elif t is PacketType.DISCONNECT:
        ok = data is None
    else:
        ok = isinstance(data, str | dict)
    if not ok:
        raise LocalProtocolError(f"invalid {t.name} packet: {packet!r}")


def _dumps(data: Any) -> str:
    try:
        return _json_encode(data).decode("utf-8")
    except (TypeError, ValueError, msgspec.EncodeError, UnicodeEncodeError) as exc:
        raise LocalProtocolError(f"payload is not JSON-serialisable: {exc}") from exc


def encode(packet: Packet) -> list[str | bytes]:
    """Encode one packet into Engine.IO messages: the text part, then each attachment.

    An EVENT or ACK whose data holds ``bytes`` goes out as BINARY_EVENT/BINARY_ACK.
    Raises :class:`LocalProtocolError` for a packet we must not send.
    """
    _check_outgoing(packet)
    t = packet.type
    data = packet.data
    buffers: list[bytes] = []
    if t in _ID_TYPES and _has_binary(data):
        data = _deconstruct(data, buffers)
        t = PacketType.BINARY_EVENT if t in _EVENT_TYPES else PacketType.BINARY_ACK
        head = f"{int(t)}{len(buffers)}-"
    else:
        if t is PacketType.BINARY_EVENT:
            t = PacketType.EVENT
        elif t is PacketType.BINARY_ACK:
            t = PacketType.ACK
        head = str(int(t))
    if packet.namespace != "/":
        head += packet.namespace + ","
    if packet.id is not None:
        head += str(packet.id)
    if data is not None:
        head += _dumps(data)
    return [head, *buffers]


# --------------------------------------------------------------------------- decoding

_ID_TYPES = (PacketType.EVENT, PacketType.ACK, PacketType.BINARY_EVENT, PacketType.BINARY_ACK)
_EVENT_TYPES = (PacketType.EVENT, PacketType.BINARY_EVENT)
_ACK_TYPES = (PacketType.ACK, PacketType.BINARY_ACK)
_BINARY_PACKET_TYPES = (PacketType.BINARY_EVENT, PacketType.BINARY_ACK)
_TYPE_BY_DIGIT = {str(int(t)): t for t in PacketType}


def _fail(reason: str, text: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"{reason}: {text[:80]!r}")


def _is_ascii_digits(s: str) -> bool:
    return s.isascii() and s.isdigit()


def _payload_is_valid(t: PacketType, data: Any) -> bool:
    if t is PacketType.CONNECT:
        return data is None or isinstance(data, dict)
    if t is PacketType.DISCONNECT:
        return data is None
    if t is PacketType.CONNECT_ERROR:
        return isinstance(data, str | dict)
    if t in _EVENT_TYPES:
        return (
            isinstance(data, list)
            and len(data) > 0
            and isinstance(data[0], str)
            and data[0] not in RESERVED_EVENTS
        )
    return isinstance(data, list)


def decode_text(text: str, max_attachments: int = DEFAULT_MAX_ATTACHMENTS) -> Packet:
    """Parse the text part of a packet; a binary packet keeps its placeholders here."""
    n = len(text)
    if n == 0:
        raise RemoteProtocolError("empty Socket.IO packet")
    t = _TYPE_BY_DIGIT.get(text[0])
    if t is None:
        raise _fail("unknown Socket.IO packet type", text)
    i = 1
    attachments = 0
    if t in _BINARY_PACKET_TYPES:
        dash = text.find("-", 1, 2 + _MAX_ATTACHMENT_DIGITS)
        digits = text[1:dash] if dash != -1 else ""
        if not _is_ascii_digits(digits):
            raise _fail("bad attachment count", text)
        attachments = int(digits)
        if not 1 <= attachments <= max_attachments:
            raise _fail(f"attachment count must be 1..{max_attachments}", text)
        i = dash + 1
    namespace = "/"
    if i < n and text[i] == "/":
        comma = text.find(",", i)
        end = n if comma == -1 else comma
        namespace = text[i:end]
        i = end + 1
    ack_id: int | None = None
    j = i
    while j < n and "0" <= text[j] <= "9":
        j += 1
    if j > i:
        if j - i > _MAX_ID_DIGITS or t not in _ID_TYPES:
            raise _fail(f"bad ack id for {t.name}", text)
        ack_id = int(text[i:j])
        if ack_id > MAX_ACK_ID:
            raise _fail("ack id too large", text)
        i = j
    data: Any = None
    if i < n:
        try:
            data = _json_decode(text[i:])
        except (msgspec.DecodeError, UnicodeEncodeError, RecursionError) as exc:
            raise _fail(f"invalid JSON payload ({exc})", text) from None
        if data is None:
            # A literal ``null`` payload is invalid for every type.
            raise _fail(f"invalid {t.name} payload", text)
    elif t is not PacketType.CONNECT and t is not PacketType.DISCONNECT:
        raise _fail(f"{t.name} needs a payload", text)
    if not _payload_is_valid(t, data):
        raise _fail(f"invalid {t.name} payload", text)
    if t in _ACK_TYPES and ack_id is None:
        raise _fail("ACK without an ack id", text)
    return Packet(t, namespace, data, ack_id, attachments)


def _reconstruct(data: Any, buffers: list[bytes]) -> Any:
    """Put each attachment back where its placeholder is."""
    if isinstance(data, list):
        return [_reconstruct(item, buffers) for item in data]
    if isinstance(data, dict):
        if data.get("_placeholder") is True:
            num = data.get("num")
            if type(num) is not int or not 0 <= num < len(buffers):
                raise RemoteProtocolError(f"bad attachment placeholder {data!r}")
            return buffers[num]
        return {key: _reconstruct(value, buffers) for key, value in data.items()}
    return data


class Decoder:
    """Turns the Engine.IO messages of one connection into Socket.IO packets.

    A binary packet spans several messages, so the decoder keeps state between
    calls; one decoder per connection, fed in arrival order.
    """

    def __init__(
        self,
        max_attachments: int = DEFAULT_MAX_ATTACHMENTS,
        max_binary_bytes: int | None = None,
    ) -> None:
        # ``max_binary_bytes`` caps the attachments of one packet together, so a
        # connection cannot park max_attachments x maxPayload bytes here.
        self._max_attachments = max_attachments
        self._max_binary_bytes = max_binary_bytes
        self._pending: Packet | None = None
        self._buffers: list[bytes] = []
        self._buffered = 0

    @property
    def awaiting_attachments(self) -> int:
        """How many binary messages the packet being reassembled still needs."""
        if self._pending is None:
            return 0
        return self._pending.attachments - len(self._buffers)

    def receive(self, message: str | bytes) -> Packet | None:
        """Feed one Engine.IO message; return the packet it completes, if any.

        Raises :class:`RemoteProtocolError` for anything the protocol forbids,
        after which the decoder must not be used again (close the connection).
        """
        if isinstance(message, str):
            if self._pending is not None:
                raise _fail("text message while binary attachments are due", message)
            packet = decode_text(message, self._max_attachments)
            if packet.type in _BINARY_PACKET_TYPES:
                self._pending = packet
                self._buffers = []
                self._buffered = 0
                return None
            return packet
        if not isinstance(message, _BINARY_TYPES):
            raise RemoteProtocolError(f"message is neither text nor binary: {type(message)!r}")
        pending = self._pending
        if pending is None:
            raise RemoteProtocolError("binary message without a binary packet to attach it to")
        self._buffered += len(message)
        if self._max_binary_bytes is not None and self._buffered > self._max_binary_bytes:
            raise RemoteProtocolError(
                f"binary attachments exceed {self._max_binary_bytes} bytes in one packet"
            )
        self._buffers.append(bytes(message))
        if len(self._buffers) < pending.attachments:
            return None
        buffers, self._buffers, self._pending = self._buffers, [], None
        try:
            data = _reconstruct(pending.data, buffers)
        except RecursionError:
            raise RemoteProtocolError("binary packet payload nested too deeply") from None
        plain = PacketType.EVENT if pending.type is PacketType.BINARY_EVENT else PacketType.ACK
        return Packet(plain, pending.namespace, data, pending.id, pending.attachments)
