"""Random small networks of the hardware v1 feature set (seeded): the one generator behind ``evhw soak``
and the randomized hardware tests.

:func:`random_hw_graph` draws a float graph of one of :data:`NET_KINDS` from two seeds: the
*structure* seed chooses everything that shapes the hardware (input shape, layer sequence, widths,
kernels, strides, paddings, pools, activations and their slopes, which biases exist); the *params*
seed (default: the structure seed) chooses the values (weights, biases, batch-norm statistics,
affine factors). So one structure drawn with many params seeds gives networks of one topology with
different numbers.

* ``cnn``: a stem conv (kernels 1x1, 3x3, 1x3, 3x1; stride 1 or 2; zero or "same" padding; with or
  without bias and folded batch norm) then one to three blocks: conv, residual block (conv, add),
  max-pool 2 (once or twice), average pool (2/2, 2/1, 3/1 padded), per-channel affine (a standalone
  ``scale`` layer); readout: global average pool + flatten + linear, flatten + linear, a conv, or a
  hidden linear layer first. Activations none / relu / relu6 / leaky anywhere a layer ends.
* ``mlp``: one or two hidden linear layers (optional folded batch norm, any activation), linear readout;
* ``linear``: one linear readout of the input (flat, or an image through ``flatten``).

Every graph is one :meth:`rtl_gen.plan.HwPlan.from_qnet` accepts once converted (tests check it).
"""
from __future__ import annotations

import numpy as np

from ..ir import GraphBuilder

NET_KINDS = ("cnn", "mlp", "linear")
#: activations a layer may end with (the IR op; None = no activation)
ACTS = (None, "relu", "relu6", "leakyrelu")
#: leaky slopes drawn (structure: the slope is a constant of the hardware)
LEAKY_ALPHAS = (0.1, 0.125, 0.25)
#: flat input sizes: squares, so that video frames (resized to sqrt(F) x sqrt(F)) fill them
FLAT_INPUTS = (16, 36, 64)
#: image input channels: gray or colour, what real clips provide
CHANNELS = (1, 3)
#: image input sizes
SIZES = (4, 5, 6, 8)
#: conv kernels (kh, kw)
KERNELS = ((1, 1), (3, 3), (3, 3), (1, 3), (3, 1))
#: the IR ops the generator uses, every one over enough seeds (tests check the union)
HW_OPS = ("conv", "linear", "batchnorm", "affine", "relu", "relu6", "leakyrelu", "maxpool", "avgpool",
          "globalavgpool", "add", "flatten")


