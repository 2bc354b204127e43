"""What keeps the cocotb simulation fast: no cocotb callback per clock edge and no VPI-writable
signal inside the harness (Verilator would re-evaluate every path such a signal feeds on every
evaluation). Speed itself is a benchmark (``evhw bench sim``), not a timed test."""
import re

from sim import tbwrap
from sim.runner import _build_args, _public_vlt


def test_the_harness_generates_its_clock():
    text = tbwrap.TEMPLATE
    assert re.search(r"output reg\s+clk\b", text) and not re.search(r"input\s+wire\s+clk\b", text)
    assert re.search(r"always #\{half\} clk = ~clk;", text)
    assert "--timing" in _build_args("verilator")


def test_only_the_harness_inputs_are_writable_through_vpi():
    vlt = _public_vlt(tbwrap.TB_TOP)
    rules = re.findall(r'public_flat_(rw|rd) -module "evhw_tb" -var "([^"]+)"', vlt)
    assert {v for m, v in rules if m == "rw"} == {"go", "op", "flush", "memloss", "seed_src", "seed_snk",
                                                   "idle_th", "stall_th", "deadline"}
    assert {v for m, v in rules if m == "rd"} == {"clk", "done", "status", "sent", "got", "cycles", "now", "busy"}
    assert '"*"' not in vlt and len(rules) == len(vlt.strip().splitlines()) - 1
    # the lists are the harness's own ports, direction for direction
    ports = re.findall(r"^\s+(input|output)\s+(?:wire|reg)\s+(?:\[\d+:\d+\]\s+)?(\w+)", tbwrap.TEMPLATE, re.M)
    assert [n for d, n in ports if d == "input"] == list(tbwrap.TB_INPUTS)
    assert [n for d, n in ports if d == "output"] == list(tbwrap.TB_OUTPUTS)
    assert "public_flat" not in tbwrap.TEMPLATE             # one owner: the control file


def test_a_design_run_directly_keeps_its_top_signals_public():
    assert _public_vlt("evhw_top") == '`verilator_config\npublic_flat_rw -module "evhw_top" -var "*"\n'
