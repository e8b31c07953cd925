"""New Scale Pathfinder MPM, driven through Pathfinder's local HTTP server."""

from __future__ import annotations

from drivers.base import PlatformOptions
from drivers.http_common import HttpPlatform
from drivers.pathfinder_mpm.dialect import MPM_IDS, MpmDialect


def create_platform(options: PlatformOptions) -> HttpPlatform:
    return HttpPlatform(MpmDialect(), f"http://{options.http_host}:{options.mpm_port}")


__all__ = ["MPM_IDS", "MpmDialect", "create_platform"]
