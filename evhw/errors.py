"""Errors evhw raises for bad input. Each names the problem; the CLI prints them without a traceback."""


class EvhwError(Exception):
    """Base class: a user-facing error with a one-line explanation."""


class UnsupportedOpError(EvhwError):
    """A model contains an operation evhw cannot convert (names the op and the node)."""


class ShapeError(EvhwError):
    """Tensor shapes do not fit (a frame that does not match the model, a bad concat...)."""


class QuantizationError(EvhwError):
    """Quantization parameters are out of range or cannot be met."""


class AccumulatorWidthError(QuantizationError):
    """A forced accumulator width is narrower than the proven bound."""


class AccumulatorOverflowError(EvhwError):
    """An accumulator left its proven range at run time (only possible under memory-loss policies)."""


class ModelFileError(EvhwError):
    """A model file is missing, malformed, truncated or corrupt."""


class ConfigError(EvhwError):
    """An option or policy setting is invalid."""


class NetworkSpecError(EvhwError):
    """A converted network's fields contradict each other (names the layer and the field)."""


class MismatchError(EvhwError):
    """A check ran to the end and failed: the RTL disagrees with the golden model (exit code 1, not 2)."""
