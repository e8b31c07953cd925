"""Every configuration error: found before any device is opened, exit status 2, one line,
and ``ephysd``, ``ephysd check`` and ``make run`` (devrig) all say the same.

The rig is a simulated New Scale bridge on a pty: if the daemon opened its
manipulator before noticing the error, the simulator would have received the
handshake (the control case shows that it does when the file is good).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from drivers.newscale.sim import NewScaleSim
from ephysd.ports import estop_candidates
from tests.service.daemon import run_daemon


@dataclass(frozen=True)
class Case:
    settings: dict[str, str]
    tables: str
    # A word the one error line must contain.
    word: str
    # False: the case is about the platform or its ports, which `make run` sets itself.
    devrig: bool = True


CASES: dict[str, Case] = {
    "bad allow CIDR": Case({"allow": '["10.0.0.0/33"]'}, "", "10.0.0.0/33"),
    "malformed allow_origin": Case(
        {"allow_origin": '["pinpoint.example"]'}, "", "pinpoint.example"
    ),
    "empty token": Case({"token": '""'}, "", "token"),
    "empty allow list": Case({"allow": "[]"}, "", "allow"),
    "unknown platform in the file": Case({"platform": '"teleporter"'}, "", "teleporter", False),
    "serial platform without a port": Case({"port": "[]"}, "", "--port", False),
    "duplicate port name": Case({"port": '["a=SIM", "a=/dev/zero"]'}, "", "a", False),
    "max_connections 0": Case({}, "[limits]\nmax_connections = 0\n", "max_connections"),
    "max_payload 0": Case({}, "[limits]\nmax-payload = 0\n", "max_payload"),
    "rate 0": Case({}, "[limits]\nrate = 0\n", "rate"),
    "manipulator_count 0": Case({"manipulator_count": "0"}, "", "manipulator_count"),
    "mpm_port 70000": Case({"mpm_port": "70000"}, "", "mpm_port"),
    "parallax_port 0": Case({"parallax_port": "0"}, "", "parallax_port"),
    "listen port 70000": Case({"listen": '"127.0.0.1:70000"'}, "", "listen"),
    "proxy port 0": Case({"proxy_address": '"proxy.example:0"'}, "", "proxy_address"),
    "ping interval 0": Case({"ping_interval_ms": "0"}, "", "ping_interval_ms"),
    "estop neither a flag nor a device": Case({"estop": '"yes"'}, "", "estop"),
}


def config_text(sim_path: str, settings: dict[str, str], tables: str = "") -> str:
    values = {
        "platform": '"newscale"',
        "port": '["SIM"]',
        "listen": '"127.0.0.1:0"',
        **settings,
    }
    lines = [f"{key} = {value}".replace("SIM", sim_path) for key, value in values.items()]
    return "\n".join(lines) + "\n" + tables


@dataclass(frozen=True)
class Run:
    status: int
    stdout: str
    stderr: str


async def run(*args: str, timeout_s: float = 60) -> Run:
    with trio.fail_after(timeout_s):
        done = await trio.run_process(
            [sys.executable, *args], capture_stdout=True, capture_stderr=True, check=False
        )
    return Run(done.returncode, done.stdout.decode(), done.stderr.decode())


def error_line(result: Run) -> str:
    """The daemon's one line, without its prefix; fails if there is not exactly one."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ephysd: error: "), lines[0]
    return lines[0].removeprefix("ephysd: error: ")


@pytest.fixture
async def sim() -> AsyncIterator[NewScaleSim]:
    device = NewScaleSim()
    async with trio.open_nursery() as nursery:
        await nursery.start(device.run)
        yield device
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_a_configuration_error_exits_2_before_any_device_and_check_says_the_same(
    case: Case, sim: NewScaleSim, tmp_path: Path
) -> None:
    config = tmp_path / "ephysd.toml"
    config.write_text(config_text(sim.path, case.settings, case.tables))

    daemon = await run("-m", "ephysd", "--config", str(config))
    assert daemon.status == 2, daemon
    message = error_line(daemon)
    assert case.word in message
    assert "Traceback" not in daemon.stderr
    assert sim.received == [], "the daemon talked to a device before finding the error"

    check = await run("-m", "ephysd", "check", "--config", str(config))
    assert check.status == 2, check
    assert check.stdout.splitlines() == [f"FAIL  configuration: {message}", "1 problem(s) found"]
    assert sim.received == []

    if case.devrig:
        devrig = await run("-m", "ephysd.devrig", "--fake", "--config", str(config))
        assert devrig.status == 2, devrig
        assert error_line(devrig) == message


