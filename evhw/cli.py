"""The ``evhw`` command. Command names, flags and JSON keys here are a contract: extend, never rename."""
from __future__ import annotations

import json
import sys
import time

import click
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import zoo
from .errors import EvhwError
from .golden import POLICIES, Policy, state_memory_bits

DEFAULT_THRESHOLD = 0.05
# Errors are one line: don't let rich wrap them at 80 columns when stderr is a file or pipe.
err = Console(stderr=True, width=None if sys.stderr.isatty() else 10_000)
# Tables are wide: when stdout is a file or pipe, don't wrap them at rich's default of 80 columns.
out = Console(width=None if sys.stdout.isatty() else 120)


def _floats(s):
    if s is None:
        return None
    try:
        v = tuple(float(x) for x in str(s).split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, not {s!r}")
    return v if len(v) > 1 else v[0]


def _shape(s):
    if s is None:
        return None
    try:
        return tuple(int(x) for x in s.split(","))
    except ValueError:
        raise click.BadParameter(f"expected a shape like 1,64,64, not {s!r}")


def progress(total, label):
    p = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err,
                 transient=True, disable=not err.is_terminal)
    return p, p.add_task(label, total=total)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="evhw")
def cli():
    """evhw: convert trained networks into Event Neural Networks and generate their hardware."""


# ------------------------------------------------------------------------------------ convert
quant_options = [
    click.option("--calib", "calib", metavar="FRAMES", help="Calibration frames (.npy/.npz/video or a source name)."),
    click.option("--calib-frames", default=16, show_default=True, help="Number of calibration frames."),
    click.option("--weight-bits", default=8, show_default=True, help="Weight bits (2-16), per-channel symmetric."),
    click.option("--act-bits", default=8, show_default=True, help="Activation bits (2-16)."),
    click.option("--acc-bits", type=int, help="Force one accumulator width (refused if below the proven bound)."),
    click.option("--input-mean", help="Per-channel mean of pixel/255, folded into the first layer (e.g. 0.485,0.456,0.406)."),
    click.option("--input-std", help="Per-channel std of pixel/255, folded into the first layer."),
    click.option("--input-shape", help="Model input shape C,H,W (PyTorch models)."),
    click.option("--threshold", "threshold", type=float, default=DEFAULT_THRESHOLD, show_default=True,
                 help="Default gate threshold h, in float activation units."),
    click.option("--input-threshold", type=float, help="Input-gate threshold in pixel/255 units (default: h)."),
    click.option("--bn-scale/--no-bn-scale", default=False, help="Scale thresholds per channel by BatchNorm |gamma|."),
]


def with_options(opts):
    def deco(f):
        for o in reversed(opts):
            f = o(f)
        return f
    return deco


def _convert_kwargs(kw):
    return dict(calib=kw["calib"], calib_frames=kw["calib_frames"], input_shape=_shape(kw["input_shape"]),
                weight_bits=kw["weight_bits"], act_bits=kw["act_bits"], acc_bits=kw["acc_bits"],
                input_mean=_floats(kw["input_mean"]), input_std=_floats(kw["input_std"]),
                threshold=kw["threshold"], input_threshold=kw["input_threshold"], bn_scale=kw["bn_scale"])


@cli.command()
@click.argument("model")
@click.option("-o", "--output", required=True, metavar="NET.evnet", help="Where to write the converted network.")
@with_options(quant_options)
def convert(model, output, **kw):
    """Quantize and convert MODEL (.onnx, .pt/.pth or a bundled name) into an EvNet (.evnet)."""
    from .evaluate import convert_model
    from .evnet_file import save
    q, g = convert_model(model, **_convert_kwargs(kw))
    save(output, q, g)
    out.print(layer_table(q))
    out.print(f"wrote {output}")


def layer_table(q):
    mem = state_memory_bits(q)
    t = Table(title=f"{q.name}: {q.weight_bits}-bit weights, {q.act_bits}-bit activations")
    for c in ("layer", "ops", "output", "acc bits", "value bits", "gate", "state (bits)"):
        t.add_column(c, justify="right" if c not in ("layer", "ops") else "left")
    t.add_row("input", "input gate", str(q.input.shape), "-", str(q.input.bits), "yes", f"{mem['input']:,}")
    for s in q.steps:
        if hasattr(s, "terms"):
            ops_ = "+".join(x.kind for x in s.terms) + ("" if s.act == "none" else f" {s.act}") + \
                (" maxpool" * len(s.pools))
            t.add_row(s.name, ops_, str(s.out.shape), str(s.acc_bits), str(s.out.bits), "yes" if s.gated else "readout",
                      f"{mem[s.name]:,}")
        else:
            t.add_row(s.name, s.kind, str(s.out.shape), "-", "-", "-", "0")
    return t


