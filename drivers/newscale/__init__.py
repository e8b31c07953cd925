"""New Scale M3-LS stages over the M3-USB-3:1-EP serial bridge (``--platform newscale``)."""

from drivers.newscale.driver import NewScaleManipulator
from drivers.newscale.platform import NewScalePlatform, create_platform

__all__ = ["NewScaleManipulator", "NewScalePlatform", "create_platform"]
