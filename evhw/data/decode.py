"""The one video decoder (PyAV, imported only when a video is read)."""
from __future__ import annotations

import numpy as np

from ..errors import EvhwError, ShapeError


def import_av():
    try:
        import av
    except ImportError:
        raise EvhwError("reading video needs PyAV: pip install av (or pip install 'evhw[video]')") from None
    return av


def decode(path, *, color="gray", start=0, step=1, count=None, transform=None) -> np.ndarray:
    """Frames ``start, start+step, ...`` (at most ``count``) of a video as uint8 ``(T, C, H, W)``.

    ``color``: ``gray`` (luma) or ``rgb``. ``transform`` maps each ``(C, H, W)`` frame as it is
    decoded (e.g. a resize), so a long video is never held at its native size.
    """
    av = import_av()
    av_errors = tuple(e for e in (getattr(av, "FFmpegError", None), getattr(av, "AVError", None))
                      if isinstance(e, type)) or (Exception,)
    out = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise EvhwError(f"{path}: has no video stream")
            for i, fr in enumerate(container.decode(container.streams.video[0])):
                if i < start or (i - start) % step:
                    continue
                a = fr.to_ndarray(format="gray" if color == "gray" else "rgb24")
                a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
                if transform is not None:
                    a = transform(a)
                out.append(np.ascontiguousarray(a, dtype=np.uint8))
                if count is not None and len(out) >= count:
                    break
    except EvhwError:
        raise
    except (*av_errors, OSError, ValueError) as e:
        raise EvhwError(f"{path}: cannot decode video: {e}") from None
    if not out:
        if start:
            raise EvhwError(f"{path}: no frames from frame {start} on (the clip is shorter)")
        raise ShapeError(f"{path}: the video has no frames")
    return np.stack(out)


def read_image_gray(path) -> np.ndarray:
    """The first picture of an image file (PNG, ...) as uint8 luma ``(H, W)``."""
    return decode(path, color="gray", count=1)[0, 0]
