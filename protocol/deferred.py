"""A value given once, later: to one callback on the giving task, and to any waiters.

Two hot paths hand an answer from one task to another with it. A Socket.IO
event handler that only forwards a request to another task (the daemon's API
asking a manipulator's actor for its position) returns a Deferred instead of
waiting for the answer: the task that produces it calls :meth:`Deferred.resolve`,
and the server writes the ack right there, synchronously, saving a scheduler
pass each way. The actor's own reply slots are Deferreds too.

Callbacks run on the resolving task, so they must be quick and must not raise
into it: an exception is logged and swallowed here, because the resolving task
(a device's actor) must never die of a client's answer. The callback is dropped
before it is called, so a callback that refers back to its Deferred leaves no
reference cycle behind.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Generic, TypeVar

import trio

log = logging.getLogger(__name__)

T = TypeVar("T")


class Deferred(Generic[T]):
    """A value given once, later, to one callback and to any number of waiters."""

    __slots__ = ("_callback", "_event", "_resolved", "_value")

    def __init__(self) -> None:
        self._resolved = False
        self._value: T | None = None
        self._callback: Callable[[T], None] | None = None
        self._event: trio.Event | None = None

    @property
    def resolved(self) -> bool:
        return self._resolved

    def resolve(self, value: T) -> None:
        """Give the value; later calls are ignored (the first answer wins)."""
        if self._resolved:
            return
        self._resolved = True
        self._value = value
        if self._event is not None:
            self._event.set()
        callback, self._callback = self._callback, None
        if callback is not None:
            try:
                callback(value)
            except Exception:
                log.exception("a Deferred's callback failed")

    def on_resolved(self, callback: Callable[[T], None]) -> None:
        """Call ``callback(value)`` once: at once if resolved already, else on ``resolve``."""
        if self._callback is not None:
            raise RuntimeError("a Deferred takes one callback")
        if self._resolved:
            _call(callback, self._value)  # type: ignore[arg-type]
        else:
            self._callback = callback

    async def wait(self) -> T:
        """The value, once given (for callers that want to await it instead)."""
        if not self._resolved:
            if self._event is None:
                self._event = trio.Event()
            await self._event.wait()
        return self._value  # type: ignore[return-value]


def _call(callback: Callable[[T], None], value: T) -> None:
    try:
        callback(value)
    except Exception:
        log.exception("a Deferred's callback failed")
