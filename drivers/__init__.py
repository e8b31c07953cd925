"""Manipulator drivers: one module per platform, all behind :mod:`drivers.base`."""
