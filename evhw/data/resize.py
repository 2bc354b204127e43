"""Resizing frames: the two resamplers every source uses, and the uint8 rounding rule.

* :func:`resize_to` -- for video *files*: area averaging (rounded half up) for integer
  down-scaling factors, nearest-neighbour sampling at pixel centres otherwise;
* :func:`resample` -- for named sources: a window ``(y, x, h, w)`` in source pixels (fractional
  allowed, so a camera can move) resampled by exact area weights, bilinear when enlarging.

Both are kept as they are so that every source yields the same frames as before; results are
rounded to uint8 by :func:`to_uint8` (``floor(x + 0.5)``).
"""
from __future__ import annotations

import numpy as np


def to_uint8(x) -> np.ndarray:
    return np.clip(np.floor(np.asarray(x) + 0.5), 0, 255).astype(np.uint8)


def resize_to(frames, h, w) -> np.ndarray:
    """Resize uint8 frames ``(..., H, W)`` to ``(..., h, w)``.

    Area averaging (rounded half up) when ``H/h`` and ``W/w`` are integers, nearest-neighbour
    sampling at pixel centres otherwise (up-scaling, fractional factors). Used for video files only.
    """
    x = np.asarray(frames)
    hh, ww = x.shape[-2:]
    h, w = int(h), int(w)
    if (hh, ww) == (h, w):
        return x
    if hh % h == 0 and ww % w == 0:
        fy, fx = hh // h, ww // w
        y = x.reshape(*x.shape[:-2], h, fy, w, fx).astype(np.float64).mean(axis=(-3, -1))
        return np.floor(y + 0.5).astype(x.dtype)
    ys = np.minimum(((np.arange(h) + 0.5) * hh / h).astype(np.int64), hh - 1)
    xs = np.minimum(((np.arange(w) + 0.5) * ww / w).astype(np.int64), ww - 1)
    return x[..., ys[:, None], xs[None, :]]


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
