"""``submission spec --from_select_model``: an official kit's ``select_model``, read (never run), as a TOML spec.

The organisers of the NTIRE ESR challenges build every team's network in the kit's ``test_demo.py``,
in ``select_model(args, device)``: an ``if/elif model_id == N`` chain whose branches import the team's
class, set the results key and data range (``name, data_range = f"{model_id:02}_FSANet", 1.0``), build
the class, load the weights (``torch.load(model_path)['params']``, sometimes through a variable,
``strict=False`` sometimes) and call a post-load step (``model.repa()``, or ``switch_deploy()`` on every
submodule that has it). This module parses that file with :mod:`ast` and writes the same facts as a
submission spec (:mod:`esrkit.spec`), one ``[[team]]`` table per model id::

    python -m esrkit.submission spec --from_select_model NTIRE2025_ESR/test_demo.py --out teams.toml

Per branch it follows simple assignments (also module-level constants and those set before the
chain), ``os.path.join`` and f-strings of constants, ``importlib.import_module`` + ``getattr``,
subscripts and ``.get(KEY)`` on ``torch.load(...)``, an ``if`` on a constant (``if model_id == 50:``
inside a shared branch: the branch taken), and ignores what cannot change the figures (``.eval()``,
``.to(device)``, ``.cuda()``, ``print``). It also reads what TOML or a plain key cannot say directly:

- ``None`` among the constructor's keyword arguments -> ``init_none = ["head_dim"]``; a positional
  ``None`` is given by keyword, with the arguments after it, as the class's signature in the team's
  file names them;
- a state key the checkpoint's contents choose -- ``if 'params_ema' in loadnet: keyname = 'params_ema'
  else: keyname = 'params'``, the same as a conditional expression, ``loadnet.get('params_ema',
  loadnet['params'])``, an ``if``/``elif`` on the state dict itself (the file itself last), a load in
  each branch, a branch that only raises -- is read on both branches (:class:`Conditional`) and written
  as the keys in the order the code tries them, ``state_key = ["params_ema", "params"]``: the kit takes
  the first the file holds when it opens it, and says which (:mod:`esrkit.checkpoint`);
- the team's own loading method called with the weights path (``model.load_weights(model_path)``) ->
  ``load_method = "load_weights"``: the kit calls it instead of ``load_state_dict``;
- any results-key name (``42_[FEAN]`` -> ``name = "[FEAN]"``; the kit's key spells it safely, ``42_FEAN``).

The results key is kept exactly: ``17_FSANet`` becomes ``team = 17``, ``name = "FSANet"`` (the kit's key
is ``f"{team:02}_{name}"``); a key of another form is left to fill in. Anything else -- a model built by a
helper, a dynamic path, a loop, an ``if`` on anything but a constant or a key of the checkpoint, a branch
of such an ``if`` that takes another key than it tests, a method called before the weights are loaded or
with arguments other than the weights path, several models, a ``None`` inside a list or with no readable
signature, a tile, a negative model id, an empty branch -- is listed per model id with the reason: in the
command's output, and in the spec as a commented-out table holding what could be read plus a ``FILL IN``
line per missing key.

The spec is loaded back with :func:`esrkit.spec.load_spec_file` before it replaces anything, written
atomically, and an existing file is replaced only with ``--force``. Exit code 0 when every branch was
read, 1 when some must be completed by hand, 2 (a ``KitError``) for a usage error.
"""

from __future__ import annotations

import argparse
import ast
import math
import os
import posixpath
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from esrkit.atomic import atomic_path, check_writable_file
from esrkit.challenge import YEARS
from esrkit.cli import EXIT_FAILED, EXIT_OK
from esrkit.errors import KitError
from esrkit.names import safe_name
from esrkit.spec import SPEC_KEYS, load_spec_file
from esrkit.teamfile import parse
from esrkit.tomltext import toml_value

FUNCTION = "select_model"
DEFAULT_RETURN = ("model", "name", "data_range", "tile")  # what the kits' select_model returns, in order
HARMLESS_METHODS = frozenset({"eval", "to", "cuda", "cpu", "requires_grad_"})  # device moves the kit makes itself
QUIET_CALLS = frozenset({"print", "logging.info", "logger.info"})  # calls that change nothing the spec holds
JOIN_FUNCTIONS = frozenset({"os.path.join", "posixpath.join"})
ESSENTIAL_KEYS = ("team", "name", "model_file", "class_name", "weights", "data_range")
RESULTS_KEY_RE = re.compile(r"(\d+)_(.+)\Z")
NTIRE_YEAR_RE = re.compile(r"NTIRE[ _-]?(20\d\d)")
MAX_REPEAT = 10_000  # a str/list repeated more often than this in the kit is not a constant worth following


# --- what was read --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Missing:
    """Something of one branch the reader could not read: the spec key it leaves open (None: the branch as a
    whole) and why, phrased for the organiser who completes the table."""

    key: str | None
    reason: str


@dataclass
class Branch:
    """One model id of ``select_model``: the spec keys read (paths absolute), what is missing, and notes."""

    model_id: int
    line: int
    keys: dict[str, Any] = field(default_factory=dict)
    missing: list[Missing] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    absent: list[Path] = field(default_factory=list)  # files it names that are not there (yet)

    @property
    def complete(self) -> bool:
        return not self.missing and all(k in self.keys for k in ESSENTIAL_KEYS)

    @property
    def where(self) -> str:
        return f"model_id {self.model_id} (line {self.line})"

    def open_keys(self) -> list[str]:
        """The spec keys the organiser must fill in, in spec order."""
        absent = {k for k in ESSENTIAL_KEYS if k not in self.keys} | {m.key for m in self.missing if m.key}
        return [k for k in SPEC_KEYS if k in absent]


@dataclass(frozen=True)
class KitReading:
    """``select_model`` of one kit file: its branches in file order, the year and why, and what was not a branch."""

    path: Path
    branches: tuple[Branch, ...]
    year: int | None
    year_reason: str
    problems: tuple[str, ...] = ()  # parts of the chain with no model id to list them under

    @property
    def complete(self) -> bool:
        return not self.problems and all(b.complete for b in self.branches)


# --- values of the kit's code, as far as they can be known without running it ---------------------


class Unreadable(Exception):
    """An expression or statement the reader does not follow; the message says which and why."""


@dataclass(frozen=True)
class Unknown:
    """A name whose value cannot be known; reading it raises :class:`Unreadable` with ``reason``."""

    reason: str


@dataclass(frozen=True)
class Imported:
    """An imported name: ``attr`` of the module ``module`` (``attr`` None: the module itself)."""

    module: str
    attr: str | None = None

    @property
    def qualname(self) -> str:
        return self.module if self.attr is None else f"{self.module}.{self.attr}"

    def child(self, name: str) -> "Imported":
        return Imported(self.qualname, name)


@dataclass(frozen=True)
class LocalFunction:
    """A function (or class) the kit file itself defines: a helper that builds the model is not followed."""

    name: str
    line: int


@dataclass(frozen=True)
class Checkpoint:
    """``torch.load(path)``, subscripted by ``keys`` (``['params']``, ``.get('params_ema')``)."""

    path: str
    keys: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Marker:
    """A value that is known to be opaque and harmless: ``args``, ``device``, a method's return value."""

    what: str


@dataclass(frozen=True)
class KeyTest:
    """``KEY in ckpt``: whether the checkpoint (or the part of it) ``checkpoint`` holds ``key``."""

    checkpoint: Checkpoint
    key: Any


@dataclass(frozen=True)
class Conditional:
    """A value the checkpoint's contents choose: ``then`` where ``test`` holds, else ``orelse`` (:data:`RAISES`:
    that way the kit's code raises an error)."""

    test: KeyTest
    then: Any
    orelse: Any

    def map(self, fn: Callable[[Any], Any]) -> "Conditional":
        """``fn`` applied to every outcome (an outcome that raises stays one)."""
        return Conditional(self.test, _map_outcome(self.then, fn), _map_outcome(self.orelse, fn))


def _map_outcome(value: Any, fn: Callable[[Any], Any]) -> Any:
    return value.map(fn) if isinstance(value, Conditional) else value if value is RAISES else fn(value)


@dataclass(eq=False)
class Model:
    """The network a branch builds, and what happens to it before ``select_model`` returns it."""

    cls: Imported
    file: Path
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    line: int
    checkpoint: Checkpoint | Conditional | None = None  # a Conditional: the team's code chooses the state key
    strict: bool | None = True
    load_lines: list[int] = field(default_factory=list)
    post_load: list[tuple[str, int]] = field(default_factory=list)
    load_method: str | None = None  # the team's own method loads the weights file (checkpoint: its path)

    def load_state(self) -> tuple[Any, ...]:
        """What loading has done to the network so far (to compare and restore across the branches of an ``if``)."""
        return self.checkpoint, tuple(self.load_lines), self.strict, tuple(self.post_load), self.load_method

    def restore(self, state: tuple[Any, ...]) -> None:
        self.checkpoint, lines, self.strict, post, self.load_method = state
        self.load_lines, self.post_load = list(lines), list(post)


