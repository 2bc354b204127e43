"""The executable cycle model: a frame's cycles predicted from its work (docs/architecture.md §6).

The model follows the sequencer of ``gateware.top`` phase by phase, with the work of one frame as the
golden model counts it (:class:`FrameWork`: events per tensor, gate evaluations per gated tensor,
synaptic updates per layer and the part of them on multiply terms). It never looks at the RTL:
``evhw sim --json`` reports its ``predicted_cycles_per_frame`` beside the RTL's own cycle counter,
and the tests hold it to ±10 % on event frames.

Per frame (the host streams pixels and takes outputs without gaps):

* flush frames first sweep the state: ``max(pixels, deepest PE memory)`` cycles;
* input: one pixel per cycle. The first layer's first term replays the input events while they
  arrive (``gateware.top``): event ``i`` is stored ``INPUT_LAG`` cycles after its pixel and costs the
  layer's mean work per event, so that term ends at ``max_i(arrival_i + INPUT_LAG + c * (n - i))``
  (a queue served at ``c`` cycles per event), or with the last pixel;
* per layer, synaptic phase: the sequencer broadcasts one event per cycle at most, and each PE
  performs one update per lane per cycle. Channels are interleaved over the PEs and, within a PE,
  over its lanes, so the busiest PE spends ``max_groups / channels`` of a multiply event's updates
  (conv, linear: every lane busy); the other terms (pools, residual adds) reach one channel, so
  one lane of one PE, and cost that PE's part of their updates (from the per-channel event
  counts). The PE's input registers absorb the unevenness between events. So
  ``max(events, updates of the busiest PE)``, then the pipeline drains (``SYN_DEPTH``);
* per layer, gate phase: every PE walks its evaluated elements (``taps`` cycles each, the max-pool
  window) in parallel while the arbiter writes one event per cycle: ``max(evaluated * taps *
  max_own / channels, events)`` plus the pipeline (``GATE_DEPTH``); the readout streams every output
  value, one per cycle.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .gateware.pe import GATE_DEPTH, SYN_DEPTH
from .plan import HwPlan

__all__ = ["FrameWork", "CycleModel", "PHASE_TURN"]

#: Cycles the sequencer spends on a phase besides its work: a term's first read and its end, the
#: drain check, the gate-start pulse and the all-idle check.
PHASE_TURN = 2
#: Cycles from a pixel's transfer to its event's replay read (input register, state register, gate
#: rule and write).
INPUT_LAG = 3


@dataclass(frozen=True)
class FrameWork:
    """One frame's work, as the golden model counts it (docs/architecture.md §2, event counts)."""
    flush: bool
    events: dict        # tensor ("input", gated layers) -> events sent
    evaluated: dict     # gated tensor -> gate elements evaluated
    updates: dict       # layer -> synaptic updates (every term)
    macs: dict          # layer -> the part of ``updates`` on multiply terms (conv, linear)
    arrivals: tuple = ()  # positions in the pixel stream of the pixels that send an input event
    per_channel: dict = field(default_factory=dict)   # tensor -> events per channel


@dataclass(frozen=True)
class _Layer:
    name: str
    readout: bool
    share: float        # max over PEs of channel groups / channels: the busiest PE's part of a multiply event
    own: float          # max over PEs of owned channels / channels: its part of the gate phase
    taps: int           # gate-pipeline cycles per evaluated element (max-pool window)
    terms: int
    sources: tuple      # the tensor each term replays
    mac: tuple          # per term: a multiply term (conv, linear), spread over every PE
    outputs: int        # readout: values streamed


