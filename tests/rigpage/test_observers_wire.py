"""Observers over real sockets: read-only clients next to one controller."""

from __future__ import annotations

import json
import logging
from contextlib import AsyncExitStack
from typing import Any

import pytest
import trio

from drivers.fake import FakePlatform
from ephysd.api import EPHYS_LINK_API_VERSION
from ephysd.config import ConfigError, Limits, build_settings
from ephysd.observers import READ_ONLY
from tests.daemon.e2e import move, port_of, run_client, running_daemon, url_of
from tests.service.sio import Refused, SioClient, sio_client

OBSERVER = {"role": "observer"}
MALFORMED = '{"error": "Malformed request."}'


async def test_eight_observers_and_then_pinpoint_as_controller_are_served_at_once() -> None:
    async with running_daemon() as daemon, AsyncExitStack() as stack:
        port = port_of(daemon)
        observers = [await stack.enter_async_context(sio_client(port, OBSERVER)) for _ in range(8)]
        assert daemon.policy is not None and daemon.policy.controller is None
        controller = await stack.enter_async_context(sio_client(port))
        assert daemon.policy.controller == controller.sid
        assert await controller.call("set_position", move("1", 1, 50)) == (
            '{"Position":{"x":1.0,"y":0.0,"z":0.0,"w":0.0},"Error":""}'
        )
        for observer in observers:
            assert await observer.call("get_version") == EPHYS_LINK_API_VERSION
        # The one-controller rule is unchanged for everyone else.
        with pytest.raises(Refused, match="is already connected and controls this rig"):
            async with sio_client(port):
                pass
        assert daemon.policy.controller == controller.sid


async def test_an_observer_past_the_limit_is_refused_and_the_limit_is_configurable() -> None:
    async with running_daemon() as daemon, AsyncExitStack() as stack:
        for _ in range(8):
            await stack.enter_async_context(sio_client(port_of(daemon), OBSERVER))
        with pytest.raises(Refused, match=r"Too many observers \(8 already watch this rig\)"):
            async with sio_client(port_of(daemon), OBSERVER):
                pass
    async with running_daemon(limits=Limits(max_observers=2)) as daemon, AsyncExitStack() as stack:
        for _ in range(2):
            await stack.enter_async_context(sio_client(port_of(daemon), OBSERVER))
        with pytest.raises(Refused, match="Too many observers"):
            async with sio_client(port_of(daemon), OBSERVER):
                pass
        # A controller is still welcome.
        controller = await stack.enter_async_context(sio_client(port_of(daemon)))
        assert await controller.call("get_version") == EPHYS_LINK_API_VERSION


async def test_observers_read_like_anyone_and_are_refused_every_change_in_its_shape() -> None:
    async with (
        running_daemon() as daemon,
        sio_client(port_of(daemon)) as controller,
        sio_client(port_of(daemon), OBSERVER) as observer,
    ):
        for call in [
            ["get_version"],
            ["get_pinpoint_id"],
            ["get_platform_info"],
            ["get_manipulators"],
            ["get_position", "2"],
            ["get_angles", "2"],
            ["get_shank_count", "2"],
            ["get_position", "99"],
            ["get_position"],
            ["launch_rocket"],
        ]:
            assert await observer.call(*call) == await controller.call(*call), call
        zero = '{"x":0.0,"y":0.0,"z":0.0,"w":0.0}'
        assert await observer.call("set_position", move("2", 3, 50)) == (
            f'{{"Position":{zero},"Error":"{READ_ONLY}"}}'
        )
        depth = '{"ManipulatorId":"2","Depth":1,"Speed":1}'
        assert await observer.call("set_depth", depth) == f'{{"Depth":0.0,"Error":"{READ_ONLY}"}}'
        inside = '{"ManipulatorId":"2","Inside":true}'
        assert await observer.call("set_inside_brain", inside) == (
            f'{{"State":false,"Error":"{READ_ONLY}"}}'
        )
        # Nothing changed on the rig.
        assert json.loads(await controller.call("get_position", "2"))["Position"]["x"] == 0.0
        assert await controller.call("set_position", move("2", 3, 50)) == (
            '{"Position":{"x":3.0,"y":0.0,"z":0.0,"w":0.0},"Error":""}'
        )


async def start_move(
    nursery: trio.Nursery, client: SioClient, manipulator_id: str
) -> trio.MemoryReceiveChannel[Any]:
    """A 10 mm move at 1 mm/s left running; its answer arrives on the returned channel."""
    send, receive = trio.open_memory_channel[Any](1)

    async def run() -> None:
        await send.send(await client.call("set_position", move(manipulator_id, 10, 1)))

    nursery.start_soon(run)
    await trio.sleep(0.3)
    return receive


