"""Loading frame sequences: files, layouts, checks against the model input, registered sources."""
from __future__ import annotations

import numpy as np
import pytest

from evhw import frames as fr
from evhw.errors import ConfigError, EvhwError, ShapeError
from evhw.frames import load_frames, register_source, resize_to, shapes_video


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
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match="positive integer"):
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
    near = resize_to(a, 3, 4)
    assert near.shape == (2, 1, 3, 4)
    assert set(near.ravel()) <= set(a.ravel())
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
        assert "testsrc" in fr.sources()
        out = load_frames("testsrc:abc", input_shape=(1, 5, 6), frames=2)
        assert out.shape == (2, 1, 5, 6) and (out == 7).all()
        assert calls == [("abc", (1, 5, 6))]
        with pytest.raises(ShapeError, match=r"testsrc:x: frames have shape"):
            load_frames("testsrc:x", input_shape=(3, 5, 6))
    finally:
        fr._SOURCES.pop("testsrc", None)
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
    assert load_frames("synthetic:shapes", frames=2).shape == (2,) + fr.SYNTHETIC_DEFAULT_SHAPE
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