async def test_with_a_good_file_the_daemon_does_reach_the_device(
    sim: NewScaleSim, tmp_path: Path
) -> None:
    # The control for the table above: a good file gets as far as the handshake.
    config = tmp_path / "ephysd.toml"
    config.write_text(config_text(sim.path, {}))
    check = await run("-m", "ephysd", "check", "--config", str(config))
    assert check.status == 0, check
    assert "ok    manipulator 1: handshake ok" in check.stdout
    assert sim.received


def without_a_button() -> None:
    if estop_candidates():
        pytest.skip("an e-stop candidate is plugged into this machine")


@pytest.mark.parametrize(
    ("setting", "flags"),
    [({"estop": '"auto"'}, ()), ({"estop": "true"}, ()), ({}, ("--estop",))],
    ids=['estop = "auto"', "estop = true", "--estop"],
)
async def test_no_button_to_find_exits_1_before_any_device_and_check_fails_alike(
    setting: dict[str, str], flags: tuple[str, ...], sim: NewScaleSim, tmp_path: Path
) -> None:
    without_a_button()
    config = tmp_path / "ephysd.toml"
    config.write_text(config_text(sim.path, setting))

    daemon = await run("-m", "ephysd", "--config", str(config), *flags)
    assert daemon.status == 1, daemon
    message = error_line(daemon)
    assert message.startswith("No e-stop button found"), message
    assert "auto" not in message.split("(ports")[0], "auto was taken for a device"
    assert sim.received == []

    check = await run("-m", "ephysd", "check", "--config", str(config), *flags)
    assert check.status == 1, check
    assert f"FAIL  e-stop: {message}" in check.stdout.splitlines()
    assert "1 problem(s) found" in check.stdout


async def test_ports_and_manipulator_tables_on_a_platform_without_them_are_warnings_for_both(
    tmp_path: Path,
) -> None:
    config = tmp_path / "ephysd.toml"
    config.write_text(
        'platform = "fake"\nport = ["/dev/ttyUSB-gone"]\nlisten = "127.0.0.1:0"\n'
        "[manipulators.left]\norigin_mm = [1.0, 2.0, 3.0]\n"
    )
    warnings = [
        "port is ignored: platform fake takes no serial ports",
        "[manipulators] tables (left) are ignored: platform fake takes no per-manipulator settings",
    ]
    check = await run("-m", "ephysd", "check", "--config", str(config))
    assert check.status == 0, check
    for warning in warnings:
        assert f"WARN  configuration: {warning}" in check.stdout.splitlines()
    assert "ttyUSB-gone" not in check.stdout  # no device check: the daemon opens none

    async with run_daemon(tmp_path, config.read_text()) as daemon:
        await daemon.wait_listening(30)
        for warning in warnings:
            assert warning in daemon.output()
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait_exit(10) == 0


async def test_more_observers_than_connections_allow_is_a_warning_for_both(
    tmp_path: Path,
) -> None:
    config = tmp_path / "ephysd.toml"
    config.write_text('listen = "127.0.0.1:0"\n[limits]\nmax_connections = 4\n')
    warning = (
        "limits.max_observers 8 lowered to 3: limits.max_connections 4 must leave the"
        " controller one"
    )
    check = await run("-m", "ephysd", "check", "--config", str(config))
    assert check.status == 0, check
    assert f"WARN  configuration: {warning}" in check.stdout.splitlines()

    async with run_daemon(tmp_path, config.read_text()) as daemon:
        await daemon.wait_listening(30)
        assert warning in daemon.output()
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait_exit(10) == 0
