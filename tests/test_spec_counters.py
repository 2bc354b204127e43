"""Counters, state memory, value function, policy and frame validation of the golden model, worked
out by hand (docs/semantics.md §2, §4-6)."""
import dataclasses

import numpy as np
import pytest

from evhw.convert import convert
from evhw.errors import ConfigError, ShapeError
from evhw.golden import (EventModel, FrameResult, LayerCount, Policy, dense_forward, state_memory_bits,
                         value_pre_pool)
from evhw.ir import GraphBuilder
import intref
import specnets

# u = 7 evaluated, t = 3 transmitted, u_acc = 5, 2 non-MAC accumulations, 11/13 buffer reads/writes, 2 chunks
COUNT = dict(acc_ops=2, gate_u=7, gate_t=3, chunks_fired=2, acc_u=5, buffer_reads=11, buffer_writes=13)


def test_overhead_per_neuron():
    # arithmetic: acc_ops + u_acc + (2u + t) + u compares; memory: 2 u_acc + reads + writes + 2 (2u + t)
    assert LayerCount(**COUNT).overhead(chunked=False) == (2 + 5 + 17 + 7, 10 + 11 + 13 + 34)


def test_overhead_chunked():
    # chunked: 2u compares; loads/stores + 2u + fired chunks
    assert LayerCount(**COUNT).overhead(chunked=True) == (2 + 5 + 17 + 14, 10 + 11 + 13 + 34 + 14 + 2)


@pytest.mark.parametrize("u, t, want", [(0, 0, (2 + 5, 10 + 24)), (0, 4, (2 + 5 + 4, 10 + 24 + 8)),
                                        (3, 0, (2 + 5 + 6 + 3, 10 + 24 + 12))])
def test_overhead_gate_terms(u, t, want):
    c = LayerCount(acc_ops=2, acc_u=5, buffer_reads=11, buffer_writes=13, gate_u=u, gate_t=t)
    assert c.overhead(chunked=False) == want


def test_frame_summary_sums_layers():
    a = LayerCount(dense_macs=100, event_macs=30, gate_t=4, gate_u=6, acc_u=2)
    b = LayerCount(dense_macs=50, event_macs=5, acc_ops=3, gate_t=1, acc_u=1, chunks_fired=1, gate_u=2)
    r = FrameResult(3, "event", np.zeros(1), {"a": a, "b": b})
    assert (r.dense_macs, r.event_macs, r.events) == (150, 35, 5)
    arith = (2 + 12 + 4 + 6) + (3 + 1 + 4 + 1 + 2)
    mem = (4 + 2 * 16) + (2 + 2 * 5)
    assert r.summary() == {"frame": 3, "kind": "event", "dense_macs": 150, "event_macs": 35, "events": 5,
                           "overhead_arith": arith, "overhead_mem": mem}
    assert r.summary(chunked=True)["overhead_arith"] == arith + 6 + 2
    assert r.summary(chunked=True)["overhead_mem"] == mem + (12 + 0) + (4 + 1)


def _pooled():
    """input (1, 4, 4) -> conv 2x1x3x3 pad 1 + ReLU + max-pool 2 -> flatten -> linear 3 (readout)."""
    rng = np.random.default_rng(5)
    b = GraphBuilder((1, 4, 4))
    x = b.op("maxpool", b.op("relu", b.conv("input", rng.normal(0, .5, (2, 1, 3, 3)), None, padding=1)),
             kernel=2, stride=2)
    b.linear(b.op("flatten", x), rng.normal(0, .5, (3, 8)), None)
    return convert(b.build(), rng.integers(0, 256, (4, 1, 4, 4)))


def test_state_memory_with_a_max_pool_buffer():
    q = _pooled()
    conv, lin = q.layers()
    assert conv.acc_shape == (2, 4, 4) and conv.out.shape == (2, 2, 2) and (conv.out.bits, conv.out.delta_bits) == (8, 10)
    mem = state_memory_bits(q)
    # accumulators 32 x acc_bits, gates 8 x (8 + 10), the pool's value buffer 32 x 8
    assert mem[conv.name] == 32 * conv.acc_bits + 8 * 18 + 32 * 8
    assert mem[lin.name] == 3 * lin.acc_bits
    assert mem["input"] == 16 * (8 + 10)


