"""sim.regroup: Icarus gets one clocked process per module and clock, with the same statements."""
import re

from sim.regroup import group_registers

SRC = """module a(clk, x, q);
  input clk;
  reg [3:0] q;
  reg r;
  always @(posedge clk)
    q <= x;
  assign y = q;
  always @(posedge clk)
    if (x) r <= 1'h1;
  always @(posedge clk) begin
    if (en)
      mem[addr] <= data;
  end
  always @*
    n = q + 1;
  always @(posedge \\clk2 )
    s <= n;
endmodule
module b(clk);
  always @(posedge clk)
    t <= 1'h0;
endmodule
"""


def test_one_statement_flops_are_grouped_per_module_and_clock():
    out, n = group_registers(SRC)
    assert n == 4
    mods = re.split(r"(?=^module )", out, flags=re.M)[1:]
    a, b = mods
    assert a.count("always @(posedge clk ) begin") == 1 and a.count("always @(posedge \\clk2 ) begin") == 1
    assert "    q <= x;\n" in a and "    if (x) r <= 1'h1;\n" in a and "    s <= n;\n" in a
    # the multi-line process and the combinational one stay as they were, in place
    assert "  always @(posedge clk) begin\n    if (en)\n      mem[addr] <= data;\n  end\n" in a
    assert a.index("always @*") < a.index("always @(posedge clk ) begin")
    assert a.rstrip().endswith("endmodule") and "always @(posedge clk ) begin\n    t <= 1'h0;\n  end\n" in b
    # every statement survives exactly once
    for stmt in ("q <= x;", "if (x) r <= 1'h1;", "s <= n;", "t <= 1'h0;", "mem[addr] <= data;", "n = q + 1;"):
        assert out.count(stmt) == SRC.count(stmt) == 1


def test_text_without_flops_is_unchanged():
    src = "module c(a, y);\n  assign y = a;\nendmodule\n"
    assert group_registers(src) == (src, 0)
