"""cocotb testbench of ``evhw_top``: a sequence of frames against the golden model.

Runs inside the simulator (started by :func:`sim.runner.run_cocotb`) on the harness ``evhw_tb``
(:mod:`sim.tbwrap`, compiled around ``evhw_top``). Python does not run every clock: per frame it
writes the pixels to a file, requests one harness operation and sleeps until ``done``; the harness
drives ``pix`` with random idle cycles, collects ``out`` with random backpressure, reads every
counter and writes outputs and counters to files. Inputs, by environment:

* ``EVHW_JOB``: a :class:`sim.job.SimJob` file: the build folder (opened through
  :class:`rtl_gen.builddir.BuildDir`: manifest and ``net.evnet``), a ``.npy`` of uint8 frames, the
  policy, the integer thresholds ``{gate: [H per channel]}``, the random seed, the pixel-idle and
  output-stall probabilities, whether a mismatch fails the cocotb test, optional deliberate
  corruptions of expected values (negative tests), how many mismatches to keep, the run id and
  the results file (written once at the end, :func:`sim.job.write_results`; a timeout or an
  assertion still writes the frames done so far, with ``error``);
* ``EVHW_TIMEOUT_MS``: the simulated-time limit of the run (the harness stops any operation at
  that cycle: a hung design ends the run with a ``Timeout`` error, not a hung process).

Per frame: reset and threshold writes at the start of a sequence (and zero thresholds for a
skipconv periodic reset), one ``OP_FRAME`` (start with ``start_flush`` / ``start_memloss``,
streams, ``busy`` falling, counters), then :class:`sim.scoreboard.Scoreboard` compares outputs,
``last`` bits and every counter of the manifest's ``stats`` map. Memories are not cleared by
``rst``: frame 0 is a flush.
"""
from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, RisingEdge
from cocotb.utils import get_sim_time

from evhw.golden import Policy
from rtl_gen.builddir import BuildDir
from sim import tbwrap as W
from sim.job import SimJob, write_results
from sim.scoreboard import Scoreboard, expected_frames

CLOCK_NS = W.CLOCK_NS
TIMEOUT_MS = float(os.environ.get("EVHW_TIMEOUT_MS", "20"))
TIMEOUT_US = max(1, math.ceil(TIMEOUT_MS * 1000))     # an integer: cocotb refuses times finer than the precision
DEADLINE = max(1, int(TIMEOUT_MS * 1e6 / CLOCK_NS))    # the harness's cycle limit (same time as TIMEOUT_MS)


class Timeout(Exception):
    pass


