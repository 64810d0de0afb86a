"""What the batch accepts from a team process: its one reply, checked before anything is written.

A team's process runs the team's code, which may be careless or hostile, so its reply is data to check, never a
command: :func:`accept` takes the reply text and what the batch knows of the team and the data
(:class:`Expectation`), and gives the :class:`~esrkit.submission.teamrun.TeamOutcome` to write -- or a failed
outcome naming what was wrong. Checked:

- the shape: a JSON object of the keys a reply has; a results entry holding only the keys the kit writes, each of
  its type (:data:`ENTRY_SCHEMA`, with ``jsonschema``), numbers finite (a PSNR may be +inf: identical images) and in
  range, strings of bounded length;
- the facts the batch knows: the split's image names, one value per image in every per-image list, each average
  the mean of its list, the data's folder, layout and digest, whether it ran confined;
- the results key: a key is a safe name (no path separators), carries the team's number when it has one, and is
  never one that another team of the round holds (:class:`Expectation.claimed`) -- a team's process cannot write
  another team's entry.

A team can still cheat in its own forward (its own numbers): that is the organisers' review, not this module's.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from jsonschema import Draft202012Validator

from esrkit.measure.timing import mean
from esrkit.submission.teamrun import FAILED, OK, TeamOutcome

MAX_REPLY_BYTES = 32 << 20
KIT_KEYS = ("environment", "psnr_implausible")  # added to an entry by the batch itself: a team's are dropped
MAX_TEXT = 65536  # characters of any string of a reply
KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")
SPLITS = ("valid", "test", "hybrid_test")

_NUMBER = {"type": "number"}
_NONNEG = {"type": "number", "minimum": 0}
_COUNT = {"type": "integer", "minimum": 0}
_TEXT = {"type": "string", "maxLength": MAX_TEXT}
_TEXTS = {"type": "array", "items": _TEXT}
_BOOL = {"type": "boolean"}
_NONNEG_LIST = {"type": "array", "items": _NONNEG}
_OR_NULL = lambda schema: {"anyOf": [schema, {"type": "null"}]}  # noqa: E731

# Per split (``valid_``, ``test_``, ``hybrid_test_``, and ``<split>_fast_`` for the fast pass): what each key holds.
# Per-image lists are checked against the split's images separately.
PER_IMAGE = ("runtime", "psnr", "ssim", "psnr_y", "ssim_y", "warm_runtime")
SPLIT_KEYS: dict[str, dict[str, Any]] = {
    "runtime": _NONNEG_LIST, "ave_runtime": _NONNEG, "memory": _NONNEG,
    "psnr": _NONNEG_LIST, "ave_psnr": _NONNEG, "psnr_y": _NONNEG_LIST, "ave_psnr_y": _NONNEG,
    "ssim": {"type": "array", "items": {"type": "number", "minimum": -1, "maximum": 1}},
    "ave_ssim": {"type": "number", "minimum": -1, "maximum": 1},
    "ssim_y": {"type": "array", "items": {"type": "number", "minimum": -1, "maximum": 1}},
    "ave_ssim_y": {"type": "number", "minimum": -1, "maximum": 1},
    "images": _TEXTS, "lr_only": _BOOL, "cold_runtime": _NONNEG, "ave_runtime_excl_first": _NONNEG,
    "warm_runtime": _NONNEG_LIST, "warm_images": _TEXTS, "ave_warm_runtime": _NONNEG, "median_warm_runtime": _NONNEG,
    "split_peak_memory": _OR_NULL(_NONNEG), "tiled_images": _TEXTS, "oom_tiled_fallback": _TEXTS, "wall_s": _NONNEG,
    "ave_psnr_diff": _NUMBER, "psnr_diff_max": _NONNEG,
    "psnr_runs": _NONNEG_LIST, "psnr_spread": _NONNEG, "deterministic": _BOOL,
}
MODEL_KEYS: dict[str, Any] = {
    "loop": _TEXT, "activations": _NONNEG, "num_conv": _COUNT, "flops": _OR_NULL(_NONNEG), "num_parameters": _NONNEG,
    "flops_counter": _TEXT, "flops_hook": _NONNEG, "flops_fvcore": _OR_NULL(_NONNEG),
    "flops_fvcore_unsupported_ops": _OR_NULL({"type": "object", "additionalProperties": _COUNT}),
    "complexity_probe": _TEXT,
    "complexity_input_dependent": {"type": "object", "additionalProperties": {
        "type": "array", "items": _COUNT, "minItems": 2, "maxItems": 2}},
    "fast_engine": _TEXT, "fast_setup_ms": _NONNEG, "fast_graph_captures": _COUNT, "fast_error": _TEXT,
    "device": _TEXT, "device_type": _TEXT, "memory_measured": _BOOL, "timing": _TEXT, "entry": _TEXT,
    "weights": _TEXT, "weights_loading": _TEXT, "post_load": _OR_NULL(_TEXT), "results_convention": _TEXT,
    "data_dir": _TEXT, "layout": _TEXT, "data_fingerprint": _TEXT, "lr_source": _TEXT, "lr_only": _BOOL,
    "data_range": {"type": "number", "exclusiveMinimum": 0}, "date": _TEXT, "kit_version": _TEXT,
    "torch_version": _TEXT, "notes": _TEXTS, "confined": _BOOL, "display_name": _TEXT,
    "psnr_implausible": _TEXT,  # added by the batch (esrkit.submission.plausibility), never by the team
    "environment": {"type": "object", "properties": {
        "python": _TEXT, "torch": _TEXT, "platform": _TEXT,
        "packages": {"type": "object", "additionalProperties": _TEXT}}, "additionalProperties": False},
}


def _entry_schema() -> dict[str, Any]:
    split_pattern = "|".join(SPLITS)
    keys = "|".join(re.escape(k) for k in SPLIT_KEYS)
    return {
        "type": "object",
        "properties": MODEL_KEYS,
        "patternProperties": {f"^({split_pattern})(_fast)?_({keys})$": {}},  # checked per key below
        "additionalProperties": False,
    }


ENTRY_SCHEMA = _entry_schema()
_SPLIT_KEY_RE = re.compile(rf"^({'|'.join(SPLITS)})(_fast)?_({'|'.join(re.escape(k) for k in SPLIT_KEYS)})$")


@dataclass(frozen=True)
class Expectation:
    """What the batch knows of a team before its process replies: its label, the key its results entry must have
    (or, when the team's own file names it, the number the key must carry), the keys other teams hold, and the
    data it was measured on."""

    label: str
    images: Mapping[str, tuple[str, ...]]  # split -> its image names, in order
    data_dir: str
    layout: str
    data_fingerprint: str
    confined: bool
    key: str | None = None  # known before the run (a registered entry, a team whose number and name are given)
    team: int | None = None
    claimed: Mapping[str, str] = field(default_factory=dict)  # results key -> the label of the team that holds it


def _failed(label: str, why: str) -> TeamOutcome:
    return TeamOutcome(label, None, FAILED, f"{label}: its process's reply was refused: {why}")


def _finite(value: Any, allow_inf: bool = False) -> bool:
    if isinstance(value, float):
        return not math.isnan(value) and (allow_inf or not math.isinf(value)) and not (allow_inf and value == -math.inf)
    if isinstance(value, list):
        return all(_finite(v, allow_inf) for v in value)
    if isinstance(value, dict):
        return all(_finite(v, allow_inf) for v in value.values())
    return True


def key_problem(key: Any, expected: Expectation) -> str | None:
    """Why ``key`` is not one this team may write its entry under, or None."""
    if not isinstance(key, str) or not KEY_RE.match(key):
        return f"results key {key!r} is not a safe name (letters, digits and _ . + -, at most 128 characters)"
    if expected.key is not None and key != expected.key:
        return f"results key {key!r} is not this team's ({expected.key})"
    if expected.team is not None and not key.startswith(f"{expected.team:02d}_"):
        return f"results key {key!r} does not carry the team's number ({expected.team:02d}_...)"
    holder = expected.claimed.get(key)
    if holder is not None and holder != expected.label:
        return f"results key {key!r} is held by {holder}"
    return None


def record_problem(record: Any, expected: Expectation) -> str | None:
    """Why ``record`` is not a results entry the kit would have written for this team's run, or None."""
    if not isinstance(record, dict):
        return "no results entry"
    errors = sorted(Draft202012Validator(ENTRY_SCHEMA).iter_errors(record), key=lambda e: list(e.path))
    if errors:
        where = "/".join(map(str, errors[0].path)) or "the entry"
        return f"{where}: {errors[0].message[:200]}"
    splits: dict[str, set[str]] = {}
    for key, value in record.items():
        match = _SPLIT_KEY_RE.match(key)
        if match is None:
            continue
        split, fast, name = match.group(1), match.group(2), match.group(3)
        errors = list(Draft202012Validator(SPLIT_KEYS[name]).iter_errors(value))
        if errors:
            return f"{key}: {errors[0].message[:200]}"
        if not _finite(value, allow_inf=name in ("psnr", "ave_psnr", "psnr_y", "ave_psnr_y", "psnr_runs")):
            return f"{key}: a value that is not a finite number"
        splits.setdefault(split + (fast or ""), set()).add(name)
    if not _finite({k: v for k, v in record.items() if not _SPLIT_KEY_RE.match(k)}):
        return "a value that is not a finite number"
    for measured, names in splits.items():
        split = measured.removesuffix("_fast")
        if split not in expected.images:
            return f"a split this batch did not run ({split})"
        images = list(expected.images[split])
        if not measured.endswith("_fast") and record.get(f"{measured}_images") != images:
            return f"{measured}_images is not the split's images"
        for name in PER_IMAGE:
            values = record.get(f"{measured}_{name}")
            if values is None:
                continue
            if name == "warm_runtime":
                wanted = len(record.get(f"{measured}_warm_images", images))
            else:
                wanted = len(images)
            if len(values) != wanted:
                return f"{measured}_{name} has {len(values)} values for {wanted} images"
            average = record.get(f"{measured}_ave_{name}")
            if average is not None and values and average != mean(values):
                return f"{measured}_ave_{name} is not the mean of {measured}_{name}"
    for fact, value in (("data_dir", expected.data_dir), ("layout", expected.layout),
                        ("data_fingerprint", expected.data_fingerprint), ("confined", expected.confined)):
        if record.get(fact) != value:
            return f"{fact} is {record.get(fact)!r}, not the batch's {value!r}"
    return None


def accept(text: str | None, expected: Expectation) -> TeamOutcome:
    """The outcome a team process's reply stands for, once checked (see the module docstring); a failed outcome
    naming the problem otherwise. None (no reply) is the caller's to explain (the process died)."""
    if text is None:
        return _failed(expected.label, "there was none")
    if len(text.encode("utf-8", "replace")) > MAX_REPLY_BYTES:
        return _failed(expected.label, f"larger than {MAX_REPLY_BYTES >> 20} MiB")
    try:
        reply = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return _failed(expected.label, "not JSON")
    if not isinstance(reply, dict) or reply.get("status") not in (OK, FAILED):
        return _failed(expected.label, "not a reply (no status)")
    if reply["status"] == FAILED:
        error = reply.get("error")
        error = error if isinstance(error, str) and error.strip() else "failed, saying nothing"
        error = " ".join(error[:2000].split())  # one line, bounded
        return TeamOutcome(expected.label, None, FAILED, error if error.startswith(expected.label) else
                           f"{expected.label}: {error}")
    problem = key_problem(reply.get("key"), expected) or record_problem(reply.get("record"), expected)
    if problem is not None:
        return _failed(expected.label, problem)
    record = {k: v for k, v in reply["record"].items() if k not in KIT_KEYS}  # the batch's to say, not the team's
    return TeamOutcome(expected.label, reply["key"], OK, record=record)
