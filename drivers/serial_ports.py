"""``--port`` specifications of the serial platforms, shared so they read alike.

Each serial platform (newscale, scientifica, sutter) takes one ``--port`` per
controller, ``DEVICE`` or ``NAME=DEVICE``; an unnamed one is named by its
position in the list, "1", "2", ... The specs are checked when the platform is
created, before any port is opened, so a typo ends the daemon with exit status
2 instead of after every other device was opened.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import msgspec

from drivers.base import PlatformConfigError

S = TypeVar("S", bound=msgspec.Struct)


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


def manipulator_settings(
    tables: Mapping[str, Mapping[str, Any]], names: Iterable[str], kind: type[S], platform: str
) -> dict[str, S]:
    """The config file's ``[manipulators.NAME]`` tables as ``kind``, one per name in ``names``.

    ``kind`` should forbid unknown fields, so a misspelt key is an error rather
    than a silently ignored setting; a table for a name no ``--port`` gives is
    one too. A name without a table gets ``kind``'s defaults.
    """
    known = list(names)
    strangers = sorted(set(tables) - set(known))
    if strangers:
        raise PlatformConfigError(
            f"[manipulators.{strangers[0]}]: no --port is named {strangers[0]!r} "
            f"(--platform {platform} has {', '.join(known)})"
        )
    settings: dict[str, S] = {}
    for name in known:
        try:
            settings[name] = msgspec.convert(dict(tables.get(name, {})), kind)
        except msgspec.ValidationError as exc:
            raise PlatformConfigError(f"[manipulators.{name}]: {exc}") from None
    return settings
