"""Load networks by name or file, and evaluate a policy against the dense integer and float models."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import zoo
from .convert import convert, reference_graph, set_thresholds
from .errors import EvhwError
from .floatmodel import run_float
from .golden import EventModel, Policy, dense_forward, state_memory_bits
from .qnet import QNet

CALIB_FRAMES = 16


def load_graph(spec, *, input_shape=None):
    """A float graph from an .onnx file, a PyTorch file or a bundled model name."""
    p = Path(spec)
    if p.suffix == ".onnx":
        from .frontends.onnx_frontend import load_onnx
        return load_onnx(p)
    if p.suffix in (".pt", ".pth"):
        from .frontends.torch_frontend import load_torch
        return load_torch(p, input_shape=input_shape)
    if spec in zoo.MODELS:
        return zoo.build(spec)
    if p.suffix or p.exists():
        raise EvhwError(f"cannot read model {spec!r}: expected an .onnx, .pt/.pth or .evnet file "
                        f"or a bundled model ({', '.join(zoo.names())})")
    raise EvhwError(f"unknown model {spec!r}; bundled models: {', '.join(zoo.names())}")


def frames_for(source, input_shape, frames=None):
    """Frames (uint8 array) from a FRAMES file or source name."""
    return clip_for(source, input_shape, frames).frames


def clip_for(source, input_shape, frames=None):
    """A :class:`evhw.datasets.Clip`: frames plus the labels/targets a named source carries."""
    from .datasets import load_clip
    return load_clip(source, input_shape=tuple(input_shape), frames=frames)


def convert_model(spec, *, calib=None, calib_frames=CALIB_FRAMES, input_shape=None, **kw):
    """Float graph + calibration frames -> (QNet, float graph)."""
    g = load_graph(spec, input_shape=input_shape)
    source = calib or zoo.calib_video(spec)
    calib_data = frames_for(source, g.input.attrs["shape"], calib_frames)
    q = convert(g, calib_data, **kw)
    q.meta.update(model=str(spec), calib=str(source))
    return q, g


def load_network(spec, **kw):
    """A .evnet file (QNet and its float graph) or a model converted with defaults."""
    if str(spec).endswith(".evnet"):
        from .evnet_file import load
        return load(spec)
    return convert_model(spec, **kw)


def references(q: QNet, graph, frames):
    """Dense integer and float outputs per frame (policy-independent; pass to :func:`evaluate` to reuse)."""
    frames = frames.frames if hasattr(frames, "frames") else frames
    ref = reference_graph(graph, q) if graph is not None else None
    dense = [dense_forward(q, f)[q.output] for f in frames]
    flt = None
    if ref is not None:
        key = q.meta.get("float_output", ref.output)
        flt = []
        for i in range(0, len(frames), 32):
            fl = run_float(ref, np.asarray(frames[i:i + 32], float), keep=[key])[key]
            flt += [fl[j].reshape(dense[0].shape) for j in range(len(fl))]
    return dense, flt


def evaluate(q: QNet, graph, frames, policy: Policy, *, progress=None, metric=None, refs=None):
    """Run ``policy`` over ``frames``; compare with the dense integer and float models.

    ``frames`` is a uint8 array or a :class:`evhw.datasets.Clip`; ``metric(outputs, clip)`` scores
    the outputs (in float units) against the clip's labels or targets. Returns the dict behind
    ``evhw eval --json`` (see docs/semantics.md for the counting rules); ``metric``,
    ``metric_dense`` and ``metric_float`` are None without a metric or without labels/targets, and
    ``metric_per_frame`` holds the event model's metric frame by frame.
    """
    clip = frames if hasattr(frames, "frames") else None
    frames = clip.frames if clip is not None else frames
    model = EventModel(q, policy)
    model.reset()
    dense_ref, float_ref = refs if refs is not None else references(q, graph, frames)
    tens = q.tensors()
    out_t = tens[q.output]
    oscale = out_t.scale.reshape((-1,) + (1,) * (len(out_t.shape) - 1))
    per_frame = []
    layers = {name: None for name in ["input"] + [s.name for s in q.layers()]}   # network order
    outs, dense_outs, float_outs = [], [], []
    max_int = 0
    max_float = max_dense_float = 0.0
    for i, f in enumerate(frames):
        r = model.step(f)
        d = dense_ref[i]
        diff = int(np.abs(r.output - d).max()) if d.size else 0
        max_int = max(max_int, diff)
        row = r.summary(policy.granularity != "neuron" or policy.norm_gate)
        row["max_abs_diff_vs_dense_int"] = diff
        if float_ref is not None:
            fo = float_ref[i]
            max_float = max(max_float, float(np.abs(r.output * oscale - fo).max()))
            max_dense_float = max(max_dense_float, float(np.abs(d * oscale - fo).max()))
            float_outs.append(fo)
        per_frame.append(row)
        outs.append(r.output)
        dense_outs.append(d)
        for name, c in r.layers.items():
            acc = layers[name] = layers.get(name) or {"dense_macs": 0, "event_macs": 0, "events": 0, "evaluated": 0,
                                           "overhead_arith": 0, "overhead_mem": 0}
            a, m = c.overhead(policy.granularity != "neuron" or policy.norm_gate)
            acc["dense_macs"] += c.dense_macs
            acc["event_macs"] += c.event_macs
            acc["events"] += c.gate_t
            acc["evaluated"] += c.gate_u
            acc["overhead_arith"] += a
            acc["overhead_mem"] += m
        if progress is not None:
            progress()
    dense_macs = sum(p["dense_macs"] for p in per_frame)
    event_macs = sum(p["event_macs"] for p in per_frame)
    saved = dense_macs - event_macs
    arith = sum(p["overhead_arith"] for p in per_frame)
    mem = sum(p["overhead_mem"] for p in per_frame)
    n = len(per_frame)
    res = {
        "model": q.meta.get("model", q.name),
        "frames": n,
        "policy": policy.kind,
        "granularity": policy.granularity,
        "threshold": q.default_threshold,
        "input_threshold": q.default_input_threshold if q.default_input_threshold is not None else q.default_threshold,
        "dense_macs": dense_macs,
        "event_macs": event_macs,
        "mac_savings": dense_macs / event_macs if event_macs else float("inf"),
        "dense_macs_per_frame": dense_macs / n if n else 0,
        "event_macs_per_frame": event_macs / n if n else 0,
        "events": sum(p["events"] for p in per_frame),
        "overhead_arith": arith,
        "overhead_mem": mem,
        "overhead_arith_pct_of_saved": 100.0 * arith / saved if saved > 0 else None,
        "overhead_mem_pct_of_saved": 100.0 * mem / saved if saved > 0 else None,
        "state_memory_bits": sum(state_memory_bits(q).values()),
        "max_abs_diff_vs_dense_int": max_int,
        "max_abs_diff_vs_float": max_float if float_ref is not None else None,
        "max_abs_diff_dense_int_vs_float": max_dense_float if float_ref is not None else None,
        "output_scale_max": float(out_t.scale.max()),
        "metric": None,
        "metric_dense": None,
        "per_layer": layers,
        "per_frame": per_frame,
    }
    res["metric_float"] = None
    res["metric_per_frame"] = None
    if metric is not None and clip is not None:
        ev = np.stack(outs) * oscale[None]
        m = metric(ev, clip)
        if m is not None:
            res["metric"] = float(m)
            res["metric_dense"] = float(metric(np.stack(dense_outs) * oscale[None], clip))
            if float_outs:
                res["metric_float"] = float(metric(np.stack(float_outs), clip))
            res["metric_per_frame"] = [float(metric(ev[i:i + 1], _clip_slice(clip, i))) for i in range(n)]
    return res


def _clip_slice(clip, i):
    from .datasets import Clip
    return Clip(clip.frames[i:i + 1], None if clip.labels is None else clip.labels[i:i + 1],
                None if clip.targets is None else clip.targets[i:i + 1])


def apply_thresholds(q: QNet, threshold=None, input_threshold=None, bn_scale=None):
    """Re-map thresholds when the user overrides them (keeps the network's stored ones otherwise)."""
    if threshold is None and input_threshold is None and bn_scale is None:
        return q.thresholds
    return set_thresholds(q, q.default_threshold if threshold is None else threshold,
                          input_threshold=input_threshold if input_threshold is not None else
                          (None if threshold is not None else q.default_input_threshold),
                          bn_scale=q.bn_scale if bn_scale is None else bn_scale)
