"""The one state publisher: what the rig is doing, pushed to observers as ``rig_state``.

While at least one observer is connected, this task sends every observer a
``rig_state`` event (a JSON string, like every answer of the API) whenever
something changed, at most ``1 / push_interval_s`` times a second, and at
least once a second so a page can tell a quiet rig from a dead link. With no
observer it waits on an event and does nothing at all.

Positions come from each actor's latest reading (``Actor.last_position``):
while a client polls a manipulator, that is fresh and the device is not
asked again. Only when nobody has read a manipulator for ``fresh_s`` does the
publisher ask the actor for a read, through the same read queue as any
client, so every position shown is at most ``fresh_s`` (plus one read) old
and observers add no device traffic while Pinpoint polls. A slow observer
never holds up the others: each has its own sender, which sends the newest
state and drops the ones it had no time for.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any, Protocol

import msgspec
import trio

from ephysd.actor import Actor
from ephysd.estop import EStopState
from ephysd.models import Vector4, vector4
from ephysd.observers import Observer, Observers
from ephysd.rig import Rig

log = logging.getLogger(__name__)

EVENT = "rig_state"
PUSH_INTERVAL_S = 0.05  # at most 20 pushes a second
FRESH_S = 0.2  # a position older than this is read again: >= 5 refreshes a second
HEARTBEAT_S = 1.0


class Emitter(Protocol):
    """Sends an event to one client (the Socket.IO server does)."""

    async def emit(
        self, event: str, *args: Any, to: str | None = None, namespace: str = "/"
    ) -> None: ...


class ManipulatorState(msgspec.Struct, rename="pascal", frozen=True):
    id: str
    # None until the device has reported a position.
    position: Vector4 | None
    # "idle", "moving" or "offline" (then ``reason`` says why).
    state: str
    reason: str
    inside_brain: bool
    last_error: str


class EStopStatus(msgspec.Struct, rename="pascal", frozen=True):
    configured: bool
    armed: bool
    device: str


class RigState(msgspec.Struct, rename="pascal", frozen=True):
    # Unix time (s) of this state.
    time: float
    # host:port of the controlling client, None when nobody holds control.
    controller: str | None
    e_stop: EStopStatus = msgspec.field(name="EStop")
    manipulators: list[ManipulatorState] = msgspec.field(default_factory=list)


def manipulator_state(actor: Actor) -> ManipulatorState:
    if not actor.online:
        state = "offline"
    elif actor.moving:
        state = "moving"
    else:
        state = "idle"
    seen = actor.last_position
    return ManipulatorState(
        id=actor.id,
        position=None if seen is None else vector4(seen),
        state=state,
        reason=actor.lost_reason,
        inside_brain=actor.inside_brain,
        last_error=actor.handle.last_error,
    )


class RigStatePublisher:
    """Builds the rig's state from the actors and pushes it to every observer."""

    def __init__(
        self,
        rig: Rig,
        server: Emitter,
        observers: Observers,
        controller: Callable[[], str | None],
        estop: EStopState,
        *,
        push_interval_s: float = PUSH_INTERVAL_S,
        fresh_s: float = FRESH_S,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self._actors = list(rig.actors.values())
        self._server = server
        self._observers = observers
        self._controller = controller
        self._estop = estop
        self._push_interval_s = push_interval_s
        self._fresh_s = fresh_s
        self._heartbeat_s = heartbeat_s
        self._refreshing: set[str] = set()
        self._serving: set[Observer] = set()
        self.pushes = 0
        self.refreshes = 0

    def snapshot(self) -> RigState:
        """The rig as it is now (positions as last read)."""
        estop = self._estop
        return RigState(
            time=round(time.time(), 3),
            controller=self._controller(),
            e_stop=EStopStatus(estop.configured, estop.armed, estop.device),
            manipulators=[manipulator_state(actor) for actor in self._actors],
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                await self._observers.wait_for_someone()
                log.debug("rig_state: observers connected, publishing")
                await self._publish_while_watched(nursery)
                log.debug("rig_state: no observer left, idle")

    async def _publish_while_watched(self, nursery: trio.Nursery) -> None:
        last: RigState | None = None
        sent_at = -math.inf
        next_push = trio.current_time()
        while len(self._observers):
            now = trio.current_time()
            due = self._refresh_stale(nursery, now)
            if now >= next_push:
                next_push = now + self._push_interval_s
                state = self.snapshot()
                fresh_observer = self._serve_new_observers(nursery)
                unchanged = last is not None and _same(state, last)
                if fresh_observer or not unchanged or now - sent_at >= self._heartbeat_s:
                    self._push(msgspec.json.encode(state).decode())
                    last, sent_at = state, now
            await trio.sleep_until(min(next_push, due))

    def _refresh_stale(self, nursery: trio.Nursery, now: float) -> float:
        """Ask for a read of every manipulator nobody read lately; when the next one is due."""
        due = math.inf
        for actor in self._actors:
            if not actor.online or actor.id in self._refreshing:
                continue
            stale_at = actor.last_read_at + self._fresh_s
            if stale_at <= now:
                self._refreshing.add(actor.id)
                nursery.start_soon(self._refresh, actor)
            else:
                due = min(due, stale_at)
        return due

    async def _refresh(self, actor: Actor) -> None:
        try:
            self.refreshes += 1
            # Bounded by the actor's read deadline; the actor records the reading.
            await actor.handle.get_position()
        finally:
            self._refreshing.discard(actor.id)

    def _serve_new_observers(self, nursery: trio.Nursery) -> bool:
        """Start a sender for each observer that has none; True if there was one."""
        started = False
        for observer in self._observers:
            if observer not in self._serving:
                self._serving.add(observer)
                nursery.start_soon(self._send_to, observer)
                started = True
        return started

    def _push(self, text: str) -> None:
        self.pushes += 1
        for observer in self._serving:
            observer.offer(text)

    async def _send_to(self, observer: Observer) -> None:
        try:
            while not observer.gone:
                await observer.wake.wait()
                observer.wake = trio.Event()
                text, observer.pending = observer.pending, None
                if text is not None and not observer.gone:
                    await self._server.emit(EVENT, text, to=observer.sid)
        finally:
            self._serving.discard(observer)


def _same(a: RigState, b: RigState) -> bool:
    """Equal but for the time stamp."""
    return (
        a.controller == b.controller and a.e_stop == b.e_stop and a.manipulators == b.manipulators
    )
