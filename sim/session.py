"""One simulation run of a generated build: frames in, the ``evhw sim --json`` summary out.

Used by ``evhw sim`` and by ``tests/rtl``. :func:`simulate` opens the build
(:class:`rtl_gen.builddir.BuildDir`: verified hashes, typed manifest), writes the job (frames
``.npy`` and a :class:`sim.job.SimJob`) into ``BUILD/runs/<simulator>/``, runs
``sim.tb.evhw_top_tb`` (on the harness :mod:`sim.tbwrap`) through :func:`sim.runner.run_cocotb` and condenses the testbench's results.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from rtl_gen.builddir import BuildDir
from rtl_gen.cycles import CycleModel, FrameWork
from rtl_gen.plan import HwPlan

from .job import Corruption, SimJob, new_run_id
from .limits import MAX_STALL
from .runner import SimError, run_cocotb
from .tbwrap import CLOCK_NS, TB_TOP

TB_MODULE = "sim.tb.evhw_top_tb"


def worst_frame(q):
    """The cycle model's work of a frame in which everything changes: a flush frame that sends every
    element of every tensor and performs every synaptic update of dense inference."""
    from evhw.golden import EventModel
    model = EventModel(q)
    tensors, gates = q.tensors(), q.gates()
    every = {g: int(np.prod(tensors[g].shape)) for g in gates}
    updates = {s.name: sum(model.dense_costs[(s.name, i)] for i in range(len(s.terms))) for s in q.layers()}
    macs = {s.name: sum(model.dense_costs[(s.name, i)] for i, t in enumerate(s.terms) if t.is_mac)
            for s in q.layers()}
    return FrameWork(flush=True, events=every, evaluated=every, updates=updates, macs=macs,
                     arrivals=tuple(range(every["input"])))


def timeout_ms(model: CycleModel, q, n_frames, *, idle=0.0, stall=0.0):
    """A generous simulated-time limit: per frame, four times the cycle model's worst frame, plus the
    pixels and outputs again for every random host gap."""
    pixels, outputs = int(np.prod(q.input.shape)), int(np.prod(q.tensors()[q.output].shape))
    gaps = pixels / (1 - min(idle, MAX_STALL)) + outputs / (1 - min(stall, MAX_STALL))
    cycles = (4 * model.predict(worst_frame(q)) + 4 * gaps + 5000) * n_frames + 10_000
    return cycles * CLOCK_NS * 1e-6


def simulate(build_dir, q, frames, *, policy="evnet", thresholds=None, reset_every=None, simulator="verilator",
             seed=0, stall=0.0, idle=None, corrupt=None, keep=20, assert_exact=False, run_dir=None, timeout=None,
             sequences=1, waves=False, extra=None, threads=None):
    """Run ``frames`` (uint8, (T,) + input shape) through the build's ``evhw_top`` under ``policy``.

    ``thresholds``: integer ``{gate: per-channel}`` (default ``q.thresholds``); ``stall``: probability
    of an output backpressure cycle (and of a pixel idle cycle unless ``idle`` is given);
    ``corrupt``: a list of ``Scoreboard.corrupt`` keyword dicts (negative tests); ``sequences``: run
    the frames that many times, with ``rst`` (and a flush frame) in between; ``threads``: Verilator
    model threads (:func:`sim.runner.verilator_threads`). Returns the summary
    dict (see :func:`summarize`); ``assert_exact`` makes a mismatch fail the cocotb test as well.
    """
    if len(frames) == 0 or sequences < 1:
        raise SimError(f"nothing to simulate: {len(frames)} frames x {sequences} sequences")
    build_dir = Path(build_dir).resolve()
    manifest = BuildDir.open(build_dir).manifest
    pes = manifest.pes
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        frames = frames.astype(np.uint8)
    run_dir = Path(run_dir).resolve() if run_dir else build_dir / "runs" / simulator
    run_dir.mkdir(parents=True, exist_ok=True)
    np.save(run_dir / "frames.npy", frames)
    th = thresholds if thresholds is not None else q.thresholds
    idle = stall if idle is None else idle
    job = SimJob(build=str(build_dir), frames=str(run_dir / "frames.npy"), results=str(run_dir / "results.json"),
                 run_id=new_run_id(), policy=policy, reset_every=None if reset_every is None else int(reset_every),
                 thresholds={k: tuple(int(v) for v in np.atleast_1d(np.asarray(a))) for k, a in th.items()},
                 seed=int(seed), idle=float(idle), stall=float(stall), assert_exact=bool(assert_exact),
                 corrupt=tuple(Corruption(**c) for c in corrupt or ()), keep=int(keep), sequences=int(sequences))
    job.save(run_dir / "job.json")
    model = CycleModel.from_plan(HwPlan.from_qnet(q, pes=pes, lanes=manifest.lanes))
    if timeout is None:
        timeout = timeout_ms(model, q, len(frames) * sequences, idle=idle, stall=stall)
    res = run_cocotb(build_dir, TB_MODULE, simulator=simulator, env={"EVHW_JOB": run_dir / "job.json", **(extra or {})},
                     seed=seed, timeout=timeout, run_dir=run_dir, waves=waves, run_id=job.run_id, results=job.results,
                     toplevel=TB_TOP, threads=threads)
    return summarize(res, manifest, policy=policy, n_frames=len(frames) * sequences, model=model)


def frame_work(row):
    """A testbench result row's golden counts as the cycle model's :class:`rtl_gen.cycles.FrameWork`."""
    e = row["expected"]
    return FrameWork(flush=row["kind"] == "flush", events=e["events"], evaluated=e["evaluated"],
                     updates=e["updates"], macs=e["macs"], arrivals=tuple(e["arrivals"]),
                     per_channel=e["per_channel"])


def summarize(res, manifest, *, policy, n_frames, model=None):
    """Condense testbench results into the ``evhw sim --json`` object (``manifest``: the build's
    :class:`rtl_gen.manifest.Manifest`; ``model``: the build's :class:`rtl_gen.cycles.CycleModel`,
    for ``predicted_cycles_per_frame``)."""
    pes = manifest.pes
    rows = res["frames"]
    cycles = [int(r["stats"]["cycles"]) for r in rows]          # the RTL's own cycle counter
    # the input transfer (one pixel per cycle) or one update per PE per cycle, whichever is longer
    ideal = [max(manifest.input.pixels, sum(r["expected"]["updates"].values()) / (pes * manifest.lanes))
             for r in rows]
    predicted = [model.predict(frame_work(r)) for r in rows] if model is not None else None
    pe_frac = sum(sum(r["stats"]["pe_busy"]) for r in rows) / (pes * sum(cycles)) if sum(cycles) else None
    per_frame = []
    for k, (r, c, i) in enumerate(zip(rows, cycles, ideal)):
        st = r["stats"]
        per_frame.append({"frame": r["frame"], "kind": r["kind"], "cycles": c, "cycles_tb": r["cycles_tb"],
                          "ideal_cycles": i, "predicted_cycles": None if predicted is None else predicted[k],
                          "events": sum(r["expected"]["events"].values()),
                          "events_got": sum(int(v) for v in st["events"].values()),
                          "updates": sum(r["expected"]["updates"].values()),
                          "updates_got": sum(int(v) for v in st["updates"].values()),
                          "pe_busy": st["pe_busy"], "syn_cycles": st["syn_cycles"], "bit_exact": r["bit_exact"]})
    done = n_frames > 0 and len(rows) == n_frames          # zero frames is never a bit-exact run
    return {
        "frames": n_frames,
        "frames_run": len(rows),
        "bit_exact": bool(res["bit_exact"]) and done and not res["error"],
        "counters_match": bool(res["counters_match"]) and done,
        "cycles_per_frame": cycles,
        "ideal_cycles_per_frame": ideal,
        "predicted_cycles_per_frame": predicted,
        "pe_busy_fraction": pe_frac,
        "simulator": res["simulator"],
        "pes": pes,
        "policy": policy,
        "mismatches": res["mismatches"][:10],
        "mismatch_counts": res["mismatch_counts"],
        "per_frame": per_frame,
        "error": res["error"],
        "tb_passed": res["passed"],
        "sim_seconds": res["seconds"],
        "log": res["log"],
        "waves": res.get("waves"),
    }
