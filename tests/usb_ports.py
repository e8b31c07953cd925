"""Real pyserial ``ListPortInfo`` records for a pretend USB serial port, as ``comports()`` gives."""

from __future__ import annotations

from serial.tools.list_ports_common import ListPortInfo


def usb_port(
    device: str,
    vid: int | None,
    pid: int | None,
    description: str = "n/a",
    manufacturer: str | None = None,
    serial_number: str | None = None,
) -> ListPortInfo:
    port = ListPortInfo(device, skip_link_detection=True)
    port.vid, port.pid = vid, pid
    port.description = description
    port.manufacturer = manufacturer
    port.serial_number = serial_number
    return port
