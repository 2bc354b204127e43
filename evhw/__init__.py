"""evhw: an open hardware generator for Event Neural Networks (network side: NumPy only, no Amaranth)."""

__version__ = "0.1.0"
