"""The hardware contract: the typed manifest (rtl_gen.manifest) and the build folder (rtl_gen.builddir).

A build is written whole or not at all, replaces an older build whole, and a build edited or mixed
by hand after `evhw generate` is refused with an error naming the file (and, for a manifest whose
record was forged too, the field).
"""
import hashlib
import json
import shutil

import pytest

from rtl_gen.builddir import RECORD, BuildDir, BuildError
from rtl_gen.export import generate
from rtl_gen.manifest import MANIFEST_VERSION, Manifest, ManifestError
from tests.unit.nets import tiny_mlp


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    path = tmp_path_factory.mktemp("b") / "build"
    man = generate(tiny_mlp(), pes=2, out_dir=path)
    return path, man


@pytest.fixture
def copy(built, tmp_path):
    path = tmp_path / "build"
    shutil.copytree(built[0], path)
    return path


def rehash(path, name):
    """Forge the record after editing ``name`` (someone who knows the format)."""
    rec = json.loads((path / RECORD).read_text())
    rec["sha256"][name] = hashlib.sha256((path / name).read_bytes()).hexdigest()
    (path / RECORD).write_text(json.dumps(rec))


def edit_manifest(path, change, *, forge=False):
    d = json.loads((path / "manifest.json").read_text())
    change(d)
    (path / "manifest.json").write_text(json.dumps(d))
    if forge:
        rehash(path, "manifest.json")


def test_written_build_opens_and_round_trips(built):
    path, man = built
    b = BuildDir.open(path)
    assert b.manifest == man and b.manifest.version == MANIFEST_VERSION == 3
    assert Manifest.from_json(man.to_json()) == man
    assert sorted(p.name for p in path.iterdir()) == ["evhw_build.json", "evhw_top.v", "manifest.json", "mem",
                                                      "net.evnet"]
    assert sorted(json.loads((path / RECORD).read_text())["sha256"]) == sorted(
        ["evhw_top.v", "manifest.json", "net.evnet"] + [f"mem/{p.name}" for p in (path / "mem").iterdir()])
    q, _ = b.load_net()
    assert q.name == "tmlp"
    # ports are the component's: every contract port with its Verilog name, clk and rst first
    assert list(man.ports)[:2] == ["clk", "rst"] and man.ports["stat_data"].width == 32
    assert man.ports["cfg_data"].width >= man.widths.threshold
    assert len(man.stats.pe_busy) == man.pes == 2


@pytest.mark.parametrize("text, what", [("", "empty file"), ('{"version": 2, "top": "evhw_', "not valid JSON")])
def test_truncated_or_empty_manifest(copy, text, what):
    (copy / "manifest.json").write_text(text)
    with pytest.raises(BuildError, match=r"manifest\.json was changed after `evhw generate`"):
        BuildDir.open(copy)
    rehash(copy, "manifest.json")
    with pytest.raises(ManifestError, match=rf"manifest\.json: {what}"):
        BuildDir.open(copy)


def test_pes_edited_is_refused(copy):
    edit_manifest(copy, lambda d: d.update(pes=4))
    with pytest.raises(BuildError, match=r"manifest\.json was changed"):
        BuildDir.open(copy)
    rehash(copy, "manifest.json")
    with pytest.raises(ManifestError, match=r"manifest\.json: field stats\.pe_busy: 2 counters for 4 PE"):
        BuildDir.open(copy)


def test_widths_edited_are_refused(copy):
    edit_manifest(copy, lambda d: d["output"].update(value_bits=d["output"]["value_bits"] + 3))
    with pytest.raises(BuildError, match=r"manifest\.json was changed"):
        BuildDir.open(copy)
    rehash(copy, "manifest.json")
    with pytest.raises(ManifestError, match=r"field output\.value_bits: .* port out__payload"):
        BuildDir.open(copy)


