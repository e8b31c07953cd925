"""The daemon end to end with the real python-socketio and JavaScript socket.io clients."""

from __future__ import annotations

import json
import signal
from typing import Any

import pytest
import trio

from drivers.fake import FakePlatform
from tests.daemon.e2e import (
    PINPOINT_ID,
    live_client,
    move,
    run_client,
    running_daemon,
    url_of,
)

CLIENTS = ["python", "js"]
MALFORMED = '{"error": "Malformed request."}'


ORIGIN = '{"Position":{"x":0.0,"y":0.0,"z":0.0,"w":0.0}'

GOLDEN: list[tuple[list[Any], Any]] = [
    (["connect"], None),
    (["call", "get_version"], "2.3.6"),
    (
        ["call", "get_pinpoint_id"],
        f'{{"PinpointId":"{PINPOINT_ID}","IsRequester":false,'
        f'"pinpoint_id":"{PINPOINT_ID}","is_requester":false}}',
    ),
    (
        ["call", "get_platform_info"],
        '{"Name":"Fake Manipulator","CliName":"fake","AxesCount":4,'
        '"Dimensions":{"x":20.0,"y":20.0,"z":20.0,"w":20.0}}',
    ),
    (
        ["call", "get_manipulators"],
        '{"Manipulators":["0","1","2","3","4","5","6","7"],"Error":""}',
    ),
    (["call", "get_position", "0"], ORIGIN + ',"Error":""}'),
    (["call", "get_angles", "2"], '{"Angles":{"x":180.0,"y":60.0,"z":0.0},"Error":""}'),
    (["call", "get_shank_count", "0"], '{"ShankCount":1,"Error":""}'),
    (
        [
            "call",
            "set_position",
            '{"ManipulatorId":"1","Position":{"x":1.5,"y":2,"z":0,"w":0.84},"Speed":50}',
        ],
        '{"Position":{"x":1.5,"y":2.0,"z":0.0,"w":0.84},"Error":""}',
    ),
    (
        ["call", "set_depth", '{"ManipulatorId":"1","Depth":1.7,"Speed":50}'],
        '{"Depth":1.7,"Error":""}',
    ),
    (
        ["call", "set_inside_brain", '{"ManipulatorId":"1","Inside":true}'],
        '{"State":true,"Error":""}',
    ),
    (
        ["call", "set_position", move("1", 3, 50)],
        ORIGIN + ',"Error":"Cannot move manipulator while inside the brain.'
        ' Set the depth (\\"set_depth\\") instead."}',
    ),
    (
        ["call", "set_inside_brain", '{"ManipulatorId":"1","Inside":false}'],
        '{"State":false,"Error":""}',
    ),
    (
        ["call", "jackhammer", '{"ManipulatorId":"4","Iterations":1}'],
        '{"Position": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 0.0075}, "Error": ""}',
    ),
    (["call", "abort_jackhammer"], '{"success": true}'),
    (["call", "stop", "1"], ""),
    (["call", "stop_all"], ""),
    (["call", "get_position"], MALFORMED),
    (["call", "jackhammer"], MALFORMED),
    (["call", "set_position", "{not json"], MALFORMED),
    (["call", "set_position", move("1", 3, 0)], MALFORMED),
    (["call", "set_depth", '{"ManipulatorId":"","Depth":1,"Speed":1}'], MALFORMED),
    (["call", "get_position", "9"], ORIGIN + ',"Error":"ValueError: Manipulator 9 not found."}'),
    (["call", "launch_rocket", "0"], '{"error": "Unknown event."}'),
    (
        [
            "call",
            "set_position",
            {"manipulator_id": "3", "position": {"x": 1}, "speed": 50},
        ],
        '{"Position":{"x":1.0,"y":0.0,"z":0.0,"w":0.0},"Error":""}',
    ),
]


@pytest.mark.parametrize(
    ("kind", "transports"),
    [
        ("python", None),
        ("js", None),
        ("python", ["polling"]),
        ("js", ["polling"]),
        ("js", ["websocket"]),
    ],
)
async def test_every_event_answers_the_golden_text(kind: str, transports: list[str] | None) -> None:
    steps = [["connect", transports], *(step for step, _ in GOLDEN[1:])]
    async with running_daemon() as daemon:
        results = await run_client(kind, url_of(daemon), steps)
    assert "connected" in results[0]
    if transports is not None:
        assert results[0]["connected"] == transports[0]
    for (step, expected), got in zip(GOLDEN[1:], results[1:], strict=True):
        assert got == expected, step


