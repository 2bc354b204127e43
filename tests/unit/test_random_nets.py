"""Randomized robustness of EvhwTop (amaranth.sim) against the golden EventModel.

Random networks (evhw.flow.netgen, the generator ``evhw soak`` draws from: every hardware-v1 layer
feature over the cases), random P, random thresholds, random pixel idle cycles and output backpressure (with
long stalls), frames mixing flush / evnet / memory loss. Every frame must finish within a cycle
budget (no hang), produce the golden output bit for bit and the golden per-tensor counts.
"""
import functools

import numpy as np
import pytest
from amaranth.sim import Simulator

from evhw.convert import convert
from evhw.errors import AccumulatorOverflowError
from evhw.golden import EventModel, Policy, dense_forward
from evhw.flow.netgen import NET_KINDS, random_hw_graph
from rtl_gen.errors import UnsupportedHardwareError
from rtl_gen.gateware.top import EvhwTop
from rtl_gen.cycles import CycleModel, FrameWork
from rtl_gen.plan import HwPlan
from sim.scoreboard import fired, flush_updates

#: the simulated cases: (kind, seed) of evhw.flow.netgen; together they hold every layer feature of
#: FEATURES (test_cases_cover_the_hardware_features)
CASES = [("cnn", s) for s in (*range(8), 18)] + [("mlp", s) for s in range(3)] + [("linear", s) for s in range(3)]
FEATURES = {"conv", "linear", "batchnorm", "affine", "maxpool", "avgpool", "globalavgpool", "add", "flatten",
            "act:none", "act:relu", "act:relu6", "act:leaky", "term:conv", "term:linear", "term:sumpool",
            "term:scale", "k1x1", "k3x3", "k1x3", "k3x1", "strided", "unpadded", "nobias", "two max-pools",
            "padded sumpool", "stride-1 sumpool", "image input", "flat input"}


@functools.lru_cache(maxsize=None)
def case(kind, seed):
    """(float graph, QNet) of a case, converted on random calibration frames."""
    g = random_hw_graph(seed, kind)
    shape = g.input.attrs["shape"]
    return g, convert(g, np.random.default_rng(seed).integers(0, 256, (6, *shape)))


def features(g, q):
    """What a network exercises: its IR ops, its layers' activations and terms, conv and pool variants."""
    f = {n.op for n in g.nodes} - {"input"}
    f.add("image input" if len(q.input.shape) == 3 else "flat input")
    f |= {"nobias" for n in g.nodes if n.op in ("conv", "linear") and "bias" not in n.params}
    for l in q.layers():
        f.add("act:" + l.act)
        if len(l.pools) > 1:
            f.add("two max-pools")
        for t in l.terms:
            a = t.attrs
            f.add("term:" + t.kind)
            if t.kind == "conv":
                k = tuple(t.weight.shape[2:])
                f.add(f"k{k[0]}x{k[1]}")
                if max(a["stride"]) > 1:
                    f.add("strided")
                if k != (1, 1) and not any(a["pads"]):
                    f.add("unpadded")
            if t.kind == "sumpool":
                f |= {"padded sumpool"} if any(a["pads"]) else set()
                f |= {"stride-1 sumpool"} if max(a["stride"]) == 1 else set()
    return f


def _frames(rng, shape, n):
    f = rng.integers(0, 256, size=shape)
    out = [f.copy()]
    for _ in range(n - 1):
        f = f.copy()
        flat = f.reshape(-1)
        kind = rng.random()
        if kind < 0.15:
            pass                                                     # a static frame: no input events
        elif kind < 0.3:
            flat[:] = rng.integers(0, 256, size=flat.size)           # a scene cut
        else:
            idx = rng.choice(flat.size, size=max(1, int(flat.size * rng.uniform(.05, .4))), replace=False)
            flat[idx] = np.clip(flat[idx] + rng.integers(-80, 81, size=idx.size), 0, 255)
        out.append(f)
    return out


