"""Properties of the integer golden model over random networks covering every layer type."""
import zlib

import numpy as np
import pytest

from evhw import golden
from evhw.convert import convert, set_thresholds
from evhw.golden import EventModel, Policy, dense_forward, term_dense
from evhw.qnet import QView
from netgen import random_cnn, random_mlp, random_video
import intref

SEEDS = range(8)


def _net(seed):
    if seed == "mlp":
        g = random_mlp(3)
        video = random_video(3, (16,), frames=8, moving=0.3)
    else:
        g = random_cnn(seed)
        video = random_video(seed, g.input.attrs["shape"], frames=8)
    norm = {} if seed == "mlp" or seed % 2 else dict(input_mean=0.45, input_std=0.25)   # folded + padded
    q = convert(g, video[:4], **norm)
    return g, q, video


NETS = list(SEEDS) + ["mlp"]


@pytest.mark.parametrize("seed", NETS)
@pytest.mark.parametrize("policy", [Policy("evnet"), Policy("evnet", granularity="pixel"),
                                    Policy("evnet", granularity="block:2"), Policy("skipconv"),
                                    Policy("skipconv", reset_every=3), Policy("rrm"), Policy("evnet", init="warmup")],
                         ids=["evnet", "pixel", "block2", "skipconv", "skipconv-r3", "rrm", "warmup"])
def test_threshold_zero_is_dense_every_frame(seed, policy):
    """With every threshold 0 each frame equals dense integer inference bit for bit (RRM exactness)."""
    _, q, video = _net(seed)
    set_thresholds(q, 0.0)
    m = EventModel(q, policy)
    for t, f in enumerate(video):
        r = m.step(f)
        np.testing.assert_array_equal(r.output, dense_forward(q, f)[q.output], err_msg=f"frame {t}")
    assert r.kind == "event"


def _transmitted(m: EventModel, name):
    """Cumulative value a gate has transmitted downstream: r = b - d."""
    return m.b[name] - m.d[name]


@pytest.mark.parametrize("seed", NETS)
@pytest.mark.parametrize("granularity", ["neuron", "pixel", "block:2"])
def test_error_retention_and_accumulator_consistency(seed, granularity):
    """h > 0: |true value - transmitted value| <= H for every neuron after every frame, and every
    accumulator equals its linear ops applied to the values transmitted into it."""
    _, q, video = _net(seed)
    th = set_thresholds(q, 0.08, input_threshold=0.03)
    m = EventModel(q, Policy("evnet", granularity=granularity))
    fired_somewhere = saved = False
    for t, f in enumerate(video):
        r = m.step(f)
        sent = {"input": _transmitted(m, "input")}
        for s in q.steps:
            if isinstance(s, QView):
                sent[s.name] = golden.view_apply(s, [sent[x] for x in s.srcs])
                continue
            want = sum(term_dense(term, sent[term.src]) for term in s.terms)
            np.testing.assert_array_equal(m.a[s.name], want, err_msg=f"accumulator {s.name}, frame {t}")
            if s.gated:
                sent[s.name] = _transmitted(m, s.name)
        for gname in q.gates():
            h = th[gname].reshape((-1,) + (1,) * (m.d[gname].ndim - 1))
            err = np.abs(m.b[gname] - _transmitted(m, gname))
            assert np.all(err <= h), f"gate {gname}, frame {t}: error {err.max()} above threshold"
            if t and gname != "input":
                fired_somewhere |= bool(np.any(m.d[gname] != 0))
        saved |= t > 0 and r.event_macs < r.dense_macs
    assert fired_somewhere and saved     # the threshold really held changes back, and saved work


@pytest.mark.parametrize("seed", NETS)
def test_flush_equals_zero_state_plus_warmup(seed):
    _, q, video = _net(seed)
    set_thresholds(q, 0.05)
    a, b = EventModel(q, Policy("evnet", init="flush")), EventModel(q, Policy("evnet", init="warmup"))
    for t, f in enumerate(video):
        ra, rb = a.step(f), b.step(f)
        np.testing.assert_array_equal(ra.output, rb.output)
        for k in a.a:
            np.testing.assert_array_equal(a.a[k], b.a[k], err_msg=f"acc {k}, frame {t}")
        for k in a.b:
            np.testing.assert_array_equal(a.b[k], b.b[k])
            np.testing.assert_array_equal(a.d[k], b.d[k])
        assert (ra.event_macs, ra.dense_macs) == (rb.event_macs, rb.dense_macs) or t == 0


def _sequential_term_delta(rng):
    """Per-event reference accumulation: every non-zero delta applied on its own, in random order."""
    def apply(t, d):
        out = np.zeros(_out_shape(t, d), dtype=np.int64)
        events = np.argwhere(d != 0)
        rng.shuffle(events)
        for ev in events:
            _scatter(t, d, tuple(ev), out)
        return out
    return apply


