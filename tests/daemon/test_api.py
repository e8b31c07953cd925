"""The API handler on the simulated rig: every event, every error path, exact text."""

from __future__ import annotations

import json

import pytest
import trio

from drivers.fake import FakePlatform
from ephysd.api import Api

MALFORMED = '{"error": "Malformed request."}'


def move(mid: str, x: float, y: float, z: float, w: float, speed: float = 1000.0) -> str:
    return json.dumps(
        {"ManipulatorId": mid, "Position": {"x": x, "y": y, "z": z, "w": w}, "Speed": speed}
    )


async def test_get_version_reports_the_ephys_link_api_level(api: Api) -> None:
    version = await api.handle("get_version", [])
    assert version.split(".")[0] == "2"
    assert version == "2.3.6"


async def test_get_pinpoint_id_is_readable_in_both_key_styles(api: Api) -> None:
    assert await api.handle("get_pinpoint_id", []) == (
        '{"PinpointId":"1a2b3c4d","IsRequester":false,'
        '"pinpoint_id":"1a2b3c4d","is_requester":false}'
    )


async def test_get_platform_info_describes_the_fake_rig(api: Api) -> None:
    assert await api.handle("get_platform_info", []) == (
        '{"Name":"Fake Manipulator","CliName":"fake","AxesCount":4,'
        '"Dimensions":{"x":20.0,"y":20.0,"z":20.0,"w":20.0}}'
    )


async def test_get_manipulators_lists_eight_ids(api: Api) -> None:
    assert await api.handle("get_manipulators", []) == (
        '{"Manipulators":["0","1","2","3","4","5","6","7"],"Error":""}'
    )


async def test_reads_of_a_manipulator(api: Api) -> None:
    assert await api.handle("get_position", ["0"]) == (
        '{"Position":{"x":0.0,"y":0.0,"z":0.0,"w":0.0},"Error":""}'
    )
    assert await api.handle("get_angles", ["1"]) == (
        '{"Angles":{"x":-90.0,"y":60.0,"z":0.0},"Error":""}'
    )
    assert await api.handle("get_angles", ["7"]) == (
        '{"Angles":{"x":-135.0,"y":30.0,"z":0.0},"Error":""}'
    )
    assert await api.handle("get_shank_count", ["0"]) == '{"ShankCount":1,"Error":""}'


async def test_set_position_answers_the_final_position(api: Api) -> None:
    assert await api.handle("set_position", [move("2", 1.5, 2, 0, 0.84)]) == (
        '{"Position":{"x":1.5,"y":2.0,"z":0.0,"w":0.84},"Error":""}'
    )
    assert await api.handle("get_position", ["2"]) == (
        '{"Position":{"x":1.5,"y":2.0,"z":0.0,"w":0.84},"Error":""}'
    )


async def test_set_position_accepts_a_json_object_with_snake_case_keys(api: Api) -> None:
    request = {"manipulator_id": "3", "position": {"x": 1}, "speed": 100}
    assert await api.handle("set_position", [request]) == (
        '{"Position":{"x":1.0,"y":0.0,"z":0.0,"w":0.0},"Error":""}'
    )


async def test_set_depth_answers_the_final_depth(api: Api) -> None:
    request = '{"ManipulatorId":"1","Depth":1.7,"Speed":100}'
    assert await api.handle("set_depth", [request]) == '{"Depth":1.7,"Error":""}'


async def test_inside_brain_refuses_set_position_but_allows_set_depth(api: Api) -> None:
    inside = '{"ManipulatorId":"1","Inside":true}'
    assert await api.handle("set_inside_brain", [inside]) == '{"State":true,"Error":""}'
    assert await api.handle("set_position", [move("1", 1, 1, 1, 1)]) == (
        '{"Position":{"x":0.0,"y":0.0,"z":0.0,"w":0.0},"Error":"Cannot move manipulator'
        ' while inside the brain. Set the depth (\\"set_depth\\") instead."}'
    )
    depth = '{"ManipulatorId":"1","Depth":2,"Speed":100}'
    assert await api.handle("set_depth", [depth]) == '{"Depth":2.0,"Error":""}'
    outside = '{"ManipulatorId":"1","Inside":false}'
    assert await api.handle("set_inside_brain", [outside]) == '{"State":false,"Error":""}'
    assert json.loads(await api.handle("set_position", [move("1", 1, 1, 1, 1)]))["Error"] == ""


async def test_stop_and_stop_all_answer_empty_string_on_success(api: Api) -> None:
    assert await api.handle("stop", ["0"]) == ""
    assert await api.handle("stop_all", []) == ""


@pytest.mark.parametrize("event", ["get_position", "get_angles", "get_shank_count", "stop"])
async def test_missing_or_empty_id_is_malformed(api: Api, event: str) -> None:
    assert await api.handle(event, []) == MALFORMED
    assert await api.handle(event, [""]) == MALFORMED


