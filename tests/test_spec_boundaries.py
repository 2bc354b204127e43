"""The gate comparators at their boundaries, with integer thresholds set directly (docs/semantics.md §4-5).

Every expectation is written out by hand from the rules: a neuron fires iff ``|d| > H`` (|d| = H
holds, H + 1 fires); a chunk (pixel, block:K) fires iff some member has ``|d_i| > H_i`` and then
sends every member's non-zero d; the norm gate fires iff ``sum |d_c| > sum H_c``; sigmadelta
sends ``n*H``, ``n = sign(d) * floor((|d| + floor(H/2)) / H)``. The network is
:func:`specnets.passthrough`, so the readout shows what the gate under test has transmitted.
Also: threshold 0 is exact for the sigmadelta policy and the norm gate on the random networks.
"""
import numpy as np
import pytest

from evhw.convert import convert, set_thresholds
from evhw.golden import EventModel, Policy, dense_forward
from netgen import random_cnn, random_mlp, random_video
import specnets

BASE = 100
GATES = ["input", "id"]


def _run(shape, gate, h, policy, changes):
    """Frame 0 = BASE everywhere (flush); then one frame per dict in ``changes`` ({(c, y, x): step},
    cumulative). Returns (model, results)."""
    q = specnets.passthrough(shape)
    m = EventModel(q, policy, thresholds=specnets.thresholds(q, gate, h))
    f = np.full(shape, BASE, np.int64)
    res = [m.step(f)]
    for ch in changes:
        f = f.copy()
        for idx, step in ch.items():
            f[idx] += step
        res.append(m.step(f))
    return m, res


def _expect(shape, sent):
    out = np.full(shape, BASE, np.int64)
    for idx, v in sent.items():
        out[idx] += v
    return out


# ---------------------------------------------------------------------------------------- per neuron

NEURON_STEP = {(0, 0, 0): +10, (0, 0, 1): +11, (0, 0, 2): -10, (0, 1, 0): -11,     # channel 0: H = 10
               (1, 0, 0): +20, (1, 0, 1): -21, (1, 0, 2): -20, (1, 1, 0): +21,     # channel 1: H = 20
               (1, 1, 1): +15}                                                      # above H0, not above H1
NEURON_FIRED = {(0, 0, 1): +11, (0, 1, 0): -11, (1, 0, 1): -21, (1, 1, 0): +21}


@pytest.mark.parametrize("gate", GATES)
@pytest.mark.parametrize("kind", ["evnet", "skipconv", "rrm"])
def test_neuron_fires_above_not_at_threshold(gate, kind):
    shape = (2, 2, 3)
    m, res = _run(shape, gate, [10, 20], Policy(kind, rrm_bound=1e9), [NEURON_STEP, {(0, 0, 0): +1}])
    r1, r2 = res[1], res[2]
    assert r1.kind == r2.kind == "event"
    np.testing.assert_array_equal(r1.output, _expect(shape, NEURON_FIRED))
    assert r1.layers[gate].gate_t == len(NEURON_FIRED)
    assert r1.layers[gate].gate_u == (12 if gate == "input" else len(NEURON_STEP))   # input: every pixel
    if kind == "evnet":          # long-term memory: the held +10 becomes 11 > 10 and fires
        np.testing.assert_array_equal(r2.output, _expect(shape, {**NEURON_FIRED, (0, 0, 0): 11}))
        held = {(1, 0, 0): 20, (1, 0, 2): -20, (0, 0, 2): -10, (1, 1, 1): 15}
    else:                        # memory loss: d was cleared, the +1 alone stays below 10
        np.testing.assert_array_equal(r2.output, _expect(shape, NEURON_FIRED))
        held = {}
    np.testing.assert_array_equal(m.d[gate], _expect(shape, held) - BASE)


# ---------------------------------------------------------------------------------------- chunks

def test_pixel_chunk_fires_on_max_over_members():
    """Pixel chunks with per-channel H = (10, 20): fires iff some channel has |d_c| > H_c."""
    shape = (2, 2, 3)
    step = {(0, 0, 0): +10, (1, 0, 0): +20,            # (0,0): both at H         -> holds
            (0, 0, 1): +10, (1, 0, 1): +21,            # (0,1): c1 above H1       -> sends both
            (0, 0, 2): +11,                            # (0,2): c0 above H0       -> sends c0 (c1 has d = 0)
            (0, 1, 0): +5, (1, 1, 0): -21,             # (1,0): c1 below -H1      -> sends both
            (1, 1, 1): +15,                            # (1,1): above H0, not H1  -> holds
            (0, 1, 2): -10, (1, 1, 2): -20}            # (1,2): both at -H        -> holds
    fired = {(0, 0, 1): 10, (1, 0, 1): 21, (0, 0, 2): 11, (0, 1, 0): 5, (1, 1, 0): -21}
    for gate in GATES:
        m, res = _run(shape, gate, [10, 20], Policy("evnet", granularity="pixel"), [step, {(0, 0, 0): +1}])
        np.testing.assert_array_equal(res[1].output, _expect(shape, fired), err_msg=gate)
        assert res[1].layers[gate].chunks_fired == 3 and res[1].layers[gate].gate_t == 5
        # one member passes its threshold: the chunk sends the other member's held change too
        np.testing.assert_array_equal(res[2].output, _expect(shape, {**fired, (0, 0, 0): 11, (1, 0, 0): 20}))
        assert res[2].layers[gate].chunks_fired == 1 and res[2].layers[gate].gate_t == 2


