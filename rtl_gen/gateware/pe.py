"""Processing element: synaptic pipeline (event -> accumulator updates) and gate unit.

Architecture: docs/architecture.md §2-4. PE ``index`` owns channels ``c`` with ``c % P == index``
of every layer (local channel ``c // P``).
"""
from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import MemoryData          # after the star import, which also exports a Memory
from amaranth.lib.wiring import In, Out

from ..layouts import gate_state_layout, param_layout, pe_event_layout, syn_event_layout, touch_layout
from ..limits import MULT_WIDTH
from ..plan import HwPlan
from .gate import GateRule
from .mem import Mem

__all__ = ["PE", "SYN_DEPTH", "GATE_DEPTH"]

#: Cycles from accepting the last event to the last accumulator write (E1, E2, EP, E3, expander, reads, RMW).
SYN_DEPTH = 7
#: Registered stages of the gate pipeline (G0 G1 GA GP GR GX GM GS GQ GF GC G3 G4), from start to output.
GATE_DEPTH = 13


def _sh(n):
    return int(n).bit_length() - 1          # log2 of a power of two


class PE(wiring.Component):
    """One processing element.

    Ports
    -----
    syn : In(stream)      broadcast events {term, c, y, x, delta}; ready when the expander can take one.
    evt : Out(stream)     gate events {c (global), y, x, delta}, or readout values in ``delta``.
    layer : In            layer of the gate phase (sampled with ``gate_start``).
    gate_start : In       pulse: run the gate phase of ``layer``; ``flush`` / ``memloss`` sampled with it.
    sweep_start : In      pulse: clear A, BD and T (flush frames; memories ignore ``rst``).
    idle : Out            no gate phase or sweep running and the synaptic pipeline is empty.
    syn_idle : Out        the synaptic pipeline is empty.
    th_we, th_addr, th_data : In     threshold writes (local threshold address).
    upd, evald, busy : Out           per-cycle pulses for the statistics counters.

    ``readmem``: memories elaborate to Verilog memories loaded from ``mem/`` (:mod:`.mem`), the
    initialised ones from the images :attr:`images` (``{file name: MemoryData}``).
    """

    def __init__(self, plan: HwPlan, *, index, readmem=False):
        if not isinstance(index, int) or not 0 <= index < plan.pes:
            raise ValueError(f"PE index must be in 0..{plan.pes - 1}, not {index!r}")
        self.plan, self.index, self.readmem = plan, index, readmem
        p, i = plan, index
        L = p.lanes
        #: ``[parity][lane]``: accumulators, touched bits and touched lists of the layers of that index
        #: parity (layer l: bank l % 2) and local channels k % L == lane; weights ``[lane]``
        self.acc_banks = [[MemoryData(shape=signed(p.acc_w), depth=p.acc_depth[i][b], init=[]) for _ in range(L)]
                          for b in range(2)]
        self.touched_banks = [[MemoryData(shape=1, depth=p.touch_depth[i][b], init=[]) for _ in range(L)]
                              for b in range(2)]
        self.tlist_banks = [[MemoryData(shape=touch_layout(p, i), depth=p.touch_depth[i][b], init=[])
                             for _ in range(L)] for b in range(2)]
        self.w_banks = [MemoryData(shape=signed(p.weight_w), depth=len(p.weights[i][j]), init=p.weights[i][j])
                        for j in range(L)]
        self.w_data = self.w_banks[0]
        self.bd_data = MemoryData(shape=gate_state_layout(p), depth=p.bd_depth[i], init=[])
        self.p_data = MemoryData(shape=param_layout(p), depth=len(p.params[i]),
                                 init=[{"bias": b, "mult": mu, "shift": s} for b, mu, s in p.params[i]])
        self.th_data_mem = MemoryData(shape=unsigned(p.th_w), depth=len(p.th_init[i]), init=p.th_init[i])
        #: the initialised memories: ``mem/`` image file name -> contents
        self.images = {f"pe{i}_weights.hex": self.w_data, f"pe{i}_params.hex": self.p_data,
                       f"pe{i}_thresholds.hex": self.th_data_mem}
        self.images.update({f"pe{i}_weights_lane{j}.hex": self.w_banks[j] for j in range(1, L)})
        super().__init__({
            "syn":         In(stream.Signature(syn_event_layout(p))),
            "evt":         Out(stream.Signature(pe_event_layout(p))),
            "layer":       In(range(max(p.n_layers, 2))),
            "gate_start":  In(1),
            "flush":       In(1),
            "memloss":     In(1),
            "sweep_start": In(1),
            "idle":        Out(1),
            "gate_idle":   Out(1),
            "syn_idle":    Out(1),
            "th_we":       In(1),
            "th_addr":     In(range(max(len(p.th_init[i]), 2))),
            "th_data":     In(unsigned(p.th_w)),
            "upd":         Out(range(p.lanes + 1)),
            "evald":       Out(1),
            "busy":        Out(1),
        })

    # ------------------------------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        p, pe, P = self.plan, self.index, self.plan.pes
        own_max = max(max(l.own[pe] for l in p.layers), 1)
        tl = touch_layout(p, pe)

        image = {id(d): name for name, d in self.images.items()}

        def mem(d):
            return Mem(d, image=image.get(id(d)), readmem=self.readmem)

        L, lsh = p.lanes, _sh(p.lanes)
        acc_w, acc_r, t_w, t_r, tl_w, tl_r = ([[None] * L, [None] * L] for _ in range(6))
        w_r = []
        for b in range(2):
            for j in range(L):
                sfx = ("_p1" if b else "") + (f"_l{j}" if j else "")
                acc = m.submodules[f"acc{sfx}"] = mem(self.acc_banks[b][j])
                touched = m.submodules[f"touched{sfx}"] = mem(self.touched_banks[b][j])
                tlist = m.submodules[f"tlist{sfx}"] = mem(self.tlist_banks[b][j])
                acc_w[b][j] = acc.write_port()
                acc_r[b][j] = acc.read_port(transparent_for=(acc_w[b][j],))
                t_w[b][j] = touched.write_port()
                t_r[b][j] = touched.read_port(transparent_for=(t_w[b][j],))
                tl_w[b][j] = tlist.write_port()
                tl_r[b][j] = tlist.read_port()
        for j in range(L):
            wmem = m.submodules["wmem" + (f"_l{j}" if j else "")] = mem(self.w_banks[j])
            w_r.append(wmem.read_port())
        m.submodules.bd = bd = mem(self.bd_data)
        m.submodules.pmem = pmem = mem(self.p_data)
        m.submodules.thmem = thmem = mem(self.th_data_mem)

        bd_w = bd.write_port()
        bd_r = bd.read_port()
        p_r = pmem.read_port()
        th_w = thmem.write_port()
        th_r = thmem.read_port()
        m.d.comb += [th_w.en.eq(self.th_we), th_w.addr.eq(self.th_addr), th_w.data.eq(self.th_data)]

        sweeping = Signal()
        gating = Signal()

        # ======================================================================================
        # synaptic pipeline: E1 input register, E2 output-window ranges, E3 first addresses,
        # U0 expander (incremental address counters), U1 reads, U2 read-modify-write
        ip = self.syn.payload
        sw = max(p.y_w, p.x_w) + 8
        ch_shape = range(own_max + 1)
        wa_w, aa_w = len(w_r[0].addr), max(len(acc_r[b][0].addr) for b in range(2))
        # the gate unit's element: local channel and gate (y, x)
        el = data.StructLayout({"c": range(own_max), "y": tl["y"].shape, "x": tl["x"].shape})
        ga_w = max(*p.touch_depth[pe], 2).bit_length()

        def sig(shape, name):
            return Signal(shape, name=name)

        # E1
        e1_valid, e1 = Signal(), Signal(syn_event_layout(p))
        # E2
        e2_valid = Signal()
        e2_term, e2_c, e2_delta = Signal.like(e1.term), Signal(p.c_w), Signal.like(e1.delta)
        e2_ny, e2_nx = Signal(signed(sw)), Signal(signed(sw))
        e2_chlo, e2_chhi = Signal(ch_shape), Signal(ch_shape)
        e2_oylo, e2_oyhi, e2_oxlo, e2_oxhi = Signal(p.y_w), Signal(p.y_w), Signal(p.x_w), Signal(p.x_w)
        # EP
        ep_valid = Signal()
        ep_term, ep_delta = Signal.like(e1.term), Signal.like(e1.delta)
        ep_chlo, ep_chhi = Signal(ch_shape), Signal(ch_shape)
        ep_oylo, ep_oyhi, ep_oxlo, ep_oxhi = Signal(p.y_w), Signal(p.y_w), Signal(p.x_w), Signal(p.x_w)
        ep_wc, ep_wy, ep_wx = Signal(wa_w), Signal(wa_w), Signal(wa_w)
        ep_ac, ep_ay = Signal(aa_w), Signal(aa_w)
        ep_gc, ep_gy = Signal(ga_w), Signal(ga_w)
        ep_gy0, ep_gx0, ep_py0, ep_px0 = Signal(p.y_w), Signal(p.x_w), Signal(p.pool_w), Signal(p.pool_w)
        # E3
        e3_valid = Signal()
        e3_term, e3_delta = Signal.like(e1.term), Signal.like(e1.delta)
        e3_chlo, e3_chhi = Signal(ch_shape), Signal(ch_shape)
        e3_oylo, e3_oyhi, e3_oxlo, e3_oxhi = Signal(p.y_w), Signal(p.y_w), Signal(p.x_w), Signal(p.x_w)
        e3_w0, e3_a0, e3_g0 = Signal(wa_w), Signal(aa_w), Signal(ga_w)
        e3_gy0, e3_py0, e3_gx0, e3_px0 = Signal(p.y_w), Signal(p.pool_w), Signal(p.x_w), Signal(p.pool_w)
        # U0 expander
        cur_valid = Signal()
        cur_term, cur_delta = Signal.like(e1.term), Signal.like(e1.delta)
        cur_par = Signal()                                     # the term's layer parity: its memory bank
        ch, ch_hi = Signal(ch_shape), Signal(ch_shape)          # channel group (k // L)
        c_lo, c_hi = Signal(ch_shape), Signal(ch_shape)         # the event's local channels
        oy, oy_lo, oy_hi = Signal(p.y_w), Signal(p.y_w), Signal(p.y_w)
        ox, ox_lo, ox_hi = Signal(p.x_w), Signal(p.x_w), Signal(p.x_w)
        w, w_row, w_ch = Signal(wa_w), Signal(wa_w), Signal(wa_w)
        a, a_row, a_ch = Signal(aa_w), Signal(aa_w), Signal(aa_w)
        g, g_row, g_ch = Signal(ga_w), Signal(ga_w), Signal(ga_w)
        gy, gy0, py, py0 = Signal(p.y_w), Signal(p.y_w), Signal(p.pool_w), Signal(p.pool_w)
        gx, gx0, px, px0 = Signal(p.x_w), Signal(p.x_w), Signal(p.pool_w), Signal(p.pool_w)
        # per-term steps, latched with the event
        dwx, dwy, dwc = Signal(wa_w), Signal(wa_w), Signal(wa_w)
        day, dac = Signal(aa_w), Signal(aa_w)
        dgy, dgc = Signal(ga_w), Signal(ga_w)
        pym, pxm = Signal(p.pool_w), Signal(p.pool_w)
        ghc, gwc, gated_t = Signal(p.y_w + 1), Signal(p.x_w + 1), Signal()

        last = Signal()
        cur_ready, e3_ready, ep_ready, e2_ready, e1_ready = Signal(), Signal(), Signal(), Signal(), Signal()
        m.d.comb += [
            last.eq((ox == ox_hi) & (oy == oy_hi) & (ch == ch_hi)),
            cur_ready.eq(~cur_valid | last),
            e3_ready.eq(~e3_valid | cur_ready),
            ep_ready.eq(~ep_valid | e3_ready),
            e2_ready.eq(~e2_valid | ep_ready),
            e1_ready.eq(~e1_valid | e2_ready),
            self.syn.ready.eq(~sweeping & e1_ready),      # also while a gate phase runs (the other bank)
        ]

        # E1: register the broadcast event
        with m.If(e1_ready):
            m.d.sync += [e1_valid.eq(self.syn.valid & self.syn.ready), e1.eq(ip)]

        # E2: owned-channel range and output-window range; events reaching nothing are dropped here
        n_empty = Signal()
        n = {k: Signal.like(v, name=f"n_{k}") for k, v in
             dict(chlo=e2_chlo, chhi=e2_chhi, oylo=e2_oylo, oyhi=e2_oyhi, oxlo=e2_oxlo, oxhi=e2_oxhi).items()}
        ny, nx = Signal(signed(sw)), Signal(signed(sw))
        with m.Switch(e1.term):
            for t in p.terms:
                lay = p.layers[t.layer]
                with m.Case(t.index):
                    m.d.comb += [ny.eq(e1.y + t.pads[0]), nx.eq(e1.x + t.pads[1])]
                    if t.kind in ("conv", "linear"):
                        own = lay.own[pe]
                        m.d.comb += [n["chlo"].eq(0), n["chhi"].eq(max(own - 1, 0))]
                        ch_ok = Const(int(own > 0))
                    else:                                        # sumpool, scale: the event's own channel
                        m.d.comb += [n["chlo"].eq(e1.c // P), n["chhi"].eq(e1.c // P)]
                        ch_ok = (e1.c % P) == pe
                    if t.kind in ("linear", "scale"):
                        if t.kind == "scale":
                            m.d.comb += [n["oylo"].eq(e1.y), n["oyhi"].eq(e1.y),
                                         n["oxlo"].eq(e1.x), n["oxhi"].eq(e1.x)]
                        else:
                            m.d.comb += [n["oylo"].eq(0), n["oyhi"].eq(0), n["oxlo"].eq(0), n["oxhi"].eq(0)]
                        m.d.comb += n_empty.eq(~ch_ok)
                    else:
                        kh, kw = t.kernel
                        sy, sx = _sh(t.stride[0]), _sh(t.stride[1])
                        oh, ow = t.out_shape[1], t.out_shape[2]
                        ylo = Signal(signed(sw), name=f"ylo_{t.index}")
                        yhi = Signal(signed(sw), name=f"yhi_{t.index}")
                        xlo = Signal(signed(sw), name=f"xlo_{t.index}")
                        xhi = Signal(signed(sw), name=f"xhi_{t.index}")
                        m.d.comb += [
                            # first output whose window holds the input: ceil((n - (k-1)) / s), >= 0
                            ylo.eq((ny - (kh - 1) + (1 << sy) - 1) >> sy),
                            xlo.eq((nx - (kw - 1) + (1 << sx) - 1) >> sx),
                            yhi.eq(ny >> sy), xhi.eq(nx >> sx),
                        ]
                        cyl = Mux(ylo < 0, 0, ylo)
                        cyh = Mux(yhi > oh - 1, oh - 1, yhi)
                        cxl = Mux(xlo < 0, 0, xlo)
                        cxh = Mux(xhi > ow - 1, ow - 1, xhi)
                        m.d.comb += [n["oylo"].eq(cyl), n["oyhi"].eq(cyh), n["oxlo"].eq(cxl), n["oxhi"].eq(cxh),
                                     n_empty.eq((cyl > cyh) | (cxl > cxh) | (oh == 0) | (ow == 0) | ~ch_ok)]
        with m.If(e2_ready):
            m.d.sync += [e2_valid.eq(e1_valid & ~n_empty), e2_term.eq(e1.term), e2_c.eq(e1.c),
                         e2_delta.eq(e1.delta), e2_ny.eq(ny), e2_nx.eq(nx),
                         e2_chlo.eq(n["chlo"]), e2_chhi.eq(n["chhi"]), e2_oylo.eq(n["oylo"]), e2_oyhi.eq(n["oyhi"]),
                         e2_oxlo.eq(n["oxlo"]), e2_oxhi.eq(n["oxhi"])]

        # EP: the products of the first update's addresses (constant multiplies, registered so that
        # they map onto DSP blocks between flip-flops, or onto LUTs, off the sums' path)
        with m.If(ep_ready):
            m.d.sync += [ep_valid.eq(e2_valid), ep_term.eq(e2_term), ep_delta.eq(e2_delta),
                         ep_chlo.eq(e2_chlo), ep_chhi.eq(e2_chhi), ep_oylo.eq(e2_oylo), ep_oyhi.eq(e2_oyhi),
                         ep_oxlo.eq(e2_oxlo), ep_oxhi.eq(e2_oxhi)]
            with m.Switch(e2_term):
                for t in p.terms:
                    lay = p.layers[t.layer]
                    with m.Case(t.index):
                        kh, kw = t.kernel
                        cin, sh_, sw_ = t.src_shape
                        if t.kind == "conv":
                            ky0 = e2_ny - (e2_oylo << _sh(t.stride[0]))
                            kx0 = e2_nx - (e2_oxlo << _sh(t.stride[1]))
                            m.d.sync += [ep_wc.eq(e2_c * (kh * kw)), ep_wy.eq(ky0 * kw), ep_wx.eq(kx0)]
                        elif t.kind == "linear":
                            m.d.sync += [ep_wc.eq(e2_c * (sh_ * sw_)), ep_wy.eq(e2_ny * sw_), ep_wx.eq(e2_nx)]
                        elif t.kind == "scale":
                            m.d.sync += [ep_wc.eq(e2_chlo >> lsh), ep_wy.eq(0), ep_wx.eq(0)]
                        else:
                            m.d.sync += [ep_wc.eq(0), ep_wy.eq(0), ep_wx.eq(0)]
                        _, ah, aw = lay.acc_shape
                        m.d.sync += [ep_ac.eq((e2_chlo >> lsh) * (ah * aw)), ep_ay.eq(e2_oylo * aw)]
                        if lay.gated:
                            _, gh, gw = lay.gate_shape
                            pky, pkx = lay.pool
                            gy_ = e2_oylo // pky if pky > 1 else e2_oylo
                            gx_ = e2_oxlo // pkx if pkx > 1 else e2_oxlo
                            m.d.sync += [ep_gc.eq((e2_chlo >> lsh) * (gh * gw)), ep_gy.eq(gy_ * gw), ep_gy0.eq(gy_),
                                         ep_gx0.eq(gx_),
                                         ep_py0.eq(e2_oylo % pky if pky > 1 else 0),
                                         ep_px0.eq(e2_oxlo % pkx if pkx > 1 else 0)]

        # E3: the first update's weight, accumulator and gate addresses (sums of EP's products)
        with m.If(e3_ready):
            m.d.sync += [e3_valid.eq(ep_valid), e3_term.eq(ep_term), e3_delta.eq(ep_delta),
                         e3_chlo.eq(ep_chlo), e3_chhi.eq(ep_chhi), e3_oylo.eq(ep_oylo), e3_oyhi.eq(ep_oyhi),
                         e3_oxlo.eq(ep_oxlo), e3_oxhi.eq(ep_oxhi),
                         e3_gy0.eq(ep_gy0), e3_gx0.eq(ep_gx0), e3_py0.eq(ep_py0), e3_px0.eq(ep_px0),
                         e3_g0.eq(ep_gc + ep_gy + ep_gx0)]
            with m.Switch(ep_term):
                for t in p.terms:
                    lay = p.layers[t.layer]
                    with m.Case(t.index):
                        m.d.sync += [e3_w0.eq(t.wbase[pe] + ep_wc + ep_wy + ep_wx),
                                     e3_a0.eq(lay.abase[pe] + ep_ac + ep_ay + ep_oxlo)]

        # U0: one update per cycle; the addresses step by per-term constants
        with m.If(cur_ready):
            m.d.sync += [cur_valid.eq(e3_valid), cur_term.eq(e3_term), cur_delta.eq(e3_delta),
                         ch.eq(e3_chlo >> lsh), ch_hi.eq(e3_chhi >> lsh), c_lo.eq(e3_chlo), c_hi.eq(e3_chhi),
                         oy.eq(e3_oylo), oy_lo.eq(e3_oylo), oy_hi.eq(e3_oyhi),
                         ox.eq(e3_oxlo), ox_lo.eq(e3_oxlo), ox_hi.eq(e3_oxhi),
                         w.eq(e3_w0), w_row.eq(e3_w0), w_ch.eq(e3_w0),
                         a.eq(e3_a0), a_row.eq(e3_a0), a_ch.eq(e3_a0),
                         g.eq(e3_g0), g_row.eq(e3_g0), g_ch.eq(e3_g0),
                         gy.eq(e3_gy0), gy0.eq(e3_gy0), py.eq(e3_py0), py0.eq(e3_py0),
                         gx.eq(e3_gx0), gx0.eq(e3_gx0), px.eq(e3_px0), px0.eq(e3_px0)]
            with m.Switch(e3_term):
                for t in p.terms:
                    lay = p.layers[t.layer]
                    with m.Case(t.index):
                        m.d.sync += cur_par.eq(lay.index % 2)
                        kh, kw = t.kernel
                        cin = t.src_shape[0]
                        _, ah, aw = lay.acc_shape
                        wmask, amask = (1 << wa_w) - 1, (1 << aa_w) - 1
                        if t.kind == "conv":
                            steps = (-t.stride[1], -t.stride[0] * kw, cin * kh * kw)
                        elif t.kind == "linear":
                            steps = (0, 0, t.src_flat)
                        elif t.kind == "scale":
                            steps = (0, 0, 1)
                        else:
                            steps = (0, 0, 0)
                        m.d.sync += [dwx.eq(steps[0] & wmask), dwy.eq(steps[1] & wmask), dwc.eq(steps[2] & wmask),
                                     day.eq(aw & amask), dac.eq((ah * aw) & amask)]
                        if lay.gated:
                            _, gh, gw = lay.gate_shape
                            gmask = (1 << ga_w) - 1
                            m.d.sync += [dgy.eq(gw & gmask), dgc.eq((gh * gw) & gmask),
                                         pym.eq(lay.pool[0] - 1), pxm.eq(lay.pool[1] - 1),
                                         ghc.eq(gh), gwc.eq(gw), gated_t.eq(1)]
                        else:
                            m.d.sync += gated_t.eq(0)
        with m.Else():                                   # cur_valid & ~last: next update
            with m.If(ox != ox_hi):
                m.d.sync += [ox.eq(ox + 1), w.eq(w + dwx), a.eq(a + 1)]
                with m.If(px == pxm):
                    m.d.sync += [px.eq(0), gx.eq(gx + 1), g.eq(g + 1)]
                with m.Else():
                    m.d.sync += px.eq(px + 1)
            with m.Elif(oy != oy_hi):
                m.d.sync += [ox.eq(ox_lo), oy.eq(oy + 1), w.eq(w_row + dwy), w_row.eq(w_row + dwy),
                             a.eq(a_row + day), a_row.eq(a_row + day), gx.eq(gx0), px.eq(px0)]
                with m.If(py == pym):
                    m.d.sync += [py.eq(0), gy.eq(gy + 1), g.eq(g_row + dgy), g_row.eq(g_row + dgy)]
                with m.Else():
                    m.d.sync += [py.eq(py + 1), g.eq(g_row)]
            with m.Else():
                m.d.sync += [ch.eq(ch + 1), oy.eq(oy_lo), ox.eq(ox_lo),
                             w.eq(w_ch + dwc), w_row.eq(w_ch + dwc), w_ch.eq(w_ch + dwc),
                             a.eq(a_ch + dac), a_row.eq(a_ch + dac), a_ch.eq(a_ch + dac),
                             g.eq(g_ch + dgc), g_row.eq(g_ch + dgc), g_ch.eq(g_ch + dgc),
                             gy.eq(gy0), py.eq(py0), gx.eq(gx0), px.eq(px0)]
        gv = Signal()
        m.d.comb += gv.eq(gated_t & (gy < ghc) & (gx < gwc))
        for j in range(L):
            m.d.comb += [w_r[j].addr.eq(w), w_r[j].en.eq(1)]
        # the lanes of this update: local channel (group << lsh) + j within the event's channels
        mask = Signal(L)
        for j in range(L):
            k = Signal(range(own_max + L), name=f"k_l{j}")
            m.d.comb += [k.eq((ch << lsh) + j), mask[j].eq((k >= c_lo) & (k <= c_hi))]

        # U1: weight words arrive; accumulators and touched bits are read (one of each per lane)
        u1_valid, u1_aa, u1_delta, u1_mask = Signal(), Signal(aa_w), Signal.like(cur_delta), Signal(L)
        u1_gv, u1_ga, u1_gco, u1_par = Signal(), Signal(ga_w), Signal(tl), Signal()
        m.d.sync += [u1_valid.eq(cur_valid), u1_aa.eq(a), u1_delta.eq(cur_delta), u1_mask.eq(mask), u1_par.eq(cur_par),
                     u1_gv.eq(cur_valid & gv), u1_ga.eq(g), u1_gco.c.eq(ch), u1_gco.y.eq(gy), u1_gco.x.eq(gx)]
        # U2: read-modify-write. The read (U1) is one cycle before the write (U2), and the read
        # ports are transparent to the write ports: back-to-back updates of one address see each
        # other without stalls.
        u2_valid, u2_aa, u2_mask = Signal(), Signal(aa_w), Signal(L)
        u2_prod = [Signal(signed(p.weight_w + p.delta_w), name=f"u2_prod_l{j}") for j in range(L)]
        u2_gv, u2_ga, u2_gco, u2_par = Signal(), Signal(ga_w), Signal(tl), Signal()
        m.d.sync += [u2_valid.eq(u1_valid), u2_aa.eq(u1_aa), u2_mask.eq(u1_mask),
                     u2_gv.eq(u1_gv), u2_ga.eq(u1_ga), u2_gco.eq(u1_gco), u2_par.eq(u1_par)]
        m.d.sync += [u2_prod[j].eq(w_r[j].data * u1_delta) for j in range(L)]
        touch_n = [[Signal(range(p.touch_depth[pe][b] + 1), name=f"touch_n_p{b}_l{j}") for j in range(L)]
                   for b in range(2)]
        new_touch = Signal(L)
        upd_lanes = u2_mask & Mux(u2_valid, (1 << L) - 1, 0)
        m.d.comb += self.upd.eq(sum(upd_lanes[j] for j in range(L)))
        acc_old = [Mux(u2_par, acc_r[1][j].data, acc_r[0][j].data) for j in range(L)]   # U2's accumulators
        for j in range(L):
            m.d.comb += new_touch[j].eq(u2_gv & u2_mask[j] & ~Mux(u2_par, t_r[1][j].data, t_r[0][j].data))
            for b in range(2):
                m.d.comb += [tl_w[b][j].addr.eq(touch_n[b][j]), tl_w[b][j].data.eq(u2_gco),
                             tl_w[b][j].en.eq(new_touch[j] & (u2_par == b))]
                with m.If(new_touch[j] & (u2_par == b)):
                    m.d.sync += touch_n[b][j].eq(touch_n[b][j] + 1)
        syn_idle = ~e1_valid & ~e2_valid & ~ep_valid & ~e3_valid & ~cur_valid & ~u1_valid & ~u2_valid
        m.d.comb += self.syn_idle.eq(syn_idle)

        # ======================================================================================
        # gate unit, one tap per cycle; every stage advances on `adv` (output accepted or empty):
        # G0 element/tap generator, G1 touched-list word, GA addresses, GR A/param/threshold reads,
        # GX a + bias, GM product, GS rounding shift, GF activation + BD read, GC clamp + pool max,
        # G3 gate rule (BD write), G4 output register
        layer = Signal.like(self.layer)
        gpar = Signal()                               # the gate's layer parity: the memory bank it reads
        m.d.comb += gpar.eq(layer[0])
        flush = Signal()
        memloss = Signal()
        readout = Signal()
        g_more = Signal()
        idx = Signal(range(max(p.touch_depth[pe]) + 1))
        glane = Signal(range(max(L, 2)))          # the touched list being walked (one per lane)
        gc = Signal(range(own_max + 1))
        gyc, gxc = Signal(p.y_w), Signal(p.x_w)
        ty, tx = Signal(p.pool_w), Signal(p.pool_w)
        all_mode = flush | readout

        out_valid = Signal()
        out = Signal(pe_event_layout(p))
        adv = Signal()
        m.d.comb += [adv.eq(~out_valid | self.evt.ready), self.evt.valid.eq(out_valid), self.evt.payload.eq(out)]

        # per-layer constants for the running layer
        own_l = Signal.like(gc)
        gh_l, gw_l = Signal(p.y_w + 1), Signal(p.x_w + 1)
        pkh_l, pkw_l = Signal(p.pool_w), Signal(p.pool_w)
        with m.Switch(layer):
            for l in p.layers:
                with m.Case(l.index):
                    m.d.comb += [own_l.eq(l.own[pe]), gh_l.eq(l.gate_shape[1]), gw_l.eq(l.gate_shape[2]),
                                 pkh_l.eq(l.pool[0] - 1), pkw_l.eq(l.pool[1] - 1), readout.eq(int(l.readout))]

        g0_valid = Signal()
        m.d.comb += g0_valid.eq(gating & g_more)
        last_tap = (ty == pkh_l) & (tx == pkw_l)
        g1_valid, g1_first, g1_last = Signal(), Signal(), Signal()
        g1_co = Signal(el)
        g1_lane = Signal.like(glane)
        g1_ty, g1_tx = Signal.like(ty), Signal.like(tx)
        for j in range(L):
            for b in range(2):
                m.d.comb += [tl_r[b][j].addr.eq(idx), tl_r[b][j].en.eq(adv)]
        # the next touched list with entries after the current one
        tng = [Signal.like(touch_n[0][j] if len(touch_n[0][j]) >= len(touch_n[1][j]) else touch_n[1][j],
                          name=f"tng_l{j}") for j in range(L)]        # the gate bank's list lengths
        for j in range(L):
            m.d.comb += tng[j].eq(Mux(gpar, touch_n[1][j], touch_n[0][j]))
        tn = Array(tng)
        nxt, nxt_ok = Signal.like(glane), Signal()
        for j in reversed(range(L)):
            with m.If((j > glane) & (tng[j] != 0)):
                m.d.comb += [nxt.eq(j), nxt_ok.eq(1)]
        with m.If(adv):
            m.d.sync += [g1_valid.eq(g0_valid), g1_first.eq((ty == 0) & (tx == 0)), g1_last.eq(last_tap),
                         g1_co.c.eq(gc), g1_co.y.eq(gyc), g1_co.x.eq(gxc), g1_ty.eq(ty), g1_tx.eq(tx),
                         g1_lane.eq(glane)]
            with m.If(g0_valid):
                with m.If(tx != pkw_l):
                    m.d.sync += tx.eq(tx + 1)
                with m.Else():
                    m.d.sync += tx.eq(0)
                    with m.If(ty != pkh_l):
                        m.d.sync += ty.eq(ty + 1)
                    with m.Else():
                        m.d.sync += ty.eq(0)
                        # next element
                        with m.If(all_mode):
                            with m.If(gxc != gw_l - 1):
                                m.d.sync += gxc.eq(gxc + 1)
                            with m.Else():
                                m.d.sync += gxc.eq(0)
                                with m.If(gyc != gh_l - 1):
                                    m.d.sync += gyc.eq(gyc + 1)
                                with m.Else():
                                    m.d.sync += [gyc.eq(0), gc.eq(gc + 1)]
                                    with m.If(gc == own_l - 1):
                                        m.d.sync += g_more.eq(0)
                        with m.Elif(idx != tn[glane] - 1):
                            m.d.sync += idx.eq(idx + 1)
                        with m.Else():                   # this lane's list is done: the next one
                            m.d.sync += [idx.eq(0), glane.eq(nxt), g_more.eq(nxt_ok)]

        def stage(prefix, src, **fields):
            """Pipeline registers advancing on `adv`: {name: (signal-like, value)}."""
            regs = {}
            for k, (like, val) in fields.items():
                r = Signal.like(like, name=f"{prefix}_{k}")
                regs[k] = r
                with m.If(adv):
                    m.d.sync += r.eq(val)
            return regs

        # G1 -> GA: element coordinates (counters in flush/readout, else the touched list)
        g1_e = Signal(el)
        tl_d = Array(Mux(gpar, tl_r[1][j].data.as_value(), tl_r[0][j].data.as_value()) for j in range(L))[g1_lane]
        tl_d = data.View(tl, tl_d)
        with m.If(all_mode):
            m.d.comb += g1_e.eq(g1_co)
        with m.Else():
            m.d.comb += [g1_e.c.eq((tl_d.c << lsh) | g1_lane), g1_e.y.eq(tl_d.y), g1_e.x.eq(tl_d.x)]
        ga = stage("ga", None, valid=(g1_valid, g1_valid), first=(g1_first, g1_first), last=(g1_last, g1_last),
                   e=(g1_e, g1_e), ty=(g1_ty, g1_ty), tx=(g1_tx, g1_tx))
        # GA: the address products (per-layer constant multiplies), registered
        e_ = ga["e"]
        n_lane, kg = Signal.like(glane), Signal.like(e_.c)         # the element's lane and channel group
        m.d.comb += [n_lane.eq(e_.c & (L - 1)), kg.eq(e_.c >> lsh)]
        pr_ac, pr_ay, pr_ax = Signal(aa_w), Signal(aa_w), Signal(aa_w)
        pr_gc, pr_gy, pr_bc = Signal(ga_w), Signal(ga_w), Signal.like(bd_r.addr)
        with m.Switch(layer):
            for l in p.layers:
                with m.Case(l.index):
                    _, ah, aw = l.acc_shape
                    _, gh, gw = l.gate_shape
                    m.d.comb += [pr_ac.eq(kg * (ah * aw)), pr_ay.eq((e_.y * l.pool[0] + ga["ty"]) * aw),
                                 pr_ax.eq(e_.x * l.pool[1] + ga["tx"]), pr_gc.eq(kg * (gh * gw)),
                                 pr_gy.eq(e_.y * gw), pr_bc.eq(e_.c * (gh * gw))]
        gp = stage("gp", None, valid=(ga["valid"], ga["valid"]), first=(ga["first"], ga["first"]),
                   last=(ga["last"], ga["last"]), e=(e_, e_), lane=(n_lane, n_lane),
                   ac=(pr_ac, pr_ac), ay=(pr_ay, pr_ay), ax=(pr_ax, pr_ax), gc=(pr_gc, pr_gc), gy=(pr_gy, pr_gy),
                   bc=(pr_bc, pr_bc))
        # GP: the addresses (sums of GA's products and the layer's bases), registered
        n_acc, n_pa, n_ta = Signal(aa_w), Signal.like(p_r.addr), Signal.like(th_r.addr)
        n_bd, n_loc = Signal.like(bd_r.addr), Signal(ga_w)
        ep_ = gp["e"]
        m.d.comb += n_loc.eq(gp["gc"] + gp["gy"] + ep_.x)
        with m.Switch(layer):
            for l in p.layers:
                with m.Case(l.index):
                    m.d.comb += [n_acc.eq(l.abase[pe] + gp["ac"] + gp["ay"] + gp["ax"]),
                                 n_pa.eq(l.pbase[pe] + ep_.c)]
                    if l.gated:
                        m.d.comb += [n_ta.eq(l.tbase[pe] + ep_.c),
                                     n_bd.eq(l.gbase[pe] + gp["bc"] + gp["gy"] + ep_.x)]
        gr = stage("gr", None, valid=(gp["valid"], gp["valid"]), first=(gp["first"], gp["first"]),
                   last=(gp["last"], gp["last"]), e=(ep_, ep_), acc=(n_acc, n_acc), pa=(n_pa, n_pa), ta=(n_ta, n_ta),
                   bd=(n_bd, n_bd), loc=(n_loc, n_loc), lane=(gp["lane"], gp["lane"]))
        # GR: memory reads
        m.d.comb += [p_r.addr.eq(gr["pa"]), p_r.en.eq(adv), th_r.addr.eq(gr["ta"]), th_r.en.eq(adv)]
        pipe = ("valid", "first", "last", "e", "bd", "loc", "lane")
        gx_ = stage("gx", None, **{k: (gr[k], gr[k]) for k in pipe})
        # GX: x = a + bias; mult, shift and threshold registered
        vw = p.value_w + 1
        xw = max(p.acc_w, p.bias_w) + 1
        x_ = Signal(signed(xw))
        m.d.comb += x_.eq(Array(Mux(gpar, acc_r[1][j].data, acc_r[0][j].data) for j in range(L))[gx_["lane"]]
                          + p_r.data.bias)
        hneg = Signal(signed(p.th_w + 1))
        m.d.comb += hneg.eq(-th_r.data)
        gm = stage("gm", None, **{k: (gx_[k], gx_[k]) for k in pipe}, x=(x_, x_),
                   mult=(p_r.data.mult, p_r.data.mult), shift=(p_r.data.shift, p_r.data.shift),
                   h=(th_r.data, th_r.data), hn=(hneg, hneg))
        # GM: product and rounding constant (x times the multiplier register, plus a carry bit)
        prod = Signal(signed(xw + MULT_WIDTH + 1))
        rnd = Signal(xw + MULT_WIDTH + 1)
        m.d.comb += [prod.eq(gm["x"] * gm["mult"]), rnd.eq((Const(1, xw + MULT_WIDTH + 1) << gm["shift"]) >> 1)]
        gs = stage("gs", None, **{k: (gm[k], gm[k]) for k in pipe + ("x", "shift", "h", "hn")},
                   prod=(prod, prod), rnd=(rnd, rnd))
        # GS: rounding add; GQ: shift (one adder or one shifter per stage)
        rs = Signal(signed(xw + MULT_WIDTH + 1))
        m.d.comb += rs.eq(gs["prod"] + gs["rnd"])
        gq = stage("gq", None, **{k: (gs[k], gs[k]) for k in pipe + ("x", "shift", "h", "hn")}, rs=(rs, rs))
        rq = Signal(signed(xw + MULT_WIDTH + 1))
        m.d.comb += rq.eq(gq["rs"] >> gq["shift"])
        gf = stage("gf", None, **{k: (gq[k], gq[k]) for k in pipe + ("x", "h", "hn")}, rq=(rq, rq))
        # GF: activation (per layer)
        act = Signal(signed(xw + MULT_WIDTH + 1))
        r_ = gf["rq"]
        with m.Switch(layer):
            for l in p.layers:
                with m.Case(l.index):
                    if not l.requant:
                        m.d.comb += act.eq(gf["x"])
                    elif l.act == "relu":
                        m.d.comb += act.eq(Mux(r_ < 0, 0, r_))
                    elif l.act == "relu6":
                        m.d.comb += act.eq(Mux(r_ < 0, 0, Mux(r_ > l.act_hi, l.act_hi, r_)))
                    elif l.act == "leaky":
                        m.d.comb += act.eq(Mux(r_ >= 0, r_, (r_ * l.leaky_num) >> l.leaky_shift))
                    else:
                        m.d.comb += act.eq(r_)
        gcl = stage("gc", None, **{k: (gf[k], gf[k]) for k in pipe + ("h", "hn")}, act=(act, act))
        # GC: clamp, running max over the pool window, BD read
        vpre = Signal(signed(max(vw, xw) + 1))
        ac = gcl["act"]
        with m.Switch(layer):
            for l in p.layers:
                with m.Case(l.index):
                    if l.requant:
                        m.d.comb += vpre.eq(Mux(ac < l.lo, l.lo, Mux(ac > l.hi, l.hi, ac)))
                    else:
                        m.d.comb += vpre.eq(ac)
        vmax = Signal.like(vpre)
        vcur = Signal.like(vpre)
        m.d.comb += vcur.eq(Mux(gcl["first"] | (vpre > vmax), vpre, vmax))
        with m.If(adv & gcl["valid"]):
            m.d.sync += vmax.eq(vcur)
        # BD is read one stage early (from GF) and its word registered into G3 with the element:
        # the gate rule starts from flip-flops, not from the block RAM's output. No hazard: the
        # elements of one gate phase are distinct.
        m.d.comb += [bd_r.addr.eq(gf["bd"]), bd_r.en.eq(adv)]
        g3_bdq = Signal(gate_state_layout(p))
        with m.If(adv):
            m.d.sync += g3_bdq.eq(bd_r.data)

        g3_valid = Signal()
        with m.If(adv):
            m.d.sync += g3_valid.eq(gcl["valid"] & gcl["last"])
        g3 = stage("g3", None, e=(gcl["e"], gcl["e"]), v=(vcur, vcur), h=(gcl["h"], gcl["h"]),
                   hn=(gcl["hn"], gcl["hn"]), bd=(gcl["bd"], gcl["bd"]), loc=(gcl["loc"], gcl["loc"]),
                   lane=(gcl["lane"], gcl["lane"]))
        g3_e, g3_v, g3_bd, g3_loc = g3["e"], g3["v"], g3["bd"], g3["loc"]

        # G3: the gate rule (gate.GateRule) on r, the transmitted value: fire = |v - r| > H (flush: v != r)
        m.submodules.rule = rule = GateRule(value_shape=signed(p.gate_value_w), th_w=p.th_w)
        m.d.comb += [rule.v.eq(g3_v), rule.r.eq(g3_bdq.r), rule.h.eq(g3["h"]),
                     rule.hn.eq(g3["hn"]), rule.flush.eq(flush), rule.memloss.eq(memloss)]
        dn, fire = rule.dn, rule.fire
        gate_we = adv & g3_valid & ~readout
        m.d.comb += self.evald.eq(gate_we)
        with m.If(adv):
            m.d.sync += [
                out_valid.eq(g3_valid & (readout | fire)),
                out.c.eq(g3_e.c * P + pe), out.y.eq(g3_e.y), out.x.eq(g3_e.x),
                out.delta.eq(Mux(readout, g3_v, dn)),
            ]
        g_busy = g1_valid | ga["valid"] | gp["valid"] | gr["valid"] | gx_["valid"] | gm["valid"] | gs["valid"] | gq["valid"] | gf["valid"] \
            | gcl["valid"] | g3_valid | out_valid

        # ======================================================================================
        # control: gate phase, sweep, shared write ports
        sweep_end = max(*p.acc_depth[pe], p.bd_depth[pe], *p.touch_depth[pe])
        sweep_ptr = Signal(range(sweep_end + 1))
        with m.If(sweeping):
            m.d.comb += [bd_w.addr.eq(sweep_ptr), bd_w.data.eq(0), bd_w.en.eq(sweep_ptr < p.bd_depth[pe])]
            m.d.sync += sweep_ptr.eq(sweep_ptr + 1)
            with m.If(sweep_ptr == sweep_end - 1):
                m.d.sync += [sweeping.eq(0)] + [n.eq(0) for ns in touch_n for n in ns]
        with m.Elif(gating):
            m.d.comb += [bd_w.addr.eq(g3_bd), bd_w.en.eq(gate_we), bd_w.data.r.eq(rule.r_next)]
            with m.If(~g_more & ~g_busy):
                m.d.sync += gating.eq(0)
                for b in range(2):                    # the gate's bank only: the other one may be filling
                    with m.If(gpar == b):
                        m.d.sync += [n.eq(0) for n in touch_n[b]]
        # the banks: the gate phase reads accumulators and clears touched bits of its layer's parity;
        # the synaptic pipeline (which may run at the same time, on the next layer: the other parity)
        # reads and writes the rest
        for b in range(2):
            g_on = gating & (gpar == b)
            for j in range(L):
                m.d.comb += [t_r[b][j].addr.eq(u1_ga), t_r[b][j].en.eq(1)]
                with m.If(sweeping):
                    m.d.comb += [
                        acc_w[b][j].addr.eq(sweep_ptr), acc_w[b][j].data.eq(0),
                        acc_w[b][j].en.eq(sweep_ptr < p.acc_depth[pe][b]),
                        t_w[b][j].addr.eq(sweep_ptr), t_w[b][j].data.eq(0),
                        t_w[b][j].en.eq(sweep_ptr < p.touch_depth[pe][b]),
                    ]
                with m.Else():
                    m.d.comb += [acc_w[b][j].addr.eq(u2_aa), acc_w[b][j].data.eq(acc_old[j] + u2_prod[j]),
                                 acc_w[b][j].en.eq(u2_valid & u2_mask[j] & (u2_par == b))]
                    with m.If(g_on):
                        m.d.comb += [
                            acc_r[b][j].addr.eq(gr["acc"]), acc_r[b][j].en.eq(adv),
                            t_w[b][j].addr.eq(g3_loc), t_w[b][j].data.eq(0),
                            t_w[b][j].en.eq(adv & g3_valid & (g3["lane"] == j)),
                        ]
                    with m.Else():
                        m.d.comb += [
                            acc_r[b][j].addr.eq(u1_aa), acc_r[b][j].en.eq(1),
                            t_w[b][j].addr.eq(u2_ga), t_w[b][j].data.eq(1),
                            t_w[b][j].en.eq(new_touch[j] & (u2_par == b)),
                        ]
        with m.If(~sweeping & ~gating):
            with m.If(self.sweep_start):
                m.d.sync += [sweeping.eq(1), sweep_ptr.eq(0)]
            with m.Elif(self.gate_start):
                lay_ok = Signal()
                m.d.sync += [gating.eq(1), layer.eq(self.layer), flush.eq(self.flush), memloss.eq(self.memloss),
                             idx.eq(0), gc.eq(0), gyc.eq(0), gxc.eq(0), ty.eq(0), tx.eq(0)]
                # elements to walk: every owned element (flush, readout) or the touched list
                own_n = Signal.like(own_l)
                ro_n = Signal()
                with m.Switch(self.layer):
                    for l in p.layers:
                        with m.Case(l.index):
                            m.d.comb += [own_n.eq(l.own[pe] if l.gate_size(pe) else 0), ro_n.eq(int(l.readout))]
                par_n = self.layer[0]
                tn_n = [Mux(par_n, touch_n[1][j], touch_n[0][j]) for j in range(L)]
                any_touch = Cat(n != 0 for n in tn_n).any()
                first = Signal.like(glane)                  # the first lane with touched elements
                for j in reversed(range(L)):
                    with m.If(tn_n[j] != 0):
                        m.d.comb += first.eq(j)
                m.d.sync += [g_more.eq(Mux(self.flush | ro_n, own_n != 0, any_touch)), glane.eq(first)]
        m.d.comb += [
            self.idle.eq(~sweeping & ~gating & syn_idle),
            self.gate_idle.eq(~gating),
            self.busy.eq(sweeping | gating | ~syn_idle),
        ]
        return m
