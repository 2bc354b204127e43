"""The generated array (rtl_gen.export.generate -> evhw_top.v) against the golden model, in cocotb.

Tiny networks (tests/rtl/tiny_nets.py: an MLP 64-16-8 and a 1x16x16 CNN with conv-ReLU, max-pool 2,
a residual add, global average pool and a linear readout), a few frames of real video with random
pixel gaps and output backpressure, on Icarus and Verilator, P = 1 and 2, under evnet, skipconv
(with a periodic threshold reset) and dense. Every output value and every per-tensor event count
must match (``bit_exact``), and the evaluation / synaptic-update counters too.

Default run (~2-3 min on 2 cores): every (net, P) on Icarus (the CNN under evnet and skipconv:
Icarus runs ~5k cycles/s and a dense CNN frame is ~9-17k cycles), the CNN with P = 2 and the MLP
with P = 1 on Verilator under all three policies (~20-30 s compile each). ``-m slow``: the remaining
(design, simulator, policy) combinations, longer sequences, P = 4, and the bundled default model.
"""
import copy
import json

import numpy as np
import pytest

from evhw.flow.network import apply_thresholds
from evhw.evnet_file import save
from sim.session import simulate
from tiny_nets import clip, tiny_cnn, tiny_mlp

pytestmark = pytest.mark.rtl

NETS = {"mlp": tiny_mlp, "cnn": tiny_cnn}
# (policy, reset_every, threshold h): evnet at a lower threshold than stored, for more events
RUNS = [("evnet", None, 0.02), ("skipconv", 2, 0.05), ("dense", None, 0.05)]


@pytest.fixture(scope="module")
def designs(tmp_path_factory):
    """``designs(net, pes)`` -> (build dir, QNet): generated once per module (simulator builds are cached inside)."""
    cache = {}

    def get(net, pes):
        if (net, pes) not in cache:
            from rtl_gen.export import generate
            q, g = NETS[net]()
            path = tmp_path_factory.mktemp(f"{net}-p{pes}")
            generate(q, pes=pes, out_dir=path, graph=g)
            cache[net, pes] = path, q
        return cache[net, pes]
    return get


def thresholds(q, h):
    q = copy.deepcopy(q)
    return apply_thresholds(q, h)


def frames_of(q, n=None):
    f = clip(tuple(q.input.shape))
    return f if n is None else f[:n]


def check(res):
    assert res["error"] is None, res["error"]
    assert res["bit_exact"], res["mismatches"]
    assert res["counters_match"], res["mismatches"]
    for c, ideal in zip(res["cycles_per_frame"], res["ideal_cycles_per_frame"]):
        assert c >= ideal
    for f in res["per_frame"]:                    # the RTL's cycle counter agrees with the testbench
        assert abs(f["cycles"] - f["cycles_tb"]) <= 4, f


def run_all(path, q, simulator, *, seed, stall, runs=RUNS, **kw):
    out = {}
    for policy, reset_every, h in runs:
        res = simulate(path, q, frames_of(q), policy=policy, reset_every=reset_every, thresholds=thresholds(q, h),
                       simulator=simulator, seed=seed, stall=stall, run_dir=path / f"run-{simulator}-{policy}", **kw)
        check(res)
        out[policy] = res
    return out


@pytest.mark.parametrize("net, pes", [("mlp", 1), ("mlp", 2), ("cnn", 1), ("cnn", 2)])
def test_array_icarus(designs, require_simulator, net, pes):
    require_simulator("icarus")
    path, q = designs(net, pes)
    res = run_all(path, q, "icarus", seed=pes, stall=0.3, runs=RUNS if net == "mlp" else RUNS[:2])
    if "dense" in res:
        assert [f["kind"] for f in res["dense"]["per_frame"]] == ["flush"] * 4


@pytest.mark.slow
@pytest.mark.parametrize("pes", [1, 2])
def test_array_icarus_dense_cnn(designs, require_simulator, pes):
    require_simulator("icarus")
    path, q = designs("cnn", pes)
    run_all(path, q, "icarus", seed=30 + pes, stall=0.3, runs=RUNS[2:])


@pytest.mark.parametrize("net, pes", [("cnn", 2), ("mlp", 1)])
def test_array_verilator(designs, require_simulator, net, pes):
    require_simulator("verilator")
    path, q = designs(net, pes)
    run_all(path, q, "verilator", seed=10 + pes, stall=0.3)


@pytest.mark.parametrize("net, pes", [("cnn", 2), ("mlp", 1)])
def test_predicted_cycles_within_ten_percent(designs, require_simulator, net, pes):
    """``predicted_cycles_per_frame`` (rtl_gen.cycles, from the golden counts) against the RTL's cycle
    counter, without host stalls: within 10 % on every event frame (docs/architecture.md §6)."""
    require_simulator("verilator")
    path, q = designs(net, pes)
    res = simulate(path, q, frames_of(q), thresholds=thresholds(q, 0.02), simulator="verilator",
                   run_dir=path / "run-predicted")
    check(res)
    kinds = [f["kind"] for f in res["per_frame"]]
    assert kinds.count("event") >= 3
    for kind, c, p in zip(kinds, res["cycles_per_frame"], res["predicted_cycles_per_frame"]):
        if kind == "event":
            assert abs(p - c) <= 0.10 * c, (c, p)


@pytest.mark.slow
@pytest.mark.parametrize("net, pes", [("cnn", 1), ("mlp", 2)])
def test_array_verilator_more(designs, require_simulator, net, pes):
    require_simulator("verilator")
    path, q = designs(net, pes)
    run_all(path, q, "verilator", seed=20 + pes, stall=0.5)


