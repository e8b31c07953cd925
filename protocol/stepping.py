"""Run a coroutine's first step by hand, and finish it under Trio only if it waits.

Two hot paths use this. The WebSocket reader starts an event handler inline
and hands it on only if it blocks. The daemon's actor bounds a device call
with a deadline only when the call actually waits: a call that answers
without waiting needs no deadline, and the cancel scope costs more than the
call itself.

The coroutine's traps are passed to Trio unchanged, and Trio's answers
(including Cancelled) go back to it. So it behaves as if it had been awaited
directly from the moment its first trap is forwarded, inside whatever cancel
scope surrounds :func:`finish`.
"""

from __future__ import annotations

import types
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

T = TypeVar("T")


class Started(Exception):
    """Raised by :func:`start` when the coroutine yielded to Trio; carries its first trap."""

    def __init__(self, trap: object) -> None:
        super().__init__("the coroutine is waiting")
        self.trap = trap


def start(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` up to its first trap: its value if it finished, else Started."""
    try:
        trap = coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    raise Started(trap)


@types.coroutine
def finish(coro: Coroutine[Any, Any, T], trap: object) -> Generator[Any, Any, T]:
    """Pass a started coroutine's traps to Trio and Trio's answers back, until it ends."""
    while True:
        try:
            answer = yield trap
        except BaseException as exc:
            try:
                trap = coro.throw(exc)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
        else:
            try:
                trap = coro.send(answer)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
