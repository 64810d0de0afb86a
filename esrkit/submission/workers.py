"""Where and how a batch's team processes run: one slot per GPU (or per CPU worker), one queue, one team
process at a time per slot, its output relayed line by line, a time limit, and a clean stop.

A slot is a device a team has to itself while it is measured: a GPU (``--devices``), shown to the team's
process as its only device through ``CUDA_VISIBLE_DEVICES`` (so that a file that hard-codes ``cuda:0``
still lands on its own GPU, and no CUDA context of the team's ever opens on another one; a
``CUDA_VISIBLE_DEVICES`` the batch itself runs under -- Slurm sets one -- is respected: slot ``cuda:1``
is the second device of that list), or a CPU worker (``--workers N``), given ``--threads T`` torch threads
so that N workers do not oversubscribe the cores.

Each team process runs confined (:mod:`esrkit.sandbox`; unless ``--unconfined``) in a session of its own, so
that it and whatever it starts are stopped together: past ``--team_timeout``, on Ctrl-C, or when the batch is
terminated (SIGTERM), it is sent SIGTERM, then SIGKILL after a grace period (and a confined one takes everything it
started with it: its PID namespace ends with it). Its reply comes on a channel of its own (a pipe, never its
stdout, where a team's own prints go); every line of its stdout and stderr is relayed whole, prefixed with the
team's key, so that parallel teams' lines never interleave mid-line -- at most ``MAX_RELAYED_LINES`` of them.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Callable, Generic, Iterator, Mapping, Sequence, TypeVar

import torch

from esrkit.errors import KitError
from esrkit.sandbox import Sandbox, View, kit_root
from esrkit.submission.reply import MAX_REPLY_BYTES
from esrkit.submission.teamrun import CHANNEL_ENV, GO, READY, TIMED, TIMING

POLL_S = 0.1  # how often a waiting worker looks at its team process and at the stop signal
GRACE_S = 5.0  # between SIGTERM and SIGKILL when a team process is stopped
MAX_RELAYED_LINES = 2000  # lines of one team process's output relayed; the rest are counted, not shown
MAX_LINE = 2000  # characters of one relayed line
J = TypeVar("J")
O = TypeVar("O")


@dataclass(frozen=True)
class Slot:
    """One place a team runs alone: ``name`` as the batch sees it (``cuda:1``, ``cpu worker 2``), ``device``
    as the team's process is told it, and what that process's environment gets."""

    name: str
    device: str
    env: Mapping[str, str] = field(default_factory=dict)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity: a Slurm allocation's, a cgroup's), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - platforms without sched_getaffinity
        return max(1, os.cpu_count() or 1)


def default_threads(slots: int) -> int:
    """Torch threads per team process when several run at once: the usable cores shared out, at least 1."""
    return max(1, usable_cores() // max(1, slots))


def cpu_slots(workers: int) -> list[Slot]:
    if workers < 1:
        raise KitError(f"--workers {workers}: give the number of CPU workers (1 or more)")
    return [Slot(f"cpu worker {i + 1}", "cpu") for i in range(workers)]


def cuda_slots(text: str) -> list[Slot]:
    """``all`` or ``cuda:0,cuda:1,...``: one slot per GPU, checked without opening a CUDA context here."""
    if not torch.cuda.is_available() or torch.cuda.device_count() == 0:
        raise KitError(f"--devices {text}: no CUDA device is available here; use --workers N for CPU workers")
    count = torch.cuda.device_count()
    if text.strip() == "all":
        indices = list(range(count))
    else:
        indices = []
        for part in (p.strip() for p in text.split(",")):
            prefix, _, number = part.partition(":")
            if prefix != "cuda" or not number.isdigit():
                raise KitError(f"--devices {text}: {part!r} is not a CUDA device; give cuda:0,cuda:1,... or all "
                               f"(for CPU workers: --workers N)")
            if int(number) >= count:
                raise KitError(f"--devices {text}: this machine has {count} CUDA device(s) (cuda:0 to cuda:{count - 1})")
            if int(number) in indices:
                raise KitError(f"--devices {text}: {part} is given twice; a team has its device to itself, so each "
                               f"device is one worker")
            indices.append(int(number))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [v.strip() for v in visible.split(",")] if visible is not None else None
    return [Slot(f"cuda:{k}", "cuda:0", {"CUDA_VISIBLE_DEVICES": ids[k] if ids else str(k)}) for k in indices]


def device_model(device: str) -> str:
    """What a device is, for a fingerprint: ``cpu``, ``mps``, or ``cuda <model name>`` -- the same for every
    GPU of one model, so that a team measured on cuda:1 is not measured again for landing on cuda:0."""
    kind = torch.device(device)
    if kind.type != "cuda":
        return kind.type
    return f"cuda {torch.cuda.get_device_name(kind.index or 0)}"


# --- stopping ---------------------------------------------------------------------------------------


class Stop:
    """Shared by the workers of one batch: set on Ctrl-C (or SIGTERM); knows the live team processes."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._live: set[TeamProcess] = set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def set(self) -> None:
        self._event.set()

    def wait(self, seconds: float) -> bool:
        return self._event.wait(seconds)

    @contextlib.contextmanager
    def tracking(self, process: "TeamProcess") -> Iterator[None]:
        with self._lock:
            self._live.add(process)
        try:
            yield
        finally:
            with self._lock:
                self._live.discard(process)

    def kill_all(self) -> None:
        """SIGKILL every live team process now (a second Ctrl-C: no grace period)."""
        with self._lock:
            live = list(self._live)
        for process in live:
            process.signal_group(signal.SIGKILL)