@cli.command()
@click.argument("net")
def info(net):
    """Show a converted network: layers, widths, thresholds and state memory."""
    from .evaluate import load_network
    q, _ = load_network(net)
    out.print(layer_table(q))
    out.print(f"threshold h={q.default_threshold} (bn-scale: {q.bn_scale}), input threshold "
              f"{q.default_input_threshold if q.default_input_threshold is not None else q.default_threshold}")


# ------------------------------------------------------------------------------------ eval
@cli.command(name="eval")
@click.argument("net")
@click.option("--video", metavar="FRAMES", help="Frames: .npy/.npz (T x H x W or T x C x H x W, uint8), a video file, "
                                                "or a source name such as synthetic:shapes.")
@click.option("--policy", type=click.Choice(POLICIES), default="evnet", show_default=True)
@click.option("--threshold", type=float, help="Gate threshold h (float activation units); rrm: truncation epsilon.")
@click.option("--input-threshold", type=float, help="Input-gate threshold (pixel/255 units; default h).")
@click.option("--bn-scale/--no-bn-scale", default=None, help="Scale thresholds by BatchNorm |gamma|.")
@click.option("--granularity", default="neuron", show_default=True, help="neuron, pixel or block:K.")
@click.option("--reset-every", type=int, help="skipconv: periodic reset every N frames.")
@click.option("--norm-gate", is_flag=True, help="skipconv: per-pixel input-norm gate.")
@click.option("--rrm-bound", type=float, default=0.05, show_default=True,
              help="rrm: mean accumulated truncation per neuron that triggers an exact frame.")
