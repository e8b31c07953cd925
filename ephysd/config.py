"""The daemon's settings: defaults, then a TOML file, then command-line flags.

One immutable :class:`Settings` value is what the rest of the daemon reads.
The TOML file's keys are the settings' names, dashes or underscores alike
(``use_proxy`` or ``use-proxy``, in ``[limits]`` too); an unknown key, a wrong
type or a value out of range is a :class:`ConfigError` with one clear line, so
a typo in a unit file's config never starts a daemon with silent defaults or
one no client can use.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any

import msgspec

from ephysd.platforms import PLATFORM_NAMES
from ephysd.security import DEFAULT_BURST, DEFAULT_RATE_PER_S

DEFAULT_PORT = 3000
DEFAULT_PROXY_ADDRESS = "proxy2.virtualbrainlab.org"

# Value ranges: anything outside gives a daemon that cannot work, so it is refused.
TcpPort = Annotated[int, msgspec.Meta(ge=1, le=65535)]
Count = Annotated[int, msgspec.Meta(ge=1)]
CountOrNone = Annotated[int, msgspec.Meta(ge=0)]
# The smallest payload limit that still fits every request of the API.
MIN_PAYLOAD = 1024
Payload = Annotated[int, msgspec.Meta(ge=MIN_PAYLOAD)]
Rate = Annotated[float, msgspec.Meta(gt=0)]
Burst = Annotated[float, msgspec.Meta(ge=1)]


class ConfigError(ValueError):
    """Bad settings; the message is the one line the user sees."""


class Limits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Protection against a misbehaving client (the ``[limits]`` table)."""

    # Concurrent Engine.IO sessions (one controls; a few more get refused cleanly).
    max_connections: Count = 16
    # Largest message or HTTP body accepted from a client, in bytes.
    max_payload: Payload = 65536
    # The request budget of the controller and of each observer: requests per
    # second, sustained and saved up. A client over it is slowed down (refused
    # only past 32 requests waiting at once); stops never wait.
    rate: Rate = DEFAULT_RATE_PER_S
    burst: Burst = DEFAULT_BURST
    # Read-only clients (the rig page, auth {"role": "observer"}) served next
    # to the controller; each also needs an Engine.IO session, so at most
    # max_connections - 1 are served (see observer_limit). 0: no observers.
    max_observers: CountOrNone = 8


class Settings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    platform: str = "fake"
    # Serial device per manipulator, in order ("DEVICE" or "NAME=DEVICE").
    port: tuple[str, ...] = ()
    listen: str = f"127.0.0.1:{DEFAULT_PORT}"
    use_proxy: bool = False
    proxy_address: str = DEFAULT_PROXY_ADDRESS
    mpm_port: TcpPort = 8080
    parallax_port: TcpPort = 8081
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
    ping_interval_ms: Count = 2000
    ping_timeout_ms: Count = 5000
    # Simulated rigs only.
    manipulator_count: Count = 8
    # ``[manipulators.NAME]`` tables: per-manipulator settings the platform
    # validates itself (origin, signs, depth axis ...); see each driver's README.
    manipulators: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)


def load_toml(path: str | Path) -> dict[str, Any]:
    """The file's top-level table, with keys (and ``[limits]``' keys) in snake_case."""
    # Imported here: a daemon started without --config never loads the TOML parser.
    import tomllib

    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    values = _snake_keys(data)
    if isinstance(values.get("limits"), dict):
        values["limits"] = _snake_keys(values["limits"])
    return values


def _snake_keys(table: dict[str, Any]) -> dict[str, Any]:
    return {key.replace("-", "_"): value for key, value in table.items()}


def build_settings(file_values: dict[str, Any], flag_values: dict[str, Any]) -> Settings:
    """Defaults <- file <- flags, validated as one value (types, ranges, addresses)."""
    merged = {**file_values, **flag_values}
    for key in ("port", "allow_origin", "allow"):
        if isinstance(merged.get(key), list):
            merged[key] = tuple(merged[key])
    try:
        settings = msgspec.convert(merged, Settings)
    except msgspec.ValidationError as exc:
        raise ConfigError(_bad_setting(exc)) from None
    if settings.platform not in PLATFORM_NAMES:
        raise ConfigError(
            f"platform: unknown {settings.platform!r}; choose one of: {', '.join(PLATFORM_NAMES)}"
        )
    listen_address(settings)
    proxy_address(settings)
    estop = settings.estop
    if isinstance(estop, str) and estop != "auto" and not estop.startswith("/"):
        raise ConfigError(
            f'estop: {estop!r} is not false, true, "auto" or a device path like /dev/ttyACM0'
        )
    return settings


def _bad_setting(exc: msgspec.ValidationError) -> str:
    """msgspec's "Expected ... - at `$.limits.rate`" as "bad setting limits.rate: Expected ..."."""
    text, sep, path = str(exc).rpartition(" - at `$")
    where = path.strip("`.") if sep else ""
    return f"bad setting {where}: {text}" if where else f"bad setting: {text if sep else exc}"


def observer_limit(limits: Limits) -> int:
    """How many observers the daemon serves: ``max_observers``, but never so many
    that they hold every Engine.IO session (``max_connections``) and leave none
    for the controller: observers must never lock Pinpoint out."""
    return max(0, min(limits.max_observers, limits.max_connections - 1))


def listen_address(settings: Settings) -> tuple[str, int]:
    """Where the server listens; port 0 takes any free port (tests; the log says which)."""
    return parse_host_port(settings.listen, DEFAULT_PORT, what="listen", lowest_port=0)


def proxy_address(settings: Settings) -> tuple[str, int]:
    return parse_host_port(settings.proxy_address, DEFAULT_PORT, what="proxy_address")


def estop_device(settings: Settings) -> str | None:
    """The e-stop's serial device, or None: none configured, or to be found (true/"auto")."""
    estop = settings.estop
    return estop if isinstance(estop, str) and estop != "auto" else None


def parse_host_port(
    text: str, default_port: int, *, what: str = "address", lowest_port: int = 1
) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[V6]:PORT`` -> (host, port); ``what`` names it in errors."""
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ConfigError(f"{what}: bad address {text!r}: missing ']'")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ConfigError(f"{what}: bad address {text!r}")
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if not host:
        raise ConfigError(f"{what}: bad address {text!r}: no host")
    if not port_text:
        return host, default_port
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(
            f"{what}: bad address {text!r}: port {port_text!r} is not a number"
        ) from None
    if not lowest_port <= port <= 65535:
        raise ConfigError(f"{what}: bad address {text!r}: port not in {lowest_port}-65535")
    return host, port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
