"""The must-show runs of docs/benchmarks.md: 2 networks x P in (1, 4) x lanes in (1, 4) x 2 simulators x
3 policies, 10 frames, random pixel gaps and output stalls (probability 0.2).

Run from the repository root: .venv/bin/python docs/bench/mustshow.py (about 25 minutes on 2 cores).
"""
import json, time
from evhw.evnet_file import load
from evhw.flow.build import generate_build
from evhw.flow.network import apply_thresholds, clip_for
from sim.session import simulate
rows = []
for net, video in (("temporal-digits-mlp", "tdigits:opencv?frames=200"), ("hw-cnn16", "opencv:vtest")):
    for p, lanes in ((1, 1), (1, 4), (4, 1), (4, 4)):
        b = f"build/mustshow/{net}-p{p}-l{lanes}"
        generate_build(net, pes=p, lanes=lanes, out_dir=b, threshold=0.04)
        q, _ = load(f"{b}/net.evnet")
        for simulator in ("verilator", "icarus"):
            for pol in ("evnet", "skipconv", "dense"):
                apply_thresholds(q, 0.04)
                clip = clip_for(video, q.input.shape, 10)
                t = time.time()
                s = simulate(b, q, clip.frames, policy=pol, simulator=simulator, seed=3, stall=0.2)
                r = {"net": net, "video": video, "pes": p, "lanes": lanes, "simulator": simulator, "policy": pol, "frames": s["frames"],
                     "bit_exact": s["bit_exact"], "counters_match": s["counters_match"],
                     "events": sum(x["events"] for x in s["per_frame"]), "cycles": sum(s["cycles_per_frame"]),
                     "seconds": round(time.time() - t, 1)}
                rows.append(r); print(json.dumps(r), flush=True)
json.dump(rows, open("docs/bench/mustshow.json", "w"), indent=1)
