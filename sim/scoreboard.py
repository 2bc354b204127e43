"""Expected per-frame results of the hardware, from the golden model, and the comparison.

Everything expected comes from :class:`evhw.golden.EventModel` (outputs, event counts of event
frames) and :func:`evhw.golden.dense_forward` (flush frames); nothing is read back from the RTL.

Per frame ``t`` (docs/architecture.md §2):

* **flush** frames (``t == 0``; every frame under ``dense``) sweep the state and send every
  non-zero value: the events of a gated tensor are its non-zero dense values (the golden model
  counts every element as transmitted; the hardware sends only non-zero deltas), every gate element
  is evaluated, and the synaptic updates of a layer are the (non-zero input value, reached
  accumulator) pairs: ``sum over terms of sum over the term's source elements with a non-zero dense
  value of the element's reach`` (the golden model's per-element cost table ``mac_reach``: conv
  window positions x output channels, linear out_features, pool windows, 1 for a residual add).
* **event** frames: events and evaluations are ``LayerCount.gate_t`` / ``gate_u`` per gated tensor
  (``input`` included), synaptic updates ``event_macs + acc_ops`` per layer.
* Outputs: the readout of every frame, in the output tensor's order (``FrameResult.output``).

``ideal_cycles = max(input pixels, total synaptic updates / (P * L))`` (one pixel per cycle in, one update
per PE per cycle), computed by ``sim.session.summarize``.

A mismatch is a dict ``{frame, what, expected, got, kind}``; ``kind`` is ``exact`` for outputs,
the ``last`` flag and event counts (these decide ``bit_exact``) and ``counter`` for the
evaluation and synaptic-update counters (``counters_match``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from evhw.golden import EventModel, Policy, dense_forward
from rtl_gen.limits import HW_POLICIES


@dataclass
class Expected:
    """What the hardware must produce on one frame."""

    index: int
    flush: bool
    memloss: bool
    zero_thresholds: bool
    output: list                      # flattened readout, ints
    events: dict                      # gated tensor -> events sent
    evaluated: dict                   # gated tensor -> gate elements evaluated
    updates: dict                     # layer -> synaptic updates (a += w * delta)
    macs: dict                        # layer -> the part of ``updates`` on multiply terms (conv, linear)
    arrivals: list                    # positions in the pixel stream of the input events (cycle model)
    per_channel: dict                 # gated tensor -> events per channel (cycle model)

    @property
    def total_updates(self):
        return int(sum(self.updates.values()))


def frame_flags(policy: Policy, t):
    """``(flush, memloss, zero_thresholds)`` of frame ``t`` under ``policy`` (as EventModel.step)."""
    flush = policy.kind == "dense" or (t == 0 and policy.init == "flush")
    zero = (not flush and policy.reset_every is not None and t > 0 and t % policy.reset_every == 0)
    return flush, policy.memory_loss, zero


def flush_updates(model: EventModel, vals):
    """Synaptic updates per layer of a flush frame: (non-zero input value, reached accumulator) pairs;
    returns ``(updates, macs)``, ``macs`` the part on multiply terms."""
    q = model.q
    up, macs = {}, {}
    for s in q.layers():
        up[s.name] = macs[s.name] = 0
        for i, term in enumerate(s.terms):
            src = np.asarray(vals[term.src])
            cost = np.broadcast_to(model.costs[(s.name, i)], src.shape)
            n = int((cost * (src != 0)).sum())
            up[s.name] += n
            macs[s.name] += n if term.is_mac else 0
    return up, macs


def fired(model: EventModel, before, zero_thresholds):
    """Per gated tensor, the mask of the elements that sent an event on the frame just stepped (an
    event frame), from the golden gate states around it: an element fires iff ``|v - r| > H`` with
    ``v`` its new value (``b`` after) and ``r = b - d`` before (docs/semantics.md §4, state
    invariants); ``before``: ``{gate: (b, d)}`` copied before the step."""
    out = {}
    for g, (b0, d0) in before.items():
        th = np.asarray(model.thresholds[g], np.int64).reshape(-1)
        c = model.tensors[g].channels
        h = np.zeros(c, np.int64) if zero_thresholds else np.broadcast_to(th, (c,))
        b1 = np.asarray(model.b[g]).reshape(c, -1)
        out[g] = np.abs(b1 - (b0 - d0).reshape(c, -1)) > h[:, None]
    return out


def expected_frames(q, frames, policy: Policy, thresholds=None):
    """The list of :class:`Expected` for ``frames`` (a fresh sequence)."""
    if policy.kind not in HW_POLICIES:
        raise ValueError(f"the hardware implements evnet, skipconv and dense, not {policy.kind!r}")
    if policy.granularity != "neuron" or policy.norm_gate or policy.init != "flush":
        raise ValueError("the hardware implements per-neuron gates with a flush first frame")
    model = EventModel(q, policy, thresholds)
    model.reset()
    gates = q.gates()
    tensors = q.tensors()
    out = []
    for t, f in enumerate(frames):
        flush, memloss, zero = frame_flags(policy, t)
        before = None if flush else {g: (model.b[g].copy(), model.d[g].copy()) for g in gates}
        r = model.step(f)
        assert (r.kind == "flush") == flush, (r.kind, flush)
        if flush:
            vals = dense_forward(q, f)
            events = {g: int(np.count_nonzero(vals[g])) for g in gates}
            evaluated = {g: int(np.prod(tensors[g].shape)) for g in gates}
            updates, macs = flush_updates(model, vals)
            sent = {g: np.asarray(vals[g]).reshape(tensors[g].channels, -1) != 0 for g in gates}
        else:
            sent = fired(model, before, zero)
            events = {g: int(r.layers[g].gate_t) for g in gates}
            evaluated = {g: int(r.layers[g].gate_u) for g in gates}
            updates = {s.name: int(r.layers[s.name].event_macs + r.layers[s.name].acc_ops) for s in q.layers()}
            macs = {s.name: int(r.layers[s.name].event_macs) for s in q.layers()}
        assert {g: int(m.sum()) for g, m in sent.items()} == events, "fired masks disagree with the counts"
        out.append(Expected(t, flush, memloss, zero, [int(v) for v in np.asarray(r.output).reshape(-1)],
                            events, evaluated, updates, macs, np.flatnonzero(sent["input"]).tolist(),
                            {g: m.sum(axis=1).tolist() for g, m in sent.items()}))
    return out


@dataclass
class Scoreboard:
    """Compares observed frames with :func:`expected_frames`; keeps the first ``keep`` mismatches."""

    expected: list
    keep: int = 20
    mismatches: list = field(default_factory=list)
    counts: dict = field(default_factory=lambda: {"exact": 0, "counter": 0})
    checked: int = 0

    @classmethod
    def for_run(cls, q, frames, policy, thresholds=None, **kw):
        return cls(expected_frames(q, frames, policy, thresholds), **kw)

    def record(self, t, what, expected, got, kind="exact"):
        """Record one mismatch (kept if fewer than ``keep`` are stored) and return it."""
        self.counts[kind] += 1
        m = {"frame": t, "what": what, "expected": expected, "got": got, "kind": kind}
        if len(self.mismatches) < self.keep:
            self.mismatches.append(m)
        return m

    def corrupt(self, frame, what="output", index=0, delta=1):
        """Alter one expected value (negative tests: the checker must then report a mismatch)."""
        e = self.expected[frame]
        if what == "output":
            e.output[index] += delta
        else:
            table = getattr(e, what.split(":")[0])
            key = what.split(":", 1)[1] if ":" in what else next(iter(table))
            table[key] += delta

    def check(self, t, *, outputs, lasts=None, stats=None):
        """Compare frame ``t``: ``outputs`` (ints, in order), their ``last`` bits, and ``stats``
        (``{"events": {tensor: n}, "evaluated": {...}, "updates": {layer: n}, ...}``; a tensor or layer
        missing from ``stats`` is a mismatch with ``got`` None). Returns this frame's mismatches."""
        e = self.expected[t]
        self.checked += 1
        new = []
        got = [int(v) for v in outputs]
        if len(got) != len(e.output):
            new.append(self.record(t, "output count", len(e.output), len(got)))
        wrong = [i for i, (a, b) in enumerate(zip(e.output, got)) if a != b]
        for i in wrong[:3]:
            new.append(self.record(t, f"output[{i}]", e.output[i], got[i]))
        if len(wrong) > 3:
            new.append(self.record(t, "outputs wrong", 0, len(wrong)))
        if lasts is not None and len(lasts) == len(e.output):
            where = [i for i, b in enumerate(lasts) if b]
            if where != [len(e.output) - 1]:
                new.append(self.record(t, "out.last at", [len(e.output) - 1], where))
        stats = stats or {}
        for table, kind in (("events", "exact"), ("evaluated", "counter"), ("updates", "counter")):
            got_t = stats.get(table) or {}
            for name, want in getattr(e, table).items():
                g = got_t.get(name)
                if g is None or int(g) != want:
                    new.append(self.record(t, f"{table}:{name}", want, None if g is None else int(g), kind))
        return new

    @property
    def bit_exact(self):
        """Every frame was checked (at least one) and its outputs, ``last`` flags and event counts matched."""
        return bool(self.expected) and self.checked == len(self.expected) and self.counts["exact"] == 0

    @property
    def counters_match(self):
        return bool(self.expected) and self.checked == len(self.expected) and self.counts["counter"] == 0
