"""Random small networks of the hardware v1 feature set (seeded): for ``evhw soak`` and the tests.

:func:`random_hw_graph` draws a float graph of one of :data:`NET_KINDS`:

* ``cnn``: conv k1/k3 (stride 1 or 2), ReLU / ReLU6 / LeakyReLU, optional max-pool 2, optional
  residual block (conv 3x3 [+ ReLU], add, ReLU), then a global-average-pool + linear readout or a
  conv readout;
* ``mlp``: linear + activation layers (1 or 2 hidden), linear readout;
* ``linear``: one linear readout of the input (the smallest network).

Widths, shapes and weights are random; the same seed always gives the same graph.
"""
from __future__ import annotations

import numpy as np

from ..ir import GraphBuilder

NET_KINDS = ("cnn", "mlp", "linear")
_ACTS = ("relu", "relu6", "leakyrelu")
#: flat input sizes: squares, so that video frames (resized to sqrt(F) x sqrt(F)) fill them
FLAT_INPUTS = (16, 36, 64)
#: image input channels: gray or colour, what real clips provide
CHANNELS = (1, 3)


def _act(b, rng, x):
    act = str(rng.choice(_ACTS))
    return b.op(act, x, **({"alpha": float(rng.choice([0.1, 0.125]))} if act == "leakyrelu" else {}))


def _cnn(rng, name):
    cin = int(rng.choice(CHANNELS))
    size = int(rng.choice([4, 6, 8]))
    b = GraphBuilder((cin, size, size), name=name)
    c = int(rng.integers(1, 6))
    k = int(rng.choice([1, 3]))
    s = int(rng.choice([1, 2]))
    x = _act(b, rng, b.conv("input", rng.normal(0, .6, (c, cin, k, k)), rng.normal(0, .2, c), padding=k // 2,
                            stride=s))
    hw = -(-size // s) if k == 3 else (size - 1) // s + 1
    if hw % 2 == 0 and rng.random() < 0.5:
        x = b.op("maxpool", x, kernel=2, stride=2)
    if rng.random() < 0.6:                                   # residual block
        y = b.conv(x, rng.normal(0, .4, (c, c, 3, 3)), rng.normal(0, .1, c) if rng.random() < .5 else None, padding=1)
        if rng.random() < 0.5:
            y = b.op("relu", y)
        x = b.op("relu", b.op("add", x, y))
    if rng.random() < 0.5:
        c2 = int(rng.integers(1, 5))
        b.linear(b.op("flatten", b.op("globalavgpool", x)), rng.normal(0, .6, (c2, c)), rng.normal(0, .1, c2))
    else:
        k2 = int(rng.choice([1, 3]))
        c2 = int(rng.integers(1, 4))
        b.conv(x, rng.normal(0, .5, (c2, c, k2, k2)), rng.normal(0, .1, c2), padding=k2 // 2)
    return b.build()


def _he(rng, shape):
    return rng.normal(0.0, np.sqrt(2.0 / int(np.prod(shape[1:]))), shape)


def _mlp(rng, name):
    f = int(rng.choice(FLAT_INPUTS))
    b = GraphBuilder((f,), name=name)
    x = "input"
    for _ in range(int(rng.integers(1, 3))):
        h = int(rng.integers(2, 17))
        x = _act(b, rng, b.linear(x, _he(rng, (h, f)), rng.normal(0, .1, h)))
        f = h
    o = int(rng.integers(1, 9))
    b.linear(x, _he(rng, (o, f)), rng.normal(0, .1, o) if rng.random() < .7 else None)
    return b.build()


def _linear(rng, name):
    f = int(rng.choice(FLAT_INPUTS))
    o = int(rng.integers(1, 9))
    b = GraphBuilder((f,), name=name)
    b.linear("input", rng.normal(0, .2, (o, f)), rng.normal(0, .1, o))
    return b.build()


def random_hw_graph(seed, kind="cnn"):
    """A random float graph (:class:`evhw.ir.Graph`) of ``kind`` (one of :data:`NET_KINDS`) from ``seed``."""
    if kind not in NET_KINDS:
        raise ValueError(f"network kind must be one of {', '.join(NET_KINDS)}, not {kind!r}")
    rng = np.random.default_rng(seed)
    return {"cnn": _cnn, "mlp": _mlp, "linear": _linear}[kind](rng, f"soak-{kind}{seed}")
