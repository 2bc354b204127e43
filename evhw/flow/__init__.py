"""The flow layer: every function that chains steps (load/convert, evaluate, generate a build,
simulate, bench, study, demo). The CLI (evhw.cli) calls these and only prints their results."""
