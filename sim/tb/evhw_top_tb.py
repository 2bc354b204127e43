"""cocotb testbench of ``evhw_top``: a sequence of frames against the golden model.

Runs inside the simulator (started by :func:`sim.runner.run_cocotb`). Inputs, by environment:

* ``EVHW_JOB``: a JSON file ``{"build", "net", "frames", "policy", "reset_every", "thresholds",
  "seed", "idle", "stall", "assert", "corrupt", "keep"}``: the build folder (``manifest.json``), the
  ``.evnet`` network, a ``.npy`` of uint8 frames, the policy, the integer thresholds
  ``{gate: [H per channel]}``, the random seed, the pixel-idle and output-stall probabilities,
  whether a mismatch fails the cocotb test, an optional deliberate corruption of one expected
  value (negative tests), and how many mismatches to keep;
* ``EVHW_RESULTS``: where to write the results JSON (after every frame, so a timeout leaves the
  frames done so far);
* ``EVHW_TIMEOUT_MS``: the simulated-time limit of the test.

Per frame: pulse ``start`` (with ``start_flush`` / ``start_memloss``) while ``busy`` is low, drive
the pixels with random idle cycles, collect every output with random backpressure, wait for
``busy`` to fall, read every counter of the manifest's ``stats`` map and compare with
:class:`sim.scoreboard.Scoreboard`. Memories are not cleared by ``rst``: frame 0 is a flush.
"""
from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge
from cocotb.utils import get_sim_time

from evhw.evnet_file import load
from evhw.golden import Policy
from sim.scoreboard import Scoreboard, expected_frames
from sim.streams import StreamSink, StreamSource

CLOCK_NS = 10
TIMEOUT_MS = float(os.environ.get("EVHW_TIMEOUT_MS", "20"))
TIMEOUT_US = max(1, math.ceil(TIMEOUT_MS * 1000))     # an integer: cocotb refuses times finer than the precision


def gate_list(manifest):
    """The manifest's gates as ``[{name, channels, cfg_base}]`` (it may hold a list or a dict by name)."""
    gates = manifest.get("gates", [])
    if isinstance(gates, dict):
        return [{"name": k, **v} for k, v in gates.items()]
    return list(gates)


class TB:
    def __init__(self, dut, manifest, *, seed=0, idle=0.0, stall=0.0):
        self.dut, self.m = dut, manifest
        self.stat_latency = int(manifest.get("stat_latency", 1))
        self.where = "reset"
        out = manifest.get("output", {})
        self.pix = StreamSource(dut, "pix", idle=idle, rng=random.Random(2 * seed + 1))
        self.out = StreamSink(dut, "out", stall=stall, rng=random.Random(2 * seed + 2),
                              signed=bool(out.get("signed", True)))
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
        for g in gate_list(self.m):
            h = np.broadcast_to(np.asarray(thresholds[g["name"]], dtype=np.int64), (int(g["channels"]),))
            for c, v in enumerate(h):
                await self.write_cfg(int(g["cfg_base"]) + c, int(v))
        await RisingEdge(self.dut.clk)

    async def read_stat(self, addr):
        self.dut.stat_addr.value = int(addr)
        for _ in range(self.stat_latency + 1):
            await RisingEdge(self.dut.clk)
        return self.dut.stat_data.value.to_unsigned()

    async def read_stats(self, spec=None):
        """Every counter of the manifest's ``stats`` map, same structure (ints read from ``stat_data``)."""
        spec = self.m.get("stats", {}) if spec is None else spec
        if isinstance(spec, dict):
            return {k: await self.read_stats(v) for k, v in spec.items()}
        if isinstance(spec, list):
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


def _write(path, obj):
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(obj))
    tmp.replace(path)


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def frames_match_golden(dut):
    job = json.loads(Path(os.environ["EVHW_JOB"]).read_text())
    results_path = os.environ["EVHW_RESULTS"]
    build = Path(job.get("build") or os.environ["EVHW_BUILD"])
    manifest = json.loads((build / "manifest.json").read_text())
    q, _ = load(job.get("net") or build / "net.evnet")
    frames = np.load(job["frames"])
    policy = Policy(job.get("policy", "evnet"), reset_every=job.get("reset_every"))
    thresholds = {k: np.asarray(v, dtype=np.int64) for k, v in job["thresholds"].items()}
    sequences = int(job.get("sequences", 1))       # > 1: rst between repeats (memories survive rst)
    expected = []
    for k in range(sequences):
        for e in expected_frames(q, frames, policy, thresholds):
            e.index = k * len(frames) + e.index
            expected.append(e)
    sb = Scoreboard(expected, keep=int(job.get("keep", 20)))
    for c in job.get("corrupt") or []:
        sb.corrupt(**c)
    zero = {k: np.zeros_like(v) for k, v in thresholds.items()}

    res = {"frames": [], "mismatches": sb.mismatches, "mismatch_counts": sb.counts, "bit_exact": False,
           "counters_match": False, "error": None, "pes": manifest.get("pes"), "n_frames": len(expected)}
    tb = TB(dut, manifest, seed=int(job.get("seed", 0)), idle=float(job.get("idle", 0.0)),
            stall=float(job.get("stall", 0.0)))
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
            _write(results_path, res)
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
        _write(results_path, res)
        raise
    _write(results_path, res)
    if job.get("assert", True):
        assert sb.bit_exact, f"not bit-exact: {sb.mismatches[:5]}"
        assert sb.counters_match, f"counters differ: {sb.mismatches[:5]}"
