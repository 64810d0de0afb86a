"""The online phase's scoring program: :file:`score.py`, a standalone file (Python 3.8+, numpy, Pillow) that
``python -m esrkit.submission scoring-program`` zips as is; it never imports the kit (see
:mod:`esrkit.submission.scoring`)."""
