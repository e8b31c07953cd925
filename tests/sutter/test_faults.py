"""Faults on a Sutter port: bad replies, a pulled cable, several controllers, stop_all."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from drivers.base import DeviceError, DeviceLost, PlatformOptions
from drivers.sutter.bus import RESTORE_AFTER_S
from drivers.sutter.drive import SutterDrive
from drivers.sutter.platform import SutterPlatform
from drivers.sutter.sim import SutterSim
from ephysd.actor import ActorLimits
from ephysd.models import Vector4
from ephysd.rig import open_rig
from tests.sutter.conftest import open_drives


async def reopen(drive: SutterDrive) -> None:
    """Open ``drive`` again once its controller's port is back (within 10 s)."""
    with trio.fail_after(10):
        while True:
            try:
                await drive.open()
                return
            except DeviceLost:
                await trio.sleep(0.1)


@pytest.mark.parametrize("how", ["short", "nocr"])
async def test_a_bad_reply_is_drained_and_retried_once(
    sim: SutterSim, drives: list[SutterDrive], how: str
) -> None:
    reads = len(sim.commands(b"C"))
    sim.corrupt_next_replies(how)
    assert await drives[0].position() == pytest.approx((12.5, 12.5, 12.5, 12.5))
    assert len(sim.commands(b"C")) == reads + 2


@pytest.mark.parametrize("how", ["short", "nocr"])
async def test_two_bad_replies_in_a_row_are_an_error_and_the_next_read_works(
    sim: SutterSim, drives: list[SutterDrive], how: str
) -> None:
    sim.corrupt_next_replies(how, 2)
    with pytest.raises(DeviceError, match="ending in CR"):
        await drives[0].position()
    assert await drives[0].position() == pytest.approx((12.5, 12.5, 12.5, 12.5))


async def test_garbage_before_a_reply_is_survived(
    sim: SutterSim, drives: list[SutterDrive]
) -> None:
    sim.send_garbage_before_next_reply(b"\x00\x00")
    assert await drives[1].position() == pytest.approx((12.5, 12.5, 12.5, 12.5))


async def test_a_silent_controller_is_an_error_not_a_hang(
    sim: SutterSim, drives: list[SutterDrive]
) -> None:
    sim.silent = True
    with trio.fail_after(3), pytest.raises(DeviceError, match="nothing"):
        await drives[0].position()
    sim.silent = False
    assert await drives[0].position() == pytest.approx((12.5, 12.5, 12.5, 12.5))


async def test_a_pulled_cable_fails_that_controllers_drives_and_they_come_back(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    pulled = SutterSim(link=str(tmp_path / "sutter-a"), drives=(1, 2))
    other = SutterSim(link=str(tmp_path / "sutter-b"), drives=(3,))
    for sim in (pulled, other):
        await nursery.start(sim.run)
    _, drives = await open_drives(
        nursery, PlatformOptions(serial_ports=(f"a={pulled.path}", f"b={other.path}"))
    )
    assert [d.id for d in drives] == ["a-1", "a-2", "b-3"]
    a1, a2, b3 = drives

    async def long_move() -> None:
        with pytest.raises(DeviceLost):
            await a1.move_depth(20.0, 1.0)

    nursery.start_soon(long_move)
    await trio.sleep(0.3)
    pulled.close_device()
    with trio.fail_after(1.5):
        for drive in (a1, a2):
            with pytest.raises(DeviceLost):
                await drive.position()
    assert await b3.position() == pytest.approx((12.5, 12.5, 12.5, 12.5))
    with pytest.raises(DeviceLost):
        await a2.open()

    pulled.reopen_device()
    await reopen(a2)
    assert (await a2.position()) == pytest.approx((12.5, 12.5, 12.5, 12.5))
    assert (await a1.move_depth(12.0, 2.0)) == pytest.approx(12.0, abs=0.001)
    assert pulled.violations == [] and other.violations == []


async def test_stop_all_through_the_actors_stops_every_drive_of_every_controller(
    nursery: trio.Nursery,
) -> None:
    sims = [SutterSim(drives=(1, 2)), SutterSim(drives=(1, 2))]
    for sim in sims:
        await nursery.start(sim.run)
    platform = SutterPlatform(PlatformOptions(serial_ports=tuple(s.path for s in sims)))
    limits = ActorLimits(open_timeout_s=5)
    async with open_rig(platform, limits) as rig:
        assert rig.ids == ["1-1", "1-2", "2-1", "2-2"]
        answers = {}

        async def move(manipulator: str) -> None:
            target = Vector4(12.5, 12.5, 12.5, 20.0)
            answers[manipulator] = await rig.handles[manipulator].move_depth(target.w, 1.0)

        async with trio.open_nursery() as moves:
            for manipulator in rig.ids:
                moves.start_soon(move, manipulator)
            await trio.sleep(1.0)
            assert await rig.stop_all() == ""
        assert all("did not reach target depth" in a.error for a in answers.values()), answers
        stopped = {(i, d): sim.position(d) for i, sim in enumerate(sims) for d in (1, 2)}
        await trio.sleep(0.8)
        assert {(i, d): sim.position(d) for i, sim in enumerate(sims) for d in (1, 2)} == stopped
        assert all(sim.moving is None for sim in sims)
        for sim in sims:
            assert len(sim.commands(b"S")) >= 2  # both drives of each controller had moved
            assert sim.violations == []


async def test_a_roe_drive_that_cannot_be_selected_again_is_logged_and_the_bus_serves_on(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    sim = SutterSim(drives=(1, 2), user_drive=3)  # the knob is on a drive that is not connected
    await nursery.start(sim.run)
    _, (one, two) = await open_drives(nursery, PlatformOptions(serial_ports=(sim.path,)))
    await one.position()
    await trio.sleep(RESTORE_AFTER_S)
    with trio.fail_after(5):
        while "could not give the ROE-200 its drive back" not in caplog.text:  # noqa: ASYNC110
            await trio.sleep(0.05)
    assert await two.position() == pytest.approx((12.5, 12.5, 12.5, 12.5))


async def test_a_cable_pulled_while_the_bus_is_idle_fails_the_next_request_as_lost(
    sim: SutterSim, drives: list[SutterDrive]
) -> None:
    await drives[0].position()
    sim.close_device()
    await trio.sleep(0.05)
    with trio.fail_after(1.5), pytest.raises(DeviceLost):
        await drives[1].position()  # the purge before the command finds the port gone
    sim.reopen_device()
    await reopen(drives[1])
    assert await drives[1].position() == pytest.approx((12.5, 12.5, 12.5, 12.5))


async def test_a_stop_whose_answer_is_cut_off_by_a_pulled_cable_is_not_reported_as_done(
    sim: SutterSim, drives: list[SutterDrive]
) -> None:
    async def long_move() -> None:
        with pytest.raises(DeviceLost):
            await drives[0].move_depth(20.0, 1.0)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(long_move)
        with trio.fail_after(5):
            while sim.moving != 1:  # noqa: ASYNC110
                await trio.sleep(0.01)
        sim.silent = True  # the ^C arrives, but its CR never comes back ...
        halted: list[BaseException | None] = []

        async def halt() -> None:
            try:
                await drives[0].halt()
                halted.append(None)
            except DeviceError as exc:
                halted.append(exc)

        nursery.start_soon(halt)
        with trio.fail_after(5):
            while not sim.interrupts:  # noqa: ASYNC110
                await trio.sleep(0.001)
        sim.close_device()  # ... because the cable is pulled meanwhile
    assert len(halted) == 1 and isinstance(halted[0], DeviceLost), halted
