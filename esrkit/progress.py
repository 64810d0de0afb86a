"""One progress display for every phase that can take more than a few seconds.

A tqdm bar on standard error when it is a terminal; nothing when it is not (logs, pipes, CI) or
with ``--quiet``. Each phase opens a bar with :meth:`Progress.bar` and advances it with a short
status (the latest image's PSNR and time, the rule being checked, the training loss).
"""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator, TextIO

from tqdm import tqdm


class Bar:
    """One phase's bar: :meth:`advance` by one step, with an optional status shown beside it."""

    def __init__(self, bar: tqdm) -> None:
        self._bar = bar

    def advance(self, status: str = "", steps: int = 1) -> None:
        if status:
            self._bar.set_postfix_str(status, refresh=False)
        self._bar.update(steps)

    def status(self, text: str) -> None:
        self._bar.set_postfix_str(text)


class Progress:
    """Whether and where progress is shown (see the module docstring)."""

    def __init__(self, enabled: bool | None = None, stream: TextIO | None = None) -> None:
        self._stream = stream
        self.enabled = (self.stream.isatty() if hasattr(self.stream, "isatty") else False) if enabled is None else enabled

    @property
    def stream(self) -> TextIO:
        """The given stream, else the current ``sys.stderr`` (read at each use, so redirections are followed)."""
        return self._stream or sys.stderr

    @classmethod
    def quiet(cls) -> "Progress":
        return cls(enabled=False)

    @contextlib.contextmanager
    def bar(self, total: int | None, desc: str, unit: str = "image", initial: int = 0,
            mininterval: float = 0.0) -> Iterator[Bar]:
        """A bar for one phase. By default every step is drawn (images, rules, tiles: seconds apart); a phase
        with many fast steps (training iterations) passes ``mininterval`` seconds between redraws."""
        with tqdm(total=total, initial=initial, desc=desc, unit=unit, file=self.stream, disable=not self.enabled,
                  dynamic_ncols=True, leave=False, mininterval=mininterval, miniters=None if mininterval else 1) as bar:
            yield Bar(bar)

    def write(self, line: str) -> None:
        """A line that stays (above a running bar, or plain when there is none)."""
        if self.enabled:
            tqdm.write(line, file=self.stream)
        else:
            print(line, file=self.stream)


QUIET = Progress.quiet()
