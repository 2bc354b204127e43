"""PE unit tests (amaranth.sim): synaptic pipeline and gate unit against the golden model."""
import zlib

import numpy as np
import pytest
from amaranth.sim import Simulator

from evhw.golden import (EventModel, LayerCount, Policy, apply_pools, pool_reach, requantize, term_delta, term_touched,
                         value_pre_pool)
from rtl_gen.gateware.pe import PE
from rtl_gen.plan import HwPlan
from tests.unit.nets import tiny_acts, tiny_cnn, tiny_mlp
from tests.unit.streams import stream_get, stream_put


def _net(name):
    return {"cnn": tiny_cnn, "mlp": tiny_mlp, "acts": tiny_acts}[name]()


def _src_events(rng, shape, n, burst):
    """Random source events (c, y, x, delta) with runs of repeated elements (same accumulators)."""
    shape = shape if len(shape) == 3 else (shape[0], 1, 1)
    ev = []
    while len(ev) < n:
        c, y, x = (int(rng.integers(0, s)) for s in shape)
        for _ in range(int(rng.integers(1, 4)) if burst else 1):
            ev.append((c, y, x, int(rng.integers(-20, 21)) or 1))
    return ev[:n]


def _seed(*key):
    """A stable seed per test case (``hash`` of a string changes every process), so failures replay."""
    return zlib.crc32(repr(key).encode())


def _owned(q, layer_name, P, pe):
    return list(range(pe, q.layer(layer_name).acc_shape[0], P))


def _run(pe, testbenches, tmp_path=None):
    sim = Simulator(pe)
    sim.add_clock(1e-8)
    for tb in testbenches:
        sim.add_testbench(tb)
    sim.run()


