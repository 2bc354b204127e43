"""The ``.evnet`` file: one file holding a converted network (and optionally its float graph).

A converted :class:`evhw.qnet.QNet` -- structure, integer tensors, quantization parameters,
thresholds and metadata -- is saved so that the loaded network behaves bit-identically in
:func:`evhw.golden.dense_forward` and :class:`evhw.golden.EventModel`. The float
:class:`evhw.ir.Graph` it was converted from may be stored alongside, so the float reference
(:func:`evhw.floatmodel.run_float`) can be recomputed later without the original model file.

API: :func:`save` / :func:`load` for files, :func:`dumps` / :func:`loads` for bytes.

File layout (all integers little-endian)::

    offset  size  field
    0       8     magic  b"EVNET\\x00\\r\\n"
    8       4     uint32 format version (this evhw writes version 2 and reads 1 and 2)
    12      8     uint64 payload length in bytes
    20      32    SHA-256 digest of the payload
    52      n     payload

Nothing may follow the payload. The payload is a NumPy ``.npz`` archive (a zip file; members
stored deflated, readers accept stored members too) holding

* ``header.json`` -- UTF-8 JSON: ``{"format": "evnet", "version": 2, "evhw_version": ...,
  "qnet": <value>, "graph": <value or null>, "arrays": [array keys]}``;
* ``<key>.npy`` -- one member per NumPy array (never object arrays), for every key in ``arrays``.

JSON values encode Python values as follows: ``null``/booleans/strings/lists as themselves;
Python ints and finite floats as JSON numbers (ints keep arbitrary size); special values and
types JSON lacks as objects tagged by a key that starts with ``$``:

* ``{"$tuple": [...]}`` -- a tuple (shapes, kernel/stride/pads/dilation, scales, means);
* ``{"$float": "nan" | "inf" | "-inf"}`` -- a non-finite float;
* ``{"$array": key}`` -- the array stored as member ``key.npy`` (dtype and shape kept exactly;
  an array object referenced from several places is stored once and shared again after loading);
* ``{"$scalar": [dtype, value]}`` -- a NumPy scalar such as ``np.int64(3)`` (type kept);
* ``{"$dict": [[key, value], ...]}`` -- a dict whose keys are not all strings, or use ``$``;
* ``{"$type": name, "fields": {...}}`` -- one of the dataclasses ``QNet``, ``QTensor``,
  ``Term``, ``QLayer``, ``QView`` (:mod:`evhw.qnet`), ``Node``, ``Graph`` (:mod:`evhw.ir`), with
  every dataclass field by name.

Version 2 added fields with defaults (several outputs and their host ops on ``QNet`` and ``Graph``,
``QLayer.act_lo``; PReLU keeps its per-channel slopes in ``QLayer.leaky_num``). A version-1 file
lacks them and loads with their defaults; a version-2 file must have every field.

Any other JSON object is a plain dict with string keys. Loading never unpickles anything
(``np.load(..., allow_pickle=False)``); every problem with a file -- missing, not an evnet file,
a newer format version, truncated, checksum mismatch, malformed header or missing arrays, or a
network whose fields contradict each other (:func:`evhw.qnet.validate`: shapes, activations,
accumulator widths against the proven bound, thresholds) -- raises
:class:`evhw.errors.ModelFileError` naming the file and the problem (and the layer and field).
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import re
import struct
import zipfile
from pathlib import Path

import numpy as np

from . import __version__
from .errors import EvhwError, ModelFileError, NetworkSpecError
from .ir import HOST_OPS, Graph, Node
from .qnet import QLayer, QNet, QTensor, QView, Term, validate

MAGIC = b"EVNET\x00\r\n"
VERSION = 2
_PREFIX = struct.Struct("<8sIQ32s")     # magic, version, payload length, sha256
HEADER_SIZE = _PREFIX.size              # 52
HEADER_MEMBER = "header.json"

#: Dataclasses a file may contain, by the name used in the JSON header.
TYPES = {cls.__name__: cls for cls in (QNet, QTensor, Term, QLayer, QView, Node, Graph)}


# ----------------------------------------------------------------------------------------------
# encoding

class _Encoder:
    def __init__(self):
        self.arrays: dict[str, np.ndarray] = {}
        self.seen: dict[int, tuple[np.ndarray, str]] = {}     # id -> (array, key): one member per object

    def array(self, a: np.ndarray, hint: str):
        if id(a) in self.seen and self.seen[id(a)][0] is a:
            return {"$array": self.seen[id(a)][1]}
        if a.dtype.hasobject or a.dtype.kind not in "biufc":
            raise EvhwError(f"cannot save {hint}: arrays of dtype {a.dtype} are not supported in .evnet files")
        clean = re.sub(r"[^A-Za-z0-9_.-]+", "_", hint).strip("._")[:80]
        key = f"{len(self.arrays):05d}.{clean}" if clean else f"{len(self.arrays):05d}"
        self.arrays[key] = np.ascontiguousarray(a)
        self.seen[id(a)] = (a, key)
        return {"$array": key}

    def value(self, v, hint: str):
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, int) and not isinstance(v, np.generic):
            return int(v)
        if isinstance(v, float) and not isinstance(v, np.generic):
            if math.isfinite(v):
                return float(v)
            return {"$float": "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")}
        if isinstance(v, np.ndarray):
            return self.array(v, hint)
        if isinstance(v, np.generic):
            if v.dtype.kind not in "biuf":
                raise EvhwError(f"cannot save {hint}: NumPy scalars of dtype {v.dtype} are not supported")
            return {"$scalar": [v.dtype.str, self.value(v.item(), hint)]}
        if isinstance(v, tuple):
            return {"$tuple": [self.value(x, f"{hint}.{i}") for i, x in enumerate(v)]}
        if isinstance(v, list):
            return [self.value(x, f"{hint}.{i}") for i, x in enumerate(v)]
        if isinstance(v, dict):
            if all(isinstance(k, str) and not k.startswith("$") for k in v):
                return {k: self.value(x, f"{hint}.{k}") for k, x in v.items()}
            return {"$dict": [[self.value(k, f"{hint}.key"), self.value(x, f"{hint}.{k}")] for k, x in v.items()]}
        if dataclasses.is_dataclass(v) and type(v).__name__ in TYPES and TYPES[type(v).__name__] is type(v):
            name = type(v).__name__
            fields = {f.name: self.value(getattr(v, f.name), f"{hint}.{f.name}" if hint else f.name)
                      for f in dataclasses.fields(v)}
            return {"$type": name, "fields": fields}
        raise EvhwError(f"cannot save {hint or 'value'}: values of type {type(v).__name__} are not supported "
                        f"in .evnet files")


def _member(name):
    """A zip member with a fixed timestamp, so the same network always gives the same bytes."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info