@click.option("--frames", "n_frames", type=int, help="Evaluate only the first N frames.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
def eval_cmd(net, video, policy, threshold, input_threshold, bn_scale, granularity, reset_every, norm_gate,
             rrm_bound, n_frames, as_json):
    """Run NET (.evnet or a bundled model) event-driven over FRAMES; compare with dense integer and float."""
    from .evaluate import apply_thresholds, clip_for, evaluate, load_network
    q, g = load_network(net, threshold=DEFAULT_THRESHOLD)
    apply_thresholds(q, threshold, input_threshold, bn_scale)
    pol = Policy(policy, granularity=granularity, reset_every=reset_every, norm_gate=norm_gate, rrm_bound=rrm_bound)
    model = q.meta.get("model", net)
    source = video or zoo.default_video(model)
    clip = clip_for(source, q.input.shape, n_frames)
    p, task = progress(len(clip), f"eval {policy}")
    with p:
        res = evaluate(q, g, clip, pol, progress=lambda: p.advance(task), metric=zoo.metric(model))
    res["video"] = str(source)
    res["metric_unit"] = zoo.metric_unit(model) if res["metric"] is not None else None
    if as_json:
        click.echo(json.dumps(res, default=_jsonable))
        return
    out.print(eval_table(res))


def _jsonable(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    raise TypeError(type(x))


def eval_table(res):
    t = Table(title=f"{res['model']} on {res.get('video', '?')}: {res['policy']} ({res['granularity']}), "
                    f"h={res['threshold']:g}, {res['frames']} frames")
    for c in ("layer", "dense MACs", "event MACs", "savings", "events", "overhead ops", "overhead ld/st"):
        t.add_column(c, justify="left" if c == "layer" else "right")
    for name, c in res["per_layer"].items():
        sav = f"{c['dense_macs'] / c['event_macs']:.2f}x" if c["event_macs"] else ("-" if not c["dense_macs"] else "inf")
        t.add_row(name, f"{c['dense_macs']:,}", f"{c['event_macs']:,}", sav, f"{c['events']:,}",
                  f"{c['overhead_arith']:,}", f"{c['overhead_mem']:,}")
    t.add_section()
    t.add_row("total", f"{res['dense_macs']:,}", f"{res['event_macs']:,}", f"{res['mac_savings']:.2f}x",
              f"{res['events']:,}", f"{res['overhead_arith']:,}", f"{res['overhead_mem']:,}")
    grid = Table.grid(padding=(0, 2))
    grid.add_row(t)
    lines = [f"max |event - dense integer| over all frames and outputs: {res['max_abs_diff_vs_dense_int']} (integer units)"]
    if res["max_abs_diff_vs_float"] is not None:
        lines.append(f"max |event - float| = {res['max_abs_diff_vs_float']:.4g}, max |dense integer - float| = "
                     f"{res['max_abs_diff_dense_int_vs_float']:.4g} (output units; one output step = "
                     f"{res['output_scale_max']:.3g})")
    if res["overhead_arith_pct_of_saved"] is not None:
        lines.append(f"overhead: arithmetic {res['overhead_arith_pct_of_saved']:.2f} %, loads/stores "
                     f"{res['overhead_mem_pct_of_saved']:.2f} % of the saved MACs; state memory "
                     f"{res['state_memory_bits'] / 8 / 1024:.1f} KiB")
    if res["metric"] is not None:
        u = res.get("metric_unit") or ""
        fl = f", float {res['metric_float']:.4g} {u}" if res.get("metric_float") is not None else ""
        lines.append(f"metric {res['metric']:.4g} {u} (dense integer {res['metric_dense']:.4g} {u}{fl})")
    for line in lines:
        grid.add_row(line)
    return grid


# ------------------------------------------------------------------------------------ bench
@cli.group()
def bench():
    """Benchmarks (figures for docs/benchmarks.md)."""


@bench.command()
@click.option("--model", default="rand-cnn64", show_default=True)
@click.option("--video", default="synthetic:shapes", show_default=True)
@click.option("--frames", "n_frames", default=32, show_default=True)
@click.option("--threshold", type=float, default=DEFAULT_THRESHOLD, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def golden(model, video, n_frames, threshold, as_json):
    """Frames per second of the golden model: event path vs dense integer path."""
    from .bench import bench_golden
    res = bench_golden(model, video, n_frames, threshold)
    if as_json:
        click.echo(json.dumps(res))
        return
    t = Table(title=f"golden model speed: {model}, {res['frames']} frames of {video}, h={threshold:g}")
    for c in ("path", "frames/s", "ms/frame", "MACs/frame"):
        t.add_column(c, justify="left" if c == "path" else "right")
    for k in ("dense", "event"):
        r = res[k]
        t.add_row(k, f"{r['fps']:.1f}", f"{1000 / r['fps']:.2f}", f"{r['macs_per_frame']:,.0f}")
    out.print(t)
    out.print(f"event path speed-up {res['event']['fps'] / res['dense']['fps']:.2f}x for "
              f"{res['mac_savings']:.2f}x fewer MACs ({res['machine']})")


# ------------------------------------------------------------------------------------ study
@cli.command()
@click.option("-o", "--output", default="docs/results", show_default=True, metavar="DIR", help="Report folder.")
@click.option("--model", "models", multiple=True, help="Conv model(s) to study (default: objects-cnn, enhance-cnn).")
@click.option("--mlp", default="temporal-digits-mlp", show_default=True, help="MLP for the rounding study ('' skips it).")
@click.option("--video", "videos", multiple=True, metavar="MODEL=SOURCE", help="Use SOURCE for MODEL.")
@click.option("--frames", "n_frames", type=int, help="Frames per sequence (default: each source's own).")
@click.option("--thresholds", help="Comma-separated threshold sweep (default 0.005,...,0.32).")
@click.option("--tolerance", type=float, default=0.5, show_default=True, help="pp accuracy or dB PSNR for best points.")
@click.option("--tiny", is_flag=True, help="A tiny configuration (one model, 6 frames, 2 thresholds).")
@click.option("--json", "as_json", is_flag=True, help="Print summary.json to stdout.")
def study(output, models, mlp, videos, n_frames, thresholds, tolerance, tiny, as_json):
    """Reproduce the EvNet paper's accuracy/operations analyses; write Markdown, JSON and PNG plots."""
    from .study import StudyConfig, count_runs, run_study
    cfg = StudyConfig.tiny() if tiny else StudyConfig()
    if models:
        cfg.conv_models = tuple(models)
    cfg.mlp = mlp or None
    if n_frames is not None:
        cfg.frames = n_frames
    if thresholds:
        th = _floats(thresholds)
        cfg.thresholds = th if isinstance(th, tuple) else (th,)
    cfg.tolerance = tolerance
    for v in videos:
        m, sep, src = v.partition("=")
        if not sep:
            raise click.BadParameter(f"--video takes MODEL=SOURCE, not {v!r}")
        cfg.videos[m] = src
    for m in (*cfg.conv_models, *([cfg.mlp] if cfg.mlp else [])):
        zoo.spec(m)
    p, task = progress(count_runs(cfg), "study")
    with p:
        res = run_study(cfg, output, progress=lambda label: p.advance(task), log=err.print)
    summary = json.loads((__import__("pathlib").Path(output) / "summary.json").read_text())
    if as_json:
        click.echo(json.dumps(summary))
        return
    t = Table(title=f"best evnet operating points (within {tolerance} of dense integer)")
    for c in ("model", "video", "h", "savings", "metric", "dense int."):
        t.add_column(c)
    for m, v in summary.items():
        if m == "default" or v.get("threshold") is None:
            continue
        t.add_row(m, v["video"], f"{v['threshold']:g}", f"{v['mac_savings']:.2f}x", f"{v['metric']:.2f}",
                  f"{v['metric_dense']:.2f}")
    out.print(t)
    out.print(f"report: {output}/report.md ({res['seconds']} s)")


# ------------------------------------------------------------------------------------ data
@cli.group()
def data():
    """Workload data that ships inside packages (no downloads at run time)."""


@data.command(name="install")
@click.argument("packages", nargs=-1)
def data_install(packages):
    """Fetch and extract the Debian data packages (opencv-doc, dataset-fashion-mnist) into the data folder."""
    from .datasets import DEBIAN, data_dir, install_debian
    install_debian(packages or tuple(DEBIAN), echo=out.print)
    out.print(f"data folder: {data_dir()} (set EVHW_DATA_DIR to move it)")


@data.command(name="list")
def data_list():
    """Named frame sources and whether their data is installed."""
    from .datasets import catalog
    t = Table(title="frame sources (use the name wherever FRAMES is accepted, e.g. --video opencv:vtest)")
    for c in ("source", "kind", "status"):
        t.add_column(c)
    for row in catalog():
        t.add_row(*row)
    t.add_row("synthetic:shapes", "synthetic video", "built in")
    out.print(t)


# ------------------------------------------------------------------------------------ zoo
@cli.group(name="zoo")
def zoo_cmd():
    """Bundled reference models."""


@zoo_cmd.command(name="list")
def zoo_list():
    """The bundled models, their default videos and metrics."""
    t = Table(title="bundled models (default: " + zoo.DEFAULT_MODEL + ")")
    for c in ("model", "about", "default video", "metric"):
        t.add_column(c)
    for name in zoo.names():
        m = zoo.spec(name)
        t.add_row(name, m.about, m.video, (m.metric.__name__ + f" ({m.unit})") if m.metric else "-")
    out.print(t)


@zoo_cmd.command(name="train")
@click.argument("name")
@click.option("--steps", type=int, help="Optimizer steps (default: the model's recipe).")
@click.option("--seed", default=0, show_default=True)
@click.option("-o", "--output", metavar="WEIGHTS.npz", help="Where to write the weights (default: the package's).")
@click.option("--json", "as_json", is_flag=True)
def zoo_train(name, steps, seed, output, as_json):
    """Train bundled model NAME on CPU with fixed seeds and write its weights."""
    from .train import RECIPES, train
    total = steps if steps is not None else RECIPES.get(name, (0,))[0]
    p, task = progress(total, f"train {name}")
    with p:
        res = train(name, steps=steps, seed=seed, out=output,
                    progress=lambda s, loss: p.update(task, completed=s, description=f"train {name} loss {loss:.4f}"),
                    log=err.print)
    if as_json:
        click.echo(json.dumps(res))
        return
    out.print(f"{name}: {res['steps']} steps in {res['seconds']} s, final loss {res['loss']:.4g}, float metric "
              f"{res['metric']:.4g} {res['unit']} on {zoo.default_video(name)}; wrote {res['weights']}")


# ------------------------------------------------------------------------------------ demo
@cli.command()
@click.option("--frames", "n_frames", default=24, show_default=True, help="Frames for the golden-model comparison.")
@click.option("--hw/--no-hw", default=True, show_default=True, help="Also generate and simulate the hardware.")
@click.option("--hw-frames", default=3, show_default=True, help="Frames to simulate on Verilator.")
@click.option("--pes", default=4, show_default=True, help="Processing elements of the generated array.")
@click.option("--build", "build_dir", default="build/demo", show_default=True, help="Where to generate the hardware.")
def demo(n_frames, hw, hw_frames, pes, build_dir):
    """Convert the default bundled model, compare EvNet, Skip-Conv, RRM and dense on its default video, then
    generate its hardware and check it bit-exact against the golden model on Verilator."""
    from .evaluate import apply_thresholds, clip_for, convert_model, evaluate, references
    name = zoo.DEFAULT_MODEL
    out.rule(f"evhw demo: {name}")
    q, g = convert_model(name, threshold=DEFAULT_THRESHOLD)
    out.print(layer_table(q))
    source = zoo.default_video(name)
    clip = clip_for(source, q.input.shape, n_frames)
    unit = zoo.metric_unit(name)
    runs = [("evnet", Policy("evnet"), DEFAULT_THRESHOLD), ("skipconv", Policy("skipconv"), DEFAULT_THRESHOLD),
            ("skipconv-reset8", Policy("skipconv", reset_every=8), DEFAULT_THRESHOLD),
            ("rrm", Policy("rrm"), DEFAULT_THRESHOLD), ("dense", Policy("dense"), DEFAULT_THRESHOLD),
            ("evnet h=0", Policy("evnet"), 0.0)]
    t = Table(title=f"{name} on {len(clip)} frames of {source}")
    for c in ("policy", "h", "MACs/frame", "savings", "events", f"metric ({unit})", "max |out - dense int|",
              "max |out - float|"):
        t.add_column(c, justify="left" if c == "policy" else "right")
    p, task = progress(len(runs) * len(clip), "demo")
    exact = None
    refs = references(q, g, clip)
    with p:
        for label, pol, h in runs:
            apply_thresholds(q, h)
            r = evaluate(q, g, clip, pol, progress=lambda: p.advance(task), metric=zoo.metric(name), refs=refs)
            t.add_row(label, f"{h:g}", f"{r['event_macs_per_frame']:,.0f}", f"{r['mac_savings']:.2f}x",
                      f"{r['events']:,}", "-" if r["metric"] is None else f"{r['metric']:.2f}",
                      str(r["max_abs_diff_vs_dense_int"]), f"{r['max_abs_diff_vs_float']:.3g}")
            if label == "evnet h=0":
                exact = r["max_abs_diff_vs_dense_int"] == 0
    out.print(t)
    out.print(f"threshold 0 reproduces dense integer inference bit for bit: {'yes' if exact else 'NO'}")
    if not exact:
        sys.exit(1)
    if hw and not demo_hardware(name, clip, pes, hw_frames, build_dir):
        sys.exit(1)


def demo_hardware(name, clip, pes, n_frames, build_dir):
    """Generate the array for ``name``, simulate ``n_frames`` on Verilator, print the verdict beside the golden
    model's figures. Returns True when every frame is bit-exact."""
    from .cli_hw import generate_build
    from .evaluate import apply_thresholds
    from .evnet_file import load
    from .golden import EventModel
    try:
        from sim.runner import require
        from sim.session import simulate
        require("verilator")
    except (ImportError, Exception) as e:   # noqa: BLE001 - any missing piece of the simulation stack
        raise EvhwError(f"the hardware part of the demo needs the sim extra: pip install 'evhw[sim]' ({e})") from None
    out.rule(f"hardware: {name}, P={pes}, Verilator")
    err.print(f"generating the array into {build_dir} ...")
    generate_build(name, pes=pes, out_dir=build_dir, threshold=DEFAULT_THRESHOLD)
    q, _ = load(f"{build_dir}/net.evnet")
    apply_thresholds(q, DEFAULT_THRESHOLD)
    frames = clip.frames[:n_frames]
    err.print(f"compiling with Verilator and simulating {len(frames)} frames (a few minutes on 2 cores) ...")
    s = simulate(build_dir, q, frames, policy="evnet", simulator="verilator", seed=1)
    golden = EventModel(q, Policy("evnet"))
    t = Table(title=f"RTL vs golden model, evnet h={DEFAULT_THRESHOLD:g}")
    for c in ("frame", "kind", "golden MACs", "golden events", "RTL cycles", "ideal cycles", "bit-exact"):
        t.add_column(c, justify="right")
    for f, row in zip(frames, s["per_frame"]):
        g = golden.step(f)
        t.add_row(str(row["frame"]), row["kind"], f"{g.event_macs:,}", f"{g.events:,}", f"{row['cycles']:,}",
                  f"{row['ideal_cycles']:,.0f}", "yes" if row["bit_exact"] else "NO")
    out.print(t)
    busy = s["pe_busy_fraction"]
    out.print(f"hardware bit-exact with the golden model on every frame and event count: "
              f"{'yes' if s['bit_exact'] else 'NO'}; PEs busy {100 * busy:.1f} % of the cycles"
              if busy is not None else f"bit-exact: {s['bit_exact']}")
    if not s["bit_exact"]:
        for m in s["mismatches"][:5]:
            err.print(f"mismatch: {m}")
    return s["bit_exact"]


def _register_hardware_commands():
    from . import cli_hw, cli_report
    cli_hw.register(cli)
    cli_report.register(cli)


_register_hardware_commands()


def main(argv=None):
    try:
        cli.main(args=argv, prog_name="evhw", standalone_mode=False)
    except EvhwError as e:
        err.print(f"[bold red]evhw: error:[/] {e}", highlight=False)
        sys.exit(2)
    except click.exceptions.Abort:
        err.print("aborted")
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
