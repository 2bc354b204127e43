"""The quantized gate fires exactly when the float gate would: ``|d| > H``  <=>  ``|d| * scale > h`` (float64)."""
import numpy as np
import pytest

from evhw.convert import convert, gate_threshold, set_thresholds
from evhw.errors import ConfigError
from evhw.golden import EventModel, Policy, dense_forward
from evhw.ir import GraphBuilder
from netgen import random_cnn, random_mlp, random_video


def _float_fires(d, scale, h):
    """The float gate, written out: the change in float units against the float threshold."""
    return np.abs(np.asarray(d, np.int64)).astype(np.float64) * np.float64(scale) > np.float64(h)


def _assert_equivalent(H, scale, h, around):
    """Every integer change within ``around`` of the boundary (and of its float estimate) fires alike."""
    est = int(min(np.floor(h / scale), 1 << 40))
    ds = np.unique(np.concatenate([np.arange(max(0, c - around), c + around + 1) for c in (int(H), est)]))
    ds = np.concatenate([ds, -ds])
    np.testing.assert_array_equal(np.abs(ds) > H, _float_fires(ds, scale, h),
                                  err_msg=f"scale={scale!r} h={h!r} H={H}")


def _scales_and_thresholds(rng, n):
    """Random scales over many decades, thresholds that are random, exact multiples of the scale,
    one ulp either side of a multiple, or with frac(h/scale) >= 1/2."""
    out = []
    for i in range(n):
        scale = float(np.exp(rng.uniform(np.log(1e-6), np.log(10.0))))
        if i % 7 == 0:
            scale = 1.0 / (255.0 * float(rng.choice([1.0, 0.229, 0.224, 0.225, 0.25, 0.5])))
        k = int(rng.integers(0, 5000))
        kind = i % 5
        if kind == 0:
            h = float(rng.uniform(0, 5000)) * scale
        elif kind == 1:
            h = k * scale                                     # exact multiple as computed in float64
        elif kind == 2:
            h = float(np.nextafter(k * scale, np.inf))
        elif kind == 3:
            h = float(np.nextafter(k * scale, 0.0)) if k else 0.0
        else:
            h = (k + float(rng.uniform(0.5, 1.0))) * scale   # the case rint() got wrong
        out.append((scale, h))
    return out


def test_equivalence_exhaustive_near_the_boundary():
    rng = np.random.default_rng(20261201)
    pairs = _scales_and_thresholds(rng, 4000)
    for scale, h in pairs:
        H = int(gate_threshold(h, scale))
        _assert_equivalent(H, scale, h, around=40)


def test_equivalence_vectorized_per_channel():
    """Per-channel scales and thresholds (BN-|gamma| scaling) map channel by channel."""
    rng = np.random.default_rng(7)
    scale = np.exp(rng.uniform(np.log(1e-4), np.log(1.0), 64))
    h = 0.05 * rng.uniform(0.5, 1.5, 64)
    h[::4] = scale[::4] * rng.integers(0, 300, 16)          # exact multiples in some channels
    H = gate_threshold(h, scale)
    assert H.shape == (64,) and H.dtype == np.int64
    for c in range(64):
        _assert_equivalent(H[c], scale[c], h[c], around=5)


@pytest.mark.parametrize("h,scale,want", [
    (0.05, 1 / 255, 12),            # 12.75 -> 12 (rint gave 13)
    (0.0, 1 / 255, 0),
    (0.0, 1e-9, 0),
    (1e-9, 1 / 255, 0),
    (0.5, 0.25, 2),                 # exact multiple: 2 * 0.25 = 0.5 is not > 0.5
    (0.75, 0.25, 3),
    (0.3, 0.1, 3),                  # 3 * 0.1 = 0.30000000000000004 > 0.3 in float64 ...
])
def test_small_cases_by_hand(h, scale, want):
    H = int(gate_threshold(h, scale))
    if (h, scale) == (0.3, 0.1):
        want = 2                    # ... so a change of 3 steps fires: H = 2
    assert H == want
    assert _float_fires(H + 1, scale, h) and not _float_fires(H, scale, h)


def test_bad_thresholds_and_scales_are_refused():
    for h, s in [(-0.1, 1.0), (np.nan, 1.0), (np.inf, 1.0), (0.1, 0.0), (0.1, -1.0), (0.1, np.nan)]:
        with pytest.raises(ConfigError):
            gate_threshold(h, s)


