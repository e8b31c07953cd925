"""The packet codec: every type round-trips, payload framing, and fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.engineio.packets import (
    Packet,
    PacketType,
    decode_packet,
    decode_payload,
    encode_packet,
    encode_payload,
)
from protocol.errors import LocalProtocolError, RemoteProtocolError


@pytest.mark.parametrize("kind", list(PacketType))
def test_every_packet_type_round_trips_as_a_websocket_text_frame(kind: PacketType) -> None:
    packet = Packet(kind, "probe")
    frame = encode_packet(packet)
    assert frame == f"{int(kind)}probe"
    assert decode_packet(frame) == packet


@pytest.mark.parametrize("kind", list(PacketType))
def test_every_packet_type_round_trips_in_a_polling_payload(kind: PacketType) -> None:
    packet = Packet(kind, "x")
    assert decode_payload(encode_payload([packet])) == [packet]


def test_a_binary_message_is_a_raw_binary_frame_over_websocket() -> None:
    assert encode_packet(Packet(PacketType.MESSAGE, b"\x01\x02\x03\x04")) == b"\x01\x02\x03\x04"
    assert decode_packet(b"\x01\x02") == Packet(PacketType.MESSAGE, b"\x01\x02")


def test_a_payload_joins_packets_with_the_record_separator_and_binary_as_b_base64() -> None:
    packets = [Packet(PacketType.MESSAGE, "hello"), Packet(PacketType.MESSAGE, b"\x01\x02\x03\x04")]
    assert encode_payload(packets) == b"4hello\x1ebAQIDBA=="
    assert decode_payload(b"4hello\x1ebAQIDBA==") == packets


def test_a_payload_of_several_text_packets_splits_on_the_separator() -> None:
    assert decode_payload(b"4test1\x1e4test2\x1e4test3") == [
        Packet(PacketType.MESSAGE, "test1"),
        Packet(PacketType.MESSAGE, "test2"),
        Packet(PacketType.MESSAGE, "test3"),
    ]


def test_an_empty_data_packet_is_just_its_digit() -> None:
    assert encode_packet(Packet(PacketType.PING)) == "2"
    assert decode_payload(b"6") == [Packet(PacketType.NOOP)]


def test_non_ascii_text_survives_polling_as_utf8() -> None:
    packet = Packet(PacketType.MESSAGE, "µm → 42 ✓")
    assert decode_payload(encode_payload([packet])) == [packet]


@pytest.mark.parametrize(
    "body",
    [b"", b"abc", b"7", b"4a\x1e", b"\x1e4a", b"b!!!", b"bAQI", b"\xff\xfe", b"4ok\x1e9"],
)
def test_malformed_payloads_raise_the_remote_error(body: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_payload(body)


@pytest.mark.parametrize("frame", ["", "abc", "9", "b4hello", " 4"])
def test_malformed_text_frames_raise_the_remote_error(frame: str) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_packet(frame)


def test_only_messages_may_carry_bytes() -> None:
    with pytest.raises(LocalProtocolError):
        encode_packet(Packet(PacketType.PING, b"x"))
    with pytest.raises(LocalProtocolError):
        encode_payload([Packet(PacketType.CLOSE, b"x")])


def test_a_polling_packet_containing_the_separator_is_refused_on_encode() -> None:
    with pytest.raises(LocalProtocolError):
        encode_payload([Packet(PacketType.MESSAGE, "a\x1eb")])


def test_an_empty_payload_cannot_be_encoded() -> None:
    with pytest.raises(LocalProtocolError):
        encode_payload([])


_text = st.text(st.characters(codec="utf-8", exclude_characters="\x1e"))
_packets = st.one_of(
    st.builds(Packet, st.sampled_from(list(PacketType)), _text),
    st.builds(Packet, st.just(PacketType.MESSAGE), st.binary()),
)


@given(_packets)
def test_encoding_then_decoding_a_frame_is_the_identity(packet: Packet) -> None:
    assert decode_packet(encode_packet(packet)) == packet


@given(st.lists(_packets, min_size=1, max_size=8))
def test_encoding_then_decoding_a_payload_is_the_identity(packets: list[Packet]) -> None:
    assert decode_payload(encode_payload(packets)) == packets


@given(st.binary())
def test_arbitrary_bytes_into_the_payload_decoder_raise_only_the_remote_error(body: bytes) -> None:
    try:
        packets = decode_payload(body)
    except RemoteProtocolError:
        return
    assert all(isinstance(p, Packet) for p in packets)


@given(st.one_of(st.text(), st.binary()))
def test_arbitrary_frames_into_the_frame_decoder_raise_only_the_remote_error(
    frame: str | bytes,
) -> None:
    try:
        packet = decode_packet(frame)
    except RemoteProtocolError:
        return
    assert isinstance(packet, Packet)


def test_a_packet_with_an_unknown_type_number_is_our_mistake() -> None:
    with pytest.raises(LocalProtocolError):
        encode_packet(Packet(9, "x"))  # type: ignore[arg-type]
