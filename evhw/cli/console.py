"""The consoles, progress bars and flag parsers shared by the commands."""
from __future__ import annotations

import sys
from contextlib import nullcontext

import click
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

# Errors are one line: don't let rich wrap them at 80 columns when stderr is a file or pipe.
err = Console(stderr=True, width=None if sys.stderr.isatty() else 10_000)
# Tables are wide: when stdout is a file or pipe, don't wrap them at rich's default of 80 columns.
out = Console(width=None if sys.stdout.isatty() else 120)


class Real(click.ParamType):
    """A finite float, optionally bounded below (``lo``; ``lo_open``: strictly above ``lo``); with ``many``,
    a comma-separated list of them (a tuple, or one number when one is given)."""

    def __init__(self, lo=None, lo_open=False, many=False):
        self.lo, self.lo_open, self.many = lo, lo_open, many
        self.name = "numbers" if many else "number"

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        try:
            v = tuple(float(x) for x in value.split(","))
        except ValueError:
            what = "comma-separated numbers" if self.many else "a number"
            self.fail(f"expected {what}, not {value!r}", param, ctx)
        if len(v) > 1 and not self.many:
            self.fail(f"expected one number, not {value!r}", param, ctx)
        for x in v:
            if not np.isfinite(x) or (self.lo is not None and (x <= self.lo if self.lo_open else x < self.lo)):
                bound = "" if self.lo is None else f" {'>' if self.lo_open else '>='} {self.lo:g}"
                self.fail(f"must be finite{bound}, not {value!r}", param, ctx)
        return v if len(v) > 1 else v[0]


#: thresholds: finite and >= 0
THRESHOLD = Real(lo=0)


class IntList(click.ParamType):
    """A comma-separated list of integers in ``lo..hi`` (a tuple)."""

    name = "N,N,..."

    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return tuple(value)
        try:
            v = tuple(int(x) for x in value.split(","))
        except ValueError:
            v = ()
        if not v or min(v) < self.lo or max(v) > self.hi:
            self.fail(f"expected comma-separated integers in {self.lo}..{self.hi}, not {value!r}", param, ctx)
        return v


class Shape(click.ParamType):
    """A tensor shape ``C,H,W`` or ``F`` of positive integers."""

    name = "C,H,W"

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        try:
            v = tuple(int(x) for x in value.split(","))
        except ValueError:
            v = ()
        if len(v) not in (1, 3) or min(v) < 1:
            self.fail(f"expected a shape like 1,64,64 (C,H,W) or 64 (F), not {value!r}", param, ctx)
        return v


def progress(total, label):
    """A transient progress bar on stderr (hidden when stderr is not a terminal) and its task."""
    p = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err,
                 transient=True, disable=not err.is_terminal)
    return p, p.add_task(label, total=total)


def status(message):
    """A spinner on stderr while a long step runs (nothing when stderr is not a terminal)."""
    return err.status(message, spinner="dots") if err.is_terminal else nullcontext()


def with_options(opts):
    def deco(f):
        for o in reversed(opts):
            f = o(f)
        return f
    return deco


def jsonable(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    raise TypeError(type(x))


class bar:
    """``with bar(label) as tick:`` a progress bar whose ``tick(done, total)`` sets its position."""

    def __init__(self, label):
        self.progress, self.task = progress(None, label)

    def __enter__(self):
        self.progress.__enter__()
        return self.tick

    def tick(self, done, total):
        self.progress.update(self.task, completed=done, total=total)

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)
