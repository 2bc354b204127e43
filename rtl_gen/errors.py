"""Errors of the hardware generator."""
from evhw.errors import EvhwError


class UnsupportedHardwareError(EvhwError):
    """A converted network uses a feature the v1 hardware does not implement (names layer and feature)."""
