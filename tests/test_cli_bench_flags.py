"""`evhw bench hw` checks its flags before any work: exit 2, one line naming the flag."""
import pytest

from tests.cliutil import run


@pytest.mark.parametrize("args", [["--pes", "a,2"], ["--pes", "99"], ["--pes", "0,4"], ["--pes", ""],
                                  ["--dense-pes", "0"], ["--frames", "0"], ["--threshold", "nan"],
                                  ["--lanes", "3"], ["--lanes", "16"], ["--lanes", "1,x"]])
def test_bench_hw_bad_flags(capsys, tmp_path, args):
    code, out, err = run(capsys, "bench", "hw", "-o", str(tmp_path / "b"), *args)
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and args[0] in lines[0], err
    assert not (tmp_path / "b").exists()
