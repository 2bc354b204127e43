"""Evaluate a policy against the dense integer and float models."""
from __future__ import annotations

import numpy as np

from .. import agreement as agree
from ..convert import reference_graph
from ..errors import EvhwError
from ..floatmodel import host_op, run_float
from ..golden import RRM_BOUND, EventModel, Policy, dense_forward, state_memory_bits
from ..qnet import QNet


def _float_keys(q: QNet, ref):
    """Float graph nodes matching each output's readout (before its host op)."""
    keys = q.meta.get("float_outputs") or [q.meta.get("float_output", ref.output)]
    if len(keys) != len(q.outputs):
        raise EvhwError(f"network {q.name!r}: {len(q.outputs)} outputs but {len(keys)} float references")
    return keys


def references(q: QNet, graph, frames):
    """Dense integer and float outputs, per output and frame (policy-independent; pass to
    :func:`evaluate` to reuse). Float outputs are taken before the outputs' host ops."""
    frames = frames.frames if hasattr(frames, "frames") else frames
    ref = reference_graph(graph, q) if graph is not None else None
    dense = [[] for _ in q.outputs]
    for f in frames:
        vals = dense_forward(q, f)
        for k, name in enumerate(q.outputs):
            dense[k].append(vals[name])
    flt = None
    if ref is not None:
        keys = _float_keys(q, ref)
        flt = [[] for _ in keys]
        for i in range(0, len(frames), 32):
            fl = run_float(ref, np.asarray(frames[i:i + 32], float), keep=keys)
            for k, key in enumerate(keys):
                flt[k] += [fl[key][j].reshape(dense[k][0].shape) for j in range(len(fl[key]))]
    return dense, flt


def _real(q: QNet, k, ints):
    """Integer readouts (T, ...) of output ``k`` as real numbers, before its host op."""
    t = q.tensors()[q.outputs[k]]
    return np.asarray(ints, dtype=np.float64) * t.scale.reshape((1, -1) + (1,) * (len(t.shape) - 1))


def _host(q: QNet, k, real):
    op = q.output_op(k)
    return host_op(op, real, batched=True) if op else real


