"""The kit's model architectures, one per file; importing this package imports every file, and so registers
every entry.

Each file registers its own entries explicitly (``register(Entry(...))``); this package only makes
sure every file is imported, so adding an architecture is adding one file here. Team submissions
(``teamNN_Name.py``, e.g. written here by ``export --out .``) are not the kit's: they are skipped,
and imported only in isolation, when a command names them (:mod:`esrkit.teamfile`).
"""

import importlib
import pkgutil
import re

_SUBMISSION = re.compile(r"^team\d{2}_")

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if not _SUBMISSION.match(_module):
        importlib.import_module(f"{__name__}.{_module}")
