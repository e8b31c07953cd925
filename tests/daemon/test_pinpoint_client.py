"""A client that speaks exactly as Pinpoint 2.x does, reading every answer as Pinpoint reads it.

Pinpoint's Ephys Link client (``Assets/Scripts/EphysLink/CommunicationManager.cs``
in VirtualBrainLab/Pinpoint) emits every call with an acknowledgement: no
argument for ``get_version``, ``get_manipulators`` and ``stop_all`` (or ``""``
where it has a null request), the bare id string for reads and ``stop``, and
``JsonUtility.ToJson(request)`` strings for moves. It accepts an answer only if
``DataKnownAndNotEmpty`` (not empty, not the unknown-event text), then reads it
with ``JsonUtility.FromJson<T>`` into a struct whose fields must match the
JSON keys exactly, and tests ``string.IsNullOrEmpty(Error)``. ``read_as`` does
that, stricter still: a field Pinpoint reads must be there with its type.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from drivers.fake import FakePlatform
from tests.daemon.e2e import run_client, running_daemon, url_of

UNKNOWN_EVENT = '{"error": "Unknown event."}'
VECTOR3 = {"x": float, "y": float, "z": float}
VECTOR4 = {**VECTOR3, "w": float}
# Pinpoint's (and, for the two it has no public model of, upstream's) response structs.
PLATFORM_INFO = {"Name": str, "CliName": str, "AxesCount": int, "Dimensions": VECTOR4}
GET_MANIPULATORS = {"Manipulators": [str], "Error": str}
POSITIONAL = {"Position": VECTOR4, "Error": str}
SET_DEPTH = {"Depth": float, "Error": str}
BOOLEAN_STATE = {"State": bool, "Error": str}
JACKHAMMER = {
    **POSITIONAL,
    "IterationsUsed": int,
    "StopReason": str,
    "AdvancementUm": float,
}


def unity_json(value: Any) -> str:
    """What ``JsonUtility.ToJson`` writes for a request struct: compact, every field."""
    return json.dumps(value, separators=(",", ":"))


def data_known_and_not_empty(data: Any) -> bool:
    return isinstance(data, str) and data != "" and data != UNKNOWN_EVENT


def check_type(value: Any, shape: Any, where: str) -> None:
    if isinstance(shape, dict):
        assert isinstance(value, dict), f"{where}: {value!r} is not an object"
        for key, inner in shape.items():
            assert key in value, f"{where}: no {key!r} in {value!r}"
            check_type(value[key], inner, f"{where}.{key}")
    elif isinstance(shape, list):
        assert isinstance(value, list), f"{where}: {value!r} is not an array"
        for i, item in enumerate(value):
            check_type(item, shape[0], f"{where}[{i}]")
    elif shape is float:  # a C# float takes any JSON number
        assert isinstance(value, int | float) and not isinstance(value, bool), where
    elif shape is int:
        assert isinstance(value, int) and not isinstance(value, bool), where
    else:
        assert isinstance(value, shape), f"{where}: {value!r} is not {shape.__name__}"


def read_as(data: Any, shape: dict[str, Any]) -> dict[str, Any]:
    """The answer as Pinpoint reads it into a struct of ``shape``; fails where Pinpoint would."""
    assert data_known_and_not_empty(data), f"Pinpoint drops the answer {data!r}"
    body = json.loads(data)
    check_type(body, shape, "answer")
    if "Error" in shape:
        assert body["Error"] == "", f"Pinpoint reports the error {body['Error']!r}"
    return {key: body[key] for key in shape}


def verify_version(text: Any) -> tuple[int, int, int]:
    """Pinpoint's VerifyVersion: digits of each dot-separated part; major 2, >= 2.0.0."""
    assert data_known_and_not_empty(text)
    numbers = []
    for part in str(text).split("."):
        digits = ""
        for char in part:
            if not char.isdigit():
                break
            digits += char
        if not digits:
            break
        numbers.append(int(digits))
    major, minor, patch = numbers[:3]
    assert major == 2 and (minor, patch) >= (0, 0)
    return major, minor, patch


PINPOINT_SESSION: list[list[Any]] = [
    ["connect"],
    ["call", "get_version"],
    ["call", "get_version", ""],
    ["call", "get_platform_info"],
    ["call", "get_manipulators"],
    ["call", "get_position", "1"],
    ["call", "get_angles", "1"],
    ["call", "get_shank_count", "1"],
    [
        "call",
        "set_position",
        unity_json(
            {
                "ManipulatorId": "1",
                "Position": {"x": 1.5, "y": 2.0, "z": 3.0, "w": 4.0},
                "Speed": 50.0,
            }
        ),
    ],
    ["call", "set_depth", unity_json({"ManipulatorId": "1", "Depth": 4.5, "Speed": 50.0})],
    ["call", "set_inside_brain", unity_json({"ManipulatorId": "1", "Inside": True})],
    [
        "call",
        "jackhammer",
        unity_json(
            {
                "ManipulatorId": "1",
                "Axis": -1,
                "Iterations": 10,
                "Phase1Steps": 10,
                "Phase1Pulses": 15,
                "Phase2Steps": 5,
                "Phase2Pulses": -15,
                "ClosedLoop": True,
                "TargetUm": 15.0,
                "MaxIterations": 50,
            }
        ),
    ],
    ["call", "stop", "1"],
    ["call", "stop_all"],
]


@pytest.mark.parametrize("kind", ["python", "js"])
async def test_a_pinpoint_session_gets_answers_pinpoint_can_read(kind: str) -> None:
    platform = FakePlatform()
    async with running_daemon(platform) as daemon:
        answers = await run_client(kind, url_of(daemon), PINPOINT_SESSION)
    assert "connected" in answers[0]
    (
        version,
        version_null,
        info,
        manipulators,
        position,
        angles,
        shanks,
        moved,
        depth,
        inside,
        hammered,
        stopped,
        stopped_all,
    ) = answers[1:]
    assert verify_version(version) == verify_version(version_null) == (2, 3, 6)
    assert read_as(info, PLATFORM_INFO)["AxesCount"] == 4
    assert read_as(manipulators, GET_MANIPULATORS)["Manipulators"] == [str(i) for i in range(8)]
    assert read_as(position, POSITIONAL)["Position"] == {"x": 0.0, "y": 0.0, "z": 0.0, "w": 0.0}
    assert read_as(angles, {"Angles": VECTOR3, "Error": str})["Angles"]["x"] == -90.0
    assert read_as(shanks, {"ShankCount": int, "Error": str})["ShankCount"] == 1
    assert read_as(moved, POSITIONAL)["Position"] == {"x": 1.5, "y": 2.0, "z": 3.0, "w": 4.0}
    assert read_as(depth, SET_DEPTH)["Depth"] == 4.5
    assert read_as(inside, BOOLEAN_STATE)["State"] is True
    jackhammer = read_as(hammered, JACKHAMMER)
    assert jackhammer["StopReason"] == "target_reached"
    assert jackhammer["IterationsUsed"] == 2
    assert jackhammer["Position"]["w"] == pytest.approx(4.515)
    # stop and stop_all: an empty answer is success (DataKnownAndNotEmpty is false).
    assert stopped == stopped_all == ""
    assert platform.manipulators[1].halts >= 1
