"""The `evhw` command: contract names, JSON keys, and clear errors without tracebacks."""
import json

import numpy as np
import pytest

from evhw.convert import convert, set_thresholds
from evhw.golden import EventModel, Policy, dense_forward
from netgen import random_cnn, random_video
from cliutil import run


@pytest.fixture
def video_file(tmp_path):
    v = random_video(5, (1, 12, 12), frames=6)
    p = tmp_path / "clip.npy"
    np.save(p, v[:, 0])                      # T x H x W
    return p, v


@pytest.fixture
def onnx_net(tmp_path):
    """A small torch CNN exported to ONNX (the frontend path users take)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                            torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3)).eval()
    p = tmp_path / "m.onnx"
    torch.onnx.export(m, torch.zeros(1, 1, 12, 12), str(p), dynamo=False)
    return p


def test_convert_then_eval_json(capsys, tmp_path, onnx_net, video_file):
    vpath, video = video_file
    net = tmp_path / "m.evnet"
    code, out, err = run(capsys, "convert", str(onnx_net), "-o", str(net), "--calib", str(vpath), "--threshold", "0.1")
    assert code == 0, err
    assert net.exists()
    code, out, err = run(capsys, "eval", str(net), "--video", str(vpath), "--policy", "evnet", "--threshold", "0.1",
                         "--json")
    assert code == 0, err
    res = json.loads(out)
    for key in ("frames", "dense_macs", "event_macs", "per_frame", "mac_savings", "max_abs_diff_vs_dense_int",
                "metric", "metric_dense"):
        assert key in res
    assert res["frames"] == 6 and len(res["per_frame"]) == 6
    assert res["dense_macs"] == sum(f["dense_macs"] for f in res["per_frame"])
    assert res["mac_savings"] == pytest.approx(res["dense_macs"] / res["event_macs"])
    assert res["per_frame"][0]["event_macs"] == res["per_frame"][0]["dense_macs"]   # frame 0 dense
    assert res["metric"] is None                                                     # no task on this model


def test_eval_threshold_zero_is_exact_and_matches_library(capsys, tmp_path, video_file):
    vpath, video = video_file
    g = random_cnn(1)
    q = convert(g, video[:3])
    from evhw.evnet_file import save
    save(tmp_path / "r.evnet", q, g)
    code, out, err = run(capsys, "eval", str(tmp_path / "r.evnet"), "--video", str(vpath), "--threshold", "0",
                         "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["max_abs_diff_vs_dense_int"] == 0
    # the same run through the library
    set_thresholds(q, 0.0)
    rs = EventModel(q, Policy("evnet")).run(video)
    assert res["event_macs"] == sum(r.event_macs for r in rs)
    assert res["max_abs_diff_dense_int_vs_float"] > 0          # quantization is visible, and reported


@pytest.mark.parametrize("policy", ["skipconv", "rrm", "dense"])
def test_eval_policies(capsys, policy):
    code, out, err = run(capsys, "eval", "rand-mlp", "--policy", policy, "--frames", "4", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["policy"] == policy and res["frames"] == 4
    if policy == "dense":
        assert res["event_macs"] == res["dense_macs"]


def test_eval_table_output(capsys):
    code, out, err = run(capsys, "eval", "rand-mlp", "--frames", "3")
    assert code == 0, err
    assert "fc1" in out and "total" in out and "dense integer" in out


@pytest.mark.parametrize("args, message", [
    (["eval", "no-such-model"], "unknown model 'no-such-model'"),
    (["eval", "rand-mlp", "--policy", "evnet", "--threshold", "1e9"], "above the largest the accumulator bound allows"),
    (["eval", "rand-mlp", "--granularity", "stripes"], "granularity must be"),
])
def test_errors_are_one_line(capsys, args, message):
    code, out, err = run(capsys, *args)
    assert code == 2
    assert message in err and "Traceback" not in err


def test_frame_shape_mismatch_is_reported(capsys, tmp_path):
    p = tmp_path / "wrong.npy"
    np.save(p, np.zeros((3, 20, 20), np.uint8))
    code, out, err = run(capsys, "eval", "rand-mlp", "--video", str(p))
    assert code == 2 and "the model takes" in err and "Traceback" not in err


def test_corrupt_model_file_is_reported(capsys, tmp_path):
    p = tmp_path / "bad.evnet"
    p.write_bytes(b"EVNET\x00\r\n" + b"\x01\x00\x00\x00" + b"junk")
    code, out, err = run(capsys, "eval", str(p))
    assert code == 2 and "bad.evnet" in err and "Traceback" not in err
