"""Parallax for New Scale, driven through Parallax's local HTTP server."""

from __future__ import annotations

from drivers.base import PlatformOptions
from drivers.http_common import HttpPlatform
from drivers.parallax.dialect import ParallaxDialect


def create_platform(options: PlatformOptions) -> HttpPlatform:
    return HttpPlatform(ParallaxDialect(), f"http://{options.http_host}:{options.parallax_port}")


__all__ = ["ParallaxDialect", "create_platform"]
