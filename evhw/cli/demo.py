"""``evhw demo``: the default bundled model through every policy, then through its hardware."""
from __future__ import annotations

import sys

import click
from rich.table import Table

from .. import zoo
from ..flow.network import DEFAULT_THRESHOLD
from .console import bar, err, out
from .net import layer_table


@click.command()
@click.option("--frames", "n_frames", default=24, show_default=True, help="Frames for the golden-model comparison.")
@click.option("--hw/--no-hw", default=True, show_default=True, help="Also generate and simulate the hardware.")
@click.option("--hw-frames", default=3, show_default=True, help="Frames to simulate on Verilator.")
@click.option("--pes", default=4, show_default=True, help="Processing elements of the generated array.")
@click.option("--build", "build_dir", default="build/demo", show_default=True, help="Where to generate the hardware.")
def demo(n_frames, hw, hw_frames, pes, build_dir):
    """Convert the default bundled model, compare EvNet, Skip-Conv, RRM and dense on its default video, then
    generate its hardware and check it bit-exact against the golden model on Verilator."""
    from ..flow.demo import compare_policies, demo_network
    name = zoo.DEFAULT_MODEL
    out.rule(f"evhw demo: {name}")
    q, g = demo_network(name)
    out.print(layer_table(q))
    unit = zoo.metric_unit(name)
    with bar("demo") as tick:
        source, clip, rows = compare_policies(name, q, g, n_frames, progress=tick)
    t = Table(title=f"{name} on {len(clip)} frames of {source}")
    for c in ("policy", "h", "MACs/frame", "savings", "events", f"metric ({unit})", "max |out - dense int|",
              "max |out - float|"):
        t.add_column(c, justify="left" if c == "policy" else "right")
    exact = None
    for label, h, r in rows:
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
    """Generate and simulate the array (evhw.flow.demo), print the verdict beside the golden model's figures.
    Returns True when every frame is bit-exact."""
    from ..flow import demo as flow
    flow.require_hardware()
    out.rule(f"hardware: {name}, P={pes}, Verilator")
    s, golden = flow.demo_hardware(name, clip, pes, n_frames, build_dir, log=err.print)
    t = Table(title=f"RTL vs golden model, evnet h={DEFAULT_THRESHOLD:g}")
    for c in ("frame", "kind", "golden MACs", "golden events", "RTL cycles", "ideal cycles", "bit-exact"):
        t.add_column(c, justify="right")
    for g, row in zip(golden, s["per_frame"]):
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
