"""The daemon's settings: defaults, then a TOML file, then command-line flags.

One immutable :class:`Settings` value is what the rest of the daemon reads.
The TOML file uses the flags' names (``use_proxy`` or ``use-proxy``); an
unknown key or a wrong type is a :class:`ConfigError` with one clear line, so a
typo in a unit file's config never starts a daemon with silent defaults.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import msgspec

DEFAULT_PORT = 3000
DEFAULT_PROXY_ADDRESS = "proxy2.virtualbrainlab.org"


class ConfigError(ValueError):
    """Bad settings; the message is the one line the user sees."""


class Limits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Protection against a misbehaving client (the ``[limits]`` table)."""

    # Concurrent Engine.IO sessions (one controls; a few more get refused cleanly).
    max_connections: int = 16
    # Largest message or HTTP body accepted from a client, in bytes.
    max_payload: int = 65536
    # Requests per second per connection, sustained and burst; stops are never limited.
    rate: float = 1000.0
    burst: float = 1000.0
    # Read-only clients (the rig page, auth {"role": "observer"}) served next
    # to the controller; each also needs an Engine.IO session (max_connections).
    max_observers: int = 8


class Settings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    platform: str = "fake"
    # Serial device per manipulator, in order ("DEVICE" or "NAME=DEVICE").
    port: tuple[str, ...] = ()
    listen: str = f"127.0.0.1:{DEFAULT_PORT}"
    use_proxy: bool = False
    proxy_address: str = DEFAULT_PROXY_ADDRESS
    mpm_port: int = 8080
    parallax_port: int = 8081
    allow_origin: tuple[str, ...] = ()
    # Client networks (CIDR) allowed to connect; default this computer only.
    allow: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    # Shared secret clients must send as Socket.IO auth {"token": ...}; None: none.
    token: str | None = None
    limits: Limits = msgspec.field(default_factory=Limits)
    # False: no emergency stop; True or "auto": find the button; a string: its device.
    estop: bool | str = False
    debug: bool = False
    # Halt every manipulator when the controlling client goes away.
    stop_on_disconnect: bool = True
    # Heartbeat: a vanished client is noticed within interval + timeout.
    ping_interval_ms: int = 2000
    ping_timeout_ms: int = 5000
    # Simulated rigs only.
    manipulator_count: int = 8
    # ``[manipulators.NAME]`` tables: per-manipulator settings the platform
    # validates itself (origin, signs, depth axis ...); see each driver's README.
    manipulators: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)


def load_toml(path: str | Path) -> dict[str, Any]:
    """The file's top-level table with keys normalised to snake_case."""
    # Imported here: a daemon started without --config never loads the TOML parser.
    import tomllib

    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return {key.replace("-", "_"): value for key, value in data.items()}


def build_settings(file_values: dict[str, Any], flag_values: dict[str, Any]) -> Settings:
    """Defaults <- file <- flags, validated as one value."""
    merged = {**file_values, **flag_values}
    for key in ("port", "allow_origin", "allow"):
        if isinstance(merged.get(key), list):
            merged[key] = tuple(merged[key])
    try:
        settings = msgspec.convert(merged, Settings)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"bad setting: {exc}") from None
    parse_host_port(settings.listen, DEFAULT_PORT)
    parse_host_port(settings.proxy_address, DEFAULT_PORT)
    if settings.limits.rate <= 0 or settings.limits.burst < 1:
        raise ConfigError("limits: rate must be > 0 and burst >= 1")
    if settings.limits.max_observers < 0:
        raise ConfigError("limits: max_observers must be >= 0 (0: no observers)")
    if settings.ping_interval_ms <= 0 or settings.ping_timeout_ms <= 0:
        raise ConfigError("ping_interval_ms and ping_timeout_ms must be positive")
    return settings


def estop_device(settings: Settings) -> str | None:
    """The e-stop's serial device, or None to look for the button."""
    estop = settings.estop
    return estop if isinstance(estop, str) and estop != "auto" else None


def parse_host_port(text: str, default_port: int) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[V6]:PORT`` -> (host, port)."""
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ConfigError(f"bad address {text!r}: missing ']'")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ConfigError(f"bad address {text!r}")
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if not host:
        raise ConfigError(f"bad address {text!r}: no host")
    if not port_text:
        return host, default_port
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"bad address {text!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"bad address {text!r}: port out of range")
    return host, port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
