"""``evhw soak --structures K``: run i takes pool entry i mod K (structure, P, simulator) and new
values; the widths pinned to the structure make one entry's runs generate one Verilog text apart
from the memory images (one simulator build), without changing what the network computes."""
import dataclasses
import re

import numpy as np
import pytest

from evhw.convert import convert
from evhw.flow.netgen import NET_KINDS, random_hw_graph
from evhw.flow.pinning import SHIFTS, _pin_shifts, build_net, pin_widths, structural_acc_bits
from evhw.flow.soak import Campaign, draw, make_case
from evhw.golden import dense_forward
from rtl_gen.plan import HwPlan
from sim.limits import SIMULATORS

#: a memory word's initial value in the generated Verilog (what $readmemh images replace)
MEM_INIT = re.compile(r"^\s*[\w$\\.]+\s*\[\d+\]\s*=\s*\d+'[hbd][0-9a-fA-F_xz]+\s*;\s*$")


def test_pool_entries_repeat_and_cover_every_combination():
    c = Campaign(seed=3, structures=24)
    runs = [draw(c, i) for i in range(48)]
    build = ("net", "net_seed", "pes", "simulator")
    for i in range(24):
        a, b = runs[i], runs[i + 24]
        assert a["structure"] == b["structure"] == i
        assert [a[k] for k in build] == [b[k] for k in build]
        assert a["params_seed"] != b["params_seed"] and a["seed"] != b["seed"]
    assert {(r["simulator"], r["pes"], r["net"]) for r in runs[:24]} == \
        {(s, p, n) for s in SIMULATORS for p in (1, 2, 4, 8) for n in NET_KINDS}
    assert len({r["net_seed"] for r in runs[:24]}) == 24
    free = [draw(Campaign(seed=3, structures=0), i) for i in range(24)]
    assert all("structure" not in r and "params_seed" not in r for r in free)
    assert len({r["net_seed"] for r in free}) == 24
    assert Campaign(seed=3, structures=24).key != Campaign(seed=3, structures=12).key


def signature(plan):
    """Everything of a plan the Verilog holds besides memory contents."""
    keys = ("acc_w", "weight_w", "delta_w", "value_w", "out_w", "evt_w", "bias_w", "shift_w", "th_w",
            "gate_value_w", "input_r_w", "c_w", "y_w", "x_w", "acc_depth", "bd_depth", "touch_depth", "touch_w")
    return ({k: getattr(plan, k) for k in keys}, plan.input_thresholds,
            [(l.act, l.act_hi, l.leaky_num, l.leaky_shift, l.lo, l.hi, l.acc_bits) for l in plan.layers],
            [len(w) for w in plan.weights], [len(p) for p in plan.params])


def draws(structure, kind, params_seeds, pin):
    out = []
    for ps in params_seeds:
        g = random_hw_graph(structure, kind, params=ps)
        rng = np.random.default_rng(ps)
        q = convert(g, rng.integers(0, 256, (6, *g.input.attrs["shape"])), threshold=float(rng.choice([0, .02, .05])))
        out.append(build_net(pin_widths(q, rng)) if pin else q)
    return out


def test_pinned_widths_follow_the_structure_only():
    varied = 0
    for structure in range(9):
        kind = NET_KINDS[structure % 3]
        pinned = [signature(HwPlan.from_qnet(q, pes=2)) for q in draws(structure, kind, (1, 2, 3), True)]
        assert pinned[0] == pinned[1] == pinned[2], (structure, kind)
        free = [signature(HwPlan.from_qnet(q, pes=2)) for q in draws(structure, kind, (1, 2, 3), False)]
        varied += free[0] != free[1] or free[1] != free[2]
    assert varied >= 6                          # without pinning, the values set widths


