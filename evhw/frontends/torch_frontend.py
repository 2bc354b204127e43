"""PyTorch frontend: trace an ``nn.Module`` with ``torch.fx`` into an :class:`evhw.ir.Graph`.

The module is read as in eval mode (BatchNorm uses its running statistics, dropout is the
identity); it is not modified. Its input is taken to be ``pixel / 255`` (normalization is passed
to the converter separately). fx records no shapes, so the caller gives the frame shape.

Supported modules: ``Conv2d`` (zeros padding; int, tuple, 'valid' or 'same'), ``Linear``,
``BatchNorm1d`` / ``BatchNorm2d`` (standalone too), ``ReLU``, ``ReLU6``, ``Hardtanh``, ``LeakyReLU``,
``PReLU``, ``MaxPool2d`` (ceil_mode too), ``AvgPool2d`` (padding only with count_include_pad),
``AdaptiveAvgPool2d`` (to 1, or to a size dividing the input), ``AdaptiveMaxPool2d(1)``,
``ZeroPad2d`` / ``ConstantPad2d(·, 0)``, ``Flatten(1)``, ``Upsample`` (nearest, integer factors),
``Identity``, dropout modules; ``Softmax(dim=1)``, ``LogSoftmax(dim=1)``, ``Sigmoid`` as the last op
of an output (host ops).

Supported functions and methods: ``relu`` (torch / F / method, in-place too), ``F.relu6``,
``F.hardtanh``, ``torch.clamp`` / ``clip`` (constant bounds), ``F.leaky_relu``, ``F.prelu``,
``F.max_pool2d``, ``F.avg_pool2d``, ``F.adaptive_avg_pool2d``, ``F.adaptive_max_pool2d(·, 1)``,
``F.pad`` (constant 0, H and W), ``mean`` / ``amax`` over (H, W), ``torch.flatten(x, 1)`` / ``x.flatten(1)``,
``view`` / ``reshape`` to ``(batch, -1)``, ``x.size()`` / ``x.shape``, ``+`` / ``torch.add`` /
``x.add`` of two tensors, ``+ - * /`` with a number or a per-channel constant, ``torch.cat(dim=1)``,
``F.interpolate`` (nearest, integer factors), ``F.dropout``, ``contiguous``, ``softmax`` /
``log_softmax`` (dim 1) and ``sigmoid`` as the last op of an output.

A model may return several tensors (a tuple or list): each is an output of the network.

Anything else raises :class:`~evhw.errors.UnsupportedOpError` naming the op and the fx node.
"""
from __future__ import annotations

import functools
import operator
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import EvhwError, ModelFileError, ShapeError, UnsupportedOpError
from ..ir import Graph
from .onnx_frontend import BATCH, ceil_matches_floor, _Assembler, _Batch, _sanitize


def load_torch(module_or_path, *, input_shape=None, name=None) -> Graph:
    """Trace a PyTorch model into a float :class:`~evhw.ir.Graph`.

    Parameters
    ----------
    module_or_path : torch.nn.Module, str or os.PathLike
        The model, or a ``.pt`` / ``.pth`` file holding a whole pickled module (``torch.save(model)``).
        Loading a file unpickles it: only load files you trust.
    input_shape : tuple of int
        One frame without the batch axis: ``(C, H, W)`` or ``(F,)``. Required.
    name : str, optional
        Graph name; defaults to the file stem or the module's class name.

    Returns
    -------
    Graph
        Shape-checked graph.

    Raises
    ------
    ModelFileError
        The file is missing, unreadable or does not hold a module.
    UnsupportedOpError
        The model uses an op evhw cannot convert, or torch.fx cannot trace it.
    ShapeError
        ``input_shape`` is missing or does not fit the layers.
    """
    try:
        import torch
    except ImportError as e:   # pragma: no cover - depends on the environment
        raise EvhwError("reading PyTorch models needs torch: pip install torch==2.13.0") from e
    if input_shape is None:
        raise ShapeError("load_torch needs input_shape=(C, H, W) or (F,): PyTorch models do not record "
                         "their input size")
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) not in (1, 3) or min(input_shape) < 1:
        raise ShapeError(f"input_shape must be (C, H, W) or (F,) with positive sizes, not {input_shape}")
    module, label = _read_module(torch, module_or_path)
    if name is None:
        name = Path(label).stem if label else type(module).__name__
    if torch.fx.Tracer().is_leaf_module(module, ""):
        # fx traces into the root's forward; wrapping a bare layer (nn.Conv2d...) keeps it a module call.
        module = torch.nn.Sequential(module)
    try:
        gm = torch.fx.symbolic_trace(module)
    except Exception as e:
        raise UnsupportedOpError(f"torch.fx cannot trace {type(module).__name__} ({type(e).__name__}: {e}); "
                                 f"remove data-dependent control flow or export the model to ONNX") from e
    return _FxReader(torch, gm, input_shape).run(_sanitize(name))


