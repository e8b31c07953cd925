"""``ephysd --platform newscale --port ...`` end to end: a real daemon process, two simulated
bridges on ptys, and a python-socketio client doing what Pinpoint does."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from drivers.newscale.sim import NewScaleSim
from tests.serial_e2e import Client, daemon_and_client, move


@asynccontextmanager
async def rig(tmp_path: Path) -> AsyncIterator[tuple[list[NewScaleSim], Client]]:
    sims = [NewScaleSim(link=str(tmp_path / f"newscale-{i}")) for i in (1, 2)]
    async with trio.open_nursery() as nursery:
        for sim in sims:
            await nursery.start(sim.run)
        ports = [arg for sim in sims for arg in ("--port", sim.path)]
        async with daemon_and_client(["--platform", "newscale", *ports]) as (_, client):
            yield sims, client
            # Through the daemon too: nothing outside the USB bridge's framing (no "TR").
            assert [sim.violations for sim in sims] == [[], []]
        nursery.cancel_scope.cancel()


async def test_set_position_moves_the_simulated_stages_and_stop_halts_every_stage(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as (sims, client):
        listed = json.loads(await client.call("get_manipulators", None))
        assert listed["Manipulators"] == ["1", "2"]

        start = json.loads(await client.call("get_position", "1"))
        assert start["Error"] == ""
        assert start["Position"] == pytest.approx({"x": 7.5, "y": 7.5, "z": 7.5, "w": 7.5})

        target = {"x": 7.0, "y": 7.2, "z": 7.9, "w": 7.5}
        moved = json.loads(await client.call("set_position", move("1", target, 2.0)))
        assert moved["Error"] == ""
        assert moved["Position"]["x"] == pytest.approx(7.0, abs=0.01)
        # stage x = 15 - x, stage y = z, stage z = y
        assert [sims[0].stage_position_mm(a) for a in (1, 2, 3)] == [8.0, 7.9, 7.2]
        assert sims[1].stage_position_mm(1) == 7.5  # the other manipulator did not move

        far = {"x": 1.0, "y": 7.2, "z": 7.9, "w": 7.5}
        long_move = await client.send("set_position", move("1", far, 0.5))
        await trio.sleep(0.5)
        halts_before = len([r for r in sims[0].received if r.raw == b"<03>\r"])
        assert await client.call("stop", "1") == ""
        answer = json.loads((await client.answer(long_move))["answer"])
        assert "did not reach target position" in answer["Error"]
        halted = {r.stage for r in sims[0].received[-20:] if r.raw == b"<03>\r"}
        assert halted == {1, 2, 3}
        assert len([r for r in sims[0].received if r.raw == b"<03>\r"]) > halts_before
        assert not any(s.running for s in sims[0].stages.values())
        assert 8.0 < sims[0].stage_position_mm(1) < 14.0


async def test_pulled_cable_mid_move_answers_an_error_within_a_second_and_recovers(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as (sims, client):
        far = {"x": 1.0, "y": 7.5, "z": 7.5, "w": 7.5}
        long_move = await client.send("set_position", move("1", far, 0.5))
        await trio.sleep(0.3)
        sims[0].close_device()
        answer = await client.answer(long_move, timeout_s=5)
        assert json.loads(answer["answer"])["Error"] != ""
        assert answer["elapsed"] < 0.3 + 1.0 + 0.5  # within a second of the pull (+ client slack)

        other = json.loads(await client.call("get_position", "2", timeout_s=2))
        assert other["Error"] == ""  # the other manipulator keeps answering

        lost = json.loads(await client.call("get_position", "1"))
        assert lost["Error"] != ""
        sims[0].reopen_device()
        with trio.fail_after(15):
            while json.loads(await client.call("get_position", "1"))["Error"]:  # noqa: ASYNC110
                await trio.sleep(0.1)
        back = json.loads(await client.call("set_position", move("1", {**far, "x": 7.4}, 2.0)))
        assert back["Error"] == ""


async def test_dropped_reply_mid_move_is_an_error_within_a_second_and_garbage_is_survived(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as (sims, client):
        far = {"x": 1.0, "y": 7.5, "z": 7.5, "w": 7.5}
        long_move = await client.send("set_position", move("1", far, 0.5))
        await trio.sleep(0.3)
        sims[0].drop_next_reply()
        answer = await client.answer(long_move, timeout_s=5)
        assert json.loads(answer["answer"])["Error"] != ""
        assert answer["elapsed"] < 0.3 + 1.0 + 0.5
        assert sims[0].stages_that_received(b"<03>\r") == {1, 2, 3}  # halted after the error

        sims[0].send_garbage_before_next_reply(b"\x00\xff<10 1\r>>")
        after = json.loads(await client.call("get_position", "1", timeout_s=2))
        assert after["Error"] == ""
        assert after["Position"]["x"] < 7.5  # where the halted move left it
