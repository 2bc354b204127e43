""".evnet files whose header was edited (checksum recomputed) are refused on load when their fields contradict
each other: accumulator widths against the proven bound, known activations, consistent shapes and thresholds."""
import copy
import hashlib
import io
import json
import zipfile

import numpy as np
import pytest

from evhw import evnet_file, qnet
from evhw.convert import convert
from evhw.errors import ModelFileError
from evhw.golden import EventModel, Policy
from evhw.ir import GraphBuilder
from evhw.qnet import QLayer, validate
from netgen import random_cnn, random_mlp, random_video


def _graph():
    """conv (padding, groups) + relu + maxpool, a residual add, concat, avgpool, flatten, linear readout."""
    rng = np.random.default_rng(4)
    b = GraphBuilder((3, 12, 12), name="edit")
    x = b.op("relu", b.conv("input", rng.normal(0, .3, (8, 3, 3, 3)), rng.normal(0, .1, 8), padding=1))
    x = b.op("maxpool", x, kernel=2)
    y = b.op("leakyrelu", b.conv(x, rng.normal(0, .3, (8, 2, 3, 3)), None, padding=1, groups=4), alpha=0.1)
    s = b.op("relu", b.op("add", x, y))
    c = b.op("avgpool", b.op("concat", s, x), kernel=2)
    b.linear(b.op("flatten", c), rng.normal(0, .3, (5, 16 * 9)), rng.normal(0, .1, 5))
    return b.build()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    g = _graph()
    q = convert(g, np.random.default_rng(1).integers(0, 256, (6, 3, 12, 12)), threshold=0.05)
    path = tmp_path_factory.mktemp("sem") / "net.evnet"
    evnet_file.save(path, q, g)
    return path, q


def _edit(path, tmp_path, change):
    """Rewrite the JSON header with ``change(header)`` and recompute the checksum, as a hand edit would."""
    data = path.read_bytes()
    src = zipfile.ZipFile(io.BytesIO(data[evnet_file.HEADER_SIZE:]))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name in src.namelist():
            body = src.read(name)
            if name == evnet_file.HEADER_MEMBER:
                h = json.loads(body)
                change(h)
                body = json.dumps(h).encode()
            z.writestr(name, body)
    payload = buf.getvalue()
    out = tmp_path / "edited.evnet"
    out.write_bytes(evnet_file._PREFIX.pack(evnet_file.MAGIC, evnet_file.VERSION, len(payload),
                                            hashlib.sha256(payload).digest()) + payload)
    return out


def _layer(h, name):
    for s in h["qnet"]["fields"]["steps"]:
        if s["$type"] == "QLayer" and s["fields"]["name"] == name:
            return s["fields"]
    raise KeyError(name)


def _refused(path, *words):
    with pytest.raises(ModelFileError) as e:
        evnet_file.load(path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(path)), msg
    for w in words:
        assert w in msg, msg


def _wide_layer(q):
    return max(q.layers(), key=lambda s: s.acc_bits)


def test_narrow_accumulator_is_refused(saved, tmp_path):
    path, q = saved
    wide = _wide_layer(q)
    assert wide.acc_bits >= 16
    p = _edit(path, tmp_path, lambda h: _layer(h, wide.name).update(acc_bits=4))
    _refused(p, repr(wide.name), "'acc_bits'", f"needs {wide.acc_bits}")


def test_edited_bound_is_refused(saved, tmp_path):
    """Lowering the recorded bound too (so the width looks sufficient) is caught: the bound is recomputed."""
    path, q = saved
    wide = _wide_layer(q)
    p = _edit(path, tmp_path, lambda h: _layer(h, wide.name).update(acc_bits=4, acc_bound=3))
    _refused(p, repr(wide.name), "'acc_bound'")


def test_unknown_activation_is_refused(saved, tmp_path):
    path, q = saved
    name = q.layers()[0].name
    p = _edit(path, tmp_path, lambda h: _layer(h, name).update(act="gelu"))
    _refused(p, repr(name), "'act'", "gelu")


