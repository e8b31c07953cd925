"""A uMp rig under the daemon's actors: a lost controller reconnects by itself."""

from __future__ import annotations

from collections.abc import Callable

import trio

from drivers.ump import UmpPlatform
from ephysd.actor import ActorLimits
from ephysd.rig import open_rig
from tests.ump.fake_sdk import FakeSensapexSDK

QUICK = ActorLimits(read_timeout_s=1.0, reconnect_initial_s=0.05, reconnect_max_s=0.2)


async def until(condition: Callable[[], bool], what: str) -> None:
    """Poll, bounded: the actor and the SDK's threads change this state with no event to await."""
    for _ in range(150):
        if condition():
            return
        await trio.sleep(0.02)
    raise AssertionError(f"{what} did not happen within 3 s")


async def test_a_ump_that_stops_answering_goes_offline_and_comes_back_by_itself() -> None:
    sdk = FakeSensapexSDK({1: 4, 2: 4})
    async with open_rig(UmpPlatform(lambda: sdk), QUICK) as rig:
        actor, handle = rig.actors["1"], rig.handles["1"]
        assert (await handle.get_position()).error == ""
        sdk.devices[1].unplug()

        lost = await handle.get_position()
        assert lost.error.startswith("DeviceLost: Sensapex uMp-4 1 position failed: ")
        assert "Timeout" in lost.error
        assert not actor.online
        offline = await handle.get_position()
        assert offline.error.startswith("DeviceLost: Manipulator 1 is offline")
        assert (await rig.handles["2"].get_position()).error == ""

        # The actor keeps trying to reopen the device on its own...
        reads = len(sdk.calls_named("get_pos"))
        await until(lambda: len(sdk.calls_named("get_pos")) >= reads + 2, "two reopen attempts")
        assert not actor.online

        # ...and is back once the controller answers again, with no request asking.
        sdk.devices[1].replug()
        await until(lambda: actor.online, "the actor coming back online")
        back = await handle.get_position()
        assert back.error == ""
        assert back.value is not None
        assert back.value.x == 10.0
