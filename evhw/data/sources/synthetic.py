"""``synthetic:shapes``: a deterministic synthetic video for tests and demos -- not real footage."""
from __future__ import annotations

import math
from urllib.parse import parse_qsl

import numpy as np

from ...errors import ConfigError, EvhwError
from ..clip import MAX_FRAMES, Clip

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


def clip(spec, input_shape=None, frames=None) -> Clip:
    """``synthetic:shapes?frames=N&seed=S&noise=X&c=C&h=H&w=W`` (default: the model's input shape)."""
    name = spec.split(":", 1)[1]
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
    return Clip(shapes_video(t_n, c, h, w, seed=p.get("seed", 0), noise=p.get("noise", 1.0)), info={"source": spec})
