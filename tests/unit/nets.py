"""Tiny converted networks for the gateware unit tests (seeded)."""
from __future__ import annotations

import functools

import numpy as np

from evhw.convert import convert
from evhw.ir import GraphBuilder


@functools.lru_cache(maxsize=None)
def tiny_mlp(seed=0):
    rng = np.random.default_rng(seed)
    b = GraphBuilder((16,), name="tmlp")
    x = b.op("relu", b.linear("input", rng.normal(0, .4, (8, 16)), rng.normal(0, .1, 8)))
    b.linear(x, rng.normal(0, .5, (4, 8)), rng.normal(0, .1, 4))
    return convert(b.build(), rng.integers(0, 256, (8, 16)))


@functools.lru_cache(maxsize=None)
def tiny_cnn(seed=0, channels=3):
    rng = np.random.default_rng(seed)
    c = channels
    b = GraphBuilder((1, 8, 8), name="tcnn")
    x = b.conv("input", rng.normal(0, .5, (c, 1, 3, 3)), rng.normal(0, .1, c), padding=1)
    x = b.op("maxpool", b.op("relu", x), kernel=2, stride=2)
    y = b.op("relu", b.conv(x, rng.normal(0, .3, (c, c, 3, 3)), None, padding=1))
    z = b.op("relu", b.op("add", x, y))
    f = b.op("flatten", b.op("globalavgpool", z))
    b.linear(f, rng.normal(0, .5, (3, c)), rng.normal(0, .1, 3))
    return convert(b.build(), rng.integers(0, 256, (8, 1, 8, 8)))


@functools.lru_cache(maxsize=None)
def tiny_acts(seed=0):
    """Strided conv + ReLU6, conv + LeakyReLU + max-pool, a conv readout (spatial output)."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder((1, 8, 8), name="tacts")
    x = b.op("relu6", b.conv("input", rng.normal(0, .5, (2, 1, 3, 3)), rng.normal(0, .1, 2), padding=1, stride=2))
    y = b.op("leakyrelu", b.conv(x, rng.normal(0, .4, (3, 2, 3, 3)), rng.normal(0, .3, 3), padding=1), alpha=0.1)
    y = b.op("maxpool", y, kernel=2, stride=2)
    b.conv(y, rng.normal(0, .5, (2, 3, 1, 1)), rng.normal(0, .1, 2))
    return convert(b.build(), rng.integers(0, 256, (8, 1, 8, 8)))
