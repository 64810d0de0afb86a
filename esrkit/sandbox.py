"""Confining a team's code: every process that runs a team's file for someone else (``batch``, ``check``,
``submission verify``) runs inside a bubblewrap sandbox (``bwrap``, Debian's ``bubblewrap``: the tool Flatpak
confines its applications with).

What a confined team process sees (:meth:`Sandbox.command`):

- **read-only**: the system (``/usr``, ``/etc``, ...), the Python environment the kit runs in (its prefixes and
  site-packages), the kit's own packages, and what its :class:`View` names -- the team's model file, its weights,
  the data -- and nothing else: not the organiser's home, not the results folder, not the other teams' files;
- **writable**: its own scratch folder (its ``HOME``, ``TMPDIR`` and working folder) and its own SR output
  folder, nothing else (``/tmp`` is a private, empty, read-only one; so are the folders made above each path it
  sees);
- **no network** (a network namespace of its own: only a loopback nobody else listens on), **its own PID
  namespace** (it sees and can signal only its own processes; whatever it leaves running is killed when it
  ends), its own IPC and host name, **no capabilities**, user id 65534 (``nobody``) inside, and it is killed
  with its parent (``--die-with-parent``);
- on a GPU machine the NVIDIA device nodes, so that CUDA works.

Where no sandbox can be had (bwrap not installed, user namespaces disabled, not Linux), :meth:`Sandbox.find`
stops with one line naming the fix and the explicit opt-out, ``--unconfined``.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterable, Mapping, Sequence

from esrkit.errors import KitError

TOOL = "bwrap"
UNCONFINED_FLAG = "--unconfined"
SANDBOX_UID = 65534  # "nobody": who the team's code runs as, inside
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")
GPU_DEVICES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset", "nvidia-caps")
# The parent's variables a team process keeps (locale, libraries, the GPU's, thread pools, the kit's own); any other
# is dropped, so that no secret of the organiser's environment reaches a team's code.
KEPT_VARIABLES = ("PATH", "LANG", "LANGUAGE", "TZ", "LD_LIBRARY_PATH", "TERM")
KEPT_PREFIXES = ("LC_", "CUDA_", "NVIDIA_", "OMP_", "MKL_", "KMP_", "OPENBLAS_", "ESRKIT_", "TORCH_CUDNN")


class SandboxUnavailable(KitError):
    """No sandbox can be had here: the message names why, the fix, and the opt-out."""


CONFINED_ENV = "ESRKIT_CONFINED"  # set inside a sandbox the kit made: a command there runs as it is


@dataclass(frozen=True)
class View:
    """What one confined process may see beyond the system and the Python environment: ``readable`` paths
    (files or folders), ``writable`` folders, and ``workdir``, its scratch (writable: its home, temporary
    files and working folder unless ``cwd`` names another: the folder relative paths are read from, which
    then exists, empty but for what the view binds in it). Each is visible at the path it has outside."""

    workdir: Path
    readable: tuple[Path, ...] = ()
    writable: tuple[Path, ...] = ()
    cwd: Path | None = None


@dataclass(frozen=True)
class Sandbox:
    """bubblewrap at ``tool``, known to work here (see :meth:`find`)."""

    tool: str
    version: str

    @classmethod
    def find(cls) -> "Sandbox":
        """The sandbox of this machine, checked by running it once; :class:`SandboxUnavailable` otherwise."""
        return _probe()

    def describe(self) -> str:
        return (f"{self.version}: read-only view of the system, the Python environment, its own files and the data; "
                f"writable: its scratch and SR folder only; no network; its own PID namespace; no capabilities")

    def command(self, argv: Sequence[str], view: View, env: Mapping[str, str] | None = None) -> list[str]:
        """``argv`` run confined to ``view`` (see the module docstring), with ``env`` added to the kept variables."""
        args = [self.tool, "--unshare-all", "--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
                "--hostname", "esrkit-sandbox", "--die-with-parent", "--cap-drop", "ALL", "--clearenv"]
        for name in SYSTEM_DIRS:
            args += _system_entry(Path(name))
        args += ["--proc", "/proc", "--dev", "/dev", "--ro-bind-try", "/sys", "/sys", "--tmpfs", "/tmp"]
        for device in _gpu_device_nodes():
            args += ["--dev-bind", str(device), str(device)]
        for path in _bind_order([*python_paths(), *kit_paths(), *view.readable]):
            args += ["--ro-bind", str(path), str(path)]
        for path in _bind_order([view.workdir, *view.writable]):
            args += ["--bind", str(path), str(path)]
        variables = kept_environment()
        variables.update(HOME=str(view.workdir), TMPDIR=str(view.workdir), PYTHONPATH=str(kit_root()),
                         PYTHONDONTWRITEBYTECODE="1", PYTHONNOUSERSITE="1")
        variables.update({CONFINED_ENV: "1", **(env or {})})
        for name, value in variables.items():
            args += ["--setenv", name, value]
        cwd = view.cwd or view.workdir
        # The sandbox's own root (where the folders above each bound path are made) read-only too: nothing can be
        # written beside a bound path, not even into the sandbox's private copy of a folder.
        return args + ["--dir", str(cwd), "--remount-ro", "/tmp", "--remount-ro", "/", "--chdir", str(cwd), "--", *argv]

    def run(self, argv: Sequence[str], view: View, env: Mapping[str, str] | None = None) -> int:
        """Run ``argv`` confined to ``view`` (a command of the kit run on a team's code for someone else: ``check``),
        its output passed on line by line to this process's ``sys.stdout`` / ``sys.stderr``; its exit code (a
        signal N as 128 + N)."""
        process = subprocess.Popen(self.command(argv, view, env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace")

        def relay(pipe: IO[str], to_stderr: bool) -> None:
            for line in pipe:
                stream = sys.stderr if to_stderr else sys.stdout
                stream.write(line)
                stream.flush()

        readers = [threading.Thread(target=relay, args=(process.stderr, True), daemon=True)]
        readers[0].start()
        relay(process.stdout, False)  # type: ignore[arg-type]
        code = process.wait()
        readers[0].join()
        return code


def confined_here() -> bool:
    """Whether this process runs inside a sandbox the kit made (so a command runs as it is, not confined again)."""
    return os.environ.get(CONFINED_ENV) == "1"


def readable_tree(folder: Path) -> list[Path]:
    """A data folder and the folders its symbolic links lead to (a split assembled from links), all to be visible."""
    folder = Path(os.path.abspath(folder))
    found = {folder}
    for path in folder.rglob("*") if folder.is_dir() else ():
        if path.is_symlink():
            found.add(Path(os.path.realpath(path)).parent)
    return sorted(found)


def kept_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The parent's variables a team process keeps (see :data:`KEPT_VARIABLES`)."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in environ.items() if k in KEPT_VARIABLES or k.startswith(KEPT_PREFIXES)}


def _system_entry(path: Path) -> list[str]:
    """A top-level system folder as it is here: a symlink (merged /usr) stays a symlink, a folder is bound read-only."""
    if path.is_symlink():
        return ["--symlink", os.readlink(path), str(path)]
    if path.is_dir():
        return ["--ro-bind", str(path), str(path)]
    return []


def _gpu_device_nodes() -> list[Path]:
    dev = Path("/dev")
    nodes = [dev / name for name in GPU_DEVICES if (dev / name).exists()]
    nodes += sorted(p for p in dev.glob("nvidia[0-9]*") if p.exists())
    return nodes


def _bind_order(paths: Iterable[Path]) -> list[Path]:
    """Existing paths, absolute and without duplicates, parents before children (a later bind inside an earlier
    one lands on top of it)."""
    seen: dict[str, Path] = {}
    for path in paths:
        path = Path(os.path.abspath(path))
        if path.exists() and str(path) not in seen:
            seen[str(path)] = path
    return sorted(seen.values(), key=lambda p: len(p.parts))


def _with_targets(paths: Iterable[Path]) -> list[Path]:
    """Each path, and where it leads when it is (or passes through) a symlink: both must be visible."""
    out: list[Path] = []
    for path in paths:
        path = Path(os.path.abspath(path))
        out.append(path)
        real = Path(os.path.realpath(path))
        if real != path:
            out.append(real)
    return out


def kit_root() -> Path:
    """The folder that holds the kit's packages (``esrkit``, ``models``): the checkout, or site-packages."""
    import esrkit

    return Path(esrkit.__file__).resolve().parent.parent


