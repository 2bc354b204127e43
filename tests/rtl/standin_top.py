"""A stand-in for the generated ``evhw_top``: input gate + one linear readout layer, one PE.

It follows the top-level contract of docs/architecture.md §5 (start/busy, ``pix`` and ``out``
streams, ``cfg`` threshold writes, ``stat`` counters, flush and memory-loss frames) for the
networks ``input -> [flatten] -> linear`` only, so the cocotb harness (runner, stream drivers,
scoreboard, testbench) can be tested independently of ``rtl_gen``. It is deliberately simple and
sequential (2 cycles per pixel, 4 per synaptic update, 3 per output); ``bug=`` injects known
faults so tests can show that the harness catches them.
"""
# amaranth: UnusedElaboratable=no
from __future__ import annotations

import json

import numpy as np
from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory          # after the star import, which also exports a Memory
from amaranth.lib.wiring import In, Out

BUGS = (None, "ge", "no_memloss", "drop_last", "count", "stuck")

STAT_MAP = {"cycles": 0, "events": {"input": 1}, "evaluated": {"input": 2}, "updates": {}, "pe_busy": [4],
            "syn_cycles": 5}


def _standin_shape(q):
    layers = q.layers()
    if len(layers) != 1 or layers[0].gated or len(layers[0].terms) != 1 or layers[0].terms[0].kind != "linear":
        raise ValueError("the stand-in implements input -> [flatten] -> one linear readout layer only")
    return layers[0]


