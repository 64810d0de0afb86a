"""STAND-INS for the official NTIRE ESR code, the "official" side of ``benchmarks/vs_official.py``.

    python -m benchmarks.official_reference complexity --model_id RFDN --weights W [--official_kit DIR]
    python -m benchmarks.official_reference testdemo --data_dir B100 --weights W --results_dir R --save_dir S

Nothing here is the official code, and nothing of the kit's measuring code is used: both commands are
written from ``reference/OFFICIAL_KITS.md`` (sections 1 and 2) to do, step by step, what the official
kits do, so that the kit can be timed against them in the same run. Only the networks come from the
kit (its classes and weights loading, ``esrkit.registry``), as both sides must run the same models.

- ``complexity``: per model, as the kits' README snippet and ``test_demo.py`` count: the parameter sum,
  ``get_model_flops`` and ``get_model_activation`` (hooks on module instances, one forward each on an
  uninitialised ``torch.FloatTensor(1, 3, 256, 256)``, no ``no_grad``), then fvcore's
  ``FlopCountAnalysis(model, torch.rand(1, 3, 256, 256)).total()`` (the 2024-2025 column). With
  ``--official_kit DIR`` (a checkout of an official NTIRE ESR kit) the two hook counters are that kit's
  own ``utils/model_summary.py`` instead of the stand-ins below. The counts are printed as JSON.
- ``testdemo``: the 2023 kit's ``test_demo.py`` loop on one split: ``select_model`` (eval, no gradients),
  per image cv2 read, ``uint2tensor4``, the timed forward (CUDA events; wall clock on a CPU), ``tensor2uint``,
  RGB PSNR on the modcropped HR with a 4-pixel border in float64, the SR PNG saved to
  ``save_dir/<name>/valid/<image>.png``; then activations, #conv, FLOPs and params as that kit counts them,
  and ``results.json`` / ``results.txt`` written into ``--results_dir``.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import logging
import os
import sys
import time
from math import prod
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np
import torch
from torch import nn

from esrkit.cli import run_guarded
from esrkit.errors import KitError

COMPLEXITY_INPUT = (3, 256, 256)
SCALE = 4
BORDER = 4


# --- utils/model_summary.py, as OFFICIAL_KITS.md section 2 describes it (stand-in) ----------------------

# Per module type, what one call counts (the kit's *_flops_counter_hook functions, one rule each).
def _conv_flops(module: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    """MACs without bias: prod(kernel) * C_in * C_out / groups per output position -- the *output* size, for a
    transposed conv too."""
    batch, positions = output.shape[0], prod(output.shape[2:])
    return prod(module.kernel_size) * module.in_channels * (module.out_channels // module.groups) * batch * positions


def _relu_flops(module: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    return output.numel()


def _bn_flops(module: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    return inputs[0].numel() * (2 if module.affine else 1)


def _linear_flops(module: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    return inputs[0].shape[0] * inputs[0].shape[1] * output.shape[1]  # the kit's formula (wrong for 3-D input)


# Which rule a module gets: the first whose types it is an instance of (subclasses count as their base, as there).
_FLOPS_RULES: tuple[tuple[tuple[type, ...], Callable[[nn.Module, tuple, Any], int]], ...] = (
    ((nn.Conv2d, nn.ConvTranspose2d), _conv_flops),
    ((nn.ReLU, nn.PReLU, nn.ELU, nn.LeakyReLU, nn.ReLU6), _relu_flops),
    ((nn.Linear,), _linear_flops),
    ((nn.BatchNorm2d,), _bn_flops),
)
_CONVS = (nn.Conv2d, nn.ConvTranspose2d)


def _hooked_forward(model: nn.Module, input_res: tuple[int, ...], types: tuple[type, ...],
                    on_call: Callable[[nn.Module, tuple, Any], None]) -> None:
    """One forward of the eval model on ``torch.FloatTensor(1, *input_res)`` (uninitialised, as the kits draw it)
    with ``on_call`` hooked on every module instance of ``types``."""
    handles = [m.register_forward_hook(on_call) for m in model.modules() if isinstance(m, types)]
    try:
        device = list(model.parameters())[-1].device
        model.eval()(torch.FloatTensor(1, *input_res).to(device))
    finally:
        for handle in handles:
            handle.remove()


def get_model_flops(model: nn.Module, input_res: tuple[int, ...], print_per_layer_stat: bool = False) -> int:
    """FLOPs (MACs) under the 2022-2023 convention; one forward."""
    per_module: dict[nn.Module, int] = {}  # each module's running total, summed at the end

    def on_call(module: nn.Module, inputs: tuple, output: Any) -> None:
        rule = next(rule for types, rule in _FLOPS_RULES if isinstance(module, types))
        per_module[module] = per_module.get(module, 0) + rule(module, inputs, output)

    _hooked_forward(model, input_res, tuple(t for types, _ in _FLOPS_RULES for t in types), on_call)
    return sum(per_module.values())


def get_model_activation(model: nn.Module, input_res: tuple[int, ...]) -> tuple[int, int]:
    """(activations, #conv): output elements and number of calls of every Conv2d / ConvTranspose2d; one forward."""
    totals = [0, 0]

    def on_call(module: nn.Module, inputs: tuple, output: Any) -> None:
        totals[0] += output.numel()
        totals[1] += 1

    _hooked_forward(model, input_res, _CONVS, on_call)
    return totals[0], totals[1]


def hook_counters(official_kit: Path | None) -> tuple[Callable[..., Any], Callable[..., Any], str]:
    """``get_model_flops``, ``get_model_activation`` and where they come from: the official kit's
    ``utils/model_summary.py`` in ``official_kit``, or the stand-ins above."""
    if official_kit is None:
        return get_model_flops, get_model_activation, "stand-in (benchmarks/official_reference.py)"
    path = official_kit / "utils" / "model_summary.py"
    if not path.is_file():
        raise KitError(f"--official_kit {official_kit}: no utils/model_summary.py there "
                       f"(give a checkout of an official NTIRE ESR kit)")
    spec = importlib.util.spec_from_file_location("official_model_summary", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.get_model_flops, module.get_model_activation, f"official ({path})"


def select_model(name: str, weights: str, device: torch.device) -> nn.Module:
    """The network as the official ``select_model`` leaves it: built, loaded, eval, no gradients, on ``device``.
    The class and its weights loading are the kit's (``-``: the entry's own model_zoo file)."""
    from esrkit.registry import get_entry

    model = get_entry(name).load(None if weights == "-" else Path(weights)).model
    model.eval()
    for p in model.parameters():
        p.requires_grad = False
    return model.to(device)


def complexity_command(args: argparse.Namespace) -> int:
    """Per model: params, get_model_flops, get_model_activation, fvcore (2024-2025), as the kits count them."""
    from fvcore.nn import FlopCountAnalysis

    flops_fn, activation_fn, source = hook_counters(args.official_kit)
    weights = args.weights or ["-"] * len(args.model_id)
    if len(weights) != len(args.model_id):
        raise KitError(f"--weights has {len(weights)} file(s) for {len(args.model_id)} --model_id: give one per model")
    rows = []
    for name, w in zip(args.model_id, weights):
        model = select_model(name, w, torch.device("cpu"))
        num_parameters = sum(map(lambda x: x.numel(), model.parameters()))
        flops = flops_fn(model, COMPLEXITY_INPUT, False)
        activations, num_conv = activation_fn(model, COMPLEXITY_INPUT)
        fvcore_flops = FlopCountAnalysis(model, torch.rand(1, *COMPLEXITY_INPUT)).total()
        rows.append({"entry": name, "params": int(num_parameters), "flops_official": int(flops),
                     "activations": int(activations), "num_conv": int(num_conv), "flops_fvcore": int(fvcore_flops)})
    print(json.dumps({"hook_counters": source, "rows": rows}))
    return 0


# --- utils/utils_image.py and test_demo.py of the 2023 kit, as OFFICIAL_KITS.md section 1 describes them ----


def imread_uint(path: str) -> np.ndarray:
    """cv2 read, unchanged depth; BGR -> RGB, grayscale -> three equal channels."""
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def uint2tensor4(img: np.ndarray, data_range: float) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div(255.0 / data_range).unsqueeze(0)


def tensor2uint(img: torch.Tensor, data_range: float) -> np.ndarray:
    img = img.data.squeeze().float().clamp_(0, data_range).cpu().numpy()
    if img.ndim == 3:
        img = np.transpose(img, (1, 2, 0))
    return np.uint8((img * 255.0 / data_range).round())


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale, ...]


def calculate_psnr(img1: np.ndarray, img2: np.ndarray, border: int) -> float:
    h, w = img1.shape[:2]
    a = img1[border: h - border, border: w - border].astype(np.float64)
    b = img2[border: h - border, border: w - border].astype(np.float64)
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else 20 * np.log10(255.0 / np.sqrt(mse))


def imsave(img: np.ndarray, path: str) -> None:
    cv2.imwrite(path, img[:, :, [2, 1, 0]] if img.ndim == 3 else img)


def _pairs(data_dir: Path) -> list[tuple[str, str]]:
    """(HR, LR) paths of a benchmark-layout folder (``HR/NAME.png``, ``LR_bicubic/X4/NAMEx4.png``), sorted glob."""
    hr_paths = sorted(glob.glob(os.path.join(str(data_dir), "HR", "*.png")))
    return [(hr, os.path.join(str(data_dir), "LR_bicubic", "X4", Path(hr).stem + "x4.png")) for hr in hr_paths]


def run_split(model: nn.Module, model_name: str, data_range: float, device: torch.device, data_dir: Path,
              save_dir: Path, logger: logging.Logger) -> dict[str, Any]:
    """The kit's ``run(..., mode="valid")``: one timed forward per image, no warm-up, SR saved."""
    on_cuda = device.type == "cuda"
    if on_cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    out_dir = save_dir / model_name / "valid"
    out_dir.mkdir(parents=True, exist_ok=True)
    runtime, psnr = [], []
    for hr_path, lr_path in _pairs(data_dir):
        img_name = Path(hr_path).stem
        img_lr = uint2tensor4(imread_uint(lr_path), data_range).to(device)
        if on_cuda:
            start.record()
            img_sr = model(img_lr)
            end.record()
            torch.cuda.synchronize()
            runtime.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            img_sr = model(img_lr)
            runtime.append((time.perf_counter() - t0) * 1000.0)
        img_sr = tensor2uint(img_sr, data_range)
        img_hr = modcrop(imread_uint(hr_path), SCALE)
        psnr.append(calculate_psnr(img_sr, img_hr, border=BORDER))
        logger.info("{:s} - PSNR: {:.2f} dB; ".format(img_name, psnr[-1]))
        imsave(img_sr, str(out_dir / f"{img_name}.png"))
    memory = torch.cuda.max_memory_allocated(torch.cuda.current_device()) / 1024 ** 2 if on_cuda else 0.0
    return {"valid_runtime": runtime, "valid_psnr": psnr, "valid_memory": memory,
            "valid_ave_runtime": sum(runtime) / len(runtime), "valid_ave_psnr": sum(psnr) / len(psnr)}


def testdemo_command(args: argparse.Namespace) -> int:
    """The 2023 ``test_demo.py`` main on the valid split of a benchmark-layout folder, for RFDN (model_id 0)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.current_device()
        torch.cuda.empty_cache()
    torch.backends.cudnn.benchmark = False
    args.results_dir.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger("NTIRE2023-EfficientSR")
    logger.setLevel(logging.INFO)
    logger.addHandler(logging.FileHandler(args.results_dir / "NTIRE2023-EfficientSR.log"))
    logger.addHandler(logging.StreamHandler(sys.stdout))
    json_dir = args.results_dir / "results.json"
    results = json.loads(json_dir.read_text()) if json_dir.exists() else {}

    model_name, data_range = "00_RFDN_baseline", 255.0
    model = select_model("RFDN", args.weights, device)
    logger.info(model_name)
    results[model_name] = run_split(model, model_name, data_range, device, args.data_dir, args.save_dir, logger)

    activations, num_conv = get_model_activation(model, COMPLEXITY_INPUT)
    flops = get_model_flops(model, COMPLEXITY_INPUT, False)
    num_parameters = sum(map(lambda x: x.numel(), model.parameters()))
    logger.info("{:>16s} : {:<.4f} [M]".format("#Activations", activations / 10 ** 6))
    logger.info("{:>16s} : {:<.4f} [G]".format("FLOPs", flops / 10 ** 9))
    results[model_name].update({"activations": activations / 10 ** 6, "num_conv": num_conv, "flops": flops / 10 ** 9,
                                "num_parameters": num_parameters / 10 ** 6})
    with open(json_dir, "w") as f:
        json.dump(results, f)

    fmt = "{:20s}\t{:10s}\t{:14s}\t{:10s}\t{:10s}\t{:8s}\t{:8s}\t{:8s}\n"
    lines = [fmt.format("Model", "Val PSNR", "Val Time [ms]", "Params [M]", "FLOPs [G]", "Acts [M]", "Mem [M]", "Conv")]
    for k, v in results.items():
        lines.append(fmt.format(k, f"{v['valid_ave_psnr']:2.2f}", f"{v['valid_ave_runtime']:3.2f}",
                                f"{v['num_parameters']:2.3f}", f"{v['flops']:2.2f}", f"{v['activations']:2.2f}",
                                f"{v['valid_memory']:2.2f}", f"{v['num_conv']:4d}"))
    with open(args.results_dir / "results.txt", "w") as f:
        f.writelines(lines)
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.official_reference", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("complexity", help="count as the official kits do")
    c.add_argument("--model_id", nargs="+", required=True, help="kit entries by name")
    c.add_argument("--weights", nargs="+", default=None, help="one weights file per entry ('-': the entry's own)")
    c.add_argument("--official_kit", type=Path, default=None, help="an official kit checkout: use its model_summary.py")
    t = sub.add_parser("testdemo", help="the 2023 test_demo.py loop, RFDN")
    t.add_argument("--data_dir", type=Path, required=True, help="a benchmark-layout folder (HR/, LR_bicubic/X4/)")
    t.add_argument("--weights", required=True, help="the official RFDN weights")
    t.add_argument("--results_dir", type=Path, required=True)
    t.add_argument("--save_dir", type=Path, required=True)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_guarded(lambda: complexity_command(args) if args.command == "complexity" else testdemo_command(args))


if __name__ == "__main__":
    sys.exit(main())
