"""Submission kit: ``check`` catches what the organisers would find wrong with an entry, ``package`` makes the
upload, ``export`` writes a kit entry as one challenge file, ``batch`` is the organisers' intake of every team,
``scoring-program`` the online phase's scoring program, ``verify`` whether a team's uploaded SR images are what its
code produces.

Modules: :mod:`~esrkit.submission.layout` (file names and imports), :mod:`~esrkit.submission.check` (the
rules), :mod:`~esrkit.submission.package` (zip, readme.txt, factsheet), :mod:`~esrkit.submission.export`,
:mod:`~esrkit.submission.batch`, :mod:`~esrkit.submission.report` (the table), :mod:`~esrkit.submission.scoring`
(the zip for CodaLab / CodaBench around the standalone ``scoring_program/score.py``), :mod:`~esrkit.submission.verify`
(an upload against the team's reproduced images). What a submission *is* --
a class, its arguments, weights, data range -- is :mod:`esrkit.spec` and :mod:`esrkit.entry`.
"""
