"""``evhw bench hw``: cycles of the generated array on real video, measured in cocotb.

For one network and clip it generates the array for each P, simulates the same frames in evnet
mode (and, at ``dense_pes``, in dense mode: a flush every frame on the same hardware), checks
every frame bit-exact against the golden model, and reports cycles per frame, the ideal
(``synaptic updates / P``), PE utilization and the parallel efficiency. Nothing is estimated: all
cycle counts are the RTL's own counters.
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np


def bench_hw(model, *, video=None, frames=4, pes=(1, 2, 4, 8), dense_pes=4, threshold=0.04,
             simulator="verilator", build_root="build/bench", log=print) -> dict:
    from evhw import zoo
    from evhw.evaluate import apply_thresholds, clip_for
    from evhw.errors import EvhwError
    from evhw.evnet_file import load
    from evhw.cli_hw import generate_build
    from .session import simulate

    root = Path(build_root)
    source = video or zoo.default_video(model)
    res = {"model": model, "video": source, "frames": frames, "threshold": threshold, "simulator": simulator,
           "machine": f"{platform.machine()} {platform.python_version()}", "runs": []}
    t0 = time.time()
    for p in pes:
        bdir = root / f"{model}-p{p}"
        log(f"P={p}: generating {bdir}")
        generate_build(model, pes=p, out_dir=bdir, threshold=threshold)
        q, _ = load(bdir / "net.evnet")
        apply_thresholds(q, threshold)
        clip = clip_for(source, q.input.shape, frames)
        policies = ["evnet"] + (["dense"] if p == dense_pes else [])
        for pol in policies:
            log(f"P={p}: simulating {frames} frames, {pol}, on {simulator}")
            s = simulate(bdir, q, clip.frames, policy=pol, simulator=simulator, seed=1)
            if not s["bit_exact"]:
                raise EvhwError(f"P={p} {pol}: the RTL does not match the golden model: {s['mismatches'][:3]} "
                                f"{s.get('error') or ''}")
            ev = [r for r in s["per_frame"] if r["kind"] == "event"]
            res["runs"].append({
                "pes": p, "policy": pol, "bit_exact": s["bit_exact"], "cycles_per_frame": s["cycles_per_frame"],
                "ideal_cycles_per_frame": s["ideal_cycles_per_frame"], "pe_busy_fraction": s["pe_busy_fraction"],
                "event_frames_cycles": float(np.mean([r["cycles"] for r in ev])) if ev else None,
                "event_frames_ideal": float(np.mean([r["ideal_cycles"] for r in ev])) if ev else None,
                "event_frames_syn_cycles": float(np.mean([r["syn_cycles"] for r in ev]))
                if ev and all(isinstance(r["syn_cycles"], int) for r in ev) else None,
                "mean_cycles": float(np.mean(s["cycles_per_frame"])),
                "sim_seconds": s.get("sim_seconds")})
    ev = {r["pes"]: r for r in res["runs"] if r["policy"] == "evnet"}
    if 1 in ev:
        for p, r in ev.items():
            r["speedup_vs_p1"] = ev[1]["mean_cycles"] / r["mean_cycles"]
            r["parallel_efficiency"] = r["speedup_vs_p1"] / p
    dense = next((r for r in res["runs"] if r["policy"] == "dense"), None)
    if dense and dense_pes in ev:
        res["dense_over_evnet_cycles"] = dense["mean_cycles"] / ev[dense_pes]["mean_cycles"]
    res["seconds"] = round(time.time() - t0, 1)
    root.mkdir(parents=True, exist_ok=True)
    (root / f"bench-{model}.json").write_text(json.dumps(res, indent=1))
    return res