def dumps(qnet: QNet, graph: Graph | None = None) -> bytes:
    """The ``.evnet`` bytes of ``qnet`` (and the float ``graph`` it came from, if given)."""
    if not isinstance(qnet, QNet):
        raise EvhwError(f"dumps() needs a QNet, not {type(qnet).__name__}")
    if graph is not None and not isinstance(graph, Graph):
        raise EvhwError(f"the float graph must be an evhw.ir.Graph, not {type(graph).__name__}")
    enc = _Encoder()
    header = {
        "format": "evnet",
        "version": VERSION,
        "evhw_version": __version__,
        "qnet": enc.value(qnet, "qnet"),
        "graph": enc.value(graph, "graph") if graph is not None else None,
    }
    header["arrays"] = list(enc.arrays)
    text = json.dumps(header, allow_nan=False, separators=(",", ":")).encode("utf-8")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(_member(HEADER_MEMBER), text)
        for key, a in enc.arrays.items():
            with z.open(_member(key + ".npy"), "w", force_zip64=True) as f:
                np.lib.format.write_array(f, a, allow_pickle=False)
    payload = buf.getvalue()
    return _PREFIX.pack(MAGIC, VERSION, len(payload), hashlib.sha256(payload).digest()) + payload


def save(path, qnet: QNet, graph: Graph | None = None, *, inputs=()) -> None:
    """Write ``qnet`` (and optionally the float ``graph``) to ``path`` (atomically: temp file + rename,
    so a failed save leaves an existing file untouched).

    ``inputs``: files this network was made from (model, calibration frames); writing over one of
    them (the same path, a symlink or a hard link to it) is refused. The graph is stored exactly as
    given. Note that :func:`evhw.convert.convert` records an input normalization passed as an argument
    on its own copy of the graph (and in ``qnet.input_mean`` / ``qnet.input_std``), not on the caller's graph.
    """
    path = Path(path)
    check_output(path, inputs)
    data = dumps(qnet, graph)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise ModelFileError(f"{path}: cannot write: {e.strerror or e}") from None


