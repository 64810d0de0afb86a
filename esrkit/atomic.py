"""Writing files so that a crash, Ctrl-C or a full disk never leaves a half-written one behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator

from esrkit.errors import KitError


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    On any exception the temporary file is removed and ``path`` keeps its previous content.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _cannot_write(path, exc) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open() would (or the old file's).
        os.chmod(tmp_path, _mode_for(path))
        yield tmp_path
        try:
            with open(tmp_path, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp_path, path)
        except OSError as exc:
            raise _cannot_write(path, exc) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _cannot_write(path: Path, exc: OSError) -> KitError:
    return KitError(f"cannot write {path}: {exc.strerror or exc}; choose another path (or free some space)"
                    f"{'' if not path.exists() else ' -- the existing file was left as it was'}")


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once, at import: os.umask can only be read by setting it, which would race with writer threads.
_UMASK = _read_umask()


def _mode_for(path: Path) -> int:
    """The mode a file replacing ``path`` gets: the old file's, or what a plain open() would give (temporary files
    are private, 0600, until then)."""
    return path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_UMASK


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` atomically (text is written as UTF-8)."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_path(path) as tmp:
        try:
            tmp.write_bytes(payload)
        except OSError as exc:
            raise _cannot_write(Path(path), exc) from None


def _stage(path: Path, data: bytes | str) -> Path:
    """``data`` in a synced temporary file beside ``path`` (with the mode ``path`` has or would get)."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _cannot_write(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _mode_for(path))
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise _cannot_write(path, exc) from None
    return Path(tmp)


def replace_together(files: dict[Path, bytes | str | Path]) -> None:
    """Write several files as one unit: every one is replaced, or (on any failure) none is.

    A value is the new content, or a finished file on the same filesystem to move into place. All
    contents are written and synced to temporary files beside their targets first (a full disk
    fails here, before anything is replaced); the renames follow, each previous file kept aside until
    all are done, so that should one rename fail the ones already made are undone.
    """
    staged: list[tuple[Path, Path]] = []
    replaced: list[tuple[Path, Path | None]] = []  # (target, its previous content kept aside, or None)
    try:
        for path, data in files.items():
            if isinstance(data, Path):
                try:
                    os.chmod(data, _mode_for(Path(path)))
                except OSError as exc:
                    raise _cannot_write(Path(path), exc) from None
            staged.append((data if isinstance(data, Path) else _stage(Path(path), data), Path(path)))
        for tmp, path in staged:
            previous = None
            if path.exists():
                previous = _stage(path.with_name(path.name + ".previous"), path.read_bytes())
            try:
                os.replace(tmp, path)
            except OSError as exc:
                if previous is not None:
                    previous.unlink(missing_ok=True)
                raise _cannot_write(path, exc) from None
            replaced.append((path, previous))
    except BaseException:
        for path, previous in reversed(replaced):  # undo the renames already made
            if previous is not None:
                os.replace(previous, path)
            else:
                path.unlink(missing_ok=True)
        replaced.clear()
        raise
    finally:
        for _, previous in replaced:
            if previous is not None:
                previous.unlink(missing_ok=True)
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)


class StagedFolder:
    """The files of one run, written into a hidden folder beside ``final`` and moved into it only when
    the run succeeds (a run that stops early leaves ``final`` as it was; each file appears whole).

    ``with StagedFolder(final) as staging:`` -- write under ``staging``; on leaving the block without
    an exception each top-level subfolder of ``staging`` (one split's images) *replaces* the subfolder of
    the same name under ``final`` -- so that a folder never holds two runs' images -- and each
    top-level file replaces its namesake; everything else under ``final`` is left. Otherwise the staging
    folder is removed. ``carry(old_subfolder)`` names the files of a replaced subfolder that are not the run's
    own (a note someone put there): they are moved into the new one, so that only the run's own files are ever
    replaced. :meth:`adopt` commits a folder filled elsewhere (a batch's team process writes its own).
    """

    def __init__(self, final: str | Path, carry: Callable[[Path], Iterable[Path]] | None = None) -> None:
        self.final = Path(final)
        self.staging: Path | None = None
        self.carry = carry

    @classmethod
    def adopt(cls, final: str | Path, staging: Path,
              carry: Callable[[Path], Iterable[Path]] | None = None) -> "StagedFolder":
        """A stage already filled (in a folder on ``final``'s filesystem): commit it, or remove it, as a block does."""
        staged = cls(final, carry)
        try:
            staged.final.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _cannot_write(staged.final, exc) from None
        staged.staging = Path(staging)
        return staged

    def __enter__(self) -> Path:
        if self.staging is not None:
            return self.staging
        try:
            self.final.mkdir(parents=True, exist_ok=True)
            self.staging = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.staging-", dir=self.final.parent))
        except OSError as exc:
            raise _cannot_write(self.final, exc) from None
        return self.staging

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        assert self.staging is not None
        try:
            if exc_type is None:
                self.commit()
        finally:
            shutil.rmtree(self.staging, ignore_errors=True)

    def commit(self) -> None:
        assert self.staging is not None
        for source in sorted(self.staging.iterdir()):
            target = self.final / source.name
            try:
                if source.is_dir() and target.is_dir():
                    self._swap_folder(source, target)
                else:
                    os.replace(source, target)
            except OSError as exc:
                raise _cannot_write(target, exc) from None

    def _swap_folder(self, source: Path, target: Path) -> None:
        """``source`` in place of ``target``: the files of ``target`` that are not the run's own carried into it, the
        old one moved aside first, removed once the new one is in."""
        for kept in (self.carry(target) if self.carry is not None else ()):
            destination = source / kept.name
            while destination.exists():  # a name the run writes too: the note is kept beside it, renamed
                destination = destination.with_name(destination.name + ".kept")
            os.replace(kept, destination)
        aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.replaced-", dir=target.parent))
        os.rmdir(aside)
        os.replace(target, aside)
        try:
            os.replace(source, target)
        except OSError:
            os.replace(aside, target)  # put the previous images back: the folder is as it was
            raise
        shutil.rmtree(aside, ignore_errors=True)


def check_writable_folder(folder: str | Path, flag: str) -> Path:
    """``folder`` exists (made if needed) and a file can be created in it -- before any work starts."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".esrkit_write_test_", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise KitError(f"{flag} {folder} is not writable ({exc.strerror or exc}): choose another {flag}") from None
    return folder


def check_writable_file(path: str | Path, flag: str) -> Path:
    """``path`` can be written later (its folder is writable, it is not a folder) -- before any work starts."""
    path = Path(path)
    if path.is_dir():
        raise KitError(f"{flag} {path} is a folder: give a file path")
    parent = path.parent
    existing = next((p for p in (parent, *parent.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise KitError(f"{flag} {path}: {existing} is a file, not a folder: choose another {flag}")
    check_writable_folder(parent, flag)
    return path
