"""`ephysd ports` recognises New Scale bridges and Arduino e-stop buttons."""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
from pathlib import Path

from ephysd.ports import (
    NEWSCALE_BRIDGE_IDS,
    PortKind,
    classify,
    describe,
    estop_candidates,
    format_table,
)
from tests.usb_ports import usb_port

BRIDGE = usb_port(
    "/dev/ttyUSB1", 0x10C4, 0xEA60, "CP2102 USB to UART Bridge Controller", "Silicon Labs", "0001"
)
# As shipped: USBXpress mode, which New Scale's Pathway and Pathfinder need; cp210x binds it too.
USBXPRESS_BRIDGE = usb_port("/dev/ttyUSB2", 0x10C4, 0xEA61, "CP2102 USBXpress Device", None, "0002")
UNO = usb_port("/dev/ttyACM0", 0x2341, 0x0043, "Arduino Uno", "Arduino (www.arduino.cc)")
CLONE = usb_port("/dev/ttyACM1", 0x1A86, 0x7523, "USB Serial", "Arduino LLC")
OTHER_CP210X = usb_port("/dev/ttyUSB0", 0x10C4, 0xEA71, "CP2108 Quad USB to UART Bridge")
BUILTIN = usb_port("/dev/ttyS0", None, None)


def test_new_scale_bridges_are_recognised_by_usb_vid_and_pid_in_both_modes() -> None:
    assert classify(BRIDGE) is PortKind.NEWSCALE_BRIDGE
    assert classify(USBXPRESS_BRIDGE) is PortKind.NEWSCALE_BRIDGE
    assert classify(OTHER_CP210X) is PortKind.OTHER
    table = format_table(describe([OTHER_CP210X, USBXPRESS_BRIDGE, BRIDGE], by_id={}))
    assert [line.split()[:2] for line in table.splitlines()[1:3]] == [
        ["/dev/ttyUSB1", "New"],
        ["/dev/ttyUSB2", "New"],
    ]
    assert "10c4:ea61" in table.splitlines()[2]


def udev_rule_matches(rule: str, vid: int, pid: int) -> bool:
    """Does a udev rule line's idVendor/idProduct match (udev globs, "|" between alternatives)?"""
    wanted = {"idVendor": f"{vid:04x}", "idProduct": f"{pid:04x}"}
    for key, value in wanted.items():
        match = re.search(rf'ATTRS{{{key}}}=="([^"]*)"', rule)
        assert match, (key, rule)
        if not any(fnmatch.fnmatchcase(value, pattern) for pattern in match.group(1).split("|")):
            return False
    return True


def test_the_udev_rule_gives_both_bridge_modes_a_stable_name_and_nothing_else() -> None:
    rules = Path(__file__).parents[2] / "systemd" / "99-ephysd-newscale.rules"
    lines = [line for line in rules.read_text().splitlines() if line.startswith("SUBSYSTEM")]
    naming = [line for line in lines if "SYMLINK+=" in line]
    assert len(naming) == 1 and 'SYMLINK+="newscale-$attr{serial}"' in naming[0]
    for line in lines:
        for vid, pid in NEWSCALE_BRIDGE_IDS:
            assert udev_rule_matches(line, vid, pid), (hex(pid), line)
        assert not udev_rule_matches(line, 0x10C4, 0xEA70)
        assert not udev_rule_matches(line, 0x2341, 0xEA60)
    assert {(0x10C4, 0xEA60), (0x10C4, 0xEA61)} <= NEWSCALE_BRIDGE_IDS


def test_arduino_boards_are_e_stop_candidates_by_vid_or_name() -> None:
    assert classify(UNO) is PortKind.ESTOP_CANDIDATE
    assert classify(CLONE) is PortKind.ESTOP_CANDIDATE
    assert classify(BUILTIN) is PortKind.OTHER
    assert estop_candidates([BRIDGE, CLONE, UNO, BUILTIN]) == ["/dev/ttyACM0", "/dev/ttyACM1"]


def test_table_lists_bridges_first_with_their_stable_names(tmp_path: Path) -> None:
    by_id = {"/dev/ttyUSB1": "/dev/serial/by-id/usb-Silicon_Labs_CP2102_0001-if00-port0"}
    entries = describe([BUILTIN, UNO, BRIDGE], by_id=by_id)
    assert [e.device for e in entries] == ["/dev/ttyUSB1", "/dev/ttyACM0", "/dev/ttyS0"]
    table = format_table(entries)
    lines = table.splitlines()
    assert lines[0].split() == ["DEVICE", "KIND", "USB", "ID", "SERIAL", "DESCRIPTION"]
    assert "New Scale bridge" in lines[1] and "10c4:ea60" in lines[1] and "0001" in lines[1]
    assert "Arduino (e-stop candidate)" in lines[2]
    assert "/dev/ttyUSB1 = /dev/serial/by-id/usb-Silicon_Labs_CP2102_0001-if00-port0" in table


def test_stable_names_prefer_our_udev_names_over_by_id_links(tmp_path: Path) -> None:
    from ephysd.ports import stable_names

    target = tmp_path / "ttyUSB7"
    target.touch()
    other = tmp_path / "ttyUSB8"
    other.touch()
    (tmp_path / "by-id").mkdir()
    (tmp_path / "by-id" / "usb-bridge-0001").symlink_to(target)
    (tmp_path / "by-id" / "usb-bridge-0002").symlink_to(other)
    (tmp_path / "newscale-0001").symlink_to(target)
    sources = ((tmp_path, "newscale-*"), (tmp_path / "by-id", "*"))
    assert stable_names(sources) == {
        str(target.resolve()): str(tmp_path / "newscale-0001"),
        str(other.resolve()): str(tmp_path / "by-id" / "usb-bridge-0002"),
    }
    assert stable_names(((tmp_path / "missing", "*"),)) == {}


def test_no_ports_is_said_plainly() -> None:
    assert format_table([]) == "no serial ports found"


def test_ports_command_runs_on_this_machine() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ephysd", "ports"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(("DEVICE", "no serial ports found"))
