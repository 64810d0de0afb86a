"""One batch's round: the results folder as the batch alone writes it, and one team's process from its start to
the entry the kit writes for it.

:class:`Round` holds what the batch knows while it runs -- the split, the data's digest, the entries it wrote or
checked (``known``: anything else that changes one is put back at the next write), the results keys the round's
teams hold -- and does every write of a team's outcome: its checked reply merged into results.json and results.txt,
its SR images moved into place (:func:`sr_problem` first), its ledger record with the entry's digest. It starts a
team's process confined to the team's own files and the data (:func:`team_files`, :func:`data_files`,
:class:`esrkit.sandbox.View`), follows it to its end (:meth:`Round.finish_child`), and says how one that ended
without replying ended (:func:`died`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import shutil
import signal
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from esrkit import environment
from esrkit.atomic import StagedFolder
from esrkit.challenge import Convention
from esrkit.datasets import Split
from esrkit.digests import entry_digest
from esrkit.environment import label as environment_label
from esrkit.errors import KitError
from esrkit.fingerprint import data_fingerprint
from esrkit.imageio import read_header
from esrkit.names import child_folder
from esrkit.outputs import DataIdentity, carried_files, write_marker
from esrkit.progress import Progress
from esrkit.results import ResultsFiles
from esrkit.sandbox import Sandbox, View
from esrkit.spec import TeamSpec, resolve
from esrkit.submission.plausibility import BATCH_IMAGES, BATCH_MARGIN_DB, SCALE, below_bicubic, bicubic_psnr
from esrkit.submission.reply import Expectation, accept
from esrkit.submission.shards import team_number
from esrkit.submission.status import OK, RUNNING, claim, now, update_team_status
from esrkit.submission.teamrun import FAILED, BatchSettings, TeamOutcome, TeamRequest, measure_team, reply_json
from esrkit.submission.verify import Uploads
from esrkit.submission.workers import Paused, Slot, Stop, TeamProcess, see_through
from esrkit.teamfile import WEIGHT_SUFFIXES
from esrkit.verdicts import VERIFICATION_KEY, summary

INCOMING_PREFIX = ".esrkit-incoming-"  # a team's own SR folder inside --save_dir, moved into place by the batch


@dataclass
class TeamJob:
    """One team of a batch: its place in the table, its spec, its fingerprint, the key its entry must have (when
    known beforehand), and its outcome when it is not run (already measured, measured by another batch now, or
    refused before it ran)."""

    index: int
    spec: TeamSpec
    stamp: str
    key: str | None = None
    skipped: TeamOutcome | None = None


def _absolute(spec: TeamSpec) -> TeamSpec:
    """The spec with absolute paths (a team process works in its own folder)."""
    return dataclasses.replace(spec, **{k: Path(os.path.abspath(getattr(spec, k))) for k in ("model_file", "weights")
                                        if getattr(spec, k) is not None})


def team_files(spec: TeamSpec) -> list[Path]:
    """What a confined team process may read of the submission: its model file, and its weights -- the spec's, or
    the files of ``model_zoo/`` named for it (its file's stem, or ``teamNN_``) -- never another team's. A
    registered entry's weights are the kit's to find (its code is the kit's)."""
    files: list[Path] = []
    if spec.entry is not None:
        try:
            entry = resolve(spec, require_data_range=False)
            files.append(entry.weights_path(spec.weights))
        except KitError:
            pass  # its process says why
        return files
    assert spec.model_file is not None
    files.append(spec.model_file)
    if spec.weights is not None:
        files.append(spec.weights)
        return files
    zoo = spec.model_file.parent.parent / "model_zoo"
    number = team_number(spec)
    if zoo.is_dir():
        stem = spec.model_file.stem.lower()
        for path in sorted(zoo.iterdir()):
            name = path.name.lower()
            if path.is_file() and path.suffix in WEIGHT_SUFFIXES and (
                    name.startswith(stem) or (number is not None and name.startswith(f"team{number:02d}_"))):
                files.append(path)
    return files


def data_files(split: Split) -> list[Path]:
    """What a team process reads of the data: the split's folder(s), and the folders its files lead to through
    symbolic links (a split assembled from links)."""
    paths = {Path(split.root).absolute()}
    for pair in split.pairs:
        for path in (pair.hr_path, pair.lr_path):
            if path is not None:
                paths.add(Path(path).absolute().parent)
                paths.add(path.resolve().parent)
    return sorted(paths)


def sr_problem(sr_dir: Path, split: Split) -> str | None:
    """Why a team's SR folder does not hold exactly the split's SR images (plain PNG files named for its images),
    or None. Checked before anything of it is moved into place."""
    wanted = {f"{pair.name}.png": pair for pair in split.pairs}
    entries = sorted(sr_dir.iterdir())
    if [p.name for p in entries] != [split.name] or entries[0].is_symlink() or not entries[0].is_dir():
        return f"its SR folder holds {', '.join(p.name for p in entries[:3]) or 'nothing'}, not one folder {split.name}/"
    files = sorted(entries[0].iterdir())
    names = {p.name for p in files}
    if names != set(wanted):
        extra, missing = sorted(names - set(wanted)), sorted(set(wanted) - names)
        return (f"its SR folder holds {len(names)} files for {len(wanted)} images"
                f"{' (not the kit: ' + ', '.join(extra[:3]) + ')' if extra else ''}"
                f"{' (missing: ' + ', '.join(missing[:3]) + ')' if missing else ''}")
    for path in files:
        if path.is_symlink() or not path.is_file():
            return f"{path.name} in its SR folder is not a plain file"
        try:
            header = read_header(path)
        except KitError as exc:
            return str(exc)
        pair = wanted[path.name]
        source = pair.lr_path or pair.hr_path
        if header.format != "PNG" or source is None:
            return f"{path.name} in its SR folder is not a PNG"
        lr = read_header(source)
        if header.width % lr.width or header.height % lr.height or header.width // lr.width != header.height // lr.height:
            return f"{path.name} in its SR folder is {header.width}x{header.height}, not the LR's {lr.width}x{lr.height} upscaled"
    return None


@dataclass
class Round:
    """The results folder as this batch writes it: the only writer of results.json, results.txt, the ledger and the
    SR folders (see the module docstring). ``known`` holds every entry the kit wrote or checked in this batch, as
    written: anything else that changes one is undone at the next write, and said."""

    results: ResultsFiles
    settings: BatchSettings
    split: Split
    convention: Convention
    data_digest: str  # the split's (what a team's fingerprint holds)
    confined: bool
    say: Callable[[str], None]
    known: dict[str, Any] = field(default_factory=dict)
    claims: dict[str, str] = field(default_factory=dict)  # results key -> the label of the team that holds it
    uploads: Uploads | None = None  # --verify_uploads: each team measured gets its upload's verdict
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _bicubic: list[float] | None = None  # bicubic's PSNR on the split's first images (plausibility)

    @functools.cached_property
    def identity_digest(self) -> str:
        """The data's digest as an entry and an SR folder record it (:func:`esrkit.fingerprint.data_fingerprint`)."""
        return data_fingerprint([self.split])

    def expectation(self, job: TeamJob) -> Expectation:
        images = {self.split.name: tuple(pair.name for pair in self.split.pairs)}
        with self._lock:
            claimed = dict(self.claims)
        return Expectation(job.spec.label, images, str(self.split.root), self.split.layout, self.identity_digest,
                           self.confined, key=job.key, team=team_number(job.spec) if job.spec.entry is None else None,
                           claimed=claimed)

    def implausible(self, record: Mapping[str, Any]) -> str | None:
        """Why a team's PSNR cannot be a trained network's (far below bicubic on the split's first images: a wrong
        data range, most often), with the fix; None when it is plausible (:mod:`esrkit.submission.plausibility`)."""
        psnr = record.get(f"{self.split.name}_psnr")
        if not isinstance(psnr, list) or not self.split.has_hr:
            return None
        with self._lock:
            if self._bicubic is None:  # once per batch
                self._bicubic = [bicubic_psnr(pair, SCALE) for pair in self.split.pairs[:BATCH_IMAGES]]
        problem = below_bicubic(psnr[:len(self._bicubic)], self._bicubic, BATCH_MARGIN_DB)
        if problem is None:
            return None
        return (f"{problem} (x{SCALE}): not a trained network's figure -- most often a wrong data range (it ran with "
                f"data_range {record.get('data_range'):g}): check the team's data_range (`python -m esrkit.submission "
                f"check` reports the range that fits)")

    def incoming(self) -> Path | None:
        """A new SR folder for one team's process, inside ``--save_dir`` (so that its images move into place)."""
        if self.settings.save_dir is None:
            return None
        return Path(tempfile.mkdtemp(prefix=INCOMING_PREFIX, dir=self.settings.save_dir))

    def verify(self, entries: dict[str, Any] | None = None) -> None:
        """Merge ``entries`` (none: only check): every entry the kit knows that something else changed is put back
        as the kit wrote it, and said; so is a results.txt that is not results.json's."""
        with self._lock:
            known = dict(self.known)
        if not known and not entries:
            return
        merged = self.results.merge_checked(entries or {}, known=known)
        for key in merged.restored:
            self.say(f"warning: {key}: its results.json entry was changed by something other than the kit while "
                     f"this batch ran (a team run unconfined?): put back as the kit wrote it")
        if merged.txt_changed:
            self.say("warning: results.txt was changed by something other than the kit: written again from "
                     "results.json")

    def started(self, job: TeamJob) -> None:
        update_team_status(self.results.folder, job.spec.label, {RUNNING: claim()})

    def write(self, job: TeamJob, outcome: TeamOutcome, sr_dir: Path | None, device: str) -> TeamOutcome:
        """Everything of one team's outcome that is written, by the kit alone: its entry merged into results.json
        and results.txt (entries changed by anything else put back first), its SR images moved into place, its
        ledger record (with the entry's digest). A problem found on the way makes the outcome a failure."""
        if outcome.status == OK and sr_dir is not None:
            problem = sr_problem(sr_dir, self.split)
            if problem is not None:
                outcome = TeamOutcome(job.spec.label, None, FAILED, f"{job.spec.label}: {problem}")
        if outcome.status == OK and outcome.record is not None:
            problem = self.implausible(outcome.record)
            if problem is not None:  # measured as it is, and said: the organisers decide (check names the fix)
                outcome.record["psnr_implausible"] = problem
                self.say(f"warning: {outcome.key}: {problem}")
        if outcome.status == OK:
            assert outcome.key is not None and outcome.record is not None
            if self.uploads is not None and sr_dir is not None:  # in the entry before it is written and digested
                verdict = self.uploads.verdict(job.spec, outcome.key, sr_dir / self.split.name,
                                               [pair.name for pair in self.split.pairs], self.split.name)
                outcome.record[VERIFICATION_KEY] = verdict
                self.say(f"{outcome.key}: upload verification: {summary(verdict)}")
            self.verify({outcome.key: outcome.record})
            with self._lock:
                self.known[outcome.key] = outcome.record
                self.claims[outcome.key] = job.spec.label
            if sr_dir is not None:
                final = child_folder(Path(self.settings.save_dir), outcome.key, "--save_dir")  # type: ignore[arg-type]
                write_marker(sr_dir, DataIdentity.of([self.split], self.identity_digest), [self.split])
                try:
                    StagedFolder.adopt(final, sr_dir, carried_files(final)).commit()
                except KitError as exc:
                    outcome = TeamOutcome(job.spec.label, outcome.key, FAILED, f"{job.spec.label}: its SR images "
                                          f"could not be moved into place: {exc}", outcome.record)
        record = {"key": outcome.key, "status": outcome.status, "error": outcome.error, "fingerprint": job.stamp,
                  "date": now(), "device": device, "confined": self.confined}
        if outcome.status == OK and outcome.record is not None:
            record["digest"] = entry_digest(outcome.record)
            record["environment"] = environment_label(outcome.record.get("environment"))
        update_team_status(self.results.folder, job.spec.label, record, replace=True)
        return outcome

    def start_child(self, job: TeamJob, sandbox: Sandbox | None, slot: Slot, write: Callable[[str], None],
                    tag: str, paused: Paused | None = None) -> "Started":
        """Start one team's process (confined by ``sandbox`` when given): it imports what it needs and waits for
        :func:`finish_child` to tell it to go. ``paused``: the processes started ahead, which its timed part pauses."""
        settings = dataclasses.replace(self.settings, device=slot.device)
        scratch = Path(tempfile.mkdtemp(prefix="esrkit-team-"))
        sr_dir = self.incoming()
        try:
            request = TeamRequest(_absolute(job.spec), settings, self.identity_digest, sr_dir,
                                  confined=sandbox is not None)
            view = View(scratch, readable=(*team_files(request.spec), *data_files(self.split)),
                        writable=() if sr_dir is None else (sr_dir,))
            env = dict(slot.env)
            if settings.threads is not None:  # the libraries' own thread pools too, not only torch's
                env.update(OMP_NUM_THREADS=str(settings.threads), MKL_NUM_THREADS=str(settings.threads))
            process = TeamProcess([sys.executable, "-m", "esrkit.submission.teamrun", "--request", request.to_json()],
                                  env, write, tag, sandbox, view, on_timing=None if paused is None else paused.timing,
                                  on_timed=None if paused is None else paused.timed)
        except BaseException:
            remove_folders(scratch, sr_dir)
            raise
        return Started(job, process, scratch, sr_dir, sandbox is not None)

    def finish_child(self, started: "Started", timeout: float | None, stop: Stop) -> TeamOutcome | None:
        """Tell a started team process to go and follow it to its end; its checked outcome, its SR folder left in
        ``started.sr_dir`` for :meth:`write`. None when ``stop`` was set before it ended (the batch is stopping)."""
        try:
            ended = see_through(started.process, timeout, stop)
        finally:
            shutil.rmtree(started.scratch, ignore_errors=True)
        if ended is None:
            return None
        label = started.job.spec.label
        if ended.timed_out:
            return TeamOutcome(label, None, FAILED, f"{label}: timed out: still running after --team_timeout "
                                                    f"{timeout:g} s, so its process group was killed")
        if ended.reply is None:  # the process died before replying: a crash in the team's code, a kill
            return TeamOutcome(label, None, FAILED, f"{label}: {died(ended.code, started.confined)}")
        return self._with_environment(accept(ended.reply, self.expectation(started.job)), started.job)

    def _with_environment(self, outcome: TeamOutcome, job: TeamJob) -> TeamOutcome:
        """The software environment the team was measured in, added by the kit (:mod:`esrkit.environment`)."""
        if outcome.record is not None:
            outcome.record["environment"] = environment.describe(job.spec.model_file)
        return outcome

    def run_here(self, job: TeamJob, progress: Progress) -> tuple[TeamOutcome, Path | None]:
        """Measure one team in this process (unconfined by nature), checked as a team process's reply would be."""
        sr_dir = self.incoming()
        request = TeamRequest(job.spec, self.settings, self.identity_digest, sr_dir, confined=False)
        return self._with_environment(accept(reply_json(measure_team(request, progress)), self.expectation(job)),
                                      job), sr_dir


@dataclass
class Started:
    """A team process started (:meth:`Round.start_child`), with its scratch and SR folders."""

    job: TeamJob
    process: TeamProcess
    scratch: Path
    sr_dir: Path | None
    confined: bool

    def abandon(self) -> None:
        """Stop it and remove its folders (the batch is stopping, or it was started ahead for nothing)."""
        with contextlib.suppress(Exception):
            self.process.resume()  # a paused process takes no SIGTERM until it runs again
            self.process.terminate()
            self.process.finish()
        remove_folders(self.scratch, self.sr_dir)


def remove_folders(*folders: Path | None) -> None:
    for folder in folders:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def died(code: int, confined: bool = False) -> str:
    """How a team process that ended without replying ended, in words. A confined one's signal comes as the exit
    code 128 + N (bubblewrap's, as a shell's)."""
    if confined and 128 < code < 128 + signal.NSIG:
        code = 128 - code
    if code < 0:
        sig = signal.Signals(-code)
        if sig == signal.SIGKILL:
            why = "killed by SIGKILL (the out-of-memory killer, or a kill)"
        elif sig in (signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT):
            why = (f"killed by {sig.name}: a crash in native code its forward reached (a compiled extension or an "
                   f"operation the library does not support here)")
        else:
            why = f"killed by {sig.name}"
        return f"its process was {why} before reporting (see the lines above)"
    return f"its process ended with exit code {code} before reporting (see the lines above)"
