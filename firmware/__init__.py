"""Host runtime: configuration images and drivers for the generated hardware, in simulation and on boards."""
