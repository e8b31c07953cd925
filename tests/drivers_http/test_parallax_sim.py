"""The Parallax emulator answers as Parallax's own source does, era by era, over real HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import trio

from drivers.parallax.sim import ParallaxSim
from tests.drivers_http.harness import TILTED, UNCALIBRATED, VERTICAL, unused_port, wait_until


@asynccontextmanager
async def serving(sim: ParallaxSim) -> AsyncIterator[httpx.AsyncClient]:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(sim.serve, "127.0.0.1", 0)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=5
        ) as client:
            yield client
        nursery.cancel_scope.cancel()


async def next_poll(sim: ParallaxSim) -> float:
    """Return just after the emulated listener has read Pathfinder again: when it did."""
    polls = sim.polls
    return await wait_until(lambda: sim.polls != polls)


async def served_local_z(client: httpx.AsyncClient, serial: str) -> float:
    answer = (await client.get("/")).json()
    if "probes" in answer:
        return float(answer["probes"][serial]["obj"]["stage_z"]) / 1000
    return float(answer[serial]["stage_Z"])


async def test_put_answers_400_to_non_json_500_to_what_makes_parallax_raise_and_200_else() -> None:
    sim = ParallaxSim()
    async with serving(sim) as client:
        not_json = await client.put("/", content=b"stop!")
        assert (not_json.status_code, not_json.text) == (400, "Bad Request: Invalid JSON format")
        assert (await client.put("/", json=["stop"])).status_code == 500
        bad_x: dict[str, object] = {"move_type": "moveXYZ", "world": "global"}
        bad_x |= {"stage_sn": VERTICAL, "x": "one", "y": 1, "z": 1}
        assert (await client.put("/", json=bad_x)).status_code == 500
        assert (await client.get("/elsewhere")).status_code == 404
        assert (await client.post("/", json={})).status_code == 405
    assert not any(stage.stage.moving for stage in sim.stages.values())


@pytest.mark.parametrize(
    ("command", "logged"),
    [
        ({"PutId": "stop", "Probe": VERTICAL}, "No move type found in the command."),
        ({"move_type": "halt", "stage_sn": VERTICAL}, "Invalid move type: halt"),
        ({"move_type": "stop", "stage_sn": "SN1"}, "Stage serial number SN1 not found"),
        (
            {"move_type": "moveXYZ", "stage_sn": VERTICAL, "x": 1, "y": 1},
            "X, Y, or Z coordinates are missing",
        ),
        (
            {"move_type": "moveXYZ", "world": "global", "stage_sn": UNCALIBRATED}
            | {"x": 1, "y": 1, "z": 1},
            "Transformation matrix not found",
        ),
        ({"move_type": "insertion", "stage_sn": VERTICAL, "rate": 60}, "Distance or Rate"),
    ],
)
async def test_commands_parallax_drops_are_answered_200_with_an_empty_body(
    command: dict[str, object], logged: str
) -> None:
    sim = ParallaxSim()
    async with serving(sim) as client:
        answer = await client.put("/", json=command)
    assert (answer.status_code, answer.content) == (200, b"")
    assert len(sim.dropped) == 1 and sim.dropped[0].startswith(logged)
    assert not any(stage.stage.moving for stage in sim.stages.values())


async def test_stop_all_halts_every_stage_and_move_xy0_only_retracts_z() -> None:
    sim = ParallaxSim(coarse_speed_mm_s=0.5)
    async with serving(sim) as client:
        for serial in (VERTICAL, TILTED):
            insertion = {"move_type": "insertion", "stage_sn": serial, "distance": 1000}
            await client.put("/", json=insertion | {"rate": 600})
        assert all(sim.stages[s].stage.moving for s in (VERTICAL, TILTED))
        await client.put("/", json={"move_type": "stopAll"})
        assert not any(stage.stage.moving for stage in sim.stages.values())

        await client.put("/", json={"move_type": "moveXY0", "stage_sn": VERTICAL, "x": 1, "y": 1})
        await trio.sleep(0.05)
        x, y, z = sim.stages[VERTICAL].stage.position()
        assert (x, y) == (7.5, 7.5) and z < 7.5


async def test_each_era_serves_its_own_shape() -> None:
    shapes = {}
    for era in ("1.4", "1.5", "1.15", "1.16"):
        async with serving(ParallaxSim(era=era)) as client:
            shapes[era] = (await client.get("/")).json()
    assert "relative_X" not in shapes["1.4"][VERTICAL]
    assert {"relative_X", "shank_cnt"} <= shapes["1.5"][VERTICAL].keys()
    assert "is_calibrated" not in shapes["1.5"][VERTICAL]
    assert "shank_cnt" not in shapes["1.15"][VERTICAL]
    assert shapes["1.15"][UNCALIBRATED]["is_calibrated"] is False
    for era in ("1.4", "1.5", "1.15"):
        assert shapes[era][VERTICAL]["stage_Z"] == 7.5  # mm
        assert shapes[era][UNCALIBRATED]["global_X"] is None
        assert shapes[era][TILTED]["pitch"] is None
    nested = shapes["1.16"]
    assert (nested["status"], nested["selected_sn"]) == ("success", VERTICAL)
    assert nested["probes"][VERTICAL]["obj"]["stage_z"] == 7500.0  # um
    assert nested["probes"][UNCALIBRATED]["obj"]["stage_x_global"] is None
    assert nested["probes"][UNCALIBRATED]["is_calib"] is False
    assert nested["probes"][TILTED]["obj"]["pitch"] == 60.5


async def test_a_nested_get_that_raises_answers_500_with_status_error() -> None:
    sim = ParallaxSim(era="1.16")
    sim.get_error = "boom"
    async with serving(sim) as client:
        answer = await client.get("/")
    assert answer.status_code == 500
    assert answer.json() == {"status": "error", "message": "boom"}


@pytest.mark.parametrize(("era", "quiet_s"), [("1.15", 0.8), ("1.16", 0.4)])
async def test_what_get_serves_changes_only_when_the_listener_polls(
    era: str, quiet_s: float
) -> None:
    # Flat eras poll every 1 s from start-up until something moves, 1.16 every 0.5 s;
    # then every 0.1 s while a stage moves.
    sim = ParallaxSim(era=era)
    async with serving(sim) as client:
        polled_at = await next_poll(sim)
        start = await served_local_z(client, VERTICAL)
        insertion = {"move_type": "insertion", "stage_sn": VERTICAL, "distance": 5000}
        await client.put("/", json=insertion | {"rate": 30_000})
        # The stage moves at once; what GET serves waits for the next poll.
        with trio.move_on_at(polled_at + quiet_s):
            while True:
                assert await served_local_z(client, VERTICAL) == start
                await trio.sleep(0.02)
        seen = {await served_local_z(client, VERTICAL)}
        with trio.fail_after(10):
            while len(seen) < 4:  # it does change, and now at 0.1 s
                seen.add(await served_local_z(client, VERTICAL))
                await trio.sleep(0.01)
        assert sim.polls >= 4


async def test_the_emulator_runs_standalone_as_the_era_asked_for() -> None:
    port = unused_port()
    command = [sys.executable, "-m", "drivers.parallax.sim", "--port", str(port), "--era", "1.15"]
    process = await trio.lowlevel.open_process(command, stdout=subprocess.DEVNULL)
    try:
        async with httpx.AsyncClient(trust_env=False, timeout=2) as client:
            with trio.fail_after(30):
                while True:
                    try:
                        answer = await client.get(f"http://127.0.0.1:{port}/")
                        break
                    except httpx.TransportError:
                        await trio.sleep(0.1)
        stages = json.loads(answer.content)
        assert list(stages) == [VERTICAL, UNCALIBRATED, TILTED]
        assert "is_calibrated" in stages[VERTICAL]
    finally:
        process.terminate()
        with trio.move_on_after(5):
            await process.wait()
        if process.returncode is None:
            process.kill()
