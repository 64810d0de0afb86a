"""Model architectures, one per file; importing this package registers every entry.

Files are listed explicitly: adding an architecture means adding its import here.
"""

from models import efdn, imdn, mlrn, rfdn, rlfn  # noqa: F401
