"""Model architectures, one per file; importing this package registers every entry.

Files are listed explicitly: adding an architecture means adding its import here.
"""

from models import mlrn  # noqa: F401
