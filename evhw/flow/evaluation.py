"""Evaluate a policy against the dense integer and float models."""
from __future__ import annotations

import numpy as np

from ..convert import reference_graph
from ..floatmodel import run_float
from ..golden import EventModel, Policy, dense_forward, state_memory_bits
from ..qnet import QNet


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

    ``frames`` is a uint8 array or a :class:`evhw.data.Clip`; ``metric(outputs, clip)`` scores
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
    from ..data import Clip
    return Clip(clip.frames[i:i + 1], None if clip.labels is None else clip.labels[i:i + 1],
                None if clip.targets is None else clip.targets[i:i + 1])




def eval_network(net, *, video=None, policy="evnet", threshold=None, input_threshold=None, bn_scale=None,
                 granularity="neuron", reset_every=None, norm_gate=False, rrm_bound=0.05, n_frames=None,
                 progress=None):
    """``evhw eval``: load NET, re-map its thresholds, run ``policy`` over the clip and score it.

    ``progress(done, total)`` is called after every frame. Returns the dict behind ``evhw eval --json``."""
    from .. import zoo
    from .network import DEFAULT_THRESHOLD, apply_thresholds, clip_for, load_network
    q, g = load_network(net, threshold=DEFAULT_THRESHOLD)
    apply_thresholds(q, threshold, input_threshold, bn_scale)
    pol = Policy(policy, granularity=granularity, reset_every=reset_every, norm_gate=norm_gate, rrm_bound=rrm_bound)
    model = q.meta.get("model", net)
    source = video or zoo.default_video(model)
    clip = clip_for(source, q.input.shape, n_frames)
    total, done = len(clip), [0]

    def step():
        done[0] += 1
        if progress is not None:
            progress(done[0], total)

    res = evaluate(q, g, clip, pol, progress=step, metric=zoo.metric(model))
    res["video"] = str(source)
    res["metric_unit"] = zoo.metric_unit(model) if res["metric"] is not None else None
    return res
