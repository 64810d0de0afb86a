"""What every command line of the kit does with errors: one line, a non-zero exit code, nothing half-done."""

from __future__ import annotations

import sys
from typing import Callable

from esrkit.errors import KitError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def run_guarded(body: Callable[[], int], interrupted: str = "interrupted") -> int:
    """Run ``body``; a :class:`KitError` becomes ``error: <message>`` on stderr and exit code 2, Ctrl-C 130."""
    try:
        return body()
    except KitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{interrupted}", file=sys.stderr)
        return EXIT_INTERRUPTED
