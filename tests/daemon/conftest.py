from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from drivers.fake import FakePlatform
from ephysd.api import Api
from ephysd.rig import Rig, open_rig


@pytest.fixture
def platform() -> FakePlatform:
    return FakePlatform()


@pytest.fixture
async def rig(platform: FakePlatform) -> AsyncIterator[Rig]:
    async with open_rig(platform) as running:
        yield running


@pytest.fixture
def api(rig: Rig) -> Api:
    return Api(rig, pinpoint_id="1a2b3c4d")
