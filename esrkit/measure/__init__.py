"""Measuring an entry: :mod:`.timing` (the challenge protocol, the robust protocol, interleaved pairs:
raw samples in, summaries out), :mod:`.complexity` (params, FLOPs under each counter, activations,
#conv, with input dependence detected) and :mod:`.probe` (the seeded probe inputs). Every command
measures through these.
"""
