"""The upload verification of a results entry (``upload_verification``) and its words, nothing heavy imported:
results.txt and the results page read it; :mod:`esrkit.submission.verify` makes it.

The record (JSON, in the team's results.json entry)::

    {"verdict": "identical" | "within one grey level" | "different" | "incomplete" | "no upload",
     "split": "valid", "images": 5, "identical": 4, "within_one": 0,
     "different": [{"name": "img_002", "psnr_vs_reproduced": 31.2, "max_abs_diff": 45}],
     "problems": [{"name": "img_005.png", "kind": "missing", "detail": "..."}],
     "ignored": ["notes.txt"], "upload": "/abs/path/07_NanoSR.zip", "date": "2026-12-07T10:00:00+00:00"}

``images`` counts the split's images; ``identical`` and ``within_one`` those whose uploaded pixels equal the
reproduced ones, or differ by at most 1 grey level; ``different`` names the others with the PSNR of the upload
against the reproduced image and their largest difference; ``problems`` are the upload's findings that are not a
comparison (a missing, extra, unreadable or wrong-size image). A "no upload" record holds the verdict, ``detail``,
``uploads`` (the folder looked in) and ``date``.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

VERIFICATION_KEY = "upload_verification"
IDENTICAL = "identical"
WITHIN_ONE = "within one grey level"
DIFFERENT = "different"
INCOMPLETE = "incomplete"
NO_UPLOAD = "no upload"
VERDICTS = (IDENTICAL, WITHIN_ONE, DIFFERENT, INCOMPLETE, NO_UPLOAD)
PASSING = (IDENTICAL, WITHIN_ONE)  # the upload is what the team's code gives
ROUNDING = "device or library rounding"
LISTED = 8  # images named in a summary before "... and N more"
SHORT = {WITHIN_ONE: "upload ±1 grey level", DIFFERENT: "upload differs", INCOMPLETE: "upload incomplete",
         NO_UPLOAD: "no upload"}  # the page's flag, per verdict other than identical


def verification_of(entry: Any) -> Mapping[str, Any] | None:
    """The entry's upload verification, when it has one of a known verdict (an entry of any shape may be read)."""
    record = entry.get(VERIFICATION_KEY) if isinstance(entry, Mapping) else None
    if isinstance(record, Mapping) and record.get("verdict") in VERDICTS:
        return record
    return None


def _count(record: Mapping[str, Any], key: str) -> int | str:
    value = record.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else "?"


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:LISTED])
    return shown if len(items) <= LISTED else f"{shown}, ... and {len(items) - LISTED} more"


def difference_text(item: Mapping[str, Any]) -> str:
    """``img_002 (PSNR 31.20 dB against the reproduced image, max difference 45)``."""
    psnr, diff = item.get("psnr_vs_reproduced"), item.get("max_abs_diff")
    psnr_text = f"{psnr:.2f} dB" if isinstance(psnr, (int, float)) and math.isfinite(psnr) else "?"
    return f"{item.get('name', '?')} (PSNR {psnr_text} against the reproduced image, max difference {diff})"


def problem_text(item: Mapping[str, Any]) -> str:
    return f"{item.get('name', '?')}: {item.get('detail') or item.get('kind', '?')}"


def summary(record: Mapping[str, Any], named: bool = True) -> str:
    """The verdict in one line of words (what results.txt, the page's flag and the command say); ``named`` False
    counts the differing images and the findings without naming them (a command that named each on a line)."""
    verdict = record.get("verdict")
    if verdict == NO_UPLOAD:
        return f"{NO_UPLOAD}: {record.get('detail') or 'none was given for this team'}"
    images, identical, within = _count(record, "images"), _count(record, "identical"), _count(record, "within_one")
    different = [d for d in record.get("different") or [] if isinstance(d, Mapping)]
    problems = [p for p in record.get("problems") or [] if isinstance(p, Mapping)]
    if verdict == IDENTICAL:
        text = f"{IDENTICAL}: all {images} images equal the reproduced ones, pixel for pixel"
    elif verdict == WITHIN_ONE:
        text = (f"{WITHIN_ONE}: {identical} of {images} images identical, {within} within one grey level of the "
                f"reproduced ones ({ROUNDING})")
    elif verdict == DIFFERENT:
        text = f"{DIFFERENT}: {len(different)} of {images} images differ from what the team's code reproduces"
        text += f": {_listed([difference_text(d) for d in different])}" if named else ""
    else:
        text = f"{INCOMPLETE}: " + (_listed([problem_text(p) for p in problems]) if named else
                                    f"{len(problems)} finding(s) on the upload's images")
    if verdict != INCOMPLETE and problems:
        text += f"; and {_listed([problem_text(p) for p in problems])}" if named else \
            f"; and {len(problems)} finding(s) on the upload's images"
    return text


def short(record: Mapping[str, Any]) -> str:
    """The verdict in a word or two (the page's flag)."""
    return SHORT.get(str(record.get("verdict")), str(record.get("verdict")))
