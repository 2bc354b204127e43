"""Fuzz the network-side commands' file and flag inputs (convert, info, eval, bench golden, study, zoo, data).

Every generated command carries exactly one hostile input -- a random, empty, truncated, malformed,
missing or directory file, a bad output path, or an out-of-range / malformed flag value -- and must be
refused with exit code 2 and ONE line on stderr that names the file or the flag: no traceback, no
partial output file, no changed input file. Hypothesis runs derandomized with a fixed example budget.
"""
import itertools
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evhw import evnet_file
from evhw.convert import convert
from netgen import random_cnn, random_video
from cliutil import run

onnx = pytest.importorskip("onnx")

FUZZ = settings(derandomize=True, deadline=None, database=None, print_blob=False,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
_count = itertools.count()


def _onnx_model():
    """A tiny 1x12x12 conv net written with onnx.helper (no exporter needed)."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, .3, (2, 1, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(np.zeros(2, np.float32), "b"),
             numpy_helper.from_array(rng.normal(0, .3, (3, 2 * 12 * 12)).astype(np.float32), "fw")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("Gemm", ["f", "fw"], ["y"], transB=1)]
    g = helper.make_graph(nodes, "fuzz", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 12, 12])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


class Files:
    """The fuzz folder and the bytes of one valid file per extension (short repr for Hypothesis reports)."""

    def __init__(self, d, valid):
        self.d, self.valid = d, valid

    def __iter__(self):
        return iter((self.d, self.valid))

    def __repr__(self):
        return f"Files({self.d})"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    video = random_video(1, (1, 12, 12), frames=5)
    g = random_cnn(1)
    evnet_file.save(d / "net.evnet", convert(g, video[:3]), g)
    np.save(d / "clip.npy", video[:, 0])
    np.savez(d / "clip.npz", frames=video[:, 0])
    (d / "model.onnx").write_bytes(_onnx_model())
    (d / "afile").write_text("a regular file")
    valid = {ext: (d / name).read_bytes() for ext, name in
             ((".evnet", "net.evnet"), (".npy", "clip.npy"), (".npz", "clip.npz"), (".onnx", "model.onnx"))}
    return Files(d, valid)


# --------------------------------------------------------------------------------------------- hostile files

KINDS = ["empty", "garbage", "truncated", "directory", "missing", "missing-dir", "json", "bad-array"]


@st.composite
def hostile_file(draw, exts):
    """(kind, ext, data) describing a hostile file; materialized by :func:`_make`."""
    ext = draw(st.sampled_from(exts))
    kind = draw(st.sampled_from(KINDS))
    if kind == "bad-array" and ext not in (".npy", ".npz"):
        kind = "garbage"
    data = draw(st.binary(min_size=1, max_size=300)) if kind == "garbage" else b""
    frac = draw(st.floats(0.0, 0.95))
    variant = draw(st.integers(0, 7))
    name = draw(st.sampled_from(["h", "[b]h", "[bold]h", "h x", "hü", "-h"]))
    return kind, ext, data, frac, variant, name


def _bad_array(variant):
    """Arrays that cannot be frames: none, 1-D, 5-D, negative, > 255, NaN, complex, pickled objects."""
    return [np.zeros((0, 12, 12), np.uint8), np.arange(10), np.zeros((2, 1, 1, 12, 12)),
            -np.ones((3, 12, 12), np.int16), np.full((3, 12, 12), 300.0), np.full((3, 12, 12), np.nan),
            np.ones((3, 12, 12), complex), np.array([None, "x"], dtype=object)][variant]


def _make(d, valid, spec):
    kind, ext, data, frac, variant, name = spec
    p = d / f"{name}{next(_count)}{ext}"
    if kind == "empty":
        p.write_bytes(b"")
    elif kind == "garbage":
        p.write_bytes(data)
    elif kind == "truncated":
        full = valid.get(ext, b"\x93NUMPY\x01\x00v\x00{'descr': '|u1', 'fortran_order': False, 'shape': (4, 12")
        p.write_bytes(full[:int(frac * len(full))])
    elif kind == "directory":
        p.mkdir()
    elif kind == "missing":
        pass
    elif kind == "missing-dir":
        p = d / f"nodir{next(_count)}" / f"x{ext}"
    elif kind == "json":
        p.write_text(json.dumps({"frames": [1, 2, 3]}))
    elif kind == "bad-array":
        a = _bad_array(variant)
        if ext == ".npy":
            np.save(p, a, allow_pickle=True)
        else:
            np.savez(p, frames=a) if variant != 7 else np.savez(p, a=a, b=a)
    return p


def _names(*things):
    """Ways a message may name a file or a flag (``--input-threshold``: also ``input threshold``,
    ``input_threshold``)."""
    out = []
    for t in things:
        s = str(t)
        out.append(s)
        if s.startswith("-"):
            w = s.lstrip("-")
            out += [w, w.replace("-", " "), w.replace("-", "_")]
    return out


def assert_refused(res, *things):
    code, out, err = res
    assert "Traceback" not in out + err, err
    assert code == 2, f"exit code {code}; stderr: {err!r}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"want one line, got: {err!r}"
    names = _names(*things)
    assert any(n in lines[0] for n in names), f"{lines[0]!r} names none of {things}"


# --------------------------------------------------------------------------------------------- file inputs

@settings(FUZZ, max_examples=60)
@given(spec=hostile_file([".evnet", ".onnx", ".pt", ".npy", ".npz", ".mp4", ".avi", ""]),
       cmd=st.sampled_from(["info", "eval-net", "eval-video", "convert-model", "convert-calib", "bench-video"]))
def test_hostile_files(capsys, files, spec, cmd):
    d, valid = files
    p = _make(d, valid, spec)
    out = d / f"out{next(_count)}.evnet"
    args = {
        "info": ["info", str(p)],
        "eval-net": ["eval", str(p), "--video", str(d / "clip.npy"), "--frames", "2"],
        "eval-video": ["eval", str(d / "net.evnet"), "--video", str(p), "--frames", "2"],
        "convert-model": ["convert", str(p), "-o", str(out), "--calib", str(d / "clip.npy"), "--calib-frames", "2"],
        "convert-calib": ["convert", str(d / "model.onnx"), "-o", str(out), "--calib", str(p), "--calib-frames", "2"],
        "bench-video": ["bench", "golden", "--model", "rand-mlp", "--video", str(p), "--frames", "2"],
    }[cmd]
    if cmd in ("info", "eval-net", "convert-model") and spec[1] == "" and spec[0] in ("missing", "missing-dir"):
        return          # an extension-less missing name is a (unknown) model name: checked below
    assert_refused(run(capsys, *args), p)
    assert not out.exists()


@pytest.mark.parametrize("name", ["nope", "rand-mlp.evnet", "", "synthetic:shapes"])
def test_unknown_model_names(capsys, name):
    assert_refused(run(capsys, "info", name), name if name else "model")


# --------------------------------------------------------------------------------------------- output paths

@pytest.mark.parametrize("where", ["directory", "under-a-file", "missing-dir", "the-model", "the-calib", "dot-model"])
def test_hostile_output_paths(capsys, files, tmp_path, where):
    """`convert x.onnx -o x.onnx` used to exit 0 and overwrite the model."""
    d = tmp_path
    model, calib = d / "model.onnx", d / "clip.npy"
    model.write_bytes((files.d / "model.onnx").read_bytes())
    calib.write_bytes((files.d / "clip.npy").read_bytes())
    (d / "afile").write_text("a regular file")
    before = {model: model.read_bytes(), calib: calib.read_bytes()}
    out = {"directory": d, "under-a-file": d / "afile" / "x.evnet", "missing-dir": d / "no" / "x.evnet",
           "the-model": model, "the-calib": calib, "dot-model": d / "." / "model.onnx"}[where]
    assert_refused(run(capsys, "convert", str(model), "-o", str(out), "--calib", str(calib), "--calib-frames", "2"),
                   out, model, calib)
    assert {p: p.read_bytes() for p in before} == before


# --------------------------------------------------------------------------------------------- flags

NUM_JUNK = ["", "abc", "1,2", "0x", "--", "1e"]
FLOAT_BAD = ["nan", "inf", "-inf", "-1", "-1e-9", "1e400"] + NUM_JUNK
INT_BAD = ["1.5", "1e3"] + NUM_JUNK
HUGE = "99999999999999999999999"

CONVERT_FLAGS = {
    "--weight-bits": ["0", "1", "17", "-8", "1000", HUGE] + INT_BAD,
    "--act-bits": ["0", "1", "17", "-8", HUGE] + INT_BAD,
    "--acc-bits": ["0", "1", "3", "49", "-5", "100000", HUGE] + INT_BAD,
    "--calib-frames": ["0", "-1", HUGE] + INT_BAD,
    "--threshold": FLOAT_BAD + ["1e30"],
    "--input-threshold": FLOAT_BAD + ["1e30"],
    "--input-mean": ["a", "0.1,0.2", "nan", "inf", "1,,2", ","],
    "--input-std": ["0", "-1", "nan", "inf", "0.1,0.2", "a", "0,1"],
    "--input-shape": ["", "a", "1,2", "0,12,12", "-1", "1,12,12,1", "1,,12", "1.5,2,2"],
}
EVAL_FLAGS = {
    "--policy": ["", "EVNET", "evnet2", "none"],
    "--threshold": FLOAT_BAD + ["1e30"],
    "--input-threshold": FLOAT_BAD + ["1e30"],
    "--granularity": ["", "block", "block:0", "block:-2", "block:x", "chunk:2", "neuron2", "block:1.5"],
    "--reset-every": ["0", "-3"] + INT_BAD,
    "--rrm-bound": ["0", "-1", "nan", "inf", "-inf"] + NUM_JUNK,
    "--frames": ["0", "-1", HUGE] + INT_BAD,
}
BENCH_FLAGS = {
    "--frames": ["0", "-1", HUGE] + INT_BAD,
    "--threshold": FLOAT_BAD + ["1e30"],
    "--model": ["", "nope", "rand-mlp.evnet"],
}
STUDY_FLAGS = {
    "--thresholds": ["", "a", "0.1,x", "-0.1", "nan", "inf", "0.1,,0.2", ","],
    "--tolerance": ["-1", "nan", "inf", "-inf"] + NUM_JUNK,
    "--frames": ["0", "-1", HUGE] + INT_BAD,
    "--model": ["", "nope", "rand-mlp.evnet"],
    "--video": ["", "novalue", "=synthetic:shapes", "objects-cnn=", "nope=synthetic:shapes"],
    "--mlp": ["nope"],
}


def _flag_case(table):
    return st.sampled_from(sorted(table)).flatmap(lambda f: st.tuples(st.just(f), st.sampled_from(table[f])))


@settings(FUZZ, max_examples=40)
@given(case=_flag_case(CONVERT_FLAGS))
def test_convert_flags(capsys, files, case):
    d, _ = files
    flag, value = case
    out = d / f"out{next(_count)}.evnet"
    args = ["convert", str(d / "model.onnx"), "-o", str(out), "--calib", str(d / "clip.npy"), "--calib-frames", "2"]
    if flag == "--calib-frames":
        args = args[:-2]
    assert_refused(run(capsys, *args, flag, value), flag)
    assert not out.exists()


@settings(FUZZ, max_examples=40)
@given(case=_flag_case(EVAL_FLAGS))
def test_eval_flags(capsys, files, case):
    d, _ = files
    flag, value = case
    args = ["eval", str(d / "net.evnet"), "--video", str(d / "clip.npy")]
    if flag == "--reset-every":
        args += ["--policy", "skipconv"]
    if flag == "--rrm-bound":
        args += ["--policy", "rrm"]
    if flag != "--frames":
        args += ["--frames", "2"]
    assert_refused(run(capsys, *args, flag, value), flag)


@settings(FUZZ, max_examples=15)
@given(case=_flag_case(BENCH_FLAGS))
def test_bench_golden_flags(capsys, case):
    flag, value = case
    args = ["bench", "golden", "--model", "rand-mlp", "--frames", "2"]
    assert_refused(run(capsys, *args, flag, value), flag, value)


@settings(FUZZ, max_examples=20)
@given(case=_flag_case(STUDY_FLAGS))
def test_study_flags(capsys, tmp_path, case):
    """Refused before any work: a run of the tiny study takes minutes, these take milliseconds."""
    flag, value = case
    out = tmp_path / f"study{next(_count)}"
    assert_refused(run(capsys, "study", "--tiny", "-o", str(out), flag, value), flag, value)
    assert not out.exists()


def test_study_output_under_a_file(capsys, files):
    d, _ = files
    assert_refused(run(capsys, "study", "--tiny", "-o", str(d / "afile")), d / "afile")


@pytest.mark.parametrize("args, thing", [
    (["zoo", "train", "nope"], "nope"),
    (["zoo", "train", "temporal-digits-mlp", "--steps", "0"], "--steps"),
    (["zoo", "train", "temporal-digits-mlp", "--steps", "-1"], "--steps"),
    (["zoo", "train", "temporal-digits-mlp", "--steps", "x"], "--steps"),
    (["zoo", "train", "temporal-digits-mlp", "--seed", "x"], "--seed"),
    (["zoo", "list", "extra"], "extra"),
    (["zoo", "nope"], "nope"),
    (["data", "list", "extra"], "extra"),
    (["data", "install", "nope"], "nope"),
    (["data", "nope"], "nope"),
])
def test_zoo_and_data(capsys, tmp_path, args, thing):
    out = tmp_path / "w.npz"
    if args[:2] == ["zoo", "train"]:
        args = args + ["-o", str(out)]
    assert_refused(run(capsys, *args), thing)
    assert not out.exists()
