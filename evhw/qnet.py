"""The converted, quantized EvNet: what the golden model executes and the hardware implements.

A :class:`QNet` is a list of steps in topological order:

* the **input** tensor: raw integer pixels, behind the input gate;
* :class:`QView` -- pure routing of values and deltas (concat, nearest upsample, flatten);
* :class:`QLayer` -- an *accumulator* fed by one or more linear :class:`Term` s, a *value function*
  ``v = maxpool(clamp(act(requant(a + bias))))`` and, unless nothing reads it, a *gate*.

All numbers are plain Python ints / int64 arrays except the float scales, which only say what an
integer means (``real = scale[c] * q``) and are never used by the integer arithmetic.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class QTensor:
    name: str
    shape: tuple
    scale: np.ndarray          # per channel (C,) or per feature (F,), float64
    lo: int                    # integer value range
    hi: int

    @property
    def channels(self):
        return self.shape[0]

    @property
    def bits(self):
        """Bits of a value (two's complement if lo < 0)."""
        if self.lo >= 0:
            return max(int(self.hi).bit_length(), 1)
        return max(int(self.hi).bit_length(), int(-self.lo - 1).bit_length()) + 1

    @property
    def span(self):
        """Largest change of a value: the largest threshold the accumulator bound allows."""
        return int(self.hi - self.lo)

    @property
    def delta_bits(self):
        """Bits of the untransmitted change ``d`` (|d| <= 2 * span) and so of a delta message."""
        return (2 * self.span).bit_length() + 1


@dataclass
class Term:
    """One linear contribution to an accumulator, applied to the deltas (or values) of ``src``.

    kind: ``conv`` (weight (O, C/g, kh, kw)), ``linear`` (weight (O, F)), ``sumpool`` (per-channel
    window sum, no weight), ``scale`` (element-wise integer multiplier ``weight`` (C,)).
    attrs: stride, pads (t, l, b, r), dilation, groups, kernel; ``pad_value`` (per input channel)
    for a first conv with a folded input normalization.
    """

    kind: str
    src: str
    weight: np.ndarray | None = None
    attrs: dict = field(default_factory=dict)

    @property
    def is_mac(self):
        """Conv and dense terms are the headline MACs; pooling and add terms are overhead."""
        return self.kind in ("conv", "linear")


#: Width of a requantization multiplier ``QLayer.mult``: M lies in [2**(MULT_BITS-1), 2**MULT_BITS).
MULT_BITS = 15


@dataclass
class QLayer:
    name: str
    terms: list[Term]
    acc_shape: tuple
    acc_bits: int
    acc_bound: int                  # proven max |a| under the non-memory-loss policies
    acc_scale: np.ndarray           # real = acc_scale[c] * (a + bias)
    bias: np.ndarray                # int64 (C,), added after the accumulator
    mult: np.ndarray | None         # int64 (C,); None = read a + bias directly (output readout)
    shift: np.ndarray | None        # int64 (C,)
    act: str                        # one of evhw.ir.ACTIVATIONS: none | relu | relu6 | leaky | prelu | clip
    act_hi: int | None              # relu6 / clip upper level (clip: None = no upper level)
    leaky_num: int | np.ndarray | None  # leaky: int; prelu: int64 (C,) per channel: v < 0 -> (v * num) >> shift
    leaky_shift: int | None
    pools: list[dict]               # max-pools on the value buffer: kernel, stride, pads, dilation
    out: QTensor
    gated: bool
    bn_gamma: np.ndarray | None     # |gamma| of the folded BatchNorm, for threshold scaling
    float_node: str                 # float graph node whose output this layer's value approximates
    act_lo: int | None = None       # clip lower level (None = no lower level)


@dataclass
class QView:
    name: str
    kind: str                       # concat | upsample | flatten
    srcs: list[str]
    attrs: dict
    out: QTensor
    float_node: str


@dataclass
class QNet:
    name: str
    input: QTensor
    steps: list                     # QView | QLayer, topological
    output: str                     # tensor name read densely every frame (the first output)
    weight_bits: int
    act_bits: int
    input_mean: tuple | None = None
    input_std: tuple | None = None
    default_threshold: float = 0.0
    default_input_threshold: float | None = None
    bn_scale: bool = False
    thresholds: dict = field(default_factory=dict)   # gate name -> int64 per-channel thresholds
    meta: dict = field(default_factory=dict)
    extra_outputs: list = field(default_factory=list)  # further outputs' tensor names, in order
    output_ops: list = field(default_factory=list)     # per output: a host op (evhw.ir.HOST_OPS) or None

    @property
    def outputs(self) -> list[str]:
        """Tensor names of every output, in order (each read densely every frame)."""
        return [self.output] + list(self.extra_outputs)

    def output_op(self, i):
        """The host op applied after the readout of output ``i`` (None: the readout is the result)."""
        return self.output_ops[i] if i < len(self.output_ops) else None

    def tensors(self) -> dict:
        t = {self.input.name: self.input}
        for s in self.steps:
            t[s.out.name] = s.out
        return t

    def layers(self) -> list[QLayer]:
        return [s for s in self.steps if isinstance(s, QLayer)]

    def gates(self) -> list[str]:
        """Names of gated tensors: the input and every gated layer."""
        return [self.input.name] + [s.name for s in self.layers() if s.gated]

    def layer(self, name) -> QLayer:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)
