"""CPU seconds of Verilator builds with and without ccache (docs/architecture.md, "Simulation builds").

Run from a checkout: ``python docs/bench/ccache_build.py``. Uses a fresh ccache folder, so the
figures do not depend on what this machine compiled before: a tiny MLP without ccache, then with
it (cold: fills the cache), then the same MLP in a new folder, then a small CNN array never
compiled before with and without ccache (the runtime library already in the cache)."""
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "rtl"))
from tiny_nets import tiny_cnn, tiny_mlp  # noqa: E402

from rtl_gen.export import generate  # noqa: E402
from sim.runner import build  # noqa: E402
from sim.tbwrap import TB_TOP  # noqa: E402

os.environ["CCACHE_DIR"] = tempfile.mkdtemp(prefix="evhw-ccache-bench-")


def cpu_of_build(net, pes, use_ccache):
    q, g = net()
    d = Path(tempfile.mkdtemp()) / "b"
    generate(q, pes=pes, out_dir=d, graph=g)
    os.environ.pop("CCACHE_DISABLE", None)
    if not use_ccache:
        os.environ["CCACHE_DISABLE"] = "1"
    t0 = os.times()
    build(d, simulator="verilator", toplevel=TB_TOP)
    t1 = os.times()
    return round(t1.children_user + t1.children_system - t0.children_user - t0.children_system, 1)


for label, net, pes, cc in [("tiny MLP, P=1, no ccache", tiny_mlp, 1, False),
                            ("tiny MLP, P=1, ccache cold", tiny_mlp, 1, True),
                            ("tiny MLP, P=1, ccache, again in a new folder", tiny_mlp, 1, True),
                            ("small CNN, P=2, new design, ccache (runtime cached)", tiny_cnn, 2, True),
                            ("small CNN, P=3, new design, no ccache", tiny_cnn, 3, False)]:
    print(f"{label}: {cpu_of_build(net, pes, cc)} CPU s", flush=True)
