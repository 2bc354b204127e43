"""The Verilog test harness around ``evhw_top``: streams, stalls and counters without Python per clock.

:func:`wrapper_verilog` writes, from a build's :class:`rtl_gen.manifest.Manifest`, a module
``evhw_tb`` (the cocotb toplevel, compiled beside ``evhw_top.v``) that instantiates ``evhw_top``
and runs one *operation* per request, with no Python between clock edges:

* ``OP_RESET``: ``rst`` high for 3 cycles, low for 1, then wait for ``busy`` low (at most
  ``RESET_LIMIT`` cycles); loads the two random generators from ``seed_src`` / ``seed_snk``;
* ``OP_CFG``: write ``cfg_words`` threshold words from ``CFG_FILE`` (``$readmemh``) at addresses
  ``0 ..``, one per cycle, then 2 idle cycles (a write takes effect two cycles later);
* ``OP_FRAME``: load the frame's pixels from ``PIX_FILE`` (``$readmemh``), pulse ``start`` with
  ``start_flush`` / ``start_memloss``, drive ``pix`` (before each beat an idle cycle with
  probability ``idle_th / 2**16``), accept ``out`` (``ready`` low with probability
  ``stall_th / 2**16`` per cycle, and low once the frame's outputs are in), storing ``{last,
  payload}`` per beat; after ``busy`` falls, up to ``GRACE`` cycles for the streams to finish;
  then every counter address ``0 .. STATS-1`` is read through ``stat_addr`` / ``stat_data`` and
  outputs and counters are written to ``OUT_FILE`` / ``STAT_FILE`` (``$writememh``).

Random draws are two xorshift32 generators (source and sink), so stalls are random per seed and
the same on both simulators. A request is a toggle of ``go`` (with ``op`` and the flags set); the
harness answers with ``done`` rising, ``status`` (``ST_*`` bits: a problem of the last operation),
``sent`` / ``got`` (beats transferred) and ``cycles`` (start to ``busy`` falling). Every
operation stops with ``ST_TIMEOUT`` when the free-running cycle count reaches ``deadline``: a hung
design ends the operation instead of the process. Files are relative to the simulator's working
directory (the run folder). Nothing here depends on how ``evhw_top`` initialises its memories.
The harness generates its own clock (period ``CLOCK_NS``; Verilator builds with ``--timing``), so
the simulator never calls into cocotb per clock edge; ``clk`` is an output cocotb may wait on.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

TB_TOP = "evhw_tb"
#: the harness's ports: the only signals cocotb writes (inputs) or reads (outputs)
TB_INPUTS = ("go", "op", "flush", "memloss", "seed_src", "seed_snk", "idle_th", "stall_th", "deadline")
TB_OUTPUTS = ("clk", "done", "status", "sent", "got", "cycles", "now", "busy")
WRAPPER_FILE = "evhw_tb.v"
PIX_FILE, CFG_FILE, OUT_FILE, STAT_FILE = "tb_pix.hex", "tb_cfg.hex", "tb_out.hex", "tb_stat.hex"
OP_RESET, OP_CFG, OP_FRAME = 1, 2, 3
ST_NO_BUSY, ST_PIX_SHORT, ST_OUT_SHORT, ST_TIMEOUT, ST_START_BUSY, ST_RESET_BUSY = (1 << i for i in range(6))
STALL_ONE = 1 << 16                 # probability 1.0 in the fixed-point thresholds idle_th / stall_th
GRACE = 8                           # cycles after busy fell for the streams to finish
BUSY_RISE = 5                       # cycles after the start pulse within which busy must rise
RESET_LIMIT = 1_000_000             # cycles after rst for busy to fall
CLOCK_NS = 10                       # the harness's clock period (ns: the time unit of sim.runner.TIMESCALE)


def stat_addresses(manifest):
    """Every counter address of the manifest's ``stats`` map (flattened)."""
    def walk(v):
        if isinstance(v, dict):
            for x in v.values():
                yield from walk(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                yield from walk(x)
        else:
            yield int(v)
    return list(walk(dataclasses.asdict(manifest.stats)))


def wrapper_verilog(manifest) -> str:
    """The text of module ``evhw_tb`` for ``manifest`` (widths, counts and the stat map fixed in it)."""
    p = manifest.ports
    w = {n: p[n].width for n in ("pix__payload", "out__payload", "cfg_addr", "cfg_data", "stat_addr", "stat_data")}
    return TEMPLATE.format(
        top=manifest.top, npix=manifest.input.pixels, nout=manifest.output.count, cfgw=max(manifest.cfg_words, 1),
        ncfg=manifest.cfg_words, nstat=max(stat_addresses(manifest)) + 1, lat=manifest.stat_latency,
        pw=w["pix__payload"], ow=w["out__payload"], aw=w["cfg_addr"], dw=w["cfg_data"], sw=w["stat_addr"],
        stw=w["stat_data"], pix=PIX_FILE, cfg=CFG_FILE, out=OUT_FILE, stat=STAT_FILE, grace=GRACE,
        rise=BUSY_RISE, rlimit=RESET_LIMIT, period=CLOCK_NS, half=CLOCK_NS // 2,
        OP_RESET=OP_RESET, OP_CFG=OP_CFG, OP_FRAME=OP_FRAME,
        ST_NO_BUSY=ST_NO_BUSY, ST_PIX_SHORT=ST_PIX_SHORT, ST_OUT_SHORT=ST_OUT_SHORT, ST_TIMEOUT=ST_TIMEOUT,
        ST_START_BUSY=ST_START_BUSY, ST_RESET_BUSY=ST_RESET_BUSY)


def write_wrapper(build_dir, manifest) -> Path:
    """Write ``BUILD/sim_build/evhw_tb.v`` (atomically; left alone when unchanged); returns its path."""
    path = Path(build_dir) / "sim_build" / WRAPPER_FILE
    text = wrapper_verilog(manifest)
    try:
        if path.read_text() == text:
            return path.resolve()
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path.resolve()


# Verilog-2005 only (Icarus runs with -g2005); every register starts at a known value.
TEMPLATE = """// generated by sim/tbwrap.py: the cocotb harness around {top} (do not edit)
module evhw_tb (
  // what cocotb may write (inputs) and read (outputs) through VPI: sim.runner's Verilator control
  // file (TB_INPUTS, TB_OUTPUTS)
  output reg         clk,   // generated here: period {period} time units
  input  wire        go,   // toggle: run operation `op`
  input  wire [1:0]  op,
  input  wire        flush,
  input  wire        memloss,
  input  wire [31:0] seed_src,
  input  wire [31:0] seed_snk,
  input  wire [16:0] idle_th,
  input  wire [16:0] stall_th,
  input  wire [63:0] deadline,
  output reg         done,
  output reg  [7:0]  status,
  output reg  [31:0] sent,
  output reg  [31:0] got,
  output reg  [31:0] cycles,
  output reg  [63:0] now,
  output wire        busy
);
  /*verilator public_module*/
  // The clock toggles inside the simulator (Verilator: --timing): no callback into cocotb per edge.
  initial clk = 1'b0;
  always #{half} clk = ~clk;
  initial begin
    done = 1'b0; status = 8'd0; sent = 32'd0; got = 32'd0; cycles = 32'd0; now = 64'd0;
  end
  localparam NPIX = {npix}, NOUT = {nout}, NCFG = {ncfg}, NSTAT = {nstat}, LAT = {lat};
  localparam S_IDLE = 0, S_RST = 1, S_RSTW = 2, S_CFG = 3, S_CFGT = 4, S_START = 5, S_RUN = 6, S_GRACE = 7,
             S_STATS = 8, S_FIN = 9;

  reg rst = 1'b0, start = 1'b0, start_flush = 1'b0, start_memloss = 1'b0;
  reg pix_valid = 1'b0;
  reg [{pw}-1:0] pix_payload = 0;
  wire pix_ready;
  wire out_valid, out_last;
  wire [{ow}-1:0] out_payload;
  reg out_ready = 1'b0;
  reg cfg_we = 1'b0;
  reg [{aw}-1:0] cfg_addr = 0;
  reg [{dw}-1:0] cfg_data = 0;
  reg [{sw}-1:0] stat_addr = 0;
  wire [{stw}-1:0] stat_data;

  {top} dut (
    .clk(clk), .rst(rst), .start(start), .start_flush(start_flush), .start_memloss(start_memloss), .busy(busy),
    .pix__payload(pix_payload), .pix__valid(pix_valid), .pix__ready(pix_ready),
    .out__payload(out_payload), .out__valid(out_valid), .out__ready(out_ready), .out__last(out_last),
    .cfg_addr(cfg_addr), .cfg_data(cfg_data), .cfg_we(cfg_we), .stat_addr(stat_addr), .stat_data(stat_data)
  );

  reg [{pw}-1:0] pix_mem [0:NPIX-1];
  reg [{ow}:0] out_mem [0:NOUT-1];
  reg [{dw}-1:0] cfg_mem [0:{cfgw}-1];
  reg [{stw}-1:0] stat_mem [0:NSTAT-1];

  reg go_q = 1'b0;
  reg [3:0] state = S_IDLE;
  reg [31:0] n = 32'd0;           // pixels presented / cfg words / stat address
  reg [31:0] k = 32'd0;           // cycles in the current state
  reg busy_seen = 1'b0;
  reg [31:0] rs = 32'd1, rk = 32'd1;   // xorshift32 states: source idles, sink stalls
  integer i;

  function [31:0] xs32;
    input [31:0] x;
    reg [31:0] y;
    begin
      y = x ^ (x << 13);
      y = y ^ (y >> 17);
      xs32 = y ^ (y << 5);
    end
  endfunction

  wire pix_fire = pix_valid & pix_ready;
  wire out_fire = out_valid & out_ready;
  wire streaming = (state == S_RUN) || (state == S_GRACE);
  wire [31:0] got_next = got + (out_fire ? 32'd1 : 32'd0);
  wire [31:0] sent_next = sent + (pix_fire ? 32'd1 : 32'd0);

  always @(posedge clk) begin
    now <= now + 64'd1;
    go_q <= go;
    k <= k + 32'd1;
    // streams: active from the start pulse until the operation ends
    if (streaming) begin
      if (pix_fire) sent <= sent_next;
      if (!pix_valid || pix_ready) begin
        if (n < NPIX && {{1'b0, rs[31:16]}} >= idle_th) begin
          pix_valid <= 1'b1;
          pix_payload <= pix_mem[n];
          n <= n + 32'd1;
        end else
          pix_valid <= 1'b0;
        rs <= xs32(rs);
      end
      if (out_fire) begin
        out_mem[got] <= {{out_last, out_payload}};
        got <= got_next;
      end
      out_ready <= (got_next < NOUT) && ({{1'b0, rk[31:16]}} >= stall_th);
      rk <= xs32(rk);
    end
    if (state != S_IDLE && now >= deadline) begin
      status <= status | {ST_TIMEOUT};
      pix_valid <= 1'b0; out_ready <= 1'b0; start <= 1'b0; cfg_we <= 1'b0; rst <= 1'b0;
      done <= 1'b1;
      state <= S_IDLE;
    end else case (state)
      S_IDLE: if (go != go_q) begin
        done <= 1'b0; status <= 8'd0; k <= 32'd0; n <= 32'd0;
        if (op == {OP_RESET}) begin
          rst <= 1'b1;
          rs <= (seed_src == 0) ? 32'd1 : seed_src;
          rk <= (seed_snk == 0) ? 32'd1 : seed_snk;
          state <= S_RST;
        end else if (op == {OP_CFG}) begin
          $readmemh("{cfg}", cfg_mem);
          state <= S_CFG;
        end else if (op == {OP_FRAME}) begin
          $readmemh("{pix}", pix_mem);
          for (i = 0; i < NOUT; i = i + 1) out_mem[i] <= 0;
          if (busy) status <= {ST_START_BUSY};
          start <= 1'b1; start_flush <= flush; start_memloss <= memloss;
          sent <= 32'd0; got <= 32'd0; busy_seen <= 1'b0;
          state <= S_START;
        end else
          done <= 1'b1;
      end
      S_RST: if (k == 2) begin rst <= 1'b0; k <= 0; state <= S_RSTW; end
      S_RSTW: if (k >= 1 && !busy) begin done <= 1'b1; state <= S_IDLE; end
              else if (k >= {rlimit}) begin status <= {ST_RESET_BUSY}; done <= 1'b1; state <= S_IDLE; end
      S_CFG: if (n < NCFG) begin
          cfg_we <= 1'b1; cfg_addr <= n; cfg_data <= cfg_mem[n]; n <= n + 32'd1;
        end else begin
          cfg_we <= 1'b0; k <= 0; state <= S_CFGT;
        end
      S_CFGT: if (k == 2) begin done <= 1'b1; state <= S_IDLE; end
      S_START: begin         // the DUT samples start at this edge
        start <= 1'b0; start_flush <= 1'b0; start_memloss <= 1'b0;
        out_ready <= ({{1'b0, rk[31:16]}} >= stall_th);
        rk <= xs32(rk);
        k <= 0; cycles <= 0;
        state <= S_RUN;
      end
      S_RUN: begin          // cycles: from the start edge to the edge where busy fell
        if (busy) busy_seen <= 1'b1;
        if (!(busy_seen && !busy)) cycles <= cycles + 32'd1;
        if (busy_seen && !busy) begin k <= 0; state <= S_GRACE; end
        else if (!busy_seen && !busy && k >= {rise} - 1) begin
          status <= status | {ST_NO_BUSY}; k <= 0; state <= S_GRACE;
        end
      end
      S_GRACE: if ((sent_next == NPIX && got_next == NOUT) || k >= {grace} - 1) begin
          if (sent_next != NPIX) status <= status | {ST_PIX_SHORT};
          if (got_next != NOUT) status <= status | {ST_OUT_SHORT};
          pix_valid <= 1'b0; out_ready <= 1'b0;
          n <= 0; k <= 0; stat_addr <= 0;
          state <= S_STATS;
        end
      S_STATS: if (k >= LAT) begin     // stat_addr set LAT + 1 edges ago
          stat_mem[n] <= stat_data;
          k <= 0;
          if (n == NSTAT - 1) state <= S_FIN;
          else begin n <= n + 32'd1; stat_addr <= n + 32'd1; end
        end
      S_FIN: begin
        $writememh("{out}", out_mem);
        $writememh("{stat}", stat_mem);
        done <= 1'b1;
        state <= S_IDLE;
      end
      default: state <= S_IDLE;
    endcase
  end
endmodule
"""