def _mix(*xs):
    """A 32-bit non-zero seed from integers (splitmix64 finaliser)."""
    z = 0x9E3779B97F4A7C15
    for x in xs:
        z = (z ^ (int(x) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        z = (z ^ (z >> 31)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
    return (z >> 32) or 1


def _fixed(p):
    return min(W.STALL_ONE, max(0, round(float(p) * W.STALL_ONE)))


def read_hex(path, n):
    """The first ``n`` words of a ``$writememh`` file (comments and ``@address`` lines honoured)."""
    words, addr = {}, 0
    for line in Path(path).read_text().splitlines():
        line = line.split("//", 1)[0]
        for tok in line.split():
            if tok.startswith("@"):
                addr = int(tok[1:], 16)
                continue
            try:
                words[addr] = int(tok.replace("_", ""), 16)
            except ValueError:
                words[addr] = None                          # x / z: never written
            addr += 1
    return [words.get(i) for i in range(n)]


class TB:
    def __init__(self, dut, manifest, *, seed=0, idle=0.0, stall=0.0):
        self.dut, self.m = dut, manifest
        self.seed = seed
        self.where = "reset"
        self.stat_addrs = W.stat_addresses(manifest)
        self.nstat = max(self.stat_addrs) + 1
        self.ow = manifest.ports["out__payload"].width
        self.dw = manifest.ports["cfg_data"].width
        self.pw = manifest.ports["pix__payload"].width
        self.go = 0
        dut.go.value = 0
        dut.op.value = 0
        dut.flush.value = 0
        dut.memloss.value = 0
        dut.seed_src.value = 1
        dut.seed_snk.value = 1
        dut.idle_th.value = _fixed(idle)
        dut.stall_th.value = _fixed(stall)
        dut.deadline.value = DEADLINE             # the clock runs inside the harness

    async def settle(self):
        """Two clock edges with the inputs driven (at time 0 they may still be undriven)."""
        for _ in range(2):
            await RisingEdge(self.dut.clk)

    async def op(self, code, **fields):
        """Run one harness operation; returns its status bits (a timeout raises :class:`Timeout`)."""
        dut = self.dut
        for k, v in fields.items():
            getattr(dut, k).value = int(v)
        dut.op.value = code
        self.go ^= 1
        dut.go.value = self.go
        await RisingEdge(dut.done)
        await FallingEdge(dut.clk)                 # every register of that edge has settled
        status = int(dut.status.value)
        if status & W.ST_TIMEOUT:
            raise Timeout(f"no result after {TIMEOUT_MS:g} ms of simulated time")
        return status

    async def reset(self, sequence=0):
        st = await self.op(W.OP_RESET, seed_src=_mix(self.seed, sequence, 1), seed_snk=_mix(self.seed, sequence, 2))
        assert not st & W.ST_RESET_BUSY, "busy never fell"

    async def write_thresholds(self, thresholds):
        """``{gate: per-channel ints}`` at ``cfg_base + channel`` of the manifest's gates."""
        words = np.zeros(max(self.m.cfg_words, 1), dtype=np.int64)
        for name, g in self.m.gates.items():
            words[g.cfg_base:g.cfg_base + g.channels] = np.broadcast_to(
                np.asarray(thresholds[name], dtype=np.int64), (g.channels,))
        mask = (1 << self.dw) - 1
        Path(W.CFG_FILE).write_text("".join(f"{int(v) & mask:x}\n" for v in words))
        await self.op(W.OP_CFG)

    def _stats(self, words, spec=None):
        """Every counter of the manifest's ``stats`` map, same structure (ints from the counter file)."""
        spec = dataclasses.asdict(self.m.stats) if spec is None else spec
        if isinstance(spec, dict):
            return {k: self._stats(words, v) for k, v in spec.items()}
        if isinstance(spec, (list, tuple)):
            return [self._stats(words, v) for v in spec]
        return words[spec]

    async def frame(self, pixels, *, flush, memloss):
        """Run one frame; returns outputs, last bits, cycles (start edge to busy falling), problems, counters."""
        mask = (1 << self.pw) - 1
        Path(W.PIX_FILE).write_text("".join(f"{int(v) & mask:x}\n" for v in pixels))
        st = await self.op(W.OP_FRAME, flush=flush, memloss=memloss)
        assert not st & W.ST_START_BUSY, "start while busy"
        problems = [msg for bit, msg in ((W.ST_NO_BUSY, "busy did not rise after start"),
                                         (W.ST_PIX_SHORT, "pixels not all accepted when busy fell"),
                                         (W.ST_OUT_SHORT, "outputs not all delivered when busy fell"))
                    if st & bit]
        got = int(self.dut.got.value)
        beats = read_hex(W.OUT_FILE, got)
        vmask, sign = (1 << self.ow) - 1, 1 << (self.ow - 1)
        values, lasts = [], []
        for b in beats:
            b = b or 0
            v = b & vmask
            if self.m.output.signed and v & sign:
                v -= 1 << self.ow
            values.append(v)
            lasts.append((b >> self.ow) & 1)
        words = read_hex(W.STAT_FILE, self.nstat)
        return values, lasts, int(self.dut.cycles.value), problems, self._stats(words)

    def state(self):
        d = self.dut
        return f"pixels accepted {int(d.sent.value)}, outputs received {int(d.got.value)}, busy={d.busy.value}"


@cocotb.test(timeout_time=TIMEOUT_US + TIMEOUT_US // 2 + 100, timeout_unit="us")
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
        await tb.settle()
        for t, e in enumerate(sb.expected):
            f = frames[t % len(frames)]
            if t % len(frames) == 0:
                tb.where = "reset"
                await tb.reset(t // len(frames))
                tb.where = "threshold writes"
                await tb.write_thresholds(thresholds)
                zeroed = False
            if e.zero_thresholds != zeroed:     # skipconv periodic reset: zero thresholds for this frame
                await tb.write_thresholds(zero if e.zero_thresholds else thresholds)
                zeroed = e.zero_thresholds
            tb.where = f"frame {t} ({'flush' if e.flush else 'event'})"
            pixels = np.asarray(f, dtype=np.int64).reshape(-1)
            values, lasts, cycles_tb, problems, stats = await tb.frame(pixels, flush=e.flush, memloss=e.memloss)
            new = sb.check(t, outputs=values, lasts=lasts, stats=stats)
            for p in problems:
                new.append(sb.record(t, p, True, False))
            res["frames"].append({"frame": t, "kind": "flush" if e.flush else "event", "cycles_tb": cycles_tb,
                                  "stats": stats, "expected": {"events": e.events, "evaluated": e.evaluated,
                                                               "updates": e.updates, "macs": e.macs,
                                                               "arrivals": e.arrivals, "per_channel": e.per_channel},
                                  "bit_exact": not any(m["kind"] == "exact" for m in new),
                                  "mismatches": len(new)})
            res["bit_exact"], res["counters_match"] = sb.bit_exact, sb.counters_match
            res["sim_ns"] = get_sim_time("ns")
            if problems:
                break                           # the DUT's state is unknown: stop here
    except BaseException as exc:               # timeout, assertion: keep the frames done so far
        if isinstance(exc, Timeout) or type(exc).__name__ == "CancelledError":  # cancelled: cocotb's timeout_time
            res["error"] = f"Timeout: no result after {TIMEOUT_MS:g} ms of simulated time"
        else:
            res["error"] = f"{type(exc).__name__}: {exc}"
        res["error"] += f" (during {tb.where}; {tb.state()})"
        res["bit_exact"] = False
        write_results(job.results, job.run_id, res)
        raise
    res["sim_ns"] = get_sim_time("ns")
    write_results(job.results, job.run_id, res)
    if job.assert_exact:
        assert sb.bit_exact, f"not bit-exact: {sb.mismatches[:5]}"
        assert sb.counters_match, f"counters differ: {sb.mismatches[:5]}"
