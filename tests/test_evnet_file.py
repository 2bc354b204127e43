"""The .evnet file: exact round trip of a converted network (and its float graph), and clear errors."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import struct
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evhw import evnet_file
from evhw.convert import convert, set_thresholds
from evhw.errors import EvhwError, ModelFileError
from evhw.floatmodel import run_float
from evhw.golden import EventModel, Policy, dense_forward
from evhw.ir import Graph, GraphBuilder
from evhw.qnet import QNet

HEADER = evnet_file.HEADER_SIZE


def build_graph(seed=0):
    """A small net with every op: conv (padding, groups, stride), batchnorm, relu, leakyrelu, maxpool,
    add, concat, upsample, avgpool, globalavgpool, flatten, linear."""
    rng = np.random.default_rng(seed)

    def w(*s):
        return rng.normal(0, 0.3, s)

    b = GraphBuilder((3, 16, 16), name="tiny")
    x = b.conv("input", w(8, 3, 3, 3), w(8), padding=1)
    x = b.batchnorm(x, rng.uniform(0.5, 1.5, 8), w(8), w(8), rng.uniform(0.5, 1.5, 8))
    x = b.op("relu", x)
    x = b.op("maxpool", x, kernel=2)
    y = b.conv(x, w(8, 2, 3, 3), w(8), padding=(1, 1), groups=4)
    y = b.op("leakyrelu", y, alpha=0.1)
    z = b.conv(x, w(8, 8, 1, 1))
    s = b.op("add", y, z)
    s = b.op("relu", s)
    c = b.op("concat", s, x)
    a = b.op("avgpool", c, kernel=2)
    u = b.op("upsample", a, scale=2)
    v = b.conv(u, w(8, 16, 3, 3), w(8), stride=2, padding=1)
    v = b.op("relu", v)
    gp = b.op("globalavgpool", v)
    f = b.op("flatten", gp)
    b.linear(f, w(5, 8), w(5))
    return b.build()


def make_frames(n, seed=1):
    """Temporally redundant frames: a random image with a small patch changing each frame."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (3, 16, 16))
    out = []
    for t in range(n):
        f = base.copy()
        y, x = 2 + t, 3 + 2 * t % 10
        f[:, y:y + 4, x:x + 4] = rng.integers(0, 256, (3, 4, 4))
        out.append(f.astype(np.uint8))
    return out


@pytest.fixture(scope="module")
def net():
    g = build_graph()
    calib = np.random.default_rng(2).integers(0, 256, (8, 3, 16, 16))
    q = convert(g, calib, input_mean=(0.4, 0.5, 0.6), input_std=(0.2, 0.25, 0.3), threshold=0.05, bn_scale=True)
    q.meta["note"] = {"tuple": (1, 2), "np": np.int64(7), "list": [1.5, float("inf")], 3: "int key"}
    return q, g


@pytest.fixture(scope="module")
def saved(net, tmp_path_factory):
    q, g = net
    path = tmp_path_factory.mktemp("evnet") / "tiny.evnet"
    evnet_file.save(path, q, g)
    return path


