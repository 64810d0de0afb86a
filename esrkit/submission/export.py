"""``export``: a registered entry as the challenge wants it: one self-contained ``models/teamNN_Name.py``
(torch only) and its weights as ``model_zoo/teamNN_name.pth``.

The kit keeps one architecture per file and shares blocks (``models/esa.py``); the organisers copy a
single file into their own ``models/`` folder. The export reads the source of the entry's module with
``ast``, keeps the classes, functions and constants the network really uses (following names across
``from models.X import Y``), drops the kit's registration, and adds a class that builds the entry with
no arguments when the entry passes any (an entry is data: its class and arguments are read, nothing
is intercepted). The weights are re-saved as a plain state_dict under the kit's key names (before
the entry's post-load step, which the header then names). Before anything is put in place, the
written file is imported on its own, loaded strictly with the written weights, and must give
bit-identical outputs to the entry.
"""

from __future__ import annotations

import ast
import inspect
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from esrkit import __version__
from esrkit.atomic import atomic_path, atomic_write, check_writable_folder
from esrkit.entry import Entry
from esrkit.errors import KitError
from esrkit.measure.probe import probe_input
from esrkit.spec import TeamSpec, resolve
from esrkit.submission.layout import PORTABLE_PACKAGES, check_imports
from esrkit.teamfile import MODEL_FILE_RE

PROBE_SIZE = 48  # LR pixels of the output comparison (above ESA's minimum of about 15)
KIT_MODELS_PACKAGE = "models"  # blocks imported from here are inlined


@dataclass(frozen=True)
class ExportResult:
    """The two files written, the class the organisers build, and the modules the source came from."""

    model_file: Path
    weights_file: Path
    class_name: str
    sources: list[str]


@dataclass(frozen=True)
class BuildCall:
    """The class an entry instantiates and the arguments it passes to it (by parameter name)."""

    cls: type[nn.Module]
    arguments: dict[str, object]

    @property
    def uses_defaults(self) -> bool:
        """True when ``cls()`` alone builds the same network."""
        params = list(inspect.signature(self.cls.__init__).parameters.values())[1:]
        defaults = {p.name: p.default for p in params}
        return all(defaults.get(k, inspect.Parameter.empty) == v for k, v in self.arguments.items())


def build_call(entry: Entry) -> BuildCall:
    """What the entry builds, read from the entry itself (its class and constructor arguments)."""
    if not (isinstance(entry.arch, type) and issubclass(entry.arch, nn.Module)):
        raise KitError(f"cannot export {entry.name}: it is registered with the builder function {entry.arch_name}; "
                       f"register its nn.Module class with its arguments instead (Entry(name, Class, kwargs=...))")
    return BuildCall(entry.arch, entry.bound_arguments())


@dataclass
class _Module:
    """One kit module's top-level definitions (name -> statement) and what it imports."""

    name: str
    source: str
    definitions: dict[str, ast.stmt]
    kit_imports: dict[str, tuple[str, str]]  # local name -> (kit module, name there)
    portable_imports: list[str]  # import statements of torch / numpy / the standard library
    foreign_imports: dict[str, str]  # local name -> the module it comes from (fine only while unused)


def _is_registration(node: ast.stmt) -> bool:
    return any("register_entry" in ast.unparse(d) for d in getattr(node, "decorator_list", []))