def test_pooled_layer_counts_buffer_and_evaluates_reached_windows():
    q = _pooled()
    conv = q.layers()[0]
    th = {g: np.zeros(q.tensors()[g].channels, np.int64) for g in q.gates()}
    m = EventModel(q, Policy("evnet"), thresholds=th)
    f0 = np.full((1, 4, 4), 100, np.uint8)
    f1 = f0.copy()
    f1[0, 0, 0] = 200                # reaches conv outputs (0..1, 0..1): one pool window per channel
    r0, r1 = m.step(f0), m.step(f1)
    c0, c1 = r0.layers[conv.name], r1.layers[conv.name]
    assert (c0.buffer_reads, c0.buffer_writes, c0.acc_u, c0.gate_u) == (32, 32, 32, 8)     # flush: everything
    assert (c1.buffer_reads, c1.buffer_writes, c1.acc_u, c1.gate_u) == (32, 8, 8, 2)
    # dense: 4 corners x 4 taps + 8 edges x 6 + 4 inner x 9 = 100 per output channel
    assert c1.event_macs == 2 * 4 and c0.dense_macs == 2 * 100
    np.testing.assert_array_equal(r1.output, intref.dense(q, f1)[q.output])


def test_sumpool_and_add_accumulations_are_overhead():
    """avg-pool 2x2/2 over 4x4: one window per input; residual add: one accumulation per input element."""
    b = GraphBuilder((1, 4, 4))
    p = b.op("avgpool", "input", kernel=2, stride=2)
    r = b.op("relu", p)
    b.op("add", r, b.op("relu", r))
    q = convert(b.build(), np.random.default_rng(0).integers(0, 256, (3, 1, 4, 4)))
    th = {g: np.zeros(q.tensors()[g].channels, np.int64) for g in q.gates()}
    f0 = np.full((1, 4, 4), 50, np.uint8)
    f1 = f0.copy()
    f1[0, 1, 2] = 150
    r0, r1 = EventModel(q, Policy("evnet"), thresholds=th).run([f0, f1])
    pool, ident, add = q.layers()            # avgpool0 (sum) -> relu1 (identity accumulator) -> add0
    assert [t.kind for t in add.terms] == ["scale", "scale"]
    for name, dense, event in [(pool.name, 16, 1), (ident.name, 4, 1), (add.name, 8, 2)]:
        assert r0.layers[name].dense_acc_ops == r0.layers[name].acc_ops == dense, name
        assert r1.layers[name].acc_ops == event and r1.layers[name].event_macs == 0, name
    assert r1.layers[add.name].acc_u == 1 and r1.layers[add.name].gate_u == 0      # the readout has no gate
    np.testing.assert_array_equal(r1.output, intref.dense(q, f1)[q.output])


def test_padded_sumpool_reaches_only_windows_holding_the_change():
    """avg-pool 3x3, stride 1, pad 1 over 4x4: a corner pixel lies in the windows of outputs (0..1, 0..1)."""
    b = GraphBuilder((1, 4, 4))
    b.op("relu", b.op("avgpool", "input", kernel=3, stride=1, padding=1))
    q = convert(b.build(), np.random.default_rng(0).integers(0, 256, (3, 1, 4, 4)))
    th = {g: np.zeros(q.tensors()[g].channels, np.int64) for g in q.gates()}
    f0 = np.full((1, 4, 4), 50, np.uint8)
    f1 = f0.copy()
    f1[0, 0, 0] = 200
    r = EventModel(q, Policy("evnet"), thresholds=th).run([f0, f1])[1]
    layer = q.layers()[0]
    assert r.layers[layer.name].acc_u == 4 and r.layers[layer.name].acc_ops == 4
    np.testing.assert_array_equal(r.output, intref.dense(q, f1)[q.output])


# ---------------------------------------------------------------------------------------- validation

@pytest.mark.parametrize("kwargs, msg", [
    (dict(kind="evnt"), r"^policy must be one of evnet, skipconv, rrm, dense, sigmadelta, not 'evnt'$"),
    (dict(granularity="block:0"), r"^granularity must be neuron, pixel or block:K, not 'block:0'$"),
    (dict(granularity="block:x"), r"not 'block:x'$"),
    (dict(granularity="chunk"), r"not 'chunk'$"),
    (dict(kind="evnet", reset_every=4), r"^reset_every needs the skipconv policy and a period >= 1, not 4$"),
    (dict(kind="skipconv", reset_every=0), r"not 0$"),
    (dict(kind="evnet", norm_gate=True), r"^the input-norm gate belongs to the skipconv policy$"),
    (dict(kind="sigmadelta", granularity="pixel"), r"^the sigmadelta policy quantizes each neuron's change"),
    (dict(init="cold"), r"^init must be flush or warmup, not 'cold'$"),
    (dict(rrm_bound=0.0), r"^rrm_bound must be > 0, not 0.0$"),
])
def test_policy_validation(kwargs, msg):
    with pytest.raises(ConfigError, match=msg):
        Policy(**kwargs)


