"""What is around the driver: the simulator's command line, ``make run``, ``ephysd check``,
``ephysd ports`` and the udev rule."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trio

from drivers.base import PlatformOptions
from drivers.scientifica.driver import ScientificaManipulator
from drivers.scientifica.protocol import ControllerError
from drivers.scientifica.sim import ScientificaSim
from ephysd.check import check_platform
from ephysd.platforms import create_platform
from ephysd.ports import SCIENTIFICA_IDS, PortKind, classify, describe
from tests.daemon.e2e import devrig_example
from tests.serial_e2e import simulator_process, until_lost
from tests.usb_ports import usb_port

RULES = Path(__file__).resolve().parents[2] / "systemd" / "99-ephysd-scientifica.rules"


async def test_the_simulator_command_line_prints_its_pty_and_obeys_fault_commands(
    tmp_path: Path,
) -> None:
    link = tmp_path / "scientifica-sim"
    args = ("--firmware", "2", "--model", "patchstar")
    async with simulator_process("drivers.scientifica.sim", link, *args) as process:
        assert await process.line() == f"PTY {link}"
        device = ScientificaManipulator("1", str(link))
        await device.open()
        assert device.identity() == "Scientifica PatchStar (TYPE 1.05, firmware 2.13)"

        await process.command("error 9")
        with trio.fail_after(2), pytest.raises(ControllerError, match="error 9"):
            while True:
                await device.position()
                await trio.sleep(0.01)

        await process.command("knobs 50 0 0")
        with trio.fail_after(5):
            while (await device.position())[1] > 9.96:  # noqa: ASYNC110 (unified y = 20 - x_p)
                await trio.sleep(0.05)

        await process.command("close")
        await until_lost(device)
        await process.command("reopen")
        assert await process.line() == f"PTY {link}"
        await device.open()
        await device.close()
        await process.command("quit")


async def test_make_run_can_drive_simulated_scientifica_controllers() -> None:
    """``make run RUN_ARGS=--scientifica``: its banner's one-liner moves the IVM."""
    text, done, status = await devrig_example("--scientifica")
    assert "2 Scientifica controllers (IVM, PatchStar) on ptys" in text
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().splitlines() == [
        '{"Manipulators":["1","2"],"Error":""}',
        '{"Position":{"x":1.0,"y":2.0,"z":3.0,"w":18.0},"Error":""}',
    ]
    assert status == 0


async def test_check_handshakes_names_each_model_and_moves_nothing() -> None:
    sims = [
        ScientificaSim(firmware=3, model="ivm_manipulator"),
        ScientificaSim(firmware=2, model="patchstar"),
        ScientificaSim(firmware=3, model="condenser"),
    ]
    async with trio.open_nursery() as nursery:
        paths = [await nursery.start(sim.run) for sim in sims]
        ports = (f"ivm={paths[0]}", f"patch={paths[1]}", f"cond={paths[2]}")
        platform = create_platform("scientifica", PlatformOptions(serial_ports=ports))
        with trio.fail_after(30):
            findings = await check_platform(platform)
        nursery.cancel_scope.cancel()
    assert [(f.ok, f.subject) for f in findings] == [
        (True, "platform scientifica"),
        (True, "manipulator ivm"),
        (True, "manipulator patch"),
        (False, "manipulator cond"),
    ]
    assert (
        "handshake ok (Scientifica IVM (TYPE 3.14, firmware 3.40)), at (10.000" in findings[1].text
    )
    assert "(Scientifica PatchStar (TYPE 1.05, firmware 2.13))" in findings[2].text
    assert "drives a condenser (TYPE 3.12), not a manipulator" in findings[3].text
    for sim in sims:
        assert sim.received, "the check must talk to the controller"
        assert not sim.commands("ABS") and not sim.commands("REL")


def test_ports_marks_likely_scientifica_controllers_and_the_old_ftdi_id_only_as_maybe() -> None:
    ft2232 = usb_port("/dev/ttyUSB3", 0x0403, 0x6010, "Dual RS232-HS")
    cp2105 = usb_port("/dev/ttyUSB4", 0x10C4, 0xEA70, "CP2105 Dual USB to UART Bridge")
    ft232 = usb_port("/dev/ttyUSB5", 0x0403, 0x6001, "FT232R USB UART")
    ft232_arduino = usb_port("/dev/ttyUSB6", 0x0403, 0x6001, "Arduino Duemilanove")
    assert classify(ft2232) is classify(cp2105) is PortKind.SCIENTIFICA
    assert classify(ft232) is PortKind.SCIENTIFICA_MAYBE
    assert classify(ft232_arduino) is PortKind.ESTOP_CANDIDATE
    entries = describe([ft232, ft232_arduino, cp2105, ft2232], by_id={})
    assert [(e.device, e.kind.value) for e in entries] == [
        ("/dev/ttyUSB3", "Scientifica controller"),
        ("/dev/ttyUSB4", "Scientifica controller"),
        ("/dev/ttyUSB5", "Scientifica? (old FTDI id)"),
        ("/dev/ttyUSB6", "Arduino (e-stop candidate)"),
    ]


def test_the_udev_rule_names_the_ports_ephysd_ports_marks() -> None:
    text = RULES.read_text()
    matched = {
        (int(vid, 16), int(pid, 16))
        for vid, pid in re.findall(r'ATTRS\{idVendor\}=="(\w+)", ATTRS\{idProduct\}=="(\w+)"', text)
    }
    assert matched == SCIENTIFICA_IDS
    assert 'SYMLINK+="scientifica-$env{ID_SERIAL_SHORT}-if$env{ID_USB_INTERFACE_NUM}"' in text
    assert 'GROUP="dialout"' in text