@pytest.mark.parametrize("structure, kind", [(0, "cnn"), (1, "cnn"), (5, "cnn"), (1, "mlp"), (2, "linear")])
def test_pinning_changes_only_biases_and_shifts(structure, kind):
    """The pinned network computes what the original does with the pinned biases, multipliers and
    shifts (the wider accumulators and readout range and the relu6 clip change nothing); those move
    only as documented: the readout's channel-0 bias, shifts above the range (multiplier scaled)."""
    g = random_hw_graph(structure, kind, params=7)
    q = convert(g, np.random.default_rng(0).integers(0, 256, (6, *g.input.attrs["shape"])))
    p = pin_widths(q, np.random.default_rng(1))
    assert all(s.acc_bits == structural_acc_bits(q) >= q.layer(s.name).acc_bits for s in p.layers())
    same_values = dataclasses.replace(q, steps=[
        dataclasses.replace(s, bias=p.layer(s.name).bias, mult=p.layer(s.name).mult, shift=p.layer(s.name).shift)
        if hasattr(s, "acc_bits") else s for s in q.steps])
    for frame in np.random.default_rng(2).integers(0, 256, (4, *q.input.shape)):
        a, b = dense_forward(same_values, frame), dense_forward(p, frame)
        assert all(np.array_equal(a[t], b[t]) for t in [*q.gates(), q.output])
    shifts = [int(s.shift.max()) for s in p.layers() if s.mult is not None]
    assert not shifts or SHIFTS[0] <= max(shifts) <= SHIFTS[1]
    for s in q.layers():
        t = p.layer(s.name)
        moved = np.flatnonzero(t.bias != s.bias)
        assert list(moved) == ([0] if s.name == q.output else [])
        if s.mult is not None:
            assert t.shift.max() <= SHIFTS[1]
            kept = s.shift <= SHIFTS[1]
            assert np.array_equal(t.shift[kept], s.shift[kept]) and np.array_equal(t.mult[kept], s.mult[kept])


def test_pinned_shifts_keep_the_factor():
    layer = [x for x in random_cnn_layers() if x.mult is not None][0]
    wide = dataclasses.replace(layer, mult=np.array([20000, 16384], np.int64)[:1].repeat(layer.mult.size),
                               shift=np.full(layer.mult.size, 40, np.int64))
    (pinned,) = _pin_shifts([wide])
    assert (pinned.shift == SHIFTS[1]).all()
    np.testing.assert_allclose(pinned.mult / np.exp2(pinned.shift), 20000 / 2.0 ** 40, rtol=0.02)
    low = dataclasses.replace(layer, shift=np.full(layer.mult.size, 3, np.int64))
    (raised,) = _pin_shifts([low])
    assert raised.shift.max() == SHIFTS[0] and sorted(raised.shift)[:-1] == [3] * (layer.mult.size - 1)


def random_cnn_layers():
    g = random_hw_graph(0, "cnn")
    return convert(g, np.random.default_rng(0).integers(0, 256, (6, *g.input.attrs["shape"]))).layers()


def verilog_without_images(p, tmp, name):
    from rtl_gen.export import generate
    q, g, frames = make_case(p)
    hw = build_net(q) if p.get("structures") else q
    out = tmp / name
    generate(hw, pes=p["pes"], out_dir=out, graph=g)
    text = "".join((out / v.name).read_text() for v in sorted(out.glob("*.v")))
    return [x for x in text.splitlines() if not MEM_INIT.match(x)], HwPlan.from_qnet(hw, pes=p["pes"])


def test_one_pool_entry_generates_one_verilog_text(tmp_path):
    """Two runs of one entry: other weights and thresholds, the same Verilog (memory images aside).
    Without pinning (``structures`` 0 on the same draws), the two texts differ."""
    c = Campaign(seed=1, nets=("mlp",), pes=(2,), simulators=("icarus",), structures=3)
    p0, p1 = draw(c, 1), draw(c, 4)
    assert p0["structure"] == p1["structure"] and p0["params_seed"] != p1["params_seed"]
    t0, plan0 = verilog_without_images(p0, tmp_path, "a")
    t1, plan1 = verilog_without_images(p1, tmp_path, "b")
    assert plan0.weights != plan1.weights
    assert t0 == t1
    u0, _ = verilog_without_images({**p0, "structures": 0}, tmp_path, "c")
    u1, _ = verilog_without_images({**p1, "structures": 0}, tmp_path, "d")
    assert u0 != u1
