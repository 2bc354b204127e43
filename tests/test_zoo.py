"""Bundled models: building, weight files, task metrics, the torch training module, and their commands."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from evhw import zoo
from evhw.convert import fold_batchnorm
from evhw.data import Clip
from evhw.errors import EvhwError
from evhw.floatmodel import run_float
from netgen import random_cnn, random_mlp
from cliutil import run

TRAINED = "temporal-digits-mlp"


def frames_of(shape, n=2, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *shape)).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- metrics

def test_accuracy_on_hand_made_outputs():
    out = np.array([[5.0, 1, 0], [0, 2, 1], [3, 0, 1], [0, 9, 0]])       # argmax 0, 1, 0, 1
    clip = Clip(np.zeros((4, 1, 2, 2), np.uint8), labels=np.array([0, 1, 2, 0]))
    assert zoo.accuracy(out, clip) == pytest.approx(50.0)
    assert zoo.accuracy(out[:, :, None, None], clip) == pytest.approx(50.0)   # (T, C, 1, 1) outputs
    assert zoo.accuracy(out[:2], clip) == pytest.approx(100.0)                 # scored on the frames given
    assert zoo.accuracy(out, Clip(clip.frames)) is None
    assert zoo.accuracy(out, None) is None


def test_psnr_on_hand_made_outputs():
    t = np.full((2, 1, 4, 4), 51, np.uint8)                              # 51 / 255 = 0.2
    clip = Clip(t, targets=t)
    assert zoo.psnr(t / 255.0, clip) > 100                               # perfect
    assert zoo.psnr(t / 255.0 + 0.1, clip) == pytest.approx(20.0, abs=1e-6)   # MSE 0.01
    mixed = t / 255.0
    mixed[0] += 0.1
    mixed[1] += 0.01                                                     # 20 dB and 40 dB frames
    assert zoo.psnr(mixed, clip) == pytest.approx(30.0, abs=1e-6)        # the mean of per-frame PSNRs
    white = Clip(np.full((1, 1, 2, 2), 255, np.uint8), targets=np.full((1, 1, 2, 2), 255, np.uint8))
    assert zoo.psnr(np.full((1, 1, 2, 2), 1.7), white) > 100             # outputs are clipped to 0..1
    assert zoo.psnr(t / 255.0, Clip(t, labels=np.zeros(2, int))) is None
    assert zoo.psnr(t / 255.0, None) is None


# ---------------------------------------------------------------------------------------------- models

def test_model_table():
    assert zoo.names() == sorted(zoo.MODELS) and zoo.DEFAULT_MODEL in zoo.MODELS
    for name, m in zoo.MODELS.items():
        assert (m.metric, m.unit) in [(None, ""), (zoo.accuracy, "%"), (zoo.psnr, "dB")], name
        if m.trained:
            assert m.metric is not None
            assert m.calib and m.calib != m.video                         # calibrate on training data
    with pytest.raises(EvhwError, match="bundled models: .*temporal-digits-mlp"):
        zoo.spec("no-such-model")


@pytest.mark.parametrize("name", sorted(zoo.MODELS))
def test_every_model_builds_and_runs(name):
    g = zoo.build(name, untrained=True).infer_shapes()
    shape = g.input.attrs["shape"]
    out = run_float(g, frames_of(shape), keep=[g.output])[g.output]
    expect = (1, 64, 64) if zoo.MODELS[name].metric is zoo.psnr else (10,)
    assert out.shape[0] == 2 and out.shape[1:] == expect
    assert np.all(np.isfinite(out)) and out.std() > 0


def test_trained_weights_load():
    assert zoo.weights_path(TRAINED).is_file()
    g = zoo.build(TRAINED)
    with np.load(str(zoo.weights_path(TRAINED))) as z:
        stored = dict(z)
    got = zoo.params_of(g)
    assert set(got) == set(stored)
    for k in stored:
        np.testing.assert_array_equal(got[k], stored[k])
    untrained = zoo.params_of(zoo.build(TRAINED, untrained=True))
    assert any(not np.array_equal(untrained[k], got[k]) for k in got)
    assert set(untrained) == set(got)


def test_trained_digits_model_recognises_test_digits():
    from evhw.data import load_clip
    g = zoo.build(TRAINED)
    clip = load_clip("tdigits:opencv?frames=100", input_shape=g.input.attrs["shape"])
    out = run_float(g, clip.frames, keep=[g.output])[g.output]
    assert (out.argmax(axis=1) == clip.labels).mean() > 0.8              # chance is 0.1


@pytest.fixture
def weight_arrays():
    return zoo.params_of(zoo.build(TRAINED, untrained=True))


def test_weight_file_with_a_missing_key(tmp_path, weight_arrays):
    del weight_arrays["fc2/bias"]
    np.savez(tmp_path / "w.npz", **weight_arrays)
    with pytest.raises(EvhwError, match="fc2/bias"):
        zoo.build(TRAINED, weights=tmp_path / "w.npz")


def test_weight_file_with_an_unexpected_key(tmp_path, weight_arrays):
    weight_arrays["fc9/weight"] = np.zeros(3, np.float32)
    np.savez(tmp_path / "w.npz", **weight_arrays)
    with pytest.raises(EvhwError, match="fc9/weight"):
        zoo.build(TRAINED, weights=tmp_path / "w.npz")


def test_weight_file_with_a_wrong_shape(tmp_path, weight_arrays):
    weight_arrays["fc1/weight"] = np.zeros((200, 783), np.float32)
    np.savez(tmp_path / "w.npz", **weight_arrays)
    with pytest.raises(EvhwError, match=r"fc1/weight.*\(200, 783\)"):
        zoo.build(TRAINED, weights=tmp_path / "w.npz")


def test_weight_file_missing_or_unreadable(tmp_path):
    with pytest.raises(EvhwError, match=f"evhw zoo train {TRAINED}"):
        zoo.build(TRAINED, weights=tmp_path / "absent.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(EvhwError, match="junk.npz"):
        zoo.build(TRAINED, weights=tmp_path / "junk.npz")


def test_other_weights_file_is_used(tmp_path, weight_arrays):
    weight_arrays["fc3/bias"] = np.arange(10, dtype=np.float32)
    np.savez(tmp_path / "w.npz", **weight_arrays)
    g = zoo.build(TRAINED, weights=tmp_path / "w.npz")
    np.testing.assert_array_equal(g.node("fc3").params["bias"], np.arange(10))


# ---------------------------------------------------------------------------------------------- training

def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_train_writes_a_loadable_weight_file(tmp_path):
    pytest.importorskip("torch")
    from evhw.train import train
    pkg = zoo.weights_path(TRAINED)
    before = _sha(pkg)
    out = tmp_path / "w.npz"
    steps = []
    res = train(TRAINED, steps=3, out=out, progress=lambda s, loss: steps.append(s), log=lambda *a: None)
    assert steps == [1, 2, 3]
    assert res["model"] == TRAINED and res["steps"] == 3 and res["weights"] == str(out) and res["unit"] == "%"
    assert np.isfinite(res["loss"]) and 0 <= res["metric"] <= 100
    init = zoo.params_of(zoo.build(TRAINED, untrained=True))
    with np.load(out) as z:
        saved = dict(z)
    assert set(saved) == set(init)
    assert all(saved[k].shape == init[k].shape for k in init)
    assert any(not np.allclose(saved[k], init[k]) for k in init)         # three steps moved the weights
    g = zoo.build(TRAINED, weights=out)
    np.testing.assert_array_equal(zoo.params_of(g)["fc1/weight"], saved["fc1/weight"])
    assert _sha(pkg) == before                                          # the package's weights untouched


def test_train_refuses_untrainable_models():
    pytest.importorskip("torch")
    from evhw.train import train
    with pytest.raises(EvhwError, match="not a trainable"):
        train("rand-mlp", steps=1)


def _graphs():
    for s in range(8):
        yield f"cnn{s}", lambda s=s: fold_batchnorm(random_cnn(s).infer_shapes())
    for s in range(2):
        yield f"cnn{s}-rgb", lambda s=s: fold_batchnorm(random_cnn(s, channels=3).infer_shapes())
    for s in range(3):
        yield f"mlp{s}", lambda s=s: fold_batchnorm(random_mlp(s).infer_shapes())
    for name in ("objects-cnn", "enhance-cnn", TRAINED):
        yield name, lambda name=name: zoo.build(name, untrained=name != TRAINED).infer_shapes()


@pytest.mark.parametrize("make", [m for _, m in _graphs()], ids=[i for i, _ in _graphs()])
def test_graph_module_matches_the_float_model(make):
    torch = pytest.importorskip("torch")
    from evhw.train import graph_module
    g = make()
    shape = g.input.attrs["shape"]
    px = frames_of(shape, n=3, seed=11)
    ref = run_float(g, px, keep=[g.output])[g.output]
    m = graph_module(g)
    with torch.no_grad():
        got = m(torch.from_numpy((px / 255.0).astype(np.float32))).numpy()
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-5)
    # export gives the graph's parameters back (float32 precision)
    back = zoo.params_of(m.export())
    for k, v in zoo.params_of(g).items():
        np.testing.assert_allclose(back[k], v, rtol=1e-6, atol=1e-7)


def test_graph_module_refuses_batchnorm():
    pytest.importorskip("torch")
    from evhw.train import graph_module
    m = graph_module(random_cnn(0).infer_shapes())
    import torch
    with pytest.raises(EvhwError, match="batch norm"):
        m(torch.zeros(1, 1, 12, 12))


# ---------------------------------------------------------------------------------------------- commands

def test_data_list(capsys):
    code, out, err = run(capsys, "data", "list")
    assert code == 0, err
    assert "opencv:vtest" in out and "tdigits:opencv" in out and "objects:fmnist" in out
    assert "installed" in out and "missing" not in out


def test_zoo_list(capsys):
    code, out, err = run(capsys, "zoo", "list")
    assert code == 0, err
    for name in zoo.MODELS:
        assert name in out


def test_eval_trained_model_reports_accuracy(capsys):
    code, out, err = run(capsys, "eval", TRAINED, "--frames", "12", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["frames"] == 12 and res["video"] == zoo.default_video(TRAINED)
    assert isinstance(res["metric"], float) and res["metric_unit"] == "%"
    assert 0 <= res["metric"] <= 100
    assert res["metric"] * 12 / 100 == pytest.approx(round(res["metric"] * 12 / 100))   # k of 12 frames
    assert isinstance(res["metric_dense"], float)


def test_eval_named_video(capsys):
    src = "tdigits:opencv?frames=8"
    code, out, err = run(capsys, "eval", "rand-mlp", "--video", src, "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["frames"] == 8 and res["video"] == src
    assert res["metric"] is None and res["metric_unit"] is None          # random weights: no metric
    # a labelled source keeps its labels through --video: the trained model is scored on them
    code, out, err = run(capsys, "eval", TRAINED, "--video", "tdigits:opencv?frames=6&seed=4", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["frames"] == 6 and isinstance(res["metric"], float)
    assert res["metric"] * 6 / 100 == pytest.approx(round(res["metric"] * 6 / 100))


@pytest.mark.parametrize("source, needle", [
    ("tdigits:nope", "unknown digit set 'nope'"),
    ("opencv:vtest?bogus=1", "bogus"),
    ("nosuch:thing", "nosuch"),
])
def test_eval_bad_source_is_a_one_line_error(capsys, monkeypatch, source, needle):
    monkeypatch.setenv("COLUMNS", "80")                                  # a log file or pipe: not a terminal
    code, out, err = run(capsys, "eval", "rand-mlp", "--video", source, "--json")
    assert code == 2
    assert "Traceback" not in err and needle in err
    assert len(err.strip().splitlines()) == 1, err
