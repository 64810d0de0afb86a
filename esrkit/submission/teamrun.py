"""One team of a batch, measured: resolved, loaded, counted and run on the split -- in a team process of its own
(``python -m esrkit.submission.teamrun``, confined by :mod:`esrkit.sandbox` unless ``--unconfined``) or, with
``--in_process``, in the batch's own process.

A team's process is handed a :class:`TeamRequest` (its spec, the batch's settings, the data's digest, the folder
its SR images go to) and **writes none of the organiser's files**: it hands back one :class:`TeamReply` -- the
results entry it measured, or its failure in one line -- on a channel of its own (a pipe whose descriptor it is
given in ``$ESRKIT_CHANNEL``), and its SR images in its own folder. The batch validates the reply
(:mod:`esrkit.submission.reply`) and alone writes results.json, results.txt, the status records and the page, and
moves the SR images into place.

SIGTERM (the batch stopping it: a time limit, Ctrl-C) is taken as Ctrl-C: the team process ends at once with
nothing sent.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import sys
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from esrkit.cli import EXIT_OK, EXIT_USAGE, exit_now, run_guarded

CHANNEL_ENV = "ESRKIT_CHANNEL"  # the descriptor of the pipe a team process replies on
READY, TIMING, TIMED = "ready", "timing", "timed"  # a team process's events (see Channel)
GO = "go"
OK, FAILED, SKIPPED = "ok", "failed", "skipped"


@dataclass(frozen=True)
class BatchSettings:
    """What every team of a batch is measured with (and what a re-run must match to skip a team)."""

    data_dir: Path
    split: str
    layout: str
    year: int | None
    device: str
    ssim: bool = False
    warm_runs: int = 0
    default_data_range: float | None = None  # for the teams whose spec (and file) declare none
    save_dir: Path | None = None
    threads: int | None = None  # torch threads per team (None: torch's default)

    def open_split(self) -> Any:
        from esrkit.datasets import open_split

        return open_split(self.data_dir, self.split, self.layout)

    def to_json(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "BatchSettings":
        values = dict(data)
        for key in ("data_dir", "save_dir"):
            values[key] = None if values.get(key) is None else Path(values[key])
        return cls(**values)


@dataclass
class TeamOutcome:
    """One team's line of the batch table: its status, its results key and entry when measured, its error if not."""

    label: str
    key: str | None
    status: str
    error: str = ""
    record: dict[str, Any] | None = None


def spec_to_json(spec: Any) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
            for k, v in dataclasses.asdict(spec).items() if v is not None}


def spec_from_json(data: Mapping[str, Any]) -> Any:
    from esrkit.spec import TeamSpec

    values = dict(data)
    for key in ("model_file", "weights"):
        if key in values:
            values[key] = Path(values[key])
    if "init_args" in values:
        values["init_args"] = tuple(values["init_args"])
    return TeamSpec(**values)


@dataclass(frozen=True)
class TeamRequest:
    """What a team process is asked to do: measure ``spec`` with ``settings`` on the data whose digest is
    ``data_fingerprint``, writing its SR images (when the batch saves them) into ``sr_dir/<split>/``."""

    spec: Any  # TeamSpec
    settings: BatchSettings
    data_fingerprint: str
    sr_dir: Path | None = None
    confined: bool = True

    def to_json(self) -> str:
        return json.dumps({"spec": spec_to_json(self.spec), "settings": self.settings.to_json(),
                           "data_fingerprint": self.data_fingerprint, "confined": self.confined,
                           "sr_dir": None if self.sr_dir is None else str(self.sr_dir)})

    @classmethod
    def from_json(cls, text: str) -> "TeamRequest":
        data = json.loads(text)
        return cls(spec_from_json(data["spec"]), BatchSettings.from_json(data["settings"]), data["data_fingerprint"],
                   None if data.get("sr_dir") is None else Path(data["sr_dir"]), bool(data.get("confined", True)))