class _Draw:
    """The graph being drawn: a builder, the structure rng ``s``, the values rng ``w``, shapes known."""

    def __init__(self, shape, name, s, w):
        self.b = GraphBuilder(shape, name=name)
        self.s, self.w = s, w
        self.shapes = {"input": tuple(shape)}

    def add(self, x, method, *args, **kw):
        name = getattr(self.b, method)(x, *args, **kw)
        self.shapes[name] = self.b.build(name).node(name).shape
        return name

    def op(self, op, *inputs, **attrs):
        name = self.b.op(op, *inputs, **attrs)
        self.shapes[name] = self.b.build(name).node(name).shape
        return name

    def act(self, x, acts=ACTS):
        a = acts[int(self.s.integers(len(acts)))]
        if a is None:
            return x
        return self.op(a, x, **({"alpha": float(self.s.choice(LEAKY_ALPHAS))} if a == "leakyrelu" else {}))

    def weight(self, shape, gain=1.0):
        return self.w.normal(0.0, gain * np.sqrt(2.0 / int(np.prod(shape[1:]))), shape)

    def bias(self, n, p=0.7):
        has = self.s.random() < p                 # structure: whether the bias exists
        v = self.w.normal(0, .1, n)
        return v if has else None

    def bn(self, x, c, p):
        if self.s.random() >= p:
            return x
        w = self.w
        return self.add(x, "batchnorm", w.uniform(.6, 1.4, c), w.normal(0, .1, c), w.normal(0, .1, c),
                        w.uniform(.5, 1.5, c))

    def conv(self, x, cout, kernel, stride=1, same=True):
        cin, h, wd = self.shapes[x]
        kh, kw = kernel
        pads = (kh // 2, kw // 2, kh // 2, kw // 2) if same else (0, 0, 0, 0)
        if not same and (h < kh or wd < kw):
            pads = (kh // 2, kw // 2, kh // 2, kw // 2)
        pad = (pads[0], pads[1]) if pads[0] != pads[1] else pads[0]
        return self.add(x, "conv", self.weight((cout, cin, kh, kw), float(self.s.uniform(.6, 1.4))),
                        self.bias(cout), stride=stride, padding=pad)


def _even(shape, k=2):
    return shape[1] % k == 0 and shape[2] % k == 0 and shape[1] >= k and shape[2] >= k


def _cnn(d: _Draw):
    s = d.s
    c = int(s.integers(1, 6))
    x = d.conv("input", c, KERNELS[int(s.integers(len(KERNELS)))], stride=int(s.choice([1, 1, 2])),
               same=s.random() < .8)
    x = d.act(d.bn(x, c, .3))
    for _ in range(int(s.integers(1, 4))):
        shape = d.shapes[x]
        block = str(s.choice(["conv", "res", "res", "maxpool", "avgpool", "affine"]))
        if block == "conv":
            c = int(s.integers(1, 6))
            x = d.act(d.bn(d.conv(x, c, KERNELS[int(s.integers(len(KERNELS)))],
                                  stride=int(s.choice([1, 1, 2])), same=s.random() < .7), c, .3))
        elif block == "res":
            k = (3, 3) if s.random() < .7 else (1, 1)
            y = d.act(d.conv(x, c, k), (None, "relu", "leakyrelu"))
            x = d.act(d.op("add", x, y), (None, "relu", "relu", "relu6"))
        elif block == "maxpool" and _even(shape):
            x = d.op("maxpool", x, kernel=2, stride=2)
            if _even(d.shapes[x]) and s.random() < .3:          # two pools: one 4x4 window
                x = d.op("maxpool", x, kernel=2, stride=2)
        elif block == "avgpool":
            kind = int(s.integers(3))
            if kind == 0 and _even(shape):
                x = d.op("avgpool", x, kernel=2, stride=2)
            elif kind == 1 and min(shape[1:]) >= 2:
                x = d.op("avgpool", x, kernel=2, stride=1)
            else:
                x = d.op("avgpool", x, kernel=3, stride=1, padding=1)
            x = d.act(x)
        elif block == "affine":
            sign = np.where(s.random(c) < .2, -1, 1)            # structure: a sign sets the operand width
            mul = d.w.uniform(.5, 1.5, c) * sign
            x = d.act(d.add(x, "affine", mul, d.w.normal(0, .1, c)))
    return _readout(d, x)


def _readout(d: _Draw, x):
    s = d.s
    c, h, w = d.shapes[x]
    kind = int(s.integers(4))
    if kind == 1 and c * h * w <= 64:
        f = d.op("flatten", x)
    elif kind == 2:
        k = (3, 3) if s.random() < .5 else (1, 1)
        return d.conv(x, int(s.integers(1, 4)), k)
    else:
        f = d.op("flatten", d.op("globalavgpool", x))
    n = d.shapes[f][0]
    if kind == 3:                                            # a hidden linear layer first
        hdim = int(s.integers(2, 9))
        f = d.act(d.add(f, "linear", d.weight((hdim, n)), d.bias(hdim)))
        n = hdim
    o = int(s.integers(1, 6))
    return d.add(f, "linear", d.weight((o, n)), d.bias(o, .8))


def _mlp(d: _Draw):
    s = d.s
    x = "input"
    f = d.shapes[x][0]
    for _ in range(int(s.integers(1, 3))):
        h = int(s.integers(2, 17))
        x = d.act(d.bn(d.add(x, "linear", d.weight((h, f)), d.bias(h)), h, .3))
        f = h
    o = int(s.integers(1, 9))
    return d.add(x, "linear", d.weight((o, f)), d.bias(o))


def _linear(d: _Draw):
    x = "input"
    if len(d.shapes[x]) == 3:
        x = d.op("flatten", x)
    f = d.shapes[x][0]
    o = int(d.s.integers(1, 9))
    return d.add(x, "linear", d.weight((o, f), .5), d.bias(o, .9))


def _input_shape(s, kind):
    if kind == "cnn" or (kind == "linear" and s.random() < .3):
        size = int(s.choice(SIZES)) if kind == "cnn" else 4
        return (int(s.choice(CHANNELS)), size, size)
    return (int(s.choice(FLAT_INPUTS)),)


def random_hw_graph(seed, kind="cnn", *, params=None):
    """A random float graph (:class:`evhw.ir.Graph`) of ``kind`` (one of :data:`NET_KINDS`): its
    structure from ``seed``, its weights and biases from ``params`` (default: ``seed``)."""
    if kind not in NET_KINDS:
        raise ValueError(f"network kind must be one of {', '.join(NET_KINDS)}, not {kind!r}")
    s = np.random.default_rng([int(seed), 0])
    w = np.random.default_rng([int(seed if params is None else params), 1])
    d = _Draw(_input_shape(s, kind), f"soak-{kind}{seed}", s, w)
    out = {"cnn": _cnn, "mlp": _mlp, "linear": _linear}[kind](d)
    return d.b.build(out)
