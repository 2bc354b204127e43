"""``python -m sim.cocotb_worker SPEC.json``: one cocotb runner step (build or test) in a child process.

Started by :func:`sim.runner.build` / :func:`sim.runner.run_cocotb` through :func:`rtl_gen.procs.run_group`,
so the compiler and the simulator it starts live in a process group that dies with ``evhw``.
``SPEC.json``: ``{"op": "build" | "test", "simulator": name, "kwargs": {...}}`` (the keyword
arguments of ``cocotb_tools.runner.Runner.build`` / ``.test``). Exit code 0: done; 3: the runner
reported a failure (message on stderr).
"""
import json
import sys

from rtl_gen.procs import die_with_parent


def main(argv):
    die_with_parent()
    spec = json.loads(open(argv[0]).read())
    from cocotb_tools.runner import get_runner
    kwargs = dict(spec["kwargs"])
    if kwargs.get("timescale") is not None:
        kwargs["timescale"] = tuple(kwargs["timescale"])
    runner = get_runner(spec["simulator"])
    try:
        getattr(runner, spec["op"])(**kwargs)
    except (RuntimeError, SystemExit) as e:
        print(f"{spec['op']} failed: {e}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
