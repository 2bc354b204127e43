"""Benchmarks behind ``evhw bench``.

``bench_golden``: how fast the golden model runs, event path vs dense integer path.

``bench_hw``: cycles of the generated array on real video, measured in cocotb. For one network
and clip it generates the array for each P, simulates the same frames in evnet mode (and, at
``dense_pes``, in dense mode: a flush every frame on the same hardware), checks every frame
bit-exact against the golden model, and reports cycles per frame, the ideal (``synaptic updates /
P``), PE utilization and the parallel efficiency. Nothing is estimated: all cycle counts are the
RTL's own counters.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np

from .. import zoo
from ..errors import MismatchError
from ..golden import EventModel, Policy, dense_forward
from .build import generate_build
from .network import DEFAULT_THRESHOLD, apply_thresholds, clip_for, convert_model, frames_for


def _best_of_interleaved(fns, repeats):
    """The shortest of ``repeats`` wall times of each function, the functions taking turns, so a slow
    spell of a shared machine weighs on all of them alike."""
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def _blas_threads(n):
    """A context running BLAS on ``n`` threads (threadpoolctl), and the count it sets."""
    from threadpoolctl import threadpool_limits
    return threadpool_limits(n, user_api="blas"), n


def bench_golden(model, video, n_frames, threshold, repeats=5, blas_threads=1, kernels=None):
    """Event path vs dense path, both on one BLAS thread by default: on a shared machine BLAS threads
    swing the dense figure several-fold, and both paths are single-threaded NumPy otherwise."""
    q, _ = convert_model(model, threshold=threshold)
    apply_thresholds(q, threshold)
    frames = frames_for(video, q.input.shape, n_frames)
    res_holder = {}

    def dense():
        for f in frames:
            dense_forward(q, f)

    def event():
        m = res_holder["m"] = EventModel(q, Policy("evnet"), kernels=kernels)
        res_holder["r"] = m.run(frames)

    limit, threads = _blas_threads(blas_threads) if blas_threads else (contextlib.nullcontext(), None)
    with limit:
        dense()
        event()                                  # once each untimed (the compiled kernels load)
        td, te = _best_of_interleaved([dense, event], repeats)
    rs = res_holder["r"]
    dm = sum(r.dense_macs for r in rs)
    em = sum(r.event_macs for r in rs)
    n = len(frames)
    return {
        "model": model, "video": video, "frames": n, "threshold": threshold,
        "dense": {"seconds": td, "fps": n / td, "macs_per_frame": dm / n},
        "event": {"seconds": te, "fps": n / te, "macs_per_frame": em / n},
        "mac_savings": dm / em if em else float("inf"),
        "event_over_dense": td / te,           # event-path frames/s over dense-path frames/s
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "blas_threads": threads,               # None: the BLAS library's default
        "kernels": "numba" if res_holder["m"].compiled else "numpy",    # the event path's inner loops
    }


#: `evhw bench hw` defaults (the CLI reads these).
HW_MODEL, HW_FRAMES, HW_PES, HW_DENSE_PES, HW_BUILD_ROOT = "objects-cnn", 4, (1, 2, 4, 8), 4, "build/bench"


def bench_hw(model=HW_MODEL, *, video=None, frames=HW_FRAMES, pes=HW_PES, dense_pes=HW_DENSE_PES, threshold=None,
             simulator="verilator", build_root=HW_BUILD_ROOT, log=print, lanes=(1,)) -> dict:
    """Every (P, L) of ``pes`` x ``lanes``; dense mode at ``dense_pes`` with the first of ``lanes``.
    ``threshold``: None is the model's operating point (:func:`evhw.zoo.operating_threshold`)."""
    from rtl_gen.builddir import BuildDir
    from sim.session import simulate

    if threshold is None:
        threshold = zoo.operating_threshold(model, DEFAULT_THRESHOLD)
    root = Path(build_root)
    source = video or zoo.default_video(model)
    res = {"model": model, "video": source, "frames": frames, "threshold": threshold, "simulator": simulator,
           "machine": f"{platform.machine()} {platform.python_version()}", "runs": []}
    t0 = time.time()
    for p, lanes_ in ((p, L) for p in pes for L in lanes):
        bdir = root / (f"{model}-p{p}" if lanes_ == 1 else f"{model}-p{p}-l{lanes_}")
        log(f"P={p} L={lanes_}: generating {bdir}")
        generate_build(model, pes=p, lanes=lanes_, out_dir=bdir, threshold=threshold)
        q, _ = BuildDir.open(bdir).load_net()
        apply_thresholds(q, threshold)
        clip = clip_for(source, q.input.shape, frames)
        policies = ["evnet"] + (["dense"] if p == dense_pes and lanes_ == lanes[0] else [])
        for pol in policies:
            log(f"P={p} L={lanes_}: simulating {frames} frames, {pol}, on {simulator}")
            s = simulate(bdir, q, clip.frames, policy=pol, simulator=simulator, seed=1)
            if not s["bit_exact"]:
                raise MismatchError(f"P={p} L={lanes_} {pol}: the RTL does not match the golden model: "
                                    f"{s['mismatches'][:3]} {s.get('error') or ''}")
            ev = [r for r in s["per_frame"] if r["kind"] == "event"]
            res["runs"].append({
                "pes": p, "lanes": lanes_, "policy": pol, "bit_exact": s["bit_exact"], "cycles_per_frame": s["cycles_per_frame"],
                "ideal_cycles_per_frame": s["ideal_cycles_per_frame"], "pe_busy_fraction": s["pe_busy_fraction"],
                "predicted_cycles_per_frame": s["predicted_cycles_per_frame"],
                "event_frames_predicted": float(np.mean([r["predicted_cycles"] for r in ev])) if ev else None,
                "event_frames_cycles": float(np.mean([r["cycles"] for r in ev])) if ev else None,
                "event_frames_ideal": float(np.mean([r["ideal_cycles"] for r in ev])) if ev else None,
                "event_frames_syn_cycles": float(np.mean([r["syn_cycles"] for r in ev]))
                if ev and all(isinstance(r["syn_cycles"], int) for r in ev) else None,
                "mean_cycles": float(np.mean(s["cycles_per_frame"])),
                "sim_seconds": s.get("sim_seconds")})
    ev = {(r["pes"], r["lanes"]): r for r in res["runs"] if r["policy"] == "evnet"}
    for (p, lanes_), r in ev.items():           # against one PE of one lane
        if (1, 1) in ev:
            r["speedup_vs_p1"] = ev[1, 1]["mean_cycles"] / r["mean_cycles"]
            r["parallel_efficiency"] = r["speedup_vs_p1"] / (p * lanes_)
    dense = next((r for r in res["runs"] if r["policy"] == "dense"), None)
    if dense and (dense_pes, lanes[0]) in ev:
        res["dense_over_evnet_cycles"] = dense["mean_cycles"] / ev[dense_pes, lanes[0]]["mean_cycles"]
    res["seconds"] = round(time.time() - t0, 1)
    root.mkdir(parents=True, exist_ok=True)
    (root / f"bench-{model}.json").write_text(json.dumps(res, indent=1))
    return res