def test_block_chunks_are_per_channel_and_fire_on_max():
    """block:2 on 4x4 with H = (10, 20): four blocks per channel."""
    shape = (2, 4, 4)
    step = {(0, 0, 0): +10, (0, 0, 1): -10, (0, 1, 0): +3,             # c0 top-left: all |d| <= 10 -> holds
            (0, 0, 2): +11, (0, 0, 3): +2, (0, 1, 2): -1,              # c0 top-right: 11 > 10 -> sends 3
            (1, 0, 2): +15,                                            # c1 top-right: 15 <= 20 -> holds
            (1, 2, 0): -21, (1, 3, 1): +7,                             # c1 bottom-left: 21 > 20 -> sends 2
            (1, 2, 2): +20, (1, 3, 3): -20}                            # c1 bottom-right: at H -> holds
    fired = {(0, 0, 2): 11, (0, 0, 3): 2, (0, 1, 2): -1, (1, 2, 0): -21, (1, 3, 1): 7}
    for gate in GATES:
        m, res = _run(shape, gate, [10, 20], Policy("evnet", granularity="block:2"), [step])
        np.testing.assert_array_equal(res[1].output, _expect(shape, fired), err_msg=gate)
        assert res[1].layers[gate].chunks_fired == 2 and res[1].layers[gate].gate_t == 5


def test_block_chunks_at_the_edge_are_partial():
    """block:3 on 4x4: blocks rows/cols {0,1,2} and {3}; an edge block of one element fires alone."""
    shape = (1, 4, 4)
    step = {(0, 2, 2): +10, (0, 3, 3): +11, (0, 3, 0): +4, (0, 0, 3): -6}
    for gate in GATES:
        m, res = _run(shape, gate, 10, Policy("evnet", granularity="block:3"), [step, {(0, 3, 1): -11}])
        np.testing.assert_array_equal(res[1].output, _expect(shape, {(0, 3, 3): 11}), err_msg=gate)
        assert res[1].layers[gate].chunks_fired == 1
        # the bottom-left block (row 3, cols 0..2) fires and sends its held +4, not the other blocks' d
        np.testing.assert_array_equal(res[2].output, _expect(shape, {(0, 3, 3): 11, (0, 3, 1): -11, (0, 3, 0): 4}))


def test_norm_gate_fires_when_sum_exceeds_sum_of_thresholds():
    """skipconv norm gate, H = (10, 20): a pixel fires iff |d_0| + |d_1| > 30 (not on the max rule)."""
    shape = (2, 2, 3)
    step = {(0, 0, 0): +25, (1, 0, 0): +5,             # sum 30, although c0 > H0   -> holds
            (0, 0, 1): +25, (1, 0, 1): -6,             # sum 31                      -> sends both
            (1, 0, 2): +31,                            # sum 31                      -> sends c1
            (0, 1, 0): -10, (1, 1, 0): -20,            # sum 30                      -> holds
            (0, 1, 1): -31,                            # sum 31                      -> sends c0
            (0, 1, 2): +11}                            # 11 > H0 but sum 11          -> holds
    fired = {(0, 0, 1): 25, (1, 0, 1): -6, (1, 0, 2): 31, (0, 1, 1): -31}
    for gate in GATES:
        m, res = _run(shape, gate, [10, 20], Policy("skipconv", norm_gate=True), [step, {(0, 0, 0): +1}])
        np.testing.assert_array_equal(res[1].output, _expect(shape, fired), err_msg=gate)
        assert res[1].layers[gate].chunks_fired == 3 and res[1].layers[gate].gate_t == 4
        # memory loss: the held (25, 5) was dropped; +1 alone does not reach 30
        np.testing.assert_array_equal(res[2].output, _expect(shape, fired))
        assert not m.d[gate].any()


# ---------------------------------------------------------------------------------------- sigmadelta