_vectorized = golden.term_delta


def _out_shape(t, d):
    return _vectorized(t, np.zeros_like(d)).shape


def _scatter(t, d, idx, out):
    delta = int(d[idx])
    a = t.attrs
    if t.kind == "linear":
        out += t.weight[:, idx[0]] * delta
    elif t.kind == "scale":
        out[idx] += int(t.weight[idx[0]]) * delta
    else:
        c, y, x = idx
        if t.kind == "conv":
            o, cg, kh, kw = t.weight.shape
            g = c // cg
            outs = range(g * (o // a["groups"]), (g + 1) * (o // a["groups"]))
        else:
            kh, kw = a["kernel"]
            outs = [c]
        sh, sw = a["stride"]
        dh, dw = a.get("dilation", (1, 1))
        pt, pl = a["pads"][:2]
        for ky in range(kh):
            for kx in range(kw):
                ny, nx = y + pt - ky * dh, x + pl - kx * dw
                if ny % sh or nx % sw:
                    continue
                oy, ox = ny // sh, nx // sw
                if 0 <= oy < out.shape[1] and 0 <= ox < out.shape[2]:
                    for o in outs:
                        w = t.weight[o, c % t.weight.shape[1], ky, kx] if t.kind == "conv" else 1
                        out[o, oy, ox] += int(w) * delta


@pytest.mark.parametrize("seed", NETS)
def test_independent_of_delta_order(seed, monkeypatch):
    """Shuffled one-at-a-time accumulation (in the reference mode) gives the same outputs, states and counts
    as the default, window-local event path."""
    _, q, video = _net(seed)
    set_thresholds(q, 0.05)
    ref = EventModel(q, Policy("evnet")).run(video[:5])
    monkeypatch.setattr(golden, "term_delta", _sequential_term_delta(np.random.default_rng(zlib.crc32(str(seed).encode()))))
    seq = EventModel(q, Policy("evnet"), reference=True).run(video[:5])    # the reference mode applies term_delta
    for a, b in zip(ref, seq):
        np.testing.assert_array_equal(a.output, b.output)
        assert a.summary() == b.summary()


def test_dense_policy_counts_dense_every_frame():
    _, q, video = _net(0)
    set_thresholds(q, 0.2)
    res = EventModel(q, Policy("dense")).run(video)
    assert all(r.kind == "flush" and r.event_macs == r.dense_macs for r in res)
    for r, f in zip(res, video):      # the dense policy runs dense_forward: check it against the reference
        np.testing.assert_array_equal(r.output, intref.dense(q, f)[q.output])


def test_rrm_refreshes_exactly_when_truncation_accumulates():
    _, q, video = _net(1)
    set_thresholds(q, 0.1, input_threshold=0.05)
    res = EventModel(q, Policy("rrm", rrm_bound=1e-3)).run(video)
    kinds = [r.kind for r in res]
    assert kinds[0] == "flush" and "flush" in kinds[1:] and "event" in kinds[1:]
    for r, f in zip(res, video):      # a flush runs dense_forward: check it against the reference
        if r.kind == "flush":
            np.testing.assert_array_equal(r.output, intref.dense(q, f)[q.output])


def test_memory_loss_loses_what_evnet_keeps():
    """A slow ramp below threshold: evnet eventually transmits it (memory d), skipconv never does."""
    _, q, _ = _net("mlp")
    set_thresholds(q, 0.0, input_threshold=10 / 255)
    frames = np.stack([np.full(16, 100 + 4 * t) for t in range(6)]).astype(np.uint8)   # +4 per frame, H = 10
    ev = EventModel(q, Policy("evnet")).run(frames)
    sk = EventModel(q, Policy("skipconv")).run(frames)
    assert [r.layers["input"].gate_t for r in ev[1:]] == [0, 0, 16, 0, 0]       # fires once d = 12 > 10
    assert [r.layers["input"].gate_t for r in sk[1:]] == [0, 0, 0, 0, 0]


def test_untouched_neurons_are_not_evaluated():
    """Gate evaluation visits only neurons whose inputs changed: a lower threshold does not wake idle ones."""
    _, q, video = _net(0)
    set_thresholds(q, 0.2, input_threshold=0.01)
    m = EventModel(q, Policy("evnet"))
    m.step(video[0])
    m.step(video[1])
    lowered = {k: (v if k == "input" else np.zeros_like(v)) for k, v in q.thresholds.items()}
    assert any(np.any(m.d[k] != 0) for k in lowered if k != "input")   # some d waits below its threshold
    m.set_thresholds(lowered)
    r = m.step(video[1])          # nothing changed at the input: no gate below it is evaluated
    assert r.events == 0 and r.event_macs == 0
    assert all(c.gate_u == 0 for k, c in r.layers.items() if k != "input")