ARGS, DEVICE = Marker("args"), Marker("device")
RAISES = Marker("an error raised by the kit's code")
WEIGHTS_SUFFIXES = frozenset({".pth", ".pt", ".pkl", ".ckpt", ".tar", ".bin", ".safetensors", ".npz", ".h5"})


def _line(node: ast.AST) -> int:
    return getattr(node, "lineno", 0)


def _src(node: ast.AST, limit: int = 70) -> str:
    text = " ".join(ast.unparse(node).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- the kit file as a whole ----------------------------------------------------------------------


@dataclass
class _Kit:
    """What every branch shares: the kit's folder, its module-level names, and ``select_model``'s frame."""

    path: Path
    folder: Path
    env: dict[str, Any]
    id_var: str
    returns: tuple[str, ...]
    tile_after: ast.expr | None  # what select_model sets the tile to after the chain (None: it does not)
    _classes: dict[Path, dict[str, str] | None] = field(default_factory=dict)

    def module_file(self, module: str) -> Path:
        base = self.folder.joinpath(*module.split("."))
        package = base / "__init__.py"
        return package if not base.with_suffix(".py").is_file() and package.is_file() else base.with_suffix(".py")

    def is_local(self, module: str) -> bool:
        return module.split(".")[0] == "models" or self.module_file(module).is_file()

    def top_names(self, file: Path) -> dict[str, str] | None:
        """``{name: "class" | "function" | "other"}`` at the top of a team's file (None: absent or unparsable)."""
        if file not in self._classes:
            try:
                tree = parse(file) if file.is_file() else None
            except KitError:
                tree = None
            self._classes[file] = None if tree is None else _top_level_names(tree)
        return self._classes[file]


def _top_level_names(tree: ast.Module) -> dict[str, str]:
    names: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names[node.name] = "class"
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names[node.name] = "function"
        else:
            for sub in ast.walk(node):
                if isinstance(sub, ast.alias):
                    names.setdefault((sub.asname or sub.name).split(".")[0], "other")
                elif isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                    names.setdefault(sub.id, "other")
    return names


def _bind_import(env: dict[str, Any], node: ast.Import | ast.ImportFrom) -> None:
    if isinstance(node, ast.Import):
        for alias in node.names:
            env[alias.asname or alias.name.split(".")[0]] = Imported(alias.name if alias.asname else alias.name.split(".")[0])
        return
    for alias in node.names:
        if alias.name == "*":
            continue
        bound = alias.asname or alias.name
        env[bound] = (Unknown(f"`{bound}` comes from a relative import (line {node.lineno})") if node.level
                      else Imported(node.module or "", alias.name))


def _find_function(tree: ast.Module, path: Path) -> ast.FunctionDef:
    found = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == FUNCTION]
    if not found:
        raise KitError(f"{path} has no top-level function {FUNCTION}(): give the official kit's test_demo.py "
                       f"(the file whose {FUNCTION} builds each team's network)")
    return found[-1]


def _id_var(func: ast.FunctionDef) -> str:
    """The variable holding the model id: ``model_id = args.model_id`` (or a parameter called model_id)."""
    for node in func.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Attribute) and node.value.attr == "model_id"):
            return node.targets[0].id
    return "model_id"


def _mentions_id(node: ast.AST, id_var: str) -> bool:
    return any((isinstance(n, ast.Name) and n.id == id_var) or (isinstance(n, ast.Attribute) and n.attr == "model_id")
               for n in ast.walk(node))


def _is_id(node: ast.AST, id_var: str) -> bool:
    return (isinstance(node, ast.Name) and node.id == id_var) or (isinstance(node, ast.Attribute) and node.attr == "model_id")


def _int_literal(node: ast.AST) -> int:
    value = ast.literal_eval(node)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(value)
    return value


def _test_ids(test: ast.AST, id_var: str) -> list[int]:
    """The model ids an ``if`` test selects: ``model_id == N``, ``N == model_id``, ``model_id in (..)``, ``or``."""
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.Or):
        return [i for value in test.values for i in _test_ids(value, id_var)]
    if isinstance(test, ast.Compare) and len(test.ops) == 1:
        left, op, right = test.left, test.ops[0], test.comparators[0]
        if isinstance(op, ast.Eq) and _is_id(right, id_var):
            left, right = right, left
        if _is_id(left, id_var):
            if isinstance(op, ast.Eq):
                return [_int_literal(right)]
            if isinstance(op, ast.In) and isinstance(right, (ast.Tuple, ast.List, ast.Set)):
                return [_int_literal(e) for e in right.elts]
    raise ValueError(test)


@dataclass(frozen=True)
class _Case:
    ids: tuple[int, ...]
    body: tuple[ast.stmt, ...]
    line: int
    chain: int  # which if statement of select_model (an elif chain is one)


def _is_trivial_else(body: Sequence[ast.stmt]) -> bool:
    return all(isinstance(s, (ast.Raise, ast.Pass)) or (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
               for s in body)


def _cases(func: ast.FunctionDef, id_var: str) -> tuple[list[_Case], list[ast.stmt], list[ast.stmt], list[str]]:
    """The branches of the model-id chains, the statements before the first and after the last, and problems."""
    chains = [i for i, s in enumerate(func.body) if isinstance(s, ast.If) and _mentions_id(s.test, id_var)]
    if not chains:
        raise KitError(f"{FUNCTION}() has no `if model_id == N:` chain: is this an official kit's test_demo.py?")
    cases: list[_Case] = []
    problems: list[str] = []
    for chain, index in enumerate(chains):
        node: ast.stmt | None = func.body[index]
        while isinstance(node, ast.If):
            try:
                ids = _test_ids(node.test, id_var)
            except (ValueError, SyntaxError, TypeError):
                problems.append(f"line {node.lineno}: `if {_src(node.test)}` selects no model id the reader can list "
                                f"(it reads `{id_var} == N` and `{id_var} in (N, M)`): add a table for its ids by hand")
                ids = []
            if ids:
                cases.append(_Case(tuple(ids), tuple(node.body), node.lineno, chain))
            orelse = node.orelse
            node = orelse[0] if len(orelse) == 1 and isinstance(orelse[0], ast.If) else None
            if node is None and orelse and not _is_trivial_else(orelse):
                problems.append(f"line {orelse[0].lineno}: the `else:` branch builds a network for every other model id: "
                                f"not read; add its table by hand")
    return cases, func.body[: chains[0]], func.body[chains[-1] + 1:], problems


def _returns(post: Sequence[ast.stmt]) -> tuple[str, ...] | None:
    for node in reversed(post):
        if isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple) \
                and all(isinstance(e, ast.Name) for e in node.value.elts) and len(node.value.elts) >= 3:
            return tuple(e.id for e in node.value.elts)  # type: ignore[attr-defined]
    return None


def _module_env(tree: ast.Module, kit: _Kit) -> None:
    """Module-level imports, functions and constants: what a branch may refer to."""
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            _bind_import(kit.env, node)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            kit.env[node.name] = LocalFunction(node.name, node.lineno)
        elif isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
            try:
                value = _Reader(kit, kit.env).value(node.value)
            except Unreadable:
                continue
            if _is_plain(value):
                for target in node.targets:
                    kit.env[target.id] = value  # type: ignore[attr-defined]