def _read_module(module: ModuleType) -> _Module:
    source = inspect.getsource(module)
    tree = ast.parse(source)
    info = _Module(module.__name__, source, {}, {}, [], {})
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and not _is_registration(node):
            info.definitions[node.name] = node
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    info.definitions[target.id] = node
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == KIT_MODELS_PACKAGE:
            for alias in node.names:
                if alias.asname is not None:
                    raise KitError(f"cannot export {module.__name__}: 'import {alias.name} as {alias.asname}' "
                                   f"from {node.module}; import kit blocks under their own names")
                info.kit_imports[alias.name] = (node.module, alias.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            if all(m.split(".")[0] in PORTABLE_PACKAGES or m.split(".")[0] in sys.stdlib_module_names for m in modules):
                info.portable_imports.append(ast.unparse(node))
            else:  # the kit's registry (used only by the dropped builders) or a third-party package
                for alias in node.names:
                    bound = alias.asname or alias.name.split(".")[0]
                    info.foreign_imports[bound] = node.module if isinstance(node, ast.ImportFrom) else alias.name
    return info


def _referenced_names(node: ast.stmt) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _statement_source(module: _Module, node: ast.stmt) -> str:
    """The statement's lines as written (decorators included, comments inside kept)."""
    lines = module.source.splitlines()
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return "\n".join(lines[start - 1 : node.end_lineno])


def collect_source(cls: type[nn.Module]) -> tuple[list[str], list[str], list[str]]:
    """(import statements, definitions' source in a valid order, kit modules used) for ``cls`` and all it uses."""
    modules: dict[str, _Module] = {}
    needed, uses = _needed_definitions(cls, modules)
    order = _dependency_order(cls.__module__, uses)
    _check_portable(cls, modules, needed)
    seen: dict[str, str] = {}
    imports: list[str] = []
    blocks: list[str] = []
    for mod_name in order:
        info, names = modules[mod_name], needed.get(mod_name, set())
        for name in names:
            if seen.setdefault(name, mod_name) != mod_name:
                raise KitError(f"cannot export {cls.__name__}: {name} is defined in both {seen[name]} and {mod_name}")
        imports += [s for s in info.portable_imports if s not in imports]
        kept = {id(node): node for name, node in info.definitions.items() if name in names}
        blocks += [_statement_source(info, node) for node in sorted(kept.values(), key=lambda n: n.lineno)]
    return imports, blocks, order


def _needed_definitions(
    cls: type[nn.Module], modules: dict[str, _Module]
) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """The names ``cls`` needs, per module (followed across ``from models.X import Y``), and which
    kit modules each module takes names from."""
    needed: dict[str, set[str]] = {}
    uses: dict[str, set[str]] = {}
    pending = [(cls.__module__, cls.__name__)]
    while pending:
        mod_name, name = pending.pop()
        if mod_name not in modules:
            modules[mod_name] = _read_module(sys.modules[mod_name])
        info = modules[mod_name]
        if name in info.kit_imports:
            target = info.kit_imports[name]
            uses.setdefault(mod_name, set()).add(target[0])
            pending.append(target)
        elif name in info.definitions and name not in needed.setdefault(mod_name, set()):
            needed[mod_name].add(name)
            refs = _referenced_names(info.definitions[name])
            pending += [(mod_name, ref) for ref in refs if ref in info.definitions or ref in info.kit_imports]
    return needed, uses


def _dependency_order(root: str, uses: dict[str, set[str]]) -> list[str]:
    """Modules from ``root`` down, each after the ones it takes names from."""
    order: list[str] = []

    def visit(mod_name: str) -> None:
        if mod_name not in order:
            for dependency in sorted(uses.get(mod_name, ())):
                visit(dependency)
            order.append(mod_name)

    visit(root)
    return order


def _check_portable(cls: type[nn.Module], modules: dict[str, _Module], needed: dict[str, set[str]]) -> None:
    """No needed definition uses a name imported from outside torch, numpy and the standard library."""
    for mod_name, names in needed.items():
        info = modules[mod_name]
        for name in sorted(names):
            foreign = sorted(_referenced_names(info.definitions[name]) & set(info.foreign_imports))
            if foreign:
                raise KitError(
                    f"cannot export {cls.__name__}: {name} in {mod_name} uses {foreign[0]} from "
                    f"{info.foreign_imports[foreign[0]]}, which the challenge environment does not have "
                    f"(only torch, numpy and the standard library)"
                )


def _literal(value: object, key: str, entry: Entry) -> str:
    if isinstance(value, (bool, int, float, str, type(None))) or (
        isinstance(value, tuple) and all(isinstance(v, (bool, int, float, str)) for v in value)
    ):
        return repr(value)
    raise KitError(f"cannot export {entry.name}: its builder passes {key}={value!r}, which is not a literal")


def default_name(entry: Entry, call: BuildCall | None = None) -> str:
    """The class the entry builds when it builds it with its defaults, else the entry's name as an identifier."""
    call = call or build_call(entry)
    return call.cls.__name__ if call.uses_defaults else re.sub(r"\W", "_", entry.name)


def model_file_text(entry: Entry, call: BuildCall, team: int, name: str, weights_name: str) -> tuple[str, list[str]]:
    """The single-file source whose class ``name`` builds the entry with no arguments, and the kit modules used."""
    base = call.cls.__name__
    needs_wrapper = name != base or not call.uses_defaults
    if needs_wrapper and name == base:
        raise KitError(f"{entry.name} builds {base} with arguments other than its defaults, so the exported "
                       f"class needs a name of its own: choose a --name other than {base}")
    imports, blocks, sources = collect_source(call.cls)
    args = ", ".join(f"{k}={_literal(v, k, entry)}" for k, v in call.arguments.items())
    if needs_wrapper:
        blocks.append(
            f"class {name}({base}):\n"
            f'    """{entry.name} as registered in esrkit: {base}({args})."""\n\n'
            f"    def __init__(self) -> None:\n"
            f"        super().__init__({args})"
        )
    module = f"team{team:02d}_{name}"
    post_load = ""
    if entry.post_load:
        each = entry.post_load.startswith("each:")
        method = entry.post_load.removeprefix("each:")
        post_load = (f"    for m in list(model.modules()):\n        if hasattr(m, \"{method}\"):\n            m.{method}()\n"
                     if each else f"    model.{method}()\n")
    sources_text = ", ".join(s.replace(".", "/") + ".py" if s.startswith("models") else Path(s).name for s in sources)
    header = (
        f'"""{entry.name} (x{entry.scale}, inputs and outputs in [0, {entry.data_range:g}]), exported by esrkit '
        f"{__version__} from {sources_text}.\n\n"
        f"Self-contained: torch only. The organisers load it as\n\n"
        f"    from models.{module} import {name}\n"
        f"    model = {name}()\n"
        f'    model.load_state_dict(torch.load("model_zoo/{weights_name}"), strict=True)\n'
        f"{post_load}"
        f'"""'
    )
    portable = "\n".join(line for line in imports if "__future__" not in line)
    preamble = f"{header}\n\nfrom __future__ import annotations\n\n{portable}"
    return "\n\n\n".join([preamble, *blocks]) + "\n", sources


def export_entry(entry: Entry, weights: Path | None, team: int, name: str | None, out_dir: Path) -> ExportResult:
    """Write ``out_dir/models/teamNN_Name.py`` and ``out_dir/model_zoo/teamNN_name.pth`` for the entry with
    ``weights`` (None: its own), after checking that the file alone reproduces it exactly.
    ``name`` None: :func:`default_name`."""
    call = build_call(entry)
    name = name or default_name(entry, call)
    if not 0 <= team <= 99:
        raise KitError(f"--team {team}: the team id has two digits (0-99)")
    model_file = out_dir / "models" / f"team{team:02d}_{name}.py"
    if MODEL_FILE_RE.match(model_file.name) is None:
        raise KitError(f"--name {name!r} does not give a valid teamNN_Name.py (letters, digits, _; a letter first)")
    weights_file = out_dir / "model_zoo" / f"{model_file.stem.lower()}.pth"
    existing = [p for p in (model_file, weights_file) if p.exists()]
    if existing:
        raise KitError(f"{existing[0]} already exists and was left as it was: remove it or choose another --out")
    made = [f for f in dict.fromkeys((out_dir, model_file.parent, weights_file.parent)) if not f.exists()]
    for folder in (model_file.parent, weights_file.parent):
        check_writable_folder(folder, "--out")
    try:
        return _export(entry, call, weights, team, name, out_dir, model_file, weights_file)
    except BaseException:  # nothing was written: the folders made for it go too (if still empty)
        for folder in reversed(made):
            try:
                folder.rmdir()
            except OSError:
                pass
        raise


def _export(entry: Entry, call: BuildCall, weights: Path | None, team: int, name: str, out_dir: Path,
            model_file: Path, weights_file: Path) -> ExportResult:
    text, sources = model_file_text(entry, call, team, name, weights_file.name)
    # The weights as the organisers load them: before the post-load step, which their loader runs.
    as_loaded = entry.replace(post_load=None).load(weights)
    state = {k: v.detach().cpu().clone() for k, v in as_loaded.model.state_dict().items()}
    reference = entry.load(weights).model if entry.post_load else as_loaded.model

    with tempfile.TemporaryDirectory(prefix=".esrkit_export_", dir=out_dir) as staging:
        staged_file = Path(staging) / "models" / model_file.name
        staged_weights = Path(staging) / "model_zoo" / weights_file.name
        atomic_write(staged_file, text)
        with atomic_path(staged_weights) as tmp:
            torch.save(state, tmp)
        _verify(entry, reference, staged_file, staged_weights, name)
        for staged, final in ((staged_file, model_file), (staged_weights, weights_file)):
            shutil.move(staged, final)
    return ExportResult(model_file, weights_file, name, sources)


def _verify(entry: Entry, reference: nn.Module, model_file: Path, weights: Path, name: str) -> None:
    """The written file, imported on its own and loaded strictly, gives the entry's outputs bit for bit."""
    imports = check_imports(model_file)
    if not imports.passed:
        raise KitError(f"the exported file would fail the single-file rule ({imports.reason}); nothing was written")
    exported = resolve(TeamSpec(model_file=model_file, class_name=name, weights=weights, data_range=entry.data_range,
                                scale=entry.scale, post_load=entry.post_load)).load()
    x = probe_input(PROBE_SIZE, PROBE_SIZE, data_range=entry.data_range or 1.0)
    with torch.inference_mode():
        same = torch.equal(exported.model(x), reference.cpu().eval()(x))
    if not same:
        raise KitError(f"the exported {model_file.name} does not reproduce {entry.name} exactly "
                       f"(does its class do more than its constructor says?); nothing was written")