@pytest.mark.parametrize("kind", CLIENTS)
async def test_stopped_move_acks_did_not_reach_over_the_wire(kind: str) -> None:
    async with running_daemon() as daemon:
        results = await run_client(
            kind,
            url_of(daemon),
            [
                ["connect"],
                ["start", "set_position", move("0", 10, 1)],
                ["sleep", 0.3],
                ["call", "get_position", "0"],
                ["call", "stop", "0"],
                ["finish"],
            ],
        )
    moving_x = json.loads(results[2])["Position"]["x"]
    assert 0.0 < moving_x < 1.0
    assert results[3] == ""
    answer = json.loads(results[4])
    assert answer["Error"].startswith("Manipulator 0 did not reach target position on axis x.")


@pytest.mark.parametrize("kind", CLIENTS)
async def test_second_client_is_refused_with_the_holder_named(kind: str) -> None:
    async with running_daemon() as daemon:
        url = url_of(daemon)
        async with live_client("python", url, [["connect"], ["sleep", 30]]) as first:
            assert "connected" in await first.next_result()
            results = await run_client(kind, url, [["connect"]])
            assert daemon.policy is not None
            holder = daemon.policy.controller
            assert holder is not None
            message = results[0]["refused"]["message"]
            assert message.startswith("Cannot connect ")
            assert f"as {holder} (from 127.0.0.1:" in message
            assert "is already connected" in message
            # The first client keeps control.
            assert daemon.policy.controller == holder


@pytest.mark.parametrize("kind", CLIENTS)
async def test_controller_disconnect_stops_motion_and_frees_control(kind: str) -> None:
    platform = FakePlatform()
    async with running_daemon(platform) as daemon:
        url = url_of(daemon)
        steps = [["connect"], ["start", "set_position", move("2", 10, 1)], ["disconnect"]]
        await run_client(kind, url, steps)
        assert daemon.policy is not None
        with trio.fail_after(5):
            await daemon.policy.wait_until_free()
        fake = platform.manipulators[2]
        assert fake.halts >= 1
        stopped_at = float((await fake.position())[0])
        await trio.sleep(0.1)
        assert float((await fake.position())[0]) == stopped_at < 1.0
        results = await run_client(kind, url, [["connect"], ["call", "get_version"]])
        assert "connected" in results[0]
        assert results[1] == "2.3.6"


async def test_vanished_controller_is_detected_by_heartbeat_and_motion_stops() -> None:
    platform = FakePlatform()
    async with running_daemon(platform, ping_interval_ms=200, ping_timeout_ms=400) as daemon:
        url = url_of(daemon)
        steps: list[list[Any]] = [
            ["connect", ["websocket"]],
            ["start", "set_position", move("4", 10, 1)],
        ]
        steps.append(["sleep", 60])
        async with live_client("python", url, steps) as client:
            assert "connected" in await client.next_result()
            assert await client.next_result() == "started"
            client.process.send_signal(signal.SIGSTOP)
            try:
                assert daemon.policy is not None
                with trio.fail_after(5):
                    await daemon.policy.wait_until_free()
                assert platform.manipulators[4].halts >= 1
            finally:
                client.process.send_signal(signal.SIGCONT)


async def test_default_heartbeat_frees_control_within_ten_seconds() -> None:
    from ephysd.config import Settings

    settings = Settings()
    assert settings.ping_interval_ms + settings.ping_timeout_ms < 10_000


async def test_idle_clients_stay_connected_with_the_default_heartbeat() -> None:
    """2 s ping interval / 5 s timeout: both real clients keep answering pings.

    One daemon per client, side by side, so the 8 s idle wait is paid once.
    """
    results: dict[str, list[Any]] = {}

    async def idle_then_call(kind: str) -> None:
        async with running_daemon() as daemon:
            steps: list[list[Any]] = [["connect"], ["sleep", 8], ["call", "get_version"]]
            results[kind] = await run_client(kind, url_of(daemon), steps)

    async with trio.open_nursery() as nursery:
        for kind in CLIENTS:
            nursery.start_soon(idle_then_call, kind)
    assert results["python"][1] == results["js"][1] == "2.3.6"


async def test_motion_can_be_kept_when_the_controller_leaves_if_configured() -> None:
    platform = FakePlatform()
    async with running_daemon(platform, stop_on_disconnect=False) as daemon:
        steps = [["connect"], ["start", "set_position", move("2", 10, 1)], ["disconnect"]]
        await run_client("python", url_of(daemon), steps)
        assert daemon.policy is not None
        with trio.fail_after(5):
            await daemon.policy.wait_until_free()
        fake = platform.manipulators[2]
        before = float((await fake.position())[0])
        await trio.sleep(0.2)
        assert float((await fake.position())[0]) > before
        assert fake.halts == 0