def evaluate(q: QNet, graph, frames, policy: Policy, *, progress=None, metric=None, refs=None, agreement=None):
    """Run ``policy`` over ``frames``; compare with the dense integer and float models.

    ``frames`` is a uint8 array or a :class:`evhw.data.Clip`; ``metric(outputs, clip)`` scores
    the (first) output (in float units) against the clip's labels or targets. Returns the dict behind
    ``evhw eval --json`` (see docs/semantics.md for the counting rules); ``metric``,
    ``metric_dense`` and ``metric_float`` are None without a metric or without labels/targets, and
    ``metric_per_frame`` holds the event model's metric frame by frame.

    Every output is compared: ``max_abs_diff_*`` cover all of them (``outputs`` has them one by
    one), and ``agreement`` / ``agreement_dense_vs_float`` hold, per output, the agreement metric
    (``agreement``: one of :data:`evhw.agreement.SPEC` for all outputs; default per output shape,
    see :mod:`evhw.agreement`) of the event model with the dense integer model, and of the dense
    integer model with the float model, after the outputs' host ops.
    """
    clip = frames if hasattr(frames, "frames") else None
    frames = clip.frames if clip is not None else frames
    metrics = [agree.parse(agreement) if agreement is not None else agree.parse(agree.default_metric(
        q.tensors()[o].shape)) for o in q.outputs]
    model = EventModel(q, policy)
    model.reset()
    dense_ref, float_ref = refs if refs is not None else references(q, graph, frames)
    tens = q.tensors()
    n_out = len(q.outputs)
    per_frame = []
    layers = {name: None for name in ["input"] + [s.name for s in q.layers()]}   # network order
    outs = [[] for _ in range(n_out)]
    max_int = [0] * n_out
    for i, f in enumerate(frames):
        r = model.step(f)
        diffs = []
        for k in range(n_out):
            d = dense_ref[k][i]
            diffs.append(int(np.abs(r.outputs[k] - d).max()) if d.size else 0)
            outs[k].append(r.outputs[k])
        max_int = [max(a, b) for a, b in zip(max_int, diffs)]
        row = r.summary(policy.granularity != "neuron" or policy.norm_gate)
        row["max_abs_diff_vs_dense_int"] = max(diffs)
        per_frame.append(row)
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
    n = len(per_frame)
    per_out, agree_ev, agree_fl = [], [], []
    max_float = max_dense_float = 0.0
    ev_real = [_real(q, k, np.stack(outs[k])) if n else None for k in range(n_out)]
    de_real = [_real(q, k, np.stack(dense_ref[k])) if n else None for k in range(n_out)]
    for k, name in enumerate(q.outputs):
        row = {"name": name, "shape": list(tens[name].shape), "host_op": q.output_op(k),
               "max_abs_diff_vs_dense_int": max_int[k], "max_abs_diff_vs_float": None,
               "max_abs_diff_dense_int_vs_float": None}
        if n and float_ref is not None:
            fo = np.stack(float_ref[k])
            row["max_abs_diff_vs_float"] = float(np.abs(ev_real[k] - fo).max()) if fo.size else 0.0
            row["max_abs_diff_dense_int_vs_float"] = float(np.abs(de_real[k] - fo).max()) if fo.size else 0.0
            max_float = max(max_float, row["max_abs_diff_vs_float"])
            max_dense_float = max(max_dense_float, row["max_abs_diff_dense_int_vs_float"])
            agree_fl.append(agree.report([name], [metrics[k]], [_host(q, k, de_real[k])], [_host(q, k, fo)])[0])
        if n:
            ev_h, de_h = _host(q, k, ev_real[k]), _host(q, k, de_real[k])
            agree_ev.append(agree.report([name], [metrics[k]], [ev_h], [de_h])[0])
            for i in range(n):          # per frame, event vs dense integer, one value per output
                per_frame[i].setdefault("agreement", []).append(agree.compare(metrics[k], ev_h[i:i + 1],
                                                                              de_h[i:i + 1]))
        per_out.append(row)
    out_t = tens[q.output]
    oscale = out_t.scale.reshape((-1,) + (1,) * (len(out_t.shape) - 1))
    dense_macs = sum(p["dense_macs"] for p in per_frame)
    event_macs = sum(p["event_macs"] for p in per_frame)
    saved = dense_macs - event_macs
    arith = sum(p["overhead_arith"] for p in per_frame)
    mem = sum(p["overhead_mem"] for p in per_frame)
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
        "max_abs_diff_vs_dense_int": max(max_int),
        "max_abs_diff_vs_float": max_float if float_ref is not None else None,
        "max_abs_diff_dense_int_vs_float": max_dense_float if float_ref is not None else None,
        "output_scale_max": float(max(tens[o].scale.max() for o in q.outputs)),
        "outputs": per_out,
        "agreement": agree_ev,
        "agreement_dense_vs_float": agree_fl if float_ref is not None else None,
        "metric": None,
        "metric_dense": None,
        "per_layer": layers,
        "per_frame": per_frame,
    }
    res["metric_float"] = None
    res["metric_per_frame"] = None
    if metric is not None and clip is not None:
        ev = np.stack(outs[0]) * oscale[None]
        m = metric(ev, clip)
        if m is not None:
            res["metric"] = float(m)
            res["metric_dense"] = float(metric(np.stack(dense_ref[0]) * oscale[None], clip))
            if float_ref is not None:
                res["metric_float"] = float(metric(np.stack(float_ref[0]), clip))
            res["metric_per_frame"] = [float(metric(ev[i:i + 1], _clip_slice(clip, i))) for i in range(n)]
    return res


def _clip_slice(clip, i):
    from ..data import Clip
    return Clip(clip.frames[i:i + 1], None if clip.labels is None else clip.labels[i:i + 1],
                None if clip.targets is None else clip.targets[i:i + 1])




def eval_network(net, *, video=None, policy="evnet", threshold=None, input_threshold=None, bn_scale=None,
                 granularity="neuron", reset_every=None, norm_gate=False, rrm_bound=RRM_BOUND, n_frames=None,
                 progress=None, agreement=None):
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

    if agreement is not None:
        agree.parse(agreement)          # a bad --agreement fails before any work
    res = evaluate(q, g, clip, pol, progress=step, metric=zoo.metric(model), agreement=agreement)
    res["video"] = str(source)
    res["metric_unit"] = zoo.metric_unit(model) if res["metric"] is not None else None
    return res
