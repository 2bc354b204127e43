"""EvhwTop: input gate, sequencer, PE array, event memories, readout and statistics.

Top-level contract: docs/architecture.md §5.
"""
from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import MemoryData          # after the star import, which also exports a Memory
from amaranth.lib.wiring import In, Out

from ..layouts import mem_event_layout, pe_event_layout
from ..plan import STAT_WIDTH, HwPlan
from .gate import GateRule
from .mem import Mem
from .pe import PE

__all__ = ["EvhwTop", "out_signature"]


def out_signature(width):
    """The output stream: ``lib.stream`` conventions (valid/ready/payload) plus ``last``."""
    return wiring.Signature({
        "payload": Out(signed(width)),
        "valid":   Out(1),
        "ready":   In(1),
        "last":    Out(1),
    })


class EvhwTop(wiring.Component):
    """The whole accelerator for one plan.

    Ports
    -----
    start, start_flush, start_memloss : In     pulse ``start`` while idle to run one frame.
    busy : Out                                 high from ``start`` until the frame is done.
    pix : In(stream)                           the frame's pixels (8 bits), channel-major raster order.
    out : Out(stream + last)                   the output tensor, in order, every frame.
    cfg_addr, cfg_data, cfg_we : In            threshold writes (while idle; map in the manifest).
    stat_addr : In, stat_data : Out            counters of the last frame (combinational read).

    ``readmem``: memories elaborate to Verilog memories loaded with ``$readmemh`` from ``mem/``
    (:mod:`.mem`; for export), the initialised ones from :attr:`images` (``{file name:
    MemoryData}``, written into the build by ``rtl_gen.export``).
    """

    def __init__(self, plan: HwPlan, *, readmem=False):
        self.plan, self.readmem = plan, readmem
        p = plan
        in_layout = data.StructLayout({"r": unsigned(p.input_r_w)})     # the pixel value transmitted so far
        self.in_state_data = MemoryData(shape=in_layout, depth=p.input_size, init=[])
        loc_max = max([loc for _, loc in p.cfg_map] + [1])
        self.cfg_layout = data.StructLayout({"target": range(p.pes + 1), "local": range(loc_max + 1)})
        self.cfg_rom_data = MemoryData(shape=self.cfg_layout, depth=max(len(p.cfg_map), 1),
                                       init=[{"target": t, "local": lc} for t, lc in p.cfg_map])
        self.pes = [PE(p, index=i, readmem=readmem) for i in range(p.pes)]
        self.images = {"cfg_map.hex": self.cfg_rom_data}
        for pe in self.pes:
            self.images.update(pe.images)
        super().__init__({
            "start":         In(1),
            "start_flush":   In(1),
            "start_memloss": In(1),
            "busy":          Out(1),
            "pix":           In(stream.Signature(unsigned(8))),
            "out":           Out(out_signature(p.out_w)),
            "cfg_addr":      In(range(max(len(p.cfg_map), 2))),
            "cfg_data":      In(unsigned(p.th_w)),
            "cfg_we":        In(1),
            "stat_addr":     In(range(max(p.stat_count, 2))),
            "stat_data":     Out(STAT_WIDTH),
        })

    def elaborate(self, platform):
        m = Module()
        p, P = self.plan, self.plan.pes
        pes = self.pes
        for i, pe in enumerate(pes):
            m.submodules[f"pe{i}"] = pe
        evl = mem_event_layout(p)

        # ---- event buffers (worst-case depth: every element of a tensor fires once), each shared by
        # event tensors with disjoint lifetimes in the frame; one event count per tensor
        ev_w, ev_r, ev_n = [], [], []
        for b in p.event_bufs:
            mem = Mem(MemoryData(shape=mem_event_layout(p, b), depth=b.depth, init=[]), readmem=self.readmem)
            m.submodules[f"events_buf{b.index}"] = mem
            ev_w.append(mem.write_port())
            ev_r.append(mem.read_port())
        for e in p.event_mems:
            ev_n.append(Signal(range(e.depth + 1), name=f"ev_count_{e.tensor}"))

        # ---- statistics counters
        def ctr(name):
            return Signal(STAT_WIDTH, name=f"stat_{name}")
        c_cycles, c_syn = ctr("cycles"), ctr("syn_cycles")
        c_events = [ctr(f"events_{e.tensor}") for e in p.event_mems]
        c_eval = [ctr(f"eval_{e.tensor}") for e in p.event_mems]
        c_upd = [ctr(f"upd_{l.name}") for l in p.layers]
        c_busy = [ctr(f"busy_pe{i}") for i in range(P)]
        stat_list = [None] * p.stat_count
        stat_list[p.stats["cycles"]] = c_cycles
        stat_list[p.stats["syn_cycles"]] = c_syn
        for e in p.event_mems:
            stat_list[p.stats["events"][e.tensor]] = c_events[e.index]
            stat_list[p.stats["evaluated"][e.tensor]] = c_eval[e.index]
        for l in p.layers:
            stat_list[p.stats["updates"][l.name]] = c_upd[l.index]
        for i in range(P):
            stat_list[p.stats["pe_busy"][i]] = c_busy[i]
        m.d.comb += self.stat_data.eq(Array(stat_list)[self.stat_addr])
        all_counters = [c_cycles, c_syn] + c_events + c_eval + c_upd + c_busy

        # ---- thresholds: input gate registers, layer gates inside the PEs (via a decode ROM)
        cin = p.input_shape[0]
        in_th = Array(Signal(p.th_w, init=p.input_thresholds[c], name=f"in_th{c}") for c in range(cin))
        m.submodules.cfg_rom = cfg_rom = Mem(self.cfg_rom_data, image="cfg_map.hex", readmem=self.readmem)
        cfg_r = cfg_rom.read_port()
        cfg_we_r, cfg_data_r = Signal(), Signal.like(self.cfg_data)
        m.d.comb += cfg_r.addr.eq(self.cfg_addr)
        m.d.sync += [cfg_we_r.eq(self.cfg_we), cfg_data_r.eq(self.cfg_data)]
        for i, pe in enumerate(pes):
            m.d.comb += [pe.th_we.eq(cfg_we_r & (cfg_r.data.target == i)),
                         pe.th_addr.eq(cfg_r.data.local), pe.th_data.eq(cfg_data_r)]
        with m.If(cfg_we_r & (cfg_r.data.target == P)):
            m.d.sync += in_th[cfg_r.data.local].eq(cfg_data_r)

        # ---- frame state
        flush, memloss = Signal(), Signal()
        li = Signal(range(max(p.n_layers, 2)))
        ti = Signal(range(max(p.n_terms, 2)))
        for pe in pes:
            m.d.comb += [pe.layer.eq(li), pe.flush.eq(flush), pe.memloss.eq(memloss)]
        all_idle = Signal()
        all_syn_idle = Signal()
        all_gate_idle = Signal()
        m.d.comb += [all_idle.eq(Cat(pe.idle for pe in pes).all()),
                     all_syn_idle.eq(Cat(pe.syn_idle for pe in pes).all()),
                     all_gate_idle.eq(Cat(pe.gate_idle for pe in pes).all())]

        # per-layer and per-term constants
        l_first, l_last = Signal.like(ti), Signal.like(ti)
        l_mem = Signal(range(max(len(p.event_mems), 2)))
        l_readout = Signal()
        with m.Switch(li):
            for l in p.layers:
                with m.Case(l.index):
                    m.d.comb += [l_first.eq(l.terms[0]), l_last.eq(l.terms[-1]), l_readout.eq(int(l.readout)),
                                 l_mem.eq(l.event_mem if l.event_mem is not None else 0)]
        t_mem = Signal.like(l_mem)
        with m.Switch(ti):
            for t in p.terms:
                with m.Case(t.index):
                    m.d.comb += t_mem.eq(t.src_mem)

        # ---- input gate state
        m.submodules.in_state = in_state = Mem(self.in_state_data, readmem=self.readmem)
        is_w = in_state.write_port()
        is_r = in_state.read_port()
        m.submodules.in_rule = rule = GateRule(value_shape=unsigned(p.input_r_w), th_w=p.th_w)
        N = p.input_size
        _, H, W = p.input_shape
        sweep_ptr = Signal(range(N + 1))
        pix_n = Signal(range(N + 1))
        pc, py, px = Signal(range(cin + 1)), Signal(range(H + 1)), Signal(range(W + 1))
        s1_valid, s1_x = Signal(), Signal(9)
        s1_c, s1_y, s1_xx, s1_idx = Signal.like(pc), Signal.like(py), Signal.like(px), Signal.like(pix_n)
        s2_valid, s2_x, s2_r = Signal(), Signal(9), Signal(unsigned(p.input_r_w))
        s2_c, s2_y, s2_xx, s2_idx = Signal.like(pc), Signal.like(py), Signal.like(px), Signal.like(pix_n)
        s2_h = Signal.like(in_th[0])

        # ---- replay engine (overlapping the input phase when the first term replays the input)
        overlap_input = p.terms[p.layers[0].terms[0]].src_mem == p.event_mems[0].index
        r_idx = Signal(range(max(e.depth for e in p.event_mems) + 1))
        r_valid = Signal()
        all_ready = Signal()
        m.d.comb += all_ready.eq(Cat(pe.syn.ready for pe in pes).all())
        take = r_valid & all_ready
        slot = ~r_valid | take
        r_data = Signal(evl)
        r_cnt = Signal.like(r_idx)
        with m.Switch(t_mem):
            for e in p.event_mems:
                with m.Case(e.index):
                    rd = ev_r[e.buf].data
                    m.d.comb += [r_data.c.eq(rd.c), r_data.y.eq(rd.y), r_data.x.eq(rd.x), r_data.delta.eq(rd.delta),
                                 r_cnt.eq(ev_n[e.index])]
        for rp in ev_r:
            m.d.comb += [rp.addr.eq(r_idx), rp.en.eq(slot)]
        for pe in pes:
            m.d.comb += [pe.syn.payload.term.eq(ti), pe.syn.payload.c.eq(r_data.c), pe.syn.payload.y.eq(r_data.y),
                         pe.syn.payload.x.eq(r_data.x), pe.syn.payload.delta.eq(r_data.delta)]

        # ---- gate-phase arbiter / readout selector
        rr = Signal(range(max(P, 2)))
        sel = Signal(range(max(P, 2)))
        och = Signal(range(p.output.channels + 1))
        oshape = p.output.gate_shape
        ohw = oshape[1] * oshape[2]
        ecnt = Signal(range(ohw + 1))

        upd_sum = sum(pe.upd for pe in pes)
        eval_sum = sum(pe.evald for pe in pes)

        def replay(term_done=None):
            """The replay engine's step: broadcast the held event (an event is transferred only when
            every PE takes it, so each PE sees valid only then; PE ready never depends on valid: no
            combinational loop) and fetch the current term's next event. When every event written
            so far was fetched, ``term_done()`` ends the term; without it (the term's source still
            fills: input or gate phase running) the engine waits, chasing the write count."""
            for pe in pes:
                m.d.comb += pe.syn.valid.eq(take)
            with m.If(slot):
                with m.If(r_idx < r_cnt):
                    m.d.sync += [r_idx.eq(r_idx + 1), r_valid.eq(1)]
                with m.Else():
                    m.d.sync += r_valid.eq(0)
                    if term_done is not None:
                        term_done()

        with m.FSM(name="seq") as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [flush.eq(self.start_flush), memloss.eq(self.start_memloss),
                                 sweep_ptr.eq(0), pix_n.eq(0), pc.eq(0), py.eq(0), px.eq(0),
                                 li.eq(0), ti.eq(p.layers[0].terms[0]), r_idx.eq(0), r_valid.eq(0)]
                    m.d.sync += [c.eq(0) for c in all_counters]
                    m.d.sync += [n.eq(0) for n in ev_n]
                    for pe in pes:
                        m.d.comb += pe.sweep_start.eq(self.start_flush)
                    with m.If(self.start_flush):
                        m.next = "SWEEP"
                    with m.Else():
                        m.next = "INPUT"
            with m.State("SWEEP"):
                m.d.comb += [is_w.addr.eq(sweep_ptr), is_w.data.eq(0), is_w.en.eq(sweep_ptr < N)]
                with m.If(sweep_ptr < N):
                    m.d.sync += sweep_ptr.eq(sweep_ptr + 1)
                with m.Elif(all_idle):
                    m.next = "INPUT"
            with m.State("INPUT"):
                m.d.comb += [self.pix.ready.eq(pix_n < N), is_r.addr.eq(pix_n), is_r.en.eq(1)]
                m.d.sync += s1_valid.eq(0)
                with m.If(self.pix.valid & self.pix.ready):
                    m.d.sync += [s1_valid.eq(1), s1_x.eq(self.pix.payload), s1_c.eq(pc), s1_y.eq(py),
                                 s1_xx.eq(px), s1_idx.eq(pix_n), pix_n.eq(pix_n + 1)]
                    with m.If(px != W - 1):
                        m.d.sync += px.eq(px + 1)
                    with m.Else():
                        m.d.sync += px.eq(0)
                        with m.If(py != H - 1):
                            m.d.sync += py.eq(py + 1)
                        with m.Else():
                            m.d.sync += [py.eq(0), pc.eq(pc + 1)]
                # stage 1: the pixel's state word and threshold arrive and are registered (the rule
                # starts from flip-flops, not from the block RAM's output; consecutive pixels are
                # distinct elements, so stage 2's write never feeds stage 1's read)
                m.d.sync += [s2_valid.eq(s1_valid), s2_x.eq(s1_x), s2_r.eq(is_r.data.r), s2_h.eq(in_th[s1_c]),
                             s2_c.eq(s1_c), s2_y.eq(s1_y), s2_xx.eq(s1_xx), s2_idx.eq(s1_idx)]
                # stage 2: the gate rule (gate.GateRule, shared with the PEs)
                in_w = ev_w[p.event_mems[0].buf]
                dn, fire = rule.dn, rule.fire
                m.d.comb += [
                    rule.v.eq(s2_x), rule.r.eq(s2_r), rule.h.eq(s2_h),
                    rule.hn.eq(-s2_h), rule.flush.eq(flush), rule.memloss.eq(memloss),
                    is_w.addr.eq(s2_idx), is_w.en.eq(s2_valid),
                    is_w.data.r.eq(rule.r_next),
                    in_w.addr.eq(ev_n[0]), in_w.en.eq(s2_valid & fire),
                    in_w.data.c.eq(s2_c), in_w.data.y.eq(s2_y), in_w.data.x.eq(s2_xx),
                    in_w.data.delta.eq(dn),
                ]
                with m.If(s2_valid):
                    m.d.sync += c_eval[0].eq(c_eval[0] + 1)
                    with m.If(fire):
                        m.d.sync += [ev_n[0].eq(ev_n[0] + 1), c_events[0].eq(c_events[0] + 1)]
                if overlap_input:
                    # the first layer's first term replays the input events while they arrive: the
                    # replay chases the input gate's write pointer (ev_n[0]) and waits when caught up
                    replay()
                with m.If((pix_n == N) & ~s1_valid & ~s2_valid):
                    m.next = "SYN"              # the term goes on (or starts) where the input left it
            with m.State("SYN"):
                m.d.sync += c_syn.eq(c_syn + 1)

                def next_term():
                    m.d.sync += r_idx.eq(0)
                    with m.If(ti == l_last):
                        m.next = "DRAIN"
                    with m.Else():
                        m.d.sync += ti.eq(ti + 1)
                replay(next_term)
            with m.State("DRAIN"):
                m.d.sync += c_syn.eq(c_syn + 1)
                with m.If(all_syn_idle):
                    for pe in pes:
                        m.d.comb += pe.gate_start.eq(1)
                    # the next layer's first term replays during this gate phase
                    m.d.sync += [rr.eq(0), sel.eq(0), och.eq(0), ecnt.eq(0),
                                 ti.eq(Mux(li == p.n_layers - 1, ti, l_last + 1)), r_idx.eq(0), r_valid.eq(0)]
                    m.next = "GATE"
            with m.State("GATE"):
                with m.If(l_readout):
                    valid = Array(pe.evt.valid for pe in pes)[sel]
                    value = Array(pe.evt.payload.delta for pe in pes)[sel]
                    m.d.comb += [self.out.valid.eq(valid), self.out.payload.eq(value),
                                 self.out.last.eq((och == p.output.channels - 1) & (ecnt == ohw - 1))]
                    for i, pe in enumerate(pes):
                        m.d.comb += pe.evt.ready.eq(self.out.ready & (sel == i))
                    with m.If(valid & self.out.ready):
                        with m.If(ecnt != ohw - 1):
                            m.d.sync += ecnt.eq(ecnt + 1)
                        with m.Else():
                            m.d.sync += [ecnt.eq(0), och.eq(och + 1), sel.eq(Mux(sel == P - 1, 0, sel + 1))]
                with m.Else():
                    gi, gvalid = Signal.like(rr), Signal()
                    with m.Switch(rr):
                        for r in range(P):
                            with m.Case(r):
                                order = [(r + k) % P for k in range(P)]
                                for k, i in enumerate(order):
                                    cond = pes[i].evt.valid
                                    ctx = m.If(cond) if k == 0 else m.Elif(cond)
                                    with ctx:
                                        m.d.comb += [gi.eq(i), gvalid.eq(1)]
                    g_payload = data.View(pe_event_layout(p), Array(pe.evt.payload.as_value() for pe in pes)[gi])
                    for i, pe in enumerate(pes):
                        m.d.comb += pe.evt.ready.eq(gvalid & (gi == i))
                    with m.Switch(l_mem):
                        for e in p.event_mems[1:]:
                            with m.Case(e.index):
                                wp = ev_w[e.buf]
                                m.d.comb += [wp.addr.eq(ev_n[e.index]), wp.en.eq(gvalid),
                                             wp.data.c.eq(g_payload.c), wp.data.y.eq(g_payload.y),
                                             wp.data.x.eq(g_payload.x), wp.data.delta.eq(g_payload.delta)]
                                with m.If(gvalid):
                                    m.d.sync += [ev_n[e.index].eq(ev_n[e.index] + 1),
                                                 c_events[e.index].eq(c_events[e.index] + 1)]
                    with m.If(gvalid):
                        m.d.sync += rr.eq(Mux(gi == P - 1, 0, gi + 1))
                    with m.Switch(l_mem):
                        for e in p.event_mems[1:]:
                            with m.Case(e.index):
                                m.d.sync += c_eval[e.index].eq(c_eval[e.index] + eval_sum)
                # overlapped: the next layer's first term replays while this gate phase runs (the
                # PEs keep the two layers in different memory banks); it chases this layer's event
                # count when it reads this layer's events, and waits when it has caught up
                with m.If(li != p.n_layers - 1):
                    replay()
                with m.If(all_gate_idle):
                    with m.If(li == p.n_layers - 1):
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += li.eq(li + 1)
                        m.next = "SYN"              # the next layer's first term goes on where it is
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))

        # counters running during the frame
        with m.If(self.busy):
            m.d.sync += c_cycles.eq(c_cycles + 1)
            for i, pe in enumerate(pes):
                m.d.sync += c_busy[i].eq(c_busy[i] + pe.busy)
            # updates count to the layer of the term being replayed (not the layer of the sequencer's
            # phase: a layer's first term replays during the previous layer's gate phase). A layer's
            # updates all land before the next layer's replay starts (the drain waits for them).
            with m.Switch(ti):
                for t in p.terms:
                    with m.Case(t.index):
                        m.d.sync += c_upd[t.layer].eq(c_upd[t.layer] + upd_sum)
        return m