@pytest.mark.parametrize("kwargs", [dict(granularity="block:1"), dict(granularity="pixel"),
                                    dict(kind="skipconv", reset_every=1), dict(kind="rrm", rrm_bound=1e-9),
                                    dict(kind="sigmadelta"), dict(init="warmup")])
def test_policy_accepts(kwargs):
    p = Policy(**kwargs)
    assert p.memory_loss == (p.kind in ("skipconv", "rrm"))


def test_threshold_validation():
    q = specnets.passthrough((2, 1, 1))
    with pytest.raises(ConfigError, match=r"^no threshold for gate 'id'$"):
        EventModel(q, thresholds={"input": 0})
    with pytest.raises(ConfigError, match=r"^thresholds of gate 'input' must lie in 0\.\.255$"):
        EventModel(q, thresholds={"input": [0, 256], "id": 0})
    with pytest.raises(ConfigError, match="gate 'id'"):
        EventModel(q, thresholds={"input": 0, "id": -1})
    m = EventModel(q, thresholds={"input": 255, "id": [0, 3]})     # a scalar is broadcast per channel
    assert m.thresholds["input"].tolist() == [255, 255] and m.thresholds["id"].tolist() == [0, 3]


def test_frame_validation_and_accepted_layouts():
    q = specnets.passthrough((1, 2, 3))
    with pytest.raises(ShapeError, match=r"^frame shape \(2, 2\) does not match the model input \(1, 2, 3\)$"):
        dense_forward(q, np.zeros((2, 2)))
    with pytest.raises(ShapeError, match=r"^frames must hold integer pixels 0\.\.255, got dtype float64$"):
        dense_forward(q, np.full((1, 2, 3), 0.5))
    with pytest.raises(ShapeError, match=r"^pixel values must lie in 0\.\.255, got -1\.\.3$"):
        dense_forward(q, np.array([[[0, 1, 2], [3, -1, 0]]]))
    with pytest.raises(ShapeError, match=r"got 0\.\.256$"):
        dense_forward(q, np.array([[[0, 256, 2], [3, 1, 0]]]))
    f = np.array([[1, 2, 3], [4, 5, 255]])
    assert dense_forward(q, f)["out"].tolist() == [f.tolist()]                  # (H, W) for a 1-channel input
    assert dense_forward(q, f.astype(float))["out"].tolist() == [f.tolist()]    # integral floats are accepted
    assert dense_forward(q, np.zeros((1, 2, 3), np.uint8))["out"].dtype == np.int64
    flat = specnets.passthrough((6,))
    flat.input.shape = (6,)
    assert dense_forward(flat, f)["input"].tolist() == [1, 2, 3, 4, 5, 255]     # (H, W) flattened for (F,)


def test_output_that_is_a_view():
    """The readout of a view (concat of two gated layers) is rebuilt from the layers' current values."""
    rng = np.random.default_rng(2)
    b = GraphBuilder((1, 4, 4))
    x = b.op("relu", b.conv("input", rng.normal(0, .5, (2, 1, 3, 3)), None, padding=1))
    y = b.op("relu", b.conv("input", rng.normal(0, .5, (1, 1, 1, 1)), None))
    b.op("concat", x, y)
    q = convert(b.build(), rng.integers(0, 256, (4, 1, 4, 4)))
    video = rng.integers(0, 256, (4, 1, 4, 4))
    th = {g: np.zeros(q.tensors()[g].channels, np.int64) for g in q.gates()}
    for r, f in zip(EventModel(q, Policy("evnet"), thresholds=th).run(video), video):
        np.testing.assert_array_equal(r.output, intref.dense(q, f)[q.output])
        assert r.output.shape == (3, 4, 4)


def test_flush_frame_counts_every_input_pixel_sent():
    q = specnets.passthrough((2, 3, 4))
    r = EventModel(q, Policy("evnet")).step(np.full((2, 3, 4), 9))
    assert r.kind == "flush"
    assert (r.layers["input"].gate_u, r.layers["input"].gate_t) == (24, 24)
    assert (r.layers["id"].gate_u, r.layers["id"].gate_t, r.layers["id"].acc_u) == (24, 24, 24)
    assert r.events == 48


