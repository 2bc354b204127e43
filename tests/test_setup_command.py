"""The README's test command is what CI runs: `.ci/run` must hold it word for word, so a fresh
machine that follows the README gets exactly what CI checks (Icarus included)."""
from pathlib import Path
import re

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands():
    return re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), flags=re.S)


def test_readme_has_exactly_two_setup_commands():
    cmds = _readme_commands()
    assert len(cmds) == 2, cmds
    assert cmds[0].rstrip().endswith("evhw demo")
    assert cmds[1].rstrip().endswith("python -m pytest")


def test_ci_runs_the_readme_test_command():
    test_cmd = _readme_commands()[1].strip()
    ci_lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_cmd in ci_lines


def test_test_command_installs_icarus_when_missing():
    test_cmd = _readme_commands()[1]
    assert "command -v iverilog" in test_cmd and "apt-get install -y -qq iverilog" in test_cmd