def _is_plain(value: Any) -> bool:
    """A constant of the kit (what TOML or a path could be made of), not a model or a checkpoint."""
    if isinstance(value, (list, tuple, set)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(_is_plain(k) and _is_plain(v) for k, v in value.items())
    return value is None or isinstance(value, (str, int, float, bool, Imported))


# --- reading one branch ---------------------------------------------------------------------------


class _Reader:
    """Walks one branch's statements in order, with the names it can know (see the module docstring)."""

    def __init__(self, kit: _Kit, env: dict[str, Any]) -> None:
        self.kit = kit
        self.env = env
        self.models: list[Model] = []
        self.missing: list[Missing] = []
        self.notes: list[str] = []
        self.load_unknown: str | None = None  # why the weights loading cannot be read, when it cannot

    # -- expressions --

    def value(self, node: ast.AST) -> Any:
        handler = getattr(self, f"_v_{type(node).__name__}", None)
        if handler is None:
            raise Unreadable(f"`{_src(node)}` (line {_line(node)}) is not a constant the reader can evaluate")
        try:
            return handler(node)
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:  # Python's own rules on the constants
            raise Unreadable(f"`{_src(node)}` (line {_line(node)}) does not evaluate ({exc})") from None

    def _v_Constant(self, node: ast.Constant) -> Any:
        return node.value

    def _v_Name(self, node: ast.Name) -> Any:
        if node.id not in self.env:
            raise Unreadable(f"`{node.id}` (line {node.lineno}) is not set where the reader can see it")
        value = self.env[node.id]
        if isinstance(value, Unknown):
            raise Unreadable(value.reason)
        return value

    def _v_JoinedStr(self, node: ast.JoinedStr) -> str:
        return "".join(str(self.value(v)) if isinstance(v, ast.Constant) else self.value(v) for v in node.values)

    def _v_FormattedValue(self, node: ast.FormattedValue) -> str:
        value = self.value(node.value)
        if not _is_plain(value) or isinstance(value, Imported):
            raise Unreadable(f"the f-string at line {node.lineno} formats `{_src(node.value)}`, not a constant")
        value = {-1: value, 115: str(value), 114: repr(value), 97: ascii(value)}[node.conversion]
        spec = self.value(node.format_spec) if node.format_spec is not None else ""
        try:
            return format(value, spec)
        except (ValueError, TypeError) as exc:
            raise Unreadable(f"the f-string at line {node.lineno} does not format ({exc})") from None

    def _v_Tuple(self, node: ast.Tuple) -> tuple:
        return tuple(self._elements(node.elts))

    def _v_List(self, node: ast.List) -> list:
        return self._elements(node.elts)

    def _elements(self, elts: Sequence[ast.expr]) -> list:
        out: list = []
        for e in elts:
            if isinstance(e, ast.Starred):
                out.extend(self._sequence(e.value))
            else:
                out.append(self.value(e))
        return out

    def _sequence(self, node: ast.AST) -> list:
        value = self.value(node)
        if not isinstance(value, (list, tuple)):
            raise Unreadable(f"`*{_src(node)}` (line {_line(node)}) is not a list of constants")
        return list(value)

    def _v_Dict(self, node: ast.Dict) -> dict:
        out: dict = {}
        for k, v in zip(node.keys, node.values):
            if k is None:
                out.update(self._mapping(v))
            else:
                out[self.value(k)] = self.value(v)
        return out

    def _mapping(self, node: ast.AST) -> dict:
        value = self.value(node)
        if not isinstance(value, dict):
            raise Unreadable(f"`**{_src(node)}` (line {_line(node)}) is not a dict of constants")
        return value

    def _v_UnaryOp(self, node: ast.UnaryOp) -> Any:
        operand = self.value(node.operand)
        if isinstance(node.op, ast.Not):
            return not operand
        if isinstance(operand, (int, float)) and not isinstance(operand, bool):
            return -operand if isinstance(node.op, ast.USub) else +operand if isinstance(node.op, ast.UAdd) else ~operand
        raise Unreadable(f"`{_src(node)}` (line {node.lineno}) is not arithmetic on a number")

    def _v_BinOp(self, node: ast.BinOp) -> Any:
        left, right = self.value(node.left), self.value(node.right)
        plain = (int, float, str, list, tuple)
        if not isinstance(left, plain) or not isinstance(right, plain):
            raise Unreadable(f"`{_src(node)}` (line {node.lineno}) is not arithmetic on constants")
        op = type(node.op).__name__
        repeat = isinstance(node.op, ast.Mult) and any(isinstance(x, int) and x > MAX_REPEAT for x in (left, right))
        if repeat or (isinstance(node.op, ast.Pow) and isinstance(right, (int, float)) and abs(right) > 64):
            raise Unreadable(f"`{_src(node)}` (line {node.lineno}) is too large a constant to follow")
        operators: dict[str, Callable[[Any, Any], Any]] = {
            "Add": lambda a, b: a + b, "Sub": lambda a, b: a - b, "Mult": lambda a, b: a * b,
            "Div": lambda a, b: a / b, "FloorDiv": lambda a, b: a // b, "Mod": lambda a, b: a % b,
            "Pow": lambda a, b: a ** b}
        if op not in operators:
            raise Unreadable(f"`{_src(node)}` (line {node.lineno}) uses an operator the reader does not evaluate")
        try:
            return operators[op](left, right)
        except (TypeError, ValueError, ZeroDivisionError, OverflowError) as exc:
            raise Unreadable(f"`{_src(node)}` (line {node.lineno}) does not evaluate ({exc})") from None

    def _v_IfExp(self, node: ast.IfExp) -> Any:
        test = self._key_test(node.test)
        if test is not None:  # `'params_ema' if 'params_ema' in loadnet else 'params'`: decided when it is opened
            key_test, negated = test
            held, absent = (node.orelse, node.body) if negated else (node.body, node.orelse)
            return Conditional(key_test, self.value(held), self.value(absent))
        return self.value(node.body) if self.value(node.test) else self.value(node.orelse)

    def _key_test(self, test: ast.expr) -> tuple[KeyTest, bool] | None:
        """``KEY in ckpt`` (``ckpt.keys()`` too, ``not in``, ``not``) on a checkpoint: the test, and whether negated."""
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            inner = self._key_test(test.operand)
            return None if inner is None else (inner[0], not inner[1])
        if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], (ast.In, ast.NotIn))):
            return None
        owner_node = test.comparators[0]
        if (isinstance(owner_node, ast.Call) and isinstance(owner_node.func, ast.Attribute)
                and owner_node.func.attr == "keys" and not owner_node.args and not owner_node.keywords):
            owner_node = owner_node.func.value
        key, owner = self._try(test.left), self._try(owner_node)
        if not isinstance(key, str) or not isinstance(owner, Checkpoint):
            return None
        return KeyTest(owner, key), isinstance(test.ops[0], ast.NotIn)

    def _v_Compare(self, node: ast.Compare) -> bool:
        operators: dict[type, Callable[[Any, Any], bool]] = {
            ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b, ast.Lt: lambda a, b: a < b,
            ast.LtE: lambda a, b: a <= b, ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b,
            ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b}
        left = self.value(node.left)
        for op, right_node in zip(node.ops, node.comparators):
            right = self.value(right_node)
            if type(op) not in operators or not (_is_plain(left) and _is_plain(right)):
                raise Unreadable(f"`{_src(node)}` (line {node.lineno}) is not a comparison of constants")
            try:
                if not operators[type(op)](left, right):
                    return False
            except TypeError as exc:
                raise Unreadable(f"`{_src(node)}` (line {node.lineno}) does not evaluate ({exc})") from None
            left = right
        return True

    def _v_Attribute(self, node: ast.Attribute) -> Any:
        owner = self.value(node.value)
        if owner is ARGS:
            if node.attr == "model_id":
                return self.env[self.kit.id_var]
            raise Unreadable(f"`{_src(node)}` (line {node.lineno}) is a command-line value of the kit, not in the file")
        if isinstance(owner, Imported):
            return owner.child(node.attr)
        raise Unreadable(f"`{_src(node)}` (line {node.lineno}) is not a name the reader can follow")

    def _v_Subscript(self, node: ast.Subscript) -> Any:
        owner, key = self.value(node.value), self.value(node.slice)
        if isinstance(owner, Conditional) or (isinstance(key, Conditional) and isinstance(owner, Checkpoint)):
            return self._choose_keys(owner, key, node)
        if isinstance(owner, Checkpoint):
            return Checkpoint(owner.path, owner.keys + (key,))
        if isinstance(owner, (list, tuple, dict, str)):
            try:
                return owner[key]
            except (KeyError, IndexError, TypeError) as exc:
                raise Unreadable(f"`{_src(node)}` (line {node.lineno}) does not evaluate ({exc!r})") from None
        raise Unreadable(f"`{_src(node)}` (line {node.lineno}) subscripts something the reader cannot follow")

    def _choose_keys(self, owner: Any, key: Any, node: ast.AST) -> Conditional:
        """``ckpt[keyname]`` where the checkpoint's contents chose ``keyname`` (or ``ckpt``): one checkpoint key
        per outcome."""

        def take(part: Any) -> Any:
            if isinstance(key, Conditional):
                if not isinstance(part, Checkpoint):
                    raise Unreadable(f"`{_src(node)}` (line {_line(node)}) subscripts something the reader cannot "
                                     f"follow")
                return key.map(lambda k: Checkpoint(part.path, part.keys + (k,)))
            if not isinstance(part, Checkpoint):
                raise Unreadable(f"`{_src(node)}` (line {_line(node)}) subscripts something the reader cannot follow")
            return Checkpoint(part.path, part.keys + (key,))

        return owner.map(take) if isinstance(owner, Conditional) else take(owner)

    def _v_Call(self, node: ast.Call) -> Any:
        return self.call(node, statement=False)

    # -- calls --

    def call(self, node: ast.Call, statement: bool) -> Any:
        func = node.func
        if statement and _dotted(func) in QUIET_CALLS:
            return Marker("nothing")
        if isinstance(func, ast.Attribute):
            owner = self.value(func.value)
            if isinstance(owner, Model):
                return self._model_method(owner, func.attr, node, statement)
            if isinstance(owner, Checkpoint) and func.attr == "get" and len(node.args) == 1 and not node.keywords:
                return Checkpoint(owner.path, owner.keys + (self.value(node.args[0]),))
            if isinstance(owner, Checkpoint) and func.attr == "get" and len(node.args) == 2 and not node.keywords:
                key = self.value(node.args[0])  # ckpt.get('params_ema', ckpt['params']): the first it holds
                return Conditional(KeyTest(owner, key), Checkpoint(owner.path, owner.keys + (key,)),
                                   self.value(node.args[1]))
            target = owner.child(func.attr) if isinstance(owner, Imported) else None
        elif isinstance(func, ast.Name) and func.id not in self.env:
            return self._builtin(func.id, node)
        else:
            target = self.value(func)
        if isinstance(target, LocalFunction):
            raise Unreadable(f"`{_src(node)}` (line {node.lineno}) calls {target.name}, defined in the kit file (line "
                             f"{target.line}): the reader does not follow the kit's own functions and classes")
        if not isinstance(target, Imported):
            raise Unreadable(f"`{_src(node)}` (line {node.lineno}) is a call the reader does not follow")
        qualname = target.qualname
        if qualname in JOIN_FUNCTIONS:
            parts = [self.value(a) for a in node.args]
            if node.keywords or not all(isinstance(p, str) for p in parts):
                raise Unreadable(f"`{_src(node)}` (line {node.lineno}) joins something other than constant strings")
            return posixpath.join(*parts)
        if qualname == "torch.load":
            where = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "f"), None)
            path = self.value(where) if where is not None else None
            if not isinstance(path, str):
                raise Unreadable(f"`{_src(node)}` (line {node.lineno}) loads a path the reader cannot tell")
            return Checkpoint(path)
        if qualname == "importlib.import_module" and len(node.args) == 1 and not node.keywords:
            module = self.value(node.args[0])
            if isinstance(module, str) and not module.startswith("."):
                return Imported(module)
        if target.attr is not None and self.kit.is_local(target.module):
            return self._construct(target, node)
        raise Unreadable(f"`{_src(node)}` (line {node.lineno}) calls {qualname}, which the reader does not follow")

    def _builtin(self, name: str, node: ast.Call) -> Any:
        if name == "getattr" and len(node.args) == 2 and not node.keywords:
            owner, attr = self.value(node.args[0]), self.value(node.args[1])
            if isinstance(owner, Imported) and isinstance(attr, str):
                return owner.child(attr)
        if name == "dict" and not node.args:
            return {k.arg: self.value(k.value) for k in node.keywords if k.arg is not None}
        if name in ("list", "tuple", "float", "int", "str", "bool") and len(node.args) == 1 and not node.keywords:
            converted = {"list": list, "tuple": tuple, "float": float, "int": int, "str": str, "bool": bool}[name]
            try:
                return converted(self.value(node.args[0]))
            except (TypeError, ValueError) as exc:
                raise Unreadable(f"`{_src(node)}` (line {node.lineno}) does not evaluate ({exc})") from None
        raise Unreadable(f"`{_src(node)}` (line {node.lineno}) calls {name}(), which the reader does not follow")

    def _construct(self, target: Imported, node: ast.Call) -> Model:
        file = self.kit.module_file(target.module)
        names = self.kit.top_names(file)
        if names is None and file.is_file():
            self.notes.append(f"{file.name} does not parse: {target.attr} could not be checked to be a class of it")
        elif names is not None and names.get(target.attr or "") == "function":
            self.notes.append(f"{target.attr} is a function of {file.name}, not a class: class_name names it, and the "
                              f"kit calls it with the arguments, as {FUNCTION} does")
        # An argument that cannot be read leaves its key open; the class is still known.
        try:
            args = self._elements(node.args)
        except Unreadable as exc:
            args = []
            self.missing.append(Missing("init_args", str(exc)))
        kwargs: dict[str, Any] = {}
        for k in node.keywords:
            try:
                kwargs.update(self._mapping(k.value) if k.arg is None else {k.arg: self.value(k.value)})
            except Unreadable as exc:
                self.missing.append(Missing("init_kwargs", str(exc)))
        model = Model(target, file, tuple(args), kwargs, node.lineno)
        self.models.append(model)
        return model

    def _model_method(self, model: Model, name: str, node: ast.Call, statement: bool) -> Any:
        if name in HARMLESS_METHODS:
            if name == "to" and not all(_is_device(self._try(a)) for a in node.args):
                raise Unreadable(f"`{_src(node)}` (line {node.lineno}) moves the network to something other than "
                                 f"a device (a dtype changes what is measured)")
            return model
        if name == "load_state_dict":
            self._load(model, node)
            return Marker("load_state_dict's report")
        path = self._try(node.args[0]) if len(node.args) == 1 and not node.keywords else None
        if statement and isinstance(path, str) and ("load" in name.lower() or _weights_suffix(path)):
            model.load_lines.append(node.lineno)  # `model.load_weights(model_path)`: the team's own loading
            model.load_method, model.checkpoint, model.strict = name, Checkpoint(path), None
            return Marker("nothing")
        if node.args or node.keywords:
            raise Unreadable(f"`{_src(node)}` (line {node.lineno}): a method called with arguments, which a spec "
                             f"cannot say (its post_load calls a method without any)")
        if not statement:
            raise Unreadable(f"`{_src(node)}` (line {node.lineno}): what {name}() returns is used, which a spec's "
                             f"post_load cannot say")
        if not model.load_lines and self.load_unknown is None:
            raise Unreadable(f"`{_src(node)}` (line {node.lineno}) is called before the weights are loaded; a spec's "
                             f"post_load runs after loading")
        model.post_load.append((name, node.lineno))
        return Marker("nothing")

    def _load(self, model: Model, node: ast.Call) -> None:
        model.load_lines.append(node.lineno)
        given = dict(zip(("state_dict", "strict"), node.args))
        given.update({k.arg: k.value for k in node.keywords if k.arg is not None})
        extra = sorted(set(given) - {"state_dict", "strict"}) + (["**"] if any(k.arg is None for k in node.keywords) else [])
        if extra or len(node.args) > 2 or "state_dict" not in given:
            self.load_unknown = f"`{_src(node)}` (line {node.lineno}) is not load_state_dict(state_dict, strict=...)"
            return
        model.strict = True
        if "strict" in given:
            strict = self._try(given["strict"])
            model.strict = strict if isinstance(strict, bool) else None
            if model.strict is None:
                self.missing.append(Missing("strict", f"strict=`{_src(given['strict'])}` (line {node.lineno}) is "
                                                      f"not true or false"))
        try:
            state = self.value(given["state_dict"])
        except Unreadable as exc:
            base = self._try(_subscript_base(given["state_dict"]))
            if isinstance(base, Checkpoint):  # the weights file is known, where in it is not
                model.checkpoint = Checkpoint(base.path)
                self.missing.append(Missing("state_key", str(exc)))
            else:
                self.load_unknown = str(exc)
            return
        if isinstance(state, Conditional):
            try:
                _choice(state)
            except Unreadable as exc:
                self.load_unknown = f"the state_dict given at line {node.lineno}: {exc}"
                return
        elif not isinstance(state, Checkpoint):
            self.load_unknown = (f"the state_dict given at line {node.lineno} (`{_src(given['state_dict'])}`) is not "
                                 f"torch.load(...) or a key of it")
            return
        model.checkpoint = state

    def _try(self, node: ast.AST) -> Any:
        try:
            return self.value(node)
        except Unreadable:
            return None

    # -- statements --

    def run(self, body: Iterable[ast.stmt]) -> None:
        for node in body:
            try:
                self.statement(node)
            except Unreadable as exc:
                self.missing.append(Missing(None, str(exc)))

    def statement(self, node: ast.stmt) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            _bind_import(self.env, node)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            self._assign(node)
        elif isinstance(node, ast.Expr):
            if isinstance(node.value, ast.Call):
                self.call(node.value, statement=True)
            elif not isinstance(node.value, ast.Constant):
                raise Unreadable(f"`{_src(node)}` (line {node.lineno}) is a statement the reader does not follow")
        elif isinstance(node, ast.For) and self._each_module_call(node):
            pass
        elif isinstance(node, ast.If) and self._if(node):
            pass
        elif not isinstance(node, (ast.Pass, ast.Assert, ast.Delete)):
            self._opaque_block(node)

    def _assign(self, node: ast.Assign | ast.AnnAssign | ast.AugAssign) -> None:
        if node.value is None:
            return
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        value_node: ast.expr = node.value
        if isinstance(node, ast.AugAssign):
            value_node = ast.BinOp(left=_load_ctx(node.target), op=node.op, right=node.value, lineno=node.lineno)
        for target in targets:
            if isinstance(target, (ast.Tuple, ast.List)) and isinstance(value_node, (ast.Tuple, ast.List)) \
                    and len(target.elts) == len(value_node.elts):
                pairs = list(zip(target.elts, value_node.elts))  # each value on its own: one unknown spoils one name
            else:
                pairs = [(target, value_node)]
            for t, v in pairs:
                try:
                    value: Any = self.value(v)
                except Unreadable as exc:
                    value = Unknown(str(exc))
                self._bind(t, value, node)

    def _bind(self, target: ast.expr, value: Any, node: ast.stmt) -> None:
        if isinstance(target, ast.Name):
            self.env[target.id] = value
        elif isinstance(target, (ast.Tuple, ast.List)):
            items = value if isinstance(value, (list, tuple)) and len(value) == len(target.elts) else None
            for i, t in enumerate(target.elts):
                self._bind(t, items[i] if items is not None else Unknown(
                    value.reason if isinstance(value, Unknown) else
                    f"`{_src(node)}` (line {node.lineno}) unpacks something the reader cannot split"), node)
        elif isinstance(self._try(_subscript_base(target)), Model):
            raise Unreadable(f"`{_src(node)}` (line {node.lineno}) changes the network by hand")
        elif isinstance(value, Unknown):
            raise Unreadable(value.reason)

    def _if(self, node: ast.If) -> bool:
        """An ``if`` the reader follows: on what the checkpoint holds (both branches, the choice made when it is
        opened), or on a constant (the branch taken). False: not one of those."""
        test = self._key_test(node.test)
        if test is not None:
            key_test, negated = test
            held, absent = (node.orelse, node.body) if negated else (node.body, node.orelse)
            return self._key_branches(node, key_test, held, absent)
        try:
            taken = self.value(node.test)
        except Unreadable:
            return False
        if not _is_plain(taken) or isinstance(taken, Imported):
            return False
        self.run(node.body if taken else node.orelse)
        return True

    def _key_branches(self, node: ast.If, test: KeyTest, held: Sequence[ast.stmt], absent: Sequence[ast.stmt]) -> bool:
        """Both branches of ``if KEY in ckpt``, each from the same state; what they set differently becomes a
        :class:`Conditional` (a branch that only raises: :data:`RAISES`). A branch that does more than set names and
        load the weights (or that the reader cannot follow) leaves the statement unread."""
        before = {id(m): m.load_state() for m in self.models}
        outcomes: list[tuple[dict[str, Any], dict[int, tuple[Any, ...]]] | None] = []
        for body in (held, absent):
            for m in self.models:
                m.restore(before[id(m)])
            if body and all(isinstance(s, ast.Raise) for s in body):
                outcomes.append(None)
                continue
            sub = _Reader(self.kit, dict(self.env))
            sub.models, sub.load_unknown = list(self.models), self.load_unknown
            sub.run(body)
            if sub.missing or sub.notes or sub.models != self.models or sub.load_unknown != self.load_unknown:
                for m in self.models:
                    m.restore(before[id(m)])
                return False
            outcomes.append((sub.env, {id(m): m.load_state() for m in self.models}))
        for m in self.models:
            m.restore(before[id(m)])
        if outcomes[0] is None and outcomes[1] is None:
            return False
        merged = self._merged_models(test, before, outcomes[0], outcomes[1])
        if merged is None:
            return False
        for m in self.models:
            m.restore(merged[id(m)])
        self.env.update(_merged_names(test, node, self.env, outcomes[0], outcomes[1]))
        return True

    def _merged_models(self, test: KeyTest, before: dict[int, tuple[Any, ...]], held: Any,
                       absent: Any) -> dict[int, tuple[Any, ...]] | None:
        """Each network's loading after the ``if``: the same in both branches, or one load per branch whose state
        dicts differ (a :class:`Conditional`); None: anything else."""
        merged = {}
        for m in self.models:
            states = [None if o is None else o[1][id(m)] for o in (held, absent)]
            known = [s for s in states if s is not None]
            if all(s == known[0] for s in known) and (len(known) == 2 or known[0] == before[id(m)]):
                merged[id(m)] = known[0]
                continue
            start = len(before[id(m)][1])
            loads = [None if s is None else s[1][start:] for s in states]
            once = all(x is None or len(x) == 1 for x in loads)
            rest = {s[2:] for s in known}  # strict, post-load steps, load method: one for both
            if not once or len(rest) != 1 or any(s[4] is not None for s in known):
                return None
            outcomes = [RAISES if s is None else s[0] for s in states]
            first = next(x for x in loads if x is not None)
            lines = before[id(m)][1] + tuple(first)
            merged[id(m)] = (Conditional(test, outcomes[0], outcomes[1]), lines, *known[0][2:])
        return merged

    def _opaque_block(self, node: ast.stmt) -> None:
        """A statement the reader does not step into: what it sets becomes unknown, and it is listed."""
        kind = type(node).__name__.lower().replace("asyncfor", "for").replace("asyncwith", "with")
        reason = f"the `{kind}` statement at line {node.lineno} (`{_src(node, 50)}`), which the reader does not follow"
        for sub in ast.walk(node):
            stored = isinstance(getattr(sub, "ctx", None), ast.Store)
            base = _subscript_base(sub) if stored and isinstance(sub, (ast.Subscript, ast.Attribute)) else sub
            if stored and isinstance(base, ast.Name):
                self.env[base.id] = Unknown(f"`{base.id}` is set in {reason}")
            if isinstance(sub, ast.Attribute) and sub.attr == "load_state_dict":
                self.load_unknown = f"loaded inside the `{kind}` statement at line {node.lineno}"
        raise Unreadable(reason)

    def _each_module_call(self, node: ast.For) -> bool:
        """``for m in model.modules(): if hasattr(m, 'NAME'): m.NAME()`` -> post_load ``each:NAME``."""
        it, target = node.iter, node.target
        if node.orelse or not isinstance(it, ast.Call) or it.args or it.keywords or not isinstance(it.func, ast.Attribute):
            return False
        if it.func.attr == "named_modules" and isinstance(target, ast.Tuple) and len(target.elts) == 2:
            target = target.elts[1]
        elif it.func.attr != "modules":
            return False
        model = self._try(it.func.value)
        if not isinstance(target, ast.Name) or not isinstance(model, Model) or len(node.body) != 1:
            return False
        guard = node.body[0]
        if not (isinstance(guard, ast.If) and not guard.orelse and len(guard.body) == 1 and isinstance(guard.test, ast.Call)
                and isinstance(guard.test.func, ast.Name) and guard.test.func.id == "hasattr"
                and len(guard.test.args) == 2 and isinstance(guard.test.args[0], ast.Name)
                and guard.test.args[0].id == target.id and isinstance(guard.test.args[1], ast.Constant)
                and isinstance(guard.test.args[1].value, str)):
            return False
        method = guard.test.args[1].value
        call = guard.body[0].value if isinstance(guard.body[0], ast.Expr) else None
        direct = (isinstance(call, ast.Call) and not call.args and not call.keywords and isinstance(call.func, ast.Attribute)
                  and call.func.attr == method and isinstance(call.func.value, ast.Name) and call.func.value.id == target.id)
        if not direct:
            return False
        if not model.load_lines and self.load_unknown is None:
            raise Unreadable(f"the `{method}` loop at line {node.lineno} runs before the weights are loaded; a spec's "
                             f"post_load runs after loading")
        model.post_load.append((f"each:{method}", node.lineno))
        return True