class StandinTop(wiring.Component):
    def __init__(self, q, *, bug=None):
        if bug not in BUGS:
            raise ValueError(f"bug must be one of {BUGS}, not {bug!r}")
        layer = _standin_shape(q)
        self.bug = bug
        self.n_pix = int(np.prod(q.input.shape))
        self.n_ch = int(q.input.channels)
        self.per_ch = self.n_pix // self.n_ch
        self.weight = np.asarray(layer.terms[0].weight, dtype=np.int64)     # (O, N)
        self.bias = np.asarray(layer.bias, dtype=np.int64)
        self.n_out = self.weight.shape[0]
        self.acc_w = int(layer.acc_bits)
        self.out_w = max(self.acc_w, int(np.abs(self.bias).max(initial=0)).bit_length() + 1) + 1
        self.w_w = int(np.abs(self.weight).max(initial=1)).bit_length() + 1
        self.th_w = max(int(q.input.span).bit_length(), 1)
        super().__init__({
            "start": In(1), "start_flush": In(1), "start_memloss": In(1), "busy": Out(1),
            "pix": In(stream.Signature(8)),
            "out": Out(wiring.Signature({"valid": Out(1), "ready": In(1), "payload": Out(signed(self.out_w)),
                                         "last": Out(1)})),
            "cfg_addr": In(16), "cfg_data": In(16), "cfg_we": In(1),
            "stat_addr": In(8), "stat_data": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        N, O, C = self.n_pix, self.n_out, self.n_ch
        m.submodules.bmem = bmem = Memory(shape=8, depth=N, init=[])
        m.submodules.dmem = dmem = Memory(shape=signed(11), depth=N, init=[])
        m.submodules.evmem = evmem = Memory(shape=unsigned(max(N - 1, 1).bit_length() + 11), depth=N, init=[])
        m.submodules.amem = amem = Memory(shape=signed(self.acc_w), depth=O, init=[])
        m.submodules.wmem = wmem = Memory(shape=signed(self.w_w), depth=O * N,
                                          init=[int(v) for v in self.weight.reshape(-1)])
        b_rd, b_wr = bmem.read_port(), bmem.write_port()
        d_rd, d_wr = dmem.read_port(), dmem.write_port()
        e_rd, e_wr = evmem.read_port(), evmem.write_port()
        a_rd, a_wr = amem.read_port(), amem.write_port()
        w_rd = wmem.read_port()
        th = Array(Signal(self.th_w, name=f"th{c}") for c in range(C))
        bias = Array(Const(int(v), signed(self.out_w)) for v in self.bias)

        flush, memloss = Signal(), Signal()
        i = Signal(range(N + 1))                 # pixel / sweep index
        ch, ch_cnt = Signal(range(C)), Signal(range(self.per_ch + 1))
        x = Signal(8)
        nev, e = Signal(range(N + 1)), Signal(range(N + 1))
        o = Signal(range(O + 1))
        ev_idx, ev_d = Signal(range(max(N, 2))), Signal(signed(11))
        out_reg, out_last = Signal(signed(self.out_w)), Signal()
        cycles, events, evaluated, updates, busy_pe, syn = (Signal(32, name=n) for n in
                                                            ("cycles", "events", "evaluated", "updates",
                                                             "busy_pe", "syn"))
        nd = Signal(signed(13))
        mag = Signal(13)
        fire = Signal()
        idx_bits = max(N - 1, 1).bit_length()

        m.d.comb += self.stat_data.eq(Array([cycles, events, evaluated, updates, busy_pe, syn, Const(0, 32), Const(0, 32)])[self.stat_addr[:3]])
        with m.If(self.cfg_we & ~self.busy & (self.cfg_addr < C)):
            m.d.sync += th[self.cfg_addr].eq(self.cfg_data)
        with m.If(self.busy):
            m.d.sync += cycles.eq(cycles + 1)

        m.d.comb += [b_rd.addr.eq(i), d_rd.addr.eq(i), b_wr.addr.eq(i), d_wr.addr.eq(i),
                     e_rd.addr.eq(e), e_wr.addr.eq(nev), a_rd.addr.eq(o), a_wr.addr.eq(o),
                     w_rd.addr.eq(o * N + ev_idx)]
        m.d.comb += [nd.eq(d_rd.data + x - b_rd.data), mag.eq(Mux(nd < 0, -nd, nd))]
        if self.bug == "ge":
            m.d.comb += fire.eq(Mux(flush, nd != 0, mag >= th[ch]))
        else:
            m.d.comb += fire.eq(Mux(flush, nd != 0, mag > th[ch]))

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [flush.eq(self.start_flush), memloss.eq(self.start_memloss), i.eq(0), ch.eq(0),
                                 ch_cnt.eq(0), nev.eq(0), e.eq(0), o.eq(0), cycles.eq(1), events.eq(0),
                                 evaluated.eq(0), updates.eq(0), busy_pe.eq(0), syn.eq(0), self.busy.eq(1)]
                    with m.If(self.start_flush):
                        m.next = "CLEAR"
                    with m.Else():
                        m.next = "IN_WAIT"
            with m.State("CLEAR"):             # memories survive rst: a flush sweeps them
                m.d.comb += [b_wr.en.eq(i < N), d_wr.en.eq(i < N), b_wr.data.eq(0), d_wr.data.eq(0),
                             a_wr.en.eq(i < O), a_wr.data.eq(0), a_wr.addr.eq(i)]
                m.d.sync += i.eq(i + 1)
                with m.If(i == max(N, O) - 1):
                    m.d.sync += i.eq(0)
                    m.next = "IN_WAIT"
            with m.State("IN_WAIT"):
                m.d.comb += self.pix.ready.eq(1)
                with m.If(self.pix.valid):
                    m.d.sync += x.eq(self.pix.payload)
                    m.next = "IN_CALC"
            with m.State("IN_CALC"):
                keep_d = Const(0) if self.bug == "no_memloss" else memloss
                m.d.comb += [b_wr.en.eq(1), b_wr.data.eq(x), d_wr.en.eq(1),
                             d_wr.data.eq(Mux(fire | keep_d, 0, nd)),
                             e_wr.en.eq(fire), e_wr.data.eq(Cat(i[:idx_bits], nd[:11]))]
                m.d.sync += [evaluated.eq(evaluated + 1), i.eq(i + 1)]
                with m.If(fire):
                    m.d.sync += [nev.eq(nev + 1), events.eq(events + (2 if self.bug == "count" else 1))]
                with m.If(ch_cnt == self.per_ch - 1):
                    m.d.sync += [ch_cnt.eq(0), ch.eq(ch + 1)]
                with m.Else():
                    m.d.sync += ch_cnt.eq(ch_cnt + 1)
                with m.If(i == N - 1):
                    m.d.sync += [e.eq(0), o.eq(0)]
                    with m.If((nev == 0) & ~fire):
                        m.next = "OUT_RD"
                    with m.Else():
                        m.next = "SYN_EV"
                with m.Else():
                    m.next = "IN_WAIT"
            with m.State("SYN_EV"):            # e_rd.addr = e
                m.d.sync += [syn.eq(syn + 1), busy_pe.eq(busy_pe + 1)]
                m.next = "SYN_LD"
            with m.State("SYN_LD"):
                m.d.sync += [ev_idx.eq(e_rd.data[:idx_bits]), ev_d.eq(e_rd.data[idx_bits:]), syn.eq(syn + 1),
                             busy_pe.eq(busy_pe + 1)]
                m.next = "SYN_RD"
            with m.State("SYN_RD"):            # w_rd / a_rd addresses settle
                m.d.sync += [syn.eq(syn + 1), busy_pe.eq(busy_pe + 1)]
                m.next = "SYN_UPD"
            with m.State("SYN_UPD"):
                m.d.comb += [a_wr.en.eq(1), a_wr.data.eq(a_rd.data + w_rd.data * ev_d)]
                m.d.sync += [updates.eq(updates + 1), syn.eq(syn + 1), busy_pe.eq(busy_pe + 1)]
                with m.If(o == O - 1):
                    m.d.sync += o.eq(0)
                    with m.If(e == nev - 1):
                        m.next = "OUT_RD"
                    with m.Else():
                        m.d.sync += e.eq(e + 1)
                        m.next = "SYN_EV"
                with m.Else():
                    m.d.sync += o.eq(o + 1)
                    m.next = "SYN_RD"
            with m.State("OUT_RD"):            # a_rd.addr = o
                m.next = "OUT_LATCH"
            with m.State("OUT_LATCH"):
                m.d.sync += [out_reg.eq(a_rd.data + bias[o]),
                             out_last.eq(0 if self.bug == "drop_last" else (o == O - 1))]
                m.next = "OUT_SEND"
            with m.State("OUT_SEND"):
                m.d.comb += [self.out.valid.eq(self.bug != "stuck"), self.out.payload.eq(out_reg),
                             self.out.last.eq(out_last)]
                with m.If(self.out.valid & self.out.ready):
                    with m.If(o == O - 1):
                        m.d.sync += self.busy.eq(0)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += o.eq(o + 1)
                        m.next = "OUT_RD"
        return m


def standin_manifest(q, top):
    """The :class:`rtl_gen.manifest.Manifest` of the stand-in (its own ports, one PE, its stat map)."""
    from rtl_gen.export import port_list
    from rtl_gen.manifest import MANIFEST_VERSION, Manifest
    layer = q.layers()[0]
    stats = json.loads(json.dumps(STAT_MAP))
    stats["updates"] = {layer.name: 3}
    shape = list(layer.out.shape)
    return Manifest.from_dict({
        "version": MANIFEST_VERSION, "top": "evhw_top", "network": q.name, "pes": 1, "lanes": 1,
        "ports": {n: vars(p) for n, p in port_list(top).items()},
        "input": {"shape": list(q.input.shape), "value_bits": 8, "signed": False, "pixels": top.n_pix},
        "output": {"layer": layer.name, "shape": shape, "value_bits": top.out_w, "signed": True,
                   "count": int(np.prod(shape))},
        "widths": {"acc": top.acc_w, "weight": top.w_w, "delta": 11, "value": top.out_w, "threshold": top.th_w,
                   "stat": 32},
        "gates": {"input": {"cfg_base": 0, "channels": top.n_ch}}, "cfg_words": top.n_ch, "stat_latency": 0,
        "stats": stats,
        "layers": [{"name": layer.name, "terms": ["linear"], "acc_shape": list(layer.acc_shape), "gate_shape": shape,
                    "pool": [], "gated": False, "readout": True, "acc_bits": int(layer.acc_bits)}],
        "mapping": {"rule": "one PE", "layers": {}},
        "memory_bits": {"pe": [{}], "shared": {}, "total": 0}, "memory_images": {},
    }, source="the stand-in manifest")


def generate_standin(q, graph=None, *, out_dir, bug=None):
    """Write the stand-in as a build folder (``evhw_top.v``, ``manifest.json``, ``net.evnet``: the
    layout ``evhw sim`` expects) for ``q``."""
    from amaranth.back import verilog

    from rtl_gen.builddir import BuildDir
    top = StandinTop(q, bug=bug)
    manifest = standin_manifest(q, top)
    BuildDir.write(out_dir, verilog=verilog.convert(top, name="evhw_top", emit_src=False), manifest=manifest,
                   images={}, qnet=q, graph=graph)
    return manifest
