"""Hardware plan: everything the gateware needs about one converted network, as plain Python data.

:meth:`HwPlan.from_qnet` validates that the v1 hardware supports the network
(docs/architecture.md §1), maps neurons to processing elements (channel ``c`` -> PE ``c % P``,
local channel ``c // P``) and lays out every per-PE memory (bases and contents). The gateware
(:mod:`rtl_gen.gateware`) and the manifest (:func:`rtl_gen.export.plan_manifest`) read only this plan.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from evhw.qnet import QLayer, QNet, QView

from .errors import UnsupportedHardwareError
from .limits import MAX_LANES, MAX_PES, MULT_WIDTH

__all__ = ["HwPlan", "LayerPlan", "TermPlan", "EventMemPlan", "EventBufPlan", "MAX_PES", "STAT_WIDTH"]

STAT_WIDTH = 32
STAT_LATENCY = 0         # stat_data is combinational in stat_addr


def signed_bits(lo, hi):
    """Two's complement width holding every integer of [lo, hi]."""
    lo, hi = int(min(lo, 0)), int(max(hi, 0))
    return max(hi.bit_length(), (-lo - 1).bit_length() if lo < 0 else 0) + 1


def _shape3(shape):
    shape = tuple(int(s) for s in shape)
    if len(shape) == 1:
        return (shape[0], 1, 1)
    if len(shape) == 3:
        return shape
    raise ValueError(shape)


def _pow2(n):
    return n >= 1 and n & (n - 1) == 0


def _owned(n, pe, pes):
    """Channels of ``n`` owned by PE ``pe``: c = pe, pe + P, ..."""
    return len(range(pe, n, pes))


@dataclass
class EventMemPlan:
    """One event memory: the transmitted deltas of a gated tensor in one frame (worst case: all)."""
    index: int
    tensor: str
    shape: tuple          # (C, H, W)
    depth: int
    delta_bits: int = 2   # of the tensor's deltas
    buf: int = 0          # the physical event buffer holding it (buffers are shared by lifetime)

    @property
    def widths(self):
        """Word fields (c, y, x, delta) in bits: each as narrow as this tensor allows."""
        c, h, w = self.shape
        return tuple(max(int(n - 1).bit_length(), 1) for n in (c, h, w)) + (self.delta_bits,)

    @property
    def word_bits(self):
        return sum(self.widths)


@dataclass
class EventBufPlan:
    """A physical event memory shared by event tensors whose lifetimes in a frame do not overlap."""
    index: int
    tensors: list         # event memory (tensor) indices
    depth: int
    widths: tuple         # (c, y, x, delta): the widest of its tensors

    @property
    def word_bits(self):
        return sum(self.widths)


@dataclass
class TermPlan:
    index: int
    layer: int
    kind: str             # conv | linear | sumpool | scale
    src: str              # gated tensor whose event memory the term replays (flatten resolved)
    src_mem: int          # its event memory index
    src_shape: tuple      # (C, H, W) of that tensor
    out_shape: tuple      # (C, H, W) accumulator shape
    kernel: tuple
    stride: tuple
    pads: tuple           # (t, l, b, r)
    weight: np.ndarray | None
    wbase: list           # per PE: first weight word

    @property
    def src_flat(self):
        """Number of input features of a linear term."""
        c, h, w = self.src_shape
        return c * h * w


