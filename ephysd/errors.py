"""The one place where a failure becomes the API's ``"Error"`` text.

Upstream formats every platform failure as ``"<ExceptionType>: <message>"``;
clients show it verbatim. Deadlines (``trio.TooSlowError``) get a message that
says which wait ran out, since the bare exception has none.
"""

from __future__ import annotations

import trio


def unknown_manipulator(manipulator_id: str) -> ValueError:
    """A request named a manipulator this rig does not have.

    A plain ValueError with upstream's text (its HTTP platforms raise exactly
    this), so the client sees ``ValueError: Manipulator 9 not found.``.
    """
    return ValueError(f"Manipulator {manipulator_id} not found.")


class DeviceTimeout(TimeoutError):
    """A bounded wait on a device ran out."""


def error_text(exc: BaseException) -> str:
    """``"<ExceptionType>: <message>"``, as upstream's ``pretty_exception``."""
    if isinstance(exc, trio.TooSlowError):
        exc = DeviceTimeout("the device did not answer in time")
    return f"{type(exc).__name__}: {exc}"


class StartupError(Exception):
    """The daemon cannot start (port in use, bad device); the text is one line for stderr."""


def find_leaf(
    exc: BaseException, types: type[BaseException] | tuple[type[BaseException], ...]
) -> BaseException | None:
    """The first exception of ``types`` in ``exc``, looking inside exception groups."""
    if isinstance(exc, types):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = find_leaf(inner, types)
            if found is not None:
                return found
    return None
