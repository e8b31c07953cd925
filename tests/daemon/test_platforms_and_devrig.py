"""The platform registry and ``make run``'s simulated rig."""

from __future__ import annotations

import sys

import pytest
import trio

from drivers.base import PlatformOptions
from drivers.fake import FakePlatform
from ephysd import platforms
from ephysd.platforms import PLATFORM_NAMES, PlatformUnavailable, create_platform
from tests.daemon.e2e import devrig_example, run_as_shown


def test_every_cli_platform_name_has_a_driver_module() -> None:
    assert PLATFORM_NAMES == (
        "fake",
        "newscale",
        "pathfinder-mpm",
        "parallax",
        "ump",
        "scientifica",
        "sutter",
    )


def test_fake_platform_is_built_with_the_requested_count() -> None:
    platform = create_platform("fake", PlatformOptions(manipulator_count=3))
    assert isinstance(platform, FakePlatform)
    assert [m.id for m in platform.manipulators] == ["0", "1", "2"]
    assert platform.info.tolerance_mm == 0.001


def test_unknown_or_missing_platform_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(PlatformUnavailable, match="unknown platform 'warp'"):
        create_platform("warp", PlatformOptions())
    monkeypatch.setitem(platforms.DRIVER_MODULES, "ghost", "drivers.no_such_driver")
    with pytest.raises(PlatformUnavailable, match=r"cannot import drivers\.no_such_driver"):
        create_platform("ghost", PlatformOptions())


async def test_devrig_drives_simulated_new_scale_bridges_over_ptys_as_its_banner_says() -> None:
    """``make run``'s rig: the banner names the rig page first, and its own
    command moves a simulated stage with nothing but what ``make run`` installs."""
    text, done, status = await devrig_example()
    lines = text.splitlines()
    running = next(i for i, line in enumerate(lines) if line.startswith("ephysd is running"))
    assert lines[running - 2 : running] == ["", lines[running - 1]]  # the banner's first line
    assert lines[running - 1].startswith("Rig page: http://127.0.0.1:")
    assert "simulated rig (2 New Scale M3-LS bridges on ptys" in text
    assert "connect Ephys Link to http://127.0.0.1:" in text
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().splitlines() == [
        '{"Manipulators":["1","2"],"Error":""}',
        '{"Position":{"x":1.0,"y":2.0,"z":3.0,"w":13.0},"Error":""}',
    ]
    assert status == 0


async def test_the_devrig_example_command_works() -> None:
    from ephysd.devrig import example_command
    from tests.daemon.e2e import running_daemon, url_of

    async with running_daemon() as daemon:
        command = example_command(url_of(daemon))
        with trio.fail_after(30):
            done = await run_as_shown(command)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().splitlines() == [
        '{"Manipulators":["0","1","2","3","4","5","6","7"],"Error":""}',
        '{"Position":{"x":1.0,"y":2.0,"z":3.0,"w":4.0},"Error":""}',
    ]


async def test_service_subcommands_are_dispatched() -> None:
    with trio.fail_after(30):
        done = await trio.run_process(
            [sys.executable, "-m", "ephysd", "ports"],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert "Traceback" not in done.stderr.decode()
