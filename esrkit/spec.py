"""The submission spec: what a team's instructions say, turned into an :class:`~esrkit.entry.Entry`.

An organiser builds each team's network as the team says: a class, its constructor arguments, the
weights file, where the state_dict sits in it, strict or not, the data range, a method to call
after loading. The kit takes the same facts, for one team as command-line flags or for many as a
TOML file with one table per team (paths relative to the file)::

    year = 2025                       # optional: which challenge's conventions (FLOPs counter, keys)

    [[team]]
    team = 17
    name = "FSANet"                   # default: Name of teamNN_Name.py
    model_file = "models/team17_FSANet_arch.py"
    class_name = "FSANet"
    init_kwargs = { fea_ch = 56, conv = "EPartialBSConvU", rgb_mean = [0.4488, 0.4371, 0.4040], channel_reduction_rate = 2, bias = false }
    weights = "model_zoo/team17_FSANet.pth"
    state_key = "params"
    data_range = 1.0
    post_load = "each:switch_deploy"  # or a method of the network itself, e.g. "switch_to_deploy"

    [[team]]                          # a registered entry of the kit, e.g. the year's baseline
    entry = "EFDN"
    weights = "../weights/efdn_ntire2025_team00.pth"

Other keys: ``init_args`` (a list), ``init_none`` (keyword arguments passed as ``None``: TOML has no null, so
``init_none = ["head_dim"]`` is ``head_dim=None``), ``strict`` (default true), ``scale`` (default 4),
``load_method`` (a method of the network that loads the weights file itself, as the team's code does:
``load_method = "load_weights"`` calls ``model.load_weights(path)`` instead of ``load_state_dict``).
``state_key`` may be a list: ``state_key = ["params_ema", "params"]`` takes the first key the checkpoint holds
(``""``, last, the file itself), as a team's ``if 'params_ema' in loadnet: ... else: ...`` does; the load
report says which was taken. ``name`` is any text: the results key spells it safely (:mod:`esrkit.names`).

Where the spec is silent the kit infers only what is safe: a file that registers one entry; the one
class that builds without arguments (or, of several, the one that loads the weights strictly); the
weights named like the file in ``model_zoo/``; a checkpoint that holds a single state_dict. Anything
else stops with one line listing the candidates and the flag (or key) that chooses.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from jsonschema import Draft202012Validator

from esrkit import arguments, teamfile
from esrkit.checkpoint import key_mismatch, read_checkpoint, select_state_dict, state_key_problem
from esrkit.entry import EACH_PREFIX, Entry
from esrkit.errors import KitError
from esrkit.options import Style, in_spec, named_as, option, style
from esrkit.registry import get_entry
from esrkit.tomltext import toml_value

DEFAULT_SCALE = 4
YEARS = (2022, 2023, 2024, 2025)


class SpecConflict(KitError):
    """The spec contradicts what the file or entry itself declares: a usage error, not a finding about the model."""


@dataclass(frozen=True)
class TeamSpec:
    """One team's instructions (see the module docstring); None means "not said"."""

    model_file: Path | None = None
    entry: str | None = None
    class_name: str | None = None
    init_args: tuple[Any, ...] | None = None
    init_kwargs: dict[str, Any] | None = None  # a value None: passed as None (init_none in a spec file)
    weights: Path | None = None
    state_key: str | tuple[str, ...] | None = None  # several: the first the checkpoint holds
    strict: bool | None = None
    data_range: float | None = None
    post_load: str | None = None
    load_method: str | None = None
    team: int | None = None
    name: str | None = None
    scale: int | None = None
    in_file: bool = False  # from a [[team]] table of a spec file (messages then name its keys, not flags)
    from_folder: bool = False  # a team of a folder (batch --models_dir): no spec, no flags (messages say how to write one)

    def __post_init__(self) -> None:  # lists (from TOML or JSON) held as tuples: a spec is a value
        for key in ("init_args", "state_key"):
            if isinstance(getattr(self, key), list):
                object.__setattr__(self, key, tuple(getattr(self, key)))

    @property
    def option_style(self) -> Style:
        """How messages name the settings that fix this team (:mod:`esrkit.options`)."""
        return "spec" if self.in_file else "folder" if self.from_folder else "flags"

    @property
    def label(self) -> str:
        """How messages name the team: ``team 07 (models/team07_NanoSR.py)``, or the entry."""
        where = self.model_file.name if self.model_file is not None else f"entry {self.entry}"
        return f"team {self.team:02d} ({where})" if self.team is not None else where


