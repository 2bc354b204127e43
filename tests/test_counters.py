"""MAC counts worked out by hand for single-pixel changes under padding, stride and dilation."""
import numpy as np
import pytest

from evhw.convert import convert, set_thresholds
from evhw.golden import EventModel, Policy, state_memory_bits
from evhw.ir import GraphBuilder


def _conv_net(stride=1, padding=1, dilation=1, cout=2, features=3):
    b = GraphBuilder((1, 5, 5))
    x = b.conv("input", np.ones((cout, 1, 3, 3)), None, stride=stride, padding=padding, dilation=dilation, name="conv")
    x = b.op("relu", x, name="relu")
    f = b.op("flatten", x)
    b.linear(f, np.ones((features, int(np.prod(b.build(f).node(f).shape)))) * 0.01, None, name="fc")
    return b.build()


def _counts(g, y, x, calib_value=40):
    base = np.full((1, 5, 5), calib_value, np.uint8)
    q = convert(g, np.stack([base, base + 100]))
    set_thresholds(q, 0.0)
    frame = base.copy()
    frame[0, y, x] += 100          # one pixel changes a lot
    res = EventModel(q, Policy("evnet")).run([base, frame])
    return res[0], res[1]


# (stride, padding, dilation, pixel) -> conv outputs the pixel reaches (counted by hand on paper)
CASES = [
    (1, 1, 1, (0, 0), 4),    # corner: 2x2 outputs whose 3x3 window holds it
    (1, 1, 1, (0, 2), 6),    # edge: 2x3
    (1, 1, 1, (2, 2), 9),    # centre: 3x3
    (1, 0, 1, (0, 0), 1),    # no padding, corner: only output (0,0)
    (1, 0, 1, (2, 2), 9),    # no padding, centre of 5x5 -> 3x3 outputs, all reach it
    (2, 1, 1, (0, 0), 1),    # stride 2: 3x3 outputs; y=2oy-1+ky=0 -> oy=0 only
    (2, 1, 1, (1, 1), 4),    # y=1: oy=0 (ky=2) or oy=1 (ky=0), same for x
    (2, 1, 1, (1, 2), 2),    # x=2: ox=1 only
    (2, 1, 1, (3, 3), 4),    # y=3: oy=1 (ky=2), oy=2 (ky=0)
    (1, 2, 2, (0, 0), 4),    # dilation 2, pad 2: y=oy-2+2ky=0 -> oy in {0,2} (ky=1,0 invalid: oy=2-2ky) -> {0,2}
    (1, 2, 2, (2, 2), 9),    # centre: oy in {0,2,4}
]


@pytest.mark.parametrize("stride, padding, dilation, pixel, reached", CASES)
def test_single_pixel_macs(stride, padding, dilation, pixel, reached):
    cout, features = 2, 3
    g = _conv_net(stride, padding, dilation, cout, features)
    first, second = _counts(g, *pixel)
    conv, fc = second.layers["conv"], second.layers["fc"]
    assert conv.event_macs == cout * reached
    assert second.layers["input"].gate_t == 1
    # all-ones weights and a +100 change: every reached output rises, so all of them transmit
    assert conv.gate_t == cout * reached
    assert fc.event_macs == cout * reached * features
    assert first.event_macs == first.dense_macs         # frame 0 is counted dense


def test_dense_macs_count_only_in_bounds_taps():
    g = _conv_net(1, 1, 1, cout=2, features=3)
    first, _ = _counts(g, 0, 0)
    # 5x5 output, 3x3 kernel, pad 1: corners see 4 taps, edges 6, interior 9 -> 4*4 + 12*6 + 9*9 = 169
    assert first.layers["conv"].dense_macs == 2 * 169
    assert first.layers["fc"].dense_macs == 2 * 25 * 3


def test_grouped_conv_counts_outputs_of_its_group_only():
    b = GraphBuilder((4, 5, 5))
    b.conv("input", np.ones((4, 1, 3, 3)), None, padding=1, groups=4, name="dw")
    q = convert(b.build(), np.full((2, 4, 5, 5), 50, np.uint8))
    set_thresholds(q, 0.0)
    f0 = np.full((4, 5, 5), 50, np.uint8)
    f1 = f0.copy()
    f1[2, 2, 2] = 200
    r = EventModel(q, Policy("evnet")).run([f0, f1])[1]
    assert r.layers["dw"].event_macs == 1 * 9          # one output channel per group, 3x3 outputs


def _mlp():
    b = GraphBuilder((6,))
    x = b.linear("input", np.eye(4, 6), None, name="l1")
    x = b.op("relu", x, name="r1")
    b.linear(x, np.ones((2, 4)), None, name="l2")
    return convert(b.build(), np.array([[10] * 6, [200] * 6], np.uint8))


def test_linear_macs_and_overheads():
    q = _mlp()
    set_thresholds(q, 0.0)
    f0 = np.full(6, 10, np.uint8)
    f1 = f0.copy()
    f1[[0, 1, 5]] = 90                    # inputs 0 and 1 feed l1 rows 0, 1; input 5 feeds no row (eye(4, 6))
    r = EventModel(q, Policy("evnet")).run([f0, f1])[1]
    assert r.layers["input"].gate_t == 3
    assert r.layers["l1"].event_macs == 3 * 4        # each transmitted input costs out_features
    assert r.layers["l1"].acc_u == 4                 # dense row: every output touched
    assert r.layers["l1"].gate_u == 4 and r.layers["l1"].gate_t == 2
    assert r.layers["l2"].event_macs == 2 * 2
    # overhead formulas (EvNet paper): gate 2u + t arithmetic + u threshold; loads/stores 2 * (2u + t)
    arith, mem = r.layers["l1"].overhead(chunked=False)
    assert arith == 4 + (2 * 4 + 2) + 4
    assert mem == 2 * 4 + 2 * (2 * 4 + 2)


def test_state_memory_bits():
    q = _mlp()
    mem = state_memory_bits(q)
    r1 = q.layer("l1")
    # 8-bit unsigned activations: b 8 bits; |d| <= 2*255 -> 10 bits signed
    assert (r1.out.bits, r1.out.delta_bits) == (8, 10)
    assert mem["l1"] == 4 * r1.acc_bits + 4 * (8 + 10)
    assert mem["input"] == 6 * (8 + 10)
    assert mem["l2"] == 2 * q.layer("l2").acc_bits    # output readout: accumulator only, no gate
