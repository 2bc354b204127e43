"""The event path's touched-only evaluation (value functions, max-pool windows, gates) against the
reference mode that evaluates every element (``EventModel(..., reference=True)``): same outputs,
same state, same counters, frame by frame, for every policy and granularity."""
from dataclasses import asdict

import numpy as np
import pytest

from evhw import ops
from evhw.convert import convert, set_thresholds
from evhw.golden import EventModel, Policy
from netgen import random_cnn, random_mlp, random_video

POLICIES = [Policy("evnet"), Policy("evnet", granularity="pixel"), Policy("evnet", granularity="block:2"),
            Policy("evnet", granularity="block:3"), Policy("evnet", init="warmup"),
            Policy("skipconv"), Policy("skipconv", reset_every=2, granularity="pixel"),
            Policy("skipconv", norm_gate=True), Policy("rrm"), Policy("rrm", rrm_bound=0.002, granularity="block:2"),
            Policy("dense"), Policy("sigmadelta")]
IDS = ["evnet", "pixel", "block2", "block3", "warmup", "skipconv", "skipconv-r2-pixel", "normgate", "rrm",
       "rrm-refresh-block2", "dense", "sigmadelta"]


def _net(seed):
    if seed == "mlp":
        g = random_mlp(5)
        video = random_video(5, (16,), frames=8, moving=0.3, step=48)
    else:
        g = random_cnn(seed)
        video = random_video(seed, g.input.attrs["shape"], frames=8, moving=0.15, step=48)
    return convert(g, video[:4]), video


_NETS = {}


def _cached(seed):
    if seed not in _NETS:
        _NETS[seed] = _net(seed)
    return _NETS[seed]


def _state(m):
    return [{k: v.copy() for k, v in d.items()} for d in (m.a, m.b, m.d)] + [m.trunc, m.refresh]


def _same(x, y):
    if isinstance(x, np.ndarray):
        return isinstance(y, np.ndarray) and x.dtype == y.dtype and np.array_equal(x, y)
    if isinstance(x, dict):
        return x.keys() == y.keys() and all(_same(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)):
        return len(x) == len(y) and all(_same(a, b) for a, b in zip(x, y))
    return type(x) is type(y) and x == y


@pytest.mark.usefixtures("golden_kernels")
@pytest.mark.parametrize("seed", list(range(8)) + ["mlp"])
@pytest.mark.parametrize("policy", POLICIES, ids=IDS)
def test_fast_event_path_equals_reference(seed, policy):
    q, video = _cached(seed)
    low, high = set_thresholds(q, 0.05), set_thresholds(q, 0.3, input_threshold=0.1)
    fast, ref = EventModel(q, policy, low), EventModel(q, policy, low, reference=True)
    assert not fast.reference and ref.reference
    evaluated = 0
    for t, f in enumerate(video):
        if t == 4:       # a threshold change mid-sequence: raised, then lowered again at t = 6
            fast.set_thresholds(high), ref.set_thresholds(high)
        if t == 6:
            fast.set_thresholds(low), ref.set_thresholds(low)
        a, b = fast.step(f), ref.step(f)
        assert (a.frame, a.kind) == (b.frame, b.kind)
        assert _same(a.outputs, b.outputs), f"frame {t}: outputs differ"
        assert {k: asdict(c) for k, c in a.layers.items()} == {k: asdict(c) for k, c in b.layers.items()}, \
            f"frame {t}: counters differ"
        assert _same(_state(fast), _state(ref)), f"frame {t}: gate or accumulator state differs"
        if a.kind == "event":
            evaluated += sum(c.gate_u for k, c in a.layers.items() if k != "input")
    if policy.kind != "dense":
        assert evaluated > 0         # the event path ran and evaluated gates past the input