def check_output(path, inputs=()) -> None:
    """Refuse an output path that cannot take a new file, or that is one of ``inputs`` (ModelFileError)."""
    path = Path(path)
    for src in inputs:
        if src is not None and _same_file(path, Path(src)):
            raise ModelFileError(f"{path}: refusing to overwrite the input file {src}; choose another output path")
    if path.is_dir():
        raise ModelFileError(f"{path}: is a directory; give a file name such as {path / 'net.evnet'}")
    if not path.parent.is_dir():
        what = "is not a directory" if path.parent.exists() else "does not exist"
        raise ModelFileError(f"{path}: cannot write: the folder {path.parent} {what}")


def _same_file(a: Path, b: Path) -> bool:
    try:
        if not b.exists():
            return False            # not a file (a source or model name): nothing to destroy
        return a.resolve() == b.resolve() or (a.exists() and os.path.samefile(a, b))
    except (OSError, RuntimeError, ValueError):
        return False


# ----------------------------------------------------------------------------------------------
# decoding

class _Malformed(Exception):
    pass


class _Decoder:
    def __init__(self, arrays, version=VERSION):
        self.arrays = arrays
        self.version = version

    def value(self, v):
        if v is None or isinstance(v, (bool, str, int, float)):
            return v
        if isinstance(v, list):
            return [self.value(x) for x in v]
        if not isinstance(v, dict):
            raise _Malformed(f"unexpected JSON value of type {type(v).__name__}")
        special = [k for k in v if k.startswith("$")]
        if not special:
            return {k: self.value(x) for k, x in v.items()}
        tag = special[0]
        if tag == "$type":
            return self.dataclass(v)
        if len(v) != 1:
            raise _Malformed(f"{tag} object with extra keys {sorted(set(v) - {tag})}")
        arg = v[tag]
        if tag == "$tuple":
            return tuple(self.value(x) for x in _need_list(arg, tag))
        if tag == "$float":
            if arg not in ("nan", "inf", "-inf"):
                raise _Malformed(f"bad $float {arg!r}")
            return float(arg)
        if tag == "$array":
            if not isinstance(arg, str) or arg not in self.arrays:
                raise _Malformed(f"array {arg!r} is missing from the archive")
            return self.arrays[arg]       # the same object wherever the saved network shared one
        if tag == "$scalar":
            arg = _need_list(arg, tag)
            if len(arg) != 2 or not isinstance(arg[0], str):
                raise _Malformed(f"bad $scalar {arg!r}")
            try:
                dt = np.dtype(arg[0])
            except (TypeError, ValueError):
                raise _Malformed(f"bad scalar dtype {arg[0]!r}") from None
            if dt.kind not in "biuf":
                raise _Malformed(f"bad scalar dtype {arg[0]!r}")
            return dt.type(self.value(arg[1]))
        if tag == "$dict":
            out = {}
            for item in _need_list(arg, tag):
                if not isinstance(item, list) or len(item) != 2:
                    raise _Malformed("bad $dict entry")
                k = self.value(item[0])
                try:
                    out[k] = self.value(item[1])
                except TypeError:
                    raise _Malformed(f"unhashable dict key {k!r}") from None
            return out
        raise _Malformed(f"unknown tag {tag!r}")

    def dataclass(self, v):
        name, fields = v.get("$type"), v.get("fields")
        if set(v) != {"$type", "fields"} or name not in TYPES or not isinstance(fields, dict):
            raise _Malformed(f"bad object {name!r}" if name not in TYPES else f"bad {name} object")
        cls = TYPES[name]
        names = [f.name for f in dataclasses.fields(cls)]
        optional = {f.name for f in dataclasses.fields(cls) if self.version < 2 and (
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING)}
        missing = [n for n in names if n not in fields and n not in optional]
        extra = [n for n in fields if n not in names]
        if missing or extra:
            raise _Malformed(f"{name} " + ("lacks field(s) " + ", ".join(missing) if missing else
                                           "has unknown field(s) " + ", ".join(extra)))
        kwargs = {k: self.value(x) for k, x in fields.items()}
        try:
            return cls(**kwargs)
        except EvhwError as e:
            raise _Malformed(f"bad {name}: {e}") from None


