"""The event path's sparse update (evhw/golden.py ``_event_sparse``: tap tables, gathered exact products,
position-major state) against exact references: property tests over random geometries, values up to
the float-exactness limits, random networks, thresholds, policies, and frames with 0 % and 100 % change."""
from dataclasses import asdict

import numpy as np
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from evhw import ops
from evhw.convert import set_thresholds
from evhw.errors import ConfigError
from evhw.golden import EventModel, Policy, _Geometry
from evhw.ir import window_out
from netgen import POLICY_MIX, small_net

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NETS = settings(max_examples=12, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@st.composite
def geometries(draw):
    g = draw(st.sampled_from([1, 2, 3]))
    cg, og = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
    h = draw(st.integers((kh - 1) * dil[0] + 1, 9))
    w = draw(st.integers((kw - 1) * dil[1] + 1, 9))
    return g, cg, og, (kh, kw), stride, dil, pads, h, w


def _taps_of(x, geo):
    """All output positions' input taps of a (C, H, W) tensor through the tap table (padded taps: 0)."""
    c = x.shape[0]
    buf = np.zeros((x[0].size + 1, c), np.int64)
    buf[:-1] = x.reshape(c, -1).T
    out = np.arange(geo.n_out)
    return out, buf.take(geo.gather(out), axis=0)


@FAST
@given(geometries(), st.integers(0, 2 ** 32 - 1), st.floats(0.0, 1.0))
def test_gathered_conv_equals_dense_conv(geom, seed, density):
    g, cg, og, kernel, stride, dil, pads, h, w = geom
    rng = np.random.default_rng(seed)
    x = rng.integers(-600, 601, (g * cg, h, w)) * (rng.random((g * cg, h, w)) < density)
    wt = rng.integers(-128, 128, (g * og, cg, *kernel))
    oh = window_out(h, kernel[0], stride[0], pads[0], pads[2], dil[0])
    ow = window_out(w, kernel[1], stride[1], pads[1], pads[3], dil[1])
    geo = _Geometry((h, w), (oh, ow), kernel, stride, pads, dil)
    out, taps = _taps_of(x, geo)
    cw = ops.ConvWeights(wt, groups=g)
    got = cw.rows(taps, int(np.abs(x).max(initial=0)))
    want = ops.conv2d(x[None], wt, stride=stride, pads=pads, dilation=dil, groups=g)[0]
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got.T.reshape(want.shape), want)
    # the reach table is the transpose of the gather table: p reaches o through tap k iff o reads p there
    gt, rt = geo.gather(np.arange(geo.n_out)), geo.reach(np.arange(h * w))
    for o in range(geo.n_out):
        for k, p in enumerate(gt[o]):
            if p < h * w:
                assert rt[p, k] == o
    assert int((rt >= 0).sum()) == int((gt < h * w).sum())