@pytest.mark.parametrize("net, layer, P, pe_i, L", [
    ("cnn", "conv0", 1, 0, 1), ("cnn", "conv1", 2, 1, 1), ("cnn", "add0", 2, 0, 1),
    ("cnn", "globalavgpool0", 2, 1, 1), ("cnn", "linear0", 2, 0, 1), ("mlp", "linear0", 3, 2, 1),
    ("acts", "conv0", 2, 1, 1), ("acts", "conv1", 1, 0, 1), ("acts", "conv2", 2, 0, 1),
    ("cnn", "conv1", 1, 0, 2), ("cnn", "add0", 1, 0, 4), ("cnn", "globalavgpool0", 2, 1, 2),
    ("cnn", "linear0", 1, 0, 2), ("mlp", "linear0", 3, 2, 4), ("acts", "conv2", 2, 0, 2),
])
def test_synaptic_matches_golden(net, layer, P, pe_i, L):
    """``L`` lanes: local channel k lives in bank k % L at group k // L."""
    q = _net(net)
    plan = HwPlan.from_qnet(q, pes=P, lanes=L)
    lp = next(l for l in plan.layers if l.name == layer)
    ql = q.layer(layer)
    rng = np.random.default_rng(_seed(net, layer, P, pe_i))
    dut = PE(plan, index=pe_i)
    events = []                                     # (term, c, y, x, delta)
    for ti in lp.terms:
        t = plan.terms[ti]
        events += [(ti, *e) for e in _src_events(rng, t.src_shape, 40, burst=True)]
    order = rng.permutation(len(events))
    events = [events[i] for i in order]
    # golden: accumulator and touched elements
    acc = np.zeros(ql.acc_shape, np.int64)
    touched = np.zeros(ql.acc_shape, bool)
    for ti, c, y, x, d in events:
        t = plan.terms[ti]
        qt = ql.terms[lp.terms.index(ti)]
        src = np.zeros(q.tensors()[qt.src].shape, np.int64)
        flat = np.zeros(t.src_shape, np.int64)
        flat[c, y, x] = d
        src = flat.reshape(src.shape)
        acc += term_delta(qt, src)
        touched |= term_touched(qt, src != 0)
    gate_touched = pool_reach(ql, touched) if ql.pools else touched
    got = {}

    async def producer(ctx):
        for ti, c, y, x, d in events:
            if rng.random() < 0.3:
                await ctx.tick().repeat(int(rng.integers(1, 4)))
            await stream_put(ctx, dut.syn, {"term": ti, "c": c, "y": y, "x": x, "delta": d})
        await ctx.tick().until(dut.syn_idle)
        await ctx.tick()
        par = lp.index % 2                          # the layer's memory bank
        got["acc"] = [[ctx.get(b[i]) for i in range(plan.acc_depth[pe_i][par])] for b in dut.acc_banks[par]]
        got["t"] = [[ctx.get(b[i]) for i in range(plan.touch_depth[pe_i][par])] for b in dut.touched_banks[par]]

    _run(dut, [producer])
    a3 = acc.reshape(lp.acc_shape)
    _, ah, aw = lp.acc_shape
    for k, c in enumerate(_owned(q, layer, P, pe_i)):
        base = lp.abase[pe_i] + (k // L) * ah * aw
        assert got["acc"][k % L][base:base + ah * aw] == a3[c].reshape(-1).tolist(), f"channel {c}"
    if lp.gated:
        g3 = gate_touched.reshape(lp.gate_shape)
        _, gh, gw = lp.gate_shape
        for k, c in enumerate(_owned(q, layer, P, pe_i)):
            base = (k // L) * gh * gw
            assert got["t"][k % L][base:base + gh * gw] == g3[c].reshape(-1).astype(int).tolist(), f"channel {c}"


def _feed(rng, plan, lp, q, n, scale):
    events = []
    for ti in lp.terms:
        t = plan.terms[ti]
        events += [(ti, c, y, x, int(np.clip(d * scale, -(2 ** (plan.delta_w - 1)), 2 ** (plan.delta_w - 1) - 1)))
                   for c, y, x, d in _src_events(rng, t.src_shape, n, burst=False)]
    return events


def _gate_case(q, plan, lp, ql, layer, owned, mode, rng):
    """Random synaptic events, gate state and thresholds; the golden events this PE must send."""
    th = b0 = d0 = None
    events = _feed(rng, plan, lp, q, 12, 6)
    acc = np.zeros(ql.acc_shape, np.int64)
    touched = np.zeros(ql.acc_shape, bool)
    for ti, c, y, x, d in events:
        qt = ql.terms[lp.terms.index(ti)]
        t = plan.terms[ti]
        flat = np.zeros(t.src_shape, np.int64)
        flat[c, y, x] = d
        src = flat.reshape(q.tensors()[qt.src].shape)
        acc += term_delta(qt, src)
        touched |= term_touched(qt, src != 0)
    v = apply_pools(ql, value_pre_pool(ql, acc))
    expected_bd = None
    if lp.readout:
        expected = sorted((c, y, x, int(v.reshape(lp.gate_shape)[c, y, x]))
                          for c in owned for y in range(lp.gate_shape[1]) for x in range(lp.gate_shape[2]))
    else:
        out = ql.out
        r0 = rng.integers(out.lo, out.hi + 1, size=out.shape)        # r = b - d: a value once sent
        th = rng.integers(0, out.span // 4 + 1, size=out.channels)
        d0 = np.clip(rng.integers(-out.span // 4, out.span // 4 + 1, size=out.shape),
                     -th.reshape((-1,) + (1,) * (len(out.shape) - 1)), th.reshape((-1,) + (1,) * (len(out.shape) - 1)))
        evaluated = np.ones(out.shape, bool) if mode == "flush" else (pool_reach(ql, touched) if ql.pools else touched)
        # invariants: an element not reached has v == b; b - d lies in the value range
        d0 = np.where(evaluated, d0, np.clip(d0, v - out.hi, v - out.lo))
        b0 = np.where(evaluated, r0 + d0, v)
        if mode == "flush":
            b0[...] = 0
            d0[...] = 0
        model = EventModel(q, Policy("skipconv" if mode == "memloss" else "evnet"))
        model.thresholds[layer] = th.astype(np.int64)
        model.b[layer], model.d[layer] = b0.copy(), d0.copy()
        sent = model._gate(layer, v.copy(), evaluated, False, mode == "flush", LayerCount())
        s3 = sent.reshape(lp.gate_shape)
        expected = sorted((c, y, x, int(s3[c, y, x])) for c, y, x in zip(*np.nonzero(s3)) if c in owned)
        expected_bd = (model.b[layer].reshape(lp.gate_shape), model.d[layer].reshape(lp.gate_shape))
    return events, th, b0, d0, expected, expected_bd


@pytest.mark.parametrize("net, layer, P, pe_i", [
    ("cnn", "conv0", 2, 1), ("cnn", "add0", 1, 0), ("cnn", "globalavgpool0", 2, 0), ("mlp", "linear0", 3, 1),
    ("acts", "conv0", 1, 0), ("acts", "conv1", 2, 0), ("cnn", "linear0", 2, 1), ("acts", "conv2", 2, 1),
])
@pytest.mark.parametrize("mode", ["evnet", "memloss", "flush"])
@pytest.mark.parametrize("L", [1, 2])
def test_gate_matches_golden(net, layer, P, pe_i, mode, L):
    q = _net(net)
    plan = HwPlan.from_qnet(q, pes=P, lanes=L)
    lp = next(l for l in plan.layers if l.name == layer)
    if lp.readout and mode != "evnet":
        pytest.skip("the readout has no gate")
    ql = q.layer(layer)
    dut = PE(plan, index=pe_i)
    owned = _owned(q, layer, P, pe_i)
    for attempt in range(20):           # a case where nothing is sent would compare two empty lists
        rng = np.random.default_rng([_seed(net, layer, P, pe_i, mode), attempt])
        events, th, b0, d0, expected, expected_bd = _gate_case(q, plan, lp, ql, layer, owned, mode, rng)
        if expected:
            break
    assert expected, "no non-trivial case in 20 attempts"
    got = {"ev": []}

    async def testbench(ctx):
        for ti, c, y, x, d in events:
            await stream_put(ctx, dut.syn, {"term": ti, "c": c, "y": y, "x": x, "delta": d})
        await ctx.tick().until(dut.syn_idle)
        if not lp.readout:
            _, gh, gw = lp.gate_shape
            for k, c in enumerate(owned):
                ctx.set(dut.th_we, 1)
                ctx.set(dut.th_addr, lp.tbase[pe_i] + k)
                ctx.set(dut.th_data, int(th[c]))
                await ctx.tick()
                for gy in range(gh):
                    for gx in range(gw):
                        ctx.set(dut.bd_data[lp.gbase[pe_i] + (k * gh + gy) * gw + gx],
                                {"r": int(b0.reshape(lp.gate_shape)[c, gy, gx])
                                       - int(d0.reshape(lp.gate_shape)[c, gy, gx])})
            ctx.set(dut.th_we, 0)
        ctx.set(dut.layer, lp.index)
        ctx.set(dut.flush, mode == "flush")
        ctx.set(dut.memloss, mode == "memloss")
        ctx.set(dut.gate_start, 1)
        await ctx.tick()
        ctx.set(dut.gate_start, 0)
        await ctx.tick()
        while not ctx.get(dut.idle):
            ready = rng.random() < 0.6
            ctx.set(dut.evt.ready, ready)
            await ctx.tick()
            # the handshake happened at this edge if valid & ready were high before it
        ctx.set(dut.evt.ready, 0)
        got["bd"] = [ctx.get(dut.bd_data[i]) for i in range(plan.bd_depth[pe_i])]
        got["t"] = [ctx.get(b[i]) for par in range(2) for b in dut.touched_banks[par]
                    for i in range(plan.touch_depth[pe_i][par])]

    async def monitor(ctx):
        async for clk_edge, rst, valid, ready, payload in ctx.tick().sample(dut.evt.valid, dut.evt.ready,
                                                                             dut.evt.payload):
            if valid and ready:
                got["ev"].append((payload.c, payload.y, payload.x, payload.delta))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.add_testbench(monitor, background=True)
    sim.run()
    assert sorted(got["ev"]) == expected
    assert any(got["t"]) is False
    if expected_bd is not None:
        bb, dd = expected_bd
        _, gh, gw = lp.gate_shape
        for k, c in enumerate(owned):
            for gy in range(gh):
                for gx in range(gw):
                    w = got["bd"][lp.gbase[pe_i] + (k * gh + gy) * gw + gx]
                    assert w.r == bb[c, gy, gx] - dd[c, gy, gx], (c, gy, gx)
