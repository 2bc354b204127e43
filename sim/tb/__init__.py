"""cocotb testbenches (run inside the simulator by :func:`sim.runner.run_cocotb`)."""
