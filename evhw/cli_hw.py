"""``evhw generate`` and ``evhw sim`` (hardware side; Amaranth and cocotb are imported lazily).

``evhw generate NET --pes P -o BUILD/`` writes the Verilog top ``BUILD/evhw_top.v``,
``BUILD/manifest.json`` (rtl_gen.export) and ``BUILD/net.evnet``, the very network the hardware
was generated for, so ``evhw sim`` checks the RTL against the identical quantized network.

``evhw sim BUILD/`` runs frames through ``evhw_top`` in cocotb (Verilator or Icarus) and checks every
output value and every per-tensor event count against the golden model, frame by frame.
"""
from __future__ import annotations

import json
from pathlib import Path

import click

HW_POLICIES = ("evnet", "skipconv", "dense")


def _cli():
    from . import cli as c       # the house consoles and helpers (cli.py imports this module last)
    return c


def generate_build(net, *, pes, out_dir, threshold=None):
    """Load NET, generate its hardware into ``out_dir`` and save ``net.evnet`` there. Returns
    ``(q, manifest)``."""
    from .errors import EvhwError
    from .evaluate import load_network
    from .evnet_file import save
    q, g = load_network(net, threshold=_cli().DEFAULT_THRESHOLD)
    if threshold is not None:
        from .evaluate import apply_thresholds
        apply_thresholds(q, threshold)
    try:
        from rtl_gen.export import generate as rtl_generate
    except ImportError as e:
        raise EvhwError(f"the hardware generator is not available ({e})") from None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = rtl_generate(q, pes=pes, out_dir=out)
    save(out / "net.evnet", q, g)
    if manifest is None:
        manifest = json.loads((out / "manifest.json").read_text())
    return q, manifest


def generate_table(q, manifest, out_dir):
    from rich.table import Table
    t = Table(title=f"{q.name}: evhw_top with {manifest.get('pes')} PE(s) in {out_dir}")
    for c in ("layer", "terms", "accumulators", "gate", "acc bits", "threshold cfg"):
        t.add_column(c, justify="left" if c in ("layer", "terms") else "right")
    gates = manifest.get("gates", {})
    if isinstance(gates, list):
        gates = {g["name"]: g for g in gates}
    g_in = gates.get("input", {})
    t.add_row("input", "input gate", "-", str(tuple(manifest.get("input", {}).get("shape", q.input.shape))), "-",
              f"{g_in.get('cfg_base', '?')}+{g_in.get('channels', '?')}" if g_in else "-")
    layers = manifest.get("layers") or [{"name": s.name, "terms": [x.kind for x in s.terms], "acc_shape": s.acc_shape,
                                         "gate_shape": s.out.shape, "gated": s.gated, "acc_bits": s.acc_bits}
                                        for s in q.layers()]
    for l in layers:
        gi = gates.get(l["name"])
        t.add_row(l["name"], "+".join(l.get("terms", [])), str(tuple(l.get("acc_shape", ()))),
                  str(tuple(l.get("gate_shape", ()))) if l.get("gated") else "readout", str(l.get("acc_bits", "-")),
                  f"{gi['cfg_base']}+{gi['channels']}" if gi else "-")
    return t


def sim_table(res):
    from rich.table import Table
    t = Table(title=f"evhw_top on {res['simulator']}, {res['pes']} PE(s): {res['policy']}, h={res['threshold']:g}, "
                    f"{res['frames']} frames of {res.get('video', '?')}")
    for c in ("frame", "kind", "cycles", "ideal cycles", "events", "updates", "bit-exact"):
        t.add_column(c, justify="left" if c == "kind" else "right")
    for f in res["per_frame"]:
        t.add_row(str(f["frame"]), f["kind"], f"{f['cycles']:,}", f"{f['ideal_cycles']:,.1f}", f"{f['events']:,}",
                  f"{f['updates']:,}", "yes" if f["bit_exact"] else "[bold red]NO[/]")
    return t


