"""HwPlan: support checks and PE mapping."""
import numpy as np
import pytest

from evhw.convert import convert
from evhw.ir import GraphBuilder
from rtl_gen.errors import UnsupportedHardwareError
from rtl_gen.plan import HwPlan
from tests.unit.nets import tiny_cnn


def _small(view=None, groups=1):
    """conv 1->4 + ReLU, conv 4->4 (``groups``) + ReLU, optional ``view`` op, 1x1 conv readout."""
    rng = np.random.default_rng(3)
    b = GraphBuilder((1, 8, 8))
    x = b.op("relu", b.conv("input", rng.normal(0, .5, (4, 1, 3, 3)), None, padding=1))
    x = b.op("relu", b.conv(x, rng.normal(0, .5, (4, 4 // groups, 3, 3)), None, padding=1, groups=groups))
    if view:
        x = b.op(view, x, scale=2)
    b.conv(x, rng.normal(0, .5, (2, 4, 1, 1)), None)
    return convert(b.build(), rng.integers(0, 256, (4, 1, 8, 8)))


def test_refuses_grouped_conv():
    HwPlan.from_qnet(_small(), pes=2)                      # the same network without groups is supported
    with pytest.raises(UnsupportedHardwareError, match=r"^layer 'conv1': grouped convolution \(groups=2\)$"):
        HwPlan.from_qnet(_small(groups=2), pes=2)


def test_refuses_upsample():
    with pytest.raises(UnsupportedHardwareError, match=r"^view 'upsample0': upsample is not supported"):
        HwPlan.from_qnet(_small(view="upsample"), pes=2)


@pytest.mark.parametrize("pes", [0, 17, 2.0, True])
def test_pes_validated(pes):
    with pytest.raises(TypeError, match="PE count"):
        HwPlan.from_qnet(tiny_cnn(), pes=pes)


def test_mapping_interleaves_channels():
    p = HwPlan.from_qnet(tiny_cnn(), pes=2)
    conv0 = p.layers[0]
    assert conv0.own == [2, 1] and conv0.abase == [0, 0]
    assert p.cfg_map[p.cfg_gates["conv0"]["cfg_base"] + 1] == (1, conv0.tbase[1])
    assert sum(len(w) for pe in p.weights for w in pe) >= sum(t.weight.size for t in p.terms if t.kind in ("conv", "linear"))


def test_event_buffers_share_disjoint_lifetimes():
    p = HwPlan.from_qnet(tiny_cnn(), pes=2)
    # input -> conv0 -> conv1; add0 reads conv0 and conv1; gap reads add0
    buf = {e.tensor: e.buf for e in p.event_mems}
    assert buf["input"] == buf["conv0"] == buf["add0"] != buf["conv1"]
    assert len(p.event_bufs) == 2
    for b in p.event_bufs:
        assert b.depth == max(p.event_mems[i].depth for i in b.tensors)
    bits = p.memory_bits()
    assert sum(v for k, v in bits["shared"].items() if k.startswith("events_")) == \
        sum(b.depth * b.word_bits for b in p.event_bufs)


def test_narrow_words():
    p = HwPlan.from_qnet(tiny_cnn(), pes=2)
    assert p.gate_value_w == max(l.value_bits for l in p.layers if l.gated) <= p.value_w
    assert all(sum(w) <= p.c_w + p.y_w + p.x_w for w in p.touch_w)
