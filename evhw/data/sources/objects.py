"""``objects:fmnist``: Fashion-MNIST objects moving over real video backgrounds, labelled.

Options: ``bg=VIDEO`` (a video source name), ``motion``, ``start`` (of the background), ``size``,
``hold=MIN-MAX``, ``split=train|test``, ``frames``, ``seed``.
"""
from __future__ import annotations

import gzip

import numpy as np

from ...errors import ConfigError, EvhwError
from ..clip import Clip
from ..install import debian_path
from ..options import hold_range, nonneg_int, parse_options, pos_int
from ..resize import resample, to_uint8
from . import video
from .video import out_shape


def fashion_mnist(split="test"):
    """Fashion-MNIST from the Debian package: (N, 28, 28) uint8 and labels."""
    root = debian_path("dataset-fashion-mnist", "t10k-images-idx3-ubyte.gz")
    pre = "train" if split == "train" else "t10k"
    with gzip.open(root.parent / f"{pre}-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(root.parent / f"{pre}-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
    return x, y


FASHION_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")

OBJECT_OPTIONS = {"frames": pos_int, "seed": int, "bg": str, "hold": str, "split": str, "start": nonneg_int,
                  "size": pos_int, "motion": str}


def paste(background, obj, oy, ox):
    """Composite ``obj`` (values 0..1 on black) onto a float copy of ``background`` at (oy, ox).

    The object is opaque wherever it is brighter than 1/8 (a soft edge below), so its dark
    regions stay dark instead of letting the background through.
    """
    bg = np.array(background, np.float64)
    size_y, size_x = obj.shape
    alpha = np.clip(obj * 8.0, 0.0, 1.0)
    patch = bg[oy:oy + size_y, ox:ox + size_x]
    bg[oy:oy + size_y, ox:ox + size_x] = patch * (1 - alpha) + 255.0 * obj * alpha
    return bg


def moving_objects(objects, labels, background, *, hold=(24, 48), size=32, seed=0):
    """Objects pasted (see :func:`paste`) onto ``background`` frames ``(T, H, W)``, each object
    gliding on a smooth random path for a random number of frames before the next one appears."""
    rng = np.random.default_rng([seed, 13])
    T, H, W = background.shape
    out = np.empty((T, H, W), np.uint8)
    lab = np.empty(T, np.int64)
    t = 0
    while t < T:
        i = int(rng.integers(len(objects)))
        k = min(T - t, int(rng.integers(hold[0], hold[1] + 1)))
        obj = resample(objects[i], (size, size)) / 255.0
        p0 = rng.uniform(0, [H - size, W - size])
        v = rng.uniform(-0.7, 0.7, 2)                      # under a pixel per frame
        for j in range(k):
            p = p0 + v * j
            for ax, lim in enumerate((H - size, W - size)):   # bounce off the edges
                m = p[ax] % (2 * lim) if lim > 0 else 0.0
                p[ax] = m if m <= lim else 2 * lim - m
            oy, ox = int(round(p[0])), int(round(p[1]))
            out[t + j] = to_uint8(paste(background[t + j], obj, oy, ox))
            lab[t + j] = labels[i]
        t += k
    return out, lab


def clip(spec, input_shape=None, frames=None) -> Clip:
    base, _, query = spec.partition("?")
    if base != "objects:fmnist":
        raise EvhwError(f"unknown object source {base!r}; known: objects:fmnist")
    o = parse_options(spec, query, OBJECT_OPTIONS)
    (c, h, w), _ = out_shape(input_shape, {})
    if c != 1:
        raise ConfigError(f"{spec}: moving objects are grayscale; the model takes {c} channels")
    split = o.get("split", "test")
    x, y = fashion_mnist(split)
    n = frames or o.get("frames", 128)
    bg_spec = o.get("bg", video.STATIC_CAMERA)
    bg_opts = f"start={o.get('start', 0)}" + (f"&motion={o['motion']}" if "motion" in o else "")
    bg = video.clip(f"{bg_spec}{'&' if '?' in bg_spec else '?'}{bg_opts}", (1, h, w), n).frames[:, 0]
    if len(bg) < n:
        bg = np.concatenate([bg, bg[::-1]] * (n // (2 * len(bg)) + 1))[:n]
    f, lab = moving_objects(x, y, bg, hold=hold_range(o.get("hold", "24-48")), size=o.get("size", 3 * h // 8),
                            seed=o.get("seed", 0))
    return Clip(f[:, None], labels=lab, info={"source": spec, "classes": FASHION_CLASSES})