def register(cli):
    """Add the hardware commands to the ``evhw`` group."""
    _register_bench(cli)

    @cli.command()
    @click.argument("net")
    @click.option("-p", "--pes", type=click.IntRange(1, 16), default=1, show_default=True,
                  help="Processing elements (1-16).")
    @click.option("-o", "--output", required=True, metavar="BUILD/", help="Folder for evhw_top.v, manifest.json, net.evnet.")
    @click.option("--threshold", type=float, help="Re-map the stored thresholds to h (float activation units).")
    @click.option("--json", "as_json", is_flag=True, help="Print the manifest as one JSON object.")
    def generate(net, pes, output, threshold, as_json):
        """Generate the Verilog hardware for NET (.evnet or a bundled model) with P processing elements."""
        c = _cli()
        q, manifest = generate_build(net, pes=pes, out_dir=output, threshold=threshold)
        if as_json:
            click.echo(json.dumps(manifest, default=c._jsonable))
            return
        c.out.print(generate_table(q, manifest, output))
        mem = manifest.get("memory_bits", {}).get("total")
        c.out.print(f"wrote {output}/evhw_top.v, manifest.json, net.evnet"
                    + (f"; on-chip memory {mem / 8 / 1024:.1f} KiB" if mem else ""))

    @cli.command()
    @click.argument("build", metavar="BUILD/")
    @click.option("--video", metavar="FRAMES", help="Frames (.npy/.npz, video file or source name; default: the "
                                                     "model's default video).")
    @click.option("--frames", "n_frames", type=int, default=4, show_default=True, help="Number of frames.")
    @click.option("--simulator", type=click.Choice(("verilator", "icarus")), default="verilator", show_default=True)
    @click.option("--policy", type=click.Choice(HW_POLICIES), default="evnet", show_default=True)
    @click.option("--threshold", type=float, help="Gate threshold h (default: the network's stored thresholds).")
    @click.option("--reset-every", type=int, help="skipconv: zero thresholds every N frames.")
    @click.option("--seed", default=0, show_default=True, help="Random seed of the stalls.")
    @click.option("--stall", type=click.FloatRange(0, 0.95), default=0.0, show_default=True,
                  help="Probability of a pixel idle cycle and of an output backpressure cycle.")
    @click.option("--waves", is_flag=True, help="Record a waveform trace (path printed; a separate cached build).")
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
    def sim(build, video, n_frames, simulator, policy, threshold, reset_every, seed, stall, waves, as_json):
        """Simulate BUILD/ (from `evhw generate`) on FRAMES and check it bit for bit against the golden model.

        Ideal cycles of a frame = its synaptic updates / P: per layer, event frames count the golden
        model's event MACs + non-MAC accumulations; flush frames count the (non-zero input value,
        reached accumulator) pairs of the dense values (the hardware sends only non-zero values)."""
        import sys

        from . import zoo
        from .errors import ConfigError, EvhwError
        from .evaluate import apply_thresholds, clip_for
        from .evnet_file import load
        from .golden import Policy
        c = _cli()
        bdir = Path(build)
        for f in ("manifest.json", "net.evnet"):
            if not (bdir / f).exists():
                raise EvhwError(f"{bdir / f} is missing: run `evhw generate NET -o {build}` first")
        if n_frames < 1:
            raise ConfigError(f"--frames must be >= 1, not {n_frames}")
        q, _ = load(bdir / "net.evnet")
        th = apply_thresholds(q, threshold)
        Policy(policy, reset_every=reset_every)          # validates --reset-every
        source = video or zoo.default_video(q.meta.get("model"))
        clip = clip_for(source, q.input.shape, n_frames)
        try:
            from sim.runner import SimError
            from sim.session import simulate
        except ImportError as e:
            raise EvhwError(f"cocotb is not installed ({e}): pip install -e '.[sim]'") from None
        with c.err.status(f"simulating {len(clip)} frames on {simulator}", spinner="dots") if c.err.is_terminal \
                else _null():
            try:
                res = simulate(bdir, q, clip.frames, policy=policy, thresholds=th, reset_every=reset_every,
                               simulator=simulator, seed=seed, stall=stall, waves=waves)
            except SimError as e:
                raise EvhwError(str(e)) from None
        res["threshold"] = q.default_threshold
        res["video"] = str(source)
        if as_json:
            click.echo(json.dumps(res, default=c._jsonable))
        else:
            c.out.print(sim_table(res))
            tot, ideal = sum(res["cycles_per_frame"]), sum(res["ideal_cycles_per_frame"])
            busy = res["pe_busy_fraction"]
            ratio = f" ({tot / ideal:.2f}x)" if ideal else ""
            c.out.print(f"{res['frames_run']} of {res['frames']} frames: {tot:,} cycles for {ideal:,.0f} ideal{ratio}; "
                        + (f"PEs busy {100 * busy:.1f} % of the cycles; " if busy is not None else "")
                        + ("bit-exact: yes" if res["bit_exact"] else "bit-exact: [bold red]NO[/]"))
            for m in res["mismatches"][:5]:
                c.err.print(f"frame {m['frame']}: {m['what']}: expected {m['expected']}, got {m['got']}",
                            highlight=False)
            if res.get("waves"):
                c.err.print(f"waves: {res['waves']}", highlight=False)
            if res.get("error"):
                c.err.print(f"testbench: {res['error']} (log {res['log']})", highlight=False)
        if not res["bit_exact"]:
            sys.exit(1)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False



