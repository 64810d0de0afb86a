"""``batch_status.json``: the round's ledger beside results.json -- per team, what it was measured from (a
fingerprint), its status, its results key and the digest of the entry the kit wrote for it -- and the checks
made from it.

The digest (:func:`esrkit.digests.entry_digest`) is how the kit tells its own figures from an edit made by anything
else (a hand, a script, a team's code run unconfined): ``batch --refresh missing`` measures such an entry again,
``merge`` refuses it, and the results page marks it (:func:`changed_entries`). A team being measured carries a
``running`` claim (host, process, start), so that a second batch over the same folder skips it instead of measuring
it twice (:func:`claimed_by_another`).
"""

from __future__ import annotations

import datetime
import json
import os
import socket
from pathlib import Path
from typing import Any, Mapping

from esrkit.atomic import atomic_write, replace_together
from esrkit.errors import KitError
from esrkit.digests import entry_digest
from esrkit.results import ResultsFiles, folder_lock, read_results, render_results_txt

STATUS_NAME = "batch_status.json"
OK = "ok"
RUNNING = "running"
CLAIM_HOURS = 24.0  # a claim from another machine is honoured this long (its process cannot be looked up)


def read_status(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KitError(f"{path} cannot be read ({exc}): move it away (the batch then re-runs every team)") from None
    return data if isinstance(data, dict) else {}


def update_team_status(folder: Path, label: str, changes: Mapping[str, Any], drop: tuple[str, ...] = (),
                       replace: bool = False) -> None:
    """Change one team's record of ``folder``'s batch_status.json -- ``changes`` set, ``drop`` removed; with
    ``replace`` the record becomes ``changes`` -- from a fresh read under the folder's lock (other workers, other
    machines' shards write theirs meanwhile), written atomically."""
    path = Path(folder) / STATUS_NAME
    with folder_lock(Path(folder)):
        status = read_status(path)
        record = {} if replace or not isinstance(status.get(label), dict) else status[label]
        record = {k: v for k, v in record.items() if k not in drop}
        record.update(changes)
        status[label] = record
        atomic_write(path, json.dumps(status, indent=2) + "\n")


def amend_entry(results: ResultsFiles, key: str, changes: Mapping[str, Any]) -> bool:
    """Add ``changes`` (facts the kit found after measuring: an upload's verdict) to the entry ``key`` of
    results.json, as the kit's own: under the folder's lock, results.json, results.txt and the ledger's digest of
    that entry are replaced together. False when results.json has no entry ``key``; an entry that is not what the
    kit wrote (changed outside it since) is refused, so that no edit is made the kit's by a digest."""
    folder, status_path = results.folder, results.folder / STATUS_NAME
    with folder_lock(folder):
        entries = read_results(results.json_path)
        entry = entries.get(key)
        if not isinstance(entry, dict):
            return False
        status = read_status(status_path)
        holders = [r for r in status.values() if isinstance(r, dict) and r.get("status") == OK and r.get("key") == key]
        if any(isinstance(r.get("digest"), str) and r["digest"] != entry_digest(entry) for r in holders):
            raise KitError(f"{key}: its entry in {results.json_path} is not what the kit wrote (changed outside the kit "
                           f"since): nothing was added to it; measure it again with batch --refresh missing first")
        entries[key] = {**entry, **changes}
        files: dict[Path, str] = {
            results.json_path: json.dumps(entries, indent=2) + "\n",
            results.txt_path: render_results_txt(entries, results.include_test, results.hybrid_test)}
        for record in holders:
            record["digest"] = entry_digest(entries[key])
        if holders:
            files[status_path] = json.dumps(status, indent=2) + "\n"
        replace_together(files)
    return True


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def claim() -> dict[str, Any]:
    """The ``running`` claim of this process."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": now()}


def claimed_by_another(record: Any) -> str | None:
    """Who else is measuring the team of ``record`` now (a live batch's claim, not this process's), or None."""
    running = record.get(RUNNING) if isinstance(record, dict) else None
    if not isinstance(running, dict):
        return None
    host, pid = running.get("host"), running.get("pid")
    if host == socket.gethostname():
        if pid == os.getpid() or not isinstance(pid, int) or not _alive(pid):
            return None
        return f"process {pid} on this machine, since {running.get('since', '?')}"
    try:
        since = datetime.datetime.fromisoformat(str(running.get("since")))
    except ValueError:
        return None
    age_h = (datetime.datetime.now(datetime.timezone.utc) - since).total_seconds() / 3600
    return None if age_h > CLAIM_HOURS else f"process {pid} on {host}, since {since.isoformat()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def changed_entries(results: Mapping[str, Any], status: Mapping[str, Any]) -> dict[str, str]:
    """``{results key: team label}`` of every entry the kit wrote (its digest is in the ledger) that results.json no
    longer holds as written: changed, or removed, by anything but the kit."""
    changed: dict[str, str] = {}
    for label, record in status.items():
        if not isinstance(record, dict) or record.get("status") != OK or not isinstance(record.get("digest"), str):
            continue
        key = record.get("key")
        if isinstance(key, str) and entry_digest(results.get(key)) != record["digest"]:
            changed[key] = label
    return changed
