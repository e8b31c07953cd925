"""The New Scale framing as bytes: what goes on the wire, and what comes back in any chunking."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.newscale.codec import (
    MAX_BUFFER_BYTES,
    CodecError,
    Command,
    CommandDecoder,
    Frame,
    ReplyDecoder,
    StageState,
    Status,
    Violation,
    encode_bridge,
    encode_frame,
    encode_stage,
    encode_state,
    move_absolute,
    parse_state,
    select_stage,
)


def high(data: bytes) -> bytes:
    return bytes(b | 0x80 for b in data)


def decode_all(chunks: list[bytes]) -> list[Frame]:
    decoder = ReplyDecoder()
    frames: list[Frame] = []
    for chunk in chunks:
        decoder.receive_data(chunk)
        while True:
            try:
                frame = decoder.next_frame()
            except CodecError:
                continue
            if frame is None:
                break
            frames.append(frame)
    return frames


def test_stage_command_is_code_then_hex_arguments_then_close_and_carriage_return() -> None:
    assert encode_stage("08", "00003A98") == b"<08 00003A98>\r"
    assert encode_stage("10") == b"<10>\r"


def test_absolute_move_is_32_bit_twos_complement_counts() -> None:
    assert move_absolute(15000) == b"<08 00003A98>\r"
    assert move_absolute(0) == b"<08 00000000>\r"
    assert move_absolute(-2) == b"<08 FFFFFFFE>\r"


def test_bridge_command_is_the_frame_with_every_high_bit_set_and_nothing_before_it() -> None:
    # As New Scale's library and python-newscale send it on USB: no "TR" (the PoE box's form).
    assert encode_bridge("01") == high(b"<01>\r") == bytes.fromhex("bcb0b1be8d")
    assert select_stage(2) == high(b"<A0 02>\r") == bytes.fromhex("bcc1b0a0b0b2be8d")


@pytest.mark.parametrize("bad", ["8", "0g", "1a", "<1", "123"])
def test_command_code_that_is_not_two_upper_case_hex_digits_is_refused(bad: str) -> None:
    with pytest.raises(CodecError):
        encode_stage(bad)


@pytest.mark.parametrize("bad", ["", "a b", "x>", "<", "é"])
def test_argument_that_would_break_the_frame_is_refused(bad: str) -> None:
    with pytest.raises(CodecError):
        encode_stage("08", bad)


def test_status_reply_gives_flags_signed_position_and_error() -> None:
    state = parse_state(Frame("10", ("240082", "00003A98", "FFFFFFFE")))
    assert state.position == 15000
    assert state.error == -2
    assert state.on_target and not state.running and not state.failed
    assert Status.HOST_CONTROL in state.flags and Status.CLOSED_LOOP in state.flags
    assert Status.FORWARD in state.flags


def test_stalled_or_encoder_error_is_a_failed_state() -> None:
    for flags in ("800000", "010000"):
        assert parse_state(Frame("10", (flags, "00000000", "00000000"))).failed


def test_status_reply_round_trips_through_the_simulator_encoder() -> None:
    state = StageState(flags=Status.RUNNING | Status.CLOSED_LOOP, position=-5, error=7)
    [frame] = decode_all([encode_state(state)])
    assert parse_state(frame) == state


@pytest.mark.parametrize(
    "frame",
    [
        Frame("10", ("24008Z", "00003A98", "0")),
        Frame("10", ("240086", "00003A98")),
        Frame("08", ("240086", "00003A98", "0")),
        Frame("10", ("2400ZZ", "00003A98", "0")),
        Frame("10", ("240086", "100003A98", "0")),
    ],
)
def test_malformed_status_reply_is_a_codec_error(frame: Frame) -> None:
    with pytest.raises(CodecError):
        parse_state(frame)


def test_reply_split_in_single_bytes_decodes() -> None:
    raw = b"<10 240086 00003A98 00000000>\r"
    assert decode_all([raw[i : i + 1] for i in range(len(raw))]) == [
        Frame("10", ("240086", "00003A98", "00000000"))
    ]


def test_two_replies_in_one_read_decode_as_two() -> None:
    assert decode_all([b"<03>\r<A0 01 1>\r"]) == [Frame("03"), Frame("A0", ("01", "1"))]


def test_garbage_is_skipped_up_to_the_next_frame_start() -> None:
    assert decode_all([b"\x00\xffxyz\r>", b"<03>\r"]) == [Frame("03")]


def test_fragment_cut_by_a_new_frame_start_is_dropped() -> None:
    assert decode_all([b"<10 2400", b"<03>\r"]) == [Frame("03")]


def test_error_replies_are_recognised_with_or_without_arguments() -> None:
    replies = decode_all([b"<23>\r<24>\r<01 23>\r<24 01 FF>\r<23 7>\r"])
    assert [f.is_error for f in replies] == [True, True, False, True, True]
    assert replies[3].describe_error() == "error 24 (invalid command in this state)"
    assert replies[4].describe_error() == "error 23 (invalid parameter or command format)"


def test_malformed_complete_frame_raises_and_the_next_frame_still_decodes() -> None:
    decoder = ReplyDecoder()
    decoder.receive_data(b"<zz>\r<03>\r")
    with pytest.raises(CodecError):
        decoder.next_frame()
    assert decoder.next_frame() == Frame("03")
    assert decoder.next_frame() is None


def test_buffer_stays_bounded_under_endless_garbage() -> None:
    decoder = ReplyDecoder()
    for chunk in (b"x" * 10000, b"<" + b"1" * 100000, b"<" * 50000):
        decoder.receive_data(chunk)
        while True:
            try:
                if decoder.next_frame() is None:
                    break
            except CodecError:
                pass
        assert decoder.buffered <= MAX_BUFFER_BYTES
    decoder.receive_data(b"\r<03>\r")
    assert decode_tail(decoder) == [Frame("03")]


def decode_tail(decoder: ReplyDecoder) -> list[Frame]:
    frames: list[Frame] = []
    while True:
        try:
            frame = decoder.next_frame()
        except CodecError:
            continue
        if frame is None:
            return frames
        frames.append(frame)


def device_events(data: bytes) -> list[Command | Violation]:
    decoder = CommandDecoder()
    decoder.receive_data(data)
    events: list[Command | Violation] = []
    while (event := decoder.next_command()) is not None:
        events.append(event)
    return events


def test_device_side_decoder_tells_bridge_commands_from_stage_commands() -> None:
    events = device_events(select_stage(3) + b"<10>\r" + encode_bridge("01"))
    assert [(e.bridge, e.frame) for e in events if isinstance(e, Command)] == [
        (True, Frame("A0", ("03",))),
        (False, Frame("10")),
        (True, Frame("01")),
    ]
    assert len(events) == 3


def test_a_tr_prefix_before_a_bridge_command_is_a_violation_and_the_command_still_decodes() -> None:
    events = device_events(b"TR" + select_stage(1) + b"TR<01>\r")
    assert events == [
        Violation(raw=b"TR", reason="bytes outside a frame"),
        Command(frame=Frame("A0", ("01",)), bridge=True, raw=select_stage(1)),
        Violation(raw=b"TR", reason="bytes outside a frame"),
        Command(frame=Frame("01"), bridge=False, raw=b"<01>\r"),
    ]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (high(b"<A0 0") + b"1>\r", "bridge command with a byte without its high bit"),
        (high(b"<A0 01>") + b"\r", "bridge command with a byte without its high bit"),
        (b"<10" + high(b"<01>\r"), "command cut short by another"),
        (b"<10 1<10>\r", "command cut short by another"),
        (b"<" + b"1" * 200, "command too long"),
    ],
)
def test_broken_framing_is_a_violation_not_a_command(data: bytes, reason: str) -> None:
    assert reason in [e.reason for e in device_events(data) if isinstance(e, Violation)]


# --- properties -------------------------------------------------------------

hex_codes = st.integers(0, 255).map(lambda n: f"{n:02X}")
hex_args = st.text(alphabet="0123456789ABCDEF", min_size=1, max_size=8)
frames = st.builds(
    lambda code, args: Frame(code, tuple(args)), hex_codes, st.lists(hex_args, max_size=3)
)


@st.composite
def chunked(draw: st.DrawFn, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=20)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@settings(deadline=None)  # a loaded CI machine must not turn slowness into failure
@given(st.lists(frames, max_size=10), st.data())
def test_any_chunking_of_valid_replies_decodes_to_the_same_replies(
    replies: list[Frame], data: st.DataObject
) -> None:
    stream = b"".join(encode_frame(f.code, *f.args) for f in replies)
    assert decode_all(data.draw(chunked(stream))) == replies


@settings(deadline=None)  # a loaded CI machine must not turn slowness into failure
@given(st.lists(st.tuples(st.binary(max_size=20), frames), max_size=8), st.data())
def test_garbage_between_replies_never_hides_a_reply(
    items: list[tuple[bytes, Frame]], data: st.DataObject
) -> None:
    # Garbage without '<' is what a bridge reset leaves; the next '<' resynchronises.
    stream = b"".join(g.replace(b"<", b"") + encode_frame(f.code, *f.args) for g, f in items)
    assert decode_all(data.draw(chunked(stream))) == [f for _, f in items]


@settings(deadline=None)  # a loaded CI machine must not turn slowness into failure
@given(st.lists(st.binary(max_size=200), max_size=20))
def test_arbitrary_bytes_raise_nothing_but_codec_errors(chunks: list[bytes]) -> None:
    decode_all(chunks)  # any other exception fails the test
    decoder = CommandDecoder()
    for chunk in chunks:
        decoder.receive_data(chunk)
        while True:
            try:
                if decoder.next_command() is None:
                    break
            except CodecError:
                pass
        assert decoder.buffered <= MAX_BUFFER_BYTES


@settings(deadline=None)  # a loaded CI machine must not turn slowness into failure
@given(st.lists(st.tuples(st.booleans(), frames), max_size=8), st.data())
def test_device_side_decoder_reads_commands_in_any_chunking(
    items: list[tuple[bool, Frame]], data: st.DataObject
) -> None:
    stream = b"".join(
        (encode_bridge if bridge else encode_frame)(f.code, *f.args) for bridge, f in items
    )
    decoder = CommandDecoder()
    got: list[tuple[bool, Frame]] = []
    for chunk in data.draw(chunked(stream)):
        decoder.receive_data(chunk)
        while (command := decoder.next_command()) is not None:
            assert isinstance(command, Command), command  # chunking never breaks the framing
            got.append((command.bridge, command.frame))
    assert got == items
