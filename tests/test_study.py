"""`evhw study` end to end on a tiny configuration, and the summary.json contract."""
import json

import numpy as np
import pytest

from evhw.cli import main
from evhw.flow.study import best_point, metric_at_macs, with_frames, with_option
from cliutil import run


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    try:
        main(["study", "--tiny", "-o", str(out)])
    except SystemExit as e:
        assert e.code in (0, None)
    return out


def test_study_writes_report_folder(tiny_study):
    for f in ("report.md", "results.json", "summary.json", "pareto_objects-cnn.png", "memory_objects-cnn.png",
              "over_time_objects-cnn.png", "motion.png", "rounding.png"):
        assert (tiny_study / f).stat().st_size > 0, f
    assert (tiny_study / "pareto_objects-cnn.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rep = (tiny_study / "report.md").read_text()
    for heading in ("Best operating point per policy", "Overheads", "Long-term memory", "Camera motion",
                    "Rounding vs threshold", "Computation per frame"):
        assert heading in rep


def test_study_results_are_consistent(tiny_study):
    res = json.loads((tiny_study / "results.json").read_text())
    pr = res["pareto"]["objects-cnn"]
    assert set(pr["curves"]) == {"dense", "evnet", "skipconv", "skipconv-reset8", "rrm"}
    dense = pr["curves"]["dense"][0]
    assert dense["mac_savings"] == pytest.approx(1.0)
    for label in ("evnet", "skipconv", "skipconv-reset8", "rrm"):
        pts = [p for p in pr["curves"][label] if "error" not in p]
        assert [p["threshold"] for p in pr["curves"][label]] == [0.02, 0.16]
        for p in pts:
            # frame 0 is a flush: no policy can go below one dense frame in six
            assert p["event_macs_per_frame"] >= dense["dense_macs_per_frame"] / 6 - 1e-6
            assert p["event_macs_per_frame"] <= dense["dense_macs_per_frame"] + 1e-6
    ev = pr["curves"]["evnet"]
    assert ev[1]["event_macs_per_frame"] <= ev[0]["event_macs_per_frame"]   # a higher threshold never costs more
    assert set(res["motion"]) == {"none", "minor", "major"}
    rr = res["rounding"]
    assert len(rr["evnet"]) == len(rr["sigmadelta"]) == 2


def test_summary_default_is_reproduced_by_eval(tiny_study, capsys):
    """The contract: `evhw eval MODEL --video SOURCE --policy evnet --threshold H --json` reproduces `default`."""
    s = json.loads((tiny_study / "summary.json").read_text())["default"]
    assert s["model"] == "objects-cnn"
    if s["threshold"] is None:
        pytest.fail(f"no evnet point within tolerance in the tiny study: {s}")
    code, out, err = run(capsys, "eval", s["model"], "--video", s["video"], "--policy", "evnet",
                         "--threshold", str(s["threshold"]), "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["mac_savings"] == pytest.approx(s["mac_savings"], rel=1e-12)
    assert r["metric"] == pytest.approx(s["metric"], abs=1e-9)
    assert r["metric_dense"] == pytest.approx(s["metric_dense"], abs=1e-9)


def test_best_point_is_highest_threshold_within_tolerance():
    pts = [{"threshold": 0.01, "metric": 90.0}, {"threshold": 0.02, "metric": 89.6},
           {"threshold": 0.04, "metric": 89.4}, {"threshold": 0.08, "error": "drift"}]
    assert best_point(pts, 90.0, 0.5)["threshold"] == 0.02
    assert best_point(pts, 95.0, 0.5) is None


def test_metric_at_macs_interpolates_on_log_scale():
    pts = [{"event_macs_per_frame": 100.0, "metric": 10.0}, {"event_macs_per_frame": 10_000.0, "metric": 30.0}]
    assert metric_at_macs(pts, 1000.0) == pytest.approx(20.0)      # half-way in log10
    assert metric_at_macs(pts, 50.0) is None and metric_at_macs(pts, 20_000.0) is None
    # a non-monotone curve: the best metric reachable at or below the cost counts
    pts.append({"event_macs_per_frame": 1000.0, "metric": 5.0})
    assert metric_at_macs(pts, 1000.0) == pytest.approx(10.0)


def test_source_option_rewriting():
    assert with_frames("opencv:vtest?lowres=2&frames=96", 6) == "opencv:vtest?lowres=2&frames=6"
    assert with_frames("opencv:vtest", 6) == "opencv:vtest?frames=6"
    assert with_frames("x:y?frames=3", None) == "x:y?frames=3"
    assert with_option("opencv:vtest?frames=6", "motion", "minor") == "opencv:vtest?frames=6&motion=minor"
    assert with_option("a:b?motion=none&frames=2", "motion", "major") == "a:b?frames=2&motion=major"


def test_sigmadelta_sends_multiples_of_the_threshold():
    from evhw.golden import EventModel, Policy
    from tests.netgen import random_mlp, random_video
    from evhw.convert import convert
    g = random_mlp(3)
    frames = random_video(3, g.input.attrs["shape"], 5)
    q = convert(g, frames, threshold=0.1)
    m = EventModel(q, Policy("sigmadelta"), reference=True)   # every gate through _gate (the rule as written);
    sent = []                                                  # test_golden_fastpath pins the fast path to it
    orig = m._gate

    def spy(gname, v, evaluated, force_all, zero_th, counts):
        out = orig(gname, v, evaluated, force_all, zero_th, counts)
        if not force_all:
            h = np.maximum(m.thresholds[gname], 1).reshape((-1,) + (1,) * (out.ndim - 1))
            sent.append(np.all(out % h == 0))
            # the remainder left in d is at most half a step
            assert np.all(np.abs(m.d[gname]) <= np.broadcast_to(h, out.shape) // 2)
        return out

    m._gate = spy
    for f in frames:
        m.step(f)
    assert sent and all(sent)
