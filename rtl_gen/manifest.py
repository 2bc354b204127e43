"""``manifest.json``: the typed, versioned description of a generated build.

:class:`Manifest` is what ``evhw generate`` writes and what ``evhw sim``, ``evhw report`` and the
testbench read: ports (from the Amaranth component signature), widths, the threshold (cfg) and
counter (stat) address maps, layers, the neuron-to-PE mapping and memory sizes. Every field is
required and typed; :meth:`Manifest.from_json` refuses unknown, missing and ill-typed fields, and
inconsistent values (e.g. a ``pes`` that does not match the per-PE tables), with an error naming
the file and the field. Only :class:`rtl_gen.builddir.BuildDir` reads and writes the file.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass

from evhw.errors import EvhwError

from .plan import MAX_PES, STAT_WIDTH

__all__ = ["MANIFEST_VERSION", "ManifestError", "Manifest", "Port", "InputSpec", "OutputSpec", "Widths", "Gate",
           "StatMap", "Layer", "LayerMap", "Mapping", "MemoryBits", "REQUIRED_PORTS"]

# 1: the untyped dict of Hardware v1. 2: typed, every field required, `stat_latency` added,
# hashes of the build's files in evhw_build.json.
MANIFEST_VERSION = 3

# The top-level contract of docs/architecture.md §5 (Verilog names).
REQUIRED_PORTS = {"clk": "in", "rst": "in", "start": "in", "start_flush": "in", "start_memloss": "in", "busy": "out",
                  "pix__payload": "in", "pix__valid": "in", "pix__ready": "out", "out__payload": "out",
                  "out__valid": "out", "out__ready": "in", "out__last": "out", "cfg_addr": "in", "cfg_data": "in",
                  "cfg_we": "in", "stat_addr": "in", "stat_data": "out"}


class ManifestError(EvhwError):
    """A manifest is unreadable, of another version, or has a missing, unknown, ill-typed or inconsistent field."""


@dataclass(frozen=True)
class Port:
    dir: str                     # "in" or "out"
    width: int
    signed: bool


@dataclass(frozen=True)
class InputSpec:
    shape: tuple[int, ...]
    value_bits: int
    signed: bool
    pixels: int


@dataclass(frozen=True)
class OutputSpec:
    layer: str
    shape: tuple[int, ...]
    value_bits: int
    signed: bool
    count: int


@dataclass(frozen=True)
class Widths:
    acc: int
    weight: int
    delta: int
    value: int
    threshold: int
    stat: int


@dataclass(frozen=True)
class Gate:
    """Threshold of channel ``c`` of this gate at cfg address ``cfg_base + c``."""
    cfg_base: int
    channels: int


@dataclass(frozen=True)
class StatMap:
    """Counter addresses on ``stat_addr``."""
    cycles: int
    syn_cycles: int
    events: dict[str, int]           # gated tensor -> address
    evaluated: dict[str, int]
    updates: dict[str, int]          # layer -> address
    pe_busy: tuple[int, ...]         # one per PE


@dataclass(frozen=True)
class Layer:
    name: str
    terms: tuple[str, ...]
    acc_shape: tuple[int, ...]
    gate_shape: tuple[int, ...]
    pool: tuple[int, ...]
    gated: bool
    readout: bool
    acc_bits: int


@dataclass(frozen=True)
class LayerMap:
    channels_per_pe: tuple[int, ...]
    acc_base: tuple[int, ...]
    gate_base: typing.Optional[tuple[int, ...]]


@dataclass(frozen=True)
class Mapping:
    rule: str
    layers: dict[str, LayerMap]


@dataclass(frozen=True)
class MemoryBits:
    pe: tuple[dict[str, int], ...]
    shared: dict[str, int]
    total: int


@dataclass(frozen=True)
class Manifest:
    version: int
    top: str
    network: str
    pes: int
    lanes: int                       # synaptic updates per PE per cycle
    ports: dict[str, Port]           # Verilog name -> port, in signature order (clk, rst first)
    input: InputSpec
    output: OutputSpec
    widths: Widths
    gates: dict[str, Gate]           # the input gate first
    cfg_words: int
    stat_latency: int                # cycles from stat_addr to stat_data
    stats: StatMap
    layers: tuple[Layer, ...]
    mapping: Mapping
    memory_bits: MemoryBits
    memory_images: dict[str, int]    # mem/<name> -> words (loaded by the Verilog with $readmemh)

    # ------------------------------------------------------------------ (de)serialization
    def to_dict(self):
        return json.loads(self.to_json())

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_json(cls, text, *, source="manifest.json"):
        """Parse and validate; raises :class:`ManifestError` naming ``source`` and the field."""
        if not text.strip():
            raise ManifestError(f"{source}: empty file (regenerate the build with `evhw generate`)")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ManifestError(f"{source}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); "
                                "regenerate the build with `evhw generate`") from None
        return cls.from_dict(data, source=source)

    @classmethod
    def from_dict(cls, data, *, source="manifest.json"):
        if isinstance(data, dict) and "version" in data and data["version"] != MANIFEST_VERSION:
            raise ManifestError(f"{source}: manifest version {data['version']!r}, this evhw reads version "
                                f"{MANIFEST_VERSION}: regenerate the build with `evhw generate`")
        m = _decode(cls, data, source, "")
        m.validate(source=source)
        return m

    def validate(self, *, source="manifest.json"):
        """Consistency checks across fields (the types are checked by :meth:`from_dict`)."""
        def fail(field, msg):
            raise ManifestError(f"{source}: field {field}: {msg}")
        if self.version != MANIFEST_VERSION:
            fail("version", f"{self.version}, expected {MANIFEST_VERSION}")
        if not 1 <= self.pes <= MAX_PES:
            fail("pes", f"{self.pes} is outside 1..{MAX_PES}")
        for name, d in REQUIRED_PORTS.items():
            if name not in self.ports:
                fail("ports", f"the top-level port {name!r} is missing")
            if self.ports[name].dir != d:
                fail(f"ports.{name}.dir", f"{self.ports[name].dir!r}, expected {d!r}")
        for name, p in self.ports.items():
            if p.dir not in ("in", "out"):
                fail(f"ports.{name}.dir", f"{p.dir!r} is neither 'in' nor 'out'")
            if p.width < 1:
                fail(f"ports.{name}.width", f"{p.width} < 1")
        if self.ports["out__payload"].width != self.output.value_bits:
            fail("output.value_bits", f"{self.output.value_bits} differs from the width of port out__payload "
                                      f"({self.ports['out__payload'].width})")
        if self.ports["out__payload"].signed != self.output.signed:
            fail("output.signed", "differs from port out__payload")
        if self.widths.stat != STAT_WIDTH or self.ports["stat_data"].width != STAT_WIDTH:
            fail("widths.stat", f"the counters are {STAT_WIDTH} bits wide")
        if self.ports["cfg_data"].width < self.widths.threshold:
            fail("widths.threshold", f"{self.widths.threshold} is wider than port cfg_data "
                                     f"({self.ports['cfg_data'].width})")
        if self.input.pixels != _prod(self.input.shape):
            fail("input.pixels", f"{self.input.pixels} is not the size of shape {list(self.input.shape)}")
        if self.output.count != _prod(self.output.shape):
            fail("output.count", f"{self.output.count} is not the size of shape {list(self.output.shape)}")
        if len(self.stats.pe_busy) != self.pes:
            fail("stats.pe_busy", f"{len(self.stats.pe_busy)} counters for {self.pes} PE(s)")
        if len(self.memory_bits.pe) != self.pes:
            fail("memory_bits.pe", f"{len(self.memory_bits.pe)} entries for {self.pes} PE(s)")
        for name, lm in self.mapping.layers.items():
            for f in ("channels_per_pe", "acc_base") + (("gate_base",) if lm.gate_base is not None else ()):
                if len(getattr(lm, f)) != self.pes:
                    fail(f"mapping.layers.{name}.{f}", f"{len(getattr(lm, f))} entries for {self.pes} PE(s)")
        if not self.gates or next(iter(self.gates)) != "input":
            fail("gates", "the input gate must come first")
        end = 0
        for name, g in self.gates.items():
            if g.cfg_base != end or g.channels < 1:
                fail(f"gates.{name}", f"cfg_base {g.cfg_base} / channels {g.channels} do not continue the map")
            end += g.channels
        if end != self.cfg_words:
            fail("cfg_words", f"{self.cfg_words}, but the gates use {end} words")
        if max(self.cfg_words - 1, 1).bit_length() > self.ports["cfg_addr"].width:
            fail("cfg_words", f"{self.cfg_words} words do not fit port cfg_addr ({self.ports['cfg_addr'].width} bits)")
        for pe in (_pe_of(n) for n in self.memory_images):
            if pe is not None and pe >= self.pes:
                fail("memory_images", f"an image for PE {pe}, but the build has {self.pes} PE(s)")


def _prod(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def _pe_of(name):
    head = name.split("_", 1)[0]
    return int(head[2:]) if head.startswith("pe") and head[2:].isdigit() else None


def _decode(tp, value, source, where):
    """``value`` (parsed JSON) as type ``tp``; raises ManifestError naming ``source`` and ``where``."""
    field = where or "(top level)"

    def fail(msg):
        raise ManifestError(f"{source}: field {field}: {msg}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            fail(f"expected an object, got {_kind(value)}")
        hints = typing.get_type_hints(tp)
        names = [f.name for f in dataclasses.fields(tp)]
        unknown = [k for k in value if k not in names]
        if unknown:
            raise ManifestError(f"{source}: unknown field {_join(where, unknown[0])}")
        missing = [n for n in names if n not in value]
        if missing:
            raise ManifestError(f"{source}: missing field {_join(where, missing[0])}")
        return tp(**{n: _decode(hints[n], value[n], source, _join(where, n)) for n in names})
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _decode(next(a for a in args if a is not type(None)), value, source, where)
    if origin is tuple:
        if not isinstance(value, list):
            fail(f"expected a list, got {_kind(value)}")
        return tuple(_decode(args[0], v, source, f"{field}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            fail(f"expected an object, got {_kind(value)}")
        return {k: _decode(args[1], v, source, _join(where, k)) for k, v in value.items()}
    if tp is int:
        if type(value) is not int:
            fail(f"expected an integer, got {_kind(value)}")
        if value < 0:
            fail(f"expected a non-negative integer, got {value}")
        return value
    if tp is bool:
        if type(value) is not bool:
            fail(f"expected true or false, got {_kind(value)}")
        return value
    if tp is str:
        if not isinstance(value, str):
            fail(f"expected a string, got {_kind(value)}")
        return value
    raise TypeError(f"no decoder for {tp!r}")          # a bug in the dataclasses above


def _join(where, name):
    return f"{where}.{name}" if where else str(name)


def _kind(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value[:20]!r}"
    return "a list" if isinstance(value, list) else "an object"