@pytest.mark.parametrize("event", ["stop", "stop_all"])
async def test_an_observers_stop_ends_the_controllers_move_as_its_own_stop_would(
    event: str, caplog: pytest.LogCaptureFixture
) -> None:
    platform = FakePlatform()
    caplog.set_level(logging.INFO, logger="ephysd.observers")
    async with (
        running_daemon(platform) as daemon,
        sio_client(port_of(daemon)) as controller,
        sio_client(port_of(daemon), {"role": "observer", "name": "rig page"}) as observer,
        trio.open_nursery() as nursery,
    ):
        answer = await start_move(nursery, controller, "0")
        args = ["0"] if event == "stop" else []
        assert await observer.call(event, *args) == ""
        with trio.fail_after(5):
            moved = json.loads(await answer.receive())
        assert moved["Error"].startswith("Manipulator 0 did not reach target position on axis x.")
        assert platform.manipulators[0].halts >= 1
        stopped_at = (await platform.manipulators[0].position())[0]
        assert 0 < stopped_at < 1
        await trio.sleep(0.1)
        assert (await platform.manipulators[0].position())[0] == stopped_at
        # The controller keeps control and may move again.
        assert daemon.policy is not None and daemon.policy.controller == controller.sid
    pressed = [r.getMessage() for r in caplog.records if "pressed by" in r.getMessage()]
    assert len(pressed) == 1
    assert pressed[0].startswith(f"{event}{' ' + json.dumps('0') if args else ''} pressed by")
    assert f"observer {observer.sid} at 127.0.0.1:" in pressed[0]
    assert pressed[0].endswith("(rig page)")


async def test_an_observer_leaving_neither_stops_motion_nor_frees_control() -> None:
    platform = FakePlatform()
    async with (
        running_daemon(platform) as daemon,
        sio_client(port_of(daemon)) as controller,
        trio.open_nursery() as nursery,
    ):
        async with sio_client(port_of(daemon), OBSERVER) as observer:
            assert await observer.call("get_version") == EPHYS_LINK_API_VERSION
            send, answer = trio.open_memory_channel[Any](1)

            async def short_move() -> None:
                await send.send(await controller.call("set_position", move("1", 0.5, 1)))

            nursery.start_soon(short_move)
            await trio.sleep(0.1)
        with trio.fail_after(10):
            assert json.loads(await answer.receive())["Error"] == ""
        assert platform.manipulators[1].halts == 0
        assert daemon.policy is not None and daemon.policy.controller == controller.sid


async def test_observers_must_bring_the_token_and_name_a_known_role() -> None:
    async with running_daemon(token="s3cret") as daemon:
        port = port_of(daemon)
        with pytest.raises(Refused, match="Invalid token"):
            async with sio_client(port, OBSERVER):
                pass
        async with sio_client(port, {"role": "observer", "token": "s3cret"}) as observer:
            assert await observer.call("get_version") == EPHYS_LINK_API_VERSION
            assert daemon.policy is not None and daemon.policy.controller is None
        with pytest.raises(Refused, match="Unknown role 'admin'"):
            async with sio_client(port, {"role": "admin", "token": "s3cret"}):
                pass


async def test_python_socketio_joins_as_an_observer_and_gets_rig_state() -> None:
    async with running_daemon() as daemon:
        steps: list[list[Any]] = [
            ["connect", ["websocket"], OBSERVER],
            ["call", "set_position", move("1", 1, 1)],
            ["call", "stop_all"],
        ]
        results = await run_client("python", url_of(daemon), steps)
    assert "connected" in results[0]
    assert json.loads(results[1])["Error"] == READ_ONLY
    assert results[2] == ""


async def test_rig_state_shows_positions_states_flags_errors_and_the_controller() -> None:
    platform = FakePlatform()
    async with (
        running_daemon(platform) as daemon,
        sio_client(port_of(daemon), OBSERVER) as observer,
        trio.open_nursery() as nursery,
    ):

        async def seen(check: Any) -> dict[str, Any]:
            with trio.fail_after(10):
                while True:
                    (text,) = await observer.next_event("rig_state")
                    pushed: dict[str, Any] = json.loads(text)
                    if check(pushed):
                        return pushed

        # The first state may come before the first reading (Position null).
        state = await seen(lambda s: s["Manipulators"][0]["Position"] is not None)
        assert set(state) == {"Time", "Controller", "EStop", "Manipulators"}
        assert state["Controller"] is None
        assert state["EStop"] == {"Configured": False, "Armed": False, "Device": ""}
        assert state["Manipulators"][0] == {
            "Id": "0",
            "Position": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 0.0},
            "State": "idle",
            "Reason": "",
            "InsideBrain": False,
            "LastError": "",
        }
        async with sio_client(port_of(daemon)) as controller:
            answer = await start_move(nursery, controller, "5")
            assert await controller.call("set_inside_brain", '{"ManipulatorId":"6","Inside":true}')
            assert json.loads(await controller.call("set_position", move("6", 1, 1)))["Error"]
            platform.manipulators[7].unplug()
            await controller.call("get_position", "7")

            state = await seen(lambda s: s["Manipulators"][7]["State"] == "offline")
            five, six, seven = state["Manipulators"][5:]
            assert state["Controller"].startswith("127.0.0.1:")
            assert five["State"] == "moving" and five["Position"]["x"] > 0
            assert six["InsideBrain"] is True
            assert six["LastError"].startswith("Cannot move manipulator while inside the brain.")
            assert "unplugged" in seven["Reason"]
            assert "unplugged" in seven["LastError"]
            await controller.call("stop", "5")
            await answer.receive()
            state = await seen(lambda s: s["Manipulators"][5]["State"] == "idle")
            assert state["Manipulators"][5]["LastError"].startswith("Manipulator 5 did not reach")
        state = await seen(lambda s: s["Controller"] is None)
        assert state["Manipulators"][5]["State"] == "idle"


