"""PSNR of entries on benchmark sets (official protocol: uint8 SR, 4-px border, RGB; Y beside it).

    python -m benchmarks.psnr_table --model_id MLRN-entire RLFN --weights model_zoo/mlrn_entire_x4.pth W_RLFN \\
        --sets ../shared/data/benchmarks/Set5 ../shared/data/benchmarks/Set14 ../shared/data/benchmarks/B100

Also the bicubic baseline (the kit's MATLAB-bicubic imresize of the LR) as a reference row.
Prints a Markdown table (and writes it with ``--out``); the model card's table is made with it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Sequence

import torch

from benchmarks.measure import weights_per_entry
from esrkit import metrics
from esrkit.atomic import atomic_write, check_writable_file
from esrkit.cli import run_guarded
from esrkit.datasets import Split, open_split
from esrkit.device import pick_device, prepare_model
from esrkit.evaluation import Evaluator
from esrkit.imresize import imresize
from esrkit.registry import get_entry


def bicubic_psnr(split: Split, scale: int) -> tuple[float, float]:
    rgb, y = [], []
    for pair in split.pairs:
        hr, lr = pair.load(scale)
        up = imresize(lr, float(scale))
        rgb.append(metrics.psnr(up, hr, crop_border=scale))
        y.append(metrics.psnr(up, hr, crop_border=scale, test_y_channel=True))
    return statistics.fmean(rgb), statistics.fmean(y)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.psnr_table", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_id", nargs="+", required=True)
    p.add_argument("--weights", nargs="+", default=None, help="one per entry; '-' or none: its model_zoo file")
    p.add_argument("--sets", nargs="+", type=Path, required=True, help="benchmark folders (HR/ + LR_bicubic/X4/)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)

    def body() -> int:
        if args.out is not None:
            check_writable_file(args.out, "--out")
        weights = weights_per_entry(args.model_id, args.weights)
        device = pick_device(args.device)
        splits = [open_split(s) for s in args.sets]
        names = [s.root.name for s in splits]
        header = "| Entry | " + " | ".join(f"{n} RGB | {n} Y" for n in names) + " |"
        lines = [header, "|:---|" + "---:|" * (2 * len(names))]
        scale = get_entry(args.model_id[0]).scale
        cells = [f"{v:.2f}" for s in splits for v in bicubic_psnr(s, scale)]
        lines.append("| bicubic (MATLAB imresize) | " + " | ".join(cells) + " |")
        for i, name in enumerate(args.model_id):
            entry = get_entry(name)
            model = prepare_model(entry.load(weights[i]).model, device)
            evaluator = Evaluator(model, scale=entry.scale, data_range=entry.data_range, device=device,
                                  tile=entry.tile, tile_overlap=entry.tile_overlap, source=entry.name)
            cells = []
            for split in splits:
                r = evaluator.run(split)
                cells += [f"{r.mean('psnr'):.2f}", f"{r.mean('psnr_y'):.2f}"]
                print(f"{entry.name} {split.root.name}: {cells[-2]} / {cells[-1]} dB", file=sys.stderr)
            lines.append(f"| {entry.name} | " + " | ".join(cells) + " |")
            del model, evaluator
        table = "\n".join(lines) + "\n"
        print(table)
        if args.out:
            atomic_write(args.out, table)
        return 0

    with torch.inference_mode():
        return run_guarded(body)


if __name__ == "__main__":
    sys.exit(main())