def test_sigmadelta_rounds_to_multiples_of_the_threshold():
    """H = 10 (floor(H/2) = 5) on channel 0, H = 7 (floor = 3) on channel 1."""
    shape = (2, 1, 6)
    step = {(0, 0, 0): +4, (0, 0, 1): +5, (0, 0, 2): -5, (0, 0, 3): +14, (0, 0, 4): +15, (0, 0, 5): -16,
            (1, 0, 0): +3, (1, 0, 1): +4, (1, 0, 2): -4, (1, 0, 3): +10, (1, 0, 4): +11}
    sent = {(0, 0, 1): 10, (0, 0, 2): -10, (0, 0, 3): 10, (0, 0, 4): 20, (0, 0, 5): -20,
            (1, 0, 1): 7, (1, 0, 2): -7, (1, 0, 3): 7, (1, 0, 4): 14}
    for gate in GATES:
        m, res = _run(shape, gate, [10, 7], Policy("sigmadelta"), [step])
        np.testing.assert_array_equal(res[1].output, _expect(shape, sent), err_msg=gate)
        assert res[1].layers[gate].gate_t == len(sent)
        kept = {k: v - sent.get(k, 0) for k, v in step.items()}
        np.testing.assert_array_equal(m.d[gate], _expect(shape, kept) - BASE)
        assert np.abs(m.d[gate][0]).max() <= 5 and np.abs(m.d[gate][1]).max() <= 3


def test_sigmadelta_threshold_zero_acts_as_one():
    shape = (1, 1, 3)
    step = {(0, 0, 0): +1, (0, 0, 1): -7, (0, 0, 2): +255 - BASE}
    for gate in GATES:
        m, res = _run(shape, gate, 0, Policy("sigmadelta"), [step])
        np.testing.assert_array_equal(res[1].output, _expect(shape, step))
        assert not m.d[gate].any()


# ---------------------------------------------------------------------------------------- threshold 0

def _random_net(seed):
    if seed == "mlp":
        g = random_mlp(3)
        video = random_video(3, (16,), frames=6, moving=0.3)
    else:
        g = random_cnn(seed)
        video = random_video(seed, g.input.attrs["shape"], frames=6)
    return convert(g, video[:4]), video


@pytest.mark.parametrize("seed", list(range(8)) + ["mlp"])
@pytest.mark.parametrize("policy", [Policy("sigmadelta"), Policy("skipconv", norm_gate=True),
                                    Policy("skipconv", granularity="block:2", norm_gate=True),
                                    Policy("skipconv", init="warmup")],
                         ids=["sigmadelta", "norm-gate", "norm-gate-block2", "skipconv-warmup"])
def test_threshold_zero_is_dense_for_sigmadelta_and_norm_gate(seed, policy):
    q, video = _random_net(seed)
    set_thresholds(q, 0.0)
    m = EventModel(q, policy)
    sent = 0
    for t, f in enumerate(video):
        r = m.step(f)
        np.testing.assert_array_equal(r.output, dense_forward(q, f)[q.output], err_msg=f"frame {t}")
        sent += r.events if t else 0
    assert r.kind == "event" and sent > 0


# ---------------------------------------------------------------------------------------- rrm

@pytest.mark.parametrize("init", ["flush", "warmup"])
def test_rrm_refreshes_after_the_mean_truncation_passes_the_bound(init):
    """Two gates of two elements (n = 4), scale 1/255. Input H = 10: a +5 change is held and, under
    memory loss, dropped: 5/255 of truncation. The bound is exactly 5/255/4: one drop reaches it (no
    refresh, the test is strict), a second passes it, so the next frame is an exact flush, which also
    restarts the sum."""
    q = specnets.passthrough((2, 1, 1))
    th = specnets.thresholds(q, "input", 10)
    bound = 5 * (1 / 255) / 4
    m = EventModel(q, Policy("rrm", rrm_bound=bound, init=init), thresholds=th)
    c0 = [100, 105, 110, 110, 115, 120, 120]
    res = [m.step(np.array([v, 100]).reshape(2, 1, 1)) for v in c0]
    first = "flush" if init == "flush" else "event"        # warm-up: every gate fires, nothing is truncated
    assert [r.kind for r in res] == [first, "event", "event", "flush", "event", "event", "flush"]
    assert [int(r.output[0, 0, 0]) for r in res] == [100, 100, 100, 110, 110, 110, 120]


@pytest.mark.parametrize("gate", GATES)
def test_skipconv_periodic_reset_zeroes_thresholds_on_multiples_of_n(gate):
    """reset_every = 2, H = 10, +5 per frame: held on odd frames, sent on frames 2 and 4
    (threshold 0), where memory loss already dropped the previous frame's +5."""
    q = specnets.passthrough((1, 1, 1))
    m = EventModel(q, Policy("skipconv", reset_every=2), thresholds=specnets.thresholds(q, gate, 10))
    res = [m.step(np.full((1, 1, 1), v)) for v in [100, 105, 110, 115, 116]]
    assert [int(r.output[0, 0, 0]) for r in res] == [100, 100, 105, 105, 106]
    assert [r.layers[gate].gate_t for r in res[1:]] == [0, 1, 0, 1]
    assert [r.frame for r in res] == [0, 1, 2, 3, 4] and m.t == 5


def test_skipconv_reset_every_frame():
    q = specnets.passthrough((1, 1, 1))
    m = EventModel(q, Policy("skipconv", reset_every=1), thresholds=specnets.thresholds(q, "input", 10))
    res = [m.step(np.full((1, 1, 1), v)) for v in [100, 101, 103, 103, 110]]
    assert [int(r.output[0, 0, 0]) for r in res] == [100, 101, 103, 103, 110]
