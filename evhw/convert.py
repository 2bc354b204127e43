"""Float graph -> quantized EvNet (:class:`evhw.qnet.QNet`): post-training quantization + EvNet placement.

Steps: fold BatchNorm into the preceding conv/linear; cut the graph into accumulator segments
(a linear op followed by the value-domain ops it alone feeds); calibrate activation scales on
sample frames; quantize weights per output channel with the input scales folded in; derive
requantization multipliers and the accumulator width that provably cannot overflow.
See docs/semantics.md for every rounding and width decision.
"""
from __future__ import annotations

import numpy as np

from .errors import AccumulatorWidthError, ConfigError, QuantizationError, ShapeError, UnsupportedOpError
from .floatmodel import run_float
from .ir import ACT_OF_OP, HOST_OPS, VALUE_OPS, Graph, pads4, pair, pool_window
from .qnet import MAX_ACC_BITS, MULT_BITS, QLayer, QNet, QTensor, QView, Term, acc_bits_needed, accumulator_bound

LINEAR_OPS = ("conv", "linear", "avgpool", "globalavgpool", "add", "affine")
VIEW_OPS = ("flatten", "concat", "upsample")
ADD_FRAC_BITS = 10      # add: operand multipliers are integers with 10 fractional bits of precision
WEIGHT_BITS = (2, 16)   # supported weight widths (inclusive)
ACT_BITS = (2, 16)      # supported activation widths (inclusive)
LEAKY_SHIFT = 7         # LeakyReLU slope = num / 2**7 (0.1 -> 13/128)
PRELU_SHIFT = 10        # PReLU slopes = num_c / 2**10, |num_c| < 2**15


def _drop(g: Graph, node, into):
    """Remove ``node`` from ``g``, rerouting its readers (and an output naming it) to ``into``."""
    for c in g.consumers(node.name):
        c.inputs = [into if i == node.name else i for i in c.inputs]
    if g.output == node.name:
        g.output = into
    g.extra_outputs = [into if o == node.name else o for o in g.extra_outputs]
    g.nodes.remove(node)
    del g.by_name[node.name]


def _foldable_into(g: Graph, prod):
    return prod.op in ("conv", "linear") and len(g.consumers(prod.name)) == 1 and prod.name not in g.outputs


