"""The sans-IO protocol: line framing, reply shapes, models, speed units."""

from __future__ import annotations

import pytest

from drivers.scientifica.protocol import (
    ControllerError,
    CorruptReply,
    Generation,
    LineDecoder,
    SpeedScale,
    encode,
    error_number,
    is_error,
    model_of,
    parse_ack,
    parse_position,
    parse_status,
    parse_version,
    type_code,
)


def test_commands_end_with_a_carriage_return_and_nothing_can_break_the_framing() -> None:
    assert encode("ABS 1 -2 3") == b"ABS 1 -2 3\r"
    for bad in ("", "P\r", "P\nS", "TOP 1µ"):
        with pytest.raises(ValueError):
            encode(bad)


def test_replies_are_split_on_carriage_returns_however_the_bytes_arrive() -> None:
    decoder = LineDecoder()
    stream = b"100\t-200\t3\r\nA\r0\r"
    for byte in stream:
        decoder.receive_data(bytes([byte]))
    assert [decoder.next_line(), decoder.next_line(), decoder.next_line()] == [
        "100\t-200\t3",
        "A",
        "0",
    ]
    assert decoder.next_line() is None


def test_a_line_without_end_is_cut_to_a_bounded_tail_and_undecodable_bytes_fail_to_parse() -> None:
    decoder = LineDecoder()
    decoder.receive_data(b"x" * 10_000)
    assert decoder.next_line() is None
    decoder.receive_data(b"\r\xff\xfe\r")
    assert len(decoder.next_line() or "") <= 128
    garbled = decoder.next_line()
    assert garbled is not None
    with pytest.raises(CorruptReply):
        parse_position(garbled)


def test_a_position_is_exactly_three_integers() -> None:
    assert parse_position("1321\t543\t-2") == (1321, 543, -2)
    for corrupt in ("1321\t543", "1\t2\t3\t4", "1\t2.5\t3", "A", "", "12\t3x\t4"):
        with pytest.raises(CorruptReply):
            parse_position(corrupt)


def test_status_is_one_digit_and_an_ack_is_a_lone_a() -> None:
    assert [parse_status(s) for s in "0356"] == [0, 3, 5, 6]
    for corrupt in ("", "10", "A", "-1"):
        with pytest.raises(CorruptReply):
            parse_status(corrupt)
    parse_ack("A")
    with pytest.raises(CorruptReply):
        parse_ack("0")


def test_error_replies_carry_their_number_and_name_it_in_the_message() -> None:
    assert is_error("E,3") and is_error("E") and not is_error("3") and not is_error("A")
    assert error_number("E,3") == 3 and error_number("E") is None
    assert "error 3 (unknown command or parameter) to 'TOPZ'" in str(
        ControllerError("/dev/ttyUSB0", "TOPZ", 3)
    )


def test_the_generation_comes_from_ver_and_sets_the_position_unit() -> None:
    assert parse_version("3.40") == Generation(3.4, "3.40")
    assert parse_version("3.40").counts_per_um == 100
    assert parse_version("2.13").counts_per_um == 10
    with pytest.raises(CorruptReply):
        parse_version("Y519")


@pytest.mark.parametrize(
    ("reply", "key", "manipulator"),
    [
        ("3.14", "ivm_manipulator", True),
        ("1.14", "ivm_manipulator", True),
        ("3.05", "patchstar", True),
        ("1.05", "patchstar", True),
        ("5", "patchstar", True),
        ("1.08", "microstar", True),
        ("3.16", "extended_patchstar", True),
        ("3.17", "ivm_mini", True),
        ("3.19", "ivm_3000_rotary", True),
        ("3.22", "ivm_3000", True),
        ("3.11", "slicescope", False),
        ("1.12", "condenser", False),
        ("3.18", "slicescope_2", False),
        ("3.20", "patchscope_pro", False),
    ],
)
def test_type_codes_name_the_model_and_whether_it_is_a_manipulator(
    reply: str, key: str, manipulator: bool
) -> None:
    model = model_of(reply)
    assert model is not None and model.key == key and model.manipulator is manipulator


def test_unknown_type_codes_are_no_model() -> None:
    for reply in ("1.22", "3.99", "9.05", "", "IVM"):
        assert model_of(reply) is None
    assert type_code("ivm_3000", modern=True) == "3.22"
    with pytest.raises(KeyError):
        type_code("ivm_3000", modern=False)


def test_firmware_3_speeds_are_micrometres_per_second() -> None:
    scale = SpeedScale(Generation(3.4))
    assert scale.top(1000.0) == 1000
    assert scale.slowest_um_s == 100


def test_firmware_2_speeds_are_raw_units_scaled_by_uux_within_1000_to_50000() -> None:
    scale = SpeedScale(Generation(2.13), uux=-6.4)
    assert scale.top(1000.0) == 12800
    assert scale.um_s(12800) == pytest.approx(1000.0)
    assert scale.fastest_um_s == 3906  # raw 50000
    assert scale.slowest_um_s == 100  # raw 1280; raw 1000 would be 78 µm/s
    slicescope = SpeedScale(Generation(2.13), uux=4.03)
    assert slicescope.slowest_um_s == 125  # raw 1000 is 124.07 µm/s here
    assert slicescope.top(slicescope.slowest_um_s) >= 1000
