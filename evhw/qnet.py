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

from .errors import NetworkSpecError
from .ir import ACTIVATIONS, window_out
#: Widest accumulator: ``(a + bias) * M`` must fit int64, and the float64 kernels need sums below 2**53.
MAX_ACC_BITS = 48


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


# ----------------------------------------------------------------------------------------------
# proven accumulator bound and consistency checks

def accumulator_bound(terms: list[Term], tensors: dict) -> int:
    """Proven max ``|a|`` of an accumulator fed by ``terms``: ``sum |w| * R`` per output channel, with
    ``R = max|value| + span`` of each input tensor (a gate's untransmitted change is at most its
    threshold, at most ``span``). ``tensors`` maps names to :class:`QTensor`. Python ints (exact)."""
    bound = 0
    for t in terms:
        s = tensors[t.src]
        r = max(abs(int(s.lo)), abs(int(s.hi))) + s.span
        if t.kind in ("conv", "linear"):
            w = np.abs(np.asarray(t.weight, np.int64)).reshape(t.weight.shape[0], -1).sum(axis=1)
        elif t.kind == "sumpool":
            w = np.array([t.attrs["kernel"][0] * t.attrs["kernel"][1]])
        else:
            w = np.abs(np.asarray(t.weight, np.int64))
        bound = np.asarray(bound, dtype=object) + w.astype(object) * r
    return int(np.max(bound)) if np.size(bound) else 0


def acc_bits_needed(bound: int) -> int:
    """Two's-complement bits that hold every value in ``-bound..bound``."""
    return int(bound).bit_length() + 1


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _fail(where, field_, problem):
    raise NetworkSpecError(f"{where}: field {field_!r}: {problem}")


def _int_array(v, where, field_, shape):
    if not isinstance(v, np.ndarray) or v.dtype.kind not in "iu" or v.shape != shape:
        got = f"{v.dtype}{v.shape}" if isinstance(v, np.ndarray) else type(v).__name__
        _fail(where, field_, f"must be an integer array of shape {shape}, not {got}")


def _window_shape(src_shape, where, field_, kernel, stride, pads, dilation=(1, 1), channels=None):
    if len(src_shape) != 3:
        _fail(where, field_, f"needs a (C, H, W) input, not shape {src_shape}")
    try:
        (kh, kw), (sh, sw), (dh, dw) = (tuple(int(x) for x in v) for v in (kernel, stride, dilation))
        pt, pl, pb, pr = (int(x) for x in pads)
    except (TypeError, ValueError):
        _fail(where, field_, "kernel/stride/pads/dilation are malformed")
    if min(kh, kw, sh, sw, dh, dw) < 1 or min(pt, pl, pb, pr) < 0:
        _fail(where, field_, "kernel/stride/dilation must be >= 1 and pads >= 0")
    oh, ow = window_out(src_shape[1], kh, sh, pt, pb, dh), window_out(src_shape[2], kw, sw, pl, pr, dw)
    return (src_shape[0] if channels is None else channels, oh, ow)


def _term_shape(t: Term, src: QTensor, where) -> tuple:
    """The accumulator shape a term produces from its source tensor."""
    a = t.attrs
    if t.kind == "conv":
        w = t.weight
        if not isinstance(w, np.ndarray) or w.ndim != 4 or w.dtype.kind not in "iu":
            _fail(where, "weight", "a conv weight must be an integer (O, C/g, kh, kw) array")
        g = a.get("groups")
        if not _is_int(g) or g < 1 or w.shape[0] % g or w.shape[1] * g != src.shape[0]:
            _fail(where, "groups", f"groups {g!r} and weight shape {w.shape} do not fit input shape {src.shape}")
        if tuple(a.get("kernel", ())) != w.shape[2:]:
            _fail(where, "kernel", f"{a.get('kernel')!r} differs from the weight's {w.shape[2:]}")
        if "pad_value" in a:
            _int_array(a["pad_value"], where, "pad_value", (src.shape[0],))
        return _window_shape(src.shape, where, "attrs", w.shape[2:], a.get("stride"), a.get("pads"),
                             a.get("dilation"), channels=w.shape[0])
    if t.kind == "linear":
        w = t.weight
        if not isinstance(w, np.ndarray) or w.ndim != 2 or w.dtype.kind not in "iu" or (w.shape[1],) != src.shape:
            _fail(where, "weight", f"a linear weight must be an integer (O, {src.shape}) array")
        return (w.shape[0],)
    if t.kind == "sumpool":
        return _window_shape(src.shape, where, "attrs", a.get("kernel"), a.get("stride"), a.get("pads"),
                             a.get("dilation", (1, 1)))
    if t.kind == "scale":
        _int_array(t.weight, where, "weight", (src.shape[0],))
        return tuple(src.shape)
    _fail(where, "kind", f"unknown term kind {t.kind!r}")