_UNSET = Marker("not set")


def _same(a: Any, b: Any) -> bool:
    return a is b or (type(a) is type(b) and not isinstance(a, Model) and a == b)


def _merged_names(test: KeyTest, node: ast.If, env: dict[str, Any], held: Any, absent: Any) -> dict[str, Any]:
    """The names after ``if KEY in ckpt``, from each branch's names (None: the branch raises): the same value in
    both, or a :class:`Conditional` of the two."""
    envs = [None if o is None else o[0] for o in (held, absent)]
    merged: dict[str, Any] = {}
    for name in set().union(*(e for e in envs if e is not None)):
        values = [RAISES if e is None else e.get(name, _UNSET) for e in envs]
        kept = [v for v in values if v is not RAISES]
        if any(v is _UNSET for v in values):
            merged[name] = Unknown(f"`{name}` is set in one branch only of the `if` at line {node.lineno}")
        elif all(_same(v, kept[0]) for v in kept) and (len(kept) == 2 or (name in env and _same(env[name], kept[0]))):
            merged[name] = kept[0]
        elif any(isinstance(v, Unknown) for v in kept):
            merged[name] = next(v for v in kept if isinstance(v, Unknown))
        else:
            merged[name] = Conditional(test, values[0], values[1])
    return merged


def _choice(value: Any) -> tuple[str | None, tuple[tuple[Any, ...], ...]]:
    """The weights file of a state_dict the checkpoint's contents choose, and its keys in the order the kit's code
    tries them (``if 'params_ema' in loadnet: ... else: ...``): each branch must take the key it tests."""
    if value is RAISES:
        return None, ()
    if isinstance(value, Checkpoint):
        return value.path, (value.keys,)
    if not isinstance(value, Conditional):
        raise Unreadable(f"a choice between {type(value).__name__} values, not keys of the checkpoint")
    test = value.test
    if not _same(value.then, Checkpoint(test.checkpoint.path, test.checkpoint.keys + (test.key,))):
        raise Unreadable(f"where the checkpoint holds {test.key!r}, the code takes something else than that key, "
                         f"which a list state_key (the first key held) cannot say")
    path, rest = _choice(value.orelse)
    if path not in (None, test.checkpoint.path):
        raise Unreadable(f"the code chooses between two weights files ({test.checkpoint.path}, {path})")
    keys = (value.then.keys,) + rest
    return test.checkpoint.path, tuple(dict.fromkeys(keys))