#: `evhw bench sim` defaults (the CLI reads these).
SIM_MODEL, SIM_PES, SIM_FRAMES, SIM_BUILD_ROOT = zoo.DEFAULT_MODEL, 4, 3, "build/bench-sim"


def bench_sim(model=SIM_MODEL, *, pes=SIM_PES, simulator="verilator", frames=SIM_FRAMES, video=None, threshold=None,
              build_root=SIM_BUILD_ROOT, log=print, threads=None) -> dict:
    """Compile and simulation speed of the cocotb testbench: generate ``model`` (a bundled model name
    or a ``.evnet`` file) at ``pes``, compile it for ``simulator``, run ``frames`` frames of its
    default video (evnet, the model's operating threshold; a ``.evnet`` keeps its stored thresholds)
    and check them bit-exact (:class:`MismatchError` otherwise).

    ``compile_seconds`` is the wall time of this compile; when the simulator build was reused from a
    cache, ``compile_cached`` is true and ``compile_seconds`` is the time recorded by the compile
    that made it (None if unknown). ``cycles`` is the RTL's own cycle count of the frames,
    ``sim_seconds`` the wall time of the simulator run (start-up and golden model included),
    ``sim_cpu_seconds`` its CPU time (on a shared machine the fairer figure)."""
    from rtl_gen.builddir import BuildDir
    from sim.runner import build as sim_build
    from sim.runner import verilator_threads
    from sim.session import simulate
    from sim.tbwrap import TB_TOP

    is_file = str(model).endswith(".evnet")
    if threshold is None and not is_file:
        threshold = zoo.operating_threshold(model, DEFAULT_THRESHOLD)
    source = video or zoo.default_video(model)
    bdir = Path(build_root) / f"{Path(str(model)).stem if is_file else model}-p{pes}"
    log(f"generating {bdir}")
    t0 = time.time()
    generate_build(model, pes=pes, out_dir=bdir, threshold=threshold)
    generate_seconds = time.time() - t0
    q, _ = BuildDir.open(bdir).load_net()
    if threshold is not None:
        apply_thresholds(q, threshold)
    clip = clip_for(source, q.input.shape, frames)
    log(f"compiling for {simulator}")
    t0 = time.time()
    sim_dir = sim_build(bdir, simulator=simulator, toplevel=TB_TOP, threads=threads)
    compile_seconds = time.time() - t0
    stamp = Path(sim_dir) / "build_seconds"
    cached = not (stamp.exists() and stamp.stat().st_mtime >= t0 - 1)
    if cached:
        try:
            compile_seconds = float(stamp.read_text())
        except (OSError, ValueError):
            compile_seconds = None
    log(f"simulating {len(clip.frames)} frames")
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    s = simulate(bdir, q, clip.frames, policy="evnet", simulator=simulator, seed=1, threads=threads)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    sim_cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)   # the simulator and its worker
    if not s["bit_exact"]:
        raise MismatchError(f"{model} P={pes} on {simulator}: the RTL does not match the golden model: "
                            f"{s['mismatches'][:3]} {s.get('error') or ''}")
    cycles = int(sum(s["cycles_per_frame"]))
    sim_seconds = float(s["sim_seconds"])
    n = len(clip.frames)
    return {"model": str(model), "video": source, "threshold": threshold, "pes": pes, "simulator": simulator,
            "frames": n, "generate_seconds": round(generate_seconds, 2),
            "compile_seconds": None if compile_seconds is None else round(compile_seconds, 2),
            "compile_cached": cached, "threads": verilator_threads(threads) if simulator == "verilator" else None,
            "sim_seconds": sim_seconds, "cycles": cycles,
            "cycles_per_second": cycles / sim_seconds, "frames_per_second": n / sim_seconds,
            "sim_cpu_seconds": round(sim_cpu, 2), "cycles_per_cpu_second": cycles / sim_cpu if sim_cpu > 0 else None,
            "bit_exact": True, "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                                          f"Python {platform.python_version()}"}
