"""Hand-built QNets whose every integer is chosen by the test (no converter, no calibration).

``passthrough(shape)``: input -> layer ``id`` (identity: scale term 1, requant M = 2**14, S = 14,
so ``v = (x * 2**14 + 2**13) >> 14 = x``, range 0..255, gated) -> readout ``out`` (scale term 1,
``a + 0``). With the other gate at threshold 0 the readout equals the value transmitted by the
gate under test, so a test reads what a gate sent straight from the output.
"""
from __future__ import annotations

import numpy as np

from evhw.qnet import QLayer, QNet, QTensor, Term


def _layer(name, src, shape, *, readout):
    c = shape[0]
    bound = 1 * (255 + 255)                       # sum |w| * (max|value| + span), docs/semantics.md §2
    scale = np.full(c, 1 / 255)
    lo, hi = (-bound, bound) if readout else (0, 255)
    return QLayer(name=name, terms=[Term("scale", src, np.ones(c, np.int64), {})], acc_shape=tuple(shape),
                  acc_bits=bound.bit_length() + 1, acc_bound=bound, acc_scale=scale, bias=np.zeros(c, np.int64),
                  mult=None if readout else np.full(c, 1 << 14, np.int64),
                  shift=None if readout else np.full(c, 14, np.int64), act="none", act_hi=None, leaky_num=None,
                  leaky_shift=None, pools=[], out=QTensor(name, tuple(shape), scale, lo, hi), gated=not readout,
                  bn_gamma=None, float_node=name)


def passthrough(shape):
    shape = tuple(shape)
    tin = QTensor("input", shape, np.full(shape[0], 1 / 255), 0, 255)
    steps = [_layer("id", "input", shape, readout=False), _layer("out", "id", shape, readout=True)]
    c = shape[0]
    q = QNet(name="passthrough", input=tin, steps=steps, output="out", weight_bits=2, act_bits=8)
    q.thresholds = {"input": np.zeros(c, np.int64), "id": np.zeros(c, np.int64)}
    return q


def thresholds(q, gate, h):
    """Per-channel thresholds ``h`` on ``gate``, 0 on every other gate."""
    th = {g: np.zeros(q.tensors()[g].channels, np.int64) for g in q.gates()}
    th[gate] = np.broadcast_to(np.asarray(h, np.int64), th[gate].shape).copy()
    return th