def kit_paths() -> list[Path]:
    """The kit's own packages, read-only: ``esrkit`` and its registered architectures, ``models`` -- never the
    rest of the checkout (where results folders and other teams' files may lie)."""
    root = kit_root()
    return [p for p in (root / "esrkit", root / "models") if p.is_dir()]


def python_paths() -> list[Path]:
    """The Python environment: its prefixes and the package folders on ``sys.path`` (site-packages, the standard
    library, zip archives). A folder put on ``sys.path`` otherwise -- the working folder of ``python -m``, a
    checkout on ``PYTHONPATH`` -- is left out: only the kit's own packages of it are bound (:func:`kit_paths`)."""
    prefixes = {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix}
    entries = [Path(p) for p in prefixes]
    for entry in sys.path:
        if not entry:
            continue
        path = Path(entry)
        installed = any(part in ("site-packages", "dist-packages") for part in path.parts)
        inside_prefix = any(_is_within(path, Path(prefix)) for prefix in prefixes)
        if installed or inside_prefix or path.suffix == ".zip":
            entries.append(path)
    return _with_targets(entries)


def _is_within(path: Path, folder: Path) -> bool:
    try:
        Path(os.path.abspath(path)).relative_to(os.path.abspath(folder))
        return True
    except ValueError:
        return False


@functools.lru_cache(maxsize=1)
def _probe() -> Sandbox:
    """Find bwrap and run it once with the namespaces the kit asks for (user namespaces may be disabled)."""
    opt_out = (f"or pass {UNCONFINED_FLAG} to run the teams' code with your own rights (said in results.json, "
               f"results.txt and the results page)")
    if not sys.platform.startswith("linux"):
        raise SandboxUnavailable(f"team code is run confined in a bubblewrap sandbox, which needs Linux ({sys.platform} "
                                 f"here): run the batch on a Linux machine, {opt_out}")
    tool = shutil.which(TOOL)
    if tool is None:
        raise SandboxUnavailable(f"team code is run confined, and bubblewrap ({TOOL}) is not installed: install it "
                                 f"(Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap), {opt_out}")
    try:
        version = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
        trial = subprocess.run([tool, "--unshare-all", "--unshare-user", "--uid", str(SANDBOX_UID), "--die-with-parent",
                                *(a for d in SYSTEM_DIRS for a in _system_entry(Path(d))), "--proc", "/proc",
                                "--dev", "/dev", "--", "true"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxUnavailable(f"bubblewrap ({tool}) could not be run ({exc}): fix it, {opt_out}") from None
    if trial.returncode != 0:
        why = (trial.stderr.strip().splitlines() or ["no message"])[-1]
        raise SandboxUnavailable(f"bubblewrap ({tool}) cannot make a sandbox here ({why}): user namespaces may be "
                                 f"disabled (sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0; "
                                 f"inside a container, allow them), {opt_out}")
    return Sandbox(tool, version or TOOL)