@dataclass(frozen=True)
class InvalidTable:
    """A ``[[team]]`` table of a spec file that cannot be used: where it is, its team number if readable, and why."""

    position: int  # 1-based, in file order
    team: int | None
    message: str

    @property
    def label(self) -> str:
        return f"team {self.team:02d} ([[team]] #{self.position})" if self.team is not None else f"[[team]] #{self.position}"


@dataclass(frozen=True)
class SpecFile:
    """A spec file: the challenge year it declares (if any) and its teams, in file order."""

    path: Path
    year: int | None
    teams: tuple[TeamSpec, ...]
    invalid: tuple[InvalidTable, ...] = ()

    def select(self, team: int | None) -> TeamSpec:
        """The one team a single-entry command runs: the only one, or the one numbered ``team``; an invalid table
        is an error only when it is the one selected."""
        if team is None:
            if len(self.teams) == 1 and not self.invalid:
                return self.teams[0]
            if not self.teams and len(self.invalid) == 1:
                raise KitError(self.invalid[0].message)
            count = len(self.teams) + len(self.invalid)
            raise KitError(f"{self.path} describes {count} teams ({numbers(self.teams)}): choose one with --team N")
        chosen = [t for t in self.teams if t.team == team]
        if chosen:
            return chosen[0]
        for table in self.invalid:
            if table.team == team:
                raise KitError(table.message)
        raise KitError(f"{self.path} has no team {team} (it has: {numbers(self.teams)}): fix --team")

    def all_valid(self) -> tuple[TeamSpec, ...]:
        """Every team, for a command that runs them all: the first invalid table is then an error naming it."""
        if self.invalid:
            more = f" (and {len(self.invalid) - 1} more invalid table(s))" if len(self.invalid) > 1 else ""
            raise KitError(f"{self.invalid[0].message}{more}")
        return self.teams


def numbers(teams: Sequence[TeamSpec]) -> str:
    return ", ".join(t.label for t in teams) or "none"


# --- reading a spec -------------------------------------------------------------------------------

_IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"
_ARGUMENT = "a string, number, boolean, list or table (a TOML date or time is no constructor argument)"
# What each key of a [[team]] table must be (JSON Schema, checked with jsonschema); ``description`` is what an
# error says the value must be.
TEAM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "team": {"type": "integer", "minimum": 0, "description": "the organisers' team number (an integer >= 0)"},
        "name": {"type": "string", "minLength": 1,
                 "description": "the model name of the results key NN_Name (any text: the key spells it safely)"},
        "entry": {"type": "string", "minLength": 1, "description": "a registered entry's name or id (a string)"},
        "model_file": {"type": "string", "minLength": 1, "description": "the team's model file (a path string)"},
        "class_name": {"type": "string", "pattern": _IDENTIFIER, "description": "a class name (a Python identifier)"},
        "init_args": {"type": "array", "items": {"$ref": "#/$defs/argument"},
                      "description": "a list of constructor arguments"},
        "init_kwargs": {"type": "object", "additionalProperties": {"$ref": "#/$defs/argument"},
                        "description": "a table of constructor keyword arguments"},
        "init_none": {"type": "array", "uniqueItems": True,
                      "items": {"type": "string", "pattern": _IDENTIFIER, "description": "a keyword argument's name"},
                      "description": "a list of keyword argument names passed as None (TOML has no null), "
                                     "e.g. [\"head_dim\"]"},
        "weights": {"type": "string", "minLength": 1, "description": "the weights file (a path string)"},
        "state_key": {"anyOf": [{"type": "string", "minLength": 1},
                                {"type": "array", "minItems": 1, "items": {"type": "string"}}],
                      "description": "where the state_dict sits in the checkpoint (a string, e.g. \"params\"; or a "
                                     "list, the first the checkpoint holds, e.g. [\"params_ema\", \"params\"])"},
        "strict": {"type": "boolean", "description": "true or false"},
        "data_range": {"type": "number", "exclusiveMinimum": 0, "description": "a positive number: 1.0 or 255"},
        "post_load": {"type": "string", "pattern": r"^(each:)?[A-Za-z_][A-Za-z0-9_]*$",
                      "description": "a method name (NAME, or each:NAME)"},
        "load_method": {"type": "string", "pattern": _IDENTIFIER,
                        "description": "a method name of the network that loads the weights file "
                                       "(e.g. \"load_weights\")"},
        "scale": {"type": "integer", "minimum": 1, "description": "a positive integer upscaling factor (4)"},
    },
    "additionalProperties": False,
    "$defs": {"argument": {"type": ["string", "number", "boolean", "array", "object"],
                           "items": {"$ref": "#/$defs/argument"}, "additionalProperties": {"$ref": "#/$defs/argument"},
                           "description": _ARGUMENT}},
}
SPEC_KEYS = tuple(TEAM_SCHEMA["properties"])
# The same facts as Python keywords (esrkit.entry_from_spec, a TeamSpec): constructor arguments may then be any
# Python value (None included: no init_none), paths Path objects, lists tuples.
KEYWORD_SCHEMA: dict[str, Any] = {
    **TEAM_SCHEMA,
    "properties": {
        **{k: v for k, v in TEAM_SCHEMA["properties"].items() if k != "init_none"},
        "init_args": {"type": "array", "description": "a list or tuple of constructor arguments"},
        "init_kwargs": {"type": "object", "description": "a dict of constructor keyword arguments"},
    },
}
FILE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "year": {"enum": list(YEARS), "description": f"one of {', '.join(map(str, YEARS))}"},
        "team": {"type": "array", "minItems": 1, "items": {"type": "object"},
                 "description": "a list of [[team]] tables, one per team"},
    },
    "required": ["team"],
    "additionalProperties": False,
}


def _schema_problem(instance: dict[str, Any], schema: dict[str, Any], where: str,
                    spelled: Callable[[str, Any], str] = lambda key, value: f"{key} = {toml_value(value)}") -> str | None:
    """The first way ``instance`` breaks ``schema``, as one sentence naming the key and what it must be (the key and
    value ``spelled`` as TOML, or as the caller wrote them)."""
    errors = sorted(Draft202012Validator(schema).iter_errors(instance), key=lambda e: (list(e.path), e.validator))
    if not errors:
        return None
    error = errors[0]
    if error.validator == "additionalProperties":
        unknown = sorted(set(instance) - set(schema["properties"]))
        return f"{where}: unknown key(s) {', '.join(unknown)}; it takes: {', '.join(schema['properties'])}"
    if error.validator == "required":
        missing = [k for k in schema["required"] if k not in instance]
        return f"{where}: no {', '.join(missing)}: add {' '.join(f'[[{k}]]' for k in missing)} tables, one per team"
    key = str(error.path[0])
    if len(error.path) > 1 and "description" in error.schema:  # a value inside a list or table, named by its path
        inner = key + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in list(error.path)[1:])
        return f"{where}: {spelled(inner, error.instance)} must be {error.schema['description']}"
    return f"{where}: {spelled(key, instance[key])} must be {schema['properties'][key]['description']}"


def team_spec(table: dict[str, Any], base: Path, where: str) -> TeamSpec:
    """One ``[[team]]`` table (paths relative to ``base``), every value checked against :data:`TEAM_SCHEMA`."""
    problem = _schema_problem(table, TEAM_SCHEMA, where)
    if problem:
        raise KitError(problem)
    values: dict[str, Any] = dict(table)
    for key in ("model_file", "weights"):
        if key in values:
            path = Path(values[key]).expanduser()
            values[key] = path if path.is_absolute() else base / path
    none = values.pop("init_none", None)
    if none:
        both = [k for k in none if k in values.get("init_kwargs", {})]
        if both:
            raise KitError(f"{where}: init_none names {', '.join(both)}, which init_kwargs sets too: give each "
                           f"keyword argument once")
        values["init_kwargs"] = {**values.get("init_kwargs", {}), **{k: None for k in none}}
    if "data_range" in values:
        values["data_range"] = float(values["data_range"])
    spec = TeamSpec(**values, in_file=True)
    check_spec(spec, where)
    return spec