def test_array_same_cycles_on_both_simulators(designs, require_simulator):
    """Same seed, same random stalls: Icarus and Verilator must agree cycle for cycle (the drivers
    sample handshakes identically; no Timer-on-edge races)."""
    require_simulator("icarus")
    require_simulator("verilator")
    path, q = designs("mlp", 1)
    r = [simulate(path, q, frames_of(q), simulator=s, seed=7, stall=0.3, run_dir=path / f"same-{s}")
         for s in ("icarus", "verilator")]
    for x in r:
        check(x)
    assert r[0]["cycles_per_frame"] == r[1]["cycles_per_frame"]
    assert [f["cycles_tb"] for f in r[0]["per_frame"]] == [f["cycles_tb"] for f in r[1]["per_frame"]]


@pytest.mark.parametrize("net, pes, simulator", [("cnn", 2, "verilator"), ("mlp", 2, "icarus")])
def test_array_flush_after_reset_sweeps_state(designs, require_simulator, net, pes, simulator):
    """rst does not clear memories: a second sequence after rst must start exact (the flush sweeps)."""
    require_simulator(simulator)
    path, q = designs(net, pes)
    res = simulate(path, q, frames_of(q), simulator=simulator, seed=4, stall=0.2, sequences=2,
                   thresholds=thresholds(q, 0.02), run_dir=path / f"two-seq-{simulator}")
    check(res)
    assert [f["kind"] for f in res["per_frame"]] == ["flush", "event", "event", "event"] * 2


def test_array_checker_can_fail(designs, require_simulator):
    """A deliberately altered expectation (one output value, one event count) is reported, and fails the TB."""
    require_simulator("icarus")
    path, q = designs("mlp", 2)
    res = simulate(path, q, frames_of(q), simulator="icarus", run_dir=path / "corrupt", assert_exact=True,
                   corrupt=[{"frame": 1, "what": "output", "index": 2, "delta": 3},
                            {"frame": 2, "what": "events:fc1", "delta": 1}])
    assert not res["bit_exact"] and not res["tb_passed"]
    whats = [(m["frame"], m["what"]) for m in res["mismatches"]]
    assert whats == [(1, "output[2]"), (2, "events:fc1")]


def test_cli_generate_and_sim_json(tmp_path, capsys, require_simulator):
    """`evhw generate` then `evhw sim --json` on a saved network: the contract keys."""
    require_simulator("icarus")
    from evhw.cli import main
    q, g = tiny_mlp()
    save(tmp_path / "mlp.evnet", q, g)
    build = tmp_path / "build"

    def run(*args):
        try:
            main(list(args))
            code = 0
        except SystemExit as e:
            code = e.code or 0
        cap = capsys.readouterr()
        return code, cap.out, cap.err

    code, out, err = run("generate", str(tmp_path / "mlp.evnet"), "--pes", "2", "-o", str(build))
    assert code == 0, err
    assert (build / "evhw_top.v").exists() and (build / "manifest.json").exists() and (build / "net.evnet").exists()
    code, out, err = run("sim", str(build), "--video", "opencv:vtest?frames=4&step=8", "--frames", "3", "--simulator",
                         "icarus", "--policy", "skipconv", "--reset-every", "2", "--threshold", "0.03",
                         "--stall", "0.3", "--seed", "5", "--json")
    assert code == 0, err
    res = json.loads(out)
    for key in ("frames", "bit_exact", "cycles_per_frame", "ideal_cycles_per_frame", "predicted_cycles_per_frame",
                "pe_busy_fraction",
                "simulator", "pes", "policy", "threshold", "mismatches"):
        assert key in res
    assert res["frames"] == 3 and res["bit_exact"] and res["pes"] == 2 and res["simulator"] == "icarus"
    assert res["policy"] == "skipconv" and res["threshold"] == 0.03 and res["mismatches"] == []
    assert len(res["cycles_per_frame"]) == len(res["ideal_cycles_per_frame"]) == 3
    code, out, err = run("sim", str(build), "--video", "opencv:vtest?frames=4&step=8", "--frames", "2", "--simulator",
                         "icarus")
    assert code == 0, err
    assert "bit-exact: yes" in out


# ------------------------------------------------------------------------------------------ slow
@pytest.mark.slow
@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_array_long_sequence_p4(tmp_path, require_simulator, simulator):
    """16 frames of 32x32 video through the CNN layout with 4 PEs, heavy backpressure."""
    require_simulator(simulator)
    from rtl_gen.export import generate
    source = "opencv:vtest?frames=16&step=4"
    q, g = tiny_cnn(size=32, threshold=0.03, source=source)
    frames = clip((1, 32, 32), source)
    generate(q, pes=4, out_dir=tmp_path, graph=g)
    for policy, reset_every in (("evnet", None), ("skipconv", 5)):
        res = simulate(tmp_path, q, frames, policy=policy, reset_every=reset_every, simulator=simulator, seed=9,
                       stall=0.5, run_dir=tmp_path / f"run-{policy}")
        check(res)


@pytest.mark.slow
def test_bundled_default_model_verilator(tmp_path, require_simulator):
    """The default bundled model through the CLI on Verilator, 2 frames of its default video."""
    require_simulator("verilator")
    from evhw import zoo
    from evhw.cli import main
    build = tmp_path / "build"
    for args in (["generate", zoo.DEFAULT_MODEL, "--pes", "4", "-o", str(build)],
                 ["sim", str(build), "--frames", "2", "--json"]):
        try:
            main(args)
        except SystemExit as e:
            assert not e.code, args
