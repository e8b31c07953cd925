"""Scientifica IVM, PatchStar and MicroStar over serial (``--platform scientifica``)."""

from drivers.scientifica.driver import ScientificaManipulator
from drivers.scientifica.platform import ScientificaPlatform, create_platform

__all__ = ["ScientificaManipulator", "ScientificaPlatform", "create_platform"]
