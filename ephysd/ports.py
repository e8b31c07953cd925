"""``ephysd ports``: which serial port is which, before anyone writes a config file.

A rig PC has several USB serial adapters and their ``/dev/ttyUSB*`` numbers
change with plug order. This lists every port, marks the ones that look like
New Scale M3-USB-3:1-EP bridges (Silicon Labs CP210x, VID 0x10C4, PID 0xEA61
as shipped, the USBXpress mode New Scale's Pathway and Pathfinder need, or
0xEA60 once switched to COM-port mode; Linux's cp210x driver binds both),
Scientifica controllers (the USB ids ACQ4 scans: FTDI FT2232 0403:6010 and
Silicon Labs CP2105 10C4:EA70; the plain FTDI FT232, 0403:6001, of old
controllers only as "maybe": countless other devices use it), Sutter ROE-200s
of MPC-200 / MPC-325 controllers (USB 1342:0001) and Arduino e-stop buttons,
and shows a stable name to put in the configuration instead
(``/dev/newscale-<serial>``, ``/dev/scientifica-<serial>`` or
``/dev/sutter-<serial>`` from our udev rules, or udev's ``/dev/serial/by-id/...``).
"""

from __future__ import annotations

import argparse
import enum
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

NEWSCALE_BRIDGE_IDS = frozenset({(0x10C4, 0xEA60), (0x10C4, 0xEA61)})
SCIENTIFICA_IDS = frozenset({(0x0403, 0x6010), (0x10C4, 0xEA70)})
SCIENTIFICA_MAYBE_IDS = frozenset({(0x0403, 0x6001)})
SUTTER_ROE_IDS = frozenset({(0x1342, 0x0001)})
ARDUINO_VIDS = frozenset({0x2341, 0x2A03})
BY_ID_DIR = Path("/dev/serial/by-id")
# Where stable names live: systemd/99-ephysd-newscale.rules' /dev/newscale-<serial>
# first (short, and says what it is), then udev's standard by-id links.
STABLE_LINKS: tuple[tuple[Path, str], ...] = (
    (Path("/dev"), "newscale-*"),
    (Path("/dev"), "scientifica-*"),
    (Path("/dev"), "sutter-*"),
    (BY_ID_DIR, "*"),
)


class PortKind(enum.Enum):
    NEWSCALE_BRIDGE = "New Scale bridge"
    SCIENTIFICA = "Scientifica controller"
    SCIENTIFICA_MAYBE = "Scientifica? (old FTDI id)"
    SUTTER_CONTROLLER = "Sutter ROE-200 (MPC-200/325)"
    ESTOP_CANDIDATE = "Arduino (e-stop candidate)"
    OTHER = "-"


class PortLike(Protocol):
    """The fields of pyserial's ``ListPortInfo`` we use (tests build real ones)."""

    device: str
    description: str
    manufacturer: str | None
    product: str | None
    vid: int | None
    pid: int | None
    serial_number: str | None


@dataclass(frozen=True)
class PortEntry:
    device: str
    kind: PortKind
    description: str
    usb_id: str | None
    serial_number: str | None
    stable_name: str | None


def classify(port: PortLike) -> PortKind:
    if port.vid is not None and (port.vid, port.pid) in NEWSCALE_BRIDGE_IDS:
        return PortKind.NEWSCALE_BRIDGE
    if port.vid is not None and (port.vid, port.pid) in SCIENTIFICA_IDS:
        return PortKind.SCIENTIFICA
    if port.vid is not None and (port.vid, port.pid) in SUTTER_ROE_IDS:
        return PortKind.SUTTER_CONTROLLER
    if is_estop_candidate(port):
        return PortKind.ESTOP_CANDIDATE
    if port.vid is not None and (port.vid, port.pid) in SCIENTIFICA_MAYBE_IDS:
        return PortKind.SCIENTIFICA_MAYBE  # an Arduino with an FT232 says so above
    return PortKind.OTHER


def is_estop_candidate(port: PortLike) -> bool:
    """An Arduino, by its USB vendor id or by name: the one rule for this table and ``--estop``.

    Clones (CH340 and the like) carry another vendor id but usually say
    "Arduino" in their manufacturer or product string, so both are looked at.
    """
    if port.vid is not None and port.vid in ARDUINO_VIDS:
        return True
    text = " ".join(s for s in (port.description, port.manufacturer, port.product) if s)
    return "arduino" in text.lower()


def stable_names(sources: Sequence[tuple[Path, str]] = STABLE_LINKS) -> dict[str, str]:
    """Real device path -> a symlink to it that survives re-plugging (first source wins)."""
    names: dict[str, str] = {}
    for directory, pattern in sources:
        try:
            links = sorted(directory.glob(pattern))
        except OSError:
            continue
        for link in links:
            if link.is_symlink():
                names.setdefault(os.path.realpath(link), str(link))
    return names


def describe(ports: Iterable[PortLike], by_id: dict[str, str] | None = None) -> list[PortEntry]:
    by_id = stable_names() if by_id is None else by_id
    entries = []
    for port in ports:
        usb_id = f"{port.vid:04x}:{port.pid or 0:04x}" if port.vid is not None else None
        description = port.description if port.description not in ("", "n/a") else ""
        entries.append(
            PortEntry(
                device=port.device,
                kind=classify(port),
                description=description,
                usb_id=usb_id,
                serial_number=port.serial_number,
                stable_name=by_id.get(os.path.realpath(port.device)),
            )
        )
    order = {kind: rank for rank, kind in enumerate(PortKind)}  # in the enum's order
    return sorted(entries, key=lambda e: (order[e.kind], e.device))


def system_ports() -> list[PortLike]:
    from serial.tools import list_ports

    ports: list[PortLike] = list(list_ports.comports())
    return ports


def format_table(entries: Sequence[PortEntry]) -> str:
    if not entries:
        return "no serial ports found"
    rows = [("DEVICE", "KIND", "USB ID", "SERIAL", "DESCRIPTION")]
    for e in entries:
        rows.append(
            (e.device, e.kind.value, e.usb_id or "-", e.serial_number or "-", e.description)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)]
        lines.append("  ".join([*cells, row[4]]).rstrip())
    links = [e for e in entries if e.stable_name and e.kind is not PortKind.OTHER]
    if links:
        lines.append("")
        lines.append("stable names for the configuration (survive re-plugging):")
        lines.extend(f"  {e.device} = {e.stable_name}" for e in links)
    return "\n".join(lines)


def main(argv: Sequence[str] = ()) -> int:
    """Entry point of ``ephysd ports``; prints the table, exit status 0."""
    argparse.ArgumentParser(
        prog="ephysd ports",
        description="List serial ports, marking New Scale bridges, Scientifica controllers,"
        " Sutter ROE-200s and Arduino e-stop buttons.",
    ).parse_args(list(argv))
    print(format_table(describe(system_ports())))
    return 0


def estop_candidates(ports: Iterable[PortLike] | None = None) -> list[str]:
    """Devices marked as e-stop candidates, in order; ``--estop`` with no device takes the first."""
    found = system_ports() if ports is None else ports
    return sorted(p.device for p in found if classify(p) is PortKind.ESTOP_CANDIDATE)


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