def spec_from_keywords(facts: dict[str, Any], where: str) -> TeamSpec:
    """A spec from its facts as Python keywords (None: not said; paths str or Path; lists or tuples), each checked
    as a spec file's are (:data:`KEYWORD_SCHEMA`, :func:`check_spec`), messages naming them as keywords."""
    unknown = sorted(set(facts) - set(KEYWORD_SCHEMA["properties"]))
    if unknown:
        raise KitError(f"{where}: unknown keyword(s) {', '.join(unknown)}; it takes: "
                       f"{', '.join(KEYWORD_SCHEMA['properties'])}")
    given = {k: v for k, v in facts.items() if v is not None}
    as_json = {k: os.fspath(v) if k in ("model_file", "weights") and isinstance(v, os.PathLike) else
               str(v) if k == "entry" and type(v) is int else
               list(v) if isinstance(v, tuple) else v for k, v in given.items()}
    problem = _schema_problem(as_json, KEYWORD_SCHEMA, where, lambda key, value: f"{key}={arguments.shown(value)}")
    if problem:
        raise KitError(problem)
    values = {k: Path(as_json[k]).expanduser() if k in ("model_file", "weights") else
              as_json[k] if k == "entry" else v for k, v in given.items()}
    spec = TeamSpec(**values)
    check_spec(spec, where)
    return spec


def check_spec(spec: TeamSpec, where: str) -> None:
    """The combinations that cannot work, each named with its fix."""
    if (spec.model_file is None) == (spec.entry is None):
        raise KitError(f"{where}: give exactly one of model_file (a team's file) or entry (a registered entry)")
    if spec.entry is not None and (spec.class_name or spec.init_args is not None or spec.init_kwargs is not None):
        raise KitError(f"{where}: class_name / init_args / init_kwargs are for a team's model_file, not a registered entry")
    if spec.class_name is None and (spec.init_args or spec.init_kwargs):
        raise KitError(f"{where}: constructor arguments need the class they are for: add class_name")
    if spec.scale is not None and spec.scale < 1:
        raise KitError(f"{where}: scale {spec.scale} must be a positive upscaling factor (4 for the challenge)")
    if spec.data_range is not None and (not math.isfinite(spec.data_range) or spec.data_range <= 0):
        raise KitError(f"{where}: data_range {spec.data_range:g} must be positive (1.0 or 255)")
    if spec.post_load is not None and not spec.post_load.removeprefix(EACH_PREFIX).isidentifier():
        raise KitError(f"{where}: post_load {spec.post_load!r} is not a method name (NAME, or each:NAME)")
    if spec.load_method is not None and not spec.load_method.isidentifier():
        raise KitError(f"{where}: load_method {spec.load_method!r} is not a method name")
    if spec.load_method is not None and (spec.state_key is not None or spec.strict is not None):
        given = " and ".join(k for k, v in (("state_key", spec.state_key), ("strict", spec.strict)) if v is not None)
        raise KitError(f"{where}: with load_method the team's {spec.load_method}() reads the weights file itself "
                       f"(where the state_dict is, how strictly): drop {given}")
    if isinstance(spec.state_key, tuple):
        problem = state_key_problem(spec.state_key)
        if problem:
            raise KitError(f"{where}: state_key {toml_value(list(spec.state_key))}: {problem}")


