"""The Socket.IO packet codec: every packet type, binary placeholders, strict validation."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.socketio.packets import (
    DEFAULT_MAX_ATTACHMENTS,
    Decoder,
    Packet,
    PacketType,
    ack_packet,
    encode,
    event_packet,
)


def decode_all(messages: list[str | bytes]) -> Packet:
    decoder = Decoder()
    results = [decoder.receive(m) for m in messages]
    assert all(r is None for r in results[:-1])
    last = results[-1]
    assert last is not None
    return last


@pytest.mark.parametrize(
    ("packet", "wire"),
    [
        (Packet(PacketType.CONNECT), "0"),
        (Packet(PacketType.CONNECT, "/admin", {"token": "123"}), '0/admin,{"token":"123"}'),
        (Packet(PacketType.CONNECT, "/", {"sid": "abc"}), '0{"sid":"abc"}'),
        (Packet(PacketType.DISCONNECT), "1"),
        (Packet(PacketType.DISCONNECT, "/admin"), "1/admin,"),
        (event_packet("hello", [1]), '2["hello",1]'),
        (event_packet("hello", ["x"], "/admin", 12), '2/admin,12["hello","x"]'),
        (ack_packet(["bar"], 12), '312["bar"]'),
        (ack_packet([], 3, "/admin"), "3/admin,3[]"),
        (
            Packet(PacketType.CONNECT_ERROR, "/random", {"message": "Invalid namespace"}),
            '4/random,{"message":"Invalid namespace"}',
        ),
        (Packet(PacketType.CONNECT_ERROR, "/", "Not authorized"), '4"Not authorized"'),
    ],
)
def test_every_text_packet_type_encodes_to_the_reference_wire_form_and_back(
    packet: Packet, wire: str
) -> None:
    assert encode(packet) == [wire]
    assert decode_all([wire]) == packet


def test_an_event_with_bytes_goes_out_as_binary_event_with_placeholders() -> None:
    parts = encode(event_packet("upload", [b"\x01\x02", {"file": b"\x03"}], "/", 7))
    assert parts == [
        '52-7["upload",{"_placeholder":true,"num":0},{"file":{"_placeholder":true,"num":1}}]',
        b"\x01\x02",
        b"\x03",
    ]


def test_an_ack_with_bytes_goes_out_as_binary_ack() -> None:
    parts = encode(ack_packet([b"\xff"], 789, "/custom"))
    assert parts == ['61-/custom,789[{"_placeholder":true,"num":0}]', b"\xff"]


def test_binary_event_is_reassembled_from_its_attachments() -> None:
    decoder = Decoder()
    head = '52-789["message-with-ack",{"_placeholder":true,"num":1},{"_placeholder":true,"num":0}]'
    assert decoder.receive(head) is None
    assert decoder.awaiting_attachments == 2
    assert decoder.receive(b"\x01\x02\x03") is None
    packet = decoder.receive(b"\x04\x05\x06")
    assert packet == Packet(
        PacketType.EVENT, "/", ["message-with-ack", b"\x04\x05\x06", b"\x01\x02\x03"], 789, 2
    )
    # The decoder is ready for the next packet.
    assert decoder.receive('2["next"]') == event_packet("next", [])


def test_binary_ack_is_reassembled_as_an_ack() -> None:
    packet = decode_all(['61-/custom,5[{"_placeholder":true,"num":0}]', b"z"])
    assert packet == Packet(PacketType.ACK, "/custom", [b"z"], 5, 1)


def test_namespace_without_trailing_comma_is_accepted_like_the_reference_parser() -> None:
    assert decode_all(["0/custom"]) == Packet(PacketType.CONNECT, "/custom")
    assert decode_all(["1/custom"]) == Packet(PacketType.DISCONNECT, "/custom")


@pytest.mark.parametrize(
    "wire",
    [
        "",
        "abc",  # unknown packet type
        "7",
        "9[]",
        "2{}",  # EVENT payload must be an array
        "2[]",  # ... with an event name
        "2[1]",  # ... that is a string
        '2["connect"]',  # ... and not reserved
        '2["disconnect",1]',
        "2",  # EVENT needs a payload
        '2abc["message-with-ack",1]',  # invalid ack id
        '212345678901234567["x"]',  # ack id too long
        '29007199254740992["x"]',  # ack id beyond 2**53-1
        "3[]",  # ACK without id
        "31",  # ACK without payload
        "31{}",  # ACK payload must be an array
        "0[]",  # CONNECT payload must be an object
        "0null",
        '0"x"',
        "1{}",  # DISCONNECT takes no payload
        "15",  # ... nor an id
        "0/a,1{}",  # CONNECT takes no id
        "4",  # CONNECT_ERROR needs a payload
        "4[]",
        "4null",
        "5-[]",  # missing attachment count
        '5x-["a"]',
        '50-["a"]',  # zero attachments
        '511-["a"]',  # more than the limit
        '51["a"]',  # no dash
        '5١-["a"]',  # non-ASCII digit
        '2["a",]',  # malformed JSON
        '2["a"]]',
        "2[\ud800]",  # not encodable text
    ],
)
def test_invalid_packets_raise_remote_protocol_error(wire: str) -> None:
    with pytest.raises(RemoteProtocolError):
        Decoder().receive(wire)


def test_text_while_attachments_are_due_is_a_protocol_error() -> None:
    decoder = Decoder()
    decoder.receive('51-["a",{"_placeholder":true,"num":0}]')
    with pytest.raises(RemoteProtocolError):
        decoder.receive('2["b"]')


def test_binary_message_without_binary_packet_is_a_protocol_error() -> None:
    with pytest.raises(RemoteProtocolError):
        Decoder().receive(b"\x00")


@pytest.mark.parametrize(
    "placeholder",
    [
        '{"_placeholder":true,"num":1}',  # out of range
        '{"_placeholder":true,"num":-1}',
        '{"_placeholder":true,"num":"0"}',
        '{"_placeholder":true,"num":true}',
        '{"_placeholder":true}',
    ],
)
def test_placeholder_pointing_nowhere_is_a_protocol_error(placeholder: str) -> None:
    decoder = Decoder()
    decoder.receive(f'51-["a",{placeholder}]')
    with pytest.raises(RemoteProtocolError):
        decoder.receive(b"\x00")


def test_the_attachment_limit_is_configurable() -> None:
    assert Decoder(max_attachments=1).receive('51-["a",{"_placeholder":true,"num":0}]') is None
    with pytest.raises(RemoteProtocolError):
        Decoder(max_attachments=1).receive('52-["a"]')


def test_attachments_of_one_packet_are_capped_in_total_bytes() -> None:
    decoder = Decoder(max_binary_bytes=5)
    decoder.receive('52-["a",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]')
    decoder.receive(b"123")
    with pytest.raises(RemoteProtocolError, match="exceed 5 bytes"):
        decoder.receive(b"456")


def test_deeply_nested_payload_is_a_protocol_error_not_a_crash() -> None:
    with pytest.raises(RemoteProtocolError):
        Decoder().receive('2["a",' + "[" * 100_000 + "]" * 100_000 + "]")


@pytest.mark.parametrize(
    "packet",
    [
        event_packet("connect", []),  # reserved name
        Packet(PacketType.EVENT, "/", []),
        Packet(PacketType.ACK, "/", []),  # ACK without id
        Packet(PacketType.CONNECT, "/", [1]),
        Packet(PacketType.DISCONNECT, "/", {"a": 1}),
        Packet(PacketType.CONNECT, "/", None, 3),
        event_packet("x", [], "nope"),  # namespace without '/'
        event_packet("x", [], "/a,b"),
        event_packet("x", [object()]),  # not JSON
        event_packet("x", [], "/", -1),
    ],
)
def test_encoding_a_packet_we_must_not_send_raises_local_protocol_error(packet: Packet) -> None:
    with pytest.raises(LocalProtocolError):
        encode(packet)


# ------------------------------------------------------------------ property tests

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(codec="utf-8"))
)
values = st.recursive(
    json_scalars | st.binary(max_size=16),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(max_size=8).filter(lambda k: k != "_placeholder"), children, max_size=4
        )
    ),
    max_leaves=12,
)
namespaces = st.just("/") | st.from_regex(r"/[a-z0-9_/-]{1,12}", fullmatch=True)
event_names = st.text(min_size=1, alphabet=st.characters(codec="utf-8")).filter(
    lambda n: (
        n
        not in {
            "connect",
            "connect_error",
            "disconnect",
            "disconnecting",
            "newListener",
            "removeListener",
        }
    )
)
ack_ids = st.none() | st.integers(min_value=0, max_value=2**53 - 1)
json_objects = st.dictionaries(st.text(max_size=8), json_scalars, max_size=4)


def count_binary(data: Any) -> int:
    if isinstance(data, bytes):
        return 1
    if isinstance(data, list):
        return sum(count_binary(item) for item in data)
    if isinstance(data, dict):
        return sum(count_binary(item) for item in data.values())
    return 0


@st.composite
def packets(draw: st.DrawFn) -> Packet:
    ns = draw(namespaces)
    kind = draw(st.sampled_from(list(PacketType)))
    if kind is PacketType.CONNECT:
        return Packet(kind, ns, draw(st.none() | json_objects))
    if kind is PacketType.DISCONNECT:
        return Packet(kind, ns)
    if kind is PacketType.CONNECT_ERROR:
        return Packet(kind, ns, draw(json_objects | st.text()))
    # The decoder refuses more attachments than its limit (tested on its own below).
    args = draw(
        st.lists(values, max_size=4).filter(lambda a: count_binary(a) <= DEFAULT_MAX_ATTACHMENTS)
    )
    if kind in (PacketType.EVENT, PacketType.BINARY_EVENT):
        data = [draw(event_names), *args]
        ack_id = draw(ack_ids)
        plain = PacketType.EVENT
    else:
        data = args
        ack_id = draw(st.integers(min_value=0, max_value=2**53 - 1))
        plain = PacketType.ACK
    # Decoded packets come back as plain EVENT/ACK with the attachment count noted.
    return Packet(plain, ns, data, ack_id, count_binary(data))


@settings(deadline=None)  # a loaded CI machine must not turn slowness into failure
@given(packets())
def test_encode_then_decode_is_the_identity(packet: Packet) -> None:
    assert decode_all(encode(packet)) == packet


@settings(deadline=None)  # a loaded CI machine must not turn slowness into failure
@given(st.lists(st.text() | st.binary(), max_size=6))
def test_arbitrary_messages_into_the_decoder_raise_only_remote_protocol_error(
    messages: list[str | bytes],
) -> None:
    decoder = Decoder()
    for message in messages:
        try:
            decoder.receive(message)
        except RemoteProtocolError:
            decoder = Decoder()


@settings(deadline=None)  # a loaded CI machine must not turn slowness into failure
@given(st.sampled_from("0123456"), st.text(max_size=40))
def test_arbitrary_text_after_a_valid_type_digit_raises_only_remote_protocol_error(
    digit: str, rest: str
) -> None:
    with contextlib.suppress(RemoteProtocolError):
        Decoder().receive(digit + rest)
