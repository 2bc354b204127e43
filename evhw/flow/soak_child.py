"""``python -m evhw.flow.soak_child WORK``: one ``evhw soak`` run in a process of its own.

:func:`evhw.flow.soak.execute` starts it (in its own process group, under a wall-clock limit) with
``WORK/params.json`` (the run's parameters) and, for a replay, ``WORK/given-net.evnet`` and
``WORK/given-frames.npy``; it writes ``WORK/result.json`` (status, message, policy as run).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def main(work):
    from rtl_gen.procs import die_with_parent
    die_with_parent()                       # the worker killed: everything this run started goes too
    from .soak import run_case
    work = Path(work)
    p = json.loads((work / "params.json").read_text())
    given = {n: (work / ("given-" + n)).read_bytes() for n in ("net.evnet", "frames.npy")
             if (work / ("given-" + n)).is_file()}
    res = run_case(p, work, given or None)
    tmp = work / "result.json.tmp"
    tmp.write_text(json.dumps(res))
    tmp.replace(work / "result.json")


if __name__ == "__main__":
    main(sys.argv[1])
