"""`ephysd check` handshakes with every device through its real transport, moving nothing."""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from drivers.base import PlatformOptions
from drivers.newscale.sim import NewScaleSim
from ephysd.check import (
    Finding,
    check_listen,
    check_newscale_bridge,
    check_platform,
    check_policy,
    check_serial_device,
    report,
)
from ephysd.platforms import create_platform
from ephysd.security import AccessPolicy
from tests.drivers_http.harness import unused_port
from tests.usb_ports import usb_port

# Stage commands that move a stage (08 absolute move) or change where it thinks it is (07).
MOVING_COMMANDS = (b"<08 ", b"<07")


async def test_check_handshakes_with_each_new_scale_bridge_without_moving() -> None:
    sims = [NewScaleSim(), NewScaleSim()]
    async with trio.open_nursery() as nursery:
        paths = [await nursery.start(sim.run) for sim in sims]
        options = PlatformOptions(serial_ports=(f"left={paths[0]}", f"right={paths[1]}"))
        findings = await check_platform(create_platform("newscale", options))
        nursery.cancel_scope.cancel()
    assert [(f.ok, f.subject) for f in findings] == [
        (True, "platform newscale"),
        (True, "manipulator left"),
        (True, "manipulator right"),
    ]
    assert "7.500" in findings[1].text
    for sim in sims:
        assert sim.received, "the check must talk to the device"
        assert not [r for r in sim.raw_frames() if r.startswith(MOVING_COMMANDS)]


async def test_a_silent_device_is_one_clear_failure_and_the_others_still_pass() -> None:
    good, mute = NewScaleSim(), NewScaleSim()
    mute.silent = True
    async with trio.open_nursery() as nursery:
        paths = [await nursery.start(sim.run) for sim in (good, mute)]
        options = PlatformOptions(serial_ports=tuple(paths))
        with trio.fail_after(30):
            findings = await check_platform(create_platform("newscale", options), 5.0)
        nursery.cancel_scope.cancel()
    assert [(f.ok, f.subject) for f in findings] == [
        (True, "platform newscale"),
        (True, "manipulator 1"),
        (False, "manipulator 2"),
    ]
    assert findings[2].text


async def test_a_platform_that_cannot_start_is_reported_not_raised() -> None:
    port = unused_port()
    findings = await check_platform(
        create_platform("pathfinder-mpm", PlatformOptions(mpm_port=port))
    )
    assert len(findings) == 1
    assert not findings[0].ok
    assert str(port) in findings[0].text


def test_missing_and_non_serial_devices_are_named(tmp_path: Path) -> None:
    missing = check_serial_device(str(tmp_path / "ttyUSB9"))
    assert not missing.ok and "no such device" in missing.text
    regular = tmp_path / "file"
    regular.touch()
    assert "not a serial" in check_serial_device(f"x={regular}").text
    master, slave = os.openpty()
    try:
        assert check_serial_device(os.ttyname(slave)).ok
        # Spaces around the device are stripped, as the daemon strips them.
        spaced = check_serial_device(f"left = {os.ttyname(slave)} ")
        assert spaced.ok and spaced.subject == f"port {os.ttyname(slave)}"
    finally:
        os.close(master)
        os.close(slave)


def test_a_serial_device_held_by_the_running_service_is_reported_not_touched() -> None:
    master, slave = os.openpty()
    holder = os.open(os.ttyname(slave), os.O_RDWR | os.O_NOCTTY)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as the drivers do
        busy = check_serial_device(os.ttyname(slave))
        assert not busy.ok and "in use by another process" in busy.text
        os.set_blocking(master, False)
        with pytest.raises(BlockingIOError):
            os.read(master, 100)  # not a byte was sent to the device
    finally:
        for fd in (holder, master, slave):
            os.close(fd)


def test_a_busy_listen_address_is_reported() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        busy = check_listen("127.0.0.1", port)
    assert not busy.ok and "in use" in busy.text
    free = check_listen("127.0.0.1", 0)
    assert free.ok and "loopback" in free.text


def test_the_access_line_says_who_may_connect() -> None:
    policy = AccessPolicy.from_config(["10.0.0.0/8"], ["https://pinpoint.example"], "s3cret")
    line = check_policy(policy)
    assert line.ok
    assert "10.0.0.0/8" in line.text and "https://pinpoint.example" in line.text
    assert "token required" in line.text