def test_known_activations_come_from_the_ir(saved, tmp_path, monkeypatch):
    """The loader reads the one list in evhw.qnet (not a copy): extending it admits the activation."""
    path, q = saved
    name = q.layers()[0].name
    p = _edit(path, tmp_path, lambda h: _layer(h, name).update(act="gelu"))
    monkeypatch.setattr(qnet, "ACTIVATIONS", qnet.ACTIVATIONS + ("gelu",))
    q2, _ = evnet_file.load(p)
    assert q2.layers()[0].act == "gelu"


def test_changed_accumulator_shape_is_refused(saved, tmp_path):
    """This used to load and then crash `eval` with a broadcasting traceback."""
    path, q = saved
    name = q.layers()[0].name

    def change(h):
        f = _layer(h, name)
        f["acc_shape"]["$tuple"][1] += 1
    p = _edit(path, tmp_path, change)
    _refused(p, repr(name), "'acc_shape'")


@pytest.mark.parametrize("what, change, words", [
    ("output shape", lambda f: f["out"]["fields"]["shape"]["$tuple"].__setitem__(0, 7), ["'out.shape'"]),
    ("relu6 without clip", lambda f: f.update(act="relu6", act_hi=None), ["'act_hi'"]),
    ("mult without shift", lambda f: f.update(shift=None), ["'mult/shift'"]),
    ("kind", lambda f: f["terms"][0]["fields"].update(kind="fft"), ["'kind'", "fft"]),
    ("groups", lambda f: f["terms"][0]["fields"]["attrs"].update(groups=2), ["'groups'"]),
    ("stride", lambda f: f["terms"][0]["fields"]["attrs"].update(stride={"$tuple": [0, 1]}), ["'attrs'"]),
    ("not gated", lambda f: f.update(gated=False), ["'gated'"]),
])
def test_other_inconsistent_fields_are_refused(saved, tmp_path, what, change, words):
    path, q = saved
    name = q.layers()[0].name
    p = _edit(path, tmp_path, lambda h: change(_layer(h, name)))
    _refused(p, repr(name), *words)


def test_thresholds_must_fit_their_gates(saved, tmp_path):
    path, q = saved
    q2 = copy.deepcopy(q)
    name = q2.layers()[0].name
    q2.thresholds[name] = q2.thresholds[name] + q2.layer(name).out.span + 1
    p = tmp_path / "th.evnet"
    p.write_bytes(evnet_file.dumps(q2))
    _refused(p, repr(name), "'thresholds'")
    del q2.thresholds[name]
    p.write_bytes(evnet_file.dumps(q2))
    _refused(p, "'thresholds'")


def test_unedited_files_still_load_and_run(saved):
    path, q = saved
    q2, _ = evnet_file.load(path)
    frames = np.random.default_rng(3).integers(0, 256, (3, 3, 12, 12))
    for a, b in zip(EventModel(q, Policy("evnet")).run(frames), EventModel(q2, Policy("evnet")).run(frames)):
        np.testing.assert_array_equal(a.output, b.output)


@pytest.mark.parametrize("seed", list(range(8)) + ["mlp"])
def test_every_converted_network_validates(seed):
    """validate() accepts what the converter makes (with folded normalization, forced widths, BN scaling)."""
    if seed == "mlp":
        g, shape = random_mlp(1), (16,)
    else:
        g = random_cnn(seed)
        shape = g.input.attrs["shape"]
    video = random_video(0 if seed == "mlp" else seed, shape, frames=3)
    norm = {} if seed == "mlp" or seed % 2 else dict(input_mean=0.45, input_std=0.25)
    validate(convert(g, video, **norm, threshold=0.01, bn_scale=True))
    validate(convert(g, video, acc_bits=40))


