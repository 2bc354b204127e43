"""An unexpected exception (a bug) is one line and exit code 3, never a traceback; EVHW_TRACEBACK shows it."""
import pytest

import evhw.flow.network as network
from tests.cliutil import run


def _boom(*a, **k):
    raise ZeroDivisionError("planted")


def test_bug_is_one_line_exit_3(capsys, monkeypatch):
    monkeypatch.delenv("EVHW_TRACEBACK", raising=False)
    monkeypatch.setattr(network, "convert_model", _boom)
    code, out, err = run(capsys, "info", "rand-mlp")
    assert code == 3
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "internal error" in lines[0] and "ZeroDivisionError: planted" in lines[0]
    assert "Traceback" not in err + out


def test_traceback_on_request(capsys, monkeypatch):
    monkeypatch.setenv("EVHW_TRACEBACK", "1")
    monkeypatch.setattr(network, "convert_model", _boom)
    with pytest.raises(ZeroDivisionError):
        run(capsys, "info", "rand-mlp")


def test_mismatch_error_exits_1(capsys, monkeypatch):
    """A check that ran and failed (MismatchError) keeps exit code 1, distinct from input errors (2)."""
    from evhw.errors import MismatchError

    def mismatch(*a, **k):
        raise MismatchError("P=1 evnet: the RTL does not match the golden model")

    monkeypatch.setattr(network, "convert_model", mismatch)
    code, out, err = run(capsys, "info", "rand-mlp")
    assert code == 1 and "does not match" in err