def assert_same(a, b, where="root"):
    """Deep equality that also checks types: tuple stays tuple, arrays keep dtype and shape."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a.dtype}{a.shape} != {b.dtype}{b.shape}"
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, np.generic):
        assert a.dtype == b.dtype and a == b, where
    elif dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


# ---------------------------------------------------------------------------------------------- round trip

def test_covers_every_feature(net):
    q, g = net
    assert {n.op for n in g.nodes} >= {"conv", "batchnorm", "relu", "leakyrelu", "maxpool", "add", "concat",
                                       "upsample", "avgpool", "globalavgpool", "flatten", "linear"}
    kinds = {t.kind for s in q.layers() for t in s.terms}
    assert kinds == {"conv", "linear", "sumpool", "scale"}
    assert any("pad_value" in t.attrs for s in q.layers() for t in s.terms)
    assert any(s.pools for s in q.layers()) and any(s.act == "leaky" for s in q.layers())
    assert any(s.mult is None for s in q.layers())     # readout layer


def test_round_trip_structure(net, saved):
    q, g = net
    q2, g2 = evnet_file.load(saved)
    assert isinstance(q2, QNet) and isinstance(g2, Graph)
    assert_same(q, q2, "qnet")
    assert_same(g.nodes, g2.nodes, "graph.nodes")
    assert (g2.output, g2.name, g2.input_mean, g2.input_std) == (g.output, g.name, g.input_mean, g.input_std)
    assert set(g2.by_name) == set(g.by_name)
    # spot checks of fields the golden model compares as tuples
    conv = q2.steps[0].terms[0]
    assert conv.attrs["pads"] == (1, 1, 1, 1) and isinstance(conv.attrs["kernel"], tuple)
    assert conv.attrs["pad_value"].dtype == np.int64
    assert q2.input.shape == (3, 16, 16) and isinstance(q2.input_mean, tuple)
    assert q2.meta["note"][3] == "int key" and q2.meta["note"]["np"].dtype == np.int64


def test_thresholds_and_defaults(net, saved):
    q, _ = net
    q2, _ = evnet_file.load(saved)
    assert list(q2.thresholds) == list(q.thresholds) == q.gates()
    for k in q.thresholds:
        assert q2.thresholds[k].dtype == np.int64
        np.testing.assert_array_equal(q2.thresholds[k], q.thresholds[k])
    assert (q2.default_threshold, q2.default_input_threshold, q2.bn_scale) == (0.05, None, True)
    # thresholds can be re-derived on the loaded network exactly as on the original
    a = set_thresholds(q, 0.1, input_threshold=0.02)
    b = set_thresholds(q2, 0.1, input_threshold=0.02)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    set_thresholds(q, 0.05, bn_scale=True)


def test_dense_forward_identical(net, saved):
    q, _ = net
    q2, _ = evnet_file.load(saved)
    for f in make_frames(3, seed=5):
        v1, a1 = dense_forward(q, f, with_acc=True)
        v2, a2 = dense_forward(q2, f, with_acc=True)
        assert list(v1) == list(v2) and list(a1) == list(a2)
        for k in v1:
            np.testing.assert_array_equal(v1[k], v2[k], err_msg=k)
        for k in a1:
            np.testing.assert_array_equal(a1[k], a2[k], err_msg=k)


@pytest.mark.parametrize("policy", [Policy("evnet"), Policy("skipconv", granularity="pixel")])
def test_event_model_identical(net, saved, policy):
    q, _ = net
    q2, _ = evnet_file.load(saved)
    frames = make_frames(6)
    r1 = EventModel(q, policy).run(frames)
    r2 = EventModel(q2, policy).run(frames)
    assert any(r.kind == "event" for r in r1)
    assert any(0 < r.event_macs < r.dense_macs for r in r1)     # the test exercises sparse updates
    for a, b in zip(r1, r2):
        assert a.kind == b.kind
        np.testing.assert_array_equal(a.output, b.output)
        assert a.layers == b.layers            # every per-layer counter
        assert a.summary() == b.summary()


def test_float_graph_round_trip(net, saved):
    q, g = net
    _, g2 = evnet_file.load(saved)
    x = np.random.default_rng(3).integers(0, 256, (4, 3, 16, 16))
    f1, f2 = run_float(g, x), run_float(g2, x)
    assert list(f1) == list(f2)
    for k in f1:
        np.testing.assert_array_equal(f1[k], f2[k], err_msg=k)
    # the normalization a graph carries survives too
    gn = g.copy()
    gn.input_mean, gn.input_std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    _, gn2 = evnet_file.loads(evnet_file.dumps(q, gn))
    np.testing.assert_array_equal(run_float(gn, x)[g.output], run_float(gn2, x)[g.output])
    assert gn2.input_mean == (0.4, 0.5, 0.6)


def test_without_graph_and_bytes_api(net, tmp_path):
    q, _ = net
    data = evnet_file.dumps(q)
    assert data[:8] == b"EVNET\x00\r\n"
    assert struct.unpack_from("<I", data, 8)[0] == evnet_file.VERSION == 2
    q2, g2 = evnet_file.loads(data)
    assert g2 is None
    assert_same(q, q2)
    assert evnet_file.dumps(q) == data          # deterministic: fixed zip timestamps
    assert {i.date_time for i in zipfile.ZipFile(io.BytesIO(data[HEADER:])).infolist()} == {(1980, 1, 1, 0, 0, 0)}
    p = tmp_path / "nog.evnet"
    evnet_file.save(p, q)
    assert p.read_bytes() == data and not list(tmp_path.glob("*.tmp"))


def test_shared_arrays_stay_shared(net):
    q, _ = net
    arr = np.arange(4)
    q2, _ = evnet_file.loads(evnet_file.dumps(dataclasses.replace(q, meta={"a": arr, "b": [arr], "c": arr.copy()})))
    assert q2.meta["a"] is q2.meta["b"][0] and q2.meta["a"] is not q2.meta["c"]
    np.testing.assert_array_equal(q2.meta["c"], arr)


def test_flat_input_network(tmp_path):
    rng = np.random.default_rng(4)
    b = GraphBuilder((12,), name="mlp")
    h = b.linear("input", rng.normal(0, 0.3, (6, 12)), rng.normal(0, 0.1, 6))
    h = b.op("relu6", h)
    b.linear(h, rng.normal(0, 0.3, (3, 6)))
    g = b.build()
    q = convert(g, rng.integers(0, 256, (8, 12)), input_mean=0.5, input_std=0.25, threshold=0.02)
    evnet_file.save(tmp_path / "mlp.evnet", q, g)
    q2, g2 = evnet_file.load(tmp_path / "mlp.evnet")
    assert_same(q, q2)
    fr = [rng.integers(0, 256, 12) for _ in range(4)]
    for a, b_ in zip(EventModel(q).run(fr), EventModel(q2).run(fr)):
        np.testing.assert_array_equal(a.output, b_.output)
        assert a.layers == b_.layers


_scalars = (st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats(allow_nan=True) | st.text(max_size=5)
            | st.integers(-100, 100).map(np.int64) | st.floats(-1e3, 1e3).map(np.float32) | st.booleans().map(np.bool_)
            | st.lists(st.integers(-5, 5), max_size=4).map(lambda v: np.array(v, dtype=np.int16)))
_values = st.recursive(_scalars, lambda inner: (
    st.lists(inner, max_size=3) | st.lists(inner, max_size=3).map(tuple)
    | st.dictionaries(st.text(max_size=4) | st.integers(-3, 3) | st.tuples(st.integers(0, 3)), inner, max_size=3)),
    max_leaves=12)


@settings(max_examples=60, deadline=None, database=None)
@given(meta=st.dictionaries(st.text(max_size=6), _values, max_size=4))
def test_meta_values_round_trip(net, meta):
    q, _ = net
    q2, _ = evnet_file.loads(evnet_file.dumps(dataclasses.replace(q, meta=meta)))
    assert_same(meta, q2.meta, "meta")


def test_unsupported_values_rejected_at_save(net):
    q, _ = net
    q3 = dataclasses.replace(q, meta={"bad": {1, 2}})
    with pytest.raises(EvhwError, match="not supported"):
        evnet_file.dumps(q3)
    q4 = dataclasses.replace(q, meta={"obj": np.array([None, 1], dtype=object)})
    with pytest.raises(EvhwError, match="not supported"):
        evnet_file.dumps(q4)
    with pytest.raises(EvhwError, match="QNet"):
        evnet_file.dumps("not a net")


# ---------------------------------------------------------------------------------------------- errors

def repack(payload: bytes, version=evnet_file.VERSION) -> bytes:
    """A file around ``payload`` with a valid length and checksum."""
    return struct.pack("<8sIQ32s", b"EVNET\x00\r\n", version, len(payload), hashlib.sha256(payload).digest()) + payload


def rewrite(data: bytes, *, header=None, drop=(), add=None) -> bytes:
    """Rebuild the npz payload: replace header.json, drop members, add raw members; re-checksum."""
    src = zipfile.ZipFile(io.BytesIO(data[HEADER:]))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name in src.namelist():
            if name in drop:
                continue
            body = src.read(name)
            if name == "header.json" and header is not None:
                body = header(json.loads(body)) if callable(header) else header
                body = body if isinstance(body, bytes) else json.dumps(body).encode()
            z.writestr(name, body)
        for name, body in (add or {}).items():
            z.writestr(name, body)
    return repack(buf.getvalue())


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match=r"nope\.evnet: no such file"):
        evnet_file.load(tmp_path / "nope.evnet")
    with pytest.raises(ModelFileError, match="directory"):
        evnet_file.load(tmp_path)


def test_bad_magic(saved, tmp_path):
    p = tmp_path / "x.evnet"
    p.write_bytes(b"PK\x03\x04" + saved.read_bytes()[4:])
    with pytest.raises(ModelFileError, match=r"x\.evnet: not an evnet file"):
        evnet_file.load(p)
    p.write_bytes(b"hello world, this is plainly some other file format......................")
    with pytest.raises(ModelFileError, match="not an evnet file"):
        evnet_file.load(p)


def test_future_version(saved, tmp_path):
    data = bytearray(saved.read_bytes())
    struct.pack_into("<I", data, 8, evnet_file.VERSION + 1)
    p = tmp_path / "future.evnet"
    p.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=rf"future\.evnet: unsupported evnet format version {evnet_file.VERSION + 1}"):
        evnet_file.load(p)
    # a future version is reported even when the rest of the file is in a format we cannot know
    p.write_bytes(b"EVNET\x00\r\n" + struct.pack("<I", 7) + b"\x00" * 3)
    with pytest.raises(ModelFileError, match="unsupported evnet format version 7"):
        evnet_file.load(p)
    struct.pack_into("<I", data, 8, 0)
    with pytest.raises(ModelFileError, match="invalid evnet format version 0"):
        evnet_file.loads(bytes(data))


@pytest.mark.parametrize("cut", [0, 3, 8, 11, 12, 30, HEADER - 1, HEADER, HEADER + 1, 1000, -100, -1])
def test_truncated(saved, tmp_path, cut):
    data = saved.read_bytes()
    p = tmp_path / "cut.evnet"
    p.write_bytes(data[:cut])
    with pytest.raises(ModelFileError, match=r"cut\.evnet: truncated"):
        evnet_file.load(p)


def test_trailing_bytes(saved):
    with pytest.raises(ModelFileError, match="unexpected bytes after the payload"):
        evnet_file.loads(saved.read_bytes() + b"\x00")


@pytest.mark.parametrize("where", [HEADER, HEADER + 100, "middle", -1])
def test_flipped_byte_is_a_checksum_error(saved, tmp_path, where):
    data = bytearray(saved.read_bytes())
    i = len(data) // 2 if where == "middle" else where
    data[i] ^= 0x20
    p = tmp_path / "flip.evnet"
    p.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=r"flip\.evnet: corrupt: checksum mismatch"):
        evnet_file.load(p)


def test_flipped_digest_byte(saved):
    data = bytearray(saved.read_bytes())
    data[HEADER - 1] ^= 1
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        evnet_file.loads(bytes(data), source="m.evnet")


def test_payload_not_a_zip():
    with pytest.raises(ModelFileError, match="<bytes>: malformed payload: not an npz"):
        evnet_file.loads(repack(b"this is not a zip archive at all"))


def test_object_array_rejected_without_pickle(saved, monkeypatch):
    import pickle

    def no_pickle(*a, **k):
        raise AssertionError("pickle used")

    monkeypatch.setattr(pickle, "loads", no_pickle)
    monkeypatch.setattr(pickle, "load", no_pickle)
    data = saved.read_bytes()
    key = json.loads(zipfile.ZipFile(io.BytesIO(data[HEADER:])).read("header.json"))["arrays"][0]
    bad = io.BytesIO()
    np.save(bad, np.array([{"evil": 1}, None], dtype=object), allow_pickle=True)
    data2 = rewrite(data, drop=(key + ".npy",), add={key + ".npy": bad.getvalue()})
    with pytest.raises(ModelFileError, match=rf"malformed: array '{key}' cannot be loaded safely"):
        evnet_file.loads(data2, source="evil.evnet")
    # loading the genuine file works with pickle disabled
    evnet_file.loads(data)


def test_missing_array_member(saved):
    data = saved.read_bytes()
    key = json.loads(zipfile.ZipFile(io.BytesIO(data[HEADER:])).read("header.json"))["arrays"][3]
    with pytest.raises(ModelFileError, match=f"array '{key}' is missing"):
        evnet_file.loads(rewrite(data, drop=(key + ".npy",)))


@pytest.mark.parametrize("edit, message", [
    (b"{not json", "not valid UTF-8 JSON"),
    (b"\xff\xfe", "not valid UTF-8 JSON"),
    ([1, 2], "not an evnet header"),
    (lambda h: {**h, "format": "other"}, "not an evnet header"),
    (lambda h: {k: v for k, v in h.items() if k != "qnet"}, "no 'qnet' entry"),
    (lambda h: {**h, "arrays": h["arrays"] + ["ghost"]}, "array 'ghost' is missing"),
    (lambda h: {**h, "version": 5}, "header version"),
    (lambda h: {**h, "qnet": {"$type": "Evil", "fields": {}}}, "bad object 'Evil'"),
    (lambda h: {**h, "qnet": {"$array": "nope"}}, "array 'nope' is missing"),
    (lambda h: {**h, "qnet": {"$tuple": 3}}, r"\$tuple needs a list"),
    (lambda h: {**h, "qnet": {"$scalar": ["O", 1]}}, "bad scalar dtype"),
    (lambda h: {**h, "qnet": {"$what": 1}}, "unknown tag"),
    (lambda h: {**h, "qnet": 42}, "is not a QNet"),
    (lambda h: {**h, "graph": {"$type": "Graph", "fields": {}}}, "Graph lacks field"),
    (lambda h: {**h, "qnet": {"$type": "QNet", "fields": {**h["qnet"]["fields"], "extra": 1}}},
     "unknown field"),
    (lambda h: {**h, "qnet": {"$type": "QNet", "fields": {**h["qnet"]["fields"], "output": "zzz"}}},
     "output 'zzz' is not a tensor"),
    (lambda h: {**h, "qnet": {"$type": "QNet", "fields": {**h["qnet"]["fields"],
                                                           "steps": list(reversed(h["qnet"]["fields"]["steps"]))}}},
     "not computed before it"),
])
def test_malformed_header(saved, edit, message):
    with pytest.raises(ModelFileError, match=r"^m\.evnet: malformed.*" + message):
        evnet_file.loads(rewrite(saved.read_bytes(), header=edit), source="m.evnet")


def test_missing_header_member(saved):
    with pytest.raises(ModelFileError, match="no header.json"):
        evnet_file.loads(rewrite(saved.read_bytes(), drop=("header.json",)))


def test_save_to_bad_directory(net, tmp_path):
    q, _ = net
    with pytest.raises(ModelFileError, match="cannot write"):
        evnet_file.save(tmp_path / "no" / "such" / "dir.evnet", q)
