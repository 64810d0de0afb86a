"""One progress display for every phase that can take more than a few seconds, and the run log beside it.

On a terminal: a tqdm bar on standard error. Elsewhere (a log file, a pipe, CI, a batch's team process):
plain lines, one per step (``valid (sequential) 3/100: 0803: 29.41 dB, 12.3 ms``), at most one every
``LINE_INTERVAL_S`` for phases of many fast steps (training iterations) -- so a long run is never
silent. ``--quiet`` turns both off. Each phase opens a bar with :meth:`Progress.bar` and advances it
with a short status (the latest image's PSNR and time, the rule being checked, the training loss).

With a run log (:func:`run_log`: a file in the results folder, as the official kits write
``NTIRE20xx-EfficientSR.log``), every step's status and every line written also go there, time-stamped,
whether or not anything is shown.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import Iterator, TextIO

from tqdm import tqdm

from esrkit.errors import KitError

LOG_NAME = "esrkit.log"
LINE_INTERVAL_S = 30.0  # plain lines of a phase with many fast steps: at most one per this many seconds


class Bar:
    """One phase's display: :meth:`advance` by one step, with an optional status shown beside it."""

    def __init__(self, bar: tqdm | None, desc: str, total: int | None, initial: int, lines: TextIO | None,
                 interval: float, log: logging.Logger | None) -> None:
        self._bar = bar
        self._desc = desc
        self._total = total
        self._done = initial
        self._lines = lines
        self._interval = interval
        self._last_line = -float("inf")
        self._log = log

    def advance(self, status: str = "", steps: int = 1) -> None:
        self._done += steps
        if self._bar is not None:
            if status:
                self._bar.set_postfix_str(status, refresh=False)
            self._bar.update(steps)
        where = f"{self._desc} {self._done}/{self._total}" if self._total else f"{self._desc} {self._done}"
        if self._lines is not None and (time.monotonic() - self._last_line >= self._interval
                                        or self._done == self._total):
            self._last_line = time.monotonic()
            print(f"{where}: {status}" if status else where, file=self._lines, flush=True)
        if self._log is not None and status:
            self._log.info(f"{where}: {status}")

    def status(self, text: str) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(text)


class Progress:
    """Whether and how progress is shown, and the run log it is mirrored to (see the module docstring).

    ``enabled`` None: a bar on a terminal, plain lines elsewhere; False: nothing shown (``--quiet``).
    """

    def __init__(self, enabled: bool | None = None, stream: TextIO | None = None,
                 log: logging.Logger | None = None) -> None:
        self._stream = stream
        self.log = log
        self.quiet = enabled is False
        self.enabled = (self.stream.isatty() if hasattr(self.stream, "isatty") else False) if enabled is None else enabled

    @property
    def stream(self) -> TextIO:
        """The given stream, else the current ``sys.stderr`` (read at each use, so redirections are followed)."""
        return self._stream or sys.stderr

    @classmethod
    def quiet_one(cls) -> "Progress":
        return cls(enabled=False)

    @contextlib.contextmanager
    def bar(self, total: int | None, desc: str, unit: str = "image", initial: int = 0,
            mininterval: float = 0.0) -> Iterator[Bar]:
        """A bar for one phase. By default every step is drawn (images, rules, tiles: seconds apart); a phase
        with many fast steps (training iterations) passes ``mininterval`` seconds between redraws."""
        lines = self.stream if not self.enabled and not self.quiet else None
        interval = LINE_INTERVAL_S if mininterval else 0.0
        with tqdm(total=total, initial=initial, desc=desc, unit=unit, file=self.stream, disable=not self.enabled,
                  dynamic_ncols=True, leave=False, mininterval=mininterval, miniters=None if mininterval else 1) as bar:
            yield Bar(bar if self.enabled else None, desc, total, initial, lines, interval, self.log)

    def write(self, line: str) -> None:
        """A line that stays (above a running bar, or plain when there is none), and goes to the run log."""
        if self.log is not None:
            self.log.info(line)
        if self.enabled:
            tqdm.write(line, file=self.stream)
        else:
            print(line, file=self.stream)


QUIET = Progress.quiet_one()


def run_log(folder: str | Path, name: str = LOG_NAME) -> logging.Logger:
    """A logger appending time-stamped lines to ``folder/name`` (one per process and file; the official kits keep
    such a log of every run beside their results)."""
    path = (Path(folder) / name).resolve()
    logger = logging.getLogger(f"esrkit.run.{path}")
    if not logger.handlers:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(path, encoding="utf-8")
        except OSError as exc:
            raise KitError(f"cannot write the run log {path} ({exc.strerror or exc}): choose another results folder "
                           f"(--results_dir)") from None
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger
