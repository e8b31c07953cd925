"""A platform and one actor per manipulator, started under a caller's nursery.

Kept apart from the Socket.IO side so the API can be exercised (tests, the
benchmark) without a server, and so the supervisor owns every task directly.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import trio

from drivers.base import Manipulator, Platform, PlatformInfo
from ephysd.actor import Actor, ActorHandle, ActorLimits, Result

log = logging.getLogger(__name__)


class Rig:
    """The running manipulators of one platform, by id, in the platform's order."""

    def __init__(self, info: PlatformInfo, actors: list[Actor]) -> None:
        self.info = info
        self.actors = {actor.id: actor for actor in actors}
        self.handles: dict[str, ActorHandle] = {actor.id: actor.handle for actor in actors}

    @property
    def ids(self) -> list[str]:
        return list(self.handles)

    async def stop_all(self) -> str:
        """Stop every manipulator at once; "" when all halted, else their errors."""
        return await self._on_every_actor(ActorHandle.stop)

    async def abort_jackhammer(self) -> str:
        """End every running jackhammer at once (upstream has one abort for the
        whole rig); "" when each was halted, else their errors. Moves run on."""
        return await self._on_every_actor(ActorHandle.abort_jackhammer)

    async def _on_every_actor(
        self, request: Callable[[ActorHandle], Awaitable[Result[None]]]
    ) -> str:
        errors: list[str] = []

        async def one(handle: ActorHandle) -> None:
            result = await request(handle)
            if result.error:
                errors.append(result.error)

        async with trio.open_nursery() as nursery:
            for handle in self.handles.values():
                nursery.start_soon(one, handle)
        return "; ".join(errors)


async def start_rig(
    nursery: trio.Nursery, platform: Platform, limits: ActorLimits | None = None
) -> Rig:
    """Start ``platform.run`` and every actor in ``nursery``; return once all are ready."""
    manipulators: list[Manipulator] = await nursery.start(platform.run)
    actors = [Actor(m, platform.info, limits) for m in manipulators]
    async with trio.open_nursery() as starter:
        for actor in actors:
            starter.start_soon(nursery.start, actor.run)
    log.info(
        "platform %s ready with manipulators %s",
        platform.info.name,
        ", ".join(a.id for a in actors) or "(none)",
    )
    return Rig(platform.info, actors)


@asynccontextmanager
async def open_rig(platform: Platform, limits: ActorLimits | None = None) -> AsyncIterator[Rig]:
    """A running rig for the duration of the block (tests, tools)."""
    async with trio.open_nursery() as nursery:
        rig = await start_rig(nursery, platform, limits)
        try:
            yield rig
        finally:
            nursery.cancel_scope.cancel()