@dataclass(frozen=True)
class CycleModel:
    pixels: int
    sweep: int          # cycles of the flush sweep
    layers: tuple
    overlap_input: bool  # the first layer's first term replays the input during the input phase
    pes: int

    @classmethod
    def from_plan(cls, plan: HwPlan) -> "CycleModel":
        layers = []
        for l in plan.layers:
            c = l.acc_shape[0]
            groups = max(l.groups(pe, plan.lanes) for pe in range(plan.pes))
            layers.append(_Layer(name=l.name, readout=l.readout, share=groups / c, own=max(l.own) / c,
                                 taps=int(l.pool[0] * l.pool[1]), terms=len(l.terms),
                                 sources=tuple(plan.terms[t].src for t in l.terms),
                                 mac=tuple(plan.terms[t].kind in ("conv", "linear") for t in l.terms),
                                 outputs=int(l.gate_shape[0] * l.gate_shape[1] * l.gate_shape[2])))
        deepest = max(max(*a, b, *t) for a, b, t in zip(plan.acc_depth, plan.bd_depth, plan.touch_depth))
        first = plan.terms[plan.layers[0].terms[0]]
        return cls(pixels=plan.input_size, sweep=max(plan.input_size, deepest), layers=tuple(layers),
                   overlap_input=first.src_mem == plan.event_mems[0].index, pes=plan.pes)

    def phases(self, w: FrameWork) -> dict:
        """Predicted cycles of each phase of one frame: ``{"sweep", "input", "<layer>.syn", "<layer>.gate"}``."""
        out = {"sweep": self.sweep + PHASE_TURN if w.flush else 0, "input": self.pixels + PHASE_TURN}
        for k, l in enumerate(self.layers):
            events = sum(w.events.get(src, 0) for src in l.sources)
            work = max(events, self._busiest(l, w))
            if k == 0 and self.overlap_input and events:
                # the first term's share of the work overlaps the input phase
                n = w.events.get(l.sources[0], 0)
                first = work * n / events
                if n:
                    c = first / n
                    arr = np.asarray(w.arrivals, dtype=float) + INPUT_LAG
                    i = np.arange(n)
                    end = float(np.max(arr - c * i)) + c * n
                    out["input"] = max(out["input"], end + SYN_DEPTH)
                work -= first
                events -= n
            drain = SYN_DEPTH if events else 0
            if k > 0:
                # the first term replays during the previous layer's gate phase (other memory banks);
                # events of that layer's own tensor come out of its gate pipeline first
                n = w.events.get(l.sources[0], 0)
                if n:
                    first = work * n / events
                    prev = self.layers[k - 1]
                    end = first + (GATE_DEPTH if l.sources[0] == prev.name else 0)
                    g = f"{prev.name}.gate"
                    both = max(out[g] - PHASE_TURN, end)
                    if events == n:                  # nothing else to replay: only the drain can show
                        drain = max(0, end + SYN_DEPTH - both)
                    out[g] = both + PHASE_TURN
                    work -= first
                    events -= n
            out[f"{l.name}.syn"] = (work if events else 0) + drain + l.terms + 1   # a read turn per term, the drain check
            if l.readout:
                walk = l.outputs
            else:
                walk = max(w.evaluated.get(l.name, 0) * l.taps * l.own, w.events.get(l.name, 0))
            out[f"{l.name}.gate"] = (walk + GATE_DEPTH if walk else 0) + PHASE_TURN
        return out

    def _busiest(self, l, w: FrameWork):
        """Updates of the busiest PE in layer ``l``'s synaptic phase: its share of the multiply terms'
        updates, plus the other terms' updates on the channels it owns (with ``per_channel`` counts;
        else assumed even), at their mean updates per event."""
        macs = w.macs.get(l.name, 0)
        rest = w.updates.get(l.name, 0) - macs
        srcs = [s for s, mac in zip(l.sources, l.mac) if not mac]
        n = sum(w.events.get(s, 0) for s in srcs)
        if not rest or not n or not all(s in w.per_channel for s in srcs):
            return macs * l.share + rest * l.own
        per_pe = np.zeros(self.pes)
        for s in srcs:
            ev = np.asarray(w.per_channel[s], dtype=float)
            np.add.at(per_pe, np.arange(len(ev)) % self.pes, ev)
        return macs * l.share + per_pe.max() * rest / n

    def predict(self, w: FrameWork) -> int:
        """Predicted cycles of one frame (the RTL's ``cycles`` counter)."""
        return round(sum(self.phases(w).values()))
