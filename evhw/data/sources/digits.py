"""``tdigits:opencv`` and ``tdigits:sklearn``: temporal-digit sequences (each digit held for a random
number of frames), labelled. Options: ``frames``, ``seed``, ``hold=MIN-MAX``, ``split=train|test``."""
from __future__ import annotations

import functools

import numpy as np

from ...errors import ConfigError, EvhwError
from ..clip import Clip
from ..decode import read_image_gray
from ..install import DataMissingError, debian_path
from ..options import hold_range, parse_options, pos_int
from ..resize import resample, to_uint8


@functools.lru_cache(maxsize=None)
def opencv_digits():
    """OpenCV's digits.png: (5000, 20, 20) uint8 white-on-black digits and labels (500 of each, in order)."""
    path = debian_path("opencv-doc", "digits.png")
    img = read_image_gray(path)
    cells = img.reshape(50, 20, 100, 20).transpose(0, 2, 1, 3).reshape(5000, 20, 20)
    return cells, np.repeat(np.arange(10), 500)


@functools.lru_cache(maxsize=None)
def sklearn_digits():
    """scikit-learn's digits: (1797, 8, 8) uint8 (0..16 scaled to 0..255) and labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataMissingError("tdigits:sklearn needs scikit-learn: pip install scikit-learn") from None
    d = load_digits()
    return to_uint8(d.images * (255.0 / 16.0)), d.target.astype(np.int64)


def mnist_style(digits, size=28, box=20) -> np.ndarray:
    """Scale digits into a ``box``-pixel square centred by mass in a ``size`` frame, as MNIST was made."""
    n = len(digits)
    small = resample(digits, (box, box))
    out = np.zeros((n, size, size))
    yy, xx = np.mgrid[0:box, 0:box]
    for i in range(n):
        m = small[i].sum() or 1.0
        cy, cx = (small[i] * yy).sum() / m, (small[i] * xx).sum() / m
        oy = int(np.clip(round(size / 2 - 0.5 - cy), 0, size - box))
        ox = int(np.clip(round(size / 2 - 0.5 - cx), 0, size - box))
        out[i, oy:oy + box, ox:ox + box] = small[i]
    return to_uint8(out)


def digit_set(name, split):
    """MNIST-style 28x28 digits and labels of ``opencv`` or ``sklearn`` for split train/test (80/20)."""
    if name == "opencv":
        x, y = opencv_digits()
    elif name == "sklearn":
        x, y = sklearn_digits()
    else:
        raise EvhwError(f"unknown digit set {name!r}; known: opencv, sklearn")
    x = mnist_style(x)
    idx = np.arange(len(x))
    test = (idx % 5) == 4                   # every fifth digit (of each writer block) is held out
    sel = test if split == "test" else ~test
    return x[sel], y[sel]


TDIGIT_OPTIONS = {"frames": pos_int, "seed": int, "hold": str, "split": str}


def temporal_digits(images, labels, n_frames, *, hold=(3, 12), seed=0):
    """A temporal-digit sequence: random digits, each held for a random number of frames (Sigma-Delta's
    Temporal-MNIST)."""
    rng = np.random.default_rng([seed, 11])
    xs, ys = [], []
    while len(xs) < n_frames:
        i = int(rng.integers(len(images)))
        k = int(rng.integers(hold[0], hold[1] + 1))
        xs += [images[i]] * k
        ys += [labels[i]] * k
    return np.stack(xs[:n_frames]), np.asarray(ys[:n_frames])


def clip(spec, input_shape=None, frames=None) -> Clip:
    base, _, query = spec.partition("?")
    o = parse_options(spec, query, TDIGIT_OPTIONS)
    split = o.get("split", "test")
    if split not in ("train", "test"):
        raise ConfigError(f"{spec}: split is train or test, not {split!r}")
    x, y = digit_set(base.split(":", 1)[1], split)
    n = frames or o.get("frames", 200)
    f, lab = temporal_digits(x, y, n, hold=hold_range(o.get("hold", "3-12")), seed=o.get("seed", 0))
    f = f[:, None]
    if input_shape is not None and len(input_shape) == 1:
        f = f.reshape(len(f), -1)
    return Clip(f, labels=lab, info={"source": spec})
