"""cocotb testbench of ``evhw_top``: a sequence of frames against the golden model.

Runs inside the simulator (started by :func:`sim.runner.run_cocotb`). Inputs, by environment:

* ``EVHW_JOB``: a :class:`sim.job.SimJob` file: the build folder (opened through
  :class:`rtl_gen.builddir.BuildDir`: manifest and ``net.evnet``), a ``.npy`` of uint8 frames, the
  policy, the integer thresholds ``{gate: [H per channel]}``, the random seed, the pixel-idle and
  output-stall probabilities, whether a mismatch fails the cocotb test, optional deliberate
  corruptions of expected values (negative tests), how many mismatches to keep, the run id and
  the results file (written once at the end, :func:`sim.job.write_results`; a timeout or an
  assertion still writes the frames done so far, with ``error``);
* ``EVHW_TIMEOUT_MS``: the simulated-time limit of the test.

Per frame: pulse ``start`` (with ``start_flush`` / ``start_memloss``) while ``busy`` is low, drive
the pixels with random idle cycles, collect every output with random backpressure, wait for
``busy`` to fall, read every counter of the manifest's ``stats`` map and compare with
:class:`sim.scoreboard.Scoreboard`. Memories are not cleared by ``rst``: frame 0 is a flush.
"""
from __future__ import annotations

import dataclasses
import math
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge
from cocotb.utils import get_sim_time

from evhw.golden import Policy
from rtl_gen.builddir import BuildDir
from sim.job import SimJob, write_results
from sim.scoreboard import Scoreboard, expected_frames
from sim.streams import StreamSink, StreamSource

CLOCK_NS = 10
TIMEOUT_MS = float(os.environ.get("EVHW_TIMEOUT_MS", "20"))
TIMEOUT_US = max(1, math.ceil(TIMEOUT_MS * 1000))     # an integer: cocotb refuses times finer than the precision