@pytest.mark.usefixtures("golden_kernels")
@pytest.mark.parametrize("seed", [0, 3, "mlp"])
def test_policy_changed_between_frames(seed):
    """A caller may switch ``policy`` between frames (the hardware takes memory loss per frame): the fast
    path must not keep a decision made under the previous policy. Regression: the compiled path of a
    layer was chosen once, under evnet, and then ignored memory loss."""
    q, video = _cached(seed)
    th = set_thresholds(q, 0.05)
    fast, ref = EventModel(q, Policy("evnet"), th), EventModel(q, Policy("evnet"), th, reference=True)
    for t, f in enumerate(video):
        pol = Policy("skipconv") if t % 3 == 2 else Policy("evnet")
        fast.policy = ref.policy = pol
        a, b = fast.step(f), ref.step(f)
        assert _same(a.outputs, b.outputs), f"frame {t}: outputs differ"
        assert _same(_state(fast), _state(ref)), f"frame {t}: gate or accumulator state differs"


def test_reference_mode_evaluates_every_element(monkeypatch):
    """The reference mode must really take the dense value path and the NumPy event path the windowed one
    (so the comparison above is not vacuous)."""
    from evhw import golden
    q, video = _cached(0)
    set_thresholds(q, 0.05)
    sizes = {s.name: int(np.prod(s.acc_shape)) for s in q.layers()}
    calls = {"whole": 0, "part": 0}
    orig = golden.value_pre_pool

    def spy(layer, acc, chan=None):
        calls["whole" if acc.size == sizes[layer.name] else "part"] += 1
        return orig(layer, acc, chan)

    monkeypatch.setattr(golden, "value_pre_pool", spy)
    for reference in (True, False):
        m = EventModel(q, Policy("evnet"), reference=reference, kernels="numpy")
        m.step(video[0])                 # flush (dense_forward)
        calls.update(whole=0, part=0)
        for f in video[1:]:
            m.step(f)
        if reference:
            assert calls["part"] == 0 and calls["whole"] == len(q.layers()) * (len(video) - 1)
        else:
            assert calls["part"] > 0


def test_compiled_path_runs_the_compiled_kernels(monkeypatch):
    """With numba kernels, the event frames of a CNN run the compiled conv and layer kernels and never
    the NumPy value function over a whole tensor of a gated layer (so the comparison above is not vacuous)."""
    from evhw import golden, golden_kernels
    q, video = _cached(0)
    set_thresholds(q, 0.05)
    used = {"finish_layer": 0, "conv_scatter": 0}
    for name in used:
        orig = getattr(golden_kernels, name)

        def spy(*a, _orig=orig, _name=name):
            used[_name] += 1
            return _orig(*a)
        monkeypatch.setattr(golden_kernels, name, spy)
    m = EventModel(q, Policy("evnet"), kernels="numba")
    assert m.compiled
    for f in video:
        m.step(f)
    assert used["finish_layer"] > 0
    m = EventModel(q, Policy("skipconv"), kernels="numba")      # memory loss: layer by layer, conv compiled
    for f in video:
        m.step(f)
    assert used["conv_scatter"] > 0


@pytest.mark.parametrize("seed", range(40))
def test_sparse_conv_equals_dense_conv(seed):
    rng = np.random.default_rng(seed)
    g = int(rng.choice([1, 2, 3]))
    cg, og = (int(v) for v in rng.integers(1, 4, 2))
    kh, kw = (int(v) for v in rng.integers(1, 4, 2))
    stride, dilation = tuple(int(v) for v in rng.integers(1, 3, 2)), tuple(int(v) for v in rng.integers(1, 3, 2))
    pads = tuple(int(v) for v in rng.integers(0, 3, 4))
    h = int(rng.integers((kh - 1) * dilation[0] + 1, 12))
    w = int(rng.integers((kw - 1) * dilation[1] + 1, 12))
    d = rng.integers(-60, 61, (g * cg, h, w)) * (rng.random((g * cg, h, w)) < 0.2)
    wt = rng.integers(-128, 128, (g * og, cg, kh, kw))
    kw_ = dict(stride=stride, pads=pads, dilation=dilation, groups=g)
    want = ops.conv2d(d[None], wt, **kw_)[0]
    got = ops.conv2d_sparse(d, wt, **kw_)
    assert got.dtype == want.dtype and np.array_equal(got, want)
