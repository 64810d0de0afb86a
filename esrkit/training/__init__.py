"""Training entries: data (:mod:`.data`), the loop and DDP (:mod:`.loop`), checkpoints
(:mod:`.checkpointing`) and the run's CSV log and curve (:mod:`.records`).

The command line is :mod:`esrkit.train` (``python -m esrkit.train``).
"""