class TB:
    def __init__(self, dut, manifest, *, seed=0, idle=0.0, stall=0.0):
        self.dut, self.m = dut, manifest
        self.stat_latency = manifest.stat_latency
        self.where = "reset"
        self.pix = StreamSource(dut, "pix", idle=idle, rng=random.Random(2 * seed + 1))
        self.out = StreamSink(dut, "out", stall=stall, rng=random.Random(2 * seed + 2),
                              signed=manifest.output.signed)
        for name in ("start", "start_flush", "start_memloss", "cfg_we", "cfg_addr", "cfg_data", "stat_addr"):
            getattr(dut, name).value = 0
        Clock(dut.clk, CLOCK_NS, unit="ns").start()

    async def reset(self):
        self.dut.rst.value = 1
        for _ in range(3):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)
        await self.idle()

    async def idle(self, limit=1_000_000):
        """Wait until ``busy`` is low (after a reset an implementation may still be sweeping)."""
        n = 0
        while self.dut.busy.value:
            await RisingEdge(self.dut.clk)
            n += 1
            assert n < limit, "busy never fell"

    async def write_cfg(self, addr, data):
        self.dut.cfg_addr.value = int(addr)
        self.dut.cfg_data.value = int(data)
        self.dut.cfg_we.value = 1
        await RisingEdge(self.dut.clk)
        self.dut.cfg_we.value = 0

    async def write_thresholds(self, thresholds):
        """``{gate: per-channel ints}`` at ``cfg_base + channel`` of the manifest's gates."""
        for name, g in self.m.gates.items():
            h = np.broadcast_to(np.asarray(thresholds[name], dtype=np.int64), (g.channels,))
            for c, v in enumerate(h):
                await self.write_cfg(g.cfg_base + c, int(v))
        await RisingEdge(self.dut.clk)

    async def read_stat(self, addr):
        self.dut.stat_addr.value = int(addr)
        for _ in range(self.stat_latency + 1):
            await RisingEdge(self.dut.clk)
        return self.dut.stat_data.value.to_unsigned()

    async def read_stats(self, spec=None):
        """Every counter of the manifest's ``stats`` map, same structure (ints read from ``stat_data``)."""
        spec = dataclasses.asdict(self.m.stats) if spec is None else spec
        if isinstance(spec, dict):
            return {k: await self.read_stats(v) for k, v in spec.items()}
        if isinstance(spec, (list, tuple)):
            return [await self.read_stats(v) for v in spec]
        return await self.read_stat(spec)

    async def frame(self, pixels, n_out, *, flush, memloss):
        """Run one frame; returns outputs, last bits, cycles (start edge to busy falling), problems."""
        dut = self.dut
        problems = []
        assert not dut.busy.value, "start while busy"
        dut.start.value = 1
        dut.start_flush.value = int(flush)
        dut.start_memloss.value = int(memloss)
        await RisingEdge(dut.clk)
        t0 = get_sim_time("ns")
        # the flags accompany the start pulse only: the RTL must latch them
        dut.start.value = 0
        dut.start_flush.value = 0
        dut.start_memloss.value = 0
        send = cocotb.start_soon(self.pix.send(pixels))
        recv = cocotb.start_soon(self.out.recv(n_out))
        for _ in range(4):
            await RisingEdge(dut.clk)
            if dut.busy.value:
                break
        else:
            problems.append("busy did not rise after start")
        if dut.busy.value:
            await FallingEdge(dut.busy)
        t1 = get_sim_time("ns")
        for task, what in ((send, "pixels not all accepted"), (recv, "outputs not all delivered")):
            if not task.done():
                for _ in range(8):              # grace: let the stream tasks see the final edge
                    await RisingEdge(dut.clk)
                    if task.done():
                        break
            if not task.done():
                task.cancel()
                problems.append(f"{what} when busy fell")
        values, lasts = recv.result() if recv.done() and not recv.cancelled() else ([], [])
        await RisingEdge(dut.clk)
        return values, lasts, round((t1 - t0) / CLOCK_NS), problems


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def frames_match_golden(dut):
    job = SimJob.load(os.environ["EVHW_JOB"])
    build = BuildDir.open(job.build)
    manifest = build.manifest
    q, _ = build.load_net()
    frames = np.load(job.frames)
    policy = Policy(job.policy, reset_every=job.reset_every)
    thresholds = {k: np.asarray(v, dtype=np.int64) for k, v in job.thresholds.items()}
    sequences = job.sequences                      # > 1: rst between repeats (memories survive rst)
    expected = []
    for k in range(sequences):
        for e in expected_frames(q, frames, policy, thresholds):
            e.index = k * len(frames) + e.index
            expected.append(e)
    sb = Scoreboard(expected, keep=job.keep)
    for c in job.corrupt:
        sb.corrupt(**dataclasses.asdict(c))
    zero = {k: np.zeros_like(v) for k, v in thresholds.items()}

    res = {"frames": [], "mismatches": sb.mismatches, "mismatch_counts": sb.counts, "bit_exact": False,
           "counters_match": False, "error": None, "pes": manifest.pes, "n_frames": len(expected)}
    tb = TB(dut, manifest, seed=job.seed, idle=job.idle, stall=job.stall)
    try:
        for t, e in enumerate(sb.expected):
            f = frames[t % len(frames)]
            if t % len(frames) == 0:
                tb.where = "reset"
                await tb.reset()
                tb.where = "threshold writes"
                await tb.write_thresholds(thresholds)
                zeroed = False
            if e.zero_thresholds != zeroed:     # skipconv periodic reset: zero thresholds for this frame
                await tb.write_thresholds(zero if e.zero_thresholds else thresholds)
                zeroed = e.zero_thresholds
            tb.where = f"frame {t} ({'flush' if e.flush else 'event'})"
            pixels = np.asarray(f, dtype=np.int64).reshape(-1)
            values, lasts, cycles_tb, problems = await tb.frame(pixels, len(e.output), flush=e.flush,
                                                                memloss=e.memloss)
            tb.where += ", stat reads"
            stats = await tb.read_stats()
            new = sb.check(t, outputs=values, lasts=lasts, stats=stats)
            for p in problems:
                new.append(sb.record(t, p, True, False))
            res["frames"].append({"frame": t, "kind": "flush" if e.flush else "event", "cycles_tb": cycles_tb,
                                  "stats": stats, "expected": {"events": e.events, "evaluated": e.evaluated,
                                                               "updates": e.updates},
                                  "bit_exact": not any(m["kind"] == "exact" for m in new),
                                  "mismatches": len(new)})
            res["bit_exact"], res["counters_match"] = sb.bit_exact, sb.counters_match
            res["sim_ns"] = get_sim_time("ns")
            if problems:
                break                           # the DUT's state is unknown: stop here
    except BaseException as exc:               # timeout, assertion: keep the frames done so far
        if type(exc).__name__ == "CancelledError":  # how cocotb's timeout_time ends the test coroutine
            res["error"] = f"Timeout: no result after {TIMEOUT_MS:g} ms of simulated time"
        else:
            res["error"] = f"{type(exc).__name__}: {exc}"
        res["error"] += (f" (during {tb.where}; pixels accepted {tb.pix.sent}, outputs received "
                         f"{tb.out.received}, busy={tb.dut.busy.value})")
        res["bit_exact"] = False
        write_results(job.results, job.run_id, res)
        raise
    write_results(job.results, job.run_id, res)
    if job.assert_exact:
        assert sb.bit_exact, f"not bit-exact: {sb.mismatches[:5]}"
        assert sb.counters_match, f"counters differ: {sb.mismatches[:5]}"
