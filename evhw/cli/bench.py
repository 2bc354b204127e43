"""``evhw bench golden``, ``evhw bench hw`` and ``evhw bench sim``: figures for docs/benchmarks.md."""
from __future__ import annotations

import json

import click
from rich.table import Table

from rtl_gen.limits import MAX_LANES, MAX_PES
from sim.limits import MAX_THREADS, SIMULATORS

from ..data.clip import MAX_FRAMES
from ..flow.bench import (HW_BUILD_ROOT, HW_DENSE_PES, HW_FRAMES, HW_MODEL, HW_PES, SIM_BUILD_ROOT, SIM_FRAMES,
                          SIM_MODEL, SIM_PES)
from ..flow.network import DEFAULT_THRESHOLD
from ..golden import KERNELS
from .console import THRESHOLD, IntList, err, out


@click.group()
def bench():
    """Benchmarks (figures for docs/benchmarks.md)."""


@bench.command()
@click.option("--model", default="rand-cnn64", show_default=True)
@click.option("--video", default="synthetic:shapes", show_default=True)
@click.option("--frames", "n_frames", type=click.IntRange(1, MAX_FRAMES), default=32, show_default=True)
@click.option("--threshold", type=THRESHOLD, default=DEFAULT_THRESHOLD, show_default=True)
@click.option("--kernels", type=click.Choice(KERNELS),
              help="The event path's inner loops: numpy (the reference) or numba (compiled); auto: numba if "
                   "installed. Default: $EVHW_GOLDEN_KERNELS, else auto.")
@click.option("--json", "as_json", is_flag=True)
def golden(model, video, n_frames, threshold, kernels, as_json):
    """Frames per second of the golden model: event path vs dense integer path."""
    from ..flow.bench import bench_golden
    res = bench_golden(model, video, n_frames, threshold, kernels=kernels)
    if as_json:
        click.echo(json.dumps(res))
        return
    t = Table(title=f"golden model speed: {model}, {res['frames']} frames of {video}, h={threshold:g}")
    for c in ("path", "frames/s", "ms/frame", "MACs/frame", "frames/s vs dense"):
        t.add_column(c, justify="left" if c == "path" else "right")
    for k, ratio in (("dense", 1.0), ("event", res["event_over_dense"])):
        r = res[k]
        t.add_row(k, f"{r['fps']:.1f}", f"{1000 / r['fps']:.2f}", f"{r['macs_per_frame']:,.0f}", f"{ratio:.2f}x")
    out.print(t)
    out.print(f"event path speed-up (event_over_dense) {res['event_over_dense']:.2f}x for "
              f"{res['mac_savings']:.2f}x fewer MACs, {res['kernels']} kernels ({res['machine']})")


@bench.command(name="hw")
@click.option("--model", default=HW_MODEL, show_default=True)
@click.option("--video", help="Frames (default: the model's default video).")
@click.option("--frames", "n_frames", type=click.IntRange(min=1), default=HW_FRAMES, show_default=True)
@click.option("--pes", "p_list", type=IntList(1, MAX_PES), default=",".join(map(str, HW_PES)), show_default=True,
              help="Comma-separated PE counts.")
@click.option("--lanes", "l_list", type=IntList(1, MAX_LANES), default="1", show_default=True,
              help="Comma-separated lane counts (powers of two); every P runs with every L.")
@click.option("--dense-pes", type=click.IntRange(1, MAX_PES), default=HW_DENSE_PES, show_default=True,
              help="Also run dense mode at this P (with the first of --lanes).")
