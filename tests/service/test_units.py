"""The shipped systemd units pass `systemd-analyze verify` and keep their promises."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS_DIR = Path(__file__).resolve().parents[2] / "systemd"
INSTALLED_BINARY = "/usr/local/bin/ephysd"


def verify(unit_text: str, unit_name: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run `systemd-analyze verify` on a copy whose ExecStart names a binary that exists.

    The real unit names the installed path, which a build machine does not
    have; verify would then fail for that reason alone. Pointing the copy at
    this interpreter keeps every other check (directives, values, user names).
    """
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    assert INSTALLED_BINARY in unit_text
    copy = tmp_path / unit_name
    copy.write_text(unit_text.replace(INSTALLED_BINARY, sys.executable))
    instance = unit_name.replace("@.", "@rig1.")
    try:
        result = subprocess.run(
            ["systemd-analyze", "verify", "--man=no", str(copy.with_name(instance))],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"systemd-analyze cannot run here: {exc}")
    if "Failed to" in result.stderr and "manager" in result.stderr:
        pytest.skip(f"systemd-analyze cannot run in this container: {result.stderr.strip()}")
    return result


@pytest.mark.parametrize("unit_name", ["ephysd.service", "ephysd@.service"])
def test_systemd_analyze_verify_accepts_the_unit(unit_name: str, tmp_path: Path) -> None:
    result = verify((UNITS_DIR / unit_name).read_text(), unit_name, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_hardening_exposure_is_rated_ok_by_systemd_analyze_security(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    copy = tmp_path / "ephysd.service"
    text = (UNITS_DIR / "ephysd.service").read_text()
    copy.write_text(text.replace(INSTALLED_BINARY, sys.executable))
    # Exposure 0 (locked down) .. 10 (unprotected); a network daemon that must
    # open serial devices cannot reach 0. Fail if hardening is lost.
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    if "Unknown option" in result.stderr or "unrecognized option" in result.stderr:
        pytest.skip("this systemd-analyze has no offline security analysis")
    match = re.search(r"Overall exposure level for ephysd.service: ([0-9.]+)", result.stdout)
    assert match, result.stdout[-2000:] + result.stderr
    assert float(match.group(1)) <= 2.0, result.stdout


def test_verify_would_catch_a_broken_unit(tmp_path: Path) -> None:
    text = (UNITS_DIR / "ephysd.service").read_text().replace("Type=notify", "Type=notifyy")
    result = verify(text, "ephysd.service", tmp_path)
    assert "notifyy" in result.stderr


def directives(unit_name: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in (UNITS_DIR / unit_name).read_text().splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


@pytest.mark.parametrize("unit_name", ["ephysd.service", "ephysd@.service"])
def test_unit_runs_as_notify_service_with_watchdog_and_hardening(unit_name: str) -> None:
    d = directives(unit_name)
    assert d["Type"] == ["notify"]
    assert d["Restart"] == ["on-failure"]
    assert d["WatchdogSec"]
    assert d["User"] == ["ephysd"]
    assert d["SupplementaryGroups"] == ["dialout"]
    for flag in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert d[flag] == ["yes"], flag
    assert d["ProtectSystem"] == ["strict"]
    assert d["DevicePolicy"] == ["closed"]
    assert sorted(d["DeviceAllow"]) == ["char-ttyACM rw", "char-ttyUSB rw"]
    assert set(d["RestrictAddressFamilies"][0].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}


def test_template_reads_its_instance_configuration() -> None:
    (exec_start,) = directives("ephysd@.service")["ExecStart"]
    assert exec_start.endswith("--config /etc/ephysd/%i.toml")
    (exec_start,) = directives("ephysd.service")["ExecStart"]
    assert exec_start.endswith("--config /etc/ephysd/ephysd.toml")
