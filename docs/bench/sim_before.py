"""The "before" row of docs/benchmarks.md, simulation speed: run from a checkout of bf64bd2 (before `evhw bench sim`
existed) as `python docs/bench/sim_before.py verilator|icarus`; objects-cnn, P=4, 3 frames, evnet."""
import json, sys, time, shutil
from pathlib import Path
from evhw.flow.build import generate_build
from evhw.flow.network import apply_thresholds, clip_for
from evhw import zoo
from rtl_gen.builddir import BuildDir
from sim.session import simulate

sim = sys.argv[1]
model, P, n = "objects-cnn", 4, 3
th = zoo.operating_threshold(model, 0.05)
bdir = Path(f"build/sim-before/{model}-p{P}-{sim}")
if bdir.exists(): shutil.rmtree(bdir)
generate_build(model, pes=P, out_dir=bdir, threshold=th)
q, _ = BuildDir.open(bdir).load_net(); apply_thresholds(q, th)
clip = clip_for(zoo.default_video(model), q.input.shape, n)
t0 = time.time()
s = simulate(bdir, q, clip.frames, policy="evnet", simulator=sim, seed=1)
wall = time.time() - t0
comp = float((bdir / "sim_build" / sim / "build_seconds").read_text())
cycles = sum(s["cycles_per_frame"])
res = {"simulator": sim, "model": model, "pes": P, "frames": n, "threshold": th, "bit_exact": s["bit_exact"],
       "compile_s": comp, "sim_s": s.get("sim_seconds"), "wall_s": wall, "cycles": cycles,
       "cycles_per_s": cycles / s["sim_seconds"] if s.get("sim_seconds") else None,
       "verilog_bytes": (bdir / "evhw_top.v").stat().st_size}
print(json.dumps(res))
Path("build/sim-before").mkdir(parents=True, exist_ok=True); Path(f"build/sim-before/{sim}.json").write_text(json.dumps(res, indent=1))
