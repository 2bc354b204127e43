"""Icarus speed with and without sim.regroup (docs/benchmarks.md, "Simulation speed").

Run from a checkout: ``python docs/bench/icarus_regroup.py [MODEL] [PES] [FRAMES]`` (default hw-cnn16
1 6). The same build and frames through ``evhw bench sim``'s path, checked bit-exact, once with the
Verilog as generated (one clocked process per flip-flop) and once grouped (one per module)."""
import json
import sys
import tempfile

import sim.runner as runner
from evhw.flow.bench import bench_sim

model = sys.argv[1] if len(sys.argv) > 1 else "hw-cnn16"
pes = int(sys.argv[2]) if len(sys.argv) > 2 else 1
frames = int(sys.argv[3]) if len(sys.argv) > 3 else 6
grouped = runner.group_registers

for variant in ("as generated", "grouped"):
    runner.group_registers = grouped if variant == "grouped" else (lambda text: (text, 0))
    r = bench_sim(model, pes=pes, simulator="icarus", frames=frames, build_root=tempfile.mkdtemp(),
                  log=lambda *a: None)
    print(variant, json.dumps({k: r[k] for k in ("cycles", "sim_cpu_seconds", "cycles_per_cpu_second")}), flush=True)
