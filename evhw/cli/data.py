"""``evhw data install`` and ``evhw data list``: workload data from packages."""
from __future__ import annotations

import click
from rich.table import Table

from .console import out


@click.group()
def data():
    """Workload data that ships inside packages (no downloads at run time)."""


@data.command(name="install")
@click.argument("packages", nargs=-1)
def data_install(packages):
    """Fetch and extract the Debian data packages (opencv-doc, dataset-fashion-mnist) into the data folder."""
    from ..data.install import DEBIAN, data_dir, install_debian
    install_debian(packages or tuple(DEBIAN), echo=out.print)
    out.print(f"data folder: {data_dir()} (set EVHW_DATA_DIR to move it)")


@data.command(name="list")
def data_list():
    """Named frame sources and whether their data is installed."""
    from ..data import catalog
    t = Table(title="frame sources (use the name wherever FRAMES is accepted, e.g. --video opencv:vtest)")
    for c in ("source", "kind", "status"):
        t.add_column(c)
    for row in catalog():
        t.add_row(*row)
    out.print(t)