# --- one team process ------------------------------------------------------------------------------


class TeamProcess:
    """One team's process (see the module docstring): start it -- confined by ``sandbox`` to ``view`` when given --,
    relay its output, follow its events and read its reply on its channel, tell it to go, wait for it, stop it.

    The process says ``ready`` once it has imported what it needs, and waits for :meth:`go` before it does anything
    of the team's; before its timed part it says ``timing`` and waits for go again -- given by ``on_timing`` (by
    default at once), which may first pause other team processes -- and says ``timed`` after it (``on_timed``)."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], write: Callable[[str], None], tag: str,
                 sandbox: Sandbox | None = None, view: View | None = None,
                 on_timing: Callable[["TeamProcess"], None] | None = None,
                 on_timed: Callable[["TeamProcess"], None] | None = None) -> None:
        self._write, self._tag = write, tag
        self._on_timing = on_timing or TeamProcess.go
        self._on_timed = on_timed or (lambda process: None)
        self._lock = threading.Lock()  # the relay counts (stdout's and stderr's readers)
        self._relayed = 0
        self._dropped = 0
        self._reply: str | None = None
        self._reply_too_large = False
        self.ready = threading.Event()  # it has imported what it needs and waits for go
        self.began: float | None = None  # when it was told to go (monotonic seconds)
        read_end, write_end = os.pipe()
        variables = {CHANNEL_ENV: str(write_end), **env}
        if sandbox is not None:
            assert view is not None
            command, environ, cwd = sandbox.command(argv, view, variables), None, None
        else:  # unconfined: the organiser's environment, the kit importable from the team's working folder
            path = os.pathsep.join(p for p in (str(kit_root()), os.environ.get("PYTHONPATH", "")) if p)
            command, environ = list(argv), {**os.environ, **variables, "PYTHONPATH": path}
            cwd = None if view is None else view.workdir
        try:
            self._proc = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environ, cwd=cwd,
                pass_fds=(write_end,), start_new_session=True)
        finally:
            os.close(write_end)
        self._channel = os.fdopen(read_end, "rb")
        pipes = [(self._proc.stdout, self._relay), (self._proc.stderr, self._relay), (self._channel, self._follow)]
        self._readers = [threading.Thread(target=read, args=(pipe,), daemon=True) for pipe, read in pipes]
        for reader in self._readers:
            reader.start()

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def reply(self) -> str | None:
        """Its reply (the last line on its channel that is not an event); None: none, or larger than a reply may be."""
        return None if self._reply_too_large else self._reply

    def go(self) -> None:
        """Tell it to go on (it waits for this after ``ready`` and after ``timing``)."""
        if self.began is None:
            self.began = time.monotonic()
        with contextlib.suppress(OSError, ValueError):  # it ended meanwhile
            assert self._proc.stdin is not None
            self._proc.stdin.write(f"{GO}\n".encode())
            self._proc.stdin.flush()

    def _follow(self, pipe: IO[bytes]) -> None:
        """Its channel, line by line (each bounded): events acted on, the last other line kept as the reply."""
        while line := pipe.readline(MAX_REPLY_BYTES + 1):
            if len(line) > MAX_REPLY_BYTES and not line.endswith(b"\n"):  # longer than a reply may be
                self._reply_too_large = True
                while (rest := pipe.readline(1 << 20)) and not rest.endswith(b"\n"):
                    pass  # drained, so that the process never blocks
                continue
            event = _event(line)
            if event == READY:
                self.ready.set()
            elif event == TIMING:
                self._on_timing(self)
            elif event == TIMED:
                self._on_timed(self)
            elif event is None and line.strip():
                self._reply, self._reply_too_large = line.decode("utf-8", "replace").strip(), False

    def _relay(self, pipe: IO[bytes]) -> None:
        """Every line of the process's output, whole and prefixed with its tag -- at most ``MAX_RELAYED_LINES``, each
        cut to ``MAX_LINE`` characters: a team's output can flood nothing."""
        while raw := pipe.readline(MAX_LINE + 1):
            if not raw.endswith(b"\n"):  # a line longer than shown: the rest of it is read and dropped
                while (rest := pipe.readline(1 << 16)) and not rest.endswith(b"\n"):
                    pass
            line = raw.decode("utf-8", "replace").rstrip()
            if not line.strip():
                continue
            with self._lock:
                if self._relayed >= MAX_RELAYED_LINES:
                    self._dropped += 1
                    continue
                self._relayed += 1
            with contextlib.suppress(OSError, ValueError):  # keep draining: a full pipe would block the team
                self._write(f"[{self._tag}] {line[:MAX_LINE]}{' ...' if len(raw) > MAX_LINE else ''}")

    def pause(self) -> None:
        """Stop it (SIGSTOP to its process group) -- for a process that has not begun the team's work (see
        :attr:`began`): the kit's own imports, never a team's code, which could leave its group."""
        assert self.began is None, "only a process that has not begun may be paused"
        self.signal_group(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal_group(signal.SIGCONT)

    def _exited(self) -> bool:
        """Whether the process has ended, without reaping it: until it is reaped its process group id cannot
        be reused, so signalling the group never reaches an unrelated process."""
        try:
            return os.waitid(os.P_PID, self._proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True

    def wait(self, seconds: float | None, stop: Stop) -> str:
        """Wait until it ends (``"exited"``), ``seconds`` pass since it was told to go (``"timeout"``) or ``stop`` is
        set (``"stopped"``)."""
        deadline = None if seconds is None else (self.began or time.monotonic()) + seconds
        while not self._exited():
            if stop.is_set():
                return "stopped"
            if deadline is not None and time.monotonic() >= deadline:
                return "timeout"
            stop.wait(POLL_S)
        return "exited"

    def signal_group(self, sig: int) -> None:
        """``sig`` to its process group -- only while it is not reaped (see :meth:`_exited`)."""
        if self._proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)

    def terminate(self) -> None:
        """SIGTERM to its process group, then SIGKILL once the grace period is over."""
        self.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + GRACE_S
        while not self._exited() and time.monotonic() < deadline:
            time.sleep(POLL_S)
        self.signal_group(signal.SIGKILL)

    def finish(self) -> int:
        """Once it has ended: end whatever it left running in its group, reap it, read the rest of its output;
        its exit code (negative: the signal that ended it)."""
        self.signal_group(signal.SIGKILL)
        code = self._proc.wait()
        for reader in self._readers:
            reader.join()
        self._channel.close()
        with contextlib.suppress(OSError):
            self._proc.stdin.close()  # type: ignore[union-attr]
        if self._dropped:
            self._write(f"[{self._tag}] ... {self._dropped} more line(s) of its output not shown")
        return code


def _event(line: bytes) -> str | None:
    """The event a channel line is (``{"event": "ready"}``: a short line), or None."""
    if len(line) > 200 or not line.startswith(b'{"event"'):
        return None
    try:
        event = json.loads(line).get("event")
    except (ValueError, AttributeError):
        return None
    return event if isinstance(event, str) else None


@dataclass
class Ended:
    """How a team process ended: its exit code, its reply line (None when it gave none), and whether the
    batch stopped it for running past the time limit."""

    code: int
    reply: str | None
    timed_out: bool = False


def see_through(process: TeamProcess, timeout: float | None, stop: Stop) -> Ended | None:
    """Tell a started team process to go and follow it to its end (or past ``timeout``: stopped); None when the batch
    was stopped."""
    with stop.tracking(process):
        process.go()
        how = process.wait(timeout, stop)
        if how != "exited":
            process.terminate()
        code = process.finish()
    if how == "stopped":
        return None
    return Ended(code, process.reply, timed_out=how == "timeout")


class Paused:
    """The team processes started ahead (:class:`TeamProcess`, not yet told to go) that another team's timed part
    must not share the machine with: paused while it times, resumed after. A process already ``ready`` waits idle
    and is left as it is."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ahead: list[TeamProcess] = []
        self._paused: list[TeamProcess] = []

    def timing(self, process: TeamProcess) -> None:
        with self._lock:
            self._paused = [p for p in self.ahead if p is not process and p.began is None and not p.ready.is_set()]
            for other in self._paused:
                other.pause()
        process.go()

    def timed(self, process: TeamProcess | None = None) -> None:
        with self._lock:
            for other in self._paused:
                other.resume()
            self._paused = []


# --- the pool ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the workers run, SIGTERM (``kill``, ``scancel``, a time limit) stops the batch as Ctrl-C does, so
    that its team processes -- in sessions of their own, out of reach of a signal to the batch's group --
    are stopped too. Only the main thread can install a handler; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class Pool(Generic[J, O]):
    """One queue of jobs, one worker thread per slot (see the module docstring).

    ``run(job, slot, stop)`` gives the job's outcome, or None when ``stop`` was set meanwhile;
    ``done(job, outcome, slot)`` is called for each outcome, one call at a time (a lock held).
    """

    slots: Sequence[Slot]
    run: Callable[[J, Slot, Stop], O | None]
    done: Callable[[J, O, Slot], None]
    stop: Stop = field(default_factory=Stop)

    def map(self, jobs: Sequence[J]) -> None:
        """Run every job; on Ctrl-C stop the workers and their team processes, keep what finished, re-raise."""
        pending: queue.SimpleQueue[J] = queue.SimpleQueue()
        for job in jobs:
            pending.put(job)
        lock = threading.Lock()
        errors: list[BaseException] = []

        def work(slot: Slot) -> None:
            while not self.stop.is_set():
                try:
                    job = pending.get_nowait()
                except queue.Empty:
                    return
                try:
                    outcome = self.run(job, slot, self.stop)
                    if outcome is None:
                        return
                    with lock:
                        self.done(job, outcome, slot)
                except BaseException as exc:  # noqa: BLE001 - e.g. a status file that cannot be written: stop all
                    errors.append(exc)
                    self.stop.set()
                    return

        workers = [threading.Thread(target=work, args=(slot,), name=f"batch worker {slot.name}", daemon=True)
                   for slot in self.slots[:max(1, len(jobs))]]
        with sigterm_as_interrupt():
            for worker in workers:
                worker.start()
            try:
                self._join(workers)
            except KeyboardInterrupt:
                self.stop.set()
                self._join(workers, on_interrupt=self.stop.kill_all)
                raise
        if errors:
            raise errors[0]

    @staticmethod
    def _join(workers: Sequence[threading.Thread], on_interrupt: Callable[[], None] | None = None) -> None:
        """Wait for every worker (in short joins, so that Ctrl-C is seen at once); once stopping, a further
        Ctrl-C runs ``on_interrupt`` (kill the team processes now) and the wait goes on."""
        for worker in workers:
            while worker.is_alive():
                try:
                    worker.join(POLL_S)
                except KeyboardInterrupt:
                    if on_interrupt is None:
                        raise
                    on_interrupt()
