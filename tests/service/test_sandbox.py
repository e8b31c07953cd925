"""The daemon works inside the unit's process restrictions that can be applied here.

ephysd.service sets NoNewPrivileges=yes, CapabilityBoundingSet= (none) and
MemoryDenyWriteExecute=yes. A library that needs writable+executable memory
(a JIT, libffi closures) would crash the service on the rig only, so the
daemon is run here under the same three rules (setpriv and prctl(PR_SET_MDWE)),
drives a New Scale simulator through a move and a stop, and exits on SIGTERM.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from drivers.newscale.sim import NewScaleSim
from tests.service.daemon import run_daemon
from tests.service.sio import sio_client

MDWE_EXEC = Path(__file__).with_name("mdwe_exec.py")


def sandbox() -> list[str]:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    if os.geteuid() != 0:
        pytest.skip("dropping the capability bounding set needs root")
    major, minor = (int(part) for part in platform.release().split(".")[:2])
    if (major, minor) < (6, 3):
        pytest.skip("prctl(PR_SET_MDWE) needs Linux 6.3 or later")
    return [
        "setpriv",
        "--no-new-privs",
        "--inh-caps=-all",
        "--bounding-set=-all",
        sys.executable,
        str(MDWE_EXEC),
    ]


async def test_daemon_moves_stops_and_exits_under_the_units_restrictions(
    tmp_path: Path,
) -> None:
    wrapper = sandbox()
    sim = NewScaleSim()
    async with trio.open_nursery() as rig:
        path = await rig.start(sim.run)
        config = f'platform = "newscale"\nlisten = "127.0.0.1:0"\nport = ["{path}"]\n'
        async with run_daemon(tmp_path, config, wrapper=wrapper) as daemon:
            await daemon.wait_for("READY=1")
            port = await daemon.wait_listening(5)
            status = (await trio.Path(f"/proc/{daemon.pid}/status").read_text()).splitlines()
            fields = dict(line.split(":", 1) for line in status if ":" in line)
            assert fields["NoNewPrivs"].strip() == "1"
            assert int(fields["CapBnd"].strip(), 16) == 0
            async with sio_client(port) as client:
                request = {
                    "ManipulatorId": "1",
                    "Position": {"x": 7.6, "y": 7.5, "z": 7.5, "w": 7.5},
                    "Speed": 1.0,
                }
                answer = json.loads(await client.call("set_position", json.dumps(request)))
                assert answer["Error"] == "", answer
                assert await client.call("stop", "1") == ""
            daemon.process.send_signal(signal.SIGTERM)
            assert await daemon.wait_exit(10) == 0, daemon.output()
            assert "MemoryError" not in daemon.output()
            assert "Permission denied" not in daemon.output()
        rig.cancel_scope.cancel()


def unit_syscall_filter() -> tuple[set[str], set[str]]:
    """(allowed, denied) system calls of ephysd.service's SystemCallFilter= lines."""

    def expand(group: str) -> set[str]:
        listing = subprocess.run(
            ["systemd-analyze", "syscall-filter", "--no-pager", group],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        names: set[str] = set()
        for line in listing.splitlines()[1:]:
            word = line.strip()
            if word.startswith("@"):
                names |= expand(word)
            elif word and not word.startswith("#"):
                names.add(word)
        return names

    allowed: set[str] = set()
    denied: set[str] = set()
    unit = (Path(__file__).resolve().parents[2] / "systemd" / "ephysd.service").read_text()
    for line in unit.splitlines():
        if line.startswith("SystemCallFilter="):
            value = line.split("=", 1)[1]
            target = denied if value.startswith("~") else allowed
            for item in value.lstrip("~").split():
                target |= expand(item) if item.startswith("@") else {item}
    return allowed, denied


async def test_the_daemon_stays_inside_the_units_syscall_filter_and_writes_no_file(
    tmp_path: Path,
) -> None:
    if shutil.which("strace") is None or shutil.which("systemd-analyze") is None:
        pytest.skip("needs strace and systemd-analyze")
    allowed, denied = unit_syscall_filter()
    assert allowed, "no SystemCallFilter= in the unit"
    trace = tmp_path / "strace.txt"
    sim = NewScaleSim()
    async with trio.open_nursery() as rig:
        path = await rig.start(sim.run)
        config = f'platform = "newscale"\nlisten = "127.0.0.1:0"\nport = ["{path}"]\n'
        wrapper = ["strace", "-f", "-qq", "-o", str(trace)]
        async with run_daemon(tmp_path, config, wrapper=wrapper, watchdog_usec=1_000_000) as daemon:
            await daemon.wait_for("READY=1", timeout_s=60)
            port = await daemon.wait_listening(10)
            async with sio_client(port) as client:
                request = {
                    "ManipulatorId": "1",
                    "Position": {"x": 7.55, "y": 7.5, "z": 7.5, "w": 7.5},
                    "Speed": 1.0,
                }
                await client.call("set_position", json.dumps(request))
                await client.call("stop_all")
            daemon.signal(signal.SIGHUP)  # the daemon, not strace
            await daemon.wait_for_line("reloaded", timeout_s=30)
            daemon.signal(signal.SIGTERM)
            assert await daemon.wait_exit(30) == 0, daemon.output()
        rig.cancel_scope.cancel()
    lines = trace.read_text().splitlines()
    if any("ptrace" in line and "Operation not permitted" in line for line in lines[:5]):
        pytest.skip("ptrace is not permitted here")
    used = {m.group(1) for line in lines if (m := re.match(r"\d+\s+([a-z0-9_]+)\(", line))}
    # The trace covers start-up, the serial device (termios ioctls, flock), the
    # network, signals and shutdown.
    assert {"execve", "openat", "ioctl", "flock", "accept4", "rt_sigaction"} <= used, used
    refused = sorted(name for name in used if name not in allowed or name in denied)
    assert refused == [], f"the unit's SystemCallFilter= would refuse {refused}"
    # ProtectSystem=strict: the daemon writes to nothing but its devices.
    writes = [
        line
        for line in lines
        if re.search(r'openat\(.*"(?!/dev/)[^"]*", [^)]*O_(WRONLY|RDWR|CREAT)', line)
        and "__pycache__" not in line  # Python tolerates a read-only bytecode cache
    ]
    assert writes == [], writes
