"""The daemon's actors driving the New Scale driver through its pty simulator."""

from __future__ import annotations

import json
from pathlib import Path

import trio

from drivers.base import PlatformOptions
from drivers.newscale import create_platform
from drivers.newscale.sim import NewScaleSim
from ephysd.api import Api
from ephysd.rig import open_rig


async def test_api_moves_stops_and_survives_a_pulled_cable_on_the_newscale_simulator(
    tmp_path: Path,
) -> None:
    # A stable link, like /dev/serial/by-id: the replugged bridge gets a new pty.
    sim = NewScaleSim(link=str(tmp_path / "bridge"))
    async with trio.open_nursery() as nursery:
        path = await nursery.start(sim.run)
        platform = create_platform(PlatformOptions(serial_ports=(path,)))
        async with open_rig(platform) as rig:
            api = Api(rig, "1a2b3c4d")
            manipulators = json.loads(await api.handle("get_manipulators", []))["Manipulators"]
            assert len(manipulators) == 1
            mid = manipulators[0]
            info = json.loads(await api.handle("get_platform_info", []))
            assert info["CliName"] == "newscale"
            assert info["AxesCount"] == 3
            start = json.loads(await api.handle("get_position", [mid]))
            assert start["Error"] == ""

            target = dict(start["Position"])
            target["x"] += 0.5
            request = json.dumps({"ManipulatorId": mid, "Position": target, "Speed": 2.0})
            with trio.fail_after(20):
                moved = json.loads(await api.handle("set_position", [request]))
            assert moved["Error"] == ""

            far = dict(moved["Position"])
            far["x"] = far["x"] - 5 if far["x"] > 7.5 else far["x"] + 5
            answers: list[str] = []

            async def long_move() -> None:
                slow = json.dumps({"ManipulatorId": mid, "Position": far, "Speed": 0.5})
                answers.append(await api.handle("set_position", [slow]))

            with trio.fail_after(20):
                async with trio.open_nursery() as moves:
                    moves.start_soon(long_move)
                    await trio.sleep(0.5)
                    assert await api.handle("stop", [mid]) == ""
            # Normally "did not reach target position"; on a loaded machine the
            # driver's 100 ms transaction deadline may report a DeviceError instead.
            assert json.loads(answers[0])["Error"] != ""
            still = {a: sim.stage_position_mm(a) for a in sim.stages}
            await trio.sleep(0.3)
            assert {a: sim.stage_position_mm(a) for a in sim.stages} == still

            sim.close_device()
            lost = json.loads(await api.handle("get_position", [mid]))
            assert lost["Error"] != ""
            sim.reopen_device()
            with trio.fail_after(30):
                while json.loads(await api.handle("get_position", [mid]))["Error"]:  # noqa: ASYNC110
                    await trio.sleep(0.2)
        nursery.cancel_scope.cancel()
