"""The ``evhw`` command. Command names, flags and JSON keys are a contract: extend, never rename.

Each command group lives in its own module and is imported only when the command is invoked or
listed in the help; the commands only parse flags, call the flow layer (evhw.flow) and print.
"""
from __future__ import annotations

import importlib
import os
import sys
import traceback
from pathlib import Path

import click

from ..errors import EvhwError, MismatchError

#: command name -> (module, attribute), imported on first use
COMMANDS = {
    "convert": ("evhw.cli.net", "convert"),
    "info": ("evhw.cli.net", "info"),
    "eval": ("evhw.cli.net", "eval_cmd"),
    "generate": ("evhw.cli.hw", "generate"),
    "sim": ("evhw.cli.hw", "sim"),
    "report": ("evhw.cli.report", "report"),
    "bench": ("evhw.cli.bench", "bench"),
    "study": ("evhw.cli.study", "study"),
    "data": ("evhw.cli.data", "data"),
    "zoo": ("evhw.cli.zoo", "zoo_cmd"),
    "demo": ("evhw.cli.demo", "demo"),
    "soak": ("evhw.cli.soak", "soak"),
}


class LazyGroup(click.Group):
    """A click group whose commands are imported from ``lazy`` (name -> (module, attribute)) on first use."""

    def __init__(self, *args, lazy=None, **kw):
        super().__init__(*args, **kw)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx):
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx, name):
        if name not in self.commands and name in self.lazy:
            module, attr = self.lazy[name]
            self.add_command(getattr(importlib.import_module(module), attr), name)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="evhw")
def cli():
    """evhw: convert trained networks into Event Neural Networks and generate their hardware."""


#: exit code of an unexpected exception (a bug); 1 is a simulation mismatch, 2 an error in the input.
INTERNAL_ERROR = 3


def main(argv=None):
    from .console import err
    try:
        cli.main(args=argv, prog_name="evhw", standalone_mode=False)
    except MismatchError as e:
        _error(str(e))
        sys.exit(1)
    except EvhwError as e:
        _error(str(e))
        sys.exit(2)
    except click.exceptions.Abort:
        err.print("aborted")
        sys.exit(130)
    except click.ClickException as e:
        # one line, like every other error: the problem (click names the flag), then where to get help
        ctx = getattr(e, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if isinstance(e, click.UsageError) and ctx else ""
        _error(e.format_message() + hint)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as e:   # noqa: BLE001 - a bug in evhw: one line by default, the traceback on request
        if os.environ.get("EVHW_TRACEBACK"):
            raise
        where = traceback.extract_tb(e.__traceback__)[-1]
        _error(f"internal error (a bug in evhw, please report it): {type(e).__name__}: {e} "
               f"[{Path(where.filename).name}:{where.lineno}; EVHW_TRACEBACK=1 shows the traceback]")
        sys.exit(INTERNAL_ERROR)


def _error(message):
    from rich.markup import escape

    from .console import err
    one_line = str(message).replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    err.print(f"[bold red]evhw: error:[/] {escape(one_line)}", highlight=False)
