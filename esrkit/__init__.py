"""esrkit: the reference submission and benchmarking kit for efficient x4 image super-resolution.

The data flows one way: datasets -> entries (model + weights) -> evaluation loop (timing, tiling)
-> metrics -> results/report. Each module does one of those jobs.
"""

__version__ = "0.1.0"