def _read_module(torch, module_or_path):
    if isinstance(module_or_path, torch.nn.Module):
        return module_or_path, ""
    label = os.fspath(module_or_path)
    if not Path(label).is_file():
        raise ModelFileError(f"PyTorch model file {label!r} does not exist")
    try:
        obj = torch.load(label, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ModelFileError(f"cannot read PyTorch model {label!r} (corrupt or not a torch.save file?): "
                             f"{type(e).__name__}: {e}") from e
    if isinstance(obj, dict):
        raise ModelFileError(f"{label!r} holds a state_dict, not a model: save the whole module "
                             f"(torch.save(model, path)) or export it to ONNX")
    if not isinstance(obj, torch.nn.Module):
        raise ModelFileError(f"{label!r} holds a {type(obj).__name__}, not a torch.nn.Module")
    return obj, label


@dataclass(frozen=True)
class _Ref:
    """A traced tensor: the IR node holding its value."""
    name: str


def _bind(args, kwargs, spec):
    """Match fx call arguments to ``spec`` = [(parameter, default), ...] (``...`` = required)."""
    out = {}
    for k, (p, default) in enumerate(spec):
        if k < len(args):
            out[p] = args[k]
        elif p in kwargs:
            out[p] = kwargs[p]
        elif default is ...:
            raise TypeError(f"missing argument {p!r}")
        else:
            out[p] = default
    return out


def _pair(v):
    return (int(v), int(v)) if isinstance(v, (int, float)) else tuple(int(x) for x in v)


def _np(t):
    """A parameter or buffer as a float64 NumPy array (float32 -> float64 is exact)."""
    return t.detach().cpu().double().numpy()


# Call signatures of the supported functions (first parameter: the input tensor).
_SIG = {
    "relu": [("input", ...), ("inplace", False)],
    "relu6": [("input", ...), ("inplace", False)],
    "hardtanh": [("input", ...), ("min_val", -1.0), ("max_val", 1.0), ("inplace", False)],
    "leaky_relu": [("input", ...), ("negative_slope", 0.01), ("inplace", False)],
    "max_pool2d": [("input", ...), ("kernel_size", ...), ("stride", None), ("padding", 0), ("dilation", 1),
                   ("ceil_mode", False), ("return_indices", False)],
    "avg_pool2d": [("input", ...), ("kernel_size", ...), ("stride", None), ("padding", 0), ("ceil_mode", False),
                   ("count_include_pad", True), ("divisor_override", None)],
    "adaptive_avg_pool2d": [("input", ...), ("output_size", ...)],
    "flatten": [("input", ...), ("start_dim", 0), ("end_dim", -1)],
    "add": [("input", ...), ("other", ...), ("alpha", 1)],
    "cat": [("tensors", ...), ("dim", 0)],
    "interpolate": [("input", ...), ("size", None), ("scale_factor", None), ("mode", "nearest"),
                    ("align_corners", None), ("recompute_scale_factor", None), ("antialias", False)],
    "dropout": [("input", ...), ("p", 0.5), ("training", True), ("inplace", False)],
    "prelu": [("input", ...), ("weight", ...)],
    "clamp": [("input", ...), ("min", None), ("max", None)],
    "pad": [("input", ...), ("pad", ...), ("mode", "constant"), ("value", None)],
    "adaptive_max_pool2d": [("input", ...), ("output_size", ...), ("return_indices", False)],
    "softmax": [("input", ...), ("dim", None), ("_stacklevel", 3), ("dtype", None)],
    "unary": [("input", ...)],
    "amax": [("input", ...), ("dim", ()), ("keepdim", False)],
    "binary": [("input", ...), ("other", ...), ("alpha", 1), ("rounding_mode", None)],
    "mean": [("input", ...), ("dim", None), ("keepdim", False), ("dtype", None)],
}


class _FxReader:
    """Walks an fx graph, emitting IR nodes through an :class:`_Assembler`."""

    def __init__(self, torch, gm, input_shape):
        self.torch, self.gm = torch, gm
        self.asm = _Assembler(input_shape, source="input")
        F = torch.nn.functional
        # fx records the Python callable; map each supported one to (signature, handler).
        self.functions = {
            operator.add: ("add", self._add), operator.iadd: ("add", self._add), torch.add: ("add", self._add),
            torch.relu: ("relu", self._relu), torch.relu_: ("relu", self._relu), F.relu: ("relu", self._relu),
            F.relu_: ("relu", self._relu), F.relu6: ("relu6", self._relu6), F.hardtanh: ("hardtanh", self._hardtanh),
            F.leaky_relu: ("leaky_relu", self._leaky),
            F.max_pool2d: ("max_pool2d", self._maxpool), torch.max_pool2d: ("max_pool2d", self._maxpool),
            F.avg_pool2d: ("avg_pool2d", self._avgpool),
            F.adaptive_avg_pool2d: ("adaptive_avg_pool2d", self._adaptive),
            torch.flatten: ("flatten", self._flatten), torch.cat: ("cat", self._cat),
            torch.concat: ("cat", self._cat), torch.concatenate: ("cat", self._cat),
            F.interpolate: ("interpolate", self._interpolate), F.dropout: ("dropout", self._identity),
            F.dropout2d: ("dropout", self._identity), torch.mean: ("mean", self._mean),
            torch.amax: ("amax", self._amax),
            F.prelu: ("prelu", self._prelu), torch.prelu: ("prelu", self._prelu),
            torch.clamp: ("clamp", self._clamp), torch.clip: ("clamp", self._clamp),
            F.pad: ("pad", self._pad), F.adaptive_max_pool2d: ("adaptive_max_pool2d", self._adaptive_max),
            F.softmax: ("softmax", self._host("softmax")), torch.softmax: ("softmax", self._host("softmax")),
            F.log_softmax: ("softmax", self._host("logsoftmax")),
            torch.log_softmax: ("softmax", self._host("logsoftmax")),
            torch.sigmoid: ("unary", self._host("sigmoid")), F.sigmoid: ("unary", self._host("sigmoid")),
            operator.sub: ("binary", self._arith("sub")), operator.mul: ("binary", self._arith("mul")),
            operator.truediv: ("binary", self._arith("div")), torch.sub: ("binary", self._arith("sub")),
            torch.mul: ("binary", self._arith("mul")), torch.div: ("binary", self._arith("div")),
        }
        self.methods = {
            "relu": ("relu", self._relu), "relu_": ("relu", self._relu), "flatten": ("flatten", self._flatten),
            "add": ("add", self._add), "add_": ("add", self._add), "mean": ("mean", self._mean),
            "contiguous": ([("input", ...)], self._identity),
            "clamp": ("clamp", self._clamp), "clip": ("clamp", self._clamp), "amax": ("amax", self._amax),
            "softmax": ("softmax", self._host("softmax")), "log_softmax": ("softmax", self._host("logsoftmax")),
            "sigmoid": ("unary", self._host("sigmoid")), "sub": ("binary", self._arith("sub")),
            "mul": ("binary", self._arith("mul")), "div": ("binary", self._arith("div")),
        }

    # -- entry ---------------------------------------------------------------------------------
    def run(self, name) -> Graph:
        env, inputs, out = {}, 0, None
        fx = self.torch.fx
        for node in self.gm.graph.nodes:
            self.cur = node
            if node.op == "placeholder":
                inputs += 1
                if inputs > 1:
                    raise UnsupportedOpError(f"the model takes more than one input (fx node {node.name!r}); "
                                             f"evhw takes exactly one")
                env[node] = _Ref(self.asm.input)
                continue
            if node.op == "output":
                out = fx.node.map_arg(node.args[0], lambda n: env[n])
                continue
            args = fx.node.map_arg(node.args, lambda n: env[n])
            kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
            env[node] = self._call(node, args, kwargs)
        outs = list(out) if isinstance(out, (tuple, list)) else [out]
        if not outs or not all(isinstance(o, _Ref) for o in outs):
            raise UnsupportedOpError(f"the model must return a tensor (or a tuple of tensors) computed from its "
                                     f"input, not {out!r}")
        return self.asm.graph([o.name for o in outs], name)

    def _call(self, node, args, kwargs):
        if node.op == "get_attr":
            # A parameter or buffer read directly: only usable where a constant is accepted.
            return functools.reduce(getattr, node.target.split("."), self.gm)
        if node.op == "call_module":
            mod = self.gm.get_submodule(node.target)
            self.what = type(mod).__name__
            return self._module(mod, args, kwargs)
        if node.op == "call_function":
            t = node.target
            self.what = getattr(t, "__name__", repr(t))
            if t is getattr:
                return self._getattr(args)
            if t is operator.getitem:
                if isinstance(args[0], _Ref):
                    raise self._unsupported("indexing or slicing a tensor")
                return args[0][args[1]]
            entry = self.functions.get(t)
        else:   # call_method
            self.what = f"Tensor.{node.target}"
            if node.target == "size":
                return self._size(*args, **kwargs)
            if node.target == "dim":
                return len(self._shape(args[0])) + 1
            if node.target in ("view", "reshape"):
                return self._view(args)
            entry = self.methods.get(node.target)
        if entry is None:
            raise self._unsupported()
        spec, handler = entry
        try:
            a = _bind(args, kwargs, _SIG[spec] if isinstance(spec, str) else spec)
        except TypeError as e:
            raise self._unsupported(str(e)) from e
        return handler(a)

    def _unsupported(self, why=""):
        node = self.cur
        where = f" (module {node.target!r})" if node.op == "call_module" else ""
        msg = f"unsupported torch op {self.what!r}{where} at fx node {node.name!r}"
        return UnsupportedOpError(msg + (f": {why}" if why else ""))

    def _emit(self, op, inputs, attrs=None, params=None):
        node = self.cur
        src = node.target if node.op == "call_module" else node.name
        return _Ref(self.asm.add(op, [self._t(i) for i in inputs], attrs, params, name=node.name, source=src))

    def _t(self, v):
        if not isinstance(v, _Ref):
            raise self._unsupported(f"an operand is a constant ({type(v).__name__}), not a tensor computed "
                                    f"from the input")
        return v.name

    def _shape(self, v):
        return self.asm.shape(self._t(v))

    # -- modules -------------------------------------------------------------------------------
    def _module(self, m, args, kwargs):
        nn = self.torch.nn
        x = args[0] if args else next(iter(kwargs.values()), None)
        if isinstance(m, nn.Conv2d):
            return self._conv(m, x)
        if isinstance(m, nn.Linear):
            bias = {"bias": _np(m.bias)} if m.bias is not None else {}
            return self._emit("linear", [x], {}, {"weight": _np(m.weight)} | bias)
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.SyncBatchNorm)):
            return self._batchnorm(m, x)
        if isinstance(m, nn.ReLU):
            return self._emit("relu", [x])
        if isinstance(m, nn.Hardtanh):          # nn.ReLU6 is a Hardtanh(0, 6)
            return self._hardtanh(dict(input=x, min_val=m.min_val, max_val=m.max_val))
        if isinstance(m, nn.LeakyReLU):
            return self._emit("leakyrelu", [x], {"alpha": float(m.negative_slope)})
        if isinstance(m, nn.PReLU):
            return self._prelu(dict(input=x, weight=m.weight))
        if isinstance(m, (nn.ZeroPad2d, nn.ConstantPad2d)):
            return self._pad(dict(input=x, pad=m.padding, mode="constant", value=getattr(m, "value", 0.0)))
        if isinstance(m, nn.AdaptiveMaxPool2d):
            return self._adaptive_max(dict(input=x, output_size=m.output_size, return_indices=m.return_indices))
        if isinstance(m, (nn.Softmax, nn.LogSoftmax)):
            op = "softmax" if isinstance(m, nn.Softmax) else "logsoftmax"
            return self._host(op)(dict(input=x, dim=m.dim))
        if isinstance(m, nn.Sigmoid):
            return self._host("sigmoid")(dict(input=x))
        if isinstance(m, nn.MaxPool2d):
            return self._maxpool(dict(input=x, kernel_size=m.kernel_size, stride=m.stride, padding=m.padding,
                                      dilation=m.dilation, ceil_mode=m.ceil_mode, return_indices=m.return_indices))
        if isinstance(m, nn.AvgPool2d):
            return self._avgpool(dict(input=x, kernel_size=m.kernel_size, stride=m.stride, padding=m.padding,
                                      ceil_mode=m.ceil_mode, count_include_pad=m.count_include_pad,
                                      divisor_override=m.divisor_override))
        if isinstance(m, nn.AdaptiveAvgPool2d):
            return self._adaptive(dict(input=x, output_size=m.output_size))
        if isinstance(m, nn.Flatten):
            return self._flatten(dict(input=x, start_dim=m.start_dim, end_dim=m.end_dim))
        if isinstance(m, nn.Upsample):
            return self._interpolate(dict(input=x, size=m.size, scale_factor=m.scale_factor, mode=m.mode))
        if isinstance(m, (nn.Identity, nn.modules.dropout._DropoutNd)):
            return self._identity(dict(input=x))
        raise self._unsupported()

    def _conv(self, m, x):
        if m.padding_mode != "zeros":
            raise self._unsupported(f"padding_mode={m.padding_mode!r} (only 'zeros')")
        kh, kw = m.kernel_size
        dh, dw = m.dilation
        if m.padding == "valid":
            pads = (0, 0, 0, 0)
        elif m.padding == "same":
            # PyTorch puts the odd padding pixel at the bottom / right.
            th, tw = dh * (kh - 1), dw * (kw - 1)
            pads = (th // 2, tw // 2, th - th // 2, tw - tw // 2)
        else:
            ph, pw = _pair(m.padding)
            pads = (ph, pw, ph, pw)
        params = {"weight": _np(m.weight)} | ({"bias": _np(m.bias)} if m.bias is not None else {})
        return self._emit("conv", [x], dict(stride=tuple(m.stride), padding=pads, dilation=(dh, dw),
                                            groups=int(m.groups)), params)

    def _batchnorm(self, m, x):
        if m.running_mean is None or m.running_var is None:
            raise self._unsupported("BatchNorm without running statistics (track_running_stats=False)")
        c = m.num_features
        gamma = _np(m.weight) if m.weight is not None else np.ones(c)
        beta = _np(m.bias) if m.bias is not None else np.zeros(c)
        return self._emit("batchnorm", [x], {"eps": float(m.eps)},
                          dict(gamma=gamma, beta=beta, mean=_np(m.running_mean), var=_np(m.running_var)))

    # -- functions -----------------------------------------------------------------------------
    def _identity(self, a):
        self._t(a["input"])
        return a["input"]

    def _relu(self, a):
        return self._emit("relu", [a["input"]])

    def _relu6(self, a):
        return self._emit("relu6", [a["input"]])

    def _hardtanh(self, a):
        lo, hi = float(a["min_val"]), float(a["max_val"])
        return self._clip(a["input"], lo, hi)

    def _clip(self, x, lo, hi):
        if (lo, hi) == (0.0, 6.0):
            return self._emit("relu6", [x])
        if (lo, hi) == (0.0, np.inf):
            return self._emit("relu", [x])
        if not lo < hi:
            raise self._unsupported(f"clamp(min={lo}, max={hi}) needs min < max")
        return self._emit("clip", [x], {"min": lo, "max": hi})

    def _clamp(self, a):
        for k in ("min", "max"):
            if isinstance(a[k], _Ref) or hasattr(a[k], "shape"):
                raise self._unsupported(f"{k} must be a number, not a tensor")
        lo = -np.inf if a["min"] is None else float(a["min"])
        hi = np.inf if a["max"] is None else float(a["max"])
        return self._clip(a["input"], lo, hi)

    def _prelu(self, a):
        c = self._shape(a["input"])[0]
        w = a["weight"]
        if isinstance(w, _Ref):
            raise self._unsupported("the slope is computed from the input, not a parameter")
        slope = _np(w).reshape(-1)
        if slope.size not in (1, c):
            raise self._unsupported(f"{slope.size} slopes for {c} channels")
        return self._emit("prelu", [a["input"]], {}, {"slope": np.broadcast_to(slope, (c,)).copy()})

    def _pad(self, a):
        p = a["pad"]
        p = (int(p),) * 4 if isinstance(p, int) else tuple(int(v) for v in p)
        value = 0.0 if a["value"] is None else float(a["value"])
        if a["mode"] != "constant" or value != 0.0:
            raise self._unsupported(f"pad mode={a['mode']!r} value={value} (only constant 0)")
        if len(self._shape(a["input"])) != 3 or len(p) not in (2, 4):
            raise self._unsupported(f"pad {p}; only H and W of an (N, C, H, W) tensor")
        l_, r_, t_, b_ = p if len(p) == 4 else (p[0], p[1], 0, 0)
        if min(p) < 0:
            raise self._unsupported(f"negative pad {p} (cropping)")
        return self._emit("pad", [a["input"]], {"pads": (t_, l_, b_, r_)})

    def _adaptive_max(self, a):
        size = a["output_size"]
        if a.get("return_indices"):
            raise self._unsupported("return_indices=True")
        if (size if isinstance(size, (tuple, list)) else (size, size)) not in ((1, 1), [1, 1]) and size != 1:
            raise self._unsupported(f"output size {size} (only 1: a global max-pool)")
        return self._emit("globalmaxpool", [a["input"]])

    def _host(self, op):
        def handler(a):
            shape = self._shape(a["input"])
            if op != "sigmoid":
                dim = a.get("dim")
                if dim is None or int(dim) % (len(shape) + 1) != 1:
                    raise self._unsupported(f"dim={dim} (only the channel / feature dim 1)")
            return self._emit(op, [a["input"]])
        return handler

    def _arith(self, op):
        """``x (op) constant`` or ``constant (op) x`` with a number or a per-channel constant: an affine."""
        def handler(a):
            x, c = a["input"], a["other"]
            if a.get("alpha", 1) != 1 or a.get("rounding_mode") is not None:
                raise self._unsupported(f"alpha={a.get('alpha', 1)}, rounding_mode={a.get('rounding_mode')!r}")
            first = isinstance(x, _Ref)
            if not first and not isinstance(c, _Ref):
                raise self._unsupported("no operand is computed from the input")
            if first and isinstance(c, _Ref):
                if op == "mul" or op == "div":
                    raise self._unsupported(f"{op} of two computed tensors")
                raise self._unsupported("subtracting two computed tensors")
            if not first:
                x, c = c, x
                if op == "div":
                    raise self._unsupported("dividing by a computed tensor")
            shape = self._shape(x)
            cv = np.asarray(_np(c) if hasattr(c, "detach") else c, dtype=np.float64)
            ch = shape[0]
            if cv.ndim > len(shape) + 1 or cv.size not in (1, ch) or (cv.size == ch > 1 and (
                    cv.ndim < len(shape) or cv.shape[cv.ndim - len(shape)] != ch)):
                raise self._unsupported(f"constant of shape {cv.shape} is not a number or per-channel")
            cv = np.broadcast_to(cv.reshape(-1), (ch,)).copy()
            ones = np.ones(ch)
            if op == "add":
                mul, add = ones, cv
            elif op == "sub":
                mul, add = (ones, -cv) if first else (-ones, cv)
            elif op == "mul":
                mul, add = cv, np.zeros(ch)
            else:
                if np.any(cv == 0):
                    raise self._unsupported("division by zero")
                mul, add = 1.0 / cv, np.zeros(ch)
            return self._emit("affine", [x], {}, {"mul": mul, "add": add})
        return handler

    def _leaky(self, a):
        return self._emit("leakyrelu", [a["input"]], {"alpha": float(a["negative_slope"])})

    def _window(self, a, ceil_ok=False):
        """IR kernel / stride / padding / dilation from PyTorch pooling arguments."""
        k = _pair(a["kernel_size"])
        s = k if a["stride"] is None or a["stride"] == [] or a["stride"] == () else _pair(a["stride"])
        p = _pair(a["padding"])
        d = _pair(a.get("dilation", 1))
        shape = self._shape(a["input"])
        if len(shape) != 3:
            raise self._unsupported(f"input shape {shape} is not (C, H, W)")
        ceil = bool(a["ceil_mode"]) and not all(ceil_matches_floor(shape[1 + i], k[i], s[i], p[i], p[i], d[i])
                                                for i in range(2))
        if ceil and not ceil_ok:
            raise self._unsupported("ceil_mode=True (changes the output size here)")
        return dict(kernel=k, stride=s, padding=(p[0], p[1], p[0], p[1])) | ({"ceil_mode": True} if ceil else {}), d

    def _maxpool(self, a):
        if a["return_indices"]:
            raise self._unsupported("return_indices=True")
        attrs, d = self._window(a, ceil_ok=True)
        return self._emit("maxpool", [a["input"]], attrs | {"dilation": d})

    def _avgpool(self, a):
        if a["divisor_override"] is not None:
            raise self._unsupported("divisor_override")
        attrs, _ = self._window(a)
        if any(attrs["padding"]) and not a["count_include_pad"]:
            raise self._unsupported("padding with count_include_pad=False (padded taps must count)")
        return self._emit("avgpool", [a["input"]], attrs)

    def _adaptive(self, a):
        c, h, w = self._shape(a["input"])
        size = a["output_size"]
        oh, ow = (size, size) if isinstance(size, int) else tuple(size)
        oh, ow = h if oh is None else oh, w if ow is None else ow
        if (oh, ow) == (1, 1):
            return self._emit("globalavgpool", [a["input"]])
        if h % oh or w % ow:
            raise self._unsupported(f"output size {(oh, ow)} does not divide the input {(h, w)}")
        if (oh, ow) == (h, w):
            return a["input"]
        k = (h // oh, w // ow)      # evenly dividing adaptive pooling is a plain average pool
        return self._emit("avgpool", [a["input"]], dict(kernel=k, stride=k, padding=0))

    def _mean(self, a):
        return self._spatial_reduce(a, "globalavgpool", "mean")

    def _amax(self, a):
        return self._spatial_reduce(a, "globalmaxpool", "amax")

    def _spatial_reduce(self, a, op, what):
        shape = self._shape(a["input"])
        dims = a["dim"]
        dims = sorted(int(d) % (len(shape) + 1) for d in ((dims,) if isinstance(dims, int) else dims or ()))
        if len(shape) != 3 or dims != [2, 3]:
            raise self._unsupported(f"{what} over dims {a['dim']} (only the spatial dims 2, 3)")
        out = self._emit(op, [a["input"]])
        if a["keepdim"]:
            return out
        return _Ref(self.asm.add("flatten", [out.name], name=self.cur.name + "_flat", source=self.cur.name))

    def _flatten(self, a):
        shape = self._shape(a["input"])
        rank = len(shape) + 1
        if a["start_dim"] % rank != 1 or a["end_dim"] % rank != rank - 1:
            raise self._unsupported(f"flatten(start_dim={a['start_dim']}, end_dim={a['end_dim']}); "
                                    f"only flatten(1) keeps the batch axis")
        return a["input"] if len(shape) == 1 else self._emit("flatten", [a["input"]])

    def _view(self, args):
        x, target = args[0], args[1:]
        if len(target) == 1 and isinstance(target[0], (tuple, list)):
            target = tuple(target[0])
        shape = self._shape(x)
        feats = int(np.prod(shape))
        # The leading dim must be the batch: x.size(0), -1, or a batch of 1 baked in by the author.
        head_ok = bool(target) and (isinstance(target[0], _Batch) or target[0] in (1, -1))
        if len(target) == 2 and head_ok and target[1] in (-1, feats) and list(target) != [-1, -1]:
            return self._flatten(dict(input=x, start_dim=1, end_dim=-1))
        if len(target) == len(shape) + 1 and head_ok and all(t in (-1, s) for t, s in zip(target[1:], shape)):
            return x
        raise self._unsupported(f"reshape of {(BATCH,) + tuple(shape)} to {tuple(target)}; only flattening "
                                f"to (batch, -1)")

    def _size(self, x, dim=None):
        full = (BATCH,) + tuple(self._shape(x))
        return full if dim is None else full[dim]

    def _getattr(self, args):
        obj, attr = args[0], args[1]
        if isinstance(obj, _Ref) and attr == "shape":
            return self._size(obj)
        raise self._unsupported(f"attribute {attr!r}")

    def _add(self, a):
        if a["alpha"] != 1:
            raise self._unsupported(f"alpha={a['alpha']}")
        if not (isinstance(a["input"], _Ref) and isinstance(a["other"], _Ref)):
            return self._arith("add")(a)
        return self._emit("add", [a["input"], a["other"]])

    def _cat(self, a):
        xs = list(a["tensors"])
        rank = len(self._shape(xs[0])) + 1
        if int(a["dim"]) % rank != 1:
            raise self._unsupported(f"dim={a['dim']} (only the channel dim 1)")
        return self._emit("concat", xs)

    def _interpolate(self, a):
        mode = a["mode"]
        if mode not in ("nearest", "nearest-exact"):   # both repeat pixels for integer factors
            raise self._unsupported(f"mode={mode!r} (only nearest)")
        shape = self._shape(a["input"])
        if len(shape) != 3:
            raise self._unsupported(f"input shape {shape} is not (C, H, W)")
        if a["scale_factor"] is not None:
            sf = a["scale_factor"]
            f = (float(sf), float(sf)) if isinstance(sf, (int, float)) else tuple(float(v) for v in sf)
        elif a["size"] is not None:
            size = _pair(a["size"])
            f = (size[0] / shape[1], size[1] / shape[2])
        else:
            raise self._unsupported("neither size nor scale_factor")
        if len(f) != 2 or any(v < 1 or v != int(v) for v in f):
            raise self._unsupported(f"scale {f}; only integer factors >= 1")
        return self._emit("upsample", [a["input"]], {"scale": (int(f[0]), int(f[1]))})
