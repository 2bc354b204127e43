"""The cocotb harness itself (runner, stream drivers, scoreboard, testbench), on a stand-in top.

``standin_top.StandinTop`` implements the top-level contract for input -> linear networks; with
``bug=`` it carries a known fault. These tests show that the harness passes a correct design under
random stalls on every policy, and that it *fails* on each injected fault, on a corrupted
expectation and on a hung design (the checker must be able to fail).
"""
import numpy as np
import pytest

from evhw.golden import EventModel, Policy, dense_forward
from sim.scoreboard import Scoreboard, expected_frames
from sim.session import simulate
from standin_top import generate_standin
from tiny_nets import clip, tiny_linear

pytestmark = pytest.mark.rtl


def crafted_frames(h):
    """Frames that separate > from >= (|d| == H) and evnet from skipconv (two sub-threshold steps)."""
    rng = np.random.default_rng(7)
    f0 = rng.integers(60, 160, size=64)
    f1 = f0.copy()
    f1[:8] += h                      # exactly H: no event (strict comparison)
    f1[40:44] -= h + 1               # just over: events
    f2 = f1.copy()
    f2[8:16] += h // 2 + 1           # sub-threshold ...
    f3 = f2.copy()
    f3[8:16] += h // 2 + 1           # ... twice: evnet fires, skipconv never does
    return np.stack([f0, f1, f2, f3]).astype(np.uint8)


def make_build(path, bug=None):
    q, g = tiny_linear()
    generate_standin(q, g, out_dir=path, bug=bug)
    return q


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    path = tmp_path_factory.mktemp("standin")
    return path, make_build(path)


def frames_for(q):
    return np.concatenate([clip((64,)), crafted_frames(int(q.thresholds["input"][0]))])


def test_scoreboard_flags_altered_expectations():
    """Pure Python: golden observations pass; any altered value, count, last flag or missing counter fails."""
    q, _ = tiny_linear()
    frames = frames_for(q)
    pol = Policy("evnet")
    exp = expected_frames(q, frames, pol)
    model = EventModel(q, pol)
    ok = Scoreboard(exp)
    for t, f in enumerate(frames):
        r = model.step(f)
        e = exp[t]
        assert list(r.output) == e.output
        assert ok.check(t, outputs=r.output, lasts=[0] * (len(e.output) - 1) + [1],
                        stats={"events": e.events, "evaluated": e.evaluated, "updates": e.updates}) == []
    assert ok.bit_exact and ok.counters_match
    # flush frame: events = non-zero dense values, updates = non-zero inputs x out_features
    vals = dense_forward(q, frames[0])
    assert exp[0].events == {"input": int(np.count_nonzero(vals["input"]))}
    assert exp[0].updates == {"fc": 8 * int(np.count_nonzero(vals["input"]))}

    def observed(t):
        e = exp[t]
        return dict(outputs=list(e.output), lasts=[0] * (len(e.output) - 1) + [1],
                    stats={"events": dict(e.events), "evaluated": dict(e.evaluated), "updates": dict(e.updates)})

    for corrupt, what in [({"frame": 1, "what": "output", "index": 3, "delta": 1}, "output[3]"),
                          ({"frame": 2, "what": "events:input", "delta": -1}, "events:input"),
                          ({"frame": 0, "what": "updates:fc", "delta": 8}, "updates:fc")]:
        sb = Scoreboard(expected_frames(q, frames, pol))
        obs = [observed(t) for t in range(len(frames))]      # what a perfect RTL would produce
        sb.corrupt(**corrupt)
        for t in range(len(frames)):
            sb.check(t, **obs[t])
        assert [m["what"] for m in sb.mismatches] == [what]
        assert not (sb.bit_exact and sb.counters_match)
    sb = Scoreboard(expected_frames(q, frames, pol))
    o = observed(0)
    o["lasts"] = [0] * len(o["outputs"])
    o["stats"].pop("evaluated")
    bad = sb.check(0, **o)
    assert {m["what"] for m in bad} == {"out.last at", "evaluated:input"}
    assert not sb.bit_exact


@pytest.mark.parametrize("policy, reset_every", [("evnet", None), ("skipconv", 3), ("dense", None)])
def test_standin_exact_icarus(standin, require_simulator, policy, reset_every):
    require_simulator("icarus")
    path, q = standin
    frames = frames_for(q)
    seqs = 2 if policy == "evnet" else 1          # rst between sequences: the flush must sweep stale state
    res = simulate(path, q, frames, policy=policy, reset_every=reset_every, simulator="icarus", seed=3, stall=0.4,
                   run_dir=path / f"run-{policy}", assert_exact=True, sequences=seqs)
    assert res["bit_exact"] and res["counters_match"] and res["tb_passed"], res["mismatches"]
    assert len(res["cycles_per_frame"]) == len(frames) * seqs
    assert [f["kind"] for f in res["per_frame"]][::len(frames)] == ["flush"] * seqs


@pytest.mark.slow
def test_standin_exact_verilator(standin, require_simulator):
    require_simulator("verilator")
    path, q = standin
    for policy in ("evnet", "skipconv"):
        res = simulate(path, q, frames_for(q), policy=policy, simulator="verilator", seed=5, stall=0.4,
                       run_dir=path / f"vrun-{policy}", assert_exact=True)
        assert res["bit_exact"] and res["counters_match"], res["mismatches"]


@pytest.mark.parametrize("bug, policy, what", [("ge", "evnet", "events:input"),
                                               ("no_memloss", "skipconv", "events:input"),
                                               ("drop_last", "evnet", "out.last at"),
                                               ("count", "evnet", "events:input")])
def test_harness_catches_rtl_bug(tmp_path, require_simulator, bug, policy, what):
    require_simulator("icarus")
    q = make_build(tmp_path, bug=bug)
    res = simulate(tmp_path, q, crafted_frames(int(q.thresholds["input"][0])), policy=policy, simulator="icarus",
                   seed=1, stall=0.2)
    assert not res["bit_exact"]
    assert what in {m["what"] for m in res["mismatches"]}


def test_harness_fails_on_corrupted_expectation(standin, require_simulator):
    require_simulator("icarus")
    path, q = standin
    res = simulate(path, q, clip((64,)), simulator="icarus", run_dir=path / "run-corrupt", assert_exact=True,
                   corrupt=[{"frame": 2, "what": "output", "index": 5, "delta": -1}])
    assert not res["bit_exact"] and not res["tb_passed"]
    assert res["mismatches"][0]["frame"] == 2 and res["mismatches"][0]["what"] == "output[5]"
    assert res["mismatches"][0]["got"] == res["mismatches"][0]["expected"] + 1


def test_harness_reports_a_hung_design(tmp_path, require_simulator):
    require_simulator("icarus")
    q = make_build(tmp_path, bug="stuck")
    res = simulate(tmp_path, q, clip((64,)), simulator="icarus", timeout=0.2)
    assert not res["bit_exact"] and not res["tb_passed"]
    assert res["frames_run"] == 0 and "Timeout" in res["error"]
