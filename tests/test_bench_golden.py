"""`evhw bench golden --json`: the figures docs/benchmarks.md quotes, with the keys other tools read."""
import json

from evhw.flow.network import apply_thresholds, convert_model, frames_for
from evhw.golden import EventModel, Policy
from tests.cliutil import run


def test_bench_golden_json(capsys):
    code, out, err = run(capsys, "bench", "golden", "--model", "rand-mlp", "--frames", "6", "--threshold", "0.1",
                         "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["frames"] == 6 and r["blas_threads"] == 1 and r["kernels"] == "numba"
    for path in ("dense", "event"):
        assert r[path]["seconds"] > 0 and abs(r[path]["fps"] - 6 / r[path]["seconds"]) < 1e-6 * r[path]["fps"]
    assert abs(r["event_over_dense"] - r["dense"]["seconds"] / r["event"]["seconds"]) < 1e-9 * r["event_over_dense"]
    # the MAC counts are the golden model's own, recomputed here independently of the benchmark
    q, _ = convert_model("rand-mlp", threshold=0.1)
    apply_thresholds(q, 0.1)
    res = EventModel(q, Policy("evnet")).run(frames_for("synthetic:shapes", q.input.shape, 6))
    assert r["event"]["macs_per_frame"] == sum(x.event_macs for x in res) / 6
    assert r["dense"]["macs_per_frame"] == sum(x.dense_macs for x in res) / 6
    assert r["mac_savings"] == r["dense"]["macs_per_frame"] / r["event"]["macs_per_frame"] > 1


def test_bench_golden_numpy_kernels(capsys):
    """``--kernels numpy`` measures the NumPy event path, with the same counters as the compiled one."""
    code, out, err = run(capsys, "bench", "golden", "--model", "rand-cnn64", "--frames", "4", "--threshold", "0.1",
                         "--kernels", "numpy", "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["kernels"] == "numpy"
    code, out, _ = run(capsys, "bench", "golden", "--model", "rand-cnn64", "--frames", "4", "--threshold", "0.1",
                       "--kernels", "numba", "--json")
    assert code == 0 and json.loads(out)["mac_savings"] == r["mac_savings"]


def test_bench_golden_refuses_unknown_kernels(capsys):
    code, _, err = run(capsys, "bench", "golden", "--kernels", "fortran")
    assert code == 2 and "--kernels" in err


def test_bad_kernels_from_the_environment_is_one_line(capsys, monkeypatch):
    monkeypatch.setenv("EVHW_GOLDEN_KERNELS", "bogus")
    code, _, err = run(capsys, "bench", "golden", "--model", "rand-mlp", "--frames", "2")
    assert code == 2 and "EVHW_GOLDEN_KERNELS" in err and "'bogus'" in err and len(err.strip().splitlines()) == 1
