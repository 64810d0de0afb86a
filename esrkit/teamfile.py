"""A team's model file: reading it (``ast``, nothing executed) and importing it in isolation.

- :func:`imports_in` (over :func:`walk_importable`): the file's import statements, those under
  ``if __name__ == "__main__":`` left out (they never run when the organisers import the file);
- :func:`cuda_mentions`: where the file hard-codes CUDA (``.cuda()``, ``"cuda"``), so the kit can
  redirect those calls on a machine without it instead of failing;
- :func:`import_team_file`: imports the file under a private module name; the entries it registers
  are collected aside (never added to the kit's registry); a package it needs that is not
  installed is one line naming the package and how to install it.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import itertools
import re
import sys
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from esrkit import registry
from esrkit.device import cuda_redirected, explain_failure
from esrkit.entry import Entry
from esrkit.errors import KitError, first_line
from esrkit.teamcode import TeamExit, exits_refused

MODEL_FILE_RE = re.compile(r"^team(\d{2})_([A-Za-z][A-Za-z0-9_]*)\.py$")  # what a team submits (two-digit id)
# What an organisers' folder holds: their model ids run past 99 (the 2025 kit has 361).
TEAM_FILE_RE = re.compile(r"^team(\d{2,})_([A-Za-z][A-Za-z0-9_]*)\.py$")
# File-name suffixes that are a code convention, not part of the model's name (BasicSR's ``*_arch.py``): the
# organisers key team17_FSANet_arch.py as 17_FSANet.
CONVENTION_SUFFIXES = ("_arch",)
WEIGHT_SUFFIXES = (".pth", ".pt", ".ckpt")
# Import names whose pip package is named otherwise.
PIP_NAMES = {"cv2": "opencv-python", "PIL": "Pillow", "skimage": "scikit-image", "yaml": "PyYAML",
             "sklearn": "scikit-learn", "mamba_ssm": "mamba-ssm", "causal_conv1d": "causal-conv1d",
             "pywt": "PyWavelets", "basicsr": "basicsr"}
# Packages a plain ``pip install`` gets wrong beside the kit's torch: what works instead (README, "Teams that need
# other packages", says why and what was checked).
SECOND_ENVIRONMENT = {
    "torchvision": "the torchvision built for this torch, in an environment of its own (pip install torch==2.14.1 "
                   "torchvision==0.29.1; a plain pip install torchvision beside another torch does not load)",
    "timm": "timm 1.x, which needs torchvision: an environment with torch==2.14.1 torchvision==0.29.1, then pip install timm",
    "mmcv": "mmcv-lite in an environment with torch==2.14.1 torchvision==0.29.1 (mmcv.ops needs the full mmcv built for "
            "that torch and CUDA)",
    "mmengine": "mmcv-lite (which brings mmengine) in an environment with torch==2.14.1 torchvision==0.29.1",
    "basicsr": "an environment with torch==2.1.2 torchvision==0.16.2 numpy<2, then pip install basicsr==1.4.2 (it imports "
               "a torchvision module that 0.17 removed)",
    "mamba_ssm": "a CUDA machine: pip install causal-conv1d mamba-ssm there (CUDA kernels only)",
    "causal_conv1d": "a CUDA machine: pip install causal-conv1d mamba-ssm there (CUDA kernels only)",
}
PACKAGES_SECTION = 'README, "Teams that need other packages"'


def install_hint(package: str) -> str:
    """What installs ``package`` for a team's file to import, and where the README says more."""
    how = SECOND_ENVIRONMENT.get(package, f"pip install {PIP_NAMES.get(package, package)}")
    return f"{how} -- see {PACKAGES_SECTION}"

_import_counter = itertools.count()


def team_from_file_name(path: Path) -> tuple[int, str] | None:
    """(team number, model name) of ``teamNN_Name.py`` (any number of digits), or None when the file is not named
    that way. The name drops a code-convention suffix (``team17_FSANet_arch.py`` -> 17, ``FSANet``), as the
    organisers name the team in their results."""
    match = TEAM_FILE_RE.match(path.name)
    if not match:
        return None
    name = match.group(2)
    for suffix in CONVENTION_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return int(match.group(1)), name


def parse(path: Path) -> ast.Module:
    try:
        return ast.parse(path.read_text(encoding="utf-8-sig"), filename=str(path))  # a BOM: as Python reads it
    except (OSError, UnicodeDecodeError) as exc:
        raise KitError(f"cannot read {path}: {exc}") from None
    except SyntaxError as exc:
        raise KitError(f"{path.name} line {exc.lineno}: syntax error ({exc.msg})") from None