def _need_list(v, tag):
    if not isinstance(v, list):
        raise _Malformed(f"{tag} needs a list")
    return v


def _check_types(q, g):
    """Light structural validation, so a well-formed but wrong header fails here, not deep in the golden model."""
    if not isinstance(q, QNet):
        raise _Malformed("'qnet' is not a QNet")
    if not isinstance(q.input, QTensor):
        raise _Malformed("QNet.input is not a QTensor")
    if not isinstance(q.steps, list):
        raise _Malformed("QNet.steps is not a list")
    names = {q.input.name}
    for s in q.steps:
        if not isinstance(s, (QLayer, QView)) or not isinstance(s.out, QTensor):
            raise _Malformed("a QNet step is not a QLayer or QView with a QTensor output")
        srcs = s.srcs if isinstance(s, QView) else [t.src for t in s.terms]
        if isinstance(s, QLayer) and not all(isinstance(t, Term) for t in s.terms):
            raise _Malformed(f"layer {s.name!r} has a term that is not a Term")
        unknown = [x for x in srcs if x not in names]
        if unknown:
            raise _Malformed(f"step {s.name!r} reads {unknown[0]!r}, which is not computed before it")
        names.add(s.out.name)
    if not isinstance(q.extra_outputs, list) or not isinstance(q.output_ops, list):
        raise _Malformed("QNet extra_outputs/output_ops are not lists")
    if len(q.output_ops) not in (0, len(q.outputs)) or any(o is not None and o not in HOST_OPS for o in q.output_ops):
        raise _Malformed(f"QNet output_ops {q.output_ops!r}: one per output, each null or one of {', '.join(HOST_OPS)}")
    for o in q.outputs:
        if o not in names:
            raise _Malformed(f"QNet output {o!r} is not a tensor")
    if not isinstance(q.thresholds, dict) or not isinstance(q.meta, dict):
        raise _Malformed("QNet thresholds/meta are not dicts")
    if g is not None:
        if not isinstance(g, Graph) or not isinstance(g.nodes, list) or not all(isinstance(n, Node) for n in g.nodes):
            raise _Malformed("'graph' is not a Graph of Nodes")