def _view_shape(v: QView, srcs: list, where) -> tuple:
    shapes = [tuple(s.shape) for s in srcs]
    if v.kind == "concat" and srcs and all(len(s) == 3 and s[1:] == shapes[0][1:] for s in shapes):
        return (sum(s[0] for s in shapes),) + shapes[0][1:]
    if v.kind == "upsample" and len(srcs) == 1 and len(shapes[0]) == 3:
        try:
            fh, fw = (int(x) for x in v.attrs.get("scale"))
        except (TypeError, ValueError):
            _fail(where, "attrs", "scale must be a pair of integers")
        return (shapes[0][0], shapes[0][1] * fh, shapes[0][2] * fw)
    if v.kind == "flatten" and len(srcs) == 1:
        return (int(np.prod(shapes[0])),)
    _fail(where, "kind", f"{v.kind!r} view of inputs with shapes {shapes} is not valid")


def _check_tensor(t: QTensor, shape, where):
    if tuple(t.shape) != tuple(shape):
        _fail(where, "out.shape", f"{tuple(t.shape)} does not match the computed shape {tuple(shape)}")
    if not isinstance(t.scale, np.ndarray) or t.scale.shape not in ((t.channels,), (1,)) or \
            not np.all(np.isfinite(t.scale)) or not np.all(t.scale > 0):
        _fail(where, "scale", f"must be positive finite scales, one per channel ({t.channels})")
    if not _is_int(t.lo) or not _is_int(t.hi) or t.lo > t.hi:
        _fail(where, "lo/hi", f"integer range {t.lo!r}..{t.hi!r} is not valid")