def _weights_suffix(path: str) -> bool:
    return posixpath.splitext(path.lower())[1] in WEIGHTS_SUFFIXES


def _dotted(node: ast.AST) -> str | None:
    """``a.b.c`` of a chain of names (None for anything else)."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return ".".join([node.id, *reversed(parts)]) if isinstance(node, ast.Name) else None


def _is_device(value: Any) -> bool:
    return value is DEVICE or (isinstance(value, str) and (value in ("cpu", "cuda") or value.startswith("cuda:")))


def _load_ctx(node: ast.expr) -> ast.expr:
    copy = ast.parse(ast.unparse(node), mode="eval").body
    return ast.copy_location(copy, node)


def _subscript_base(node: ast.AST) -> ast.AST:
    """``torch.load(p)`` of ``torch.load(p)[k]['x']`` / ``ckpt.get(k)``: the object the keys are taken from."""
    while True:
        if isinstance(node, ast.Subscript):
            node = node.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
            node = node.func.value
        elif isinstance(node, ast.Attribute):
            node = node.value
        else:
            return node


# --- from a branch's values to spec keys ----------------------------------------------------------


def _branch(kit: _Kit, case: _Case, model_id: int, pre_env: dict[str, Any]) -> Branch:
    branch = Branch(model_id, case.line)
    if model_id < 0:
        branch.missing.append(Missing("team", f"model id {model_id} is negative: a spec's team numbers are 0 or more "
                                              f"(a baseline such as 2022's IMDN is `entry = \"IMDN\"`)"))
        return branch
    if all(isinstance(s, ast.Pass) for s in case.body):
        branch.missing.append(Missing(None, "the branch is empty (`pass`): the kit builds no network for it"))
        return branch
    reader = _Reader(kit, {**pre_env, kit.id_var: model_id})
    reader.run(case.body)
    branch.missing.extend(reader.missing)
    branch.notes.extend(reader.notes)
    model_var, name_var, range_var = kit.returns[:3]
    _results_key(branch, reader, name_var)
    _data_range(branch, reader, range_var)
    _network(branch, reader, model_var)
    _tile(branch, reader)
    if not branch.missing and not branch.complete:
        branch.missing.append(Missing(None, "the branch does not say " + ", ".join(branch.open_keys())))
    branch.missing = list(dict.fromkeys(branch.missing))  # one cause met twice (a name read in two places) is said once
    return branch


def _tile(branch: Branch, reader: _Reader) -> None:
    """A tile other than None (2022's ``tile = 256 if model_id == 2 else None``): the spec has no key for it."""
    if len(reader.kit.returns) < 4:
        return
    if reader.kit.tile_after is not None:
        try:
            tile = reader.value(reader.kit.tile_after)
        except Unreadable as exc:
            branch.missing.append(Missing(None, f"the tile set after the chain: {exc}"))
            return
    else:
        tile = reader.env.get(reader.kit.returns[3])
    if tile is not None and not isinstance(tile, Unknown):
        branch.missing.append(Missing(None, f"tile = {tile!r}: a spec has no tile; measure this team with --tile {tile}"))


def _known(reader: _Reader, var: str, what: str) -> tuple[Any, str | None]:
    value = reader.env.get(var, Unknown(f"`{var}` ({what}) is not set in the branch"))
    return (None, value.reason) if isinstance(value, Unknown) else (value, None)


def _results_key(branch: Branch, reader: _Reader, var: str) -> None:
    key, why = _known(reader, var, "the results key")
    if why is not None or not isinstance(key, str):
        branch.missing.append(Missing("name", why or f"`{var}` = {key!r} is not a string"))
        return
    match = RESULTS_KEY_RE.match(key)
    if match is None or f"{int(match[1]):02}_{match[2]}" != key:
        branch.missing.append(Missing("name", f"the results key {key!r} is not NN_Name (team number, name), the form "
                                              f"`f\"{{team:02}}_{{name}}\"` a spec writes"))
        return
    branch.keys["team"], branch.keys["name"] = int(match[1]), match[2]
    if safe_name(match[2]) != match[2]:
        branch.notes.append(f"the results key will be {int(match[1]):02}_{safe_name(match[2])}: the name {match[2]!r} "
                            f"spelled safely (kept as given for display)")
    if int(match[1]) != branch.model_id:
        branch.notes.append(f"the results key {key!r} names team {int(match[1])}, not the model id {branch.model_id}")


def _data_range(branch: Branch, reader: _Reader, var: str) -> None:
    value, why = _known(reader, var, "the data range")
    if why is None and isinstance(value, (int, float)) and not isinstance(value, bool) \
            and math.isfinite(value) and value > 0:
        branch.keys["data_range"] = float(value)
    else:
        branch.missing.append(Missing("data_range", why or f"`{var}` = {value!r} is not a positive number"))


def _network(branch: Branch, reader: _Reader, var: str) -> None:
    if len(reader.models) > 1:
        lines = ", ".join(str(m.line) for m in reader.models)
        branch.missing.append(Missing(None, f"{len(reader.models)} networks are built (lines {lines}); a spec describes one"))
        return
    final = reader.env.get(var)
    if not reader.models:
        if isinstance(final, Unknown):
            branch.missing.append(Missing(None, f"the network: {final.reason}"))
        elif not branch.missing:
            branch.missing.append(Missing(None, "no network is built in the branch"))
        return
    model = reader.models[0]
    if final is not model:
        why = final.reason if isinstance(final, Unknown) else f"`{var}` is not the network built at line {model.line}"
        branch.missing.append(Missing(None, f"what {FUNCTION}() returns: {why}"))
    branch.keys["model_file"], branch.keys["class_name"] = model.file, model.cls.attr
    if not model.file.is_file():
        branch.absent.append(model.file)
    args, kwargs = _keyword_nones(branch, reader.kit, model)
    for key, value in (("init_args", list(args)), ("init_kwargs", {k: v for k, v in kwargs.items() if v is not None})):
        if value:
            problem = _toml_problem(value)
            if problem:
                branch.missing.append(Missing(key, f"the constructor's {problem} (line {model.line}); a spec holds "
                                                   f"TOML values only (no null but a keyword argument's, init_none): "
                                                   f"give this team as flags (--{key} takes JSON, null too) or "
                                                   f"complete the table"))
            else:
                branch.keys[key] = _as_lists(value)
                if _has_tuple(value):
                    branch.notes.append(f"{key}: tuples of the kit are written as TOML lists (the class receives lists)")
    none = [k for k, v in kwargs.items() if v is None]
    if none:
        branch.keys["init_none"] = none
    _weights(branch, reader, model)


def _keyword_nones(branch: Branch, kit: _Kit, model: Model) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The constructor's arguments with a positional ``None`` given by keyword -- it and every positional argument
    after it, named by the signature in the team's file -- as a spec says ``None`` only by naming the keyword
    (``init_none``). Unchanged where the signature cannot be read (the ``None`` is then listed as unreadable)."""
    first = next((i for i, a in enumerate(model.args) if a is None), None)
    if first is None:
        return model.args, model.kwargs
    names = _parameter_names(kit, model)
    later = names[first:len(model.args)] if names is not None else []
    if names is None or len(names) < len(model.args) or any(n in model.kwargs for n in later):
        return model.args, model.kwargs
    branch.notes.append(f"init_args: the arguments from position {first + 1} on are given by keyword "
                        f"({', '.join(later)}, as {model.cls.attr}'s signature in {model.file.name} names them), so "
                        f"that None can be said (init_none)")
    return model.args[:first], {**dict(zip(later, model.args[first:])), **model.kwargs}


def _parameter_names(kit: _Kit, model: Model) -> list[str] | None:
    """The parameters of ``model``'s class (its ``__init__``, after ``self``) or factory function that can be given
    by keyword, in order; None where the team's file does not say them plainly (absent, inherited, ``*args``,
    positional-only)."""
    try:
        tree = parse(model.file) if model.file.is_file() else None
    except KitError:
        return None
    found = next((n for n in (tree.body if tree else ()) if isinstance(n, (ast.ClassDef, ast.FunctionDef))
                  and n.name == model.cls.attr), None)
    if isinstance(found, ast.ClassDef):
        init = next((n for n in found.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
        arguments = None if init is None else init.args
        skip = 1
    else:
        arguments, skip = (found.args if found is not None else None), 0
    if arguments is None or arguments.posonlyargs or arguments.vararg is not None:
        return None
    return [a.arg for a in arguments.args[skip:]]


def _weights(branch: Branch, reader: _Reader, model: Model) -> None:
    if reader.load_unknown is not None:
        branch.missing.append(Missing("weights", reader.load_unknown))
        return
    if len(model.load_lines) > 1:
        branch.missing.append(Missing("weights", f"the weights are loaded {len(model.load_lines)} times (lines "
                                                 f"{', '.join(map(str, model.load_lines))}); a spec loads one file"))
        return
    if model.checkpoint is None:
        if not model.load_lines:
            branch.missing.append(Missing("weights", "no model.load_state_dict(torch.load(...)) in the branch"))
        return
    file, choice = ((model.checkpoint.path, (model.checkpoint.keys,)) if isinstance(model.checkpoint, Checkpoint)
                    else _choice(model.checkpoint))
    path = Path(str(file))
    branch.keys["weights"] = path if path.is_absolute() else Path(os.path.normpath(reader.kit.folder / path))
    if not branch.keys["weights"].is_file():
        branch.absent.append(branch.keys["weights"])
    if model.load_method is not None:
        branch.keys["load_method"] = model.load_method
        branch.notes.append(f"the team's own model.{model.load_method}(path) loads the weights (line "
                            f"{model.load_lines[0]}): the kit calls it, and how strictly it loads is the team's")
    else:
        _state_key(branch, choice, model.load_lines[0])
    if model.strict is False:
        branch.keys["strict"] = False
    if len(model.post_load) > 1:
        calls = ", ".join(f"{n} (line {line})" for n, line in model.post_load)
        branch.missing.append(Missing("post_load", f"several post-load steps ({calls}); a spec has one"))
    elif model.post_load:
        branch.keys["post_load"] = model.post_load[0][0]


def _state_key(branch: Branch, choice: tuple[tuple[Any, ...], ...], line: int) -> None:
    """``state_key``: one dotted key, or -- where the team's code chooses by what the checkpoint holds -- the keys in
    the order it tries them (``""``: the file itself)."""
    for keys in choice:
        if not all(isinstance(k, str) and k and "." not in k for k in keys):
            branch.missing.append(Missing("state_key", f"the checkpoint is taken at {''.join(f'[{k!r}]' for k in keys)}"
                                                       f", which a dotted state_key cannot name"))
            return
    dotted = [".".join(keys) for keys in choice]
    if len(dotted) > 1:
        branch.keys["state_key"] = dotted
        shown = ", ".join(repr(k) if k else "the file itself" for k in dotted)
        branch.notes.append(f"state_key: the branch chooses by what the checkpoint holds (line {line}): the first of "
                            f"{shown} it holds, decided when the kit opens it and said in its load report")
    elif dotted[0]:
        branch.keys["state_key"] = dotted[0]


def _has_tuple(value: Any) -> bool:
    if isinstance(value, tuple):
        return True
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return any(_has_tuple(v) for v in items)


def _as_lists(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_as_lists(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_lists(v) for k, v in value.items()}
    return value


def _toml_problem(value: Any, where: str = "") -> str | None:
    """Why ``value`` has no TOML form (None: it has one); ``where`` names the keyword it is under."""
    if isinstance(value, dict):
        for k, v in value.items():
            problem = f"keyword {k!r} is not a string" if not isinstance(k, str) else _toml_problem(v, where or k)
            if problem:
                return problem
        return None
    if isinstance(value, (list, tuple)):
        return next((p for p in (_toml_problem(v, where) for v in value) if p), None)
    if isinstance(value, (str, int, float, bool)):
        return None
    shown = value.what if isinstance(value, Marker) else value.qualname if isinstance(value, Imported) else (
        repr(value) if _is_plain(value) else f"a {type(value).__name__}")
    return f"{where + ' = ' if where else 'argument '}{shown} has no TOML form"


def _year(tree: ast.Module, given: int | None) -> tuple[int | None, str]:
    fvcore = any(isinstance(n, ast.Import) and any(a.name.split(".")[0] == "fvcore" for a in n.names)
                 or isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] == "fvcore" for n in ast.walk(tree))
    named = sorted({int(m) for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
                    for m in NTIRE_YEAR_RE.findall(n.value)})
    style = "imports fvcore (the 2024/2025 kits' FLOPs)" if fvcore else "does not import fvcore (the 2022/2023 style)"
    if len(named) == 1 and named[0] in YEARS and (named[0] >= 2024) == fvcore:
        inferred, why = named[0], f"inferred: the file names NTIRE{named[0]} and {style}"
    elif not named:
        inferred, why = None, f"not inferred: the file {style} but names no NTIRE year"
    else:
        inferred, why = None, f"not inferred: the file names {', '.join(f'NTIRE{y}' for y in named)} and {style}"
    if given is not None:
        clash = f"; the file itself suggests {inferred}" if inferred not in (None, given) else ""
        return given, f"from --year{clash}"
    return inferred, why


def read_select_model(path: Path, teams: Sequence[int] | None = None, year: int | None = None) -> KitReading:
    """Parse ``path`` (never import or run it) and read each model id of its ``select_model``.

    ``teams`` keeps only those model ids (each must be in the file); ``year`` overrides the inferred year.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise KitError(f"--from_select_model {path}: no such file (give the official kit's test_demo.py)")
    tree = parse(path)
    func = _find_function(tree, path)
    id_var = _id_var(func)
    cases, pre, post, problems = _cases(func, id_var)
    returns = _returns(post)
    if returns is None:
        problems.append(f"{FUNCTION}() does not end with `return model, name, data_range, ...`: its variables were "
                        f"taken to be {', '.join(DEFAULT_RETURN[:3])}")
    folder = Path(os.path.abspath(path)).parent
    returns = returns or DEFAULT_RETURN
    tile_var = returns[3] if len(returns) > 3 else None
    tile_after = next((s.value for s in reversed(post) if isinstance(s, ast.Assign)
                       and any(isinstance(t, ast.Name) and t.id == tile_var for t in s.targets)), None)
    kit = _Kit(path, folder, {}, id_var, returns, tile_after)
    _module_env(tree, kit)
    params = {a.arg: Unknown(f"`{a.arg}` is a parameter of {FUNCTION}()") for a in func.args.args}
    params.update({a.arg: m for a, m in zip(func.args.args, (ARGS, DEVICE))})
    setup = _Reader(kit, {**kit.env, **params})
    setup.run(s for s in pre if not (isinstance(s, ast.Assign) and _mentions_id(s, id_var)))
    wanted = None if teams is None else set(teams)
    if wanted is not None:
        present = {i for c in cases for i in c.ids}
        absent = sorted(wanted - present)
        if absent:
            raise KitError(f"--teams {' '.join(map(str, absent))}: not a model id of {path.name}'s {FUNCTION} "
                           f"(it has: {', '.join(map(str, sorted(present)))})")
    branches: list[Branch] = []
    first: dict[int, tuple[_Case, Branch]] = {}
    for case in cases:
        for model_id in case.ids:
            if wanted is not None and model_id not in wanted:
                continue
            if model_id in first:
                earlier, branch = first[model_id]
                if earlier.chain == case.chain:  # an elif chain takes the first match
                    branch.notes.append(f"model id {model_id} is selected again at line {case.line}, a branch never "
                                        f"reached")
                else:  # separate if statements both run, the later one over the earlier
                    branch.missing.append(Missing(None, f"model id {model_id} is also selected at line {case.line} by "
                                                        f"another if statement, which runs after this one"))
                continue
            branch = _branch(kit, case, model_id, setup.env)
            first[model_id] = (case, branch)
            branches.append(branch)
    _unique_teams(branches)
    chosen_year, why = _year(tree, year)
    return KitReading(path, tuple(branches), chosen_year, why, tuple(problems))


