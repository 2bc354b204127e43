"""``evhw generate`` and ``evhw sim``: the hardware (Amaranth and cocotb are imported only when they run).

``evhw generate NET --pes P -o BUILD/`` writes the build folder (rtl_gen.builddir): the Verilog top
``BUILD/evhw_top.v``, ``BUILD/manifest.json``, ``BUILD/net.evnet`` (the very network the hardware
was generated for, so ``evhw sim`` checks the RTL against the identical quantized network) and the
hashes of all of them.

``evhw sim BUILD/`` runs frames through ``evhw_top`` in cocotb (Verilator or Icarus) and checks every
output value and every per-tensor event count against the golden model, frame by frame.
"""
from __future__ import annotations

import json
import math
import sys

import click
from rich.table import Table

from rtl_gen.limits import HW_POLICIES, MAX_LANES, MAX_PES
from sim.limits import MAX_STALL, MAX_THREADS, SIMULATORS

from .console import err, jsonable, out, status


def _finite(ctx, param, value):
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"must be a finite number, not {value}")
    return value


@click.command()
@click.argument("net")
@click.option("-p", "--pes", type=click.IntRange(1, MAX_PES), default=1, show_default=True,
              help=f"Processing elements (1-{MAX_PES}).")
@click.option("-l", "--lanes", type=click.Choice([str(1 << i) for i in range(MAX_LANES.bit_length())]), default="1",
              show_default=True, help="Synaptic lanes per PE: updates per PE per cycle (one multiplier each).")
@click.option("-o", "--output", required=True, metavar="BUILD/", help="Folder for evhw_top.v, manifest.json, net.evnet.")
@click.option("--threshold", type=float, callback=_finite, help="Re-map the stored thresholds to h (float activation units).")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as one JSON object.")
def generate(net, pes, lanes, output, threshold, as_json):
    """Generate the Verilog hardware for NET (.evnet or a bundled model) with P processing elements
    of L lanes each."""
    from ..flow.build import generate_build
    q, manifest = generate_build(net, pes=pes, lanes=int(lanes), out_dir=output, threshold=threshold)
    if as_json:
        click.echo(json.dumps(manifest.to_dict(), default=jsonable))
        return
    out.print(generate_table(q, manifest, output))
    out.print(f"wrote {output}/evhw_top.v, manifest.json, net.evnet; on-chip memory "
              f"{manifest.memory_bits.total / 8 / 1024:.1f} KiB")


@click.command()
@click.argument("build", metavar="BUILD/")
@click.option("--video", metavar="FRAMES", help="Frames (.npy/.npz, video file or source name; default: the "
                                                 "model's default video).")
@click.option("--frames", "n_frames", type=click.IntRange(min=1), default=4, show_default=True,
              help="Number of frames.")
@click.option("--simulator", type=click.Choice(SIMULATORS), default=SIMULATORS[0], show_default=True)
@click.option("--policy", type=click.Choice(HW_POLICIES), default="evnet", show_default=True)
@click.option("--threshold", type=float, callback=_finite, help="Gate threshold h (default: the network's stored thresholds).")
@click.option("--reset-every", type=click.IntRange(min=1), help="skipconv: zero thresholds every N frames.")
@click.option("--seed", default=0, show_default=True, help="Random seed of the stalls.")
@click.option("--stall", type=click.FloatRange(0, MAX_STALL), default=0.0, show_default=True, callback=_finite,
              help="Probability of a pixel idle cycle and of an output backpressure cycle.")
@click.option("--threads", type=click.IntRange(1, MAX_THREADS), help="Verilator model threads (default: $EVHW_VERILATOR_THREADS or 1).")
@click.option("--waves", is_flag=True, help="Record a waveform trace (path printed; a separate cached build).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
def sim(build, video, n_frames, simulator, policy, threshold, reset_every, seed, stall, threads, waves, as_json):
    """Simulate BUILD/ (from `evhw generate`) on FRAMES and check it bit for bit against the golden model.

    Ideal cycles of a frame = max(its input pixels, its synaptic updates / (P * L)): per layer, event frames count the golden
    model's event MACs + non-MAC accumulations; flush frames count the (non-zero input value,
    reached accumulator) pairs of the dense values (the hardware sends only non-zero values).
    Predicted cycles: the cycle model (docs/architecture.md §6) on the golden model's counts."""
    from ..flow.simulate import simulate_build
    res = simulate_build(build, video=video, n_frames=n_frames, simulator=simulator, policy=policy,
                         threshold=threshold, reset_every=reset_every, seed=seed, stall=stall, waves=waves,
                         status=status, threads=threads)
    if as_json:
        click.echo(json.dumps(res, default=jsonable))
    else:
        out.print(sim_table(res))
        tot, ideal = sum(res["cycles_per_frame"]), sum(res["ideal_cycles_per_frame"])
        busy = res["pe_busy_fraction"]
        ratio = f" ({tot / ideal:.2f}x)" if ideal else ""
        out.print(f"{res['frames_run']} of {res['frames']} frames: {tot:,} cycles for {ideal:,.0f} ideal{ratio}; "
                  + (f"PEs busy {100 * busy:.1f} % of the cycles; " if busy is not None else "")
                  + ("bit-exact: yes" if res["bit_exact"] else "bit-exact: [bold red]NO[/]"))
        for m in res["mismatches"][:5]:
            err.print(f"frame {m['frame']}: {m['what']}: expected {m['expected']}, got {m['got']}",
                  highlight=False)
        if res.get("waves"):
            err.print(f"waves: {res['waves']}", highlight=False)
        if res.get("error"):
            err.print(f"testbench: {res['error']} (log {res['log']})", highlight=False)
    if not res["bit_exact"]:
        sys.exit(1)


def generate_table(q, manifest, out_dir):
    """The layers of a build (``manifest``: :class:`rtl_gen.manifest.Manifest`)."""
    t = Table(title=f"{q.name}: evhw_top with {manifest.pes} PE(s) in {out_dir}")
    for c in ("layer", "terms", "accumulators", "gate", "acc bits", "threshold cfg"):
        t.add_column(c, justify="left" if c in ("layer", "terms") else "right")
    g_in = manifest.gates["input"]
    t.add_row("input", "input gate", "-", str(tuple(manifest.input.shape)), "-", f"{g_in.cfg_base}+{g_in.channels}")
    for l in manifest.layers:
        gi = manifest.gates.get(l.name)
        t.add_row(l.name, "+".join(l.terms), str(l.acc_shape), str(l.gate_shape) if l.gated else "readout",
                  str(l.acc_bits), f"{gi.cfg_base}+{gi.channels}" if gi else "-")
    return t


def sim_table(res):
    t = Table(title=f"evhw_top on {res['simulator']}, {res['pes']} PE(s): {res['policy']}, h={res['threshold']:g}, "
                    f"{res['frames']} frames of {res.get('video', '?')}")
    for c in ("frame", "kind", "cycles", "predicted", "ideal cycles", "events", "updates", "bit-exact"):
        t.add_column(c, justify="left" if c == "kind" else "right")
    for f in res["per_frame"]:
        pred = f.get("predicted_cycles")
        t.add_row(str(f["frame"]), f["kind"], f"{f['cycles']:,}", "-" if pred is None else f"{pred:,}",
                  f"{f['ideal_cycles']:,.1f}", f"{f['events']:,}",
                  f"{f['updates']:,}", "yes" if f["bit_exact"] else "[bold red]NO[/]")
    return t