def loads(data: bytes, *, source: str = "<bytes>"):
    """Parse ``.evnet`` bytes. Returns ``(qnet, graph or None)``; ``source`` names the data in errors."""
    data = bytes(data)

    def fail(msg):
        return ModelFileError(f"{source}: {msg}")

    if not data:
        raise fail("truncated: the file is empty")
    if len(data) < len(MAGIC) or data[:len(MAGIC)] != MAGIC:
        if len(data) < len(MAGIC) and MAGIC.startswith(data):
            raise fail(f"truncated: only {len(data)} bytes, shorter than the {HEADER_SIZE}-byte evnet header")
        raise fail("not an evnet file (bad magic bytes)")
    if len(data) >= len(MAGIC) + 4:
        (version,) = struct.unpack_from("<I", data, len(MAGIC))
        if version > VERSION:
            raise fail(f"unsupported evnet format version {version}; this evhw ({__version__}) reads version "
                       f"{VERSION} at most -- upgrade evhw")
        if version < 1:
            raise fail(f"invalid evnet format version {version}")
    if len(data) < HEADER_SIZE:
        raise fail(f"truncated: only {len(data)} bytes, shorter than the {HEADER_SIZE}-byte evnet header")
    _, version, length, digest = _PREFIX.unpack_from(data)
    payload = data[HEADER_SIZE:]
    if len(payload) < length:
        raise fail(f"truncated: the payload has {len(payload)} of {length} bytes")
    if len(payload) > length:
        raise fail(f"corrupt: {len(payload) - length} unexpected bytes after the payload")
    if hashlib.sha256(payload).digest() != digest:
        raise fail("corrupt: checksum mismatch (the file was damaged or modified)")

    if payload[:2] != b"PK" or not zipfile.is_zipfile(io.BytesIO(payload)):
        raise fail("malformed payload: not an npz (zip) archive")
    try:
        npz = np.load(io.BytesIO(payload), allow_pickle=False)
    except Exception as e:      # noqa: BLE001 - anything numpy/zipfile raises means a malformed payload
        raise fail(f"malformed payload: not a valid npz archive ({e})") from None
    try:
        with npz:
            members = set(npz.zip.namelist())
            if HEADER_MEMBER not in members:
                raise fail(f"malformed: the archive has no {HEADER_MEMBER}")
            try:
                header = json.loads(npz.zip.read(HEADER_MEMBER).decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as e:
                raise fail(f"malformed header: {HEADER_MEMBER} is not valid UTF-8 JSON ({e})") from None
            if not isinstance(header, dict) or header.get("format") != "evnet":
                raise fail("malformed header: not an evnet header")
            if header.get("version") != version:
                raise fail(f"malformed header: header version {header.get('version')!r} != file version {version}")
            keys = header.get("arrays")
            if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
                raise fail("malformed header: bad array list")
            arrays = {}
            for k in keys:
                if k + ".npy" not in members:
                    raise fail(f"malformed: array {k!r} is missing from the archive")
                try:
                    a = npz[k]
                except ValueError as e:
                    # object arrays (which would need pickle) land here
                    raise fail(f"malformed: array {k!r} cannot be loaded safely ({e})") from None
                except Exception as e:  # noqa: BLE001 - a damaged member
                    raise fail(f"malformed: array {k!r} is unreadable ({e})") from None
                if not isinstance(a, np.ndarray) or a.dtype.hasobject:
                    raise fail(f"malformed: member {k!r} is not a plain numpy array")
                arrays[k] = a
            for k in ("qnet", "graph"):
                if k not in header:
                    raise fail(f"malformed header: no {k!r} entry")
            dec = _Decoder(arrays, version)
            try:
                q = dec.value(header["qnet"])
                g = dec.value(header["graph"]) if header["graph"] is not None else None
                _check_types(q, g)
                validate(q)
            except NetworkSpecError as e:
                raise fail(f"invalid network: {e}") from None
            except _Malformed as e:
                raise fail(f"malformed header: {e}") from None
            except (TypeError, ValueError, KeyError, AttributeError, OverflowError, RecursionError) as e:
                raise fail(f"malformed header: {type(e).__name__}: {e}") from None
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise fail(f"malformed payload: {e}") from None
    return q, g


def load(path):
    """Read an ``.evnet`` file. Returns ``(qnet, graph or None)``; raises ModelFileError on any problem."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ModelFileError(f"{path}: is a directory, not an evnet file") from None
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read: {e.strerror or e}") from None
    return loads(data, source=str(path))