def test_a_negative_observer_limit_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match=r"limits.max_observers: Expected `int` >= 0"):
        build_settings({"limits": {"max_observers": -1}}, {})
    assert build_settings({"limits": {"max_observers": 0}}, {}).limits.max_observers == 0


async def test_observers_never_take_the_controllers_last_connection() -> None:
    # Each observer holds an Engine.IO session: as many observers as sessions
    # would lock Pinpoint out ("Server full"), so one session stays free for it.
    limits = Limits(max_connections=3, max_observers=8)
    async with running_daemon(limits=limits) as daemon, AsyncExitStack() as stack:
        for _ in range(2):
            await stack.enter_async_context(sio_client(port_of(daemon), OBSERVER))
        with pytest.raises(Refused, match=r"Too many observers \(2 already watch this rig\)"):
            async with sio_client(port_of(daemon), OBSERVER):
                pass
        controller = await stack.enter_async_context(sio_client(port_of(daemon)))
        assert daemon.policy is not None and daemon.policy.controller == controller.sid


async def test_an_observers_abort_jackhammer_ends_the_controllers_closed_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    platform = FakePlatform()
    caplog.set_level(logging.INFO, logger="ephysd.observers")
    endless = json.dumps(
        {"ManipulatorId": "3", "ClosedLoop": True, "TargetUm": 10_000, "MaxIterations": 200}
    )
    async with (
        running_daemon(platform) as daemon,
        sio_client(port_of(daemon)) as controller,
        sio_client(port_of(daemon), {"role": "observer", "name": "rig page"}) as observer,
        trio.open_nursery() as nursery,
    ):
        send, answer = trio.open_memory_channel[Any](1)

        async def hammer() -> None:
            await send.send(await controller.call("jackhammer", endless))

        nursery.start_soon(hammer)
        await trio.sleep(0.5)
        assert await observer.call("abort_jackhammer") == '{"success": true}'
        with trio.fail_after(5):
            hammered = json.loads(await answer.receive())
    assert hammered["StopReason"] == "aborted"
    assert hammered["Error"] == ""
    assert 1 <= hammered["IterationsUsed"] < 200
    assert platform.manipulators[3].halts >= 1
    pressed = [r.getMessage() for r in caplog.records if "pressed by" in r.getMessage()]
    assert len(pressed) == 1
    assert pressed[0].startswith(
        f"abort_jackhammer pressed by observer {observer.sid} at 127.0.0.1:"
    )
    assert pressed[0].endswith("(rig page)")


async def test_an_observer_has_a_budget_of_its_own_and_its_stops_never_wait() -> None:
    # One request every 2 s each: the observer's three reads sent at once are
    # served over about 4 s, its stop_all at once, and the controller's own
    # budget is untouched by them.
    async with (
        running_daemon(limits=Limits(rate=0.5, burst=1)) as daemon,
        sio_client(port_of(daemon)) as controller,
        sio_client(port_of(daemon), OBSERVER) as observer,
        trio.open_nursery() as nursery,
    ):
        order: list[tuple[str, str]] = []

        async def call(who: str, client: SioClient, event: str) -> None:
            order.append((f"{who} {event}", await client.call(event)))

        for _ in range(3):
            nursery.start_soon(call, "observer", observer, "get_version")
        await trio.sleep(0.2)
        nursery.start_soon(call, "observer", observer, "stop_all")
        await trio.sleep(0.2)
        nursery.start_soon(call, "controller", controller, "get_version")
    assert [who for who, _ in order] == [
        "observer get_version",
        "observer stop_all",
        "controller get_version",
        "observer get_version",
        "observer get_version",
    ]
    assert [answer for _, answer in order] == [
        EPHYS_LINK_API_VERSION,
        "",
        *[EPHYS_LINK_API_VERSION] * 3,
    ]
