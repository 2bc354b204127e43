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
    "maxpool": ("kernel", "stride", "padding", "dilation"),
    "avgpool": ("kernel", "stride", "padding"),              # counts padded taps (count_include_pad)
    "globalavgpool": (),                                     # (C, H, W) -> (C, 1, 1)
    "flatten": (),                                           # (C, H, W) -> (C*H*W,), channel-major
    "add": (),
    "concat": (),                                            # along channels
    "upsample": ("scale",),                                  # nearest, integer factor
}

#: Value-domain element-wise or window operations: monotone non-decreasing, so they commute with max.
VALUE_OPS = ("relu", "relu6", "leakyrelu", "maxpool")


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
    """A float network: nodes in topological order, one input, one output."""

    nodes: list[Node]
    output: str
    name: str = "net"
    #: Input normalization folded at conversion: value = (pixel/255 - mean) / std, per channel.
    input_mean: tuple | None = None
    input_std: tuple | None = None

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

    def node(self, name) -> Node:
        return self.by_name[name]

    def consumers(self, name) -> list[Node]:
        return [n for n in self.nodes if name in n.inputs]

    def copy(self) -> "Graph":
        nodes = [dataclasses.replace(n, inputs=list(n.inputs), attrs=dict(n.attrs),
                                     params={k: np.array(v) for k, v in n.params.items()}) for n in self.nodes]
        return Graph(nodes, self.output, self.name, self.input_mean, self.input_std)

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
        if self.output not in seen:
            raise ShapeError(f"graph output {self.output!r} is not a node")
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
    if op in ("relu", "relu6", "leakyrelu", "flatten"):
        _need(n, 1)
        s = g.node(n.inputs[0]).shape
        return (int(np.prod(s)),) if op == "flatten" else s
    if op in ("maxpool", "avgpool"):
        _need(n, 1)
        c, h, w = _image(g, n)
        kh, kw = pair(a["kernel"], "kernel")
        sh, sw = pair(a.get("stride", a["kernel"]), "stride")
        pt, pl, pb, pr = pads4(a.get("padding", 0))
        dh, dw = pair(a.get("dilation", 1), "dilation")
        if max(pt, pb) * 2 > kh or max(pl, pr) * 2 > kw:
            raise ShapeError(f"{n.where()}: padding larger than half the kernel")
        oh, ow = window_out(h, kh, sh, pt, pb, dh), window_out(w, kw, sw, pl, pr, dw)
        if oh < 1 or ow < 1:
            raise ShapeError(f"{n.where()}: pool {kh}x{kw} does not fit input {h}x{w}")
        return (c, oh, ow)
    if op == "globalavgpool":
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

    def build(self, output=None) -> Graph:
        return Graph(self.nodes, output or self.nodes[-1].name, self.name).infer_shapes()
