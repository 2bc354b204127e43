"""Agreement metrics (evhw/agreement.py) by hand, and ``evhw eval`` on a network with several outputs:
every output compared, ``--agreement`` and its defaults, the existing ``--json`` keys kept."""
from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

from cliutil import run
from evhw import agreement
from evhw.errors import ConfigError


# ---------------------------------------------------------------------------------------------- metrics by hand

def test_argmax_and_topk_by_hand():
    ref = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.4, 0.1, 0.5]])
    got = np.array([[0.2, 0.6, 0.2], [0.3, 0.5, 0.2], [0.1, 0.2, 0.7], [0.6, 0.1, 0.3]])
    # frame 0 agrees, 1 not (top-2 of got: 1, 0 -> contains 0), 2 agrees, 3 not (top-2: 0, 2 -> contains 2)
    assert agreement.compare("argmax", got, ref) == 0.5
    assert agreement.compare("topk:2", got, ref) == 1.0
    assert agreement.compare("topk:1", got, ref) == 0.5


def test_argmax_over_a_map_counts_positions():
    ref = np.zeros((1, 2, 2, 2))
    ref[0, 1, 0, 0] = ref[0, 1, 1, 1] = 1          # class 1 at two of four positions
    got = ref.copy()
    got[0, 0, 1, 1] = 2                            # one position flips to class 0
    assert agreement.compare("argmax", got, ref) == 0.75


def test_psnr_and_rel_l2_by_hand():
    ref = np.array([[0.0, 2.0], [1.0, 1.0]])       # peak-to-peak 2
    got = ref + np.array([[0.1, -0.1], [0.0, 0.0]])
    mse = 0.02 / 4
    assert agreement.compare("psnr", got, ref) == pytest.approx(10 * math.log10(4 / mse))
    assert agreement.compare("psnr", ref, ref) is None
    rel = (math.sqrt(0.02) / 2.0 + 0.0) / 2
    assert agreement.compare("rel-l2", got, ref) == pytest.approx(rel)


def test_defaults_by_shape():
    assert agreement.default_metric((10,)) == "argmax"
    assert agreement.default_metric((5, 1, 1)) == "argmax"
    assert agreement.default_metric((2, 31, 39)) == "psnr"
    assert agreement.default_metric((1,)) == "rel-l2"


@pytest.mark.parametrize("bad", ["top", "topk:0", "topk:x", "psnr2", ""])
def test_bad_spec(bad):
    with pytest.raises(ConfigError, match="--agreement must be"):
        agreement.parse(bad)


def test_argmax_needs_classes():
    with pytest.raises(ConfigError, match="2 or more"):
        agreement.compare("argmax", np.zeros((3, 1)), np.zeros((3, 1)))


# ---------------------------------------------------------------------------------------------- evhw eval

@pytest.fixture(scope="module")
def heads_onnx(tmp_path_factory):
    """A small two-output detector-like network (softmax class map + box map) as an ONNX file."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from torch import nn
    from torch.nn import functional as F

    class Heads(nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk = nn.Sequential(nn.Conv2d(1, 6, 3), nn.PReLU(6), nn.MaxPool2d(2, 2, ceil_mode=True))
            self.cls, self.box = nn.Conv2d(6, 3, 1), nn.Conv2d(6, 4, 1)

        def forward(self, x):
            x = self.trunk(x)
            return F.softmax(self.cls(x), dim=1), self.box(x)

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("heads") / "heads.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Heads().eval(), (torch.rand(1, 1, 32, 32),), str(path), dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["cls", "box"])
    return str(path)


KEPT = ("model", "frames", "policy", "granularity", "threshold", "input_threshold", "dense_macs", "event_macs",
        "mac_savings", "dense_macs_per_frame", "event_macs_per_frame", "events", "overhead_arith", "overhead_mem",
        "overhead_arith_pct_of_saved", "overhead_mem_pct_of_saved", "state_memory_bits",
        "max_abs_diff_vs_dense_int", "max_abs_diff_vs_float", "max_abs_diff_dense_int_vs_float",
        "output_scale_max", "metric", "metric_dense", "metric_float", "metric_per_frame", "per_layer",
        "per_frame", "video", "metric_unit")


def test_eval_json_every_output(capsys, heads_onnx):
    code, out, err = run(capsys, "eval", heads_onnx, "--video", "synthetic:shapes", "--frames", "6",
                         "--threshold", "0", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert all(k in res for k in KEPT), [k for k in KEPT if k not in res]
    assert [o["host_op"] for o in res["outputs"]] == ["softmax", None]
    assert [o["shape"] for o in res["outputs"]] == [[3, 15, 15], [4, 15, 15]]
    assert res["max_abs_diff_vs_dense_int"] == 0 and all(o["max_abs_diff_vs_dense_int"] == 0 for o in res["outputs"])
    # threshold 0: the event model is the dense integer model, so agreement is perfect
    assert [a["metric"] for a in res["agreement"]] == ["psnr", "psnr"]
    assert [a["value"] for a in res["agreement"]] == [None, None]
    assert len(res["agreement_dense_vs_float"]) == 2
    assert all(a["value"] is not None and a["value"] > 10 for a in res["agreement_dense_vs_float"])
    assert len(res["per_frame"][0]["agreement"]) == 2


def test_eval_max_diff_covers_the_second_output(capsys, heads_onnx):
    """At h > 0 the per-output differences are reported, and the total is their maximum."""
    code, out, err = run(capsys, "eval", heads_onnx, "--video", "synthetic:shapes", "--frames", "6",
                         "--threshold", "0.3", "--agreement", "argmax", "--json")
    assert code == 0, err
    res = json.loads(out)
    diffs = [o["max_abs_diff_vs_dense_int"] for o in res["outputs"]]
    assert res["max_abs_diff_vs_dense_int"] == max(diffs) and diffs[1] > 0
    assert [a["metric"] for a in res["agreement"]] == ["argmax", "argmax"]
    assert all(0 <= a["value"] <= 1 for a in res["agreement"])


def test_eval_bad_agreement_one_line(capsys, heads_onnx):
    code, out, err = run(capsys, "eval", heads_onnx, "--frames", "2", "--agreement", "topk:0")
    assert code == 2
    assert "--agreement must be" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_eval_table_lists_agreement(capsys, heads_onnx):
    code, out, err = run(capsys, "eval", heads_onnx, "--video", "synthetic:shapes", "--frames", "3")
    assert code == 0, err
    assert "psnr agreement event vs dense integer" in out and out.count("agreement") >= 2


def test_generate_refuses_several_outputs(capsys, heads_onnx, tmp_path):
    code, out, err = run(capsys, "generate", heads_onnx, "-o", str(tmp_path / "b"))
    assert code == 2, err
    assert "network outputs" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_info_lists_outputs_and_host_ops(capsys, heads_onnx):
    code, out, err = run(capsys, "info", heads_onnx)
    assert code == 0, err
    assert "outputs: cls_Conv (softmax on the host), box_Conv" in " ".join(out.split())
