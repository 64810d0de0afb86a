"""What every command line of the kit does with errors: one line, one exit-code policy, nothing half-done.

Exit codes: 0 success; 1 a verdict that failed (``check``: a rule failed; ``batch``: a team failed);
2 a usage or input/output error (a path, a file, a checkpoint, an image -- one ``error:`` line on
stderr naming it and the fix); 70 an internal error (an exception no check foresaw: one
``internal error:`` line, the traceback in a log file it names); 130 interrupted (Ctrl-C, or SIGTERM in a
command that takes it as Ctrl-C -- :func:`sigterm_as_interrupt` -- one line saying what was kept).

This module imports nothing heavy, so that a command can guard its own imports with :func:`startup`
(torch takes seconds to import: a Ctrl-C then is one line too, not a traceback).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import signal
import sys
import threading
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator, NoReturn

from esrkit.errors import KitError, first_line

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70  # sysexits.h EX_SOFTWARE: the kit's (or a library's) fault, not the user's input
EXIT_INTERRUPTED = 130
LOG_DIR_ENV = "ESRKIT_LOG_DIR"


def crash_log_dir() -> Path:
    """Where tracebacks of internal errors go: ``$ESRKIT_LOG_DIR``, else ``$XDG_CACHE_HOME/esrkit``, else
    ``~/.cache/esrkit`` (never the results or the checkout)."""
    configured = os.environ.get(LOG_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "esrkit"


def write_crash_log(exc: BaseException) -> Path | None:
    """The traceback of ``exc``, the command line and the versions, in a new file (None if none can be written)."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    text = "".join([
        f"esrkit internal error, {stamp}\n", f"command: {' '.join(sys.argv)}\n",
        f"python {platform.python_version()} on {platform.platform()}\n",
        *(f"{name} {getattr(sys.modules[name], '__version__', '?')}\n" for name in ("esrkit", "torch", "numpy")
          if name in sys.modules),
        "\n", *traceback.format_exception(type(exc), exc, exc.__traceback__),
    ])
    for folder in (crash_log_dir(), Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"esrkit-internal-error-{stamp}-{os.getpid()}.log"
            path.write_text(text, encoding="utf-8")
            return path
        except OSError:
            continue
    return None


def internal_error(exc: BaseException) -> int:
    """One ``internal error:`` line naming the log file with the traceback; the exit code for it."""
    path = write_crash_log(exc)
    where = f"the traceback is in {path}" if path is not None else "no log file could be written"
    print(f"internal error: {first_line(exc)} -- a failure the kit did not foresee, not a problem found in your input; "
          f"{where} (please report it with that file)", file=sys.stderr)
    return EXIT_INTERNAL


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's time limit, ``scancel``, ``kill``), raised where Ctrl-C raises KeyboardInterrupt."""


def raise_terminated(signum: int, frame: Any) -> None:
    """The SIGTERM handler of :func:`sigterm_as_interrupt`."""
    raise Terminated


def interrupted_by(exc: BaseException) -> str:
    """The start of an interrupted command's last line: ``interrupted`` (Ctrl-C) or ``interrupted by SIGTERM``."""
    return "interrupted by SIGTERM" if isinstance(exc, Terminated) else "interrupted"


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While entered, SIGTERM stops the command as Ctrl-C does (a :class:`Terminated` is raised), instead of
    ending the process at once with nothing said and nothing kept. Only the main thread can install a handler;
    elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_guarded(body: Callable[[], int], interrupted: str = "interrupted") -> int:
    """Run ``body``: a :class:`KitError` or an I/O error becomes ``error: <message>`` and exit 2, Ctrl-C (or a
    :class:`Terminated`) 130, any other exception one ``internal error:`` line and exit 70."""
    try:
        return body()
    except KitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        print(f"{interrupted_by(exc)}: {interrupted}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (| head): nothing to say
        return EXIT_USAGE
    except OSError as exc:  # an I/O error no check caught: still one line, never a traceback
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"error: cannot access{where}: {exc.strerror or exc} (check the path, free space and permissions)",
              file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - the last net: never a traceback on the user's screen
        return internal_error(exc)


@contextlib.contextmanager
def startup(interrupted: str = "nothing was written") -> Iterator[None]:
    """Guard a command's imports: Ctrl-C is one line and exit 130, a missing package one ``error:`` line and exit
    2, anything else an internal error (see :func:`run_guarded`)."""
    try:
        yield
    except KeyboardInterrupt:
        print(f"interrupted: {interrupted}", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None
    except ModuleNotFoundError as exc:
        print(f"error: the package {exc.name!r} is not installed in this environment: install the kit's requirements "
              f"(README, Quick start: pip install -r requirements.txt)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    except Exception as exc:  # noqa: BLE001
        raise SystemExit(internal_error(exc)) from None


def exit_now(code: int) -> NoReturn:
    """End a command that has written and flushed everything it writes: at once, without the interpreter's teardown
    (torch's takes about 0.4 s and writes nothing). For the ``__main__`` of a command, never inside a library call."""
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