def _is_main_guard(node: ast.AST) -> bool:
    """``if __name__ == "__main__":`` (either operand order)."""
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare) or len(node.test.ops) != 1:
        return False
    sides = [node.test.left, *node.test.comparators]
    names = {s.id for s in sides if isinstance(s, ast.Name)}
    consts = {s.value for s in sides if isinstance(s, ast.Constant)}
    return isinstance(node.test.ops[0], ast.Eq) and names == {"__name__"} and consts == {"__main__"}


def walk_importable(tree: ast.AST) -> list[ast.AST]:
    """Every node that runs when the file is imported or its code is called: ``__main__`` blocks left out."""
    found: list[ast.AST] = []
    pending = [tree]
    while pending:
        node = pending.pop()
        found.append(node)
        for child in ast.iter_child_nodes(node):
            if not _is_main_guard(child):
                pending.append(child)
    return found


def imports_in(tree: ast.AST) -> list[tuple[str, int]]:
    """(dotted module name, line) of every import outside ``__main__`` blocks; relative ones start with dots.

    ``from esrkit import registry`` is reported as ``esrkit.registry`` (the registration module).
    """
    found: list[tuple[str, int]] = []
    for node in walk_importable(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module == "esrkit":
                found += [(f"esrkit.{alias.name}", node.lineno) for alias in node.names]
            else:
                found.append(("." * node.level + (node.module or ""), node.lineno))
    return sorted(found, key=lambda item: item[1])


def cuda_mentions(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) of every ``.cuda(...)`` call and ``"cuda"`` device string outside ``__main__`` blocks."""
    found = []
    for node in walk_importable(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "cuda":
            found.append((node.lineno, ".cuda()"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(r"cuda(:\d+)?", node.value):
            found.append((node.lineno, repr(node.value)))
    return sorted(set(found))


@dataclass(frozen=True)
class TeamModule:
    """An imported team file: the module, the entries it registered, and whether it hard-codes CUDA."""

    path: Path
    module: ModuleType
    registered: tuple[Entry, ...]
    cuda_lines: tuple[tuple[int, str], ...]

    def classes(self) -> list[type[nn.Module]]:
        """The ``nn.Module`` subclasses defined in the file itself (not imported into it), in file order."""
        own = [obj for obj in vars(self.module).values()
               if isinstance(obj, type) and issubclass(obj, nn.Module) and obj.__module__ == self.module.__name__]
        return sorted(own, key=lambda c: inspect.getsourcelines(c)[1] if _has_source(c) else 0)


def _has_source(cls: type) -> bool:
    try:
        inspect.getsourcelines(cls)
        return True
    except (OSError, TypeError):
        return False


def builds_without_arguments(cls: type) -> bool:
    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return False
    return all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params)


def import_team_file(path: Path) -> TeamModule:
    """Import ``path`` under a private module name (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise KitError(f"model file not found: {path}")
    cuda_lines = tuple(cuda_mentions(parse(path)))
    safe_stem = re.sub(r"\W", "_", path.stem)
    module_name = f"_esrkit_team_{safe_stem}_{next(_import_counter)}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise KitError(f"cannot import {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    redirect = cuda_lines and not torch.cuda.is_available()
    with registry.collecting() as collected:
        try:
            with exits_refused(path.name), cuda_redirected(torch.device("cpu")) if redirect else nullcontext():
                spec.loader.exec_module(module)
        except TeamExit:
            sys.modules.pop(module_name, None)
            raise
        except ModuleNotFoundError as exc:
            sys.modules.pop(module_name, None)
            name = exc.name or first_line(exc, with_type=False)
            missing = name.split(".")[0]
            if missing == "models" or (path.parent / f"{missing}.py").exists() or (path.parent / missing).is_dir():
                raise KitError(f"{path.name} imports {name}, a module of the team's own repository that is not part "
                               f"of the submission: a submission is one self-contained file (ask the team for it)") from None
            raise KitError(f"{path.name} imports {missing}, which is not installed here: {install_hint(missing)}") from None
        except Exception as exc:  # the file is user code: any error is reported, none is hidden
            sys.modules.pop(module_name, None)
            raise KitError(f"importing {path.name} failed: {explain_failure(exc)}") from None
    return TeamModule(path, module, tuple(collected), cuda_lines)


def find_weights(model_file: Path) -> Path | None:
    """The team's weights in ``model_zoo/`` beside the file's ``models/`` folder: the same stem
    (case-insensitive, ``.pth``/``.pt``/``.ckpt``), else the one file named ``teamNN_*`` for its team."""
    zoo = model_file.parent.parent / "model_zoo"
    if not zoo.is_dir():
        return None
    files = sorted(p for p in zoo.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    same_stem = [p for p in files if p.stem.lower() == model_file.stem.lower()]
    if same_stem:
        return same_stem[0]
    team = team_from_file_name(model_file)
    if team is None:
        return None
    same_team = [p for p in files if p.name.lower().startswith(f"team{team[0]:02d}_")]
    return same_team[0] if len(same_team) == 1 else None
