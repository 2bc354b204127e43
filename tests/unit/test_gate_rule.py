"""The shared gate rule (rtl_gen.gateware.gate.GateRule) against the golden model's gate, element by
element: random values, states and thresholds, flush and memory-loss frames, the edges |d| = H, H + 1.
The hardware holds ``r = b - d`` where the golden model holds ``b`` and ``d``: the test gives it the
golden state's ``b - d`` and expects the golden ``b - d`` afterwards."""
import numpy as np
import pytest
from amaranth import signed, unsigned
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


@pytest.mark.parametrize("shape, th_w", [(signed(9), 8), (signed(5), 4), (unsigned(8), 8)])
def test_gate_rule_matches_golden(shape, th_w):
    rng = np.random.default_rng(shape.width)
    lo, hi = (-(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1) if shape.signed else (0, (1 << shape.width) - 1)
    cases = []
    for _ in range(200):
        h = int(rng.integers(0, 1 << th_w))
        r, v = int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))
        d = int(rng.integers(-h, h + 1))                            # |d| <= H between frames (evnet)
        cases.append((v, r + d, d, h, bool(rng.integers(0, 4) == 0), bool(rng.integers(0, 2))))
    for h in (0, 3):                                                # the edges: |dn| = H fires not, H + 1 fires
        for dn in (h, h + 1, -h, -h - 1):
            cases.append((dn + (lo + hi) // 2, (lo + hi) // 2, 0, h, False, False))
    for v, r in ((lo, hi), (hi, lo)):                               # the widest change, both signs
        cases.append((v, r, 0, 0, False, False))
    dut = GateRule(value_shape=shape, th_w=th_w)

    async def tb(ctx):
        for v, b, d, h, flush, memloss in cases:
            for port, val in ((dut.v, v), (dut.r, b - d), (dut.h, h), (dut.hn, -h),
                              (dut.flush, flush), (dut.memloss, memloss)):
                ctx.set(port, val)
            fire, dn, r_next = ctx.get(dut.fire), ctx.get(dut.dn), ctx.get(dut.r_next)
            sent, d_after = _golden(v, b, d, h, flush, memloss)
            assert (dn if fire else 0, r_next) == (sent, v - d_after), (v, b, d, h, flush, memloss)

    sim = Simulator(dut)
    sim.add_testbench(tb)
    sim.run()
