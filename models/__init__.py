"""Model architectures, one per file; importing this package imports every file, and so registers every entry.

Each file registers its own entries explicitly (``register(Entry(...))``); this package only makes
sure every file is imported, so adding an architecture is adding one file here.
"""

import importlib
import pkgutil

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")
