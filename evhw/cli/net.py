"""``evhw convert``, ``evhw info`` and ``evhw eval``: networks and the golden model."""
from __future__ import annotations

import json

import click
from rich.table import Table

from ..convert import ACT_BITS, WEIGHT_BITS
from ..data.clip import MAX_FRAMES
from ..flow.network import DEFAULT_THRESHOLD
from ..golden import POLICIES, RRM_BOUND, state_memory_bits
from ..qnet import MAX_ACC_BITS
from .console import THRESHOLD, Real, Shape, bar, jsonable, out, with_options

FRAMES = click.IntRange(1, MAX_FRAMES)


# ------------------------------------------------------------------------------------ convert
quant_options = [
    click.option("--calib", "calib", metavar="FRAMES", help="Calibration frames (.npy/.npz/video or a source name)."),
    click.option("--calib-frames", type=FRAMES, default=16, show_default=True, help="Number of calibration frames."),
    click.option("--weight-bits", type=click.IntRange(*WEIGHT_BITS), default=8, show_default=True,
                 help="Weight bits, per-channel symmetric."),
    click.option("--act-bits", type=click.IntRange(*ACT_BITS), default=8, show_default=True, help="Activation bits."),
    click.option("--acc-bits", type=click.IntRange(2, MAX_ACC_BITS),
                 help="Force one accumulator width (refused if below the proven bound)."),
    click.option("--input-mean", type=Real(many=True),
                 help="Per-channel mean of pixel/255, folded into the first layer (e.g. 0.485,0.456,0.406)."),
    click.option("--input-std", type=Real(lo=0, lo_open=True, many=True),
                 help="Per-channel std of pixel/255, folded into the first layer."),
    click.option("--input-shape", type=Shape(), help="Model input shape C,H,W (PyTorch models)."),
    click.option("--threshold", "threshold", type=THRESHOLD, default=DEFAULT_THRESHOLD, show_default=True,
                 help="Default gate threshold h, in float activation units."),
    click.option("--input-threshold", type=THRESHOLD,
                 help="Input-gate threshold in the network input's units: pixel/255, or the normalized input "
                      "with --input-mean/--input-std (default: h)."),
    click.option("--bn-scale/--no-bn-scale", default=False, help="Scale thresholds per channel by BatchNorm |gamma|."),
]


def _convert_kwargs(kw):
    return dict(calib=kw["calib"], calib_frames=kw["calib_frames"], input_shape=kw["input_shape"],
                weight_bits=kw["weight_bits"], act_bits=kw["act_bits"], acc_bits=kw["acc_bits"],
                input_mean=kw["input_mean"], input_std=kw["input_std"],
                threshold=kw["threshold"], input_threshold=kw["input_threshold"], bn_scale=kw["bn_scale"])


@click.command()
@click.argument("model")
@click.option("-o", "--output", required=True, metavar="NET.evnet", help="Where to write the converted network.")
@with_options(quant_options)
def convert(model, output, **kw):
    """Quantize and convert MODEL (.onnx, .pt/.pth or a bundled name) into an EvNet (.evnet)."""
    from ..flow.network import convert_to_file
    q = convert_to_file(model, output, **_convert_kwargs(kw))
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


@click.command()
@click.argument("net")
def info(net):
    """Show a converted network: layers, widths, thresholds and state memory."""
    from ..flow.network import load_network
    q, _ = load_network(net)
    out.print(layer_table(q))
    outs = [o + (f" ({q.output_op(i)} on the host)" if q.output_op(i) else "") for i, o in enumerate(q.outputs)]
    out.print(f"output{'s' if len(outs) > 1 else ''}: {', '.join(outs)}")
    out.print(f"threshold h={q.default_threshold} (bn-scale: {q.bn_scale}), input threshold "
              f"{q.default_input_threshold if q.default_input_threshold is not None else q.default_threshold}")


# ------------------------------------------------------------------------------------ eval
@click.command(name="eval")
@click.argument("net")
@click.option("--video", metavar="FRAMES", help="Frames: .npy/.npz (T x H x W or T x C x H x W, uint8), a video file, "
                                                "or a source name such as synthetic:shapes.")
@click.option("--policy", type=click.Choice(POLICIES), default="evnet", show_default=True)
@click.option("--threshold", type=THRESHOLD, help="Gate threshold h (float activation units); rrm: truncation epsilon.")
@click.option("--input-threshold", type=THRESHOLD,
              help="Input-gate threshold (the network input's units: pixel/255 or normalized; default h).")
@click.option("--bn-scale/--no-bn-scale", default=None, help="Scale thresholds by BatchNorm |gamma|.")
@click.option("--granularity", default="neuron", show_default=True, help="neuron, pixel or block:K.")
@click.option("--reset-every", type=click.IntRange(min=1), help="skipconv: periodic reset every N frames.")
@click.option("--norm-gate", is_flag=True, help="skipconv: per-pixel input-norm gate.")
@click.option("--rrm-bound", type=Real(lo=0, lo_open=True), default=RRM_BOUND, show_default=True,
              help="rrm: mean accumulated truncation per neuron that triggers an exact frame.")
@click.option("--frames", "n_frames", type=FRAMES, help="Evaluate only the first N frames.")
@click.option("--agreement", metavar="METRIC",
              help="Agreement metric for every output: argmax, topk:K, psnr or rel-l2 (default: per output "
                   "shape: argmax for vectors, psnr for spatial maps).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
def eval_cmd(net, video, policy, threshold, input_threshold, bn_scale, granularity, reset_every, norm_gate,
             rrm_bound, n_frames, agreement, as_json):
    """Run NET (.evnet or a bundled model) event-driven over FRAMES; compare with dense integer and float."""
    from ..flow.evaluation import eval_network
    with bar(f"eval {policy}") as tick:
        res = eval_network(net, video=video, policy=policy, threshold=threshold, input_threshold=input_threshold,
                           bn_scale=bn_scale, granularity=granularity, reset_every=reset_every, norm_gate=norm_gate,
                           rrm_bound=rrm_bound, n_frames=n_frames, progress=tick, agreement=agreement)
    if as_json:
        click.echo(json.dumps(res, default=jsonable))
        return
    out.print(eval_table(res))


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
    fl_agree = res.get("agreement_dense_vs_float") or [None] * len(res.get("agreement") or [])
    for a, f in zip(res.get("agreement") or [], fl_agree):
        fmt = (lambda v: "identical" if v is None else f"{v:.4g}")   # noqa: E731 - psnr None = identical
        lines.append(f"output {a['output']}: {a['metric']} agreement event vs dense integer {fmt(a['value'])}"
                     + (f", dense integer vs float {fmt(f['value'])}" if f is not None else ""))
    if res["metric"] is not None:
        u = res.get("metric_unit") or ""
        fl = f", float {res['metric_float']:.4g} {u}" if res.get("metric_float") is not None else ""
        lines.append(f"metric {res['metric']:.4g} {u} (dense integer {res['metric_dense']:.4g} {u}{fl})")
    for line in lines:
        grid.add_row(line)
    return grid