def _unique_teams(branches: Sequence[Branch]) -> None:
    seen: dict[int, Branch] = {}
    for b in branches:
        team = b.keys.get("team")
        if team is None:
            continue
        if team in seen:
            b.missing.append(Missing("team", f"team {team} is also {seen[team].where}'s: a spec's team numbers are "
                                             f"unique (its results would overwrite each other)"))
        else:
            seen[team] = b


# --- TOML -----------------------------------------------------------------------------------------

def _spec_path(path: Path, base: Path | None) -> str:
    """``path`` as the spec writes it: relative to the spec's folder, or absolute when there is none."""
    if base is None:
        return Path(path).as_posix()
    try:
        return Path(os.path.relpath(path, base)).as_posix()
    except ValueError:  # another drive (Windows)
        return Path(path).as_posix()


def _toml_text(value: Any, base: Path | None) -> str:
    return toml_value(_spec_path(value, base) if isinstance(value, Path) else value)


def _table_lines(branch: Branch, base: Path | None) -> list[str]:
    """``key = value`` for every key read, in spec order (those still open are left to their FILL IN lines)."""
    open_keys = set(branch.open_keys())
    return [f"{key} = {_toml_text(branch.keys[key], base)}" for key in SPEC_KEYS
            if key in branch.keys and key not in open_keys]


