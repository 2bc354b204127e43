"""``evhw study``: the EvNet paper's analyses (evhw.flow.study) as a report folder."""
from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from .. import zoo
from ..data.clip import MAX_FRAMES
from .console import Real, err, out, progress


@click.command()
@click.option("-o", "--output", default="docs/results", show_default=True, metavar="DIR", help="Report folder.")
@click.option("--model", "models", multiple=True, help="Conv model(s) to study (default: objects-cnn, enhance-cnn).")
@click.option("--mlp", default="temporal-digits-mlp", show_default=True, help="MLP for the rounding study ('' skips it).")
@click.option("--video", "videos", multiple=True, metavar="MODEL=SOURCE", help="Use SOURCE for MODEL.")
@click.option("--frames", "n_frames", type=click.IntRange(1, MAX_FRAMES),
              help="Frames per sequence (default: each source's own).")
@click.option("--thresholds", type=Real(lo=0, many=True),
              help="Comma-separated threshold sweep (default 0.005,...,0.32).")
@click.option("--tolerance", type=Real(lo=0), default=0.5, show_default=True,
              help="pp accuracy or dB PSNR for best points.")
@click.option("--tiny", is_flag=True, help="A tiny configuration (one model, 6 frames, 2 thresholds).")
@click.option("--json", "as_json", is_flag=True, help="Print summary.json to stdout.")
def study(output, models, mlp, videos, n_frames, thresholds, tolerance, tiny, as_json):
    """Reproduce the EvNet paper's accuracy/operations analyses; write Markdown, JSON and PNG plots."""
    from ..flow.study import StudyConfig, count_runs, read_summary, run_study
    cfg = StudyConfig.tiny() if tiny else StudyConfig()
    if models:
        cfg.conv_models = tuple(models)
    cfg.mlp = mlp or None
    if n_frames is not None:
        cfg.frames = n_frames
    if thresholds is not None:
        cfg.thresholds = thresholds if isinstance(thresholds, tuple) else (thresholds,)
    cfg.tolerance = tolerance
    studied = (*cfg.conv_models, *([cfg.mlp] if cfg.mlp else []))
    for m in studied:
        zoo.spec(m)
    for v in videos:
        m, sep, src = v.partition("=")
        if not sep or not m or not src:
            raise click.BadParameter(f"takes MODEL=SOURCE, not {v!r}", param_hint="'--video'")
        if m not in studied:
            raise click.BadParameter(f"{m!r} is not a studied model ({', '.join(studied)})", param_hint="'--video'")
        cfg.videos[m] = src
    _check_folder(Path(output))
    p, task = progress(count_runs(cfg), "study")
    with p:
        res = run_study(cfg, output, progress=lambda label: p.advance(task), log=err.print)
    summary = read_summary(output)
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


def _check_folder(path: Path):
    """The report folder must be (or become) a directory: refuse a file, or a path under a file."""
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise click.BadParameter(f"{path}: {p} is a file, not a folder", param_hint="'-o' / '--output'")
            return
