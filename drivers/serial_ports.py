"""``--port`` specifications of the serial platforms, shared so they read alike.

Each serial platform (newscale, scientifica, sutter) takes one ``--port`` per
controller, ``DEVICE`` or ``NAME=DEVICE``; an unnamed one is named by its
position in the list, "1", "2", ... The specs are checked when the platform is
created, before any port is opened, so a typo ends the daemon with exit status
2 instead of after every other device was opened.
"""

from __future__ import annotations

from drivers.base import PlatformConfigError


def parse_port_specs(ports: tuple[str, ...], platform: str) -> list[tuple[str, str]]:
    """``DEVICE`` or ``NAME=DEVICE`` -> (name, device), in order; names and devices unique."""
    if not ports:
        raise PlatformConfigError(f"--platform {platform} needs at least one --port DEVICE")
    parsed: list[tuple[str, str]] = []
    for index, spec in enumerate(ports, start=1):
        name, sep, device = spec.partition("=")
        if not sep:
            name, device = str(index), spec
        name, device = name.strip(), device.strip()
        if not name or not device:
            raise PlatformConfigError(f"--port {spec!r}: expected DEVICE or NAME=DEVICE")
        parsed.append((name, device))
    for what, values in (("name", [n for n, _ in parsed]), ("device", [d for _, d in parsed])):
        duplicates = sorted({v for v in values if values.count(v) > 1})
        if duplicates:
            raise PlatformConfigError(f"--port: {what} given twice: {', '.join(duplicates)}")
    return parsed