def render_spec(reading: KitReading, base: Path | None, command: str = "") -> str:
    """The spec's text: every branch read completely as a ``[[team]]`` table, the others commented out with
    what to fill in. Paths are written relative to ``base`` (the spec's folder; None: absolute)."""
    done = sum(b.complete for b in reading.branches)
    head = [f"# Submission spec read from {FUNCTION}() of {_spec_path(Path(os.path.abspath(reading.path)), base)} "
            f"(parsed, not run){f' by `{command}`' if command else ''}.",
            f"# {len(reading.branches)} model ids: {done} read completely, {len(reading.branches) - done} to complete "
            f"by hand (commented out below: fill in each FILL IN line, then uncomment the table)."]
    head += [f"# NOT READ: {p}" for p in reading.problems]
    if reading.year is not None:
        head += ["", f"year = {reading.year}  # {reading.year_reason}"]
    else:
        head += [f"# year: {reading.year_reason}; add `year = ...` (2022-2025) for that challenge's conventions"]
    body: list[str] = []
    for b in reading.branches:
        body.append("")
        notes = [f"# note: {n}" for n in b.notes]
        if b.absent:
            notes.append(f"# note: not there yet: {', '.join(_spec_path(f, base) for f in b.absent)}")
        if b.complete:
            body += notes + [f"[[team]]  # {b.where}", *_table_lines(b, base)]
            continue
        body.append(f"# {b.where}: to complete by hand --")
        body += [f"#   {m.key + ': ' if m.key else ''}{m.reason}" for m in b.missing] + notes
        body += ["# [[team]]", *(f"# {line}" for line in _table_lines(b, base))]
        body += [f"# {key} =   # FILL IN" + (f" (read so far: {_toml_text(b.keys[key], base)})" if key in b.keys else "")
                 for key in b.open_keys()]
    return "\n".join(head + body) + "\n"


