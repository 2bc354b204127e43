"""Small networks and real-video clips for the RTL tests (seeded; built with GraphBuilder + convert)."""
from __future__ import annotations

import functools

import numpy as np

from evhw.convert import convert
from evhw.flow.network import clip_for
from evhw.ir import GraphBuilder

VIDEO = "opencv:vtest?frames=4&step=8"   # frames 8 apart: enough motion for events in an 8x8 crop


def _he(rng, shape):
    return rng.normal(0.0, np.sqrt(2.0 / int(np.prod(shape[1:]))), shape)


@functools.lru_cache(maxsize=None)
def clip(shape, source=VIDEO, frames=None):
    """uint8 frames of real video (OpenCV's vtest.avi) resized by the source to ``shape``."""
    return clip_for(source, tuple(shape), frames).frames


def tiny_mlp(seed=0, threshold=0.05):
    """64-16-8: linear + ReLU (gated), linear readout."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder((64,), name="tiny-mlp")
    x = b.op("relu", b.linear("input", _he(rng, (16, 64)), rng.normal(0, .1, 16), name="fc1"), name="relu1")
    b.linear(x, _he(rng, (8, 16)), rng.normal(0, .1, 8), name="fc2")
    g = b.build()
    return convert(g, clip((64,)), threshold=threshold), g


def tiny_cnn(seed=1, threshold=0.05, size=16, source=VIDEO):
    """1xSxS: conv3x3-ReLU, maxpool 2, conv3x3-ReLU, residual add-ReLU, global average pool, linear."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder((1, size, size), name="tiny-cnn")
    x = b.op("relu", b.conv("input", _he(rng, (4, 1, 3, 3)), rng.normal(0, .1, 4), padding=1, name="conv1"))
    x = b.op("maxpool", x, kernel=2, stride=2, name="pool1")
    y = b.op("relu", b.conv(x, _he(rng, (4, 4, 3, 3)), rng.normal(0, .1, 4), padding=1, name="conv2"))
    z = b.op("relu", b.op("add", x, y, name="res"))
    z = b.op("flatten", b.op("globalavgpool", z, name="gap"), name="flat")
    b.linear(z, _he(rng, (5, 4)), rng.normal(0, .1, 5), name="fc")
    g = b.build()
    return convert(g, clip((1, size, size), source), threshold=threshold), g


def tiny_linear(seed=2, threshold=0.05):
    """64 -> 8 linear readout only (what the harness stand-in implements)."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder((64,), name="tiny-linear")
    b.linear("input", rng.normal(0, .2, (8, 64)), rng.normal(0, .1, 8), name="fc")
    g = b.build()
    return convert(g, clip((64,)), threshold=threshold), g
