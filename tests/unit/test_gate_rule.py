"""The shared gate rule (rtl_gen.gateware.gate.GateRule) against the golden model's gate, element by
element: random values, states and thresholds, flush and memory-loss frames, the edges |d| = H, H + 1."""
import numpy as np
import pytest
from amaranth.sim import Simulator

from evhw.golden import EventModel, LayerCount, Policy
from rtl_gen.gateware.gate import GateRule
from tests.unit.nets import tiny_mlp


def _golden(v, b, d, h, flush, memloss):
    """The golden EventModel's gate on one element: (sent, d after); a flush frame fires every change."""
    q = tiny_mlp()
    m = EventModel(q, Policy("skipconv" if memloss else "evnet"), kernels="numpy")
    m.step(np.zeros(q.input.shape, np.int64))                       # a flush: the gate state exists
    g = next(n for n in q.gates() if n != "input")
    m.b[g][...] = 0
    m.d[g][...] = 0
    m.b[g].reshape(-1)[0], m.d[g].reshape(-1)[0] = b, d
    m.thresholds[g][...] = h
    vv = m.b[g].copy()
    vv.reshape(-1)[0] = v
    ev = np.zeros(vv.shape, bool)
    ev.reshape(-1)[0] = True
    sent = m._gate(g, vv, ev, flush, False, LayerCount())
    return int(sent.reshape(-1)[0]), int(m.d[g].reshape(-1)[0])


@pytest.mark.parametrize("value_w, delta_w, th_w", [(9, 10, 8), (5, 6, 4)])
def test_gate_rule_matches_golden(value_w, delta_w, th_w):
    rng = np.random.default_rng(value_w)
    lo, hi = -(1 << (value_w - 2)), (1 << (value_w - 2)) - 1        # values of a layer that fits the port
    cases = []
    for _ in range(150):
        h = int(rng.integers(0, 1 << th_w))
        b, v = int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))
        d = int(rng.integers(-h, h + 1))                            # |d| <= H between frames (evnet)
        cases.append((v, b, d, h, bool(rng.integers(0, 4) == 0), bool(rng.integers(0, 2))))
    for h in (0, 3):                                                # the edges: |dn| = H fires not, H + 1 fires
        for dn in (h, h + 1, -h, -h - 1):
            cases.append((dn, 0, 0, h, False, False))
    dut = GateRule(value_w=value_w, delta_w=delta_w, th_w=th_w)

    async def tb(ctx):
        for v, b, d, h, flush, memloss in cases:
            for port, val in ((dut.v, v), (dut.b, b), (dut.d, d), (dut.h, h), (dut.hn, -h),
                              (dut.flush, flush), (dut.memloss, memloss)):
                ctx.set(port, val)
            fire, dn, d_next = ctx.get(dut.fire), ctx.get(dut.dn), ctx.get(dut.d_next)
            sent, d_after = _golden(v, b, d, h, flush, memloss)
            assert (dn if fire else 0, d_next) == (sent, d_after), (v, b, d, h, flush, memloss)

    sim = Simulator(dut)
    sim.add_testbench(tb)
    sim.run()
