"""A :class:`Clip` and the checks every frame array passes: pixel values, layout against the model input.

Frames are raw ``uint8`` pixels shaped ``(T, C, H, W)`` -- or ``(T, F)`` for a model with a flat
``(F,)`` input. With an input shape the frames must fit it: ``(T, H, W)`` becomes ``(T, 1, H, W)``
for a one-channel model, ``T x H x W x C`` is transposed when the shape makes it unambiguous, and
for a flat ``(F,)`` model frames with ``C * H * W == F`` values are flattened channel-major.
Anything else raises :class:`evhw.errors.ShapeError` (``frames have shape (...) but the model
takes (...)``). Frame arrays are never resized.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError, ShapeError

#: Most frames one run reads or generates (``--frames``, ``frames=N``): bounds memory for generated sources.
MAX_FRAMES = 100_000


@dataclass
class Clip:
    """Frames ``(T, C, H, W)`` uint8, with per-frame ``labels`` (T,) or ``targets`` (like frames)."""
    frames: np.ndarray
    labels: np.ndarray | None = None
    targets: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    def __len__(self):
        return len(self.frames)

    def head(self, n):
        if n is None:
            return self
        return Clip(self.frames[:n], None if self.labels is None else self.labels[:n],
                    None if self.targets is None else self.targets[:n], self.info)


def model_shape(input_shape):
    """A model input shape ``(C, H, W)`` or ``(F,)`` as a tuple of ints (None stays None)."""
    if input_shape is None:
        return None
    try:
        s = tuple(int(x) for x in input_shape)
    except (TypeError, ValueError):
        raise ShapeError(f"a model input shape is (C, H, W) or (F,), not {input_shape!r}") from None
    if len(s) not in (1, 3) or min(s) < 1:
        raise ShapeError(f"a model input shape is (C, H, W) or (F,), not {s}")
    return s


def frame_count(frames):
    """The ``frames=N`` request as an int (None: all frames)."""
    if frames is None:
        return None
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or not 1 <= frames <= MAX_FRAMES:
        raise ConfigError(f"the number of frames must be an integer in 1..{MAX_FRAMES}, not {frames}")
    return int(frames)


def conform(arr, input_shape=None, what="frames") -> np.ndarray:
    """Check pixel values and layout of a frame array and return it as contiguous uint8.

    See the module docstring for the accepted layouts; ``what`` names the source in errors.
    """
    shape = model_shape(input_shape)
    a = np.asarray(arr)
    if a.dtype == bool or a.dtype.kind not in "iuf":
        raise ShapeError(f"{what}: frames must hold uint8 pixels, not dtype {a.dtype}")
    if a.ndim not in (2, 3, 4):
        raise ShapeError(f"{what}: frames must be a (T, H, W), (T, C, H, W) or (T, F) array, not shape {a.shape}")
    if a.shape[0] == 0:
        raise ShapeError(f"{what}: no frames")
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or np.any(a != np.rint(a)):
            raise ShapeError(f"{what}: frames must hold integer pixels 0..255; this {a.dtype} array has "
                             f"non-integer values (convert and scale it to uint8 first)")
    if a.size and (a.min() < 0 or a.max() > 255):
        raise ShapeError(f"{what}: pixel values must lie in 0..255, got {a.min():g}..{a.max():g}")
    fs = tuple(a.shape[1:])
    if shape is None:
        if a.ndim == 3:
            a = a[:, None]
    elif len(shape) == 3:
        c, h, w = shape
        if fs == shape:
            pass
        elif a.ndim == 3 and c == 1 and fs == (h, w):
            a = a[:, None]
        elif a.ndim == 4 and fs == (h, w, c):
            a = a.transpose(0, 3, 1, 2)          # channels-last
        else:
            hint = ""
            if a.ndim == 3 and fs == (h, w):
                hint = f" (grayscale frames for a {c}-channel model)"
            elif fs[-2:] != (h, w):
                hint = " (evhw does not resize frame arrays)"
            raise ShapeError(f"{what}: frames have shape {fs} but the model takes {shape}{hint}")
    else:
        (f,) = shape
        if a.ndim == 2 and fs == (f,):
            pass
        elif a.ndim in (3, 4) and math.prod(fs) == f:
            a = a.reshape(a.shape[0], f)
        else:
            raise ShapeError(f"{what}: frames have shape {fs} but the model takes {shape}")
    return np.ascontiguousarray(a, dtype=np.uint8)