def measure_team(request: TeamRequest, progress: Any = None,
                 timed_phase: Callable[[], AbstractContextManager[None]] = nullcontext) -> TeamOutcome:
    """One team, in this process: resolve its spec, load, count, run the split (SR images into ``request.sr_dir``);
    its results entry in the outcome. A failure is the outcome, never raised; nothing is written but SR images.
    ``timed_phase`` is held around the timed part (:class:`esrkit.run.RunOptions`)."""
    from esrkit.challenge import Convention
    from esrkit.device import free_device, pick_device, torch_threads
    from esrkit.errors import KitError, first_line
    from esrkit.progress import QUIET
    from esrkit.results import entry_record
    from esrkit.run import RunOptions, run_entry
    from esrkit.spec import resolve

    spec, settings = request.spec, request.settings
    progress = QUIET if progress is None else progress
    device = pick_device(settings.device)
    options = RunOptions(device, ssim=settings.ssim, warm_runs=settings.warm_runs, progress=progress,
                         timed_phase=timed_phase)
    try:
        with torch_threads(settings.threads):
            split = settings.open_split()
            convention = Convention.for_run(settings.year, split.layout)
            entry = resolve(spec, require_data_range=settings.default_data_range is None)
            if entry.data_range is None:  # neither the spec nor the file says it: the organisers' default
                entry = entry.replace(data_range=settings.default_data_range)
            run = run_entry(entry, [split], convention, options, weights_flag="weights (in the spec)",
                            sr_dir=request.sr_dir, data_fingerprint=request.data_fingerprint)
            record = entry_record(run, data_fingerprint=request.data_fingerprint, with_environment=False)
            record["confined"] = request.confined
        return TeamOutcome(spec.label, run.key, OK, record=record)
    except KitError as exc:
        message = str(exc)
        return TeamOutcome(spec.label, None, FAILED, message if message.startswith(spec.label) else f"{spec.label}: {message}")
    except Exception as exc:  # noqa: BLE001 - a team's code failing in a way no check foresaw: still one line
        return TeamOutcome(spec.label, None, FAILED, f"{spec.label}: {first_line(exc)}")
    finally:
        free_device(device)  # the next team's memory figure must not hold this team's weights


def reply_json(outcome: TeamOutcome) -> str:
    """A team process's one reply (see :mod:`esrkit.submission.reply` for what the batch accepts)."""
    return json.dumps({"key": outcome.key, "status": outcome.status, "error": outcome.error, "record": outcome.record},
                      allow_nan=True)


class Channel:
    """A team process's side of its talk with the batch: events and its reply out on the channel (``$ESRKIT_CHANNEL``),
    the batch's "go" in on stdin.

    The process first imports what it needs and says ``ready``; the batch tells it to go once the team before it
    has finished (so its imports overlap that team's work, never its team code). Before its timed part it says
    ``timing`` and waits for the batch's go (which first pauses any other team process of the batch), and says
    ``timed`` after it."""

    def __init__(self, fd: int) -> None:
        self._out = os.fdopen(fd, "w", encoding="utf-8")

    def send(self, message: Mapping[str, Any]) -> None:
        self._out.write(json.dumps(message, allow_nan=True) + "\n")
        self._out.flush()

    @staticmethod
    def wait_go() -> bool:
        """Block until the batch says go (True), or closes stdin (False: the batch stopped)."""
        return sys.stdin.readline().strip() == GO

    @contextlib.contextmanager
    def timed_phase(self) -> Iterator[None]:
        self.send({"event": TIMING})
        if not self.wait_go():
            raise KeyboardInterrupt
        try:
            yield
        finally:
            self.send({"event": TIMED})


def warm_imports() -> None:
    """What measuring a team imports (torch and the kit): done before the batch says go."""
    import esrkit.progress  # noqa: F401
    import esrkit.results  # noqa: F401
    import esrkit.run  # noqa: F401
    import esrkit.spec  # noqa: F401


def child_main(argv: Sequence[str] | None = None) -> None:
    """The team process: the request on the command line, the reply on the channel ``$ESRKIT_CHANNEL``."""
    parser = argparse.ArgumentParser(prog="python -m esrkit.submission.teamrun",
                                     description="one team of a batch (run by `python -m esrkit.submission batch`)")
    parser.add_argument("--request", required=True, help="the request, as JSON")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        channel = Channel(int(os.environ[CHANNEL_ENV]))
    except (KeyError, ValueError, OSError):
        print(f"error: no reply channel (${CHANNEL_ENV}): this command is run by `python -m esrkit.submission batch`",
              file=sys.stderr)
        exit_now(EXIT_USAGE)

    def body() -> int:
        warm_imports()
        channel.send({"event": READY})
        if not channel.wait_go():
            return EXIT_OK  # stopped before it began: nothing to say
        from esrkit.progress import Progress

        request = TeamRequest.from_json(args.request)
        outcome = measure_team(request, Progress(stream=sys.__stderr__), channel.timed_phase)  # lines relayed
        channel.send(json.loads(reply_json(outcome)))
        return EXIT_OK if outcome.status == OK else EXIT_USAGE

    exit_now(run_guarded(body, "this team was not measured"))  # everything is said and written


if __name__ == "__main__":
    child_main()
