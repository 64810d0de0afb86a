"""What every command line of the kit does with errors: one line, one exit-code policy, nothing half-done.

Exit codes: 0 success; 1 a verdict that failed (``check``: a rule failed; ``batch``: a team failed);
2 a usage or input/output error (a path, a file, a checkpoint, an image -- one ``error:`` line on
stderr naming it and the fix); 130 interrupted (Ctrl-C: one line saying what was kept).
"""

from __future__ import annotations

import sys
from typing import Callable

from esrkit.errors import KitError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def run_guarded(body: Callable[[], int], interrupted: str = "interrupted") -> int:
    """Run ``body``: a :class:`KitError` or an I/O error becomes ``error: <message>`` and exit 2, Ctrl-C 130."""
    try:
        return body()
    except KitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"interrupted: {interrupted}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (| head): nothing to say
        return EXIT_USAGE
    except OSError as exc:  # an I/O error no check caught: still one line, never a traceback
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"error: cannot access{where}: {exc.strerror or exc} (check the path, free space and permissions)",
              file=sys.stderr)
        return EXIT_USAGE
