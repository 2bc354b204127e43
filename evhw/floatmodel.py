"""Float reference executor for :class:`evhw.ir.Graph` (float64 NumPy).

Takes raw pixels: the network input is ``(pixel / 255 - mean) / std`` per channel (mean 0, std 1
unless the graph says otherwise). Used for calibration and as the accuracy reference.
"""
from __future__ import annotations

import numpy as np

from . import ops
from .ir import HOST_OPS, Graph, pads4, pair, pool_window


def preprocess(graph: Graph, pixels):
    x = np.asarray(pixels, dtype=np.float64) / 255.0
    shape = graph.input.attrs["shape"]
    if graph.input_mean is not None:
        mean = np.asarray(graph.input_mean, dtype=np.float64)
        std = np.asarray(graph.input_std if graph.input_std is not None else np.ones_like(mean), dtype=np.float64)
        bshape = (1, -1) + (1,) * (len(shape) - 1)
        x = (x - mean.reshape(bshape)) / std.reshape(bshape)
    return x


def _per_channel(p, x):
    return np.asarray(p, dtype=np.float64).reshape((1, -1) + (1,) * (x.ndim - 2))


def host_op(op, x, *, batched=False):
    """A host op (softmax, logsoftmax, sigmoid) over the channel / feature axis, in float64.

    ``x`` is one frame (axis 0 is channels or features), or a batch with ``batched``.
    """
    x = np.asarray(x, dtype=np.float64)
    ax = 1 if batched else 0
    if op == "sigmoid":
        return 0.5 * (1.0 + np.tanh(0.5 * x))        # = 1 / (1 + exp(-x)), without overflow
    z = x - x.max(axis=ax, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=ax, keepdims=True))
    if op == "logsoftmax":
        return z - lse
    if op == "softmax":
        return np.exp(z - lse)
    raise AssertionError(op)


def run_float(graph: Graph, pixels, *, keep=None):
    """Run a batch ``(N, *input_shape)`` of raw pixel frames. Returns ``{node name: array}``.

    ``keep`` limits the returned dict to these names (all nodes by default).
    """
    vals = {}
    for n in graph.nodes:
        a = n.attrs
        xs = [vals[i] for i in n.inputs]
        if n.op == "input":
            y = preprocess(graph, pixels)
        elif n.op == "conv":
            y = ops.conv2d(xs[0], n.params["weight"], stride=pair(a.get("stride", 1)), pads=pads4(a.get("padding", 0)),
                           dilation=pair(a.get("dilation", 1)), groups=int(a.get("groups", 1)))
            if "bias" in n.params:
                y = y + n.params["bias"].reshape(1, -1, 1, 1)
        elif n.op == "linear":
            y = xs[0] @ n.params["weight"].T
            if "bias" in n.params:
                y = y + n.params["bias"]
        elif n.op == "batchnorm":
            p = n.params
            scale = p["gamma"] / np.sqrt(p["var"] + a.get("eps", 1e-5))
            shift = p["beta"] - p["mean"] * scale
            bshape = (1, -1) + (1,) * (xs[0].ndim - 2)
            y = xs[0] * scale.reshape(bshape) + shift.reshape(bshape)
        elif n.op == "relu":
            y = np.maximum(xs[0], 0)
        elif n.op == "relu6":
            y = np.clip(xs[0], 0, 6)
        elif n.op == "leakyrelu":
            y = np.where(xs[0] >= 0, xs[0], xs[0] * a["alpha"])
        elif n.op == "prelu":
            y = np.where(xs[0] >= 0, xs[0], xs[0] * _per_channel(n.params["slope"], xs[0]))
        elif n.op == "clip":
            y = np.clip(xs[0], float(a.get("min", -np.inf)), float(a.get("max", np.inf)))
        elif n.op == "affine":
            y = xs[0] * _per_channel(n.params["mul"], xs[0]) + _per_channel(n.params["add"], xs[0])
        elif n.op == "pad":
            y = ops.pad_zero(xs[0], pads4(a["pads"]))
        elif n.op == "maxpool":
            k, s, p, d = pool_window(a, xs[0].shape[2:])
            y = ops.pool2d(xs[0], kernel=k, stride=s, pads=p, dilation=d, mode="max")
        elif n.op == "globalmaxpool":
            y = xs[0].max(axis=(2, 3), keepdims=True)
        elif n.op == "avgpool":
            k = pair(a["kernel"])
            y = ops.pool2d(xs[0], kernel=k, stride=pair(a.get("stride", a["kernel"])),
                           pads=pads4(a.get("padding", 0)), mode="sum") / (k[0] * k[1])
        elif n.op == "globalavgpool":
            y = xs[0].mean(axis=(2, 3), keepdims=True)
        elif n.op == "flatten":
            y = xs[0].reshape(xs[0].shape[0], -1)
        elif n.op == "add":
            y = xs[0] + xs[1]
        elif n.op == "concat":
            y = np.concatenate(xs, axis=1)
        elif n.op == "upsample":
            y = ops.upsample_nearest(xs[0], pair(a["scale"]))
        elif n.op in HOST_OPS:
            y = host_op(n.op, xs[0], batched=True)
        else:  # pragma: no cover - infer_shapes rejects unknown ops first
            raise AssertionError(n.op)
        vals[n.name] = y
    if keep is not None:
        return {k: vals[k] for k in keep}
    return vals