@pytest.mark.parametrize("limit, dtype", [(ops.EXACT_F32, np.float32), (ops.EXACT_F64, np.float64), (None, np.int64)])
@pytest.mark.parametrize("side", ["below", "at"])
def test_product_precision_follows_the_bound(limit, dtype, side):
    """Weights and inputs at the extremes, with the bound just below / exactly at each exactness limit:
    the chosen arithmetic is the narrowest one the bound proves exact, and the result is exact."""
    rng = np.random.default_rng(7)
    taps, cin, o = 9, 4, 3
    wt = rng.choice([-127, 127], (o, cin, 3, 3))
    l1 = int(np.abs(wt).reshape(o, -1).sum(axis=1).max())
    if limit is None:                  # above the float64 limit: int64 arithmetic
        xmax = (ops.EXACT_F64 // l1) + 1 + (side == "at")
        want_dtype = np.int64
    else:
        xmax = (limit - 1) // l1 if side == "below" else -(-limit // l1)
        want_dtype = dtype if side == "below" else {np.float32: np.float64, np.float64: np.int64}[dtype]
    cw = ops.ConvWeights(wt)
    assert cw.l1 == l1 and cw.dtype_for(xmax) == want_dtype
    # inputs at +-xmax with the sign of the weight: every partial sum grows to the bound
    x = np.sign(wt.transpose(2, 3, 1, 0).reshape(taps, cin, o)[..., 0]) * xmax
    x = np.stack([x, -x, x * (rng.random(x.shape) < 0.5), np.ones_like(x) * xmax]).astype(np.int64)
    got = cw.rows(x, xmax)
    exact = x.reshape(len(x), -1).astype(object) @ cw.mat.astype(object)
    assert [[int(v) for v in r] for r in got] == [[int(v) for v in r] for r in exact]


def test_float32_would_be_inexact_past_its_bound():
    """The bound matters: just past 2**24 a float32 product loses the low bits (so the test above can fail)."""
    w = np.full((1, 1, 1, 2), 1, np.int64)
    x = np.array([[[2 ** 24], [1]]], np.int64)          # one output, two taps: 2**24 + 1
    exact = int(x.sum())
    assert int((x.reshape(1, -1).astype(np.float32) @ np.ones((2, 1), np.float32))[0, 0]) != exact
    cw = ops.ConvWeights(w)
    assert cw.dtype_for(2 ** 24) != np.float32 and int(cw.rows(x, 2 ** 24)[0, 0]) == exact


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
@NETS
@given(st.sampled_from(list(range(8)) + ["mlp"]), st.sampled_from(POLICY_MIX),
       st.floats(0.0, 0.3), st.floats(0.0, 0.3), st.lists(st.sampled_from(["video", "same", "invert", "zeros", "max"]),
                                                           min_size=3, max_size=7))
def test_sparse_event_path_equals_reference(seed, policy, th, in_th, script):
    """Random networks, thresholds and policies; frames that repeat (0 % change), flip every pixel
    (100 % change: x -> 255 - x, 0 <-> 255) or follow the video: same outputs, state and counters."""
    q, video = small_net(seed)
    try:
        ths = set_thresholds(q, th, input_threshold=in_th)
    except ConfigError:                 # a threshold past what the accumulator bound allows
        reject()
    fast, ref = EventModel(q, policy, ths), EventModel(q, policy, ths, reference=True)
    cur = video[0]
    for t, kind in enumerate(script):
        cur = {"video": video[t % len(video)], "same": cur, "invert": 255 - cur,
               "zeros": np.zeros_like(cur), "max": np.full_like(cur, 255)}[kind]
        a, b = fast.step(cur), ref.step(cur)
        assert (a.frame, a.kind) == (b.frame, b.kind)
        assert _same(a.outputs, b.outputs), f"frame {t} ({kind}): outputs differ"
        assert {k: asdict(c) for k, c in a.layers.items()} == {k: asdict(c) for k, c in b.layers.items()}, \
            f"frame {t} ({kind}): counters differ"
        assert _same(_state(fast), _state(ref)), f"frame {t} ({kind}): state differs"


@pytest.mark.usefixtures("golden_kernels")
@pytest.mark.parametrize("seed", range(8))
def test_still_frames_cost_nothing_and_change_nothing(seed):
    """0 % change after the flush: no event, no MAC, no gate evaluated, state untouched."""
    q, video = small_net(seed)
    set_thresholds(q, 0.05)
    m = EventModel(q, Policy("evnet"))
    m.step(video[0])
    before = _state(m)
    r = m.step(video[0])
    assert r.kind == "event" and r.event_macs == 0 and r.events == 0
    assert all(c.gate_u == 0 and c.acc_u == 0 for k, c in r.layers.items() if k != "input")
    assert _same(_state(m), before)


@pytest.mark.usefixtures("golden_kernels")
def test_state_replaced_from_outside_is_used():
    """Gate state assigned from outside (channel-major arrays, as tests/unit/test_pe.py does) is taken
    over by the position-major event path, not silently ignored."""
    q, video = small_net(0)
    set_thresholds(q, 0.05)
    m, ref = EventModel(q, Policy("evnet")), EventModel(q, Policy("evnet"), reference=True)
    for x in (m, ref):
        x.step(video[0])
        g = q.layers()[0].name
        x.d[g] = np.ascontiguousarray(x.d[g]) + 1          # a plain (C, H, W) array
        x.thresholds[g] = x.thresholds[g] + 1               # replaced, not through set_thresholds
    a, b = m.step(video[1]), ref.step(video[1])
    assert _same(a.outputs, b.outputs) and _same(_state(m), _state(ref))
    assert {k: asdict(c) for k, c in a.layers.items()} == {k: asdict(c) for k, c in b.layers.items()}


@pytest.mark.usefixtures("golden_kernels")
def test_untabulated_geometry_gives_the_same(monkeypatch):
    """Tap maps computed per call (as for a global pool over a large map) equal the tabulated ones."""
    monkeypatch.setattr(_Geometry, "TABLE_LIMIT", 0)
    for seed in (0, 1, 2):
        q, video = small_net(seed)
        ths = set_thresholds(q, 0.05)
        fast, ref = EventModel(q, Policy("evnet"), ths), EventModel(q, Policy("evnet"), ths, reference=True)
        assert fast._geometry(q.layers()[0].name, 0)._reach is None
        for f in video:
            a, b = fast.step(f), ref.step(f)
            assert _same(a.outputs, b.outputs) and _same(_state(fast), _state(ref))
            assert {k: asdict(c) for k, c in a.layers.items()} == {k: asdict(c) for k, c in b.layers.items()}
