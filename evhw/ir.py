"""Float network IR: a small, typed graph of frame-based CNN / MLP operations.

Frontends (ONNX, torch.fx, hand-built) produce a :class:`Graph`; :mod:`evhw.convert` quantizes it
into an EvNet. Tensors are single frames without a batch axis: ``(C, H, W)`` for images, ``(F,)``
for vectors. Nodes are kept in topological order; :meth:`Graph.infer_shapes` validates every
node and records its output shape.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from .errors import ShapeError, UnsupportedOpError

#: Operations the IR knows, with the attributes each takes (all others are rejected).
OPS = {
    "input": (),
    "conv": ("stride", "padding", "dilation", "groups"),     # params: weight (O, C/g, kh, kw), bias (O,)
    "linear": (),                                            # params: weight (O, F), bias (O,)
    "batchnorm": ("eps",),                                   # params: gamma, beta, mean, var (C,)
    "relu": (),
    "relu6": (),
    "leakyrelu": ("alpha",),
    "prelu": (),                                             # params: slope (C,) (per channel / feature)
    "clip": ("min", "max"),                                  # clamp to [min, max]; min may be -inf, max inf
    "maxpool": ("kernel", "stride", "padding", "dilation", "ceil_mode"),
    "avgpool": ("kernel", "stride", "padding"),              # counts padded taps (count_include_pad)
    "globalavgpool": (),                                     # (C, H, W) -> (C, 1, 1)
    "globalmaxpool": (),                                     # (C, H, W) -> (C, 1, 1)
    "affine": (),                                            # params: mul, add (C,): x * mul + add per channel
    "pad": ("pads",),                                        # zero padding (top, left, bottom, right)
    "flatten": (),                                           # (C, H, W) -> (C*H*W,), channel-major
    "add": (),
    "concat": (),                                            # along channels
    "upsample": ("scale",),                                  # nearest, integer factor
    "softmax": (),                                           # host ops: over axis 0 of a frame (channels or
    "logsoftmax": (),                                        # features), only as the last op of an output,
    "sigmoid": (),                                           # applied on the host after the readout
}

#: Value-domain element-wise or window operations, absorbed into the value function of the layer
#: before them. Pools commute with the activations only when those are monotone non-decreasing.
VALUE_OPS = ("relu", "relu6", "leakyrelu", "prelu", "clip", "maxpool", "globalmaxpool")

#: The one list of activation names a converted layer (``QLayer.act``) may carry, with the IR op
#: each comes from. ``none`` is the identity (or a readout); see docs/semantics.md for the integer rules.
ACTIVATIONS = ("none", "relu", "relu6", "leaky", "prelu", "clip")
ACT_OF_OP = {"relu": "relu", "relu6": "relu6", "leakyrelu": "leaky", "prelu": "prelu", "clip": "clip"}

#: Ops that may only end a network output: the readout is taken before them and they run on the host.
HOST_OPS = ("softmax", "logsoftmax", "sigmoid")


def pair(v, name="value"):
    """Normalize an int or a pair to a tuple of two non-negative ints."""
    if isinstance(v, (int, np.integer)):
        return (int(v), int(v))
    t = tuple(int(x) for x in v)
    if len(t) != 2:
        raise ShapeError(f"{name} must be an int or a pair, not {v!r}")
    return t


def pads4(v):
    """Padding as (top, left, bottom, right) from an int, a (ph, pw) pair or a 4-tuple."""
    if isinstance(v, (int, np.integer)):
        return (int(v),) * 4
    t = tuple(int(x) for x in v)
    if len(t) == 2:
        return (t[0], t[1], t[0], t[1])
    if len(t) == 4:
        return t
    raise ShapeError(f"padding must be an int, a pair or (top, left, bottom, right), not {v!r}")


def window_out(size, k, stride, pad_lo, pad_hi, dilation=1):
    """Output length of a sliding window (floor mode)."""
    span = dilation * (k - 1) + 1
    n = size + pad_lo + pad_hi - span
    if n < 0:
        return 0
    return n // stride + 1


def ceil_extra(size, k, stride, pad_lo, pad_hi, dilation=1):
    """Extra end padding that turns ceil-mode pooling into floor mode on a padded input.

    PyTorch / ONNX ceil mode: ``out = ceil((size + lo + hi - span) / stride) + 1``, minus one when the
    last window would start in the end padding. Max-pooling over ``-inf`` padding then equals it.
    """
    span = dilation * (k - 1) + 1
    n = size + pad_lo + pad_hi - span
    if n < 0:
        return 0
    out = -(-n // stride) + 1
    if (out - 1) * stride >= size + pad_lo:
        out -= 1
    return max(0, (out - 1) * stride + span - (size + pad_lo + pad_hi))


def pool_window(attrs, hw):
    """(kernel, stride, pads, dilation) of a max/avg pool on an ``hw`` input, ceil mode folded into pads."""
    k = pair(attrs["kernel"], "kernel")
    s = pair(attrs.get("stride", attrs["kernel"]), "stride")
    pt, pl, pb, pr = pads4(attrs.get("padding", 0))
    d = pair(attrs.get("dilation", 1), "dilation")
    if attrs.get("ceil_mode"):
        pb += ceil_extra(hw[0], k[0], s[0], pt, pb, d[0])
        pr += ceil_extra(hw[1], k[1], s[1], pl, pr, d[1])
    return k, s, (pt, pl, pb, pr), d


@dataclass
class Node:
    """One operation. ``inputs`` name earlier nodes; ``params`` hold float arrays (weights)."""

    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    attrs: dict = field(default_factory=dict)
    params: dict[str, np.ndarray] = field(default_factory=dict)
    shape: tuple | None = None   # output shape, set by infer_shapes
    source: str = ""             # where it came from (frontend node name), for error messages

    def where(self):
        return f"node {self.name!r}" + (f" (from {self.source})" if self.source and self.source != self.name else "")


@dataclass
class Graph:
    """A float network: nodes in topological order, one input, one or more outputs."""

    nodes: list[Node]
    output: str
    name: str = "net"
    #: Input normalization folded at conversion: value = (pixel/255 - mean) / std, per channel.
    input_mean: tuple | None = None
    input_std: tuple | None = None
    #: Outputs after the first, in order (detection heads...). ``outputs`` lists them all.
    extra_outputs: list = field(default_factory=list)

    def __post_init__(self):
        self.by_name = {}
        for n in self.nodes:
            if n.name in self.by_name:
                raise ShapeError(f"duplicate node name {n.name!r}")
            self.by_name[n.name] = n

    @property
    def input(self) -> Node:
        ins = [n for n in self.nodes if n.op == "input"]
        if len(ins) != 1:
            raise ShapeError(f"a network needs exactly one input, found {len(ins)}")
        return ins[0]

    @property
    def outputs(self) -> list[str]:
        return [self.output] + list(self.extra_outputs)

    def node(self, name) -> Node:
        return self.by_name[name]

    def consumers(self, name) -> list[Node]:
        return [n for n in self.nodes if name in n.inputs]

    def copy(self) -> "Graph":
        nodes = [dataclasses.replace(n, inputs=list(n.inputs), attrs=dict(n.attrs),
                                     params={k: np.array(v) for k, v in n.params.items()}) for n in self.nodes]
        return Graph(nodes, self.output, self.name, self.input_mean, self.input_std, list(self.extra_outputs))

    def infer_shapes(self) -> "Graph":
        """Validate every node and set ``node.shape``. Raises ShapeError / UnsupportedOpError."""
        seen = set()
        for n in self.nodes:
            if n.op not in OPS:
                raise UnsupportedOpError(f"unsupported op {n.op!r} at {n.where()}")
            for i in n.inputs:
                if i not in seen:
                    raise ShapeError(f"{n.where()} reads {i!r}, which is not computed before it")
            n.shape = _infer(self, n)
            seen.add(n.name)
        for out in self.outputs:
            if out not in seen:
                raise ShapeError(f"graph output {out!r} is not a node")
        if len(set(self.outputs)) != len(self.outputs):
            raise ShapeError(f"graph outputs {self.outputs} name a node twice")
        for n in self.nodes:
            if n.op in HOST_OPS:
                if n.name not in self.outputs:
                    raise UnsupportedOpError(f"{n.op} at {n.where()} is supported only as the last op of a "
                                             f"network output (applied on the host after the readout)")
                if self.consumers(n.name):
                    raise UnsupportedOpError(f"{n.op} at {n.where()} feeds other nodes; it may only end an output")
        return self

    def summary(self) -> str:
        return "\n".join(f"{n.name:24s} {n.op:14s} {str(n.shape):18s} <- {', '.join(n.inputs)}" for n in self.nodes)


def _need(n: Node, count):
    if len(n.inputs) != count and count is not None:
        raise ShapeError(f"{n.where()} ({n.op}) takes {count} input(s), got {len(n.inputs)}")


def _image(g: Graph, n: Node, i=0):
    s = g.node(n.inputs[i]).shape
    if len(s) != 3:
        raise ShapeError(f"{n.where()} ({n.op}) needs a (C, H, W) input, got shape {s}")
    return s


def _infer(g: Graph, n: Node):
    op, a = n.op, n.attrs
    if op == "input":
        _need(n, 0)
        s = tuple(int(x) for x in a["shape"])
        if len(s) not in (1, 3) or min(s) < 1:
            raise ShapeError(f"input shape must be (C, H, W) or (F,), not {s}")
        return s
    if op == "conv":
        _need(n, 1)
        c, h, w = _image(g, n)
        wt = n.params["weight"]
        groups = int(a.get("groups", 1))
        o, cg, kh, kw = wt.shape
        if c % groups or o % groups or cg != c // groups:
            raise ShapeError(f"{n.where()}: weight {wt.shape} with groups={groups} does not fit {c} input channels")
        sh, sw = pair(a.get("stride", 1), "stride")
        dh, dw = pair(a.get("dilation", 1), "dilation")
        pt, pl, pb, pr = pads4(a.get("padding", 0))
        oh, ow = window_out(h, kh, sh, pt, pb, dh), window_out(w, kw, sw, pl, pr, dw)
        if oh < 1 or ow < 1:
            raise ShapeError(f"{n.where()}: kernel {kh}x{kw} does not fit input {h}x{w}")
        if "bias" in n.params and n.params["bias"].shape != (o,):
            raise ShapeError(f"{n.where()}: bias shape {n.params['bias'].shape} != ({o},)")
        return (o, oh, ow)
    if op == "linear":
        _need(n, 1)
        s = g.node(n.inputs[0]).shape
        if len(s) != 1:
            raise ShapeError(f"{n.where()} (linear) needs a flat input, got shape {s}; add a flatten")
        o, f = n.params["weight"].shape
        if f != s[0]:
            raise ShapeError(f"{n.where()}: weight takes {f} features, input has {s[0]}")
        return (o,)
    if op == "batchnorm":
        _need(n, 1)
        s = g.node(n.inputs[0]).shape
        if n.params["gamma"].shape != (s[0],):
            raise ShapeError(f"{n.where()}: {n.params['gamma'].shape[0]} BatchNorm channels, input has {s[0]}")
        return s
    if op in ("relu", "relu6", "leakyrelu", "flatten") + HOST_OPS:
        _need(n, 1)
        s = g.node(n.inputs[0]).shape
        return (int(np.prod(s)),) if op == "flatten" else s
    if op in ("prelu", "affine"):
        _need(n, 1)
        s = g.node(n.inputs[0]).shape
        for p in (("slope",) if op == "prelu" else ("mul", "add")):
            if p not in n.params or n.params[p].shape != (s[0],):
                raise ShapeError(f"{n.where()} ({op}): parameter {p!r} must have shape ({s[0]},), one per channel")
            if not np.all(np.isfinite(n.params[p])):
                raise ShapeError(f"{n.where()} ({op}): parameter {p!r} is not finite")
        return s
    if op == "clip":
        _need(n, 1)
        lo, hi = float(a.get("min", -np.inf)), float(a.get("max", np.inf))
        if np.isnan(lo) or np.isnan(hi) or not lo < hi or lo == np.inf or hi == -np.inf:
            raise ShapeError(f"{n.where()} (clip): needs min < max, not min={lo}, max={hi}")
        return g.node(n.inputs[0]).shape
    if op == "pad":
        _need(n, 1)
        c, h, w = _image(g, n)
        pt, pl, pb, pr = pads4(a["pads"])
        if min(pt, pl, pb, pr) < 0:
            raise ShapeError(f"{n.where()} (pad): negative padding {a['pads']!r} (cropping) is not supported")
        return (c, h + pt + pb, w + pl + pr)
    if op in ("maxpool", "avgpool"):
        _need(n, 1)
        c, h, w = _image(g, n)
        pt, pl, pb, pr = pads4(a.get("padding", 0))
        (kh, kw), (sh, sw), full, (dh, dw) = pool_window(a, (h, w))
        if op == "maxpool" and (max(pt, pb) * 2 > kh or max(pl, pr) * 2 > kw):
            # a window entirely in the padding would have no value (zero-padded sums are fine)
            raise ShapeError(f"{n.where()}: padding larger than half the kernel")
        if a.get("ceil_mode") and op != "maxpool":
            raise ShapeError(f"{n.where()}: ceil_mode is supported for max-pooling only")
        oh, ow = window_out(h, kh, sh, full[0], full[2], dh), window_out(w, kw, sw, full[1], full[3], dw)
        if oh < 1 or ow < 1:
            raise ShapeError(f"{n.where()}: pool {kh}x{kw} does not fit input {h}x{w}")
        return (c, oh, ow)
    if op in ("globalavgpool", "globalmaxpool"):
        _need(n, 1)
        return (_image(g, n)[0], 1, 1)
    if op == "add":
        _need(n, 2)
        s0, s1 = (g.node(i).shape for i in n.inputs)
        if s0 != s1:
            raise ShapeError(f"{n.where()} (add): shapes {s0} and {s1} differ")
        return s0
    if op == "concat":
        if len(n.inputs) < 2:
            raise ShapeError(f"{n.where()} (concat) needs at least 2 inputs")
        shapes = [g.node(i).shape for i in n.inputs]
        if len({len(s) for s in shapes}) != 1 or len({s[1:] for s in shapes}) != 1:
            raise ShapeError(f"{n.where()} (concat): shapes {shapes} differ outside the channel axis")
        return (sum(s[0] for s in shapes),) + shapes[0][1:]
    if op == "upsample":
        _need(n, 1)
        c, h, w = _image(g, n)
        fh, fw = pair(a["scale"], "scale")
        if fh < 1 or fw < 1:
            raise ShapeError(f"{n.where()}: upsample factor must be a positive integer, not {a['scale']!r}")
        return (c, h * fh, w * fw)
    raise UnsupportedOpError(f"unsupported op {op!r} at {n.where()}")  # pragma: no cover


class GraphBuilder:
    """Convenience for building graphs in code (bundled models, tests)."""

    def __init__(self, input_shape, name="net"):
        self.nodes = [Node("input", "input", attrs={"shape": tuple(input_shape)})]
        self.name = name
        self._count = {}

    def _add(self, op, inputs, attrs=None, params=None, name=None):
        if name is None:
            k = self._count.get(op, 0)
            self._count[op] = k + 1
            name = f"{op}{k}"
        self.nodes.append(Node(name, op, list(inputs), dict(attrs or {}),
                               {k: np.asarray(v, dtype=np.float64) for k, v in (params or {}).items()}))
        return name

    def conv(self, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, name=None):
        p = {"weight": weight} | ({"bias": bias} if bias is not None else {})
        return self._add("conv", [x], dict(stride=stride, padding=padding, dilation=dilation, groups=groups), p, name)

    def linear(self, x, weight, bias=None, name=None):
        return self._add("linear", [x], {}, {"weight": weight} | ({"bias": bias} if bias is not None else {}), name)

    def batchnorm(self, x, gamma, beta, mean, var, eps=1e-5, name=None):
        return self._add("batchnorm", [x], {"eps": eps}, dict(gamma=gamma, beta=beta, mean=mean, var=var), name)

    def op(self, op, *inputs, name=None, **attrs):
        return self._add(op, inputs, attrs, None, name)

    def prelu(self, x, slope, name=None):
        return self._add("prelu", [x], {}, {"slope": slope}, name)

    def affine(self, x, mul, add, name=None):
        return self._add("affine", [x], {}, {"mul": mul, "add": add}, name)

    def build(self, output=None) -> Graph:
        """The graph; ``output`` is a node name or a list of them (several outputs)."""
        outs = [output] if isinstance(output, str) else list(output or [self.nodes[-1].name])
        return Graph(self.nodes, outs[0], self.name, extra_outputs=outs[1:]).infer_shapes()
