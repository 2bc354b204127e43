"""`evhw demo`: its operating point is the study's, and its comparison means what it says."""
import json
from pathlib import Path

import pytest

from evhw import zoo
from evhw.flow import demo
from tests.cliutil import run

SUMMARY = json.loads((Path(__file__).resolve().parents[1] / "docs" / "results" / "summary.json").read_text())


@pytest.mark.parametrize("name", [n for n in SUMMARY if n != "default"])
def test_operating_point_is_the_study_best(name):
    assert zoo.spec(name).best_threshold == SUMMARY[name]["threshold"]


def test_demo_model_is_the_study_default():
    assert zoo.DEFAULT_MODEL == SUMMARY["default"]["model"]
    assert zoo.default_video(zoo.DEFAULT_MODEL) == SUMMARY["default"]["video"]


def test_compare_policies_short_clip():
    q, g = demo.demo_network()
    source, clip, rows = demo.compare_policies(zoo.DEFAULT_MODEL, q, g, 6)
    assert len(clip) == 6 and [r[0] for r in rows][-1] == "evnet h=0"
    by = {label: (h, r) for label, h, r in rows}
    assert by["evnet"][0] == SUMMARY["default"]["threshold"]
    assert by["evnet h=0"][1]["max_abs_diff_vs_dense_int"] == 0
    assert by["dense"][1]["max_abs_diff_vs_dense_int"] == 0
    assert by["dense"][1]["agreement"][0]["value"] == 1.0
    assert by["evnet"][1]["event_macs"] < by["dense"][1]["event_macs"]


def test_demo_no_hw_prints_agreement(capsys):
    code, out, err = run(capsys, "demo", "--no-hw", "--frames", "4")
    assert code == 0, err
    assert "agrees with dense int" in out and "operating point" in out
    assert "bit for bit: yes" in out
