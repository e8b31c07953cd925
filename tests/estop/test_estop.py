"""The e-stop button through a real pty, and SIGUSR1."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from ephysd.check import check_estop
from ephysd.cli import build_daemon, parse_settings
from ephysd.estop import EStopUnavailable, find_estop_button, run_estop, run_sigusr1_estop
from ephysd.ports import PortKind, describe
from tests.estop.button import ButtonPty
from tests.usb_ports import usb_port


@pytest.fixture
def button(tmp_path: Path) -> Iterator[ButtonPty]:
    pty = ButtonPty(tmp_path / "ttyACM-estop")
    yield pty
    pty.close()


class Presses:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self._changed = trio.Event()

    async def __call__(self, line: str) -> None:
        self.lines.append(line)
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, count: int) -> None:
        with trio.fail_after(3):
            while len(self.lines) < count:
                await self._changed.wait()


async def wait_for_log(caplog: pytest.LogCaptureFixture, text: str) -> logging.LogRecord:
    with trio.fail_after(3):
        while True:
            for record in caplog.records:
                if text in record.getMessage():
                    return record
            await trio.sleep(0.01)


async def test_a_line_from_the_button_calls_on_press_with_it(button: ButtonPty) -> None:
    presses = Presses()
    async with trio.open_nursery() as nursery:
        await nursery.start(run_estop, button.device, presses)
        button.press(b"STOP\r\n")
        await presses.wait_for(1)
        button.press(b"A\nB\n")
        await presses.wait_for(3)
        nursery.cancel_scope.cancel()
    assert presses.lines == ["STOP", "A", "B"]


async def test_a_press_cancels_three_moving_manipulators_and_is_logged_critical(
    button: ButtonPty, caplog: pytest.LogCaptureFixture
) -> None:
    moves = [trio.CancelScope() for _ in range(3)]
    cancelled: list[int] = []
    all_cancelled = trio.Event()

    async def move(index: int) -> None:
        with moves[index]:
            await trio.sleep_forever()
        cancelled.append(index)
        if len(cancelled) == 3:
            all_cancelled.set()

    async def emergency_stop(line: str) -> None:
        for scope in moves:
            scope.cancel()

    with trio.fail_after(3):
        async with trio.open_nursery() as nursery:
            await nursery.start(run_estop, button.device, emergency_stop)
            for index in range(3):
                nursery.start_soon(move, index)
            await trio.sleep(0.05)
            assert cancelled == []
            button.press()
            await all_cancelled.wait()
            nursery.cancel_scope.cancel()
    assert sorted(cancelled) == [0, 1, 2]
    record = await wait_for_log(caplog, "EMERGENCY STOP from e-stop button")
    assert record.levelno == logging.CRITICAL


async def test_the_button_vanishing_is_logged_and_the_port_reopened(
    button: ButtonPty, caplog: pytest.LogCaptureFixture
) -> None:
    presses = Presses()
    async with trio.open_nursery() as nursery:
        await nursery.start(run_estop, button.device, presses)
        button.unplug()
        lost = await wait_for_log(caplog, "E-STOP BUTTON LOST")
        assert lost.levelno == logging.ERROR
        await trio.sleep(0.2)  # it keeps trying while the port is gone
        button.plug()
        await wait_for_log(caplog, "is back")
        button.press(b"STOP\n")
        await presses.wait_for(1)
        nursery.cancel_scope.cancel()
    assert presses.lines == ["STOP"]


async def test_a_button_that_babbles_without_newlines_still_stops(button: ButtonPty) -> None:
    presses = Presses()
    async with trio.open_nursery() as nursery:
        await nursery.start(run_estop, button.device, presses)
        button.press(b"x" * 300)
        await presses.wait_for(1)
        nursery.cancel_scope.cancel()


async def test_an_on_press_failure_is_logged_and_the_button_stays_armed(
    button: ButtonPty, caplog: pytest.LogCaptureFixture
) -> None:
    presses = Presses()
    failed_once: list[str] = []

    async def flaky(line: str) -> None:
        if not failed_once:
            failed_once.append(line)
            raise RuntimeError("halt failed")
        await presses(line)

    async with trio.open_nursery() as nursery:
        await nursery.start(run_estop, button.device, flaky)
        button.press(b"1\n")
        await wait_for_log(caplog, "FAILED")
        button.press(b"2\n")
        await presses.wait_for(1)
        nursery.cancel_scope.cancel()
    assert presses.lines == ["2"]


async def test_a_button_port_that_cannot_be_opened_at_start_is_a_clear_error(
    tmp_path: Path,
) -> None:
    missing = str(tmp_path / "no-such-tty")
    async with trio.open_nursery() as nursery:
        with pytest.raises(EStopUnavailable, match="no-such-tty cannot be opened"):
            await nursery.start(
                lambda task_status: run_estop(
                    missing, Presses(), first_open_timeout=0.3, task_status=task_status
                )
            )


BRIDGE = usb_port("/dev/ttyUSB0", 0x10C4, 0xEA60, "M3-USB-3:1-EP", "Silicon Labs")
FTDI = usb_port("/dev/ttyUSB1", 0x0403, 0x6001, "FT232R USB UART", "FTDI")
# Found by USB vendor id only (a description that never says Arduino) ...
BY_VID = usb_port("/dev/ttyACM3", 0x2341, 0x8036, "ttyACM3")
# ... and by manufacturer only (a clone with a CH340 vendor id).
BY_MAKER = usb_port("/dev/ttyACM2", 0x1A86, 0x7523, "USB Serial", "Arduino LLC")


def test_without_a_device_the_button_is_found_by_the_rule_ephysd_ports_marks_with() -> None:
    assert find_estop_button([BRIDGE, BY_VID]) == "/dev/ttyACM3"
    assert find_estop_button([BY_VID, FTDI, BY_MAKER]) == "/dev/ttyACM2"
    for ports in ([BRIDGE, BY_VID, FTDI], [BY_VID, BY_MAKER], [BRIDGE, BY_MAKER]):
        marked = [e.device for e in describe(ports, by_id={}) if e.kind is PortKind.ESTOP_CANDIDATE]
        assert find_estop_button(ports) == marked[0]


def test_without_a_device_and_no_arduino_the_error_says_so() -> None:
    with pytest.raises(EStopUnavailable, match=r"no serial port looks like an Arduino.*ttyUSB1"):
        find_estop_button([BRIDGE, FTDI])


async def test_sigusr1_is_the_same_emergency_stop() -> None:
    presses = Presses()
    async with trio.open_nursery() as nursery:
        await nursery.start(run_sigusr1_estop, presses)
        os.kill(os.getpid(), signal.SIGUSR1)
        await presses.wait_for(1)
        nursery.cancel_scope.cancel()
    assert presses.lines == ["SIGUSR1"]


async def test_a_button_found_by_the_rule_is_found_again_under_a_new_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    first = ButtonPty(tmp_path / "ttyACM0")
    ports = [usb_port(first.device, None, None, "Arduino Uno")]
    monkeypatch.setattr("serial.tools.list_ports.comports", lambda: list(ports))
    presses = Presses()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(run_estop, None, presses)
            first.unplug()
            ports.clear()
            await wait_for_log(caplog, "E-STOP BUTTON LOST")
            second = ButtonPty(tmp_path / "ttyACM1")
            ports.append(usb_port(second.device, None, None, "Arduino Uno"))
            await wait_for_log(caplog, "ttyACM1 is back")
            second.press(b"STOP\n")
            await presses.wait_for(1)
            nursery.cancel_scope.cancel()
            second.close()
    finally:
        first.close()


@pytest.mark.parametrize("flag", [["--estop"], ["--estop", "auto"]], ids=["true", "auto"])
async def test_a_daemon_asked_to_find_its_button_arms_the_one_ephysd_ports_marks(
    flag: list[str],
    button: ButtonPty,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # An Arduino known by its vendor id only: its description never says so.
    found = usb_port(button.device, 0x2341, 0x0043, "ttyACM0")
    monkeypatch.setattr("serial.tools.list_ports.comports", lambda: [BRIDGE, found])
    caplog.set_level(logging.INFO, logger="ephysd.estop")
    settings = parse_settings(["--platform", "fake", "--listen", "127.0.0.1:0", *flag])
    daemon = build_daemon(settings)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        assert f"e-stop button armed on {button.device}" in caplog.text
        button.press(b"STOP\n")
        await wait_for_log(caplog, "EMERGENCY STOP (STOP)")
        nursery.cancel_scope.cancel()
    # And `ephysd check` names the same button.
    (finding,) = check_estop(settings)
    assert finding.ok, finding
    assert finding.text.startswith(f"{button.device}: found")
