"""Agreement between two runs of a network's outputs, for models without labels.

``evhw eval --agreement`` compares, per output and per frame, the event model with the dense
integer model (what the threshold costs) and the dense integer model with the float model (what
quantization costs). Outputs are compared as real numbers (integer readout x scale, then the
output's host op such as softmax), so every metric sees what a user of the network sees.

Metrics (``SPEC``):

* ``argmax`` -- the fraction of decisions that agree: the index of the largest value over axis 0
  (classes / channels), for a vector one decision per frame, for a ``(C, H, W)`` map one per position;
* ``topk:K`` -- the fraction of decisions whose reference top-1 lies in the compared run's top K;
* ``psnr`` -- ``10 log10(peak**2 / MSE)`` in dB over all frames, ``peak`` the reference's value
  range (max - min) over the clip; ``None`` when the runs are identical (infinite PSNR);
* ``rel-l2`` -- the mean over frames of ``||a - ref|| / ||ref||`` (0 means identical).

Default per output shape (:func:`default_metric`): a vector or a ``(C, 1, 1)`` map with C >= 2 gets
``argmax``; a spatial map (H*W > 1) gets ``psnr``; a single value gets ``rel-l2``.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import ConfigError

SPEC = "argmax|topk:K|psnr|rel-l2"


def parse(spec):
    """``argmax`` / ``topk:K`` / ``psnr`` / ``rel-l2`` -> (name, K or None); ConfigError otherwise."""
    s = str(spec).strip().lower()
    if s in ("argmax", "psnr", "rel-l2"):
        return s, None
    if s.startswith("topk:"):
        k = s[5:]
        if k.isdigit() and int(k) >= 1:
            return "topk", int(k)
    raise ConfigError(f"--agreement must be {SPEC} (K a positive integer), not {spec!r}")


def default_metric(shape) -> str:
    """The metric used for an output of this per-frame shape when none is asked for."""
    shape = tuple(shape)
    n = int(np.prod(shape))
    if n <= 1:
        return "rel-l2"
    if len(shape) == 1 or (len(shape) == 3 and shape[1] * shape[2] == 1):
        return "argmax"
    return "psnr"


def _decisions(x, k):
    """Top-k indices over axis 1 of a ``(T, C, ...)`` batch, as ``(T, k, ...)``."""
    return np.argsort(-x, axis=1, kind="stable")[:, :k]


def compare(metric, got, ref):
    """``metric`` (a parse()d pair or a string) of ``got`` against ``ref``, both ``(T, *shape)`` real arrays.

    Returns a float (``None`` for the PSNR of identical runs)."""
    name, k = parse(metric) if isinstance(metric, str) else metric
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape:
        raise ConfigError(f"cannot compare outputs of shapes {got.shape} and {ref.shape}")
    if got.shape[0] == 0:
        raise ConfigError("no frames to compare")
    if name in ("argmax", "topk"):
        if got.ndim < 2 or got.shape[1] < 2:
            raise ConfigError(f"--agreement {name} needs an output with 2 or more classes/channels, "
                              f"not per-frame shape {got.shape[1:]}")
        k = 1 if name == "argmax" else min(k, got.shape[1])
        top_ref = _decisions(ref, 1)[:, 0]
        top_got = _decisions(got, k)
        return float(np.mean(np.any(top_got == top_ref[:, None], axis=1)))
    if name == "psnr":
        mse = float(np.mean((got - ref) ** 2))
        if mse == 0:
            return None
        peak = float(ref.max() - ref.min()) or 1.0
        return 10.0 * math.log10(peak * peak / mse)
    num = np.sqrt(((got - ref) ** 2).reshape(len(ref), -1).sum(axis=1))
    den = np.sqrt((ref ** 2).reshape(len(ref), -1).sum(axis=1))
    return float(np.mean(np.where(den > 0, num / np.where(den > 0, den, 1.0), num)))


def report(names, metrics, got, ref):
    """One dict per output: ``{"output", "metric", "value"}``; ``got`` / ``ref`` are per-output (T, ...) arrays."""
    return [{"output": n, "metric": m if isinstance(m, str) else (m[0] if m[1] is None else f"{m[0]}:{m[1]}"),
             "value": compare(m, g, r)} for n, m, g, r in zip(names, metrics, got, ref)]
