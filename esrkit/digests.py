"""The digest of a results entry as the kit wrote it (nothing heavy imported: the results page reads it too).

The kit keeps the digest of every entry it writes in the round's ledger (``batch_status.json``,
:mod:`esrkit.submission.status`), so that an entry changed by anything else -- a hand, a script, a team's code run
unconfined -- is told from the kit's own figure wherever it is read again (``batch --refresh missing``, ``merge``,
the results page)."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def entry_digest(entry: Any) -> str:
    """SHA-256 of an entry's canonical JSON (keys sorted, no spaces)."""
    text = json.dumps(entry, sort_keys=True, separators=(",", ":"), allow_nan=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
