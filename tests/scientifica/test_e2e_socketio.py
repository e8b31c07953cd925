"""``ephysd --platform scientifica`` end to end: a real daemon process configured by a TOML
file, two simulated controllers on ptys (an IVM on firmware 3, a PatchStar on firmware 2),
and a python-socketio client doing what Pinpoint does."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from drivers.scientifica.sim import ScientificaSim
from tests.serial_e2e import Client, connected_client, move
from tests.service.daemon import run_daemon


@asynccontextmanager
async def rig(tmp_path: Path) -> AsyncIterator[tuple[list[ScientificaSim], Client]]:
    sims = [
        ScientificaSim(firmware=3, model="ivm_manipulator", link=str(tmp_path / "ivm")),
        ScientificaSim(firmware=2, model="patchstar", link=str(tmp_path / "patchstar")),
    ]
    config = (
        'platform = "scientifica"\n'
        f'port = ["left={sims[0].path}", "right={sims[1].path}"]\n'
        'listen = "127.0.0.1:0"\n'
        "[manipulators.right]\n"
        "baud = 9600\n"
        'depth_axis = "z"\n'
    )
    async with trio.open_nursery() as nursery:
        for sim in sims:
            await nursery.start(sim.run)
        async with run_daemon(tmp_path, config) as daemon:
            port = await daemon.wait_listening(30)
            try:
                async with connected_client(f"http://127.0.0.1:{port}") as client:
                    yield sims, client
            except BaseException:
                print(daemon.output())
                raise
        nursery.cancel_scope.cancel()


async def call(client: Client, event: str, data: Any, timeout_s: float = 20) -> Any:
    answer = await client.call(event, data, timeout_s)
    return json.loads(answer) if isinstance(answer, str) and answer.startswith("{") else answer


async def test_pinpoint_sees_a_3_axis_platform_moves_it_and_stop_halts_the_controller(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as (sims, client):
        info = await call(client, "get_platform_info", None)
        assert (info["CliName"], info["AxesCount"]) == ("scientifica", 3)
        assert info["Dimensions"] == {"x": 20.0, "y": 20.0, "z": 20.0, "w": 20.0}
        listed = await call(client, "get_manipulators", None)
        assert listed["Manipulators"] == ["left", "right"]

        start = await call(client, "get_position", "left")
        assert start == {"Position": {"x": 10.0, "y": 10.0, "z": 10.0, "w": 10.0}, "Error": ""}
        target = {"x": 10.5, "y": 9.8, "z": 10.2, "w": 0.0}
        moved = await call(client, "set_position", move("left", target, 2.0))
        assert moved["Error"] == ""
        assert moved["Position"] == pytest.approx({**target, "w": 10.2})
        assert sims[0].position_um() == pytest.approx((200.0, 500.0, -200.0))

        angles = await call(client, "get_angles", "left")
        assert (
            angles["Error"] == "NotSupported: Scientifica controllers do not report probe angles."
        )
        depth = await call(
            client, "set_depth", json.dumps({"ManipulatorId": "right", "Depth": 10.1, "Speed": 1})
        )
        assert depth == {"Depth": pytest.approx(10.1), "Error": ""}
        assert sims[1].position_um() == pytest.approx((0.0, 0.0, 100.0))  # depth is z there

        far = {"x": 10.5, "y": 5.0, "z": 10.2, "w": 0.0}
        long_move = await client.send("set_position", move("left", far, 0.5))
        await trio.sleep(0.5)
        assert await client.call("stop", "left") == ""
        stopped = json.loads((await client.answer(long_move))["answer"])
        assert "did not reach target position" in stopped["Error"]
        stop = next(r for r in sims[0].received if r.word == "STOP")
        assert stop.status in (2, 3)  # sent while the motors ran
        assert not sims[0].moving
        assert 250.0 < sims[0].position_um()[0] < 4000.0  # x_p = 15 mm was not reached


async def test_a_pulled_cable_takes_one_manipulator_offline_within_1_5_s_and_it_comes_back(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as (sims, client):
        far = {"x": 10.0, "y": 5.0, "z": 10.0, "w": 0.0}
        long_move = await client.send("set_position", move("left", far, 0.5))
        await trio.sleep(0.4)
        pulled = trio.current_time()
        sims[0].close_device()
        answer = json.loads((await client.answer(long_move, timeout_s=5))["answer"])
        assert trio.current_time() - pulled < 1.5
        assert answer["Error"].startswith("DeviceLost:")

        other = await call(client, "get_position", "right", timeout_s=2)
        assert other["Error"] == ""  # the other controller keeps answering
        lost = await call(client, "get_position", "left")
        assert "offline" in lost["Error"]

        sims[0].reopen_device()
        with trio.fail_after(15):
            while (await call(client, "get_position", "left"))["Error"]:  # noqa: ASYNC110
                await trio.sleep(0.1)
        back = await call(client, "set_position", move("left", {**far, "y": 9.9}, 2.0))
        assert back["Error"] == ""


async def test_a_silent_controller_goes_offline_within_a_second_and_comes_back_when_it_answers(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as (sims, client):
        sims[1].silent = True
        began = trio.current_time()
        lost = await call(client, "get_position", "right")
        assert trio.current_time() - began < 1.5
        assert "silent" in lost["Error"]
        assert (await call(client, "get_position", "left"))["Error"] == ""
        assert "offline" in (await call(client, "get_position", "right"))["Error"]
        sims[1].silent = False
        with trio.fail_after(15):
            while (await call(client, "get_position", "right"))["Error"]:  # noqa: ASYNC110
                await trio.sleep(0.1)