@pytest.mark.parametrize(
    ("event", "data"),
    [
        ("set_position", None),
        ("set_position", "not json"),
        ("set_position", '{"ManipulatorId":"1","Position":{},"Speed":0}'),
        ("set_position", '{"ManipulatorId":"","Position":{},"Speed":1}'),
        ("set_depth", '{"ManipulatorId":"1","Speed":1}'),
        ("set_depth", "[]"),
        ("set_inside_brain", '{"ManipulatorId":"1"}'),
        ("set_inside_brain", '{"ManipulatorId":"1","Inside":"maybe"}'),
    ],
)
async def test_bad_requests_get_the_malformed_answer_and_a_log_line(
    api: Api, event: str, data: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    args = [] if data is None else [data]
    assert await api.handle(event, args) == MALFORMED
    assert any(f"malformed {event} request" in r.getMessage() for r in caplog.records)


async def test_unknown_event_answer(api: Api) -> None:
    assert await api.handle("fly_to_the_moon", ["0"]) == '{"error": "Unknown event."}'


async def test_unknown_manipulator_id_errors_in_each_response_shape(api: Api) -> None:
    err = "ValueError: Manipulator 9 not found."
    assert json.loads(await api.handle("get_position", ["9"])) == {
        "Position": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 0.0},
        "Error": err,
    }
    assert json.loads(await api.handle("get_angles", ["9"]))["Error"] == err
    assert json.loads(await api.handle("get_shank_count", ["9"])) == {
        "ShankCount": 1,
        "Error": err,
    }
    assert json.loads(await api.handle("set_position", [move("9", 1, 1, 1, 1)]))["Error"] == err
    depth = '{"ManipulatorId":"9","Depth":2,"Speed":1}'
    assert await api.handle("set_depth", [depth]) == '{"Depth":0.0,"Error":"' + err + '"}'
    inside = '{"ManipulatorId":"9","Inside":true}'
    assert await api.handle("set_inside_brain", [inside]) == '{"State":false,"Error":"' + err + '"}'
    assert await api.handle("stop", ["9"]) == err


async def test_stopped_move_answers_did_not_reach(api: Api) -> None:
    async with trio.open_nursery() as nursery:
        answers: list[str] = []

        async def slow_move() -> None:
            answers.append(await api.handle("set_position", [move("0", 10, 0, 0, 0, speed=1)]))

        nursery.start_soon(slow_move)
        await trio.sleep(0.2)
        assert await api.handle("stop", ["0"]) == ""
    answer = json.loads(answers[0])
    assert answer["Position"] == {"x": 0.0, "y": 0.0, "z": 0.0, "w": 0.0}
    assert answer["Error"].startswith(
        "Manipulator 0 did not reach target position on axis x."
        " Requested: x=10.0 y=0.0 z=0.0 w=0.0, got: x=0."
    )


async def test_stopped_depth_move_answers_did_not_reach_depth(api: Api) -> None:
    async with trio.open_nursery() as nursery:
        answers: list[str] = []

        async def slow_depth() -> None:
            request = '{"ManipulatorId":"4","Depth":5,"Speed":1}'
            answers.append(await api.handle("set_depth", [request]))

        nursery.start_soon(slow_depth)
        await trio.sleep(0.2)
        assert await api.handle("stop_all", []) == ""
    answer = json.loads(answers[0])
    assert answer["Depth"] == 0.0
    assert answer["Error"].startswith(
        "Manipulator 4 did not reach target depth. Requested: 5.0, got: 0."
    )


async def test_lost_device_goes_offline_and_comes_back_by_itself(
    api: Api, platform: FakePlatform
) -> None:
    fake = platform.manipulators[5]
    fake.unplug()
    first = json.loads(await api.handle("get_position", ["5"]))
    assert first["Error"].startswith("DeviceLost: fake manipulator 5 unplugged")
    again = json.loads(await api.handle("get_position", ["5"]))
    assert again["Error"].startswith("DeviceLost: Manipulator 5 is offline")
    assert json.loads(await api.handle("get_position", ["4"]))["Error"] == ""
    fake.replug()
    for _ in range(100):
        if json.loads(await api.handle("get_position", ["5"]))["Error"] == "":
            break
        await trio.sleep(0.05)
    else:
        raise AssertionError("manipulator 5 did not come back online")


async def test_an_unexpected_failure_still_answers(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(args: object) -> str:
        raise RuntimeError("oops")

    monkeypatch.setitem(api._handlers, "get_manipulators", broken)
    assert await api.handle("get_manipulators", []) == '{"error": "RuntimeError: oops"}'


async def test_device_lost_mid_move_fails_that_move_and_recovers(
    api: Api, platform: FakePlatform
) -> None:
    answers: list[str] = []

    async def long_move() -> None:
        request = '{"ManipulatorId":"2","Position":{"x":5},"Speed":1}'
        answers.append(await api.handle("set_position", [request]))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(long_move)
            await trio.sleep(0.2)
            platform.manipulators[2].unplug()
    assert json.loads(answers[0])["Error"].startswith("DeviceLost: fake manipulator 2 unplugged")
    request = {"ManipulatorId": "2", "Position": {}, "Speed": 1}
    offline = json.loads(await api.handle("set_position", [request]))
    assert offline["Error"].startswith("DeviceLost: Manipulator 2 is offline")
    platform.manipulators[2].replug()
    for _ in range(100):
        if json.loads(await api.handle("get_position", ["2"]))["Error"] == "":
            break
        await trio.sleep(0.05)
    else:
        raise AssertionError("manipulator 2 did not come back online")
