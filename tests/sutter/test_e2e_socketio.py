"""``ephysd --platform sutter`` end to end: a real daemon process, two simulated controllers
with two drives each on ptys, and a python-socketio client doing what Pinpoint does."""

from __future__ import annotations

import json
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from drivers.sutter.sim import SutterSim
from tests.serial_e2e import Client, daemon_and_client, depth, move


@asynccontextmanager
async def rig(tmp_path: Path) -> AsyncIterator[tuple[list[SutterSim], Client, trio.Process]]:
    sims = [SutterSim(link=str(tmp_path / f"sutter-{i}"), drives=(1, 2)) for i in (1, 2)]
    async with trio.open_nursery() as nursery:
        for sim in sims:
            await nursery.start(sim.run)
        flags = [
            *("--platform", "sutter"),
            *("--port", f"left={sims[0].path}", "--port", f"right={sims[1].path}"),
        ]
        async with daemon_and_client(flags) as (daemon, client):
            yield sims, client, daemon
        nursery.cancel_scope.cancel()


async def position(client: Client, manipulator: str) -> dict[str, float]:
    answer = json.loads(await client.call("get_position", manipulator))
    assert answer["Error"] == "", answer
    position: dict[str, float] = answer["Position"]
    return position


async def assert_every_drive_stays_still(sims: list[SutterSim]) -> None:
    frozen = [sim.position(d) for sim in sims for d in (1, 2)]
    await trio.sleep(0.6)
    assert [sim.position(d) for sim in sims for d in (1, 2)] == frozen
    assert all(sim.moving is None for sim in sims)
    assert sims[0].violations == [] and sims[1].violations == []


async def test_two_drives_move_while_every_drive_reads_and_stops_end_the_moves(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as (sims, client, _):
        listed = json.loads(await client.call("get_manipulators", None))
        assert listed["Manipulators"] == ["left-1", "left-2", "right-1", "right-2"]
        info = json.loads(await client.call("get_platform_info", None))
        assert info["AxesCount"] == 3
        assert info["Dimensions"] == {"x": 25.0, "y": 25.0, "z": 25.0, "w": 25.0}
        assert await position(client, "left-1") == pytest.approx(
            {"x": 12.5, "y": 12.5, "z": 12.5, "w": 12.5}
        )

        target = {"x": 12.0, "y": 12.2, "z": 12.4, "w": 0.0}
        first = await client.send("set_position", move("left-1", target, 0.3))
        second = await client.send("set_depth", depth("left-2", 12.9, 0.2))
        seen: dict[str, list[float]] = {"left-1": [], "left-2": [], "right-1": []}
        for _ in range(6):
            for manipulator, values in seen.items():
                values.append((await position(client, manipulator))["w"])
            await trio.sleep(0.1)
        moved = json.loads((await client.answer(first))["answer"])
        assert moved["Error"] == ""
        assert moved["Position"] == pytest.approx({**target, "w": 12.8}, abs=0.001)
        inserted = json.loads((await client.answer(second))["answer"])
        assert inserted == {"Depth": pytest.approx(12.9, abs=0.001), "Error": ""}
        assert len(set(seen["left-1"])) > 2 and len(set(seen["left-2"])) > 2  # fresh while moving
        assert set(seen["right-1"]) == {12.5}

        far = await client.send("set_depth", depth("left-1", 20.0, 1.0))
        await trio.sleep(0.5)
        assert await client.call("stop", "left-1") == ""
        answer = json.loads((await client.answer(far))["answer"])
        assert "did not reach target depth" in answer["Error"]
        assert len(sims[0].interrupts) == 1

        moves = [
            await client.send("set_depth", depth(m, 20.0, 1.0))
            for m in ("left-1", "left-2", "right-1", "right-2")
        ]
        await trio.sleep(0.8)
        assert await client.call("stop_all", None) == ""
        for request in moves:
            stopped = json.loads((await client.answer(request))["answer"])
            assert "did not reach target depth" in stopped["Error"]
        await assert_every_drive_stays_still(sims)
        assert all(m.speed_byte is not None for sim in sims for m in sim.moves)  # never M


async def test_a_pulled_cable_takes_that_controllers_drives_offline_and_they_come_back(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as (sims, client, _):
        long_move = await client.send("set_depth", depth("left-1", 20.0, 1.0))
        await trio.sleep(0.3)
        sims[0].close_device()
        answer = await client.answer(long_move, timeout_s=5)
        assert json.loads(answer["answer"])["Error"] != ""
        assert answer["elapsed"] < 0.3 + 1.5 + 0.5  # within 1.5 s of the pull (+ client slack)
        lost = json.loads(await client.call("get_position", "left-2", timeout_s=3))
        assert "offline" in lost["Error"] or "gone" in lost["Error"], lost
        assert (await position(client, "right-2"))["w"] == 12.5  # the other controller answers

        sims[0].reopen_device()
        for manipulator in ("left-1", "left-2"):
            with trio.fail_after(20):
                while json.loads(await client.call("get_position", manipulator))["Error"]:  # noqa: ASYNC110
                    await trio.sleep(0.1)
        back = json.loads(await client.call("set_depth", depth("left-1", 12.0, 2.0)))
        assert back == {"Depth": pytest.approx(12.0, abs=0.001), "Error": ""}
        assert sims[0].violations == [] and sims[1].violations == []


async def test_the_e_stop_signal_stops_every_drive_of_every_controller(tmp_path: Path) -> None:
    async with rig(tmp_path) as (sims, client, daemon):
        moves = [
            await client.send("set_depth", depth(m, 20.0, 1.0))
            for m in ("left-1", "left-2", "right-1", "right-2")
        ]
        await trio.sleep(0.8)
        daemon.send_signal(signal.SIGUSR1)
        for request in moves:
            stopped = json.loads((await client.answer(request))["answer"])
            assert "did not reach target depth" in stopped["Error"]
        await assert_every_drive_stays_still(sims)