def _checked_text(reading: KitReading, base: Path | None, command: str, stage: Path) -> str:
    """The spec's text, written to ``stage`` and loaded back with :func:`esrkit.spec.load_spec_file`: a table it sets
    aside (its schema refuses a value, e.g. a name with brackets) becomes one more branch to complete by hand."""
    text = _staged(reading, base, command, stage)
    invalid = _refused_tables(reading, stage, text)
    if invalid:
        active = [b for b in reading.branches if b.complete]
        for table in invalid:
            message = re.sub(rf"^{re.escape(str(stage))} \[\[team\]\] #\d+: ", "", table.message)
            key = next((k for k in SPEC_KEYS if re.search(rf"\b{k} = ", message)), None)
            active[table.position - 1].missing.append(Missing(key, f"the spec refuses it: {message}"))
        text = _staged(reading, base, command, stage)
        again = _refused_tables(reading, stage, text)
        if again:
            raise KitError(f"the spec made from {reading.path.name} does not load ({again[0].message}); nothing was "
                           f"written: please report this with the kit file")
    return text


def _staged(reading: KitReading, base: Path | None, command: str, stage: Path) -> str:
    text = render_spec(reading, base, command)
    stage.write_text(text, encoding="utf-8")
    return text


def _refused_tables(reading: KitReading, stage: Path, text: str) -> tuple[Any, ...]:
    """The ``[[team]]`` tables of the staged spec that :func:`esrkit.spec.load_spec_file` sets aside."""
    if not any(line.startswith("[[team]]") for line in text.splitlines()):
        return ()  # nothing complete (yet): the file is a listing to complete, with nothing to load
    try:
        return load_spec_file(stage).invalid
    except KitError as exc:
        raise KitError(f"the spec made from {reading.path.name} does not load ({exc}); nothing was written: please "
                       f"report this with the kit file") from None


def spec_text(reading: KitReading, out: Path | None, force: bool = False, command: str = "") -> str:
    """The spec of ``reading``, checked to load; written atomically to ``out`` (refused if it exists, unless
    ``force``), or only returned when ``out`` is None (paths then absolute). Nothing is replaced on an error."""
    if out is None:
        with tempfile.TemporaryDirectory(prefix="esrkit-spec-") as folder:
            return _checked_text(reading, None, command, Path(folder) / "spec.toml")
    out = Path(out).expanduser()
    _check_out(out, force)
    with atomic_path(out) as tmp:
        return _checked_text(reading, Path(os.path.abspath(out)).parent, command, tmp)


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not force:
        raise KitError(f"--out {out} exists: pass --force to replace it, or choose another --out")
    check_writable_file(out, "--out")


def describe(reading: KitReading) -> list[str]:
    """The command's listing: one line per model id not read completely, with each reason; notes; absent files."""
    named = sum(isinstance(b.keys.get(k), Path) for b in reading.branches for k in ("model_file", "weights"))
    absent = sum(len(b.absent) for b in reading.branches)
    lines = []
    for b in reading.branches:
        if not b.complete:
            reasons = "; ".join(f"{m.key + ': ' if m.key else ''}{m.reason}" for m in b.missing)
            lines.append(f"  {b.where}: fill in {', '.join(b.open_keys()) or 'the table'} -- {reasons}")
        lines += [f"  {b.where}: note: {n}" for n in b.notes]
        if b.absent and absent < named:
            lines.append(f"  {b.where}: not there yet: {', '.join(map(str, b.absent))}")
    if absent and absent == named:
        lines.append(f"  none of the {named} files the spec names is there yet (models/ and model_zoo/ beside "
                     f"{reading.path.name}): put the teams' files there before measuring")
    return lines + [f"  not read: {p}" for p in reading.problems]


# --- the command ----------------------------------------------------------------------------------


def add_spec_command(subparsers: Any) -> None:
    """Add ``spec`` to ``python -m esrkit.submission``'s subcommands (run it with :func:`run_spec_command`)."""
    p = subparsers.add_parser(
        "spec", help="organisers: write a submission spec (TOML) from an official kit's select_model, read without "
                     "running it",
        description="Read select_model() of an official NTIRE ESR kit's test_demo.py (parsed with ast, never "
                    "imported or run) and write its teams as a submission spec: one [[team]] table per model id; "
                    "what cannot be read is listed per model id and left as a commented-out table to complete. "
                    "Exit 0: every branch read; 1: some to complete by hand; 2: a usage error.")
    p.add_argument("--from_select_model", type=Path, required=True, metavar="TEST_DEMO_PY",
                   help="the kit's test_demo.py (its models/ and model_zoo/ are beside it)")
    p.add_argument("--out", type=Path, default=None,
                   help="the spec file to write (paths in it relative to its folder); default: print it on stdout, "
                        "with absolute paths")
    p.add_argument("--year", type=int, default=None, choices=sorted(YEARS),
                   help="the challenge year the spec declares (default: inferred from the file where it can be)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--teams", nargs="+", type=int, default=None, metavar="N", help="only these model ids")


def run_spec_command(args: argparse.Namespace) -> int:
    """The ``spec`` command: 0 when every branch was read, 1 when some are left to complete (KitError: usage)."""
    if args.out is not None:
        _check_out(args.out, args.force)  # before any reading
    reading = read_select_model(args.from_select_model, args.teams, args.year)
    text = spec_text(reading, args.out, args.force,
                     command=f"python -m esrkit.submission spec --from_select_model {args.from_select_model}")
    done = sum(b.complete for b in reading.branches)
    summary = [f"read {FUNCTION}() of {reading.path}: {len(reading.branches)} model ids, {done} read completely, "
               f"{len(reading.branches) - done} to complete by hand; year "
               f"{reading.year if reading.year is not None else 'left out'} ({reading.year_reason})", *describe(reading)]
    if args.out is None:
        sys.stdout.write(text)
        print("\n".join(summary), file=sys.stderr)
    else:
        tail = "" if reading.complete else " (the tables to complete are commented out in it)"
        print("\n".join([*summary, f"wrote {args.out}{tail}"]))
    return EXIT_OK if reading.complete else EXIT_FAILED
