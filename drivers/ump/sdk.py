"""The boundary between the uMp driver and Sensapex's SDK (PyPI ``sensapex``).

The driver only uses what is typed here, so a test double of exactly this
surface (``tests/ump/fake_sdk.py``) exercises the driver honestly. Every call
blocks (UDP to the controller), so the driver makes them from worker threads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class MoveRequest(Protocol):
    """What ``goto_pos`` returns; the SDK's poller thread updates it."""

    @property
    def finished(self) -> bool: ...
    @property
    def interrupted(self) -> bool: ...
    @property
    def interrupt_reason(self) -> Any: ...
    @property
    def last_pos(self) -> Sequence[float] | None: ...


class SensapexDevice(Protocol):
    def n_axes(self) -> int: ...
    def get_pos(self, timeout: int | None = None) -> Sequence[float]: ...
    def goto_pos(self, pos: Sequence[float], speed: float) -> MoveRequest: ...
    def stop(self) -> Any: ...
    def is_busy(self) -> bool: ...


class SensapexSDK(Protocol):
    """The ``UMP`` singleton's calls the driver makes."""

    lib: Any
    """The loaded libum (a ``ctypes.CDLL``): a function it lacks is a missing attribute."""

    def list_devices(self) -> Sequence[int]: ...
    def get_device(self, dev_id: int) -> SensapexDevice: ...
    def call(self, fn: str, *args: Any) -> Any:
        """libum's ``fn(handle, *args)`` under the SDK's lock; raises UMError on failure."""
        ...


JACKHAMMER_FUNCTION = "um_take_jackhammer_step"
"""libum's jackhammer call, ``(handle, dev, axis, cycles, p1_steps, p1_pulses,
p2_steps, p2_pulses)``, with the axis as a C char. Only Sensapex's special SDK
build exports it; the public wheels do not."""


def sdk_has(sdk: SensapexSDK, function: str) -> bool:
    """Whether the loaded libum exports ``function`` (ctypes looks it up on access)."""
    return hasattr(getattr(sdk, "lib", None), function)


# libum's error codes (``sensapex.sensapex.LIBUM_*``), as ``UMError.errno`` carries them.
LIBUM_NOT_OPEN = -2
"""The SDK's socket is not open."""
LIBUM_TIMEOUT = -3
"""Nothing answered in time: the controller is off, unplugged or unreachable."""
LIBUM_INVALID_RESP = -6
"""A garbled packet came back: the link, not the request, is at fault."""
_LINK_GONE = frozenset({LIBUM_NOT_OPEN, LIBUM_TIMEOUT, LIBUM_INVALID_RESP})


def means_device_gone(exc: BaseException) -> bool:
    """Whether an SDK exception says the device or the link to it is gone.

    The SDK raises ``sensapex.UMError(message, errno, oserrno)`` for every
    libum failure: ``oserrno`` is set when a socket call failed (network down,
    no route), ``errno`` is libum's code otherwise. Those, a timeout, a closed
    socket and a garbled reply mean "reopen and retry later"; an invalid
    argument, an invalid device id or a controller refusing the command
    (LIBUM_PEER_ERROR) are about the request and reopening would not help.
    The check is by shape, not by class, so the driver need not import the
    optional package to classify its errors (and a test double can raise them).
    """
    if not hasattr(exc, "oserrno"):
        return False
    return getattr(exc, "oserrno", None) is not None or getattr(exc, "errno", None) in _LINK_GONE


class SdkUnavailable(Exception):
    """The SDK package or its native library cannot be loaded."""


def load_sensapex() -> SensapexSDK:
    """Load the real SDK (blocking: opens the UDP socket). Raises SdkUnavailable."""
    try:
        from sensapex import UMP
    except ImportError as exc:
        raise SdkUnavailable(
            f"the sensapex package is not installed ({exc}); install ephysd[sensapex]"
        ) from None
    try:
        sdk: SensapexSDK = UMP.get_ump()
    except Exception as exc:
        raise SdkUnavailable(f"{type(exc).__name__}: {exc}") from None
    return sdk
