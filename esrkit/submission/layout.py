"""The submission's file layout: ``models/teamNN_Name.py``, ``model_zoo/teamNN_name.pth``, one self-contained file.

The organisers copy the model file into their own kit's ``models/`` folder and import it there
(``from models.team00_RFDN import RFDN``); anything it imports from elsewhere in the team's repo
is missing on their side, and so is any package their environment lacks (the year's official
environment: :mod:`esrkit.challenge`). The imports are read with ``ast``, never executed; those under
``if __name__ == "__main__":`` never run on the organisers' side and do not count.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from esrkit.challenge import Year
from esrkit.errors import KitError
from esrkit.submission.report import RuleResult, failed, passed
from esrkit.teamfile import MODEL_FILE_RE, WEIGHT_SUFFIXES, imports_in, parse

# The one kit module a model file may use: registering itself as an entry.
KIT_REGISTRATION = "esrkit.registry"
# What the kit's own export writes: a file any year's environment can import.
PORTABLE_PACKAGES = frozenset({"torch", "numpy"})

RULE_FILE_NAME = "file name"
RULE_WEIGHTS_NAME = "weights file name"
RULE_IMPORTS = "single file (imports)"


def check_model_file_name(path: Path) -> RuleResult:
    """The model file is ``models/teamNN_Name.py`` (two-digit team id, an importable module name)."""
    shown = f"{path.parent.name}/{path.name}"
    if path.parent.name != "models":
        return failed(RULE_FILE_NAME, f"{path} is not in a models/ folder: the organisers import it from models/")
    match = MODEL_FILE_RE.match(path.name)
    if match is None:
        hint = ""
        if re.match(r"^team\d+_", path.name) and not re.match(r"^team\d{2}_", path.name):
            hint = " (the team id has exactly two digits)"
        return failed(
            RULE_FILE_NAME,
            f"{shown} is not named teamNN_Name.py{hint}: rename it, e.g. models/team07_FastSR.py "
            f"(NN = your two-digit team id, Name = letters, digits, _)",
        )
    return passed(RULE_FILE_NAME, f"{shown}: team {match.group(1)}, model {match.group(2)}")


def check_weights_name(weights: Path | None, model_file: Path) -> RuleResult:
    """The weights are ``model_zoo/<model file stem>.{pth,pt,ckpt}``, the stem compared case-insensitively."""
    expected = f"model_zoo/{model_file.stem.lower()}.pth"
    if weights is None:
        return failed(RULE_WEIGHTS_NAME, f"no weights file given or found: put it at {expected} (or pass --weights)")
    shown = f"{weights.parent.name}/{weights.name}"
    if weights.parent.name != "model_zoo":
        return failed(RULE_WEIGHTS_NAME, f"{weights} is not in a model_zoo/ folder: move it to {expected}")
    if weights.suffix not in WEIGHT_SUFFIXES:
        return failed(RULE_WEIGHTS_NAME, f"{shown}: the extension must be one of {', '.join(WEIGHT_SUFFIXES)}")
    if weights.stem.lower() != model_file.stem.lower():
        return failed(
            RULE_WEIGHTS_NAME,
            f"{shown} does not carry the model file's stem {model_file.stem!r}: rename it to {expected}",
        )
    return passed(RULE_WEIGHTS_NAME, f"{shown} matches {model_file.name}")


def _import_problem(module: str, repo_root: Path, allowed: frozenset[str]) -> str | None:
    """Why importing ``module`` breaks a single-file submission, or None when it is fine."""
    if module.startswith("."):
        return f"relative import {module!r}"
    top = module.split(".")[0]
    if module == KIT_REGISTRATION or top in allowed or top in sys.stdlib_module_names:
        return None
    if top in ("models", "esrkit") or (repo_root / top).is_dir() or (repo_root / f"{top}.py").is_file():
        return f"{module} (a module of this repo)"
    return f"{module} (third-party, not in the challenge environment)"


def check_imports(path: Path, rules: Year | None = None) -> RuleResult:
    """Only the standard library and the year's environment (and ``esrkit.registry`` to register) are imported.

    ``rules`` None: the packages every year's environment has (torch, numpy), as ``export`` writes.
    """
    allowed = PORTABLE_PACKAGES if rules is None else rules.environment
    where = "torch, numpy" if rules is None else rules.environment_source
    try:
        imports = imports_in(parse(path))
    except KitError as exc:
        return failed(RULE_IMPORTS, str(exc))
    repo_root = path.parent.parent
    problems = [f"{problem} at line {line}" for module, line in imports
                if (problem := _import_problem(module, repo_root, allowed))]
    year = "" if rules is None else f"NTIRE {rules.year} "
    if problems:
        return failed(
            RULE_IMPORTS,
            f"{path.name} imports {'; '.join(problems)}: put everything the model needs into this one file "
            f"(only the standard library, the {year}environment's packages -- {where} -- and {KIT_REGISTRATION} "
            f"may be imported)",
        )
    tops = sorted({m.split(".")[0] for m, _ in imports} - {"__future__"})
    return passed(RULE_IMPORTS, f"imports only {', '.join(tops) if tops else 'nothing'}"
                                f"{'' if rules is None else f' ({year}environment: {where})'}")


__all__ = ["KIT_REGISTRATION", "PORTABLE_PACKAGES", "check_imports", "check_model_file_name",
           "check_weights_name"]