def fold_batchnorm(graph: Graph) -> Graph:
    """Simplify a float graph before conversion (each step exact in real arithmetic):

    * BatchNorm folds into the conv/linear that alone feeds it (|gamma| recorded as ``bn_gamma``);
      any other BatchNorm becomes a per-channel ``affine`` (a standalone BatchNorm);
    * consecutive ``affine`` nodes (constant Mul/Div/Add/Sub) compose into one, which folds into the
      conv/linear that alone feeds it, or else into the linear / unpadded conv that alone reads it;
    * a zero ``pad`` folds into the padding of the conv or average pool that alone reads it.
    """
    g = graph.copy()
    for bn in [n for n in g.nodes if n.op == "batchnorm"]:
        p = bn.params
        scale = p["gamma"] / np.sqrt(p["var"] + bn.attrs.get("eps", 1e-5))
        prod = g.node(bn.inputs[0])
        if not _foldable_into(g, prod):
            bn.op, bn.attrs = "affine", {"bn_gamma": np.abs(p["gamma"]).tolist()}
            bn.params = {"mul": scale, "add": p["beta"] - p["mean"] * scale}
            continue
        w = prod.params["weight"]
        prod.params["weight"] = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
        b = prod.params.get("bias", np.zeros(w.shape[0]))
        prod.params["bias"] = (b - p["mean"]) * scale + p["beta"]
        prod.attrs["bn_gamma"] = np.abs(p["gamma"]).tolist()
        _drop(g, bn, prod.name)
    for af in [n for n in g.nodes if n.op == "affine"]:
        prod = g.node(af.inputs[0])
        if prod.op == "affine" and len(g.consumers(prod.name)) == 1 and prod.name not in g.outputs:
            # two affines in a row (x * k + c exported as Mul then Add): one affine
            prod.params = {"mul": prod.params["mul"] * af.params["mul"],
                           "add": prod.params["add"] * af.params["mul"] + af.params["add"]}
            _drop(g, af, prod.name)
            continue
    for af in [n for n in g.nodes if n.op == "affine"]:
        prod = g.node(af.inputs[0])
        if not _foldable_into(g, prod):
            continue
        w, mul = prod.params["weight"], af.params["mul"]
        prod.params["weight"] = w * mul.reshape((-1,) + (1,) * (w.ndim - 1))
        prod.params["bias"] = prod.params.get("bias", np.zeros(w.shape[0])) * mul + af.params["add"]
        _drop(g, af, prod.name)
    for af in [n for n in g.nodes if n.op == "affine"]:
        # otherwise forward, into the linear or unpadded conv that alone reads it (exact: no padded taps)
        cons = g.consumers(af.name)
        c = cons[0] if len(cons) == 1 else None
        if af.name in g.outputs or c is None or not (
                c.op == "linear" or (c.op == "conv" and not any(pads4(c.attrs.get("padding", 0))))):
            continue
        w = c.params["weight"]
        mul, add = af.params["mul"], af.params["add"]
        if c.op == "conv":
            groups = int(c.attrs.get("groups", 1))
            cin = (np.arange(w.shape[0])[:, None] // (w.shape[0] // groups)) * w.shape[1] + np.arange(w.shape[1])
            shp = cin.shape + (1, 1)
            c.params["bias"] = c.params.get("bias", np.zeros(w.shape[0])) + (w * add[cin].reshape(shp)).sum(
                axis=(1, 2, 3))
            c.params["weight"] = w * mul[cin].reshape(shp)
        else:
            c.params["bias"] = c.params.get("bias", np.zeros(w.shape[0])) + w @ add
            c.params["weight"] = w * mul[None, :]
        _drop(g, af, af.inputs[0])
    for pad in [n for n in g.nodes if n.op == "pad"]:
        cons = g.consumers(pad.name)
        if len(cons) != 1 or pad.name in g.outputs or cons[0].op not in ("conv", "avgpool"):
            raise UnsupportedOpError(f"zero padding at {pad.where()} must feed exactly one conv or average pool "
                                     f"(it is folded into that layer's padding)")
        c = cons[0]
        key = "padding"
        c.attrs[key] = tuple(a + b for a, b in zip(pads4(c.attrs.get(key, 0)), pads4(pad.attrs["pads"])))
        _drop(g, pad, pad.inputs[0])
    return g.infer_shapes()


def reference_graph(graph: Graph, q: QNet) -> Graph:
    """The float graph as the converter saw it (normalization set, BatchNorm folded): every
    ``QLayer.float_node`` names a node of it, for per-layer float comparisons."""
    g = graph.copy()
    g.input_mean, g.input_std = q.input_mean, q.input_std
    return fold_batchnorm(g.infer_shapes())


def _segments(g: Graph):
    """Plan: list of ('layer', head, [absorbed value nodes]) / ('view', node) in topological order."""
    plan, absorbed = [], set()
    for n in g.nodes:
        if n.op == "input" or n.name in absorbed:
            continue
        if n.op in VIEW_OPS:
            plan.append(("view", n, []))
            continue
        if n.op in HOST_OPS:        # Graph.infer_shapes checked it ends an output; applied on the host
            continue
        if n.op not in LINEAR_OPS + VALUE_OPS:
            raise UnsupportedOpError(f"unsupported op {n.op!r} at {n.where()}")
        chain, cur = ([n] if n.op in VALUE_OPS else []), n
        while cur.name not in g.outputs:
            cons = g.consumers(cur.name)
            if len(cons) != 1 or cons[0].op not in VALUE_OPS:
                break
            cur = cons[0]
            chain.append(cur)
            absorbed.add(cur.name)
        plan.append(("layer", n, chain))
    return plan


def _act_key(node):
    """What makes two activation nodes equal (so repeating one is idempotent)."""
    if node.op == "prelu":
        return tuple(np.asarray(node.params["slope"]).tolist())
    return tuple(sorted((k, float(v)) for k, v in node.attrs.items() if k in ("alpha", "min", "max")))


def _monotone(node):
    """Is the activation non-decreasing (so it commutes with max-pooling)?"""
    if node.op == "leakyrelu":
        return node.attrs["alpha"] >= 0
    if node.op == "prelu":
        return bool(np.all(np.asarray(node.params["slope"]) >= 0))
    return True


def _pool(g: Graph, c):
    """The QLayer pool dict of a maxpool / globalmaxpool node (ceil mode folded into end padding)."""
    hw = tuple(g.node(c.inputs[0]).shape[1:])
    if c.op == "globalmaxpool":
        return dict(kernel=hw, stride=hw, pads=(0, 0, 0, 0), dilation=(1, 1))
    k, s, p, d = pool_window(c.attrs, hw)
    return dict(kernel=k, stride=s, pads=p, dilation=d)


def _qrange(bits, signed):
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def _numbers(v):
    """Numbers for a message: ``0.5`` or ``0.1,0.2`` (never a NumPy repr such as ``np.float64(0.5)``)."""
    if v is None:
        return "none"
    try:
        a = np.asarray(v, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        return str(v)
    return ",".join(f"{x:g}" for x in a)


def requant_params(ratio):
    """Integer (M, S) with M / 2**S ~= ratio, M in [2**14, 2**15). Rounding: see requantize()."""
    ratio = np.asarray(ratio, dtype=np.float64)
    if np.any(ratio <= 0) or np.any(~np.isfinite(ratio)):
        raise QuantizationError(f"requantization ratio must be positive and finite, not {_numbers(ratio)}")
    e = np.floor(np.log2(ratio)).astype(np.int64)
    shift = (MULT_BITS - 1) - e
    mult = np.rint(ratio * np.exp2(shift.astype(np.float64))).astype(np.int64)
    over = mult >= (1 << MULT_BITS)               # rounding up to 2**15
    mult[over] >>= 1
    shift[over] -= 1
    if np.any(shift < 0) or np.any(shift > 62):
        raise QuantizationError(f"requantization ratio {ratio.max():.3g} out of range")
    return mult, shift


def convert(graph: Graph, calib_frames, *, weight_bits=8, act_bits=8, acc_bits=None,
            input_mean=None, input_std=None, threshold=0.0, input_threshold=None, bn_scale=False) -> QNet:
    """Quantize and convert ``graph``, calibrating on ``calib_frames`` (N x input shape, raw pixels)."""
    if not WEIGHT_BITS[0] <= int(weight_bits) <= WEIGHT_BITS[1]:
        raise ConfigError(f"weight bits (--weight-bits) must be {WEIGHT_BITS[0]}..{WEIGHT_BITS[1]}, not {weight_bits}")
    if not ACT_BITS[0] <= int(act_bits) <= ACT_BITS[1]:
        raise ConfigError(f"activation bits (--act-bits) must be {ACT_BITS[0]}..{ACT_BITS[1]}, not {act_bits}")
    if acc_bits is not None and not 2 <= int(acc_bits) <= MAX_ACC_BITS:
        raise ConfigError(f"accumulator bits (--acc-bits) must be 2..{MAX_ACC_BITS}, not {acc_bits}")
    g = graph.copy()
    if input_mean is not None or input_std is not None:
        c = g.input.attrs["shape"][0]
        try:
            mean = np.broadcast_to(np.asarray(input_mean if input_mean is not None else 0.0, float), (c,))
            std = np.broadcast_to(np.asarray(input_std if input_std is not None else 1.0, float), (c,))
        except (ValueError, TypeError):
            need = "1 value" if c == 1 else f"1 or {c} values (one per input channel)"
            raise ConfigError(f"--input-mean/--input-std need {need}, not {_numbers(input_mean)} / "
                              f"{_numbers(input_std)}") from None
        if not np.all(np.isfinite(mean)) or not np.all(np.isfinite(std)) or np.any(std <= 0):
            raise ConfigError(f"--input-mean must be finite and --input-std positive and finite, not "
                              f"{_numbers(mean)} / {_numbers(std)}")
        g.input_mean, g.input_std = tuple(mean.tolist()), tuple(std.tolist())
    g = fold_batchnorm(g.infer_shapes())
    in_shape = g.input.attrs["shape"]
    calib = np.asarray(calib_frames)
    if calib.shape[1:] != tuple(in_shape):
        raise ShapeError(f"calibration frames have shape {calib.shape[1:]}, the model takes {tuple(in_shape)}")
    plan = _segments(g)
    # each output is read out before a closing host op (softmax...), which runs on the host
    out_nodes = [g.node(o).inputs[0] if g.node(o).op in HOST_OPS else o for o in g.outputs]
    keep = [n.name for _, n, _ in plan] + [ch[-1].name for k, _, ch in plan if ch]
    fvals = run_float(g, calib, keep=keep)

    # Input tensor: raw pixels. real = (x - 255*mean) / (255*std).
    cin = in_shape[0]
    mean = np.asarray(g.input_mean if g.input_mean is not None else np.zeros(cin))
    std = np.asarray(g.input_std if g.input_std is not None else np.ones(cin))
    tin = QTensor("input", tuple(in_shape), 1.0 / (255.0 * std), 0, 255)
    tensors = {"input": tin}
    zps = {"input": 255.0 * mean} if g.input_mean is not None else {}   # zero points (normalized input only)
    float_of = {g.input.name: "input"}        # float node -> tensor name holding its value
    wmax = (1 << (weight_bits - 1)) - 1
    steps = []
    readers = {}
    for kind, n, chain in plan:
        for i in n.inputs:
            readers.setdefault(i, []).append(n.name)

    def src_tensor(name, user):
        if name not in float_of:
            raise UnsupportedOpError(f"{user.where()} reads {name!r}, which evhw cannot route")
        return tensors[float_of[name]]

    for kind, n, chain in plan:
        if kind == "view":
            srcs = [src_tensor(i, n) for i in n.inputs]
            rep = 1
            if n.op == "concat":
                scale = np.concatenate([s.scale for s in srcs])
                lo, hi = min(s.lo for s in srcs), max(s.hi for s in srcs)
                attrs = {}
            elif n.op == "upsample":
                scale, lo, hi, attrs = srcs[0].scale, srcs[0].lo, srcs[0].hi, {"scale": pair(n.attrs["scale"])}
            else:
                s0 = srcs[0]
                rep = int(np.prod(s0.shape[1:])) if len(s0.shape) == 3 else 1
                scale, lo, hi, attrs = np.repeat(s0.scale, rep), s0.lo, s0.hi, {}
            zsrc = [zps.get(x.name) for x in srcs]
            if any(z is not None for z in zsrc):
                zfull = [z if z is not None else np.zeros(x.shape[0]) for z, x in zip(zsrc, srcs)]
                zps[n.name] = (np.concatenate(zfull) if n.op == "concat" else
                               np.repeat(zfull[0], rep) if n.op == "flatten" else zfull[0])
            t = QTensor(n.name, tuple(n.shape), np.asarray(scale, float), int(lo), int(hi))
            steps.append(QView(n.name, n.op, [s.name for s in srcs], attrs, t, n.name))
            tensors[n.name] = t
            float_of[n.name] = n.name
            continue

        last = chain[-1] if chain else n
        name = n.name            # a layer is named after its accumulator's head node
        # an identity head (value op reading a gated tensor) accumulates its input's shape
        acc_shape = tuple(n.shape) if n.op in LINEAR_OPS else tuple(g.node(n.inputs[0]).shape)
        terms, acc_scale, fbias = [], None, np.zeros(acc_shape[0])
        if n.op in ("conv", "linear"):
            src = src_tensor(n.inputs[0], n)
            w = n.params["weight"].astype(np.float64)
            fbias = n.params.get("bias", np.zeros(w.shape[0])).astype(np.float64).copy()
            attrs = {}
            if n.op == "conv":
                groups = int(n.attrs.get("groups", 1))
                o, cg = w.shape[:2]
                cin_idx = (np.arange(o)[:, None] // (o // groups)) * cg + np.arange(cg)[None, :]   # (O, Cg)
                sx = src.scale[cin_idx][:, :, None, None]
                attrs = dict(stride=pair(n.attrs.get("stride", 1)), pads=pads4(n.attrs.get("padding", 0)),
                             dilation=pair(n.attrs.get("dilation", 1)), groups=groups, kernel=w.shape[2:])
            else:
                cin_idx = None
                sx = src.scale[None, :]
            wf = w * sx
            zp = zps.get(src.name)
            if zp is not None:
                # Folded normalization: real = scale * (x - 255*mean). Move the constant into the bias and
                # pad the raw input with round(255*mean), so zero-padding of the normalized input is kept.
                zpe = zp[cin_idx][:, :, None, None] if n.op == "conv" else zp[None, :]
                fbias -= (wf * zpe).reshape(wf.shape[0], -1).sum(axis=1)
                if n.op == "conv" and any(attrs["pads"]):
                    attrs["pad_value"] = np.rint(zp).astype(np.int64)
            absmax = np.abs(wf).reshape(wf.shape[0], -1).max(axis=1)
            sw = np.where(absmax > 0, absmax / wmax, 1.0)
            wq = np.clip(np.rint(wf / sw.reshape((-1,) + (1,) * (wf.ndim - 1))), -wmax, wmax).astype(np.int64)
            terms.append(Term(n.op, src.name, wq, attrs))
            acc_scale = sw
        elif n.op in ("avgpool", "globalavgpool"):
            src = src_tensor(n.inputs[0], n)
            if n.op == "avgpool":
                k = pair(n.attrs["kernel"])
                attrs = dict(kernel=k, stride=pair(n.attrs.get("stride", n.attrs["kernel"])),
                             pads=pads4(n.attrs.get("padding", 0)), dilation=(1, 1))
            else:
                k = tuple(src.shape[1:])
                attrs = dict(kernel=k, stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1))
            terms.append(Term("sumpool", src.name, None, attrs))
            acc_scale = src.scale / (k[0] * k[1])
        elif n.op == "affine":
            # x * mul + add per channel: integer multipliers with ADD_FRAC_BITS of precision, add in the bias
            src = src_tensor(n.inputs[0], n)
            mul = np.broadcast_to(n.params["mul"], src.scale.shape) * src.scale
            acc_scale = np.where(mul != 0, np.abs(mul), src.scale) / (1 << ADD_FRAC_BITS)
            terms.append(Term("scale", src.name, np.rint(mul / acc_scale).astype(np.int64), {}))
            fbias = np.broadcast_to(n.params["add"], (acc_shape[0],)).astype(np.float64).copy()
        else:   # add, or an identity accumulator in front of value ops
            srcs = [src_tensor(i, n) for i in n.inputs]
            if n.op == "add":
                acc_scale = np.maximum(srcs[0].scale, srcs[1].scale) / (1 << ADD_FRAC_BITS)
                for s in srcs:
                    terms.append(Term("scale", s.name, np.rint(s.scale / acc_scale).astype(np.int64), {}))
            else:
                acc_scale = srcs[0].scale.copy()
                terms.append(Term("scale", srcs[0].name, np.ones(srcs[0].shape[0], np.int64), {}))
        if any(zps.get(t.src) is not None for t in terms) and terms[0].kind not in ("conv", "linear"):
            raise UnsupportedOpError(f"--input-mean/--input-std need the input to feed conv or linear layers "
                                     f"directly; {n.where()} is {n.op!r}")

        act_nodes = [c for c in chain if c.op in ACT_OF_OP]
        if len({(c.op, _act_key(c)) for c in act_nodes}) > 1:
            raise UnsupportedOpError(f"mixed activations {sorted({c.op for c in act_nodes})} after {n.where()} "
                                     f"are not supported")
        if len(act_nodes) > 1 and act_nodes[0].op in ("leakyrelu", "prelu"):
            raise UnsupportedOpError(f"{act_nodes[0].op} applied {len(act_nodes)} times after {n.where()} "
                                     f"is not supported")
        act_node = act_nodes[0] if act_nodes else None     # repeating relu / relu6 / clip is idempotent
        act = ACT_OF_OP[act_node.op] if act_node else "none"
        pools = [_pool(g, c) for c in chain if c.op in ("maxpool", "globalmaxpool")]
        pool_at = [i for i, c in enumerate(chain) if c.op in ("maxpool", "globalmaxpool")]
        if act_node is not None and not _monotone(act_node) and pool_at and \
                any(i > pool_at[0] for i, c in enumerate(chain) if c.op in ACT_OF_OP):
            raise UnsupportedOpError(f"{act_node.op} with a negative slope at {act_node.where()} follows a max-pool; "
                                     f"evhw applies activations before pooling, which differs here")
        is_output = last.name in out_nodes
        gated = bool(readers.get(last.name))
        readout = is_output and act == "none" and not pools and not gated

        bias = np.rint(fbias / acc_scale).astype(np.int64)
        if readout:
            mult = shift = None
            out_scale, lo, hi = acc_scale, None, None
        else:
            fv = fvals[last.name]
            signed = act not in ("relu", "relu6") and not (
                act == "clip" and float(act_node.attrs.get("min", -np.inf)) >= 0)
            qlo, qhi = _qrange(act_bits, signed)
            amax = float(np.max(np.abs(fv))) if fv.size else 0.0
            if act == "relu6":
                amax = min(amax, 6.0)
            amax = amax if amax > 0 else 1.0
            out_scale = np.full(acc_shape[0], amax / qhi)
            mult, shift = requant_params(acc_scale / out_scale)
            lo, hi = qlo, qhi
        act_hi = int(np.rint(6.0 / out_scale[0])) if act == "relu6" else None
        act_lo = None
        leaky_num = int(np.rint(act_node.attrs["alpha"] * (1 << LEAKY_SHIFT))) if act == "leaky" else None
        act_shift = LEAKY_SHIFT if act == "leaky" else None
        if act == "prelu":
            slope = np.broadcast_to(act_node.params["slope"], (acc_shape[0],))
            leaky_num = np.rint(slope * (1 << PRELU_SHIFT)).astype(np.int64)
            if np.any(np.abs(leaky_num) >= (1 << 15)):
                raise QuantizationError(f"PReLU slope {float(np.abs(slope).max()):.4g} at {act_node.where()} is too "
                                        f"large: evhw supports |slope| < {(1 << 15) >> PRELU_SHIFT}")
            act_shift = PRELU_SHIFT
        if act == "clip":
            lo_f, hi_f = float(act_node.attrs.get("min", -np.inf)), float(act_node.attrs.get("max", np.inf))
            act_lo = int(max(np.rint(lo_f / out_scale[0]), qlo)) if np.isfinite(lo_f) else None
            act_hi = int(min(np.rint(hi_f / out_scale[0]), qhi)) if np.isfinite(hi_f) else None

        acc_bound = accumulator_bound(terms, tensors)     # |a| <= sum |w| * (max|value| + span)
        need = acc_bits_needed(acc_bound)
        if need > MAX_ACC_BITS:
            raise QuantizationError(f"layer {name!r} needs a {need}-bit accumulator; evhw supports at most "
                                    f"{MAX_ACC_BITS}; use fewer weight/activation bits")
        if acc_bits is not None:
            if int(acc_bits) < need:
                raise AccumulatorWidthError(
                    f"accumulator width (--acc-bits) {acc_bits} is too narrow for layer {name!r}: it needs at "
                    f"least {need} bits (|a| can reach {acc_bound})")
            width = int(acc_bits)
        else:
            width = need
        if readout:
            hi = acc_bound + int(np.abs(bias).max(initial=0))
            lo = -hi
        out_shape = tuple(last.shape)
        t = QTensor(name, out_shape, np.asarray(out_scale, float), int(lo), int(hi))
        bn_gamma = np.asarray(n.attrs["bn_gamma"], float) if "bn_gamma" in n.attrs else None
        steps.append(QLayer(name=name, terms=terms, acc_shape=acc_shape, acc_bits=width, acc_bound=acc_bound,
                            acc_scale=np.asarray(acc_scale, float), bias=bias, mult=mult, shift=shift, act=act,
                            act_hi=act_hi, leaky_num=leaky_num, leaky_shift=act_shift,
                            pools=pools, out=t, gated=gated, bn_gamma=bn_gamma, float_node=last.name,
                            act_lo=act_lo))
        tensors[name] = t
        for c in [n] + chain:
            float_of[c.name] = name if c is last else None
        float_of = {k: v for k, v in float_of.items() if v is not None}

    for o in out_nodes:
        if o not in float_of:
            raise UnsupportedOpError(f"graph output {o!r} cannot be read out")
    outs = [float_of[o] for o in out_nodes]
    host = [g.node(o).op if g.node(o).op in HOST_OPS else None for o in g.outputs]
    q = QNet(name=g.name, input=tin, steps=steps, output=outs[0], weight_bits=int(weight_bits),
             act_bits=int(act_bits), input_mean=g.input_mean, input_std=g.input_std,
             extra_outputs=outs[1:], output_ops=host if any(host) else [])
    q.meta["float_output"] = out_nodes[0]
    if len(out_nodes) > 1:
        q.meta["float_outputs"] = list(out_nodes)
    set_thresholds(q, threshold, input_threshold=input_threshold, bn_scale=bn_scale)
    return q


def gate_threshold(h, scale):
    """Integer gate thresholds ``H`` such that ``|d| > H`` fires exactly when the float gate would.

    The float gate fires when ``|d| * scale > h``, evaluated in float64 (``d`` an integer change, ``scale``
    what one integer step means, ``h >= 0`` the threshold in the same float units). Float multiplication
    by a positive ``scale`` is monotone in ``|d|``, so the firing changes are exactly ``|d| > H`` with
    ``H`` the largest integer ``n >= 0`` with ``n * scale <= h`` (float64): ``floor(h / scale)``,
    corrected by whole steps where the division or the product rounds across the boundary (exact
    multiples such as ``h = 10 * scale``). Element-wise over broadcast ``h`` and ``scale``.
    """
    h, s = np.broadcast_arrays(np.asarray(h, np.float64), np.asarray(scale, np.float64))
    if np.any(~(s > 0)) or np.any(~np.isfinite(s)):
        raise ConfigError(f"gate scales must be positive and finite, not {s.min()}..{s.max()}")
    if np.any(~(h >= 0)) or np.any(~np.isfinite(h)):
        raise ConfigError(f"thresholds must be finite and >= 0, not {h.min()}..{h.max()}")
    with np.errstate(over="ignore"):
        n = np.minimum(np.floor(h / s), float(_H_CAP))    # beyond 2**53 nothing is exact (and H > span anyway)
    for _ in range(8):                                      # floor(h/s) is off by at most one or two steps
        up = ((n + 1) * s <= h) & (n < _H_CAP)
        down = (n * s > h) & (n > 0)
        if not (up.any() or down.any()):
            return n.astype(np.int64)
        n = n + up - down
    raise AssertionError("gate_threshold did not converge")     # unreachable: the loop moves n towards H


_H_CAP = 1 << 52


def set_thresholds(q: QNet, h, *, input_threshold=None, bn_scale=False):
    """Map a global float threshold ``h`` to integer per-channel thresholds (:func:`gate_threshold`).

    Gate ``g``, channel ``c``: ``H = gate_threshold(h * adj_c, scale_c)`` with ``scale_c`` the gated
    tensor's scale and ``adj_c = |gamma_c|`` of the folded BatchNorm with ``bn_scale`` (as the EvNet TF
    code), else 1. The input gate uses ``input_threshold`` (default ``h``) in units of the network's input
    (pixel/255, or the normalized input with a folded normalization: then per channel) and no ``adj``.
    Stores and returns ``{gate name: int64 array}``.
    """
    h = float(h)
    hin = h if input_threshold is None else float(input_threshold)
    for what, v in (("threshold", h), ("input threshold", hin)):
        if not (np.isfinite(v) and v >= 0):
            raise ConfigError(f"the {what} must be finite and >= 0, not {v}")
    th = {}
    tin = q.input
    th["input"] = _check(gate_threshold(hin, np.broadcast_to(tin.scale, (tin.channels,))), tin, "input", hin)
    for s in q.layers():
        if not s.gated:
            continue
        adj = s.bn_gamma if (bn_scale and s.bn_gamma is not None) else 1.0
        hc = h * np.broadcast_to(np.asarray(adj, np.float64), s.out.scale.shape)
        th[s.name] = _check(gate_threshold(hc, s.out.scale), s.out, s.name, h)
    q.thresholds = th
    q.default_threshold, q.default_input_threshold, q.bn_scale = h, input_threshold, bool(bn_scale)
    return th


def _check(hc, t: QTensor, name, h):
    hc = np.asarray(hc)
    if np.any(hc > t.span):
        what = "input threshold" if name == "input" else "threshold"
        raise ConfigError(f"the {what} {h:g} maps to {int(hc.max())} at gate {name!r}, above the largest the "
                          f"accumulator bound allows ({t.span}); use a smaller {what}")
    return hc.astype(np.int64)
