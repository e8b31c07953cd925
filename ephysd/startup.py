"""What ``ephysd``, ``make run`` and ``ephysd check`` do before any device is opened.

A configuration error must end the daemon with exit status 2 and one line
before it touches a device (the unit's ``RestartPreventExitStatus=2`` then
ends a restart loop no restart could fix), and ``ephysd check`` must say what
the daemon would. So all three run these same steps in this order: the
settings themselves (types, ranges: :func:`ephysd.config.build_settings`),
then :func:`prepare` (the access policy, the platform's own validation in
``create_platform``), then :func:`locate_estop` (the search for the button).
A SIGHUP reload runs :func:`prepare` on the new file before applying any of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.base import Platform, PlatformOptions
from ephysd.config import (
    ConfigError,
    Settings,
    estop_device,
    listen_address,
    observer_limit,
)
from ephysd.platforms import SERIAL_PLATFORMS, create_platform
from ephysd.security import AccessPolicy, PolicyError


@dataclass(frozen=True)
class Prepared:
    """Validated pieces of a daemon, nothing opened yet."""

    platform: Platform
    access: AccessPolicy
    # Settings that are valid but have no effect here: one line each, logged
    # by the daemon and shown by ``ephysd check`` as warnings.
    ignored: tuple[str, ...]


def platform_options(settings: Settings) -> PlatformOptions:
    return PlatformOptions(
        serial_ports=settings.port,
        mpm_port=settings.mpm_port,
        parallax_port=settings.parallax_port,
        manipulator_count=settings.manipulator_count,
        manipulators=settings.manipulators,
    )


def access_policy(settings: Settings) -> AccessPolicy:
    """The access rules of these settings; a bad one is a ConfigError (exit 2)."""
    try:
        return AccessPolicy.from_config(
            settings.allow,
            settings.allow_origin,
            settings.token,
            listen_host=listen_address(settings)[0],
        )
    except PolicyError as exc:
        raise ConfigError(str(exc)) from None


def prepare(settings: Settings) -> Prepared:
    """Validate everything that needs no device.

    Raises ConfigError or PlatformConfigError (exit status 2), or
    PlatformUnavailable when the platform's driver cannot be loaded (1).
    """
    access = access_policy(settings)
    platform = create_platform(settings.platform, platform_options(settings))
    return Prepared(platform, access, ignored_settings(settings))


def ignored_settings(settings: Settings) -> tuple[str, ...]:
    ignored: list[str] = []
    if settings.port and settings.platform not in SERIAL_PLATFORMS:
        ignored.append(f"port is ignored: platform {settings.platform} takes no serial ports")
    if settings.manipulators and settings.platform not in SERIAL_PLATFORMS:
        names = ", ".join(sorted(settings.manipulators))
        ignored.append(
            f"[manipulators] tables ({names}) are ignored: platform {settings.platform}"
            " takes no per-manipulator settings"
        )
    limits = settings.limits
    observers = observer_limit(limits)
    if observers < limits.max_observers:
        ignored.append(
            f"limits.max_observers {limits.max_observers} lowered to {observers}:"
            f" limits.max_connections {limits.max_connections} must leave the controller one"
        )
    return tuple(ignored)


def locate_estop(settings: Settings) -> str | None:
    """The e-stop button's device, None without an e-stop.

    With ``estop = true`` or ``"auto"`` the button is looked for now, by the
    rule ``ephysd ports`` marks candidates with; none found raises
    EStopUnavailable (a device missing, exit status 1), before any
    manipulator is opened.
    """
    if settings.estop is False:
        return None
    device = estop_device(settings)
    if device is not None:
        return device
    from ephysd.estop import find_estop_button

    return find_estop_button()
