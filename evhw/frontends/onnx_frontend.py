"""ONNX frontend: read a trained ``.onnx`` CNN / MLP into an :class:`evhw.ir.Graph`.

The model input is taken to be ``pixel / 255`` (the graph's ``input_mean`` / ``input_std`` stay
``None``; pass ``--input-mean`` / ``--input-std`` to the converter for normalized models).

Supported ONNX ops (default domain):

* ``Conv`` (2-D; strides, pads, dilations, group; auto_pad NOTSET, VALID, SAME_UPPER, SAME_LOWER)
* ``Gemm`` (transA=0, alpha=beta=1, constant B and C), ``MatMul`` with a constant right operand
  (a following ``Add`` of a constant becomes its bias)
* ``ReduceMean`` / ``ReduceMax`` over (H, W) (PyTorch's ``x.mean((2, 3))`` / ``x.amax((2, 3))``;
  a global average / max pool)
* ``BatchNormalization`` (inference; folded into a conv / linear before it, else a per-channel affine),
  ``Relu``, ``LeakyRelu``, ``PRelu`` (one slope or one per channel), ``Clip`` (any constant bounds)
* ``MaxPool`` (ceil_mode too), ``AveragePool`` (padding only with count_include_pad=1; ceil_mode=1
  only where it gives the same output size as floor mode), ``GlobalAveragePool``, ``GlobalMaxPool``
* ``Pad`` (constant 0 on H and W; folded into the conv / average pool it feeds)
* ``Flatten`` (axis 1), ``Reshape`` to ``(batch, features)`` or to the same shape
* ``Add`` of two tensors; ``Add`` / ``Sub`` / ``Mul`` / ``Div`` of a tensor and a scalar or per-channel
  constant (a per-channel affine, folded into a conv / linear before it where possible)
* ``Softmax`` / ``LogSoftmax`` (over channels) and ``Sigmoid`` as the last op of an output (host ops)
* several graph outputs (each one an output of the network)
* ``Concat`` along channels, ``Resize`` / ``Upsample`` (nearest, integer factors)
* ``Identity``, ``Dropout``, ``Constant``
* shape arithmetic evaluated at load time when its inputs are known: ``Shape``, ``Gather``,
  ``Unsqueeze``, ``Squeeze``, ``Cast``, ``Concat`` / ``Add`` of constants (the
  ``x.view(x.size(0), -1)`` pattern of dynamic-batch exports)

Anything else raises :class:`~evhw.errors.UnsupportedOpError` naming the op and the node.

:class:`_Assembler` (below) is shared with :mod:`evhw.frontends.torch_frontend`.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ..errors import EvhwError, ModelFileError, ShapeError, UnsupportedOpError
from ..ir import Graph, Node, _infer


# ----------------------------------------------------------------------------------------------
# helpers shared by both frontends

class _Batch:
    """Stand-in for the (unknown) batch size in shape arithmetic, e.g. ``x.size(0)``."""

    def __repr__(self):
        return "N"


BATCH = _Batch()


def _sanitize(name):
    """Make a frontend name usable as an IR node name (identifier-like, e.g. for generated RTL)."""
    s = re.sub(r"[^0-9A-Za-z_]+", "_", str(name)).strip("_")
    if not s:
        s = "node"
    return "n" + s if s[0].isdigit() else s


def window_pads(size, k, stride, dilation, auto_pad):
    """(begin, end) padding of one spatial axis for an ONNX ``auto_pad`` SAME_UPPER / SAME_LOWER."""
    out = -(-size // stride)
    total = max(0, (out - 1) * stride + dilation * (k - 1) + 1 - size)
    small, big = total // 2, total - total // 2
    return (small, big) if auto_pad == "SAME_UPPER" else (big, small)


def ceil_matches_floor(size, k, stride, lo, hi, dilation=1):
    """True if ceil-mode pooling gives the same output length as floor mode (then both agree)."""
    span = dilation * (k - 1) + 1
    n = size + lo + hi - span
    if n < 0:
        return False
    out = -(-n // stride) + 1
    if (out - 1) * stride >= size + lo:      # PyTorch / ONNX drop a last window that starts in the padding
        out -= 1
    return out == n // stride + 1


class _Assembler:
    """Builds IR nodes one at a time, inferring each node's shape as it is added.

    Frontends need shapes while they translate (flatten checks, concat axes, resize sizes), so
    every node is validated immediately with the IR's own shape rules.
    """

    def __init__(self, input_shape, *, source=""):
        self.nodes: list[Node] = []
        self.by_name: dict[str, Node] = {}
        self.input = self.add("input", [], {"shape": tuple(int(d) for d in input_shape)}, name="input",
                              source=source)

    def node(self, name) -> Node:          # the interface ir._infer expects of a graph
        return self.by_name[name]

    def shape(self, name) -> tuple:
        return self.by_name[name].shape

    def add(self, op, inputs, attrs=None, params=None, *, name, source="") -> str:
        base = _sanitize(name)
        uniq, k = base, 1
        while uniq in self.by_name:
            uniq, k = f"{base}_{k}", k + 1
        n = Node(uniq, op, list(inputs), dict(attrs or {}),
                 {k: np.array(v, dtype=np.float64) for k, v in (params or {}).items()}, source=str(source))
        n.shape = _infer(self, n)
        self.nodes.append(n)
        self.by_name[uniq] = n
        return uniq

    def graph(self, output, name) -> Graph:
        """The finished graph, keeping only the nodes the outputs depend on (and the input).

        ``output`` is a node name or a list of them (several outputs, in order)."""
        outs = [output] if isinstance(output, str) else list(output)
        live, todo = set(), list(outs)
        while todo:
            cur = todo.pop()
            if cur not in live:
                live.add(cur)
                todo.extend(self.by_name[cur].inputs)
        nodes = [n for n in self.nodes if n.name in live or n.op == "input"]
        if len(set(outs)) != len(outs):
            dup = next(o for o in outs if outs.count(o) > 1)
            raise UnsupportedOpError(f"the model returns the value of node {dup!r} twice; evhw needs distinct outputs")
        return Graph(nodes, outs[0], name, extra_outputs=outs[1:]).infer_shapes()


# ----------------------------------------------------------------------------------------------
# ONNX

def load_onnx(path_or_model, *, name=None) -> Graph:
    """Read an ONNX model into a float :class:`~evhw.ir.Graph`.

    Parameters
    ----------
    path_or_model : str, os.PathLike, bytes or onnx.ModelProto
        The ``.onnx`` file, its serialized bytes, or a loaded model.
    name : str, optional
        Graph name; defaults to the file stem or the ONNX graph name.

    Returns
    -------
    Graph
        Shape-checked graph whose input is ``(C, H, W)`` or ``(F,)`` (the batch axis dropped).

    Raises
    ------
    ModelFileError
        The file is missing, unreadable, truncated or not a valid ONNX model.
    UnsupportedOpError
        The model uses an op (or op setting) evhw cannot convert; the message names the op and node.
    ShapeError
        The input shape is not fixed or does not fit the layers.
    """
    try:
        import onnx
    except ImportError as e:   # pragma: no cover - depends on the environment
        raise EvhwError("reading ONNX models needs the onnx package: pip install onnx") from e
    model, label = _read_model(onnx, path_or_model)
    if name is None:
        name = Path(label).stem if label != "<model>" else (model.graph.name or "net")
    return _OnnxReader(onnx, model, label).run(_sanitize(name))


def _read_model(onnx, path_or_model):
    """(ModelProto, label for messages); every read or validation failure is a ModelFileError."""
    if isinstance(path_or_model, onnx.ModelProto):
        model, label = path_or_model, "<model>"
    else:
        if isinstance(path_or_model, (bytes, bytearray)):
            label = "<model>"
            load = lambda: onnx.load_from_string(bytes(path_or_model))  # noqa: E731
        else:
            label = os.fspath(path_or_model)
            if not Path(label).is_file():
                raise ModelFileError(f"ONNX model file {label!r} does not exist")
            load = lambda: onnx.load(label)  # noqa: E731
        try:
            model = load()
        except Exception as e:   # protobuf DecodeError, missing external data, OS errors...
            raise ModelFileError(f"cannot read ONNX model {label!r} (truncated or not an ONNX file?): {e}") from e
    try:
        # A cut-off file can still parse as a (partial) protobuf; the checker catches what is missing.
        onnx.checker.check_model(model)
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelFileError(f"ONNX model {label!r} is not valid: {msg}") from e
    return model, label


def _attr_float(v):
    """ONNX stores float attributes as float32: recover the decimal the user wrote (0.2, not 0.2000000030)."""
    return float(str(np.float32(v)))


def _nearest_source(out_len, in_len, scale, ctm, nearest_mode):
    """Source index of every output position of ONNX ``Resize`` (mode nearest) along one axis."""
    x = np.arange(out_len, dtype=np.float64)
    if ctm == "asymmetric":
        src = x / scale
    elif ctm == "tf_half_pixel_for_nn":
        src = (x + 0.5) / scale
    elif ctm == "half_pixel" or ctm == "pytorch_half_pixel":
        src = (x + 0.5) / scale - 0.5 if (out_len > 1 or ctm == "half_pixel") else np.zeros_like(x)
    elif ctm == "half_pixel_symmetric":
        adj = out_len / (scale * in_len)
        src = in_len / 2 * (1 - adj) + (x + 0.5) / scale - 0.5
    elif ctm == "align_corners":
        src = x * (in_len - 1) / (out_len - 1) if out_len > 1 else np.zeros_like(x)
    else:
        return None
    if nearest_mode == "floor":
        idx = np.floor(src)
    elif nearest_mode == "ceil":
        idx = np.ceil(src)
    elif nearest_mode == "round_prefer_ceil":
        idx = np.floor(src + 0.5)
    elif nearest_mode == "round_prefer_floor":
        idx = np.ceil(src - 0.5)
    else:
        return None
    return np.clip(idx, 0, in_len - 1).astype(np.int64)


class _OnnxReader:
    """Walks the (topologically sorted) ONNX nodes, emitting IR nodes through an :class:`_Assembler`."""

    # Shape arithmetic that is evaluated when all its inputs are known constants.
    FOLDED = ("Shape", "Gather", "Unsqueeze", "Squeeze", "Cast")

    def __init__(self, onnx, model, label):
        self.onnx, self.model, self.label = onnx, model, label
        self.g = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        self.consts: dict[str, np.ndarray] = {}
        self.tensors: dict[str, str] = {}          # ONNX tensor name -> IR node name
        self.alias_reads: dict[str, int] = {}      # IR node name -> reads made by aliasing ops (Identity...)
        self.uses: dict[str, int] = {}             # ONNX tensor name -> number of readers
        for n in self.g.node:
            for i in n.input:
                if i:
                    self.uses[i] = self.uses.get(i, 0) + 1
        for o in self.g.output:
            self.uses[o.name] = self.uses.get(o.name, 0) + 1

    # -- entry ---------------------------------------------------------------------------------
    def run(self, name) -> Graph:
        nh = self.onnx.numpy_helper
        for t in self.g.initializer:
            try:
                self.consts[t.name] = nh.to_array(t)
            except Exception as e:
                raise ModelFileError(f"ONNX model {self.label!r}: cannot read initializer {t.name!r}: {e}") from e
        inputs = [i for i in self.g.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise UnsupportedOpError(f"ONNX model {self.label!r} has {len(inputs)} inputs "
                                     f"({', '.join(i.name for i in inputs)}); evhw takes exactly one")
        inp = inputs[0]
        self.asm = _Assembler(self._input_shape(inp), source=inp.name)
        self.tensors[inp.name] = self.asm.input
        for idx, node in enumerate(self.g.node):
            self._node(node, idx)
        outs = []
        for o in self.g.output:
            if o.name not in self.tensors:
                raise UnsupportedOpError(f"ONNX model {self.label!r}: output {o.name!r} is a constant, not computed "
                                         f"from the input")
            outs.append(self.tensors[o.name])
        return self.asm.graph(outs, name)

    def _input_shape(self, inp):
        tt = inp.type.tensor_type
        if not tt.HasField("shape"):
            raise ShapeError(f"ONNX input {inp.name!r} has no shape; re-export with a fixed input size")
        dims = list(tt.shape.dim)
        if len(dims) not in (2, 4):
            raise ShapeError(f"ONNX input {inp.name!r} has rank {len(dims)}; evhw takes (N, C, H, W) or (N, F)")
        shape = []
        for k, d in enumerate(dims[1:], start=1):   # dims[0] is the batch and may be symbolic
            if not d.HasField("dim_value") or d.dim_value < 1:
                raise ShapeError(f"ONNX input {inp.name!r}: dimension {k} is not fixed "
                                 f"({d.dim_param or '?'}); re-export with a fixed input size")
            shape.append(int(d.dim_value))
        return tuple(shape)

    # -- dispatch ------------------------------------------------------------------------------
    def _node(self, node, idx):
        op = node.op_type
        self.cur = node
        self.cur_name = node.name or f"{op}_{idx}"
        if node.domain not in ("", "ai.onnx"):
            raise self._unsupported(f"custom domain {node.domain!r}")
        self.attrs = {a.name: self.onnx.helper.get_attribute_value(a) for a in node.attribute}
        self.attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in self.attrs.items()}
        ins = [i for i in node.input]
        if op == "Constant":
            return self._constant(node)
        if op in self.FOLDED or (op in ("Concat", "Add", "Identity") and ins and
                                 all(i in self.consts for i in ins if i)):
            return self._fold(node, op, ins)
        if op == "ConstantOfShape" or (ins and all(i in self.consts for i in ins if i) and
                                       not any(self.consts[i].dtype == object for i in ins if i)):
            return self._fold_any(node)
        handler = getattr(self, "_op_" + op, None)
        if handler is None:
            raise self._unsupported()
        if not any(i in self.tensors for i in ins):
            raise self._unsupported("none of its inputs is computed from the network input")
        for extra in node.output[1:]:
            if extra and self.uses.get(extra):
                raise self._unsupported(f"its extra output {extra!r} is used")
        handler(node, ins)

    def _unsupported(self, why=""):
        msg = f"unsupported ONNX op {self.cur.op_type!r} at node {self.cur_name!r}"
        return UnsupportedOpError(msg + (f": {why}" if why else ""))

    def _emit(self, op, inputs, attrs=None, params=None):
        """Add an IR node for the current ONNX node and bind its first output to it."""
        node = self.cur
        irname = self.asm.add(op, inputs, attrs, params, name=node.name or node.output[0], source=self.cur_name)
        self.tensors[node.output[0]] = irname
        return irname

    def _alias(self, src_ir):
        self.tensors[self.cur.output[0]] = src_ir
        self.alias_reads[src_ir] = self.alias_reads.get(src_ir, 0) + 1

    def _readers(self, irname):
        """How many ONNX nodes (and graph outputs) read IR node ``irname``, looking through aliases."""
        reads = sum(self.uses.get(o, 0) for o, ir in self.tensors.items() if ir == irname)
        return reads - self.alias_reads.get(irname, 0)

    def _const(self, name, what, optional=False):
        if not name:
            if optional:
                return None
            raise self._unsupported(f"missing {what}")
        if name not in self.consts:
            if optional and name not in self.tensors:
                return None
            raise self._unsupported(f"its {what} {name!r} is not a constant")
        return self.consts[name]

    def _x(self, ins):
        if ins[0] not in self.tensors:
            raise self._unsupported(f"its data input {ins[0]!r} is not computed from the network input")
        return self.tensors[ins[0]]

    # -- constants and shape arithmetic --------------------------------------------------------
    def _constant(self, node):
        a = self.attrs
        nh = self.onnx.numpy_helper
        if "value" in a:
            v = nh.to_array(a["value"])
        elif "value_float" in a:
            v = np.array(a["value_float"], dtype=np.float32)
        elif "value_floats" in a:
            v = np.array(a["value_floats"], dtype=np.float32)
        elif "value_int" in a:
            v = np.array(a["value_int"], dtype=np.int64)
        elif "value_ints" in a:
            v = np.array(a["value_ints"], dtype=np.int64)
        else:
            raise self._unsupported(f"constant kind {sorted(a)} is not supported")
        self.consts[node.output[0]] = v

    def _fold(self, node, op, ins):
        a = self.attrs
        if op == "Shape":
            if ins[0] in self.tensors:
                full = np.array([BATCH] + list(self.asm.shape(self.tensors[ins[0]])), dtype=object)
            else:
                full = np.array(np.shape(self.consts[ins[0]]), dtype=np.int64)
            start, end = a.get("start", 0), a.get("end", None)
            v = full[start:end]
        else:
            vals = [self._const(i, "input", optional=True) if i else None for i in ins]
            if vals[0] is None:
                raise self._unsupported("only evaluated on constants (shape arithmetic)")
            x = vals[0]
            if op == "Gather":
                v = np.take(x, vals[1], axis=a.get("axis", 0))
            elif op in ("Unsqueeze", "Squeeze"):
                axes = a.get("axes") if "axes" in a else (vals[1] if len(vals) > 1 else None)
                if op == "Squeeze":
                    v = np.squeeze(x, axis=None if axes is None else tuple(int(i) for i in axes))
                else:
                    v = x
                    rank = x.ndim + len(axes)
                    for ax in sorted(int(i) % rank for i in axes):
                        v = np.expand_dims(v, ax)
            elif op == "Cast":
                # Object arrays hold the symbolic batch; keep them as they are.
                to = self.onnx.helper.tensor_dtype_to_np_dtype(a["to"])
                v = x if x.dtype == object else x.astype(to)
            elif op == "Concat":
                v = np.concatenate([np.atleast_1d(c) for c in vals if c is not None], axis=a.get("axis", 0))
            elif op == "Add":
                if any(isinstance(e, _Batch) for c in vals for e in np.ravel(c)):
                    raise self._unsupported("arithmetic on the batch size")
                v = vals[0] + vals[1]
            else:   # Identity
                v = x
        self.consts[node.output[0]] = np.asarray(v)   # np.take of one element gives a bare scalar

    def _fold_any(self, node):
        """Any other op whose inputs are all constants (the shape arithmetic exporters write, e.g. for
        F.pad): evaluated once at load time with onnx's reference implementation."""
        from onnx.reference import ReferenceEvaluator

        ins = [i for i in node.input if i]
        try:
            sess = ReferenceEvaluator(self.onnx.helper.make_graph(
                [node], "fold", [self.onnx.helper.make_tensor_value_info(i, 0, None) for i in ins],
                [self.onnx.helper.make_tensor_value_info(o, 0, None) for o in node.output if o]),
                opsets={"": self.opset})
            outs = sess.run(None, {i: self.consts[i] for i in ins})
        except Exception as e:   # noqa: BLE001 - the reference evaluator raises many kinds
            raise self._unsupported(f"cannot evaluate it on its constant inputs ({type(e).__name__}: {e})") from e
        for o, v in zip([o for o in node.output if o], outs):
            self.consts[o] = np.asarray(v)

    # -- layers --------------------------------------------------------------------------------
    def _spatial(self, shape, kernel):
        """IR stride / padding / dilation attrs from ONNX window attributes (Conv and pools)."""
        a = self.attrs
        if len(shape) != 3 or len(kernel) != 2:
            raise self._unsupported(f"only 2-D windows on (C, H, W) tensors are supported (input shape {shape})")
        stride = tuple(int(s) for s in a.get("strides", (1, 1)))
        dil = tuple(int(d) for d in a.get("dilations", (1, 1)))
        auto = a.get("auto_pad", "NOTSET")
        if auto == "NOTSET":
            pads = tuple(int(p) for p in a.get("pads", (0, 0, 0, 0)))
        elif auto == "VALID":
            pads = (0, 0, 0, 0)
        elif auto in ("SAME_UPPER", "SAME_LOWER"):
            (pt, pb), (pl, pr) = (window_pads(shape[1 + i], kernel[i], stride[i], dil[i], auto) for i in range(2))
            pads = (pt, pl, pb, pr)
        else:
            raise self._unsupported(f"auto_pad={auto!r}")
        return stride, pads, dil

    def _op_Conv(self, node, ins):
        w = self._const(ins[1], "weight")
        b = self._const(ins[2], "bias") if len(ins) > 2 and ins[2] else None
        if w.ndim != 4:
            raise self._unsupported(f"only 2-D convolutions are supported (weight shape {w.shape})")
        kernel = tuple(int(k) for k in self.attrs.get("kernel_shape", w.shape[2:]))
        if kernel != tuple(w.shape[2:]):
            raise self._unsupported(f"kernel_shape {kernel} does not match the weight {w.shape}")
        stride, pads, dil = self._spatial(self.asm.shape(self._x(ins)), kernel)
        params = {"weight": w} | ({"bias": b.reshape(-1)} if b is not None else {})
        self._emit("conv", [self._x(ins)], dict(stride=stride, padding=pads, dilation=dil,
                                                groups=int(self.attrs.get("group", 1))), params)

    def _op_Gemm(self, node, ins):
        a = self.attrs
        if a.get("transA", 0):
            raise self._unsupported("transA=1")
        if _attr_float(a.get("alpha", 1.0)) != 1.0 or _attr_float(a.get("beta", 1.0)) != 1.0:
            raise self._unsupported(f"alpha={a.get('alpha', 1.0)}, beta={a.get('beta', 1.0)} (only 1 and 1)")
        w = self._const(ins[1], "weight B")
        w = w if a.get("transB", 0) else w.T          # IR weight is (out, in)
        params = {"weight": w}
        if len(ins) > 2 and ins[2]:
            params["bias"] = self._per_channel(self._const(ins[2], "bias C"), w.shape[0], 1)
        self._emit("linear", [self._x(ins)], {}, params)

    def _op_MatMul(self, node, ins):
        w = self._const(ins[1], "right operand")
        if w.ndim != 2:
            raise self._unsupported(f"only (batch, F) x (F, O) products are supported (weight shape {w.shape})")
        self._emit("linear", [self._x(ins)], {}, {"weight": w.T})

    def _per_channel(self, c, channels, rank):
        """A constant broadcast over (batch, channels, *spatial) that varies at most along channels."""
        c = np.asarray(c, dtype=np.float64)
        if c.ndim > rank + 1:
            raise self._unsupported(f"constant of shape {c.shape} does not broadcast per channel")
        full = c.reshape((1,) * (rank + 1 - c.ndim) + c.shape)
        if any(d != 1 for k, d in enumerate(full.shape) if k != 1) or full.shape[1] not in (1, channels):
            raise self._unsupported(f"constant of shape {c.shape} is not a scalar or per-channel constant")
        return np.broadcast_to(full.reshape(-1), (channels,)).copy()

    def _op_Add(self, node, ins):
        if len(ins) == 2 and all(i in self.tensors for i in ins):
            return self._emit("add", [self.tensors[i] for i in ins])
        self._affine(ins, "Add")

    def _op_Sub(self, node, ins):
        if len(ins) == 2 and all(i in self.tensors for i in ins):
            raise self._unsupported("subtracting two computed tensors")
        self._affine(ins, "Sub")

    def _op_Mul(self, node, ins):
        if len(ins) == 2 and all(i in self.tensors for i in ins):
            raise self._unsupported("multiplying two computed tensors")
        self._affine(ins, "Mul")

    def _op_Div(self, node, ins):
        if ins[1] in self.tensors:
            raise self._unsupported("dividing by a computed tensor")
        self._affine(ins, "Div")

    def _affine(self, ins, op):
        """Tensor (op) constant, with a scalar or per-channel constant: x * mul + add per channel."""
        first = ins[0] in self.tensors
        t, cname = (ins[0], ins[1]) if first else (ins[1], ins[0])
        x = self.tensors[t]
        shape = self.asm.shape(x)
        c = self._per_channel(self._const(cname, "constant operand"), shape[0], len(shape))
        ones, zeros = np.ones(shape[0]), np.zeros(shape[0])
        if op == "Add":
            mul, add = ones, c
        elif op == "Sub":
            mul, add = (ones, -c) if first else (-ones, c)
        elif op == "Mul":
            mul, add = c, zeros
        else:
            if np.any(c == 0):
                raise self._unsupported("division by zero")
            mul, add = 1.0 / c, zeros
        prod = self.asm.node(x)
        if (op == "Add" or (op == "Sub" and first)) and prod.op in ("conv", "linear") and self._readers(prod.name) == 1:
            # the bias of the conv / linear that alone feeds it (MatMul + Add is how exporters write Linear)
            prod.params["bias"] = prod.params.get("bias", zeros) + add
            return self._alias(prod.name)
        self._emit("affine", [x], {}, {"mul": mul, "add": add})

    def _op_BatchNormalization(self, node, ins):
        if self.attrs.get("training_mode", 0):
            raise self._unsupported("training_mode=1")
        gamma, beta, mean, var = (self._const(i, w).reshape(-1) for i, w in zip(ins[1:5], ("scale", "B", "mean", "var")))
        self._emit("batchnorm", [self._x(ins)], {"eps": _attr_float(self.attrs.get("epsilon", 1e-5))},
                   dict(gamma=gamma, beta=beta, mean=mean, var=var))

    def _op_Relu(self, node, ins):
        self._emit("relu", [self._x(ins)])

    def _op_LeakyRelu(self, node, ins):
        self._emit("leakyrelu", [self._x(ins)], {"alpha": _attr_float(self.attrs.get("alpha", 0.01))})

    def _op_PRelu(self, node, ins):
        x = self._x(ins)
        shape = self.asm.shape(x)
        slope = self._per_channel(self._const(ins[1], "slope"), shape[0], len(shape))
        self._emit("prelu", [x], {}, {"slope": slope})

    def _op_Clip(self, node, ins):
        if self.opset < 11:
            lo, hi = self.attrs.get("min"), self.attrs.get("max")
        else:
            lo = self._const(ins[1], "min").item() if len(ins) > 1 and ins[1] else None
            hi = self._const(ins[2], "max").item() if len(ins) > 2 and ins[2] else None
        big = float(np.finfo(np.float32).max)
        lo = -np.inf if lo is None or lo <= -big else _attr_float(lo)
        hi = np.inf if hi is None or hi >= big else _attr_float(hi)
        if lo == 0 and hi == np.inf:
            return self._emit("relu", [self._x(ins)])
        if lo == 0 and hi == 6:
            return self._emit("relu6", [self._x(ins)])
        if not lo < hi:
            raise self._unsupported(f"Clip(min={lo}, max={hi}) needs min < max")
        self._emit("clip", [self._x(ins)], {"min": lo, "max": hi})

    def _op_Pad(self, node, ins):
        a = self.attrs
        if a.get("mode", "constant") != "constant":
            raise self._unsupported(f"mode={a.get('mode')!r} (only constant)")
        x = self._x(ins)
        shape = self.asm.shape(x)
        if self.opset < 11:
            pads, value = a.get("pads"), a.get("value", 0.0)
        else:
            pads = self._const(ins[1], "pads")
            value = self._const(ins[2], "constant value", optional=True) if len(ins) > 2 and ins[2] else None
            value = 0.0 if value is None or np.size(value) == 0 else float(np.reshape(value, -1)[0])
            if len(ins) > 3 and ins[3]:
                axes = [int(v) % 4 for v in np.reshape(self._const(ins[3], "axes"), -1)]
                full = [0] * 8
                for k, ax in enumerate(axes):
                    full[ax], full[4 + ax] = int(pads[k]), int(pads[len(axes) + k])
                pads = full
        pads = [int(p) for p in np.reshape(pads, -1)]
        if value != 0:
            raise self._unsupported(f"constant value {value} (only 0)")
        if len(shape) != 3 or len(pads) != 8 or any(pads[k] for k in (0, 1, 4, 5)):
            raise self._unsupported(f"pads {pads}; only padding H and W of an (N, C, H, W) tensor")
        if min(pads) < 0:
            raise self._unsupported(f"negative pads {pads} (cropping)")
        self._emit("pad", [x], {"pads": (pads[2], pads[3], pads[6], pads[7])})

    def _host(self, ins, op):
        x = self._x(ins)
        shape = self.asm.shape(x)
        if op != "sigmoid":
            default = 1 if self.opset < 13 else -1
            axis = int(self.attrs.get("axis", default)) % (len(shape) + 1)
            if axis != 1:
                raise self._unsupported(f"axis={self.attrs.get('axis', default)} (only the channel axis 1)")
            if self.opset < 13 and len(shape) != 1:
                raise self._unsupported("opset < 13 softmax flattens (C, H, W); only (N, F) inputs")
        self._emit(op, [x])

    def _op_Softmax(self, node, ins):
        self._host(ins, "softmax")

    def _op_LogSoftmax(self, node, ins):
        self._host(ins, "logsoftmax")

    def _op_Sigmoid(self, node, ins):
        self._host(ins, "sigmoid")

    def _op_GlobalMaxPool(self, node, ins):
        if len(self.asm.shape(self._x(ins))) != 3:
            raise self._unsupported("input is not (N, C, H, W)")
        self._emit("globalmaxpool", [self._x(ins)])

    def _pool_attrs(self, ins, ceil_ok=False):
        a = self.attrs
        shape = self.asm.shape(self._x(ins))
        kernel = tuple(int(k) for k in a["kernel_shape"])
        stride, pads, dil = self._spatial(shape, kernel)
        ceil = bool(a.get("ceil_mode", 0)) and not all(
            ceil_matches_floor(shape[1 + i], kernel[i], stride[i], pads[i], pads[i + 2], dil[i]) for i in range(2))
        if ceil and not ceil_ok:
            raise self._unsupported("ceil_mode=1 (changes the output size here)")
        return kernel, stride, pads, dil, ceil

    def _op_MaxPool(self, node, ins):
        kernel, stride, pads, dil, ceil = self._pool_attrs(ins, ceil_ok=True)
        self._emit("maxpool", [self._x(ins)], dict(kernel=kernel, stride=stride, padding=pads, dilation=dil)
                   | ({"ceil_mode": True} if ceil else {}))

    def _op_AveragePool(self, node, ins):
        kernel, stride, pads, dil, _ = self._pool_attrs(ins)
        if dil != (1, 1):
            raise self._unsupported(f"dilations={list(dil)}")
        if any(pads) and not self.attrs.get("count_include_pad", 0):
            raise self._unsupported("padding with count_include_pad=0 (padded taps must count)")
        self._emit("avgpool", [self._x(ins)], dict(kernel=kernel, stride=stride, padding=pads))

    def _op_GlobalAveragePool(self, node, ins):
        self._emit("globalavgpool", [self._x(ins)])

    def _flatten(self, ins):
        x = self._x(ins)
        if len(self.asm.shape(x)) == 1:
            return self._alias(x)       # already (batch, features)
        self._emit("flatten", [x])

    def _op_ReduceMean(self, node, ins):
        # x.mean((2, 3)) in PyTorch: a global average pool, flattened unless keepdims.
        self._spatial_reduce(ins, "globalavgpool", "mean")

    def _op_ReduceMax(self, node, ins):
        # x.amax((2, 3)) in PyTorch: a global max-pool, flattened unless keepdims.
        self._spatial_reduce(ins, "globalmaxpool", "max")

    def _spatial_reduce(self, ins, op, what):
        shape = self.asm.shape(self._x(ins))
        if "axes" in self.attrs:
            axes = self.attrs["axes"]
        else:
            axes = self._const(ins[1], "axes", optional=True) if len(ins) > 1 and ins[1] else None
        axes = sorted(int(a) % (len(shape) + 1) for a in np.reshape(axes if axes is not None else [], -1))
        if len(shape) != 3 or axes != [2, 3]:
            raise self._unsupported(f"{what} over axes {axes} (only the spatial axes 2, 3)")
        pooled = self._emit(op, [self._x(ins)])
        if not self.attrs.get("keepdims", 1):
            self._emit("flatten", [pooled])

    def _op_Flatten(self, node, ins):
        rank = len(self.asm.shape(self._x(ins))) + 1
        if self.attrs.get("axis", 1) % rank != 1:
            raise self._unsupported(f"axis={self.attrs.get('axis')} (only 1: keep the batch axis)")
        self._flatten(ins)

    def _op_Reshape(self, node, ins):
        shape = self.asm.shape(self._x(ins))
        target = list(self._const(ins[1], "shape").reshape(-1))
        allowzero = self.attrs.get("allowzero", 0)
        full = [BATCH] + list(shape)
        # Resolve 0 ("copy this input dim") so the target can be compared with the input shape.
        t = [full[k] if (isinstance(d, (int, np.integer)) and d == 0 and not allowzero and k < len(full)) else d
             for k, d in enumerate(target)]
        t = [d if isinstance(d, _Batch) else int(d) for d in t]
        feats = int(np.prod(shape))
        head_ok = lambda d: isinstance(d, _Batch) or d in (1, -1)  # noqa: E731
        if len(t) == 2 and head_ok(t[0]) and t[1] in (-1, feats) and t != [-1, -1]:
            return self._flatten(ins)
        if len(t) == len(full) and head_ok(t[0]) and all(d in (-1, s) for d, s in zip(t[1:], shape)) \
                and sum(d == -1 for d in t) <= 1:
            return self._alias(self._x(ins))
        raise self._unsupported(f"reshape of {tuple(full)} to {tuple(t)}; only flattening to (batch, features)")

    def _op_Concat(self, node, ins):
        if not all(i in self.tensors for i in ins):
            raise self._unsupported("mixes computed tensors and constants")
        rank = len(self.asm.shape(self.tensors[ins[0]])) + 1
        if self.attrs["axis"] % rank != 1:
            raise self._unsupported(f"axis={self.attrs['axis']} (only the channel axis 1)")
        self._emit("concat", [self.tensors[i] for i in ins])

    def _nearest(self, ins, factors, ctm, nmode):
        """Emit an IR upsample if ``factors`` (for N, C, H, W) are integers that ONNX maps to plain repetition."""
        c, h, w = self.asm.shape(self._x(ins))
        f = [float(v) for v in factors]
        if len(f) != 4 or f[0] != 1 or f[1] != 1 or any(v < 1 or v != int(v) for v in f[2:]):
            raise self._unsupported(f"scales {f}; only integer factors >= 1 on H and W")
        fh, fw = int(f[2]), int(f[3])
        for size, k in ((h, fh), (w, fw)):
            src = _nearest_source(size * k, size, float(k), ctm, nmode)
            if src is None or not np.array_equal(src, np.arange(size * k) // k):
                raise self._unsupported(f"coordinate_transformation_mode={ctm!r} with nearest_mode={nmode!r} "
                                        f"does not repeat pixels for factor {k}")
        self._emit("upsample", [self._x(ins)], {"scale": (fh, fw)})

    def _op_Resize(self, node, ins):
        a = self.attrs
        if a.get("mode", "nearest") != "nearest":
            raise self._unsupported(f"mode={a.get('mode')!r} (only nearest)")
        shape = self.asm.shape(self._x(ins))
        if len(shape) != 3:
            raise self._unsupported(f"input shape {shape} is not (C, H, W)")
        get = lambda k: self._const(ins[k], "scales/sizes", optional=True) if len(ins) > k and ins[k] else None  # noqa: E731
        if self.opset < 11:
            scales, sizes = get(1), None
        else:
            scales, sizes = get(2), get(3)
        scales = scales if scales is not None and scales.size else None
        sizes = sizes if sizes is not None and sizes.size else None
        axes = [int(x) % 4 for x in a.get("axes", range(4))]
        full_in = (1,) + tuple(shape)
        if scales is not None:
            factors = [1.0] * 4
            for ax, s in zip(axes, scales.reshape(-1)):
                factors[ax] = float(s)
        elif sizes is not None:
            if a.get("keep_aspect_ratio_policy", "stretch") != "stretch":
                raise self._unsupported(f"keep_aspect_ratio_policy={a['keep_aspect_ratio_policy']!r}")
            factors = [1.0] * 4
            for ax, s in zip(axes, sizes.reshape(-1)):
                factors[ax] = 1.0 if ax == 0 else int(s) / full_in[ax]
        else:
            raise self._unsupported("neither scales nor sizes are given as constants")
        self._nearest(ins, factors, a.get("coordinate_transformation_mode", "half_pixel"),
                      a.get("nearest_mode", "round_prefer_floor"))

    def _op_Upsample(self, node, ins):
        a = self.attrs
        if a.get("mode", "nearest") != "nearest":
            raise self._unsupported(f"mode={a.get('mode')!r} (only nearest)")
        scales = a["scales"] if "scales" in a else self._const(ins[1], "scales")
        self._nearest(ins, list(np.reshape(scales, -1)), "asymmetric", "floor")   # Upsample's rule: floor(x / s)

    def _op_Identity(self, node, ins):
        self._alias(self._x(ins))

    def _op_Dropout(self, node, ins):
        # Inference: dropout is the identity, unless a constant training_mode input switches it on.
        if len(ins) > 2 and ins[2] and bool(np.any(self._const(ins[2], "training_mode"))):
            raise self._unsupported("training_mode=true")
        self._alias(self._x(ins))