def test_convert_refuses_accumulators_wider_than_supported():
    from evhw.errors import ConfigError
    g = random_mlp(1)
    with pytest.raises(ConfigError, match=f"2..{qnet.MAX_ACC_BITS}"):
        convert(g, random_video(0, (16,), frames=2), acc_bits=qnet.MAX_ACC_BITS + 1)


def test_validate_names_the_layer_and_field():
    q = convert(random_mlp(2), random_video(0, (16,), frames=3))
    s = next(x for x in q.steps if isinstance(x, QLayer))
    s.acc_bits = 3
    with pytest.raises(qnet.NetworkSpecError, match=rf"layer '{s.name}': field 'acc_bits'"):
        validate(q)


def test_save_refuses_to_overwrite_an_input(saved, tmp_path):
    path, q = saved
    model = tmp_path / "model.onnx"
    model.write_bytes(b"precious")
    link = tmp_path / "link.evnet"
    link.symlink_to(model)
    hard = tmp_path / "hard.evnet"
    import os
    os.link(model, hard)
    for out in (model, tmp_path / "." / "model.onnx", link, hard):
        with pytest.raises(ModelFileError, match="refusing to overwrite the input file"):
            evnet_file.save(out, q, inputs=[model, "synthetic:shapes"])
    assert model.read_bytes() == b"precious"
    evnet_file.save(tmp_path / "new.evnet", q, inputs=[model, "synthetic:shapes", None])
    assert evnet_file.load(tmp_path / "new.evnet")[0].name == q.name


def test_failed_save_keeps_the_existing_file(saved, tmp_path, monkeypatch):
    path, q = saved
    out = tmp_path / "out.evnet"
    out.write_bytes(b"old contents")

    def boom(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(evnet_file.os, "replace", boom)
    with pytest.raises(ModelFileError, match="No space left"):
        evnet_file.save(out, q)
    assert out.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["out.evnet"]        # no temp file left behind


# ---------------------------------------------------------------------------------------------- fuzzed edits

def _leaves(v, path=()):
    """Paths to the editable scalars of a JSON header (ints, strings, booleans, null), skipping array refs."""
    if isinstance(v, dict):
        if "$array" in v:
            return
        for k, x in v.items():
            yield from _leaves(x, path + (k,))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from _leaves(x, path + (i,))
    elif not isinstance(v, float):
        yield path


def _set(h, path, value):
    for k in path[:-1]:
        h = h[k]
    h[path[-1]] = value


@pytest.fixture(scope="module")
def qnet_leaves(saved):
    path, _ = saved
    data = path.read_bytes()
    h = json.loads(zipfile.ZipFile(io.BytesIO(data[evnet_file.HEADER_SIZE:])).read(evnet_file.HEADER_MEMBER))
    return [p for p in _leaves(h["qnet"], ("qnet",)) if "meta" not in p]


def test_edited_header_fields_are_refused_or_harmless(saved, qnet_leaves, tmp_path_factory):
    """Hypothesis: any single scalar of the network header set to another value either is refused on load
    (ModelFileError) or gives a network the golden model runs without crashing."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from evhw.errors import EvhwError
    path, _ = saved
    tmp = tmp_path_factory.mktemp("edits")
    frames = np.random.default_rng(5).integers(0, 256, (3, 3, 12, 12))

    @settings(max_examples=150, derandomize=True, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(leaf=st.sampled_from(qnet_leaves),
           value=st.one_of(st.integers(-3, 70), st.sampled_from(["gelu", "conv", "", "input", None, True])))
    def check(leaf, value):
        p = _edit(path, tmp, lambda h: _set(h, leaf, value))
        try:
            q2, _ = evnet_file.load(p)
        except ModelFileError as e:
            assert "\n" not in str(e)
            return
        try:
            EventModel(q2, Policy("evnet")).run(frames)
        except EvhwError:
            pass            # a clear refusal at run time is fine too (e.g. a frame that no longer fits)

    check()