def test_report_exits_non_zero_with_one_line_per_problem(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = report([Finding(True, "a", "fine"), Finding(False, "b", "broken")])
    out = capsys.readouterr().out.splitlines()
    assert status == 1
    assert out == ["ok    a: fine", "FAIL  b: broken", "1 problem(s) found"]
    assert report([Finding(True, "a", "fine")]) == 0


def run_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ephysd", "check", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_command_reads_the_config_file_and_handshakes_with_the_simulator(
    tmp_path: Path,
) -> None:
    sim = subprocess.Popen(
        [sys.executable, "-m", "drivers.newscale.sim", "--no-stdin"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sim.stdout is not None
        line = sim.stdout.readline()
        assert line.startswith("PTY "), line
        config = tmp_path / "ephysd.toml"
        config.write_text(
            f'platform = "newscale"\nport = ["left={line.split()[1]}"]\nlisten = "127.0.0.1:0"\n'
        )
        result = run_check("--config", str(config))
    finally:
        sim.terminate()
        sim.wait(10)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "ok    manipulator left: handshake ok, at (" in result.stdout
    assert lines[-1] == "configuration ok"


def test_check_command_exits_non_zero_with_one_line_per_problem(tmp_path: Path) -> None:
    config = tmp_path / "ephysd.toml"
    config.write_text('platform = "newscale"\nport = ["/dev/ttyUSB-missing"]\n')
    result = run_check("--config", str(config), "--listen", "127.0.0.1:0")
    assert result.returncode == 1
    problems = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert problems == [
        "FAIL  port /dev/ttyUSB-missing: no such device (unplugged? see `ephysd ports`)",
        "FAIL  manipulator 1: cannot open /dev/ttyUSB-missing: No such file or directory",
    ]
    assert result.stdout.splitlines()[-1] == "2 problem(s) found"
    assert "Traceback" not in result.stderr


def test_check_command_reports_a_bad_config_file_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "ephysd.toml"
    config.write_text('platfrom = "newscale"\n')
    result = run_check("--config", str(config))
    assert result.returncode == 2  # the daemon's status for a configuration error
    first, last = result.stdout.splitlines()
    assert first.startswith("FAIL  configuration: ") and "platfrom" in first
    assert last == "1 problem(s) found"


def test_check_command_leaves_devices_alone_while_the_daemon_is_running(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run_check("--platform", "fake", "--listen", f"127.0.0.1:{port}")
    assert result.returncode == 1
    problems = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert problems == [
        f"FAIL  listen 127.0.0.1:{port}: address in use (is ephysd already running?)",
        "FAIL  devices: not checked while ephysd is running; stop it first",
    ]
    assert "manipulator" not in result.stdout


async def test_check_handshakes_with_an_http_platform_without_moving() -> None:
    from drivers.pathfinder_mpm.sim import MpmSim

    sim = MpmSim(probes=2)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(sim.serve, "127.0.0.1", 0)
        platform = create_platform("pathfinder-mpm", PlatformOptions(mpm_port=port))
        findings = await check_platform(platform)
        nursery.cancel_scope.cancel()
    assert all(f.ok for f in findings), findings
    assert [f.subject for f in findings] == [
        "platform pathfinder-mpm",
        "manipulator A",
        "manipulator B",
    ]
    moves = [put for put in sim.puts if put.get("PutId") in ("ProbeMotion", "ProbeInsertion")]
    assert moves == []


def test_a_rig_open_to_the_network_without_a_token_is_a_warning_not_a_failure() -> None:
    from ephysd.check import check_exposure

    (warning,) = check_exposure("0.0.0.0", ["10.0.0.0/8", "127.0.0.0/8"], [], None)
    assert warning.ok and warning.warning
    assert str(warning).startswith("WARN  access: clients from 10.0.0.0/8 may drive")
    assert check_exposure("0.0.0.0", ["10.0.0.0/8"], [], "s3cret") == []
    assert check_exposure("127.0.0.1", ["127.0.0.0/8", "::1/128"], [], None) == []
    (wildcard,) = check_exposure("127.0.0.1", ["127.0.0.0/8"], ["*"], None)
    assert "any web page" in wildcard.text


def test_check_command_prints_warnings_and_still_passes(capsys: pytest.CaptureFixture[str]) -> None:
    status = report([Finding(True, "a", "fine"), Finding(True, "b", "risky", warning=True)])
    assert status == 0
    assert capsys.readouterr().out.splitlines()[-1] == "configuration ok, 1 warning(s)"


def test_check_names_a_new_scale_bridge_in_either_usb_mode_and_warns_about_other_ids(
    tmp_path: Path,
) -> None:
    ports = [
        usb_port("/dev/ttyUSB0", 0x10C4, 0xEA60, serial_number="0001"),
        usb_port("/dev/ttyUSB1", 0x10C4, 0xEA61, serial_number="0002"),
        usb_port("/dev/ttyACM0", 0x2341, 0x0043, "Arduino Uno"),
        usb_port("/dev/ttyS0", None, None),
    ]
    stable = tmp_path / "newscale-0002"
    stable.symlink_to("/dev/ttyUSB1")
    com = check_newscale_bridge("left=/dev/ttyUSB0", ports)
    usbxpress = check_newscale_bridge(str(stable), ports)
    assert com == Finding(
        True, "port /dev/ttyUSB0", "New Scale bridge (USB 10c4:ea60, COM-port mode)"
    )
    assert usbxpress is not None and usbxpress.ok and not usbxpress.warning
    assert "10c4:ea61, USBXpress mode" in usbxpress.text
    arduino = check_newscale_bridge("/dev/ttyACM0", ports)
    assert arduino is not None and arduino.ok and arduino.warning
    assert arduino.text == "USB 2341:0043 is not a New Scale bridge id (10c4:ea60, 10c4:ea61)"
    assert check_newscale_bridge("/dev/ttyS0", ports) is None  # not USB: the handshake decides
    assert check_newscale_bridge("/dev/pts/7", ports) is None
