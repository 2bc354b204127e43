"""evhw soak without simulating: reproducible draws, hardware-supported random networks, the run
classification, and the CLI choice lists read from their owners."""
import click
import numpy as np
import pytest

from evhw.cli import cli
from evhw.flow.netgen import NET_KINDS, random_hw_graph
from evhw.flow.soak import Campaign, classify, draw, make_case
from rtl_gen.limits import HW_POLICIES, MAX_PES
from rtl_gen.plan import HwPlan
from sim.limits import SIMULATORS


def option(name):
    cmd = cli.get_command(click.Context(cli), "soak")
    return next(o for o in cmd.params if o.name == name)


def test_soak_reads_the_owners():
    assert option("simulators").type.choices == SIMULATORS
    assert option("policies").type.choices == HW_POLICIES
    assert option("pes").type.hi == MAX_PES
    assert option("nets").type.choices == NET_KINDS
    assert Campaign().simulators == SIMULATORS and Campaign().policies == HW_POLICIES


def test_draws_are_reproducible_and_vary():
    c = Campaign(seed=9)
    assert draw(c, 3) == draw(Campaign(seed=9), 3)
    runs = [draw(c, i) for i in range(40)]
    assert len({r["seed"] for r in runs}) == 40
    assert draw(Campaign(seed=10), 3)["seed"] != runs[3]["seed"]
    for key, values in [("simulator", SIMULATORS), ("policy", HW_POLICIES), ("pes", (1, 2, 4, 8)), ("net", NET_KINDS)]:
        assert {r[key] for r in runs} == set(values), key
    assert any(r["stall"] == 0 for r in runs) and any(r["stall"] > 0.5 for r in runs)
    assert any(r["video"].startswith("synthetic:") for r in runs) and any(r["video"].startswith("opencv:") for r in runs)
    assert Campaign(seed=9).key != Campaign(seed=9, pes=(1,)).key


def test_random_networks_are_supported_and_cover_the_layer_types():
    ops = set()
    for seed in range(24):
        g = random_hw_graph(seed, NET_KINDS[seed % 3])
        ops |= {n.op for n in g.nodes}
    assert {"conv", "linear", "maxpool", "add", "globalavgpool", "relu", "relu6", "leakyrelu"} <= ops
    from evhw.flow.network import frames_for
    for seed in range(30):                     # every drawn input is one real video frames can fill
        shape = tuple(random_hw_graph(seed, NET_KINDS[seed % 3]).input.attrs["shape"])
        assert frames_for("opencv:vtest?step=4", shape, 2).shape == (2, *shape)
    for i in range(6):
        p = draw(Campaign(seed=2, nets=NET_KINDS[i % 3:i % 3 + 1]), i)
        p["video"] = "synthetic:shapes"
        q, g, frames = make_case(p)
        HwPlan.from_qnet(q, pes=p["pes"])
        assert frames.dtype == np.uint8 and frames.shape == (p["frames"], *q.input.shape)


def summary(**kw):
    return {"error": None, "frames_run": 2, "frames": 2, "bit_exact": True, "counters_match": True, "mismatches": [],
            "mismatch_counts": {}, **kw}


@pytest.mark.parametrize("kw, status", [
    ({}, "ok"),
    ({"bit_exact": False, "mismatches": [{"frame": 1, "what": "output[0]", "got": 2, "expected": 1}],
      "mismatch_counts": {"output": 1}}, "mismatch"),
    ({"counters_match": False}, "mismatch"),
    ({"error": "Timeout: no result after 1 ms of simulated time", "frames_run": 0, "bit_exact": False}, "hang"),
    ({"error": "AssertionError: x", "bit_exact": False}, "error"),
])
def test_classify(kw, status):
    assert classify(summary(**kw))[0] == status


def test_the_recorded_command_is_the_one_typed(monkeypatch, tmp_path):
    """Reproducers quote the campaign command; typed as `evhw soak ...` it is recorded word for word."""
    from click.testing import CliRunner
    import sys
    import evhw.flow.soak as flow_soak
    seen = {}

    def fake(campaign, runs, **kw):
        seen["command"] = kw["command"]
        return {"campaign": "k", "runs": 0, "resumed": 0, "ok": 0, "mismatches": 0, "hangs": 0, "errors": 0,
                "seconds": 0.0, "db": kw["db_path"], "failures": []}

    monkeypatch.setattr(flow_soak, "run_campaign", fake)
    db = str(tmp_path / "s.sqlite")
    args = ["soak", "--runs", "3", "--seed", "5", "--db", db, "--json"]
    monkeypatch.setattr(sys, "argv", ["/x/evhw/cli/__main__.py", *args])
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert seen["command"] == f"evhw soak --runs 3 --seed 5 --db {db} --json"