def load_spec_file(path: Path) -> SpecFile:
    """Read and check a spec file (see the module docstring).

    A file that is not TOML, or not a spec at all, is an error. A ``[[team]]`` table that breaks the schema, or
    shares its team number with another, is kept aside in :attr:`SpecFile.invalid`: it is an error for the
    commands that select it, and none for those that select other teams.
    """
    path = arguments.path("load_spec_file", "path", path, f"a spec file ({arguments.PATH})")
    if not path.is_file():
        raise KitError(f"spec file not found: {path}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))  # a BOM (Windows editors) is no statement
    except (OSError, UnicodeDecodeError) as exc:
        raise KitError(f"cannot read the spec file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise KitError(f"{path} is not valid TOML ({exc}): fix it (see `python -m esrkit.submission batch --help`)") from None
    problem = _schema_problem(data, FILE_SCHEMA, str(path))
    if problem:
        raise KitError(problem)
    parsed: list[tuple[int, TeamSpec]] = []
    invalid: list[InvalidTable] = []
    for position, table in enumerate(data["team"], start=1):
        try:
            parsed.append((position, team_spec(table, path.parent, f"{path} [[team]] #{position}")))
        except KitError as exc:
            number = table.get("team")
            invalid.append(InvalidTable(position, number if type(number) is int else None, str(exc)))
    # Two tables with one team number cannot be told apart: both are set aside, with one message.
    numbers_seen = [spec.team for _, spec in parsed if spec.team is not None]
    for number in sorted({n for n in numbers_seen if numbers_seen.count(n) > 1}):
        positions = [position for position, spec in parsed if spec.team == number]
        invalid.append(InvalidTable(positions[0], number, f"{path}: team {number} appears in more than one [[team]] "
                                                          f"table (#{', #'.join(map(str, positions))}): give each team one"))
        parsed = [(position, spec) for position, spec in parsed if spec.team != number]
    teams = [spec for _, spec in parsed]
    return SpecFile(path, data.get("year"), tuple(teams), tuple(sorted(invalid, key=lambda t: t.position)))


def specs_from_folder(models_dir: Path) -> list[TeamSpec]:
    """One spec per ``teamNN_Name.py`` in ``models_dir``, everything else inferred."""
    models_dir = Path(models_dir).expanduser()
    if not models_dir.is_dir():
        raise KitError(f"--models_dir {models_dir} is not a folder of team files (models/teamNN_Name.py)")
    files = sorted(p for p in models_dir.iterdir() if teamfile.team_from_file_name(p) is not None)
    if not files:
        raise KitError(f"no teamNN_Name.py files in {models_dir}")
    return [TeamSpec(model_file=p, team=teamfile.team_from_file_name(p)[0], from_folder=True)  # type: ignore[index]
            for p in files]


# --- command-line flags ---------------------------------------------------------------------------


def add_team_arguments(p: argparse.ArgumentParser) -> None:
    """The flags that describe one team's file (the spec's keys), shared by every command that takes an entry."""
    g = p.add_argument_group("a team's model file (what its instructions say; see esrkit/spec.py)")
    g.add_argument("--model_file", type=Path, default=None, help="the team's models/teamNN_Name.py (imported by path)")
    g.add_argument("--class_name", default=None,
                   help="the network's class (default: inferred where safe: the one class that builds without "
                        "arguments, or the one that loads the weights strictly)")
    g.add_argument("--init_args", type=_json_list, default=None, help="constructor arguments as a JSON list, e.g. '[3, 3]'")
    g.add_argument("--init_kwargs", type=_json_object, default=None,
                   help='constructor keyword arguments as a JSON object, e.g. \'{"dim": 36, "bias": false}\'')
    g.add_argument("--state_key", nargs="+", default=None, metavar="KEY",
                   help="where the state_dict sits in the checkpoint, e.g. params or params_ema; several: the first "
                        "the checkpoint holds, as the team's code chooses (e.g. --state_key params_ema params)")
    g.add_argument("--non_strict", action="store_true", help="load with strict=False (as the team's instructions say)")
    g.add_argument("--data_range", type=float, default=None, help="1.0 or 255: what white is at the model's input/output")
    g.add_argument("--post_load", default=None,
                   help="method to call after loading (e.g. switch_to_deploy); each:NAME calls it on every submodule")
    g.add_argument("--load_method", default=None,
                   help="a method of the network that loads the weights file itself (e.g. load_weights): called with "
                        "the weights path instead of load_state_dict, as the team's code does")
    g.add_argument("--team", type=int, default=None,
                   help="the team number (results key NN_Name); with --spec, which team of the file")
    g.add_argument("--name", dest="team_name", default=None, help="the model name in the results key (default: from the file name)")
    g.add_argument("--scale", type=int, default=None, help=f"upscaling factor of a team's file (default {DEFAULT_SCALE})")
    g.add_argument("--spec", type=Path, default=None, help="a submission spec file (TOML, one [[team]] table per team)")


def _json_of(kind: type, what: str, example: str) -> Callable[[str], Any]:
    """An argparse type: the flag's text parsed as JSON, which must be a ``kind`` (a list or an object)."""

    def parse(text: str) -> Any:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise argparse.ArgumentTypeError(f"{text!r} is not JSON ({exc.msg}); e.g. '{example}'") from None
        if not isinstance(value, kind):
            raise argparse.ArgumentTypeError(f"{text!r} is not a JSON {what}; e.g. '{example}'")
        return tuple(value) if kind is list else value

    return parse


_json_list = _json_of(list, "list", "[3, 3]")
_json_object = _json_of(dict, "object", '{"dim": 36}')


TEAM_FLAGS = ("class_name", "init_args", "init_kwargs", "state_key", "data_range", "post_load", "load_method",
              "team_name", "scale")


def _state_key_flag(keys: Sequence[str] | str | None) -> str | tuple[str, ...] | None:
    """``--state_key K`` is one key; ``--state_key K1 K2`` the first the checkpoint holds."""
    if keys is None or isinstance(keys, str):
        return keys
    return keys[0] if len(keys) == 1 else tuple(keys)


def spec_from_flags(args: argparse.Namespace, model_id: str | None = None, weights: Path | None = None) -> TeamSpec:
    """The team the flags describe: ``--model_file`` (a team's file) or ``model_id`` (a registered entry)."""
    spec = TeamSpec(
        model_file=args.model_file, entry=None if args.model_file is not None else model_id,
        class_name=args.class_name, init_args=args.init_args, init_kwargs=args.init_kwargs, weights=weights,
        state_key=_state_key_flag(args.state_key), strict=False if args.non_strict else None,
        data_range=args.data_range, post_load=args.post_load, load_method=getattr(args, "load_method", None),
        team=args.team, name=args.team_name, scale=args.scale,
    )
    check_spec(spec, "command line")
    return spec


def given_team_flags(args: argparse.Namespace) -> list[str]:
    """The team-describing flags given on the command line (they conflict with --spec)."""
    flags = [f"--{'name' if k == 'team_name' else k}" for k in TEAM_FLAGS if getattr(args, k, None) is not None]
    return flags + (["--non_strict"] if getattr(args, "non_strict", False) else [])


# --- resolving a spec into an entry ----------------------------------------------------------------


def _refuse_contradictions(entry: Entry, spec: TeamSpec) -> None:
    """``--data_range`` / ``--scale`` that contradict what a registered entry declares are an error, not an override."""
    for flag, given, declared in (("data_range", spec.data_range, entry.data_range), ("scale", spec.scale, entry.scale)):
        if given is not None and declared is not None and float(given) != float(declared):
            raise SpecConflict(f"entry {entry.name} declares {flag} {declared:g} but {option(flag, f'{given:g}')} was "
                               f"given: drop {option(flag)} (it is for a file that does not declare it) or fix the entry")


def _from_registered(spec: TeamSpec) -> Entry:
    entry = get_entry(spec.entry)  # type: ignore[arg-type]
    _refuse_contradictions(entry, spec)
    return entry.replace(
        weights=spec.weights if spec.weights is not None else entry.weights,
        state_key=spec.state_key or entry.state_key,
        strict=entry.strict if spec.strict is None else spec.strict,
        post_load=spec.post_load or entry.post_load,
        load_method=spec.load_method or entry.load_method,
        team=spec.team if spec.team is not None else entry.team,
        name=spec.name or entry.name,
    )


def _signature_text(cls: type) -> str:
    try:
        return f"{cls.__name__}{inspect.signature(cls)}"
    except (TypeError, ValueError):
        return cls.__name__


def _fits_weights(entry: Entry, state: dict) -> bool:
    """Whether ``entry`` builds and ``state`` loads into it (strictly, unless the spec says otherwise)."""
    try:
        model = entry.build()
    except KitError:
        return False
    return key_mismatch(model, state, strict=entry.strict) is None


def _choose_class(module: teamfile.TeamModule, spec: TeamSpec, base: Entry, weights: Path | None) -> tuple[Entry, list[str]]:
    """The network class when the spec names none (see the module docstring)."""
    classes = module.classes()
    shown = "; ".join(_signature_text(c) for c in classes) or "none"
    buildable = [c for c in classes if teamfile.builds_without_arguments(c)]
    how = ("--class_name NAME [--init_args '[...]'] [--init_kwargs '{...}']" if style() == "flags" else
           in_spec('class_name = "NAME" [init_args = [...]] [init_kwargs = { ... }]'))
    if not buildable:
        raise KitError(f"{module.path.name} defines no network that builds without arguments (classes: {shown}): "
                       f"say which and how with {how}")
    if len(buildable) == 1:
        return base.replace(name=base.name or buildable[0].__name__, arch=buildable[0]), [
            f"class {buildable[0].__name__} inferred: the only nn.Module of {module.path.name} that builds without arguments"]
    if weights is None or base.load_method is not None:
        why = "no weights" if weights is None else f"weights only its {base.load_method}() reads"
        raise KitError(f"{module.path.name} defines {len(buildable)} networks that build without arguments "
                       f"({', '.join(c.__name__ for c in buildable)}) and {why} to tell them apart: choose with {how}")
    state, _ = select_state_dict(read_checkpoint(weights), base.state_key, source=str(weights))
    fitting = [c for c in buildable if _fits_weights(base.replace(arch=c), state)]
    if len(fitting) == 1:
        return base.replace(arch=fitting[0]), [
            f"class {fitting[0].__name__} inferred: of {', '.join(c.__name__ for c in buildable)} (buildable without "
            f"arguments) the only one that loads {weights.name} strictly"]
    which = "none" if not fitting else ", ".join(c.__name__ for c in fitting)
    raise KitError(f"{module.path.name}: of the networks that build without arguments "
                   f"({', '.join(c.__name__ for c in buildable)}), {which} load{'s' if len(fitting) == 1 else ''} "
                   f"{weights.name} strictly: choose with {how}")


def _from_file(spec: TeamSpec, require_data_range: bool) -> Entry:
    path = spec.model_file
    assert path is not None
    module = teamfile.import_team_file(path)
    from_name = teamfile.team_from_file_name(path)
    team = spec.team if spec.team is not None else (from_name[0] if from_name else None)
    weights = spec.weights if spec.weights is not None else teamfile.find_weights(path)
    registered = [e for e in module.registered if spec.class_name is None or e.arch_name == spec.class_name]
    notes: list[str] = []
    if len(registered) > 1:
        raise KitError(f"{path.name} registers {len(registered)} entries ({', '.join(e.name for e in registered)}); "
                       f"a submission file holds one model: choose its class with {option('class_name')}")
    if registered:
        base = registered[0]
        _refuse_contradictions(base, spec)
        if spec.weights is None and base.weights is not None:
            declared = base.default_weights_path(path.parent.parent / "model_zoo")
            weights = declared if declared is not None and declared.is_file() else weights
    else:
        base = Entry(name="", arch=object, scale=spec.scale or DEFAULT_SCALE, data_range=None)  # type: ignore[arg-type]
    base = base.replace(
        args=spec.init_args if spec.init_args is not None else base.args,
        kwargs=spec.init_kwargs if spec.init_kwargs is not None else base.kwargs,
        state_key=spec.state_key or base.state_key, strict=base.strict if spec.strict is None else spec.strict,
        post_load=spec.post_load or base.post_load, load_method=spec.load_method or base.load_method,
        scale=spec.scale or base.scale,
        data_range=spec.data_range if spec.data_range is not None else base.data_range,
        team=team, source=path, weights=weights, model_id=None,
        redirect_cuda=bool(module.cuda_lines),
    )
    if spec.class_name is not None and not registered:
        cls = getattr(module.module, spec.class_name, None)
        if not callable(cls):
            listed = ", ".join(c.__name__ for c in module.classes()) or "none"
            raise KitError(f"{path.name} has no class {spec.class_name!r} (its nn.Module classes: {listed}): fix {option('class_name')}")
        base = base.replace(arch=cls)
        base.bound_arguments()  # wrong constructor arguments: one line now, not a traceback later
    elif not registered:
        base, notes = _choose_class(module, spec, base, weights)
    name = spec.name or (base.name if registered else None) or (from_name[1] if from_name else base.arch_name)
    if module.cuda_lines:
        lines = ", ".join(f"line {n}: {what}" for n, what in module.cuda_lines[:3])
        notes.append(f"{path.name} hard-codes CUDA ({lines}{', ...' if len(module.cuda_lines) > 3 else ''}); "
                     f"off CUDA those calls are redirected to the run's device (the file is not edited; its CPU "
                     f"runtimes carry the redirect's small overhead)")
    entry = base.replace(name=name, notes=tuple(notes), description=base.description or f"{base.call_text()} from {path.name}")
    if require_data_range and entry.data_range is None:
        raise KitError(f"no data range for {path.name}: give {option('data_range')} (1.0 or 255); "
                       f"`python -m esrkit.submission check` reports the one that fits")
    return entry


def resolve(spec: TeamSpec, require_data_range: bool = True) -> Entry:
    """The :class:`Entry` a team's spec describes; errors name the team and the fix (the spec's keys for a team of a
    spec file, flags otherwise: :mod:`esrkit.options`)."""
    try:
        with named_as(spec.option_style):
            entry = _from_registered(spec) if spec.entry is not None else _from_file(spec, require_data_range)
        return entry.replace(option_style=spec.option_style)
    except KitError as exc:
        message = str(exc)
        labelled = spec.model_file is not None or spec.team is not None
        raise type(exc)(f"{spec.label}: {message}" if labelled and not message.startswith(spec.label) else message) from None


# --- what every command that takes one entry does --------------------------------------------------


def add_entry_arguments(p: argparse.ArgumentParser, default_entry: str | None = None) -> None:
    """``--model_id`` (a registered entry), ``--weights``, and the team flags (:func:`add_team_arguments`)."""
    p.add_argument("--model_id", default=None,
                   help=f"registered entry: name (case-insensitive) or numeric id"
                        f"{f' (default: {default_entry})' if default_entry else ''}")
    p.add_argument("--weights", type=Path, default=None,
                   help="weights file (default: the entry's file in model_zoo/, or a team's model_zoo/<file stem>.pth)")
    add_team_arguments(p)


def spec_from_args(args: argparse.Namespace, default_entry: str | None = None) -> tuple[TeamSpec, int | None]:
    """The one team the command line names, and the year its spec file declares (if any)."""
    chosen = [flag for flag, value in (("--model_id", args.model_id), ("--model_file", args.model_file),
                                      ("--spec", args.spec)) if value is not None]
    if len(chosen) > 1:
        raise KitError(f"{' and '.join(chosen)} both name an entry: give one of them")
    if args.spec is not None:
        given = given_team_flags(args)
        if [g for g in given if g != "--team"]:
            raise KitError(f"{', '.join(g for g in given if g != '--team')}: with --spec the team's facts come from "
                           f"the file; drop them or edit {args.spec}")
        spec_file = load_spec_file(args.spec)
        spec = spec_file.select(args.team)
        return (replace(spec, weights=args.weights) if args.weights is not None else spec), spec_file.year
    model_id = args.model_id if args.model_id is not None else default_entry
    if args.model_file is None and model_id is None:
        raise KitError("no entry given: pass --model_id NAME, --model_file models/teamNN_Name.py or --spec FILE")
    return spec_from_flags(args, model_id=model_id, weights=args.weights), None


def entry_from_args(args: argparse.Namespace, default_entry: str | None = None,
                    require_data_range: bool = True) -> tuple[Entry, int | None]:
    """The :class:`Entry` the command line names (see :func:`spec_from_args`), and its spec file's year."""
    spec, year = spec_from_args(args, default_entry)
    return resolve(spec, require_data_range), year
