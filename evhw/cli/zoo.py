"""``evhw zoo list`` and ``evhw zoo train``: the bundled reference models."""
from __future__ import annotations

import json

import click
from rich.table import Table

from .. import zoo
from .console import err, out, progress


@click.group(name="zoo")
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
@click.option("--steps", type=click.IntRange(min=1), help="Optimizer steps (default: the model's recipe).")
@click.option("--seed", default=0, show_default=True)
@click.option("-o", "--output", metavar="WEIGHTS.npz", help="Where to write the weights (default: the package's).")
@click.option("--json", "as_json", is_flag=True)
def zoo_train(name, steps, seed, output, as_json):
    """Train bundled model NAME on CPU with fixed seeds and write its weights."""
    from ..train import RECIPES, train
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
