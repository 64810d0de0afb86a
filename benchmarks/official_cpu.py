"""The official NTIRE 2023 ESR kit's own code, run here on the CPU: its ``test_demo.py`` main and its
``utils/model_summary.py``, read from the official kit's folder (default: the shared folder's unmodified copy,
``reference/official_kit_ntire2023``), never edited or copied.

    python -m benchmarks.official_cpu test_demo --data_dir B100 --run_dir R --save_dir R/sr [--weights W]
    python -m benchmarks.official_cpu complexity --model_id RFDN RLFN --weights W1 W2

``test_demo``: the official ``main`` of ``test_demo.py``, called with what its own parser gives for
``--data_dir D --save_dir S --model_id 0`` (RFDN, the 2023 kit's one model), in ``--run_dir``: there it writes
``results.json``, ``results.txt`` and its log, and there its ``select_model`` reads
``model_zoo/team00_rfdn.pth`` (linked to ``--weights``). It saves the SR images under
``S/00_RFDN_baseline/valid/``. ``--data_dir`` is a folder in the DIV2K 2023 layout it reads
(``DIV2K_valid_HR/0801.png``, ``DIV2K_valid_LR/0801x4.png``), or a benchmark-layout set (``HR/``,
``LR_bicubic/X4/``), which is linked into that layout first (:func:`link_div2k_2023`: sorted names become
0801, 0802, ...). The file hard-codes CUDA; before its main runs these substitutions are made in this process
(and printed):

{substitutions}

Nothing else is changed: its model, weights loading, image reading, forward, quantisation, PSNR, counting and
results files are its own. Its threads are torch's default (``OMP_NUM_THREADS`` sets them), printed too.

``complexity``: per model, as the 2023 ``test_demo.py`` counts (``utils/model_summary.get_model_flops`` and
``get_model_activation`` of the official kit on (3, 256, 256), the parameter sum) and as the 2024-2025 ones do
(fvcore's ``FlopCountAnalysis(model, torch.rand(1, 3, 256, 256)).total()``), printed as one JSON line. The
networks are built and loaded by the kit's registry (the official 2023 kit holds RFDN alone; both sides of
``benchmarks/vs_official.py`` must count the same networks). No substitution is needed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
import types
from pathlib import Path
from typing import Any, Callable, Sequence

from esrkit.cli import run_guarded
from esrkit.errors import KitError
from esrkit.paths import REPO_ROOT, SHARED_ENV, shared_path

COMPLEXITY_INPUT = (3, 256, 256)
DIV2K_FIRST = 801  # the 2023 kit's validation images are DIV2K 0801-0900
DIV2K_COUNT = 100
WEIGHTS_IN_RUN_DIR = Path("model_zoo") / "team00_rfdn.pth"  # where the 2023 select_model loads RFDN from
RFDN_WEIGHTS = "rfdn_ntire2023_team00.pth"  # that file, in the shared weights folder
RESULTS_KEY = "00_RFDN_baseline"  # the key and SR folder name the 2023 select_model gives RFDN

# What is substituted (a name of the official code, or of torch as it calls it -> what it is here). The module
# docstring lists these; test_demo_main installs them and prints them.
SUBSTITUTIONS = (
    ("torch.cuda.is_available()", "False, so that main's `torch.device(\"cuda\" if torch.cuda.is_available() "
                                  "else \"cpu\")` is the CPU (on a machine with a GPU too)"),
    ("torch.cuda.current_device()", "0 (main calls it first, and its memory line)"),
    ("torch.cuda.empty_cache()", "nothing (no CUDA memory)"),
    ("torch.cuda.Event", "WallClockEvent: record() reads time.perf_counter(), elapsed_time(end) gives the "
                         "milliseconds between two records"),
    ("torch.cuda.synchronize()", "nothing (a CPU forward has finished when it returns)"),
    ("torch.cuda.max_memory_allocated()", "0 (no GPU memory: its valid_memory is 0)"),
    ("torchvision.utils.make_grid", "a stub that raises if called, only where torchvision is not installed "
                                    "(utils/utils_image.py imports it at the top; test_demo never calls it)"),
    ("test_demo.select_dataset(data_dir, mode)", "its own list less the pairs whose files are absent (it names "
                                                 "all of DIV2K 0801-0900; a smaller set linked into that layout "
                                                 "has the first of them)"),
)
__doc__ = __doc__.format(substitutions="\n".join(f"- ``{name}`` -> {what}" for name, what in SUBSTITUTIONS))


def default_official_kit() -> Path:
    return shared_path("reference", "official_kit_ntire2023")


def check_official_kit(folder: Path, *files: str) -> Path:
    """``folder`` if it holds ``files`` (an official NTIRE ESR kit's), else a one-line error with the fix."""
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise KitError(f"--official_kit {folder}: no {', '.join(missing)} there (give a checkout of the official "
                       f"NTIRE 2023 ESR kit, ofsoundof/NTIRE2023_ESR; the shared folder has one: set {SHARED_ENV})")
    return folder


# --- the DIV2K 2023 layout ------------------------------------------------------------------------------


def is_div2k_2023(folder: Path) -> bool:
    return (folder / "DIV2K_valid_HR").is_dir() and (folder / "DIV2K_valid_LR").is_dir()


def link_div2k_2023(benchmark: Path, dest: Path) -> dict[str, str]:
    """Link the benchmark-layout set ``benchmark`` (``HR/NAME.png``, ``LR_bicubic/X4/NAMEx4.png``) into ``dest``
    in the DIV2K 2023 layout, its sorted names numbered from 0801; ``{benchmark name: DIV2K name}``."""
    hr_dir, lr_dir = benchmark / "HR", benchmark / "LR_bicubic" / "X4"
    if not hr_dir.is_dir() or not lr_dir.is_dir():
        raise KitError(f"--data_dir {benchmark}: neither the DIV2K 2023 layout (DIV2K_valid_HR/, DIV2K_valid_LR/) "
                       f"nor a benchmark layout (HR/, LR_bicubic/X4/)")
    names = sorted(p.stem for p in hr_dir.glob("*.png"))
    if not 0 < len(names) <= DIV2K_COUNT:
        raise KitError(f"--data_dir {benchmark}: {len(names)} HR images; the 2023 kit reads 1 to {DIV2K_COUNT} "
                       f"(DIV2K 0801-0900)")
    missing = [name for name in names if not (lr_dir / f"{name}x4.png").is_file()]
    if missing:
        raise KitError(f"--data_dir {benchmark}: {lr_dir / (missing[0] + 'x4.png')} is missing (each HR image needs "
                       f"its x4 LR file)")
    if dest.exists():
        raise KitError(f"{dest} exists: link into a fresh folder (give another --run_dir)")
    (dest / "DIV2K_valid_HR").mkdir(parents=True)
    (dest / "DIV2K_valid_LR").mkdir()
    renamed = {}
    for i, name in enumerate(names):
        div2k = f"{DIV2K_FIRST + i:04d}"
        (dest / "DIV2K_valid_HR" / f"{div2k}.png").symlink_to((hr_dir / f"{name}.png").resolve())
        (dest / "DIV2K_valid_LR" / f"{div2k}x4.png").symlink_to((lr_dir / f"{name}x4.png").resolve())
        renamed[name] = div2k
    return renamed


def link_weights(run_dir: Path, weights: Path) -> None:
    """``run_dir/model_zoo/team00_rfdn.pth`` -> ``weights`` (what the official select_model loads, relative to
    the folder it runs in)."""
    link = run_dir / WEIGHTS_IN_RUN_DIR
    if link.is_symlink() or link.exists():
        if link.resolve() == weights.resolve():
            return
        raise KitError(f"--run_dir {run_dir}: {link} exists and is not --weights {weights}: give another --run_dir")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(weights.resolve())


# --- the substitutions ------------------------------------------------------------------------------------


class WallClockEvent:
    """What test_demo uses of ``torch.cuda.Event`` (``record``, ``elapsed_time``), on the wall clock."""

    def __init__(self, enable_timing: bool = False, **_: Any) -> None:
        self.time: float | None = None

    def record(self, stream: Any = None) -> None:
        self.time = time.perf_counter()

    def elapsed_time(self, end: "WallClockEvent") -> float:
        if self.time is None or end.time is None:
            raise RuntimeError("elapsed_time: both events must have been recorded")
        return (end.time - self.time) * 1000.0


def _nothing(*args: Any, **kwargs: Any) -> None:
    return None


def _torchvision_stub() -> None:
    def make_grid(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("torchvision.utils.make_grid is a stub here (benchmarks/official_cpu.py): torchvision "
                           "is not installed")

    package, utils = types.ModuleType("torchvision"), types.ModuleType("torchvision.utils")
    utils.make_grid = make_grid  # type: ignore[attr-defined]
    package.utils = utils  # type: ignore[attr-defined]
    sys.modules["torchvision"], sys.modules["torchvision.utils"] = package, utils


def _existing_pairs(select_dataset: Callable[[str, str], list]) -> Callable[[str, str], list]:
    def select_existing(data_dir: str, mode: str) -> list:
        pairs = select_dataset(data_dir, mode)
        kept = [(lr, hr) for lr, hr in pairs if os.path.isfile(lr) and os.path.isfile(hr)]
        print(f"official_cpu: select_dataset({mode!r}): {len(kept)} of its {len(pairs)} pairs are in {data_dir}",
              flush=True)
        return kept

    return select_existing


def import_official_test_demo(official_kit: Path) -> types.ModuleType:
    """The official ``test_demo.py`` as a module (its ``__main__`` block does not run), with its folder first on
    ``sys.path`` and this project's root off it, so that its ``models`` and ``utils`` are the official kit's."""
    for name in ("models", "utils", "test_demo"):
        if name in sys.modules:
            raise RuntimeError(f"a module named {name!r} is already imported: the official kit's would not load")
    sys.path[:] = [str(official_kit)] + [p for p in sys.path if Path(p or ".").resolve() != REPO_ROOT]
    spec = importlib.util.spec_from_file_location("test_demo", official_kit / "test_demo.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["test_demo"] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    for name in ("utils.model_summary", "utils.utils_image", "models.team00_RFDN"):  # the last is imported by main
        where = Path(importlib.import_module(name).__file__ or "").resolve()
        if not where.is_relative_to(official_kit.resolve()):
            raise RuntimeError(f"{name} was imported from {where}, not from the official kit {official_kit}")
    return module


def test_demo_main(official_kit: Path, data_dir: Path, run_dir: Path, save_dir: Path, weights: Path) -> int:
    import torch

    check_official_kit(official_kit, "test_demo.py", "utils/utils_image.py", "utils/model_summary.py",
                       "models/team00_RFDN.py")
    if not weights.is_file():
        raise KitError(f"--weights {weights}: no such file (the official RFDN weights: "
                       f"{shared_path('weights', RFDN_WEIGHTS)})")
    if not is_div2k_2023(data_dir):
        renamed = link_div2k_2023(data_dir, run_dir / "div2k_2023")
        print(f"official_cpu: {data_dir} linked into the DIV2K 2023 layout in {run_dir / 'div2k_2023'} "
              f"({len(renamed)} images, {', '.join(f'{a} -> {b}' for a, b in list(renamed.items())[:3])}"
              f"{', ...' if len(renamed) > 3 else ''})", flush=True)
        data_dir = run_dir / "div2k_2023"
    link_weights(run_dir, weights)

    torch.cuda.is_available = lambda: False
    torch.cuda.current_device = lambda: 0
    torch.cuda.empty_cache = _nothing
    torch.cuda.Event = WallClockEvent  # type: ignore[misc,assignment]
    torch.cuda.synchronize = _nothing
    torch.cuda.max_memory_allocated = lambda device=None: 0
    stubbed = importlib.util.find_spec("torchvision") is None
    if stubbed:
        _torchvision_stub()
    official = import_official_test_demo(official_kit)
    official.select_dataset = _existing_pairs(official.select_dataset)
    print(f"official_cpu: the official test_demo.py of {official_kit}, on the CPU with {torch.get_num_threads()} "
          f"torch thread(s); substituted before its main runs:", flush=True)
    for name, what in SUBSTITUTIONS:
        if name != "torchvision.utils.make_grid" or stubbed:
            print(f"  {name} -> {what}", flush=True)

    os.chdir(run_dir)  # its results.json, results.txt, log and model_zoo/ are relative to the folder it runs in
    args = argparse.Namespace(data_dir=str(data_dir.resolve()), save_dir=str(save_dir.resolve()), model_id=0,
                              include_test=False, hybrid_test=False, ssim=False)
    official.main(args)
    return 0


# --- complexity -------------------------------------------------------------------------------------------


def complexity(official_kit: Path, model_ids: Sequence[str], weights: Sequence[str]) -> int:
    """Per model: the parameter sum, the official get_model_flops / get_model_activation, fvcore."""
    import torch
    from fvcore.nn import FlopCountAnalysis

    from esrkit.registry import get_entry

    path = check_official_kit(official_kit, "utils/model_summary.py") / "utils" / "model_summary.py"
    if len(weights) != len(model_ids):
        raise KitError(f"--weights has {len(weights)} file(s) for {len(model_ids)} --model_id: give one per model "
                       f"('-': the entry's own model_zoo file)")
    spec = importlib.util.spec_from_file_location("official_model_summary", path)
    summary = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(summary)  # type: ignore[union-attr]
    rows = []
    for name, w in zip(model_ids, weights):
        model = get_entry(name).load(None if w == "-" else Path(w)).model  # as select_model leaves it:
        model.eval()
        for p in model.parameters():
            p.requires_grad = False
        num_parameters = sum(map(lambda x: x.numel(), model.parameters()))
        flops = summary.get_model_flops(model, COMPLEXITY_INPUT, False)
        activations, num_conv = summary.get_model_activation(model, COMPLEXITY_INPUT)
        fvcore_flops = FlopCountAnalysis(model, torch.rand(1, *COMPLEXITY_INPUT)).total()
        rows.append({"entry": name, "params": int(num_parameters), "flops_official": int(flops),
                     "activations": int(activations), "num_conv": int(num_conv), "flops_fvcore": int(fvcore_flops)})
    print(json.dumps({"hook_counters": f"official ({path})", "rows": rows}))
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.official_cpu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("test_demo", help="the official 2023 test_demo.py main, RFDN, on the CPU")
    t.add_argument("--data_dir", type=Path, required=True, help="DIV2K 2023 layout, or a benchmark layout to link")
    t.add_argument("--run_dir", type=Path, required=True,
                   help="the folder it runs in (its results.json, results.txt, log, model_zoo/ link)")
    t.add_argument("--save_dir", type=Path, required=True,
                   help=f"its --save_dir: the SR images go under {RESULTS_KEY}/valid/")
    t.add_argument("--weights", type=Path, default=None, help=f"the RFDN weights (default: the shared {RFDN_WEIGHTS})")
    c = sub.add_parser("complexity", help="count as the official kits do, with the official model_summary.py")
    c.add_argument("--model_id", nargs="+", required=True, help="kit entries by name")
    c.add_argument("--weights", nargs="+", default=None, help="one weights file per entry ('-': the entry's own)")
    for command in (t, c):
        command.add_argument("--official_kit", type=Path, default=None,
                             help="the official NTIRE 2023 ESR kit's folder (default: the shared folder's copy)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    official_kit = (args.official_kit or default_official_kit()).resolve()
    if args.command == "complexity":
        return run_guarded(lambda: complexity(official_kit, args.model_id, args.weights or ["-"] * len(args.model_id)))
    weights = args.weights or shared_path("weights", RFDN_WEIGHTS)
    return run_guarded(lambda: test_demo_main(official_kit, args.data_dir, args.run_dir, args.save_dir, weights))


if __name__ == "__main__":
    sys.exit(main())