def test_add_with_only_its_second_input_changed():
    """Two 1x1 branches from the input into an add: the first branch holds its change (threshold at its
    span), the second sends; the add's accumulator must still take the second term's deltas."""
    b = GraphBuilder((1, 2, 2))
    x = b.op("relu", b.conv("input", np.full((1, 1, 1, 1), 0.5), None))
    y = b.op("relu", b.conv("input", np.full((1, 1, 1, 1), 0.25), None))
    b.op("add", x, y)
    q = convert(b.build(), np.array([np.zeros((1, 2, 2)), np.full((1, 2, 2), 255)], np.uint8))
    first, second, add = q.layers()
    assert [t.src for t in add.terms] == [first.name, second.name]
    th = {g: np.zeros(q.tensors()[g].channels, np.int64) for g in q.gates()}
    th[first.name][:] = q.tensors()[first.name].span
    m = EventModel(q, Policy("evnet"), thresholds=th)
    m.step(np.full((1, 2, 2), 100))
    r = m.step(np.full((1, 2, 2), 140))
    assert r.layers[first.name].gate_t == 0 and r.layers[second.name].gate_t == 4
    sent = {n: m.b[n] - m.d[n] for n in (first.name, second.name)}      # transmitted values
    want = sum(int(t.weight[0]) * sent[t.src] for t in add.terms)
    np.testing.assert_array_equal(m.a[add.name], want)
    assert r.layers[add.name].acc_ops == 4


def test_all_zero_weights_under_memory_loss():
    """A layer whose weights are all zero has the bound 0; its accumulator stays 0, which is no overflow."""
    b = GraphBuilder((3,))
    b.linear("input", np.zeros((2, 3)), None)
    q = convert(b.build(), np.array([[0, 0, 0], [255, 255, 255]], np.uint8))
    assert q.layers()[0].acc_bound == 0
    res = EventModel(q, Policy("skipconv")).run(np.array([[0, 0, 0], [9, 200, 3], [0, 0, 0]], np.uint8))
    assert all(not r.output.any() for r in res)


def test_output_view_that_reads_the_input():
    """concat(input, relu(conv(input))) as the output: the input part is the input gate's current value b."""
    rng = np.random.default_rng(8)
    b = GraphBuilder((1, 3, 3))
    b.op("concat", "input", b.op("relu", b.conv("input", rng.normal(0, .5, (1, 1, 3, 3)), None, padding=1)))
    q = convert(b.build(), rng.integers(0, 256, (3, 1, 3, 3)))
    m = EventModel(q, Policy("evnet"), thresholds={g: np.zeros(q.tensors()[g].channels, np.int64) for g in q.gates()})
    for f in rng.integers(0, 256, (3, 1, 3, 3)):
        out = m.step(f).output
        np.testing.assert_array_equal(out, intref.dense(q, f)[q.output])
        np.testing.assert_array_equal(out[0], f[0])


# ---------------------------------------------------------------------------------------- value function

def _value_layer(**kw):
    """The passthrough's identity layer (M = 2**14, S = 14: requant is the identity) with fields replaced."""
    layer = specnets.passthrough((1, 1, 8)).layer("id")
    out = dataclasses.replace(layer.out, lo=kw.pop("lo", layer.out.lo), hi=kw.pop("hi", layer.out.hi))
    return dataclasses.replace(layer, out=out, **kw)


ACC = np.array([[[-300, -129, -5, -1, 0, 1, 50, 300]]])


@pytest.mark.parametrize("kw, want", [
    (dict(act="none", lo=-128, hi=127), [-128, -128, -5, -1, 0, 1, 50, 127]),          # clamp both sides
    (dict(act="relu", lo=-128, hi=127), [0, 0, 0, 0, 0, 1, 50, 127]),
    (dict(act="relu6", act_hi=40, lo=0, hi=255), [0, 0, 0, 0, 0, 1, 40, 40]),          # clip below the range
    (dict(act="leaky", leaky_num=13, leaky_shift=7, lo=-128, hi=127),                   # (v * 13) >> 7, floor
     [-31, -14, -1, -1, 0, 1, 50, 127]),
    (dict(act="none", lo=-128, hi=127, bias=np.array([-20])), [-128, -128, -25, -21, -20, -19, 30, 127]),
])
def test_value_function_table(kw, want):
    assert value_pre_pool(_value_layer(**kw), ACC).reshape(-1).tolist() == want


def test_flat_input_frames():
    q = specnets.passthrough((6,))
    assert dense_forward(q, np.arange(6).reshape(1, 2, 3))["out"].tolist() == list(range(6))
    with pytest.raises(ShapeError, match=r"frame shape \(2, 2\) does not match the model input \(6,\)"):
        dense_forward(q, np.zeros((2, 2)))
