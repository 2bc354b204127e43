"""The accumulator bound and width (docs/semantics.md §2 "Accumulator width", §5 memory loss).

``|a| <= sum |w| * R`` with ``R = max|value| + span``; ``acc_bits = bitlength(bound) + 1`` (two's
complement): the narrowest signed width that holds ``-bound..bound``. Under evnet the bound holds on
any input; under memory loss the accumulator may reach it exactly and is stopped one step later.
"""
import numpy as np
import pytest

from evhw.convert import convert
from evhw.errors import AccumulatorOverflowError
from evhw.golden import EventModel, Policy
from evhw.ir import GraphBuilder
from netgen import random_cnn, random_mlp, random_video


def _signed_fits(v, bits):
    return -(1 << (bits - 1)) <= -v and v <= (1 << (bits - 1)) - 1


def _two_input_sum():
    """input (2,) -> linear [[.5, .5]] (readout): both weights quantize to 127 (8 bits)."""
    b = GraphBuilder((2,))
    b.linear("input", np.array([[0.5, 0.5]]), None)
    q = convert(b.build(), np.array([[0, 0], [255, 255]], np.uint8))
    return q, q.layers()[0]


def test_bound_and_width_by_hand():
    q, s = _two_input_sum()
    assert s.terms[0].weight.tolist() == [[127, 127]]
    assert s.acc_bound == 254 * (255 + 255) == 129540          # 2**16 < 129540 < 2**17
    assert s.acc_bits == 18                                     # 17 magnitude bits + the sign bit


def test_sumpool_bound_by_hand():
    b = GraphBuilder((1, 4, 4))
    b.op("avgpool", "input", kernel=2, stride=2)
    q = convert(b.build(), np.zeros((1, 1, 4, 4), np.uint8))
    s = q.layers()[0]
    assert s.acc_bound == 4 * 510 == 2040 and s.acc_bits == 12     # 2**10 < 2040 < 2**11


NETS = [("cnn", s) for s in range(8)] + [("mlp", s) for s in range(3)]


@pytest.mark.parametrize("kind, seed", NETS)
def test_width_is_the_narrowest_that_holds_the_bound(kind, seed):
    g = random_mlp(seed) if kind == "mlp" else random_cnn(seed)
    shape = g.input.attrs["shape"]
    q = convert(g, random_video(seed, shape, frames=4))
    tensors = q.tensors()
    for s in q.layers():
        bound = 0
        for t in s.terms:          # the bound from the rule, per output channel, maximized
            src = tensors[t.src]
            r = max(abs(src.lo), abs(src.hi)) + (src.hi - src.lo)
            if t.kind in ("conv", "linear"):
                per = np.abs(t.weight).reshape(t.weight.shape[0], -1).sum(axis=1)
            elif t.kind == "sumpool":
                per = np.full(s.acc_shape[0], t.attrs["kernel"][0] * t.attrs["kernel"][1])
            else:
                per = np.abs(t.weight)
            bound = bound + per.astype(object) * r
        assert s.acc_bound == int(np.max(bound)), s.name
        assert _signed_fits(s.acc_bound, s.acc_bits), s.name
        assert not _signed_fits(s.acc_bound, s.acc_bits - 1), s.name


def _extreme_frames(rng, shape, n):
    """Saturated frames: all 0, all 255, checkerboards, random 0/255 patterns, in random order."""
    size = int(np.prod(shape))
    pats = [np.zeros(size), np.full(size, 255), np.arange(size) % 2 * 255, (1 - np.arange(size) % 2) * 255]
    out = []
    for _ in range(n):
        k = rng.integers(0, len(pats) + 1)
        out.append(pats[k] if k < len(pats) else rng.integers(0, 2, size) * 255)
    return np.array(out, np.uint8).reshape(n, *shape)


@pytest.mark.parametrize("kind, seed", NETS)
def test_evnet_never_exceeds_the_bound(kind, seed):
    """Saturated inputs, thresholds drawn up to the largest allowed (span) and changed every frame."""
    g = random_mlp(seed) if kind == "mlp" else random_cnn(seed)
    shape = g.input.attrs["shape"]
    q = convert(g, random_video(seed, shape, frames=4))
    rng = np.random.default_rng(seed + 100 * (kind == "mlp"))
    tensors = q.tensors()
    for gran in ("neuron", "pixel"):
        m = EventModel(q, Policy("evnet", granularity=gran))
        peak = {s.name: 0 for s in q.layers()}
        for f in _extreme_frames(rng, shape, 12):
            m.set_thresholds({gn: rng.integers(0, tensors[gn].span + 1, tensors[gn].channels) for gn in q.gates()})
            m.step(f)
            for s in q.layers():
                peak[s.name] = max(peak[s.name], int(np.abs(m.a[s.name]).max()))
        for s in q.layers():
            assert peak[s.name] <= s.acc_bound, (gran, s.name, peak[s.name], s.acc_bound)


def test_memory_loss_reaches_the_bound_exactly_then_stops():
    """Input H = 128: the ramps 0 -> 128 -> 255 are never sent, the falls 255 -> 0 are. Each cycle moves
    the transmitted value by -255; after two cycles a = 127 * 2 * (-510) = -bound (allowed), after
    three it would be -127 * 2 * 765: refused."""
    q, s = _two_input_sum()
    th = {"input": np.array([128, 128])}
    cycle = [[128, 128], [255, 255], [0, 0]]
    m = EventModel(q, Policy("skipconv"), thresholds=th)
    m.step(np.zeros(2, np.uint8))
    for f in cycle * 2:
        m.step(np.array(f, np.uint8))
    assert int(m.a[s.name][0]) == -s.acc_bound == -129540
    assert _signed_fits(int(m.a[s.name][0]), s.acc_bits)
    m.step(np.array(cycle[0], np.uint8))
    m.step(np.array(cycle[1], np.uint8))
    with pytest.raises(AccumulatorOverflowError, match=f"proven bound {s.acc_bound}"):
        m.step(np.array(cycle[2], np.uint8))
    # the same frames under evnet: the transmitted value is always a past value, |a| <= 127 * 2 * 255
    m = EventModel(q, Policy("evnet"), thresholds=th)
    m.run(np.array([[0, 0]] + cycle * 4, np.uint8))
    assert np.abs(m.a[s.name]).max() <= 254 * 255


@pytest.mark.parametrize("bits", [8, 6])
@pytest.mark.parametrize("kind, seed", NETS[:4] + NETS[-1:])
def test_activation_ranges(kind, seed, bits):
    """Unsigned [0, 2**b - 1] after ReLU/ReLU6, two's complement [-2**(b-1), 2**(b-1) - 1] otherwise."""
    g = random_mlp(seed) if kind == "mlp" else random_cnn(seed)
    q = convert(g, random_video(seed, g.input.attrs["shape"], frames=4), act_bits=bits, weight_bits=bits)
    assert (q.input.lo, q.input.hi) == (0, 255)
    for s in q.layers():
        if s.mult is None:
            continue                                  # the readout keeps the accumulator's range
        want = (0, 2 ** bits - 1) if s.act in ("relu", "relu6") else (-2 ** (bits - 1), 2 ** (bits - 1) - 1)
        assert (s.out.lo, s.out.hi) == want, (s.name, s.act)
