"""Frames from files: ``.npy``, ``.npz`` and video files.

* a ``.npy`` file holding a ``T x H x W`` or ``T x C x H x W`` array (a ``T x F`` array for flat
  models; ``T x H x W x C`` is accepted too when the input shape makes it unambiguous). The dtype
  is ``uint8`` or any integer type with values in ``0..255``; float arrays are accepted only if
  every value is an integer in ``0..255``;
* a ``.npz`` archive with such an array named ``frames`` (or holding exactly one array);
* a video file (``.mp4``, ``.avi``, ``.mkv``, ``.mov``, ``.gif``, ...) decoded with PyAV: as luma
  when the model takes one channel, as RGB when it takes three (RGB without an input shape).
  **Video frames are resized** to the model's ``H x W`` with :func:`evhw.data.resize.resize_to`;
  arrays are never resized.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import EvhwError, ShapeError
from .decode import decode, import_av
from .resize import resize_to

VIDEO_EXTS = (".mp4", ".m4v", ".avi", ".mkv", ".mov", ".webm", ".gif", ".mpg", ".mpeg", ".wmv", ".flv", ".ts",
              ".mts", ".ogv", ".3gp")
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def read_file(path: Path, shape, n):
    """The frame array of a file (not yet checked against ``shape``; see :func:`evhw.data.clip.conform`)."""
    if not path.exists():
        raise EvhwError(f"{path}: no such file")
    if path.is_dir():
        raise EvhwError(f"{path}: is a directory, not a frames file")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise EvhwError(f"{path}: cannot read: {e.strerror or e}") from None
    ext = path.suffix.lower()
    if head.startswith(NPY_MAGIC):
        return _read_npy(path)
    if head.startswith(ZIP_MAGIC) and ext not in VIDEO_EXTS:
        return _read_npz(path)
    if ext in (".npy", ".npz"):
        raise EvhwError(f"{path}: not a valid {ext} file")
    return _read_video(path, shape, n)


def _read_npy(path):
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as e:
        raise EvhwError(f"{path}: cannot load frames: {e}") from None
    except (OSError, EOFError) as e:
        raise EvhwError(f"{path}: cannot read frames (truncated or damaged file?): {e}") from None


def _read_npz(path):
    try:
        with np.load(path, allow_pickle=False) as z:
            members = set(z.zip.namelist())
            names = [k for k in z.files if k + ".npy" in members]
            if "frames" in names:
                key = "frames"
            elif len(names) == 1:
                key = names[0]
            else:
                raise EvhwError(f"{path}: holds arrays {names or 'none'}; name the frames array 'frames'")
            return z[key]
    except EvhwError:
        raise
    except ValueError as e:
        raise EvhwError(f"{path}: cannot load frames: {e}") from None
    except Exception as e:      # noqa: BLE001 - BadZipFile, OSError, EOFError... from a damaged archive
        raise EvhwError(f"{path}: cannot read frames (truncated or damaged .npz?): {e}") from None


def _read_video(path, shape, n):
    """Luma for one channel, RGB for three; resized to the model's H x W."""
    ext = path.suffix.lower()
    try:
        import_av()
    except EvhwError as e:
        if ext not in VIDEO_EXTS:
            raise EvhwError(f"{path}: not a .npy/.npz frames file; if it is a video, {e}") from None
        raise EvhwError(f"{path}: {e}") from None
    if shape is None:
        c, size = 3, None
    elif len(shape) == 3:
        c, size = shape[0], shape[1:]
        if c not in (1, 3):
            raise ShapeError(f"{path}: video frames have 1 (luma) or 3 (RGB) channels; the model takes {shape}")
    else:
        c, size = 1, None        # flat model: luma at the native size, flattened if it fits
    return decode(path, color="gray" if c == 1 else "rgb", count=n,
                  transform=None if size is None else (lambda a: resize_to(a, *size)))
