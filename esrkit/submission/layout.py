"""The submission's file layout: ``models/teamNN_Name.py``, ``model_zoo/teamNN_name.pth``, one self-contained file.

The organisers copy the model file into their own kit's ``models/`` folder and import it there
(``from models.team00_RFDN import RFDN``); anything it imports from elsewhere in the team's repo
is missing on their side. The imports are read with ``ast``, never executed.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

from esrkit.submission.report import RuleResult, failed, passed

MODEL_FILE_RE = re.compile(r"^team(\d{2})_([A-Za-z][A-Za-z0-9_]*)\.py$")
WEIGHT_SUFFIXES = (".pth", ".pt", ".ckpt")
# Top-level packages a submission may import: the challenge environment has torch and numpy.
ALLOWED_PACKAGES = frozenset({"torch", "numpy"})
# The one kit module a model file may use: registering itself as an entry.
KIT_REGISTRATION = "esrkit.registry"

RULE_FILE_NAME = "file name"
RULE_WEIGHTS_NAME = "weights file name"
RULE_IMPORTS = "single file (imports)"


def model_name_from_file(path: Path) -> str | None:
    """``Name`` of ``teamNN_Name.py``, or None when the file is not named that way."""
    match = MODEL_FILE_RE.match(path.name)
    return match.group(2) if match else None


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


def find_weights(model_file: Path) -> Path | None:
    """``model_zoo/<same stem>.{pth,pt,ckpt}`` beside the file's ``models/`` folder (stem case-insensitive)."""
    zoo = model_file.parent.parent / "model_zoo"
    if not zoo.is_dir():
        return None
    stem = model_file.stem.lower()
    found = sorted(p for p in zoo.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.stem.lower() == stem)
    return found[0] if found else None


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


def _imported_modules(tree: ast.Module) -> list[tuple[str, int]]:
    """(dotted module name, line) of every import statement anywhere in the file; relative ones start with dots."""
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            if node.level == 0 and node.module == "esrkit":
                # ``from esrkit import registry`` is the registration module itself.
                found += [(f"esrkit.{alias.name}", node.lineno) for alias in node.names]
            else:
                found.append((base, node.lineno))
    return found


def _import_problem(module: str, repo_root: Path) -> str | None:
    """Why importing ``module`` breaks a single-file submission, or None when it is fine."""
    if module.startswith("."):
        return f"relative import {module!r}"
    top = module.split(".")[0]
    if module == KIT_REGISTRATION or top in ALLOWED_PACKAGES or top in sys.stdlib_module_names:
        return None
    if top in ("models", "esrkit") or (repo_root / top).is_dir() or (repo_root / f"{top}.py").is_file():
        return f"{module} (a module of this repo)"
    return f"{module} (third-party, not in the challenge environment)"


def check_imports(path: Path) -> RuleResult:
    """Only the standard library, torch, numpy (and ``esrkit.registry`` to register) are imported."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, UnicodeDecodeError) as exc:
        return failed(RULE_IMPORTS, f"cannot read {path}: {exc}")
    except SyntaxError as exc:
        return failed(RULE_IMPORTS, f"{path.name} line {exc.lineno}: syntax error ({exc.msg})")
    imports = _imported_modules(tree)
    repo_root = path.parent.parent
    problems = [f"{problem} at line {line}" for module, line in imports if (problem := _import_problem(module, repo_root))]
    if problems:
        return failed(
            RULE_IMPORTS,
            f"{path.name} imports {'; '.join(problems)}: put everything the model needs into this one file "
            f"(only the standard library, torch, numpy and {KIT_REGISTRATION} may be imported)",
        )
    tops = sorted({m.split(".")[0] for m, _ in imports} - {"__future__"})
    return passed(RULE_IMPORTS, f"imports only {', '.join(tops) if tops else 'nothing'}")