@pytest.mark.parametrize("change, field", [
    (lambda d: d.update(extra=1), "unknown field extra"),
    (lambda d: d["widths"].pop("acc"), "missing field widths.acc"),
    (lambda d: d["ports"]["busy"].update(width="1"), "field ports.busy.width: expected an integer"),
    (lambda d: d["gates"]["input"].update(channels=True), "field gates.input.channels: expected an integer"),
    (lambda d: d.update(layers={}), "field layers: expected a list"),
    (lambda d: d["ports"].pop("stat_data"), "field ports: the top-level port 'stat_data' is missing"),
    (lambda d: d.update(version=1), "manifest version 1"),
])
def test_manifest_fields_are_typed(copy, change, field):
    edit_manifest(copy, change, forge=True)
    with pytest.raises(ManifestError) as e:
        BuildDir.open(copy)
    assert str(copy / "manifest.json") in str(e.value) and field in str(e.value)


def test_mixed_or_edited_build_is_refused(copy, built, tmp_path):
    (copy / "mem" / "pe7_weights.hex").write_text("00\n")
    with pytest.raises(BuildError, match=r"mem/pe7_weights\.hex is not part of this build"):
        BuildDir.open(copy)
    (copy / "mem" / "pe7_weights.hex").unlink()
    v = (copy / "evhw_top.v").read_text()
    (copy / "evhw_top.v").write_text(v.replace("endmodule", "endmodule\n", 1))
    with pytest.raises(BuildError, match=r"evhw_top\.v was changed after `evhw generate`"):
        BuildDir.open(copy)
    (copy / "evhw_top.v").write_text(v)
    other = tmp_path / "other"
    generate(tiny_mlp(seed=1), pes=2, out_dir=other)
    b = BuildDir.open(copy)
    shutil.copy(other / "net.evnet", copy / "net.evnet")
    with pytest.raises(BuildError, match=r"net\.evnet was changed"):
        b.load_net()
    with pytest.raises(BuildError, match=r"net\.evnet was changed"):
        BuildDir.open(copy)
    (copy / RECORD).unlink()
    with pytest.raises(BuildError, match=r"evhw_build\.json is missing: .*manifest\.json is from an older evhw"):
        BuildDir.open(copy)


def test_regenerate_replaces_the_build_whole(tmp_path):
    path = tmp_path / "build"
    generate(tiny_mlp(), pes=4, out_dir=path)
    (path / "sim_build").mkdir()
    (path / "stale.v").write_text("module stale; endmodule\n")
    generate(tiny_mlp(), pes=1, out_dir=path)
    assert sorted(p.name for p in (path / "mem").iterdir()) == ["cfg_map.hex", "pe0_params.hex",
                                                                 "pe0_thresholds.hex", "pe0_weights.hex"]
    assert not (path / "sim_build").exists() and not (path / "stale.v").exists()
    assert BuildDir.open(path).manifest.pes == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build"]        # no temporary folders left


def test_output_that_is_a_file_or_under_a_file(tmp_path):
    f = tmp_path / "model.onnx"
    f.write_bytes(b"precious")
    with pytest.raises(BuildError, match=r"model\.onnx is a file, not a folder"):
        generate(tiny_mlp(), pes=1, out_dir=f)
    with pytest.raises(BuildError, match=r"lies under .*model\.onnx, which is a file"):
        generate(tiny_mlp(), pes=1, out_dir=f / "sub" / "build")
    assert f.read_bytes() == b"precious" and sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_non_build_folder_is_not_replaced(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(BuildError, match="is not empty and is not an evhw build"):
        generate(tiny_mlp(), pes=1, out_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_refused_generate_leaves_nothing(tmp_path):
    import copy as copy_
    from rtl_gen.errors import UnsupportedHardwareError
    q = copy_.deepcopy(tiny_mlp())
    q.layers()[0].act = "gelu"
    with pytest.raises(UnsupportedHardwareError, match="activation 'gelu'"):
        generate(q, pes=1, out_dir=tmp_path / "a" / "build")
    assert list(tmp_path.iterdir()) == []