@dataclass
class LayerPlan:
    index: int
    name: str
    terms: list           # term indices (contiguous)
    acc_shape: tuple      # (C, H, W)
    gate_shape: tuple     # (C, PH, PW) after the max-pools (kernel == stride)
    pool: tuple           # combined max-pool kernel (kh, kw); (1, 1) without pools
    gated: bool
    readout: bool         # the network output: streamed every frame, no gate
    requant: bool         # mult/shift present (False: v = a + bias)
    bias: list
    mult: list
    shift: list
    act: str
    act_hi: int
    leaky_num: int
    leaky_shift: int
    lo: int
    hi: int
    value_bits: int
    delta_bits: int
    acc_bits: int
    own: list             # per PE: owned channels
    abase: list           # per PE: accumulator base
    gbase: list           # per PE: gate state (BD) base (gated layers)
    pbase: list           # per PE: per-channel parameter base
    tbase: list           # per PE: threshold base (gated layers)
    event_mem: int | None = None
    cfg_base: int | None = None
    thresholds: list | None = None

    @property
    def channels(self):
        return self.acc_shape[0]

    def groups(self, pe, lanes):
        """Channel groups of PE ``pe``: local channel ``k`` is in group ``k // lanes``, lane ``k % lanes``."""
        return -(-self.own[pe] // lanes)

    def acc_size(self, pe, lanes=1):
        """Accumulators of PE ``pe`` in one lane's bank."""
        return self.groups(pe, lanes) * self.acc_shape[1] * self.acc_shape[2]

    def touch_size(self, pe, lanes=1):
        """Touched bits of PE ``pe`` in one lane's bank."""
        return self.groups(pe, lanes) * self.gate_shape[1] * self.gate_shape[2]

    def gate_size(self, pe):
        return self.own[pe] * self.gate_shape[1] * self.gate_shape[2]


@dataclass
class HwPlan:
    name: str
    pes: int
    lanes: int            # synaptic updates per PE per cycle: channel k of a PE is in lane k % lanes
    input_shape: tuple
    input_bits: int
    input_delta_bits: int
    input_thresholds: list
    layers: list
    terms: list
    event_mems: list
    output_layer: int
    # widths
    acc_w: int
    weight_w: int
    delta_w: int
    value_w: int
    out_w: int
    evt_w: int
    bias_w: int
    shift_w: int
    c_w: int
    y_w: int
    x_w: int
    th_w: int
    gate_value_w: int     # gate-state word r (gate.GateRule): max value bits over gated layers
    input_r_w: int        # input-gate word r, unsigned: a pixel value (0 .. input hi)
    pool_w: int           # max-pool window counters: they hold 0 .. (largest combined pool side - 1)
    # per-PE memory depths and contents
    acc_depth: list = field(default_factory=list)       # per PE: (even layers, odd layers) bank depths
    bd_depth: list = field(default_factory=list)
    touch_depth: list = field(default_factory=list)     # per PE: (even layers, odd layers) bank depths
    touch_w: list = field(default_factory=list)       # per PE: touched-list fields (c local, y, x) in bits
    event_bufs: list = field(default_factory=list)
    weights: list = field(default_factory=list)       # per PE: list of ints
    params: list = field(default_factory=list)        # per PE: list of (bias, mult, shift)
    th_init: list = field(default_factory=list)       # per PE: list of thresholds
    cfg_map: list = field(default_factory=list)       # global cfg address -> (target, local): target P = input
    stats: dict = field(default_factory=dict)
    stat_count: int = 0

    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_qnet(cls, q: QNet, *, pes, lanes=1):
        if not isinstance(pes, int) or isinstance(pes, bool) or not 1 <= pes <= MAX_PES:
            raise TypeError(f"PE count must be an integer in 1..{MAX_PES}, not {pes!r}")
        if not isinstance(lanes, int) or isinstance(lanes, bool) or not 1 <= lanes <= MAX_LANES \
                or lanes & (lanes - 1):
            raise TypeError(f"lanes must be a power of two in 1..{MAX_LANES}, not {lanes!r}")
        P = pes
        tensors = q.tensors()
        if len(q.input.shape) not in (1, 3):
            raise UnsupportedHardwareError(f"input: shape {q.input.shape} is not (C, H, W) or (F,)")
        if len(q.outputs) > 1:
            raise UnsupportedHardwareError(f"output {q.outputs[1]!r}: {len(q.outputs)} network outputs "
                                           f"({', '.join(q.outputs)}); hardware v1 reads out exactly one")
        views = {}
        for s in q.steps:
            if isinstance(s, QView):
                if s.kind != "flatten":
                    raise UnsupportedHardwareError(f"view {s.name!r}: {s.kind} is not supported in hardware v1")
                views[s.name] = s.srcs[0]

        def resolve(name):
            while name in views:
                name = views[name]
            return name

        gated_tensors = [q.input.name] + [s.name for s in q.layers() if s.gated]
        event_mems = []
        for i, g in enumerate(gated_tensors):
            shp = _shape3(tensors[g].shape)
            event_mems.append(EventMemPlan(i, g, shp, int(np.prod(shp)), int(tensors[g].delta_bits)))
        mem_of = {e.tensor: e.index for e in event_mems}

        layers, terms = [], []
        out_name = resolve(q.output)
        output_layer = None
        for li, s in enumerate(q.layers()):
            where = f"layer {s.name!r}"
            acc3 = _shape3(s.acc_shape)
            if not s.gated and s.name != out_name:
                raise UnsupportedHardwareError(f"{where}: an ungated layer that is not the network output")
            if s.gated and s.name == out_name:
                raise UnsupportedHardwareError(f"{where}: the network output is also read by other layers")
            if s.act not in ("none", "relu", "relu6", "leaky"):
                raise UnsupportedHardwareError(f"{where}: activation {s.act!r}")
            pk = [1, 1]
            gh, gw = acc3[1], acc3[2]
            for p in s.pools:
                if tuple(p["kernel"]) != tuple(p["stride"]) or any(p["pads"]) or tuple(p["dilation"]) != (1, 1):
                    raise UnsupportedHardwareError(
                        f"{where}: max-pool kernel {p['kernel']} stride {p['stride']} pads {p['pads']} "
                        f"dilation {p['dilation']} (needs kernel == stride, no padding, no dilation)")
                pk = [pk[0] * p["kernel"][0], pk[1] * p["kernel"][1]]
                gh, gw = gh // p["kernel"][0], gw // p["kernel"][1]
            gate3 = (acc3[0], gh, gw)
            if gate3 != _shape3(s.out.shape):
                raise UnsupportedHardwareError(f"{where}: pooled shape {gate3} != output shape {s.out.shape}")
            tids = []
            for t in s.terms:
                src = resolve(t.src)
                if src not in mem_of:
                    raise UnsupportedHardwareError(f"{where}: term reads ungated tensor {t.src!r}")
                src3 = _shape3(tensors[src].shape)
                a = t.attrs
                if t.kind == "conv":
                    if a.get("groups", 1) != 1:
                        raise UnsupportedHardwareError(f"{where}: grouped convolution (groups={a['groups']})")
                    if tuple(a.get("dilation", (1, 1))) != (1, 1):
                        raise UnsupportedHardwareError(f"{where}: dilated convolution {a['dilation']}")
                    pv = a.get("pad_value")
                    if pv is not None and np.any(np.asarray(pv) != 0):
                        raise UnsupportedHardwareError(f"{where}: non-zero pad value (input normalization)")
                    kernel = tuple(int(k) for k in t.weight.shape[2:])
                    stride, pads = tuple(a["stride"]), tuple(a["pads"])
                elif t.kind == "sumpool":
                    if tuple(a.get("dilation", (1, 1))) != (1, 1):
                        raise UnsupportedHardwareError(f"{where}: dilated pooling")
                    kernel, stride, pads = tuple(a["kernel"]), tuple(a["stride"]), tuple(a["pads"])
                elif t.kind == "linear":
                    kernel, stride, pads = (1, 1), (1, 1), (0, 0, 0, 0)
                    if t.weight.shape[1] != int(np.prod(src3)):
                        raise UnsupportedHardwareError(f"{where}: linear input size mismatch")
                elif t.kind == "scale":
                    kernel, stride, pads = (1, 1), (1, 1), (0, 0, 0, 0)
                    if src3 != acc3:
                        raise UnsupportedHardwareError(f"{where}: residual add of shape {src3} into {acc3}")
                else:
                    raise UnsupportedHardwareError(f"{where}: term kind {t.kind!r}")
                if not all(_pow2(int(x)) for x in stride):
                    raise UnsupportedHardwareError(f"{where}: {t.kind} stride {stride} (powers of two only)")
                tp = TermPlan(len(terms), li, t.kind, src, mem_of[src], src3, acc3, kernel,
                              tuple(int(x) for x in stride), tuple(int(x) for x in pads),
                              None if t.weight is None else np.asarray(t.weight, np.int64), [0] * P)
                tids.append(tp.index)
                terms.append(tp)
            C = acc3[0]
            readout = not s.gated
            requant = s.mult is not None
            if s.mult is not None and np.any(np.asarray(s.mult) >= 1 << (MULT_WIDTH - 1)):
                raise UnsupportedHardwareError(f"{where}: requant multiplier wider than {MULT_WIDTH - 1} bits")
            lp = LayerPlan(
                index=li, name=s.name, terms=tids, acc_shape=acc3, gate_shape=gate3, pool=tuple(pk),
                gated=bool(s.gated), readout=readout, requant=requant,
                bias=[int(v) for v in np.broadcast_to(s.bias, (C,))],
                mult=[int(v) for v in (s.mult if requant else np.zeros(C, np.int64))],
                shift=[int(v) for v in (s.shift if requant else np.zeros(C, np.int64))],
                act=s.act, act_hi=int(s.act_hi or 0), leaky_num=int(s.leaky_num or 0),
                leaky_shift=int(s.leaky_shift or 0), lo=int(s.out.lo), hi=int(s.out.hi),
                value_bits=signed_bits(s.out.lo, s.out.hi), delta_bits=int(s.out.delta_bits),
                acc_bits=int(s.acc_bits), own=[_owned(C, pe, P) for pe in range(P)],
                abase=[0] * P, gbase=[0] * P, pbase=[0] * P, tbase=[0] * P,
                event_mem=mem_of.get(s.name) if s.gated else None)
            if readout:
                output_layer = li
            layers.append(lp)
        if output_layer is None:
            raise UnsupportedHardwareError(f"output {q.output!r}: the network output must be a layer")

        # ---- widths
        tin = q.input
        all_w = [1]
        for t in terms:
            if t.weight is not None:
                all_w += [int(t.weight.min()), int(t.weight.max())]
        weight_w = signed_bits(min(all_w), max(all_w))
        gl = [l for l in layers if l.gated]
        delta_w = max([int(tin.delta_bits)] + [l.delta_bits for l in gl])
        value_w = max([signed_bits(tin.lo, tin.hi)] + [l.value_bits for l in layers])
        out_l = layers[output_layer]
        out_w = out_l.value_bits
        biases = [b for l in layers for b in l.bias] + [0]
        shifts = [s for l in layers for s in l.shift] + [1]
        shapes = [e.shape for e in event_mems] + [l.gate_shape for l in layers] + [l.acc_shape for l in layers]
        ths = [int(tin.span)] + [int(l.hi - l.lo) for l in gl]

        plan = cls(
            name=q.name, pes=P, lanes=lanes, input_shape=_shape3(tin.shape), input_bits=signed_bits(tin.lo, tin.hi),
            input_delta_bits=int(tin.delta_bits),
            input_thresholds=[int(v) for v in np.broadcast_to(q.thresholds.get("input", 0), (tin.channels,))],
            layers=layers, terms=terms, event_mems=event_mems, output_layer=output_layer,
            acc_w=max(l.acc_bits for l in layers), weight_w=weight_w, delta_w=delta_w, value_w=value_w,
            out_w=out_w, evt_w=max(delta_w, out_w), bias_w=signed_bits(min(biases), max(biases)),
            shift_w=max(int(max(shifts)).bit_length(), 1),
            c_w=max(max(s[0] for s in shapes).bit_length(), 1),
            y_w=max(max(s[1] for s in shapes).bit_length(), 1),
            x_w=max(max(s[2] for s in shapes).bit_length(), 1),
            th_w=max(max(ths).bit_length(), 1),
            gate_value_w=max([l.value_bits for l in gl] + [2]), input_r_w=max(int(tin.hi).bit_length(), 1),
            pool_w=max(max(max(l.pool) for l in layers) - 1, 1).bit_length())
        plan._layout(q)
        plan._share_event_memories()
        return plan

    def _share_event_memories(self):
        """Lifetimes in a frame: the input phase is step 0, layer i's synaptic phase 2i+1 and its gate
        phase 2i+2. A tensor lives from its write (input phase / producer's gate phase) to the last
        synaptic phase reading it; tensors with disjoint lifetimes share a buffer (first fit)."""
        start = {self.event_mems[0].tensor: 0}
        for l in self.layers:
            if l.gated:
                start[self.event_mems[l.event_mem].tensor] = 2 * l.index + 2
        end = dict(start)
        for t in self.terms:
            end[t.src] = max(end[t.src], 2 * t.layer + 1)
        bufs = []                                   # [tensor indices, last end]
        for e in sorted(self.event_mems, key=lambda e: start[e.tensor]):
            for b in bufs:
                if b[1] < start[e.tensor]:
                    b[0].append(e.index)
                    b[1] = end[e.tensor]
                    break
            else:
                bufs.append([[e.index], end[e.tensor]])
        self.event_bufs = []
        for i, (members, _) in enumerate(bufs):
            ms = [self.event_mems[j] for j in members]
            for e in ms:
                e.buf = i
            self.event_bufs.append(EventBufPlan(i, members, max(e.depth for e in ms),
                                                tuple(max(w) for w in zip(*(e.widths for e in ms)))))

    # ------------------------------------------------------------------------------------------
    def _layout(self, q):
        """Per PE: memory bases and contents. Accumulators, weights and touched bits are banked by
        lane (lane ``j`` holds local channels ``k`` with ``k % lanes == j``, at group ``k // lanes``),
        so every lane of an update uses the same address; accumulators and touched bits also by the
        parity of the layer index, so that a layer's gate phase and the next layer's synaptic phase
        use different memories. The gate state, parameters and thresholds are per local channel,
        unbanked."""
        P, L = self.pes, self.lanes
        self.weights = [[[] for _ in range(L)] for _ in range(P)]
        self.params = [[] for _ in range(P)]
        self.th_init = [[] for _ in range(P)]
        self.acc_depth, self.bd_depth, self.touch_depth = [], [], []
        for pe in range(P):
            a, g, touch = [0, 0], 0, [1, 1]
            for l in self.layers:
                par = l.index % 2
                l.abase[pe] = a[par]
                a[par] += l.acc_size(pe, L)
                l.pbase[pe] = len(self.params[pe])
                for c in range(pe, l.channels, P):
                    self.params[pe].append((l.bias[c], l.mult[c], l.shift[c]))
                if l.gated:
                    l.gbase[pe] = g
                    g += l.gate_size(pe)
                    touch[par] = max(touch[par], l.touch_size(pe, L))
                    l.tbase[pe] = len(self.th_init[pe])
                    th = np.broadcast_to(q.thresholds.get(l.name, 0), (l.channels,))
                    self.th_init[pe] += [int(th[c]) for c in range(pe, l.channels, P)]
                for ti in l.terms:
                    t = self.terms[ti]
                    t.wbase[pe] = len(self.weights[pe][0])
                    for j in range(L):
                        bank = self.weights[pe][j]
                        for kg in range(l.groups(pe, L)):
                            c = pe + P * (kg * L + j)             # the global channel of this lane
                            have = kg * L + j < l.own[pe]
                            if t.kind == "conv":
                                n = int(np.prod(t.weight.shape[1:]))
                                bank += [int(v) for v in t.weight[c].reshape(-1)] if have else [0] * n
                            elif t.kind == "linear":
                                bank += [int(v) for v in t.weight[c]] if have else [0] * t.weight.shape[1]
                            elif t.kind == "scale":
                                bank.append(int(t.weight[c]) if have else 0)
                        if t.kind == "sumpool":              # one word, weight 1
                            bank.append(1)
            # touched-list entries: channel group and gate (y, x); the gate unit's element
            # coordinates: local channel and gate (y, x), any layer
            self.touch_w.append(tuple(max(int(v - 1).bit_length(), 1) for v in (
                max(max(l.groups(pe, L) for l in self.layers), 1), max(l.gate_shape[1] for l in self.layers),
                max(l.gate_shape[2] for l in self.layers))))
            self.acc_depth.append((max(a[0], 1), max(a[1], 1)))
            self.bd_depth.append(max(g, 1))
            self.touch_depth.append(tuple(touch))
            for lst in (*self.weights[pe], self.params[pe], self.th_init[pe]):
                if not lst:
                    lst.append((0, 0, 0) if lst is self.params[pe] else 0)

        # threshold configuration map: one address per (gate, channel); input gate first
        self.cfg_map = []
        self.cfg_gates = {}
        cin = self.input_shape[0]
        self.cfg_gates["input"] = {"cfg_base": 0, "channels": cin}
        self.cfg_map += [(P, c) for c in range(cin)]
        for l in self.layers:
            if l.gated:
                l.cfg_base = len(self.cfg_map)
                self.cfg_gates[l.name] = {"cfg_base": l.cfg_base, "channels": l.channels}
                self.cfg_map += [(c % P, l.tbase[c % P] + c // P) for c in range(l.channels)]

        # statistics address map
        addr = 0
        st = {}

        def take():
            nonlocal addr
            addr += 1
            return addr - 1
        st["cycles"] = take()
        st["syn_cycles"] = take()
        st["events"] = {e.tensor: take() for e in self.event_mems}
        st["evaluated"] = {e.tensor: take() for e in self.event_mems}
        st["updates"] = {l.name: take() for l in self.layers}
        st["pe_busy"] = [take() for _ in range(P)]
        self.stats, self.stat_count = st, addr

    # ------------------------------------------------------------------------------------------
    @property
    def n_terms(self):
        return len(self.terms)

    @property
    def n_layers(self):
        return len(self.layers)

    @property
    def output(self) -> LayerPlan:
        return self.layers[self.output_layer]

    @property
    def output_shape(self):
        return self.output.gate_shape

    @property
    def input_size(self):
        return int(np.prod(self.input_shape))

    def gated_layers(self):
        return [l for l in self.layers if l.gated]

    def memory_bits(self):
        """Memory sizes in bits: per PE and outside the PEs."""
        P = self.pes
        bd_w = self.gate_value_w
        per_pe = []
        for pe in range(P):
            L = self.lanes
            per_pe.append({
                "acc": L * sum(self.acc_depth[pe]) * self.acc_w,
                "gate_state": self.bd_depth[pe] * bd_w,
                "touched_bits": L * sum(self.touch_depth[pe]),
                "touched_list": L * sum(self.touch_depth[pe]) * sum(self.touch_w[pe]),
                "weights": sum(len(b) for b in self.weights[pe]) * self.weight_w,
                "params": len(self.params[pe]) * (self.bias_w + MULT_WIDTH + self.shift_w),
                "thresholds": len(self.th_init[pe]) * self.th_w,
            })
        shared = {"input_gate": self.input_size * self.input_r_w}
        for b in self.event_bufs:
            shared["events_" + "+".join(self.event_mems[i].tensor for i in b.tensors)] = b.depth * b.word_bits
        shared["cfg_map"] = len(self.cfg_map) * (max(P, 1).bit_length() + 16)
        return {"pe": per_pe, "shared": shared,
                "total": sum(sum(d.values()) for d in per_pe) + sum(shared.values())}