def _thresholds(rng, q):
    th = {}
    for g in q.gates():
        t = q.tensors()[g]
        style = rng.random()
        hi = 0 if style < 0.2 else max(1, t.span // 32) if style < 0.7 else t.span
        th[g] = rng.integers(0, hi + 1, size=t.channels)
    return th


def _golden(q, frames, modes, th):
    """Golden results per frame; a memory-loss frame that overflows the proven bound becomes evnet."""
    while True:
        model = EventModel(q, Policy("evnet"), thresholds=th)
        res = []
        try:
            for i, (frame, mode) in enumerate(zip(frames, modes)):
                model.policy = Policy("skipconv" if mode == "memloss" else "evnet")
                if mode == "flush" and i > 0:
                    model.reset()
                before = {g: (model.b[g].copy(), model.d[g].copy()) for g in q.gates()} if mode != "flush" else None
                r = model.step(frame)
                res.append((r, None if r.kind == "flush" else fired(model, before, False)))
            return modes, res
        except AccumulatorOverflowError:
            modes = modes[:i] + ["evnet"] + modes[i + 1:]


def _work(q, model, frame, mode, golden):
    """The frame's golden work for the cycle model (as sim.scoreboard counts it for the hardware)."""
    gates = q.gates()
    res, sent = golden
    if mode == "flush":
        vals = dense_forward(q, frame)
        updates, macs = flush_updates(model, vals)
        sent = {g: np.asarray(vals[g]).reshape(q.tensors()[g].channels, -1) != 0 for g in gates}
        return FrameWork(True, {g: int(np.count_nonzero(vals[g])) for g in gates},
                         {g: int(np.prod(q.tensors()[g].shape)) for g in gates}, updates, macs,
                         tuple(np.flatnonzero(sent["input"])), {g: m.sum(axis=1) for g, m in sent.items()})
    return FrameWork(False, {g: res.layers[g].gate_t for g in gates}, {g: res.layers[g].gate_u for g in gates},
                     {l.name: res.layers[l.name].event_macs + res.layers[l.name].acc_ops for l in q.layers()},
                     {l.name: res.layers[l.name].event_macs for l in q.layers()},
                     tuple(np.flatnonzero(sent["input"])), {g: m.sum(axis=1) for g, m in sent.items()})


async def _wait(ctx, sig, limit, what):
    for _ in range(limit):
        if ctx.get(sig):
            return
        await ctx.tick()
    raise AssertionError(f"timeout waiting for {what}")


def run_random(q, P, seed, n_frames, stalls=True, lanes=1):
    rng = np.random.default_rng(seed)
    plan = HwPlan.from_qnet(q, pes=P, lanes=lanes)
    frames = _frames(rng, q.input.shape, n_frames)
    modes = ["flush"] + [str(rng.choice(["flush", "evnet", "evnet", "memloss"])) for _ in range(n_frames - 1)]
    th = _thresholds(rng, q)
    modes, want = _golden(q, frames, modes, th)
    dut = EvhwTop(plan)
    n_out = int(np.prod(plan.output_shape))
    cm, costs = CycleModel.from_plan(plan), EventModel(q)
    predicted = [cm.predict(_work(q, costs, f, mode, r)) for f, mode, r in zip(frames, modes, want)]
    budget = 2 * max(predicted) + 100       # a hang, not a slow frame: the model is held to 10 % below
    got = []
    msg = f"seed={seed} P={P} L={lanes} net={q.name}"

    async def host(ctx):
        for name, info in plan.cfg_gates.items():
            for c in range(info["channels"]):
                ctx.set(dut.cfg_addr, info["cfg_base"] + c)
                ctx.set(dut.cfg_data, int(th[name][c]))
                ctx.set(dut.cfg_we, 1)
                await ctx.tick()
        ctx.set(dut.cfg_we, 0)
        await ctx.tick().repeat(2)
        for fi, (frame, mode) in enumerate(zip(frames, modes)):
            stall = 0
            ctx.set(dut.start, 1)
            ctx.set(dut.start_flush, mode == "flush")
            ctx.set(dut.start_memloss, mode == "memloss")
            await ctx.tick()
            ctx.set(dut.start, 0)
            idle_p = rng.choice([0.0, 0.3, 0.8]) if stalls else 0.0
            for px in np.asarray(frame).reshape(-1):
                if rng.random() < idle_p:
                    n = int(rng.integers(1, 4)) if rng.random() < .9 else int(rng.integers(20, 80))
                    stall += n
                    await ctx.tick().repeat(n)
                ctx.set(dut.pix.valid, 1)
                ctx.set(dut.pix.payload, int(px))
                await _wait(ctx, dut.pix.ready, budget, f"pix.ready, frame {fi} ({msg})")
                await ctx.tick()
                ctx.set(dut.pix.valid, 0)
            out = []
            stall_p = rng.choice([0.0, 0.5, 0.9]) if stalls else 0.0
            while len(out) < n_out:
                if rng.random() < stall_p:
                    n = int(rng.integers(1, 5)) if rng.random() < .8 else int(rng.integers(50, 200))
                    stall += n
                    await ctx.tick().repeat(n)
                ctx.set(dut.out.ready, 1)
                await _wait(ctx, dut.out.valid, budget + stall, f"out.valid #{len(out)}, frame {fi} ({msg})")
                v, last = ctx.get(dut.out.payload), ctx.get(dut.out.last)
                await ctx.tick()
                ctx.set(dut.out.ready, 0)
                out.append(int(v))
                assert bool(last) == (len(out) == n_out), f"frame {fi}: last flag ({msg})"
            await _wait(ctx, ~dut.busy, budget, f"busy low, frame {fi} ({msg})")
            stats = {}
            for key, addr in plan.stats.items():
                def rd(a):
                    ctx.set(dut.stat_addr, a)
                    return ctx.get(dut.stat_data)
                stats[key] = ({k: rd(a) for k, a in addr.items()} if isinstance(addr, dict)
                              else [rd(a) for a in addr] if isinstance(addr, list) else rd(addr))
            assert stats["cycles"] <= budget + stall, f"frame {fi}: {stats['cycles']} cycles > budget ({msg})"
            got.append((out, stats, stall))
            await ctx.tick().repeat(int(rng.integers(1, 4)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.run()

    events = 0
    for i, (frame, mode, (res, sent), (out, stats, stall), pred) in enumerate(zip(frames, modes, want, got,
                                                                                  predicted)):
        where = f"frame {i} ({mode}, {msg})"
        if not stall and mode != "flush":   # the executable cycle model, on frames without host stalls
            assert abs(stats["cycles"] - pred) <= 0.10 * stats["cycles"], f"{where}: {stats['cycles']} cycles, " \
                f"{pred} predicted; phases {cm.phases(_work(q, costs, frame, mode, (res, sent)))}, stats {stats}"
            CHECKED.append(stats["cycles"] / pred)
        assert out == res.output.reshape(-1).tolist(), f"{where}: output"
        gates = q.gates()
        if mode == "flush":
            vals = dense_forward(q, frame)
            ev = {g: int(np.count_nonzero(vals[g])) for g in gates}
            assert stats["evaluated"] == {g: int(np.prod(q.tensors()[g].shape)) for g in gates}, f"{where}: evaluated"
        else:
            ev = {g: res.layers[g].gate_t for g in gates}
            assert stats["evaluated"] == {g: res.layers[g].gate_u for g in gates}, f"{where}: evaluated"
            assert stats["updates"] == {l.name: res.layers[l.name].event_macs + res.layers[l.name].acc_ops
                                        for l in q.layers()}, f"{where}: updates"
        assert stats["events"] == ev, f"{where}: events"
        events += sum(ev.values())
    return events


CHECKED = []       # measured / predicted of every frame the cycle model was checked on


def _case_seed(*key):
    return int(np.random.default_rng(list(key)).integers(2**31))


@pytest.mark.parametrize("kind, seed", CASES)
def test_random_networks(kind, seed):
    g, q = case(kind, seed)                # the plan must accept it (never skipped)
    s = _case_seed(1, seed, NET_KINDS.index(kind))
    P = int(np.random.default_rng(s).integers(1, 5))
    assert run_random(q, P, s, 4) > 0, f"seed={s}: no events at all"


@pytest.mark.parametrize("kind, seed", CASES[::3])
def test_cycle_model_on_random_networks(kind, seed):
    """docs/architecture.md §6: the model predicts every event frame within 10 % (no host stalls)."""
    g, q = case(kind, seed)
    s = _case_seed(2, seed, NET_KINDS.index(kind))
    P = int(np.random.default_rng(s).integers(1, 5))
    before = len(CHECKED)
    run_random(q, P, s, 5, stalls=False)
    assert len(CHECKED) > before, "no event frame to check"


@pytest.mark.parametrize("kind, seed", CASES[1::3])
def test_random_networks_with_lanes(kind, seed):
    """L = 2 or 4 synaptic lanes per PE: the same outputs and counts, with stalls."""
    g, q = case(kind, seed)
    s = _case_seed(3, seed, NET_KINDS.index(kind))
    rng = np.random.default_rng(s)
    P, L = int(rng.integers(1, 5)), int(rng.choice([2, 4]))
    assert run_random(q, P, s, 4, lanes=L) > 0, f"seed={s}: no events at all"


@pytest.mark.parametrize("kind, seed", CASES[2::3])
def test_cycle_model_with_lanes(kind, seed):
    g, q = case(kind, seed)
    s = _case_seed(4, seed, NET_KINDS.index(kind))
    P = int(np.random.default_rng(s).integers(1, 5))
    before = len(CHECKED)
    run_random(q, P, s, 5, stalls=False, lanes=4)
    assert len(CHECKED) > before, "no event frame to check"


def test_cases_are_supported_and_cover_the_hardware_features():
    refused, seen = [], set()
    for kind, seed in CASES:
        g, q = case(kind, seed)
        seen |= features(g, q)
        try:
            HwPlan.from_qnet(q, pes=2)
        except UnsupportedHardwareError as e:
            refused.append(f"{kind}{seed}: {e}")
    assert not refused, refused
    assert FEATURES - seen == set()