def _mlp_net():
    g = random_mlp(3)
    return convert(g, random_video(3, (16,), frames=4, moving=0.3))


def test_a_13_pixel_step_is_sent_at_h_005():
    """h = 0.05: the float gate sends a +13 pixel step (13/255 = 0.051 > 0.05); rint(12.75) = 13 dropped it."""
    q = _mlp_net()
    set_thresholds(q, 0.05)
    assert int(q.thresholds["input"][0]) == 12
    for step, sent in ((12, 0), (13, 16)):
        m = EventModel(q, Policy("evnet"))
        m.step(np.full(16, 100, np.uint8))
        r = m.step(np.full(16, 100 + step, np.uint8))
        assert r.layers["input"].gate_t == sent, f"+{step} pixel step"


def test_input_gate_follows_the_float_gate_on_a_video():
    """The golden input gate against a float gate run beside it (integer d, float test), thresholds with
    frac(h/scale) >= 1/2 and exact multiples, plain and normalized (per-channel) inputs."""
    g = random_cnn(1, channels=3)
    video = random_video(5, (3, 12, 12), frames=10, step=7)
    for norm in ({}, dict(input_mean=(0.4, 0.5, 0.6), input_std=(0.229, 0.5, 0.25))):
        q = convert(g, video[:4], **norm)
        scale = np.broadcast_to(q.input.scale, (3,))
        for hin in (0.05, 0.03, 20 / 255, 0.1 * 0.229 * 2.5):
            set_thresholds(q, 0.0, input_threshold=hin)
            m = EventModel(q, Policy("evnet"))
            b = video[0].astype(np.int64)
            d = np.zeros_like(b)
            m.step(video[0])
            for t in range(1, len(video)):
                x = video[t].astype(np.int64)
                d += x - b
                b = x
                fire = np.abs(d).astype(np.float64) * scale[:, None, None] > hin      # the float gate
                d[fire] = 0
                r = m.step(video[t])
                assert r.layers["input"].gate_t == int(fire.sum()), (norm, hin, t)
                np.testing.assert_array_equal(m.d["input"], d)


def test_normalized_input_thresholds_are_per_channel():
    """With a folded normalization the input's float units are (pixel/255 - mean)/std, per channel."""
    b = GraphBuilder((2, 4, 4))
    b.conv("input", np.ones((1, 2, 1, 1)), None)
    g = b.build()
    q = convert(g, np.random.default_rng(0).integers(0, 256, (3, 2, 4, 4)), input_mean=0.5, input_std=(0.25, 0.5))
    set_thresholds(q, 0.0, input_threshold=0.2)
    # 0.2 normalized units = 0.2 * 255 * std pixels: 12.75 and 25.5 -> H = 12, 25 (float gate)
    assert q.thresholds["input"].tolist() == [12, 25]


def test_bn_scaled_layer_thresholds_follow_the_float_gate():
    g = random_cnn(0)
    video = random_video(0, g.input.attrs["shape"], frames=4)
    q = convert(g, video)
    for h in (0.05, 0.13, 0.3):
        th = set_thresholds(q, h, bn_scale=True)
        for s in q.layers():
            if not s.gated:
                continue
            adj = s.bn_gamma if s.bn_gamma is not None else np.ones(s.out.channels)
            for c in range(s.out.channels):
                _assert_equivalent(th[s.name][c], s.out.scale[c], h * adj[c], around=3)


@pytest.mark.parametrize("seed", [0, 1])
def test_threshold_zero_is_still_dense(seed):
    """h = 0 with per-channel normalized input and BN scaling: every H is 0 and every frame is dense."""
    g = random_cnn(seed, channels=3)
    video = random_video(seed, (3, 12, 12), frames=6)
    q = convert(g, video[:4], input_mean=(0.4, 0.5, 0.6), input_std=(0.229, 0.5, 0.25))
    th = set_thresholds(q, 0.0, bn_scale=True)
    assert all(not np.any(v) for v in th.values())
    m = EventModel(q, Policy("evnet"))
    for t, f in enumerate(video):
        np.testing.assert_array_equal(m.step(f).output, dense_forward(q, f)[q.output], err_msg=f"frame {t}")
