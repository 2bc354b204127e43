"""``evhw soak``: randomized verification campaigns on Dask (the logic lives in :mod:`evhw.flow.soak`).

``evhw soak --runs N --seed S`` draws N random cases (network, threshold, video, policy, P,
simulator, stalls), simulates them in parallel (an embedded Dask LocalCluster, or ``--cluster
tcp://HOST:8786``), checks each bit for bit against the golden model and records every run in
``--db``; ``evhw soak --replay ID`` reruns a saved failure. Exit code 1 when a run failed.
"""
from __future__ import annotations

import json
import shlex
import sys

import click

from rtl_gen.limits import HW_POLICIES, MAX_PES
from sim.limits import SIMULATORS

from ..errors import MismatchError
from ..flow.netgen import NET_KINDS
from ..flow.soak import DEFAULT_DB, DEFAULT_RUN_LIMIT, DEFAULT_STRUCTURES
from .console import IntList, err, out


class Choices(click.ParamType):
    """A comma-separated subset of ``choices`` (a tuple, in the given order, without repeats)."""

    name = "A,B,..."

    def __init__(self, choices):
        self.choices = tuple(choices)

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return tuple(value)
        v = tuple(dict.fromkeys(x.strip() for x in value.split(",")))
        bad = [x for x in v if x not in self.choices]
        if not v or bad:
            self.fail(f"expected comma-separated values of {', '.join(self.choices)}, not {value!r}", param, ctx)
        return v


@click.command()
@click.option("--runs", type=click.IntRange(min=1), default=20, show_default=True, help="Runs in the campaign.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Campaign seed (run i draws from seed and i).")
@click.option("--simulators", type=Choices(SIMULATORS), default=",".join(SIMULATORS), show_default=True)
@click.option("--pes", type=IntList(1, MAX_PES), default="1,2,4,8", show_default=True, help="PE counts to draw from.")
@click.option("--policies", type=Choices(HW_POLICIES), default=",".join(HW_POLICIES), show_default=True)
@click.option("--nets", type=Choices(NET_KINDS), default=",".join(NET_KINDS), show_default=True,
              help="Network kinds to draw from.")
@click.option("--frames", "max_frames", type=click.IntRange(2, 64), default=3, show_default=True,
              help="Most frames per run (2..N drawn).")
@click.option("--structures", type=click.IntRange(min=0), default=DEFAULT_STRUCTURES, show_default=True,
              help="Size K of the pool of builds: run i takes the network structure, P and simulator of entry i mod K and new "
                   "weights, biases and thresholds (one simulator build per entry with a build cache); 0: every "
                   "run its own network.")
@click.option("--run-limit", type=click.FloatRange(min=0), default=DEFAULT_RUN_LIMIT, show_default=True, metavar="SECONDS",
              help="Wall-clock limit of one run: past it the run and its processes are killed and it is recorded "
                   "as a hang (0: none).")
@click.option("--workers", type=click.IntRange(min=1), help="Workers of the embedded cluster (default: the cores).")
@click.option("--cluster", metavar="ADDRESS", help="An existing Dask scheduler, e.g. tcp://HOST:8786.")
@click.option("--db", default=DEFAULT_DB, show_default=True, metavar="FILE",
              help="SQLite results; failures go to FILE's stem + '-repro/'.")
@click.option("--replay", metavar="ID", help="Rerun the saved failing run ID here and report it.")
@click.option("--generator", hidden=True, metavar="MODULE:FUNCTION",
              help="Replace rtl_gen.export.generate (tests inject broken designs).")
@click.option("--threads", is_flag=True, hidden=True, help="Embedded cluster with threads, not processes (tests).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def soak(runs, seed, simulators, pes, policies, nets, max_frames, structures, run_limit, workers, cluster, db, replay,
         generator, threads, as_json):
    """Randomized verification campaign: random networks, videos, policies, P and stalls, simulated in
    parallel on Dask and checked bit for bit (every frame, every event count) against the golden model."""
    from ..flow import soak as flow
    if replay is not None:
        res = flow.replay(replay, db, limit=run_limit)
        if as_json:
            click.echo(json.dumps(res))
        else:
            out.print(f"replay {res['id']}: {res['status']} (recorded: {res['recorded']}) in {res['seconds']:.1f} s"
                      + (f": {res['message']}" if res["message"] else ""), highlight=False)
        if res["status"] != "ok":
            raise MismatchError(f"replay {res['id']}: {res['status']}: {res['message']}")
        return
    if cluster is not None and workers is not None:
        raise click.UsageError("--workers sizes the embedded cluster; it does not apply with --cluster")
    if generator is not None and ":" not in generator:
        raise click.BadParameter(f"expected MODULE:FUNCTION, not {generator!r}", param_hint="--generator")
    campaign = flow.Campaign(seed=seed, simulators=simulators, pes=pes, policies=policies, nets=nets,
                             max_frames=max_frames, generator=generator, structures=structures)
    command = shlex.join(["evhw", *sys.argv[1:]]) if sys.argv[1:2] == ["soak"] else \
        shlex.join(["evhw", "soak", "--runs", str(runs), "--seed", str(seed), "--simulators", ",".join(simulators),
                    "--pes", ",".join(map(str, pes)), "--policies", ",".join(policies), "--nets", ",".join(nets),
                    "--frames", str(max_frames), "--structures", str(structures), "--run-limit", f"{run_limit:g}",
                    "--db", db] + (["--generator", generator] if generator else []))
    from .console import bar
    with bar("soak") as tick:
        res = flow.run_campaign(campaign, runs, db_path=db, workers=workers, cluster=cluster,
                                processes=not threads, command=command, limit=run_limit,
                                progress=lambda done, total, row: tick(done, total))
    if as_json:
        click.echo(json.dumps(res))
    else:
        out.print(f"campaign {res['campaign']}: {res['runs']} runs ({res['resumed']} recorded before), "
                  f"{res['ok']} ok, {res['mismatches']} mismatches, {res['hangs']} hangs, {res['errors']} errors "
                  f"in {res['seconds']:.1f} s; database {res['db']}", highlight=False)
        for rid in res["failures"]:
            err.print(f"failed: {rid} (evhw soak --db {db} --replay {rid})", highlight=False)
    failed = res["mismatches"] + res["hangs"] + res["errors"]
    if failed:
        raise MismatchError(f"soak: {failed} of {res['runs']} runs failed: {', '.join(res['failures'][:10])}")
