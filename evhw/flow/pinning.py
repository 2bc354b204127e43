"""Hardware widths that depend on a network's structure only, so that networks of one structure
with different weights, biases and thresholds generate the same Verilog (apart from the memory
images) and share one compiled simulator (``evhw soak --structures``).

``rtl_gen.plan.HwPlan`` derives some widths from values: the accumulator width from the proven
bound of the drawn weights (``acc_bits``), the bias field from the largest bias, the readout's
output width from its bound plus its largest bias; a relu6 clip level (``act_hi``) and the input
thresholds are constants of the Verilog. :func:`pin_widths` rewrites a :class:`evhw.qnet.QNet` so
all of them follow from the structure:

* every layer's ``acc_bits`` is :func:`structural_acc_bits`: the bound any weights of the
  structure's quantization could reach (all weights at their largest magnitude);
* the readout's value range is ``±(2**W - 1)`` (``W`` that width): wider than its proven range, so
  no value changes;
* a relu6 clip level above the layer's largest value is that value (the clamp to ``hi`` that
  follows makes them the same function);
* biases are clipped to ``W - 1`` signed bits and the readout's channel 0 gets a bias of exactly
  ``W - 1`` signed bits;
* requantization shifts lie in ``SHIFTS`` (:data:`SHIFT_BITS` bits exactly): a larger shift ``s``
  becomes the largest with the multiplier rounded to ``M / 2**(s - max)`` (about the same factor), and
  when every shift is below the range the largest one is raised to its bottom (that channel's
  factor shrinks). The last two change the network a little; it is as random as before, and the
  hardware must match the golden model on it like on any other.

:func:`build_net` is the network the hardware is generated from: thresholds zero (the testbench
writes the run's thresholds before the first frame, so the reset values never count).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..convert import ADD_FRAC_BITS
from ..qnet import QNet, acc_bits_needed, validate


#: bits of every pinned requantization shift (shifts from 2**(SHIFT_BITS-1) to 2**SHIFT_BITS - 1)
SHIFT_BITS = 5
SHIFTS = (1 << (SHIFT_BITS - 1), (1 << SHIFT_BITS) - 1)


def _pin_shifts(layers):
    """Requantized layers' (mult, shift) with every shift <= SHIFTS[1] and the largest >= SHIFTS[0]."""
    lo, hi = SHIFTS
    out = []
    for s in layers:
        if s.mult is not None:
            mult, shift = np.asarray(s.mult, np.int64).copy(), np.asarray(s.shift, np.int64).copy()
            over = shift > hi
            mult[over] = np.maximum(1, np.rint(mult[over] / np.exp2(shift[over] - hi))).astype(np.int64)
            shift[over] = hi
            s = dataclasses.replace(s, mult=mult, shift=shift)
        out.append(s)
    req = [i for i, s in enumerate(out) if s.mult is not None]
    if req and max(int(out[i].shift.max()) for i in req) < lo:
        i = max(req, key=lambda i: int(out[i].shift.max()))
        shift = out[i].shift.copy()
        shift[int(np.argmax(shift))] = lo
        out[i] = dataclasses.replace(out[i], shift=shift)
    return out


def _term_cap(t, weight_bits):
    """Largest ``sum |w|`` of one output of term ``t`` over any weights of its structure."""
    if t.kind in ("conv", "linear"):
        return int(np.prod(t.weight.shape[1:])) * ((1 << (weight_bits - 1)) - 1)
    if t.kind == "sumpool":
        return int(t.attrs["kernel"][0] * t.attrs["kernel"][1])
    return max(1 << ADD_FRAC_BITS, int(np.abs(t.weight).max(initial=0)))     # scale: add / affine operands


def structural_acc_bits(q: QNet) -> int:
    """Accumulator bits that hold every layer of ``q`` whatever its weights (and its own proven need)."""
    tensors = q.tensors()
    need = 2
    for s in q.layers():
        bound = 0
        for t in s.terms:
            src = tensors[t.src]
            bound += _term_cap(t, q.weight_bits) * (max(abs(int(src.lo)), abs(int(src.hi))) + src.span)
        need = max(need, acc_bits_needed(bound), int(s.acc_bits))
    return need


def pin_widths(q: QNet, rng) -> QNet:
    """A copy of ``q`` whose hardware widths follow from its structure (see the module); ``rng``
    draws the readout's wide bias."""
    W = structural_acc_bits(q)
    out = q.output
    lim = 1 << (W - 2)
    steps = []
    for s in q.steps:
        if not hasattr(s, "acc_bits"):
            steps.append(s)
            continue
        s = dataclasses.replace(s, acc_bits=W, bias=np.clip(np.asarray(s.bias, np.int64), -lim, lim - 1))
        if s.act == "relu6" and s.act_hi is not None and s.act_hi > s.out.hi:
            s = dataclasses.replace(s, act_hi=int(s.out.hi))
        if s.name == out and s.mult is None:
            bias = s.bias.copy()
            k = int(rng.integers(lim >> 1, lim))
            bias[0] = k if rng.random() < .5 else -k - 1             # exactly W - 1 signed bits
            hi = (1 << W) - 1
            s = dataclasses.replace(s, bias=bias, out=dataclasses.replace(s.out, lo=-hi, hi=hi))
        steps.append(s)
    pinned = iter(_pin_shifts([s for s in steps if hasattr(s, "acc_bits")]))
    steps = [next(pinned) if hasattr(s, "acc_bits") else s for s in steps]
    p = dataclasses.replace(q, steps=steps)
    validate(p)
    return p


def build_net(q: QNet) -> QNet:
    """``q`` with every threshold zero: what the hardware is generated from."""
    return dataclasses.replace(q, thresholds={g: np.zeros_like(np.asarray(h, np.int64)) for g, h in
                                              q.thresholds.items()})