def _register_bench(cli):

    bench_group = cli.commands.get("bench")
    if bench_group is not None:
        @bench_group.command(name="hw")
        @click.option("--model", default="objects-cnn", show_default=True)
        @click.option("--video", help="Frames (default: the model's default video).")
        @click.option("--frames", "n_frames", default=4, show_default=True)
        @click.option("--pes", default="1,2,4,8", show_default=True, help="Comma-separated PE counts.")
        @click.option("--dense-pes", default=4, show_default=True, help="Also run dense mode at this P.")
        @click.option("--threshold", type=float, default=0.04, show_default=True)
        @click.option("--simulator", type=click.Choice(("verilator", "icarus")), default="verilator", show_default=True)
        @click.option("-o", "--output", default="build/bench", show_default=True, help="Build folder root.")
        @click.option("--json", "as_json", is_flag=True)
        def hw(model, video, n_frames, pes, dense_pes, threshold, simulator, output, as_json):
            """Cycles per frame of the generated array on real video: evnet vs dense, vs ideal, P scaling."""
            from rich.table import Table
            from sim.bench import bench_hw
            c = _cli()
            p_list = tuple(int(x) for x in pes.split(","))
            res = bench_hw(model, video=video, frames=n_frames, pes=p_list, dense_pes=dense_pes, threshold=threshold,
                           simulator=simulator, build_root=output, log=c.err.print)
            if as_json:
                click.echo(json.dumps(res))
                return
            t = Table(title=f"{model}: {n_frames} frames of {res['video']}, h={threshold:g}, {simulator}")
            for col in ("P", "policy", "cycles/frame", "event frames: cycles", "ideal", "ratio", "PE busy",
                        "speed-up vs P=1", "efficiency"):
                t.add_column(col, justify="right")
            for r in res["runs"]:
                ratio = (r["event_frames_cycles"] / r["event_frames_ideal"]
                         if r["event_frames_cycles"] and r["event_frames_ideal"] else None)
                t.add_row(str(r["pes"]), r["policy"], f"{r['mean_cycles']:,.0f}",
                          "-" if r["event_frames_cycles"] is None else f"{r['event_frames_cycles']:,.0f}",
                          "-" if r["event_frames_ideal"] is None else f"{r['event_frames_ideal']:,.0f}",
                          "-" if ratio is None else f"{ratio:.2f}x",
                          "-" if r["pe_busy_fraction"] is None else f"{100 * r['pe_busy_fraction']:.1f} %",
                          f"{r['speedup_vs_p1']:.2f}x" if "speedup_vs_p1" in r else "-",
                          f"{100 * r['parallel_efficiency']:.0f} %" if "parallel_efficiency" in r else "-")
            c.out.print(t)
            if "dense_over_evnet_cycles" in res:
                c.out.print(f"dense mode takes {res['dense_over_evnet_cycles']:.2f}x the cycles of evnet mode at "
                            f"P={dense_pes} on the same hardware and frames")

