"""At open the driver checks each stage as New Scale's library reads it, and refuses what it
cannot drive right: no motor, not an M3-LS, not a 0.5 um encoder, a position outside travel."""

from __future__ import annotations

import logging

import pytest
import trio

from drivers.base import DeviceError, PlatformOptions
from drivers.newscale import create_platform
from drivers.newscale.driver import NewScaleManipulator
from drivers.newscale.sim import NewScaleSim

NOTHING_MOVES = (b"<08", b"<40", b"<04", b"<05", b"<06", b"<07", b"<87")


def sent_nothing_that_moves(sim: NewScaleSim) -> bool:
    return not [r for r in sim.received if r.raw.startswith(NOTHING_MOVES)]


async def refused(sim: NewScaleSim, match: str) -> str:
    device = NewScaleManipulator("1", sim.path)
    with trio.fail_after(2), pytest.raises(DeviceError, match=match) as caught:
        await device.open()
    assert sent_nothing_that_moves(sim)
    await device.close()
    return str(caught.value)


async def test_a_stage_reporting_no_motor_is_refused(sim: NewScaleSim) -> None:
    sim.stages[2].motor_present = False
    message = await refused(sim, "stage 02 reports no motor")
    assert "\n" not in message


@pytest.mark.parametrize("model", ["M3-L-3.4-15", "M3-FS-3.4", "M3-RS-U2-0.5"])
async def test_a_stage_of_another_model_is_refused(sim: NewScaleSim, model: str) -> None:
    sim.stages[3].model = model
    await refused(sim, f"stage 03 is a {model}, not an M3-LS")


@pytest.mark.parametrize(
    ("encoder", "said"),
    [("MicroE,1000,nm", "1 um encoder"), ("MicroE,1/4,um", "0.25 um"), ("X,0.5,deg", "'deg'")],
)
async def test_a_stage_whose_encoder_is_not_half_a_micrometre_is_refused(
    sim: NewScaleSim, encoder: str, said: str
) -> None:
    sim.stages[1].encoder = encoder
    await refused(sim, f"stage 01 .*{said}")


@pytest.mark.parametrize("encoder", ["MicroE,500,nm", "MicroE,1/2,um", "MicroE,500", "E,0.0005,mm"])
async def test_half_a_micrometre_is_accepted_however_the_stage_writes_it(
    sim: NewScaleSim, encoder: str
) -> None:
    for stage in sim.stages.values():
        stage.encoder = encoder
    device = NewScaleManipulator("1", sim.path)
    await device.open()
    await device.close()


async def test_a_stage_that_does_not_report_its_encoder_is_accepted(
    sim: NewScaleSim, manipulator: NewScaleManipulator
) -> None:
    sim.stages[2].encoder = None  # answers <44> with <23>
    await manipulator.open()
    assert await manipulator.position()


async def test_a_stage_left_in_relative_mode_outside_the_travel_is_a_fault_not_a_position(
    sim: NewScaleSim,
) -> None:
    sim.stages[2].zero_at = 20000  # zeroed at 10 mm by other software; now at 7.5 mm: -5000
    message = await refused(sim, "stage 02 reports position -5000 counts, outside its 0..30000")
    assert "relative mode" in message


async def test_a_position_read_outside_the_travel_after_open_is_an_error(
    sim: NewScaleSim, manipulator: NewScaleManipulator
) -> None:
    sim.stages[1].zero_at = 30000
    with pytest.raises(DeviceError, match="stage 01 reports position -15000 counts"):
        await manipulator.position()


async def test_the_interval_comes_from_the_stage_not_the_configured_default(
    sim: NewScaleSim,
) -> None:
    sim.stages[2].eeprom[0x82] = 625  # 625 x 3.2 us = 2 ms
    device = NewScaleManipulator("1", sim.path, default_interval_us=1000.0)
    await device.open()
    assert device.intervals_us == pytest.approx({1: 499.2, 2: 2000.0, 3: 499.2})
    await device.move_to((7.5, 7.5, 7.495, 0.0), 0.005)  # stage 02 moves 5 um at 5 um/s
    produced_um_s = sim.stages[2].speed_counts_s / 2  # from the registers, on the stage's interval
    assert produced_um_s == pytest.approx(5.0, rel=0.01)
    assert sim.stages[2].registers is not None and sim.stages[2].registers.intervals > 1
    await device.close()


async def test_a_stage_that_does_not_report_its_interval_gets_the_per_bridge_setting(
    sim: NewScaleSim, caplog: pytest.LogCaptureFixture
) -> None:
    for stage in sim.stages.values():
        stage.reports_interval = False  # refuses <52> and <12>; still runs on 499.2 us
    platform = create_platform(
        PlatformOptions(
            serial_ports=(f"left={sim.path}",),
            manipulators={"left": {"closed_loop_interval_us": 499.2}},
        )
    )
    async with trio.open_nursery() as nursery:
        [device] = await nursery.start(platform.run)
        with caplog.at_level(logging.WARNING, logger="drivers.newscale.driver"):
            await device.open()
        assert "does not report its closed-loop interval" in caplog.text
        assert isinstance(device, NewScaleManipulator)
        assert device.intervals_us == dict.fromkeys((1, 2, 3), 499.2)
        await device.move_depth(7.497, 0.003)  # 3 um at 3 um/s
        assert sim.stages[3].speed_counts_s / 2 == pytest.approx(3.0, rel=0.01)
        await device.close()
        nursery.cancel_scope.cancel()


async def test_without_a_setting_a_silent_interval_is_python_newscales_1_ms(
    sim: NewScaleSim,
) -> None:
    sim.stages[1].reports_interval = False
    device = NewScaleManipulator("1", sim.path)
    await device.open()
    assert device.intervals_us[1] == 1000.0
    await device.close()


async def test_an_implausible_interval_is_refused(sim: NewScaleSim) -> None:
    sim.stages[3].eeprom[0x82] = 2  # 6.4 us: a misread, not a closed-loop interval
    await refused(sim, "stage 03 reports a closed-loop interval of 6.4 us")
