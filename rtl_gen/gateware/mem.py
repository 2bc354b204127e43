"""Memories of the gateware: Amaranth ``lib.memory`` for simulation, a Verilog module for export.

:class:`Mem` holds one memory array (a :class:`MemoryData`: shape, depth, initial contents) and
hands out read and write ports with the interface of ``lib.memory`` (``addr``, ``en``, ``data``).
With ``readmem=False`` (``amaranth.sim`` tests) it elaborates to a ``lib.memory.Memory``. With
``readmem=True`` (``rtl_gen.export``) it elaborates to an instance of :data:`VERILOG`'s
``evhw_rom`` / ``evhw_ram``, whose contents are loaded at time 0 with ``$readmemh`` from
``mem/<image>`` (relative to the simulator's or synthesis tool's working directory), or cleared
to zero when the memory has no image. The Verilog text then no longer holds the contents, so its
size does not grow with the weights and one compiled simulator serves builds that differ only in
memory contents.

The Verilog module behaves as Amaranth's synchronous ports do: the read data register loads on
the clock edge when ``en`` is high and is never reset; a read port transparent for the write port
returns the data being written to its address in that cycle, any other read returns the old row.
"""
from amaranth import *
from amaranth.hdl import ShapeCastable
from amaranth.lib.memory import Memory, MemoryData, ReadPort, WritePort
from amaranth.utils import ceil_log2

__all__ = ["Mem", "VERILOG", "MEM_DIR", "image_text"]

#: Folder of the images, relative to the working directory of the simulator or synthesis tool.
MEM_DIR = "mem"

VERILOG = """
// Memories of evhw_top, loaded at time 0 from the build's memory images (mem/*.hex, one packed
// word per row, hex) or cleared to zero (LOAD = 0). Synchronous read ports with enable; the read
// data register is not reset. TRANSPARENT: a read of the row being written returns the new data.
module evhw_rom #(parameter WIDTH = 1, DEPTH = 1, ABITS = 1, LOAD = 0, FILE = "") (
  input clk,
  input re, input [ABITS-1:0] raddr, output reg [WIDTH-1:0] rdata
);
  reg [WIDTH-1:0] mem [0:DEPTH-1];
  integer i;
  generate if (LOAD != 0) begin : load
    initial $readmemh(FILE, mem);
  end else begin : zero
    initial for (i = 0; i < DEPTH; i = i + 1) mem[i] = {WIDTH{1'b0}};
  end endgenerate
  always @(posedge clk)
    if (re) rdata <= mem[raddr];
endmodule

module evhw_ram #(parameter WIDTH = 1, DEPTH = 1, ABITS = 1, LOAD = 0, FILE = "", TRANSPARENT = 0) (
  input clk,
  input we, input [ABITS-1:0] waddr, input [WIDTH-1:0] wdata,
  input re, input [ABITS-1:0] raddr, output reg [WIDTH-1:0] rdata
);
  reg [WIDTH-1:0] mem [0:DEPTH-1];
  integer i;
  generate if (LOAD != 0) begin : load
    initial $readmemh(FILE, mem);
  end else begin : zero
    initial for (i = 0; i < DEPTH; i = i + 1) mem[i] = {WIDTH{1'b0}};
  end endgenerate
  always @(posedge clk)
    if (we) mem[waddr] <= wdata;
  always @(posedge clk)
    if (re) begin
      rdata <= mem[raddr];
      if (TRANSPARENT != 0 && we && raddr == waddr)
        rdata <= wdata;
    end
endmodule
"""


def _packed(shape, value):
    """The row ``value`` of a memory of ``shape`` as the unsigned integer of its bits."""
    if isinstance(shape, ShapeCastable):
        c = Const.cast(shape.const(value))
    else:
        c = Const(value, Shape.cast(shape))
    return c.value & ((1 << len(c)) - 1)


def image_text(data: MemoryData):
    """``$readmemh`` text of ``data``'s initial contents: one hex word per row, every row."""
    width = Shape.cast(data.shape).width
    digits = max(1, -(-width // 4))
    return "".join(f"{_packed(data.shape, v):0{digits}x}\n" for v in data.init)


class Mem(Elaboratable):
    """A memory array with ``lib.memory`` ports (see the module docstring).

    ``data``: the :class:`MemoryData`; ``image``: the file name under ``mem/`` its contents are
    loaded from when ``readmem`` (None: the memory starts at zero, and ``data.init`` must be
    zero); ``readmem``: elaborate to the Verilog memory instead of ``lib.memory.Memory``.
    """

    def __init__(self, data: MemoryData, *, image=None, readmem=False):
        self.data, self.image, self.readmem = data, image, bool(readmem)
        if readmem and image is None and any(_packed(data.shape, v) for v in data.init):
            raise ValueError("a memory with non-zero initial contents needs an image file name")
        self._memory = None if readmem else Memory(data=data)
        self._reads, self._writes = [], []

    @property
    def addr_width(self):
        return ceil_log2(self.data.depth)

    def read_port(self, *, transparent_for=()):
        """A synchronous read port; ``transparent_for``: write ports of this memory (at most one)."""
        if self._memory is not None:
            return self._memory.read_port(transparent_for=transparent_for)
        if any(p not in self._writes for p in transparent_for) or len(transparent_for) > 1:
            raise ValueError("a read port can be transparent only for the write port of its own memory")
        port = ReadPort.Signature(addr_width=self.addr_width, shape=self.data.shape).create()
        self._reads.append((port, bool(transparent_for)))
        return port

    def write_port(self):
        if self._memory is not None:
            return self._memory.write_port()
        if self._writes:
            raise ValueError("the Verilog memory has one write port")
        port = WritePort.Signature(addr_width=self.addr_width, shape=self.data.shape).create()
        self._writes.append(port)
        return port

    def elaborate(self, platform):
        if self._memory is not None:
            return self._memory
        if len(self._reads) != 1:
            raise ValueError(f"the Verilog memory has one read port, not {len(self._reads)}")
        rd, transparent = self._reads[0]
        abits = max(self.addr_width, 1)

        def addr(port):
            return port.addr if self.addr_width else Const(0, 1)

        params = dict(p_WIDTH=Shape.cast(self.data.shape).width, p_DEPTH=self.data.depth, p_ABITS=abits,
                      p_LOAD=int(self.image is not None), p_FILE=f"{MEM_DIR}/{self.image}" if self.image else "")
        ports = dict(i_clk=ClockSignal(), i_re=rd.en, i_raddr=addr(rd), o_rdata=Value.cast(rd.data))
        if not self._writes:
            return Instance("evhw_rom", **params, **ports)
        wr = self._writes[0]
        return Instance("evhw_ram", **params, p_TRANSPARENT=int(transparent), **ports,
                        i_we=wr.en, i_waddr=addr(wr), i_wdata=Value.cast(wr.data))
