"""The simulation job handed from ``evhw sim`` to the cocotb testbench, and its results file.

:class:`SimJob` is written by :func:`sim.session.simulate` as ``job.json`` in the run folder and
read by ``sim.tb.evhw_top_tb`` (path in ``$EVHW_JOB``). Every run gets a fresh ``run_id``; the
testbench writes its results once, atomically (temp file + rename), with that ``run_id`` and
``complete: true`` (:func:`write_results`). :func:`read_results` accepts only such a file, so
results left by a simulator that was killed, or by another run, never count as a finished run;
:func:`sim.runner.run_cocotb` removes any results file before it starts the simulator.
"""
from __future__ import annotations

import dataclasses
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

__all__ = ["JOB_VERSION", "Corruption", "SimJob", "write_results", "read_results", "ResultsError", "new_run_id"]

JOB_VERSION = 1


class ResultsError(RuntimeError):
    """No results of this run: the simulator crashed, was killed, or the file belongs to another run."""


@dataclass(frozen=True)
class Corruption:
    """A deliberate change of one expected value (negative tests; ``Scoreboard.corrupt``)."""
    frame: int
    what: str = "output"
    index: int = 0
    delta: int = 1


@dataclass(frozen=True)
class SimJob:
    build: str                                  # the build folder (rtl_gen.builddir.BuildDir)
    frames: str                                 # .npy of uint8 frames, (T,) + input shape
    results: str                                # where the testbench writes its results
    run_id: str
    policy: str = "evnet"
    reset_every: Optional[int] = None
    thresholds: dict = dataclasses.field(default_factory=dict)     # {gate: (H per channel, ...)}
    seed: int = 0
    idle: float = 0.0
    stall: float = 0.0
    assert_exact: bool = False
    corrupt: tuple = ()                         # Corruption, ...
    keep: int = 20
    sequences: int = 1
    version: int = JOB_VERSION

    def save(self, path):
        d = dataclasses.asdict(self)
        _atomic_write(path, json.dumps(d, indent=1))

    @classmethod
    def load(cls, path):
        d = json.loads(Path(path).read_text())
        if d.get("version") != JOB_VERSION:
            raise ValueError(f"{path}: job version {d.get('version')!r}, expected {JOB_VERSION}")
        names = {f.name for f in dataclasses.fields(cls)}
        if set(d) != names:
            raise ValueError(f"{path}: job fields {sorted(set(d) ^ names)} unknown or missing")
        d["thresholds"] = {k: tuple(int(x) for x in v) for k, v in d["thresholds"].items()}
        d["corrupt"] = tuple(Corruption(**c) for c in d["corrupt"])
        return cls(**d)


def new_run_id():
    return uuid.uuid4().hex


def _atomic_write(path, text):
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_results(path, run_id, results: dict):
    """Write the testbench's final results (one atomic write, marked complete for ``run_id``)."""
    _atomic_write(path, json.dumps({**results, "run_id": run_id, "complete": True}))


def read_results(path, run_id):
    """The results of run ``run_id``; :class:`ResultsError` when there are none (or they are not its own)."""
    path = Path(path)
    try:
        res = json.loads(path.read_text())
    except FileNotFoundError:
        raise ResultsError("wrote no results") from None
    except (OSError, ValueError) as e:
        raise ResultsError(f"left an unreadable results file {path} ({e})") from None
    if not isinstance(res, dict) or res.get("run_id") != run_id or res.get("complete") is not True:
        raise ResultsError(f"left results {path} that are not the complete results of this run")
    return res
