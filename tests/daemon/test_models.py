"""Golden wire text of every response and error shape, and request decoding."""

from __future__ import annotations

from typing import Any

import pytest

from ephysd.models import (
    MALFORMED_REQUEST,
    UNKNOWN_EVENT,
    AngularResponse,
    BooleanStateResponse,
    GetManipulatorsResponse,
    MalformedRequest,
    PinpointIdResponse,
    PlatformInfoResponse,
    PositionalResponse,
    SetDepthRequest,
    SetDepthResponse,
    SetInsideBrainRequest,
    SetPositionRequest,
    ShankCountResponse,
    Vector3,
    Vector4,
    decode_manipulator_id,
    decode_request,
    to_json,
)


def test_error_shapes_are_the_exact_upstream_text() -> None:
    assert MALFORMED_REQUEST == '{"error": "Malformed request."}'
    assert UNKNOWN_EVENT == '{"error": "Unknown event."}'


@pytest.mark.parametrize(
    ("response", "golden"),
    [
        (
            PlatformInfoResponse("Fake Manipulator", "fake", 4, Vector4(20, 20, 20, 20)),
            '{"Name":"Fake Manipulator","CliName":"fake","AxesCount":4,'
            '"Dimensions":{"x":20.0,"y":20.0,"z":20.0,"w":20.0}}',
        ),
        (GetManipulatorsResponse(["1", "2"]), '{"Manipulators":["1","2"],"Error":""}'),
        (GetManipulatorsResponse(), '{"Manipulators":[],"Error":""}'),
        (
            PositionalResponse(Vector4(1.5, 2, 0, 0.84)),
            '{"Position":{"x":1.5,"y":2.0,"z":0.0,"w":0.84},"Error":""}',
        ),
        (
            PositionalResponse(error="ValueError: Manipulator 9 not found."),
            '{"Position":{"x":0.0,"y":0.0,"z":0.0,"w":0.0},'
            '"Error":"ValueError: Manipulator 9 not found."}',
        ),
        (
            AngularResponse(Vector3(90, 60, 0)),
            '{"Angles":{"x":90.0,"y":60.0,"z":0.0},"Error":""}',
        ),
        (AngularResponse(error="e"), '{"Angles":{"x":0.0,"y":0.0,"z":0.0},"Error":"e"}'),
        (ShankCountResponse(1), '{"ShankCount":1,"Error":""}'),
        (ShankCountResponse(error="e"), '{"ShankCount":1,"Error":"e"}'),
        (SetDepthResponse(1.7), '{"Depth":1.7,"Error":""}'),
        (SetDepthResponse(error="e"), '{"Depth":0.0,"Error":"e"}'),
        (BooleanStateResponse(True), '{"State":true,"Error":""}'),
        (BooleanStateResponse(error="e"), '{"State":false,"Error":"e"}'),
        (
            PinpointIdResponse("1a2b3c4d", False, "1a2b3c4d", False),
            '{"PinpointId":"1a2b3c4d","IsRequester":false,'
            '"pinpoint_id":"1a2b3c4d","is_requester":false}',
        ),
    ],
)
def test_response_wire_text_matches_the_contract(response: Any, golden: str) -> None:
    assert to_json(response) == golden


def test_vector_text_in_messages_reads_like_pydantic() -> None:
    assert str(Vector4(1.5, 2, 0, 0.84)) == "x=1.5 y=2.0 z=0.0 w=0.84"


@pytest.mark.parametrize(
    "data",
    [
        '{"ManipulatorId":"1","Position":{"x":1.5,"y":2,"z":0,"w":0.84},"Speed":0.05}',
        '{"manipulator_id":"1","position":{"x":1.5,"y":2,"z":0,"w":0.84},"speed":0.05}',
        {"ManipulatorId": "1", "Position": {"x": 1.5, "y": 2, "w": 0.84}, "Speed": "0.05"},
    ],
)
def test_set_position_accepts_string_or_object_in_either_case(data: Any) -> None:
    request = decode_request(data, SetPositionRequest)
    assert request == SetPositionRequest("1", Vector4(1.5, 2.0, 0.0, 0.84), 0.05)


def test_other_requests_decode() -> None:
    assert decode_request(
        '{"ManipulatorId":"1","Depth":1.7,"Speed":0.005}', SetDepthRequest
    ) == SetDepthRequest("1", 1.7, 0.005)
    assert decode_request(
        {"manipulator_id": "2", "inside": True}, SetInsideBrainRequest
    ) == SetInsideBrainRequest("2", True)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (None, "missing"),
        ("", "empty"),
        ("{not json", "not JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"ManipulatorId":"","Position":{},"Speed":1}', "length >= 1"),
        ('{"ManipulatorId":"1","Position":{},"Speed":0}', "> 0"),
        ('{"ManipulatorId":"1","Position":{},"Speed":-2}', "> 0"),
        ('{"ManipulatorId":"1","Speed":1}', "Position"),
        ('{"ManipulatorId":"1","Position":{"x":"far"},"Speed":1}', "x"),
    ],
)
def test_bad_requests_are_malformed_and_say_why(data: Any, why: str) -> None:
    with pytest.raises(MalformedRequest, match=why):
        decode_request(data, SetPositionRequest)


def test_manipulator_id_argument() -> None:
    assert decode_manipulator_id("1") == "1"
    assert decode_manipulator_id(3) == "3"
    for bad in (None, "", True, {"a": 1}):
        with pytest.raises(MalformedRequest):
            decode_manipulator_id(bad)
