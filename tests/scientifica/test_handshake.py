"""Opening a controller through the pty: baud rate, generation, model, refusals."""

from __future__ import annotations

import logging

import pytest
import trio

from drivers.base import DeviceError, NotSupported
from drivers.pty_sim import PtyDevice
from drivers.scientifica.driver import ScientificaManipulator
from drivers.scientifica.sim import ScientificaSim
from tests.scientifica.conftest import open_on

START_UM = (100.0, 250.0, -300.0)


def hellos(sim: ScientificaSim) -> list[int | None]:
    """The baud rate of each handshake the controller heard."""
    return [r.baud for r in sim.received if r.word == "SCIENTIFICA"]


async def test_firmware_3_ivm_is_found_at_38400_after_9600_and_counts_hundredths_of_a_micron(
    nursery: trio.Nursery,
) -> None:
    sim = ScientificaSim(firmware=3, model="ivm_manipulator", start_um=START_UM)
    device = await open_on(nursery, sim)
    assert hellos(sim)[0] == 9600 and hellos(sim)[-1] == 38400
    assert device.identity() == "Scientifica IVM (TYPE 3.14, firmware 3.40)"
    assert {"VER", "TYPE", "USTEP X"} <= set(sim.commands())
    # platform = 10 mm + counts x 0.01 µm; unified x = y_p, y = 20 - x_p, z = 20 - z_p, w = x_p
    assert await device.position() == pytest.approx((10.25, 9.9, 10.3, 10.1))
    await device.close()


async def test_firmware_2_patchstar_is_found_at_9600_and_counts_tenths_of_a_micron(
    nursery: trio.Nursery,
) -> None:
    sim = ScientificaSim(firmware=2, model="patchstar", start_um=START_UM)
    device = await open_on(nursery, sim)
    assert hellos(sim) == [9600]
    assert device.identity() == "Scientifica PatchStar (TYPE 1.05, firmware 2.13)"
    assert [c for c in sim.commands() if c.startswith("UU")] == ["UUX", "UUY", "UUZ"]
    assert await device.position() == pytest.approx((10.25, 9.9, 10.3, 10.1))
    await device.close()


async def test_a_configured_baud_rate_is_tried_first(nursery: trio.Nursery) -> None:
    sim = ScientificaSim(firmware=3)
    await open_on(nursery, sim, baud=38400)
    assert hellos(sim) == [38400]


async def test_an_error_reply_to_the_handshake_is_drained_and_tried_again(
    nursery: trio.Nursery,
) -> None:
    sim = ScientificaSim(firmware=2)
    sim.next_error = 3  # bytes at another rate left the controller's input garbled
    device = await open_on(nursery, sim)
    assert hellos(sim) == [9600, 9600]
    assert device.identity().startswith("Scientifica IVM")


@pytest.mark.parametrize(
    ("model", "name"), [("condenser", "condenser"), ("slicescope", "SliceScope")]
)
async def test_a_controller_that_is_not_a_manipulator_is_refused_with_one_line_naming_it(
    nursery: trio.Nursery, model: str, name: str
) -> None:
    sim = ScientificaSim(firmware=3, model=model)
    path = await nursery.start(sim.run)
    device = ScientificaManipulator("1", path)
    with trio.fail_after(5), pytest.raises(DeviceError) as refused:
        await device.open()
    text = str(refused.value)
    assert f"drives a {name} (TYPE 3.1" in text and "not a manipulator" in text
    assert "\n" not in text
    assert not sim.commands("ABS") and not sim.commands("STOP")
    other = ScientificaManipulator("2", path)  # the port was released
    with pytest.raises(DeviceError, match="not a manipulator"):
        await other.open()


class NotScientifica(PtyDevice):
    """Some other serial device: answers every line with "OK"."""

    async def on_data(self, data: bytes) -> None:
        for _ in range(data.count(b"\r")):
            await self.reply(b"OK\r")


async def test_a_device_that_answers_something_else_is_not_taken_for_a_controller(
    nursery: trio.Nursery,
) -> None:
    path = await nursery.start(NotScientifica().run)
    device = ScientificaManipulator("1", path)
    with (
        trio.fail_after(5),
        pytest.raises(DeviceError, match="not a Scientifica controller: it answered 'OK'"),
    ):
        await device.open()


async def test_a_silent_port_fails_open_at_both_rates_within_a_few_seconds(
    nursery: trio.Nursery,
) -> None:
    sim = ScientificaSim()
    sim.silent = True
    path = await nursery.start(sim.run)
    device = ScientificaManipulator("1", path)
    with trio.fail_after(5), pytest.raises(DeviceError, match="at 9600 or 38400 baud"):
        await device.open()
    assert hellos(sim) == [9600, 9600, 38400, 38400]
    sim.silent = False
    await device.open()  # re-callable after a failed open
    await device.close()


async def test_the_approach_angle_is_logged_and_angles_and_shank_count_are_errors(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="drivers.scientifica")
    device = await open_on(nursery, ScientificaSim(angle_deg=27.5))
    assert "approach angle 27.5°" in caplog.text
    with pytest.raises(NotSupported, match="do not report probe angles"):
        await device.angles()
    with pytest.raises(NotSupported, match="do not report a shank count"):
        await device.shank_count()


async def test_open_moves_nothing_and_close_sends_stop(nursery: trio.Nursery) -> None:
    sim = ScientificaSim()
    device = await open_on(nursery, sim)
    assert not [
        c
        for c in sim.commands()
        if c.split()[0] in ("ABS", "REL", "ZERO", "PX", "TOP") and " " in c
    ]
    await device.close()
    assert sim.commands()[-2:] == ["STOP", "S"]


async def test_a_controller_set_to_another_baud_rate_is_named_as_noise_not_as_a_stranger(
    nursery: trio.Nursery,
) -> None:
    sim = ScientificaSim(baud=19200)
    path = await nursery.start(sim.run)
    device = ScientificaManipulator("1", path)
    with trio.fail_after(5), pytest.raises(DeviceError, match="only noise") as refused:
        await device.open()
    assert "not a Scientifica controller" not in str(refused.value)
    assert hellos(sim) == [9600, 9600, 38400, 38400]