def validate(q: QNet) -> None:
    """Check that a QNet's fields agree with each other, as :func:`evhw.convert.convert` makes them:
    shapes follow from the terms, activations are known, accumulator widths hold the proven bound,
    thresholds fit their gates. Raises :class:`NetworkSpecError` naming the layer and the field."""
    tin = q.input
    if len(tin.shape) not in (1, 3) or tin.lo != 0 or tin.hi != 255:
        _fail("input", "shape/lo/hi", f"the input must be 0..255 pixels of shape (F,) or (C, H, W), not "
                                      f"{tin.lo}..{tin.hi} of shape {tin.shape}")
    _check_tensor(tin, tin.shape, "input")
    tensors = {tin.name: tin}
    read = set()
    for s in q.steps:
        where = f"{'layer' if isinstance(s, QLayer) else 'view'} {s.name!r}"
        if s.out.name != s.name or s.name in tensors:
            _fail(where, "name", "names a step twice or differs from its output tensor")
        if isinstance(s, QView):
            if not all(x in tensors for x in s.srcs):
                _fail(where, "srcs", f"reads {s.srcs}, not all computed before it")
            read.update(s.srcs)
            _check_tensor(s.out, _view_shape(s, [tensors[x] for x in s.srcs], where), where)
            tensors[s.name] = s.out
            continue
        if not s.terms:
            _fail(where, "terms", "a layer needs at least one term")
        for i, t in enumerate(s.terms):
            if t.src not in tensors:
                _fail(f"{where} term {i}", "src", f"reads {t.src!r}, which is not computed before it")
        shapes = {_term_shape(t, tensors[t.src], f"{where} term {i}") for i, t in enumerate(s.terms)}
        read.update(t.src for t in s.terms)
        if shapes != {tuple(s.acc_shape)}:
            _fail(where, "acc_shape", f"{tuple(s.acc_shape)} does not match its terms' output shape "
                                      f"{' / '.join(map(str, sorted(shapes)))}")
        c = s.acc_shape[0]
        _int_array(s.bias, where, "bias", (c,))
        if s.act not in ACTIVATIONS:
            _fail(where, "act", f"unknown activation {s.act!r}; known: {', '.join(ACTIVATIONS)}")
        if (s.mult is None) != (s.shift is None):
            _fail(where, "mult/shift", "both or neither must be set")
        if s.mult is not None:
            _int_array(s.mult, where, "mult", (c,))
            _int_array(s.shift, where, "shift", (c,))
            if np.any(s.mult <= 0) or np.any(s.shift < 0) or np.any(s.shift > 62):
                _fail(where, "mult/shift", "need mult > 0 and shift in 0..62")
        elif s.act != "none" or s.pools:
            _fail(where, "mult", "a layer without requantization (a readout) has no activation or pool")
        if s.act == "relu6" and not _is_int(s.act_hi):
            _fail(where, "act_hi", f"relu6 needs an integer clip level, not {s.act_hi!r}")
        if s.act == "leaky" and not (_is_int(s.leaky_num) and _is_int(s.leaky_shift)
                                     and 0 <= s.leaky_shift <= 62):
            _fail(where, "leaky_num/leaky_shift", "leaky needs an integer slope num / 2**shift")
        if s.act == "prelu":
            _int_array(s.leaky_num, where, "leaky_num", (c,))
            if not (_is_int(s.leaky_shift) and 0 <= s.leaky_shift <= 62):
                _fail(where, "leaky_shift", "prelu needs integer slopes num_c / 2**shift")
        if s.act == "clip":
            for name, level in (("act_lo", s.act_lo), ("act_hi", s.act_hi)):
                if level is not None and not _is_int(level):
                    _fail(where, name, f"clip levels are integers or null, not {level!r}")
            if s.act_lo is not None and s.act_hi is not None and s.act_lo > s.act_hi:
                _fail(where, "act_lo/act_hi", f"clip range {s.act_lo}..{s.act_hi} is empty")
        out_shape = tuple(s.acc_shape)
        for p in s.pools:
            out_shape = _window_shape(out_shape, where, "pools", p.get("kernel"), p.get("stride"), p.get("pads"),
                                      p.get("dilation", (1, 1)))
        _check_tensor(s.out, out_shape, where)
        bound = accumulator_bound(s.terms, tensors)
        if s.acc_bound != bound:
            _fail(where, "acc_bound", f"{s.acc_bound!r} is not the proven bound {bound} of its terms")
        need = acc_bits_needed(bound)
        if not _is_int(s.acc_bits) or not need <= s.acc_bits <= MAX_ACC_BITS:
            _fail(where, "acc_bits", f"{s.acc_bits!r} bits cannot hold the accumulator: it needs {need} "
                                     f"(|a| can reach {bound}), at most {MAX_ACC_BITS}")
        tensors[s.name] = s.out
    for s in q.layers():
        if s.name in read and not s.gated:
            _fail(f"layer {s.name!r}", "gated", "a layer that other steps read must be gated")
    for o in q.outputs:
        if o not in tensors:
            _fail("network", "output", f"{o!r} is not a tensor")
    gates = q.gates()
    if set(q.thresholds) != set(gates):
        _fail("network", "thresholds", f"gates {sorted(q.thresholds)} differ from the network's {sorted(gates)}")
    for g in gates:
        t = tensors[g]
        h = q.thresholds[g]
        if not isinstance(h, np.ndarray) or h.dtype.kind not in "iu" or h.shape not in ((t.channels,), (1,), ()) \
                or np.any(h < 0) or np.any(h > t.span):
            _fail(f"gate {g!r}", "thresholds", f"must be integers in 0..{t.span}, one per channel ({t.channels})")
