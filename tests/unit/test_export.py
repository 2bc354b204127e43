"""Verilog export: one top module, flattened port names, manifest keys."""
import json

from rtl_gen.export import generate
from tests.unit.nets import tiny_mlp

PORTS = ["pix__valid", "pix__ready", "pix__payload", "out__valid", "out__ready", "out__payload", "out__last",
         "start", "start_flush", "start_memloss", "busy", "cfg_addr", "cfg_data", "cfg_we", "stat_addr",
         "stat_data", "clk", "rst"]


def test_generate(tmp_path):
    man = generate(tiny_mlp(), pes=2, out_dir=tmp_path)
    text = (tmp_path / "evhw_top.v").read_text()
    tops = [l for l in text.splitlines() if l.startswith("module ")]
    assert sum(l.startswith("module evhw_top(") or l.startswith("module evhw_top ") for l in tops) == 1
    header = text[text.index("module evhw_top"):text.index(");")]
    for port in PORTS:
        assert port in header, port
        assert port in man.ports
    assert man.ports["out__payload"].width == man.output.value_bits
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk["top"] == "evhw_top" and on_disk["pes"] == 2
    assert set(on_disk["stats"]) == {"cycles", "syn_cycles", "events", "evaluated", "updates", "pe_busy"}
    assert set(on_disk["stats"]["events"]) == {"input", "linear0"}
    assert on_disk["gates"]["linear0"] == {"cfg_base": 16, "channels": 8}
    assert (tmp_path / "mem" / "pe0_weights.hex").exists()
    assert on_disk["memory_bits"]["total"] > 0
