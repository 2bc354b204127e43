"""Resizing frames: one resampler for every source, and the uint8 rounding rule.

:func:`resample` takes a window ``(y, x, h, w)`` in source pixels (fractional allowed, so a camera
can move) and resamples it by exact area weights, bilinear when enlarging; :func:`resize_to` is the
whole-frame case that video files use. Results are rounded to uint8 by :func:`to_uint8`
(``floor(x + 0.5)``).
"""
from __future__ import annotations

import numpy as np


def to_uint8(x) -> np.ndarray:
    return np.clip(np.floor(np.asarray(x) + 0.5), 0, 255).astype(np.uint8)


def resize_to(frames, h, w) -> np.ndarray:
    """Resize uint8 frames ``(..., H, W)`` to ``(..., h, w)`` with :func:`resample` over the whole
    frame (area weights when shrinking, bilinear when enlarging), rounded by :func:`to_uint8`."""
    x = np.asarray(frames)
    if x.shape[-2:] == (int(h), int(w)):
        return x
    return to_uint8(resample(x, (int(h), int(w))))


def _axis_weights(n_out, lo, size, n_in):
    """Area-averaging weights ``(n_out, n_in)`` resampling the window ``[lo, lo+size)`` to n_out pixels."""
    edges = lo + size * np.arange(n_out + 1) / n_out
    a, b = edges[:-1, None], edges[1:, None]
    px = np.arange(n_in)[None, :]
    w = np.clip(np.minimum(b, px + 1) - np.maximum(a, px), 0, None)
    if size / n_out < 1:          # enlarging: bilinear at output pixel centres
        c = (a + b)[:, 0] / 2 - 0.5
        c = np.clip(c, 0, n_in - 1)
        i0 = np.floor(c).astype(int)
        f = c - i0
        w = np.zeros((n_out, n_in))
        w[np.arange(n_out), i0] += 1 - f
        w[np.arange(n_out), np.minimum(i0 + 1, n_in - 1)] += f
    s = w.sum(axis=1, keepdims=True)
    return w / np.where(s == 0, 1, s)


def resample(img, out_hw, window=None) -> np.ndarray:
    """Resample ``(..., H, W)`` (window ``(y, x, h, w)`` in source pixels, default all) to ``out_hw``, float."""
    hh, ww = img.shape[-2:]
    y, x, h, w = window if window is not None else (0, 0, hh, ww)
    ry = _axis_weights(out_hw[0], y, h, hh)
    rx = _axis_weights(out_hw[1], x, w, ww)
    return ry @ np.asarray(img, np.float64) @ rx.T


def lowres(frames, k) -> np.ndarray:
    """Reduce ``k`` times by area averaging and enlarge back bilinearly (the enhancement task's input)."""
    h, w = frames.shape[-2:]
    small = resample(frames, (h // k, w // k))
    return to_uint8(resample(small, (h, w)))
