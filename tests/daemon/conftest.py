from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

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


@pytest.fixture(autouse=True)
def _restore_root_logging() -> Iterator[None]:
    """Daemon code may (re)configure logging; keep each test's changes to itself."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    protocol_level = logging.getLogger("protocol").level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("protocol").setLevel(protocol_level)
