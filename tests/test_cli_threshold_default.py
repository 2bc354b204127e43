"""One default threshold for every command: `info` shows what eval/convert/generate use."""
import re

import numpy as np
import pytest

from evhw.flow.network import DEFAULT_THRESHOLD
from cliutil import run

onnx = pytest.importorskip("onnx")


def _h(out):
    m = re.search(r"threshold h=([0-9.e+-]+)", out)
    assert m, out
    return float(m.group(1))


def test_info_of_a_bundled_model_shows_the_default(capsys):
    code, out, err = run(capsys, "info", "rand-mlp")
    assert code == 0, err
    assert _h(out) == DEFAULT_THRESHOLD == 0.05


def test_info_of_an_onnx_model_shows_the_default(capsys, tmp_path):
    from test_fuzz_cli import _onnx_model
    p = tmp_path / "m.onnx"
    p.write_bytes(_onnx_model())
    np.save(tmp_path / "c.npy", np.random.default_rng(0).integers(0, 256, (4, 12, 12), dtype=np.uint8))
    code, out, err = run(capsys, "info", str(p))
    assert code == 0, err
    assert _h(out) == DEFAULT_THRESHOLD


def test_info_of_an_evnet_file_shows_what_was_stored(capsys, tmp_path):
    net = tmp_path / "n.evnet"
    code, _, err = run(capsys, "convert", "rand-mlp", "-o", str(net), "--threshold", "0.02")
    assert code == 0, err
    code, out, err = run(capsys, "info", str(net))
    assert code == 0, err
    assert _h(out) == 0.02
