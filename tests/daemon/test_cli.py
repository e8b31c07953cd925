"""The ``ephysd`` command: one clear line and a non-zero exit for every usage error."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from ephysd.cli import parse_settings
from ephysd.config import ConfigError, Settings, build_settings, parse_host_port
from tests.daemon.e2e import read_until


async def ephysd(*args: str, timeout_s: float = 30) -> tuple[int, str, str]:
    with trio.fail_after(timeout_s):
        done = await trio.run_process(
            [sys.executable, "-m", "ephysd", *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def assert_one_clear_line(code: int, stderr: str, *words: str) -> None:
    assert code != 0
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("ephysd: error: ")
    assert "Traceback" not in stderr
    for word in words:
        assert word in lines[0]


async def test_version_names_the_api_level() -> None:
    code, out, _ = await ephysd("--version")
    assert code == 0
    assert out.startswith("ephysd ")
    assert "Ephys Link API 2." in out


async def test_bad_flag_is_one_line() -> None:
    code, _, err = await ephysd("--frobnicate")
    assert_one_clear_line(code, err, "--frobnicate")


async def test_unknown_platform_is_one_line() -> None:
    code, _, err = await ephysd("--platform", "teleporter")
    assert_one_clear_line(code, err, "teleporter")


async def test_port_in_use_is_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = await ephysd("--listen", f"127.0.0.1:{port}")
    assert_one_clear_line(code, err, f"cannot listen on 127.0.0.1:{port}")


async def test_missing_serial_device_is_one_line(tmp_path: Path) -> None:
    missing = str(tmp_path / "ttyUSB9")
    code, _, err = await ephysd(
        "--platform", "newscale", "--port", missing, "--listen", "127.0.0.1:0"
    )
    assert_one_clear_line(code, err, "ttyUSB9")


async def test_bad_config_file_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "ephysd.toml"
    config.write_text('platform = "fake"\nlisten_on = "0.0.0.0:1"\n')
    code, _, err = await ephysd("--config", str(config))
    assert_one_clear_line(code, err, "listen_on")
    code, _, err = await ephysd("--config", str(tmp_path / "absent.toml"))
    assert_one_clear_line(code, err, "absent.toml")


def test_flags_override_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "ephysd.toml"
    config.write_text(
        'platform = "newscale"\nport = ["/dev/a", "/dev/b"]\nuse-proxy = true\n'
        'listen = "127.0.0.1:3001"\nallow_origin = ["https://pinpoint.example"]\n'
    )
    settings = parse_settings(["--config", str(config), "--listen", "127.0.0.1:4000"])
    assert settings.platform == "newscale"
    assert settings.port == ("/dev/a", "/dev/b")
    assert settings.use_proxy is True
    assert settings.listen == "127.0.0.1:4000"
    assert settings.allow_origin == ("https://pinpoint.example",)
    assert parse_settings(["--estop"]).estop is True
    assert parse_settings(["--estop", "/dev/ttyACM0"]).estop == "/dev/ttyACM0"
    assert parse_settings(["--no-stop-on-disconnect"]).stop_on_disconnect is False
    assert parse_settings([]) == Settings()


def test_addresses_parse_with_default_port() -> None:
    assert parse_host_port("proxy.example", 3000) == ("proxy.example", 3000)
    assert parse_host_port("10.0.0.2:3100", 3000) == ("10.0.0.2", 3100)
    assert parse_host_port("[::1]:3100", 3000) == ("::1", 3100)
    for bad in ("host:port", ":3000", "[::1", "h:70000"):
        with pytest.raises(ConfigError):
            parse_host_port(bad, 3000)
    with pytest.raises(ConfigError):
        build_settings({}, {"listen": "nowhere:xx"})


async def test_non_loopback_listen_warns_that_the_rig_is_reachable() -> None:
    with trio.fail_after(20):
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "ephysd", "--listen", "0.0.0.0:0"],
            stdout=-1,
            stderr=-1,
        )
        try:
            assert process.stdout is not None
            seen = await read_until(process.stdout, b"listening on")
        finally:
            process.terminate()
            await process.wait()
    assert b"reachable from the network" in seen


async def test_sigusr1_is_an_emergency_stop_and_sigterm_exits_cleanly() -> None:
    import signal

    with trio.fail_after(30):
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "ephysd", "--listen", "127.0.0.1:0"], stdout=-1, stderr=-1
        )
        try:
            assert process.stdout is not None
            seen = b""

            async def wait_for(text: bytes) -> None:
                nonlocal seen
                while text not in seen:
                    chunk = await process.stdout.receive_some()  # type: ignore[union-attr]
                    assert chunk, seen
                    seen += chunk

            await wait_for(b"listening on")
            process.send_signal(signal.SIGUSR1)
            await wait_for(b"EMERGENCY STOP")
            process.send_signal(signal.SIGTERM)
            await wait_for(b"every motion stopped")
            assert await process.wait() == 0
        finally:
            process.kill()
            await process.wait()


@pytest.mark.parametrize(
    "ports", [(), ("a=/dev/null", "a=/dev/zero"), ("=/dev/null",)], ids=["none", "twice", "empty"]
)
async def test_a_bad_port_list_exits_2_before_any_device_is_opened(ports: tuple[str, ...]) -> None:
    flags = [arg for spec in ports for arg in ("--port", spec)]
    code, out, err = await ephysd("--platform", "newscale", *flags)
    assert_one_clear_line(code, err, "--p")
    assert code == 2
    assert "opened" not in out + err


async def test_help_lists_the_ports_and_check_commands_and_the_exit_statuses() -> None:
    code, out, _ = await ephysd("--help")
    assert code == 0
    assert out.startswith("usage: ephysd ")
    assert "\n  ephysd ports " in out and "\n  ephysd check " in out
    assert "2 configuration error" in out


async def test_check_help_is_the_checks_own() -> None:
    code, out, _ = await ephysd("check", "--help")
    assert code == 0
    assert out.startswith("usage: ephysd check ")
    assert "nothing moves" in out and "--config FILE" in out
    code, _, err = await ephysd("check", "--frobnicate")
    assert code == 2 and "see ephysd check --help" in err


RANGES: list[tuple[str, list[Any], list[Any]]] = [
    ("mpm_port", [1, 65535], [0, 65536, -1]),
    ("parallax_port", [1, 65535], [0, 70000]),
    ("manipulator_count", [1, 40], [0, -3]),
    ("ping_interval_ms", [1], [0]),
    ("ping_timeout_ms", [1], [0]),
    ("listen", ["127.0.0.1:0", "127.0.0.1:65535"], ["127.0.0.1:65536", "127.0.0.1:-1"]),
    ("proxy_address", ["proxy.example:1", "proxy.example"], ["proxy.example:0"]),
    ("estop", [True, False, "auto", "/dev/ttyACM0"], ["Auto", "ttyACM0", ""]),
]
LIMIT_RANGES: list[tuple[str, list[Any], list[Any]]] = [
    ("max_connections", [1], [0, -1]),
    ("max_payload", [1024, 1 << 20], [0, 1023]),
    ("rate", [0.5], [0, -1]),
    ("burst", [1], [0.5, 0]),
]


def test_every_number_is_checked_against_a_range_that_works() -> None:
    for key, good, bad in RANGES:
        for value in good:
            build_settings({key: value}, {})
        for value in bad:
            with pytest.raises(ConfigError, match=key):
                build_settings({key: value}, {})
    for key, good, bad in LIMIT_RANGES:
        for value in good:
            build_settings({"limits": {key: value}}, {})
        for value in bad:
            with pytest.raises(ConfigError, match=f"limits.{key}"):
                build_settings({"limits": {key: value}}, {})


def test_flags_are_checked_against_the_same_ranges() -> None:
    with pytest.raises(ConfigError, match="mpm_port"):
        parse_settings(["--mpm-port", "70000"])
    with pytest.raises(ConfigError, match="estop"):
        parse_settings(["--estop", "yes"])
    assert parse_settings(["--estop", "auto"]).estop == "auto"


def test_dashed_keys_work_in_the_limits_table_too(tmp_path: Path) -> None:
    config = tmp_path / "ephysd.toml"
    config.write_text(
        "stop-on-disconnect = false\n[limits]\nmax-connections = 4\nmax-payload = 2048\n"
    )
    settings = parse_settings(["--config", str(config)])
    assert settings.stop_on_disconnect is False
    assert (settings.limits.max_connections, settings.limits.max_payload) == (4, 2048)
