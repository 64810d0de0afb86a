"""Shards: a deterministic share of a batch's teams, so that several machines (a Slurm array, any
scheduler's indexed jobs) measure one round between them.

A team's shard depends on the team alone, never on its position in the spec or on the other teams,
so adding a team (a late submission) never moves another one to another shard: a team numbered NN
goes to shard ``NN mod N + 1`` (NTIRE numbers its teams consecutively, so the shards come out even:
46 teams over 4 shards are 12, 12, 11, 11), any other entry (a baseline, a file not named
``teamNN_Name.py``) by a hash of its identity -- the registered entry's name or the file's name,
never a path, which differs between machines. A ``[[team]]`` table the spec sets aside (invalid) is
reported by exactly one shard: its team number's, or, without a readable number, the shard a hash of
its position in the spec file gives (every shard reads the same file).

``--shard K/N`` (1-based) names the shard; without it, inside a Slurm array job,
``SLURM_ARRAY_TASK_ID`` / ``SLURM_ARRAY_TASK_COUNT`` do, counted from ``SLURM_ARRAY_TASK_MIN`` (so
``--array=0-3`` and ``--array=1-4`` both give shards 1-4) in steps of ``SLURM_ARRAY_TASK_STEP``; an
array that is not one contiguous range (``--array=1,5,9``) is refused with the fix.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from typing import Mapping, Sequence, TypeVar

from esrkit.errors import KitError
from esrkit.spec import InvalidTable, TeamSpec
from esrkit.teamfile import team_from_file_name

SLURM_VARIABLES = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_STEP")
_SHARD_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
S = TypeVar("S", bound=TeamSpec)


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (1-based) of ``count``, and where that came from (for the output)."""

    index: int
    count: int
    source: str = ""

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, spec: TeamSpec) -> bool:
        return shard_of(spec, self.count) == self.index

    def select(self, specs: Sequence[S]) -> list[S]:
        """This shard's teams, in the batch's order."""
        return [s for s in specs if self.holds(s)]

    def select_invalid(self, tables: Sequence[InvalidTable]) -> list[InvalidTable]:
        """The invalid tables this shard reports (each is reported by one shard)."""
        return [t for t in tables if invalid_shard(t, self.count) == self.index]


def team_number(spec: TeamSpec) -> int | None:
    """The team's number: its spec's, else its file's (``teamNN_Name.py``), as its results key has it."""
    if spec.team is not None:
        return spec.team
    named = team_from_file_name(spec.model_file) if spec.model_file is not None else None
    return named[0] if named else None


def team_identity(spec: TeamSpec) -> str:
    """What names a team on every machine: its number, else the registered entry, else the file's name."""
    number = team_number(spec)
    if number is not None:
        return f"team {number}"
    if spec.entry is not None:
        return f"entry {spec.entry.lower()}"
    assert spec.model_file is not None
    return f"file {spec.model_file.name}"


def shard_of(spec: TeamSpec, count: int) -> int:
    """The shard (1..count) a team belongs to (see the module docstring): a pure function of the team."""
    if count < 1:
        raise ValueError(f"shard count {count} must be at least 1")
    number = team_number(spec)
    if number is not None:
        return number % count + 1
    return _hashed_shard(team_identity(spec), count)


def _hashed_shard(identity: str, count: int) -> int:
    digest = hashlib.blake2b(identity.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count + 1


def invalid_shard(table: InvalidTable, count: int) -> int:
    """The shard that reports an invalid ``[[team]]`` table: its team number's, else by a hash of its position."""
    if count < 1:
        raise ValueError(f"shard count {count} must be at least 1")
    return table.team % count + 1 if table.team is not None else _hashed_shard(f"[[team]] #{table.position}", count)


def parse_shard(text: str) -> Shard:
    """``K/N`` with 1 <= K <= N."""
    match = _SHARD_RE.match(text)
    if match is None:
        raise KitError(f"--shard {text!r}: give K/N, e.g. --shard 2/4 (shard 2 of 4, counted from 1)")
    index, count = int(match.group(1)), int(match.group(2))
    if not 1 <= index <= count:
        raise KitError(f"--shard {text}: K must be 1 to N (shards are counted from 1), e.g. --shard 1/{max(count, 1)}")
    return Shard(index, count, f"--shard {index}/{count}")


def _int_variable(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise KitError(f"{name}={env[name]!r} is not a number: run in a Slurm array (--array=1-N) or pass "
                       f"--shard K/N") from None


def shard_from_environment(env: Mapping[str, str] | None = None) -> Shard | None:
    """The shard a Slurm array task is (see the module docstring); None outside an array job."""
    env = os.environ if env is None else env
    if "SLURM_ARRAY_TASK_ID" not in env or "SLURM_ARRAY_TASK_COUNT" not in env:
        return None
    task, count = _int_variable(env, "SLURM_ARRAY_TASK_ID"), _int_variable(env, "SLURM_ARRAY_TASK_COUNT")
    first = _int_variable(env, "SLURM_ARRAY_TASK_MIN") if "SLURM_ARRAY_TASK_MIN" in env else 1
    step = _int_variable(env, "SLURM_ARRAY_TASK_STEP") if "SLURM_ARRAY_TASK_STEP" in env else 1
    offset = task - first
    index = offset // step + 1 if step > 0 else 0
    said = ", ".join(f"{name}={env[name]}" for name in SLURM_VARIABLES if name in env)
    if count < 1 or step < 1 or offset % step or not 1 <= index <= count:
        raise KitError(f"{said}: not task K of one contiguous array of {count}: submit with --array=1-{max(count, 1)} "
                       f"(or pass --shard K/N, which takes precedence)")
    return Shard(index, count, f"from {said}")


def resolve_shard(flag: str | None, env: Mapping[str, str] | None = None) -> Shard | None:
    """``--shard`` when given (it takes precedence), else the Slurm array's task, else None (every team)."""
    return parse_shard(flag) if flag is not None else shard_from_environment(env)
