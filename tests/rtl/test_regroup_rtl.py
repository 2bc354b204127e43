"""The Icarus build compiles the regrouped Verilog (sim.regroup) and stays bit-exact; Verilator's does not."""
import pytest

from sim.session import simulate
from tiny_nets import clip, tiny_cnn

pytestmark = pytest.mark.rtl


def test_icarus_runs_the_grouped_verilog(tmp_path, require_simulator):
    require_simulator("icarus")
    from rtl_gen.export import generate
    from sim.runner import build
    q, g = tiny_cnn()
    generate(q, pes=2, out_dir=tmp_path, graph=g)
    sim_dir = build(tmp_path, simulator="icarus")
    grouped = (sim_dir / "evhw_top.icarus.v").read_text()
    plain = (tmp_path / "evhw_top.v").read_text()
    assert plain.count("always @(posedge") > 10 * grouped.count("always @(posedge")
    res = simulate(tmp_path, q, clip(tuple(q.input.shape)), policy="evnet", simulator="icarus",
                   run_dir=tmp_path / "run")
    assert res["error"] is None and res["bit_exact"] and res["counters_match"], res["mismatches"]
