"""A real one-node Slurm cluster on this machine, for the tests: munged, slurmctld and slurmd started under a
configuration of their own, stopped with everything they started.

Nothing is shared with a Slurm or munge the machine may already run: the folder made here holds the munge key
and socket, ``slurm.conf`` (its own cluster name, ports found free, StateSaveLocation, SlurmdSpoolDir, pid and
log files), and every client command is pointed at it through ``SLURM_CONF``. The node is this machine with 2
CPUs (``SlurmdParameters=config_overrides``: the configuration, not the hardware, says how many), processes
tracked by ``proctrack/linuxproc``, no task plugin and no cgroups, so it needs no systemd and no GPU.

Every process of the cluster carries :data:`MARKER` in its environment (the daemons, the slurmstepd they start,
the jobs submitted through :meth:`OneNodeCluster.sbatch`): :meth:`OneNodeCluster.stop` finds whatever is left
by it, so that "no stray process" is checked, not hoped for. The daemons run as root (slurmd starts jobs as
their user); :func:`unavailable` says why a cluster cannot be had here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Mapping, Sequence

MARKER = "ESRKIT_TEST_SLURM"  # in the environment of every process of one cluster; its value is the cluster's folder
NODE = "esrkit-node"
PARTITION = "esrkit"
NODE_CPUS = 2
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo")
START_S = 60  # a cluster that is not up by then will not come up
STOP_S = 30  # for the jobs to end after scancel, and for each daemon after SIGTERM


def unavailable() -> str | None:
    """Why a one-node cluster cannot be started here (None: it can)."""
    missing = [name for name in (*DAEMONS, *CLIENTS) if shutil.which(name) is None]
    if missing:
        return (f"{', '.join(missing)} not found: install Debian's slurm-wlm and munge (as root: apt-get install "
                f"slurm-wlm munge; .ci/run does it)")
    if os.geteuid() != 0:
        return "slurmd must run as root to start jobs (not root here)"
    return None


def free_port() -> int:
    """A TCP port no one listens on now (the kernel's pick)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ClusterError(RuntimeError):
    """The cluster did not start or a job could not be submitted; the message ends with the daemons' logs."""


class OneNodeCluster:
    """munged + slurmctld + slurmd in ``root`` (a fresh folder); use as a context manager, or start() / stop()."""

    def __init__(self) -> None:
        # Short: munge's socket path must fit a unix socket address (108 bytes).
        self.root = Path(tempfile.mkdtemp(prefix="esrkit-slurm-"))
        self.conf = self.root / "slurm.conf"
        self.logs = self.root / "log"
        self._daemons: dict[str, subprocess.Popen] = {}
        marked = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        self.env = {**marked, "SLURM_CONF": str(self.conf), MARKER: str(self.root)}

    # --- starting ------------------------------------------------------------------------------------

    def write_configuration(self) -> None:
        munge, state, spool = self.root / "munge", self.root / "state", self.root / "spool"
        for folder in (munge, state, spool, self.logs):
            folder.mkdir(mode=0o755)
        key = munge / "munge.key"
        key.write_bytes(os.urandom(1024))  # a munge key is random bytes: this cluster's own
        key.chmod(0o600)
        (self.root / "plugstack.conf").write_text("")
        host = socket.gethostname().split(".")[0]
        settings = {
            "ClusterName": "esrkit-test",
            "SlurmctldHost": f"{host}(127.0.0.1)",
            "SlurmctldPort": free_port(),
            "SlurmdPort": free_port(),
            "SlurmUser": "root",
            "SlurmdUser": "root",
            "AuthType": "auth/munge",
            "CredType": "cred/munge",
            "AuthInfo": f"socket={munge / 'munge.socket'}",
            "StateSaveLocation": state,
            "SlurmdSpoolDir": spool,
            "SlurmctldPidFile": self.root / "slurmctld.pid",
            "SlurmdPidFile": self.root / "slurmd.pid",
            "SlurmctldLogFile": self.logs / "slurmctld.log",
            "SlurmdLogFile": self.logs / "slurmd.log",
            "PlugStackConfig": self.root / "plugstack.conf",
            "ProctrackType": "proctrack/linuxproc",
            "TaskPlugin": "task/none",
            "SelectType": "select/cons_tres",
            "SelectTypeParameters": "CR_CPU",
            "SchedulerType": "sched/builtin",
            "JobCompType": "jobcomp/none",
            "JobAcctGatherType": "jobacct_gather/none",
            "AccountingStorageType": "accounting_storage/none",
            "MpiDefault": "none",
            "MailProg": shutil.which("true") or "/bin/true",
            "ReturnToService": 2,
            "KillWait": 5,
            "SlurmdParameters": "config_overrides",
        }
        lines = [f"{k}={v}" for k, v in settings.items()]
        lines.append(f"NodeName={NODE} NodeHostname={host} NodeAddr=127.0.0.1 CPUs={NODE_CPUS} State=UNKNOWN")
        lines.append(f"PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP")
        self.conf.write_text("\n".join(lines) + "\n")

    def _start_daemon(self, name: str, argv: Sequence[str]) -> None:
        with open(self.logs / f"{name}.out", "wb") as out:
            self._daemons[name] = subprocess.Popen(list(argv), env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                                                   stderr=subprocess.STDOUT, start_new_session=True)

    def _wait_for(self, what: str, ready) -> None:  # noqa: ANN001 - a no-argument predicate
        deadline = time.monotonic() + START_S
        while not ready():
            dead = [name for name, p in self._daemons.items() if p.poll() is not None]
            if dead:
                raise ClusterError(f"{', '.join(dead)} exited while waiting for {what}{self.log_tails()}")
            if time.monotonic() > deadline:
                raise ClusterError(f"{what}: not within {START_S} s{self.log_tails()}")
            time.sleep(0.2)

    def start(self) -> None:
        self.write_configuration()
        munge = self.root / "munge"
        self._start_daemon("munged", ["munged", "--foreground", "--force", f"--socket={munge / 'munge.socket'}",
                                      f"--key-file={munge / 'munge.key'}", f"--pid-file={munge / 'munged.pid'}",
                                      f"--seed-file={munge / 'munged.seed'}", f"--log-file={self.logs / 'munged.log'}"])
        self._wait_for("munged's socket", (munge / "munge.socket").exists)
        self._start_daemon("slurmctld", ["slurmctld", "-D", "-i"])
        self._start_daemon("slurmd", ["slurmd", "-D", "-N", NODE])
        self._wait_for(f"node {NODE} idle", lambda: self.node_state() == "idle")

    def node_state(self) -> str:
        done = self.client("sinfo", "-h", "-n", NODE, "-o", "%T", check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    def __enter__(self) -> "OneNodeCluster":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- using it ------------------------------------------------------------------------------------

    def client(self, *argv: str, check: bool = True, cwd: Path | None = None,
               env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
        """A Slurm client command (sbatch, squeue, ...) of this cluster."""
        done = subprocess.run(list(argv), env={**self.env, **(env or {})}, cwd=cwd, capture_output=True, text=True,
                              timeout=60)
        if check and done.returncode != 0:
            raise ClusterError(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}{self.log_tails()}")
        return done

    def version(self) -> str:
        return self.client("sinfo", "--version").stdout.strip()

    def sbatch(self, script: Path, *options: str, cwd: Path, env: Mapping[str, str] | None = None) -> str:
        """Submit ``script`` from ``cwd`` (its SLURM_SUBMIT_DIR) with ``options`` before it (they take precedence
        over the script's ``#SBATCH`` lines) and ``env`` added to what the job inherits; the job id."""
        done = self.client("sbatch", "--parsable", *options, str(script), cwd=cwd, env=env)
        return done.stdout.strip().split(";")[0]

    def wait(self, job: str, timeout_s: float) -> dict[str, dict[str, str]]:
        """Wait until the job (all its array tasks) has left the queue; each task's ``scontrol show job``
        fields, by array task id (``""`` for a job that is not an array). TimeoutError past ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while self.client("squeue", "-h", "-j", job, "-o", "%i", check=False).stdout.strip():
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job} still queued or running after {timeout_s:g} s")
            time.sleep(1.0)
        tasks = {}
        for line in self.client("scontrol", "-o", "show", "job", job).stdout.splitlines():
            fields = dict(word.split("=", 1) for word in line.split() if "=" in word)
            tasks[fields.get("ArrayTaskId", "")] = fields
        return tasks

    # --- stopping ------------------------------------------------------------------------------------

    def marked_processes(self) -> dict[int, str]:
        """Live processes (not zombies) that carry this cluster's marker: pid -> command line."""
        found = {}
        needle = f"{MARKER}={self.root}".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                if needle not in (entry / "environ").read_bytes().split(b"\0"):
                    continue
                if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        return found

    def _jobs_ended(self) -> bool:
        daemons = {p.pid for p in self._daemons.values()}
        return all(pid in daemons or cmd.startswith(": slurmscriptd")
                   for pid, cmd in self.marked_processes().items())

    def stop(self) -> list[str]:
        """Cancel every job, wait for them to end, stop the daemons (SIGTERM, then SIGKILL), then SIGKILL and
        return whatever process of the cluster is still alive (``pid command``: a stray, which a test fails on).
        The folder is removed."""
        if "slurmctld" in self._daemons and self._daemons["slurmctld"].poll() is None:
            self.client("scancel", "--quiet", f"--partition={PARTITION}", check=False)
            deadline = time.monotonic() + STOP_S
            while not self._jobs_ended() and time.monotonic() < deadline:
                time.sleep(0.5)
        for name in reversed(DAEMONS):  # slurmd, slurmctld, munged
            process = self._daemons.get(name)
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        time.sleep(0.5)  # slurmscriptd follows slurmctld out
        strays = self.marked_processes()
        for pid in strays:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._daemons.clear()
        shutil.rmtree(self.root, ignore_errors=True)
        return [f"{pid} {cmd}" for pid, cmd in strays.items()]

    def log_tails(self, lines: int = 15) -> str:
        """The last lines of each daemon's log, for an error message."""
        text = ""
        for path in sorted(self.logs.glob("*")) if self.logs.exists() else []:
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            text += f"\n--- {path.name}:\n" + "\n".join(tail)
        return text