@click.option("--threshold", type=THRESHOLD, help="Gate threshold h (default: the model's operating point).")
@click.option("--simulator", type=click.Choice(SIMULATORS), default=SIMULATORS[0], show_default=True)
@click.option("-o", "--output", default=HW_BUILD_ROOT, show_default=True, help="Build folder root.")
@click.option("--json", "as_json", is_flag=True)
def hw(model, video, n_frames, p_list, l_list, dense_pes, threshold, simulator, output, as_json):
    """Cycles per frame of the generated array on real video: evnet vs dense, vs ideal and predicted,
    P and L scaling."""
    from ..flow.bench import bench_hw
    bad = [n for n in l_list if n & (n - 1)]
    if bad:
        raise click.BadParameter(f"{bad[0]} is not a power of two", param_hint="--lanes")
    res = bench_hw(model, video=video, frames=n_frames, pes=p_list, dense_pes=dense_pes, threshold=threshold,
                   simulator=simulator, build_root=output, log=err.print, lanes=tuple(l_list))
    if as_json:
        click.echo(json.dumps(res))
        return
    t = Table(title=f"{model}: {n_frames} frames of {res['video']}, h={res['threshold']:g}, {simulator}")
    for col in ("P", "L", "policy", "cycles/frame", "event frames: cycles", "predicted", "ideal", "ratio",
                "PE busy", "speed-up vs P=1 L=1", "efficiency"):
        t.add_column(col, justify="right")
    for r in res["runs"]:
        ratio = (r["event_frames_cycles"] / r["event_frames_ideal"]
                 if r["event_frames_cycles"] and r["event_frames_ideal"] else None)
        t.add_row(str(r["pes"]), str(r["lanes"]), r["policy"], f"{r['mean_cycles']:,.0f}",
                  "-" if r["event_frames_cycles"] is None else f"{r['event_frames_cycles']:,.0f}",
                  "-" if r["event_frames_predicted"] is None else f"{r['event_frames_predicted']:,.0f}",
                  "-" if r["event_frames_ideal"] is None else f"{r['event_frames_ideal']:,.0f}",
                  "-" if ratio is None else f"{ratio:.2f}x",
                  "-" if r["pe_busy_fraction"] is None else f"{100 * r['pe_busy_fraction']:.1f} %",
                  f"{r['speedup_vs_p1']:.2f}x" if "speedup_vs_p1" in r else "-",
                  f"{100 * r['parallel_efficiency']:.0f} %" if "parallel_efficiency" in r else "-")
    out.print(t)
    if "dense_over_evnet_cycles" in res:
        out.print(f"dense mode takes {res['dense_over_evnet_cycles']:.2f}x the cycles of evnet mode at "
                    f"P={dense_pes} on the same hardware and frames")


@bench.command(name="sim")
@click.option("--model", default=SIM_MODEL, show_default=True, help="A bundled model or a .evnet file.")
@click.option("--pes", type=click.IntRange(1, MAX_PES), default=SIM_PES, show_default=True)
@click.option("--simulator", type=click.Choice(SIMULATORS), default=SIMULATORS[0], show_default=True)
@click.option("--frames", "n_frames", type=click.IntRange(1, MAX_FRAMES), default=SIM_FRAMES, show_default=True)
@click.option("--video", help="Frames (default: the model's default video).")
@click.option("--threshold", type=THRESHOLD, help="Gate threshold h (default: the model's operating point).")
@click.option("-o", "--output", default=SIM_BUILD_ROOT, show_default=True, help="Build folder root.")
@click.option("--threads", type=click.IntRange(1, MAX_THREADS), help="Verilator model threads (default: $EVHW_VERILATOR_THREADS or 1).")
@click.option("--json", "as_json", is_flag=True)
def sim(model, pes, simulator, n_frames, video, threshold, output, threads, as_json):
    """Compile seconds, simulated cycles/s and frames/s of the cocotb testbench (frames checked bit-exact)."""
    from ..flow.bench import bench_sim
    res = bench_sim(model, pes=pes, simulator=simulator, frames=n_frames, video=video, threshold=threshold, threads=threads,
                    build_root=output, log=err.print)
    if as_json:
        click.echo(json.dumps(res))
        return
    t = Table(title=f"{model}, P={pes}, {simulator}: {res['frames']} frames of {res['video']}, bit-exact")
    for col in ("compile s", "sim s", "sim CPU s", "cycles", "cycles/s", "cycles/CPU s", "frames/s"):
        t.add_column(col, justify="right")
    comp = "-" if res["compile_seconds"] is None else f"{res['compile_seconds']:.1f}"
    cpu = res["cycles_per_cpu_second"]
    t.add_row(comp + (" (cached)" if res["compile_cached"] else ""), f"{res['sim_seconds']:.1f}",
              f"{res['sim_cpu_seconds']:.1f}", f"{res['cycles']:,}", f"{res['cycles_per_second']:,.0f}",
              "-" if cpu is None else f"{cpu:,.0f}", f"{res['frames_per_second']:.3f}")
    out.print(t)
    out.print(res["machine"])
