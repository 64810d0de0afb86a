"""The run's CSV log and its loss/PSNR curve, both rewritten atomically."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from esrkit.atomic import atomic_path, atomic_write


@dataclass
class LogRow:
    """One CSV row; the validation columns are NaN on rows without a validation."""

    step: int
    loss: float
    lr: float
    val_psnr: float = math.nan
    val_y_psnr: float = math.nan
    elapsed_s: float = 0.0
    patches_per_s: float = 0.0


COLUMNS = [f.name for f in fields(LogRow)]


class RunLog:
    """Rows kept in memory and written out as a whole (``save``), so the file is never half-written."""

    def __init__(self, csv_path: Path, png_path: Path) -> None:
        self.csv_path = csv_path
        self.png_path = png_path
        self.rows: list[LogRow] = []

    def append(self, row: LogRow) -> None:
        self.rows.append(row)

    def load_until(self, step: int) -> None:
        """Take the rows of an earlier run up to ``step`` (rows past a resumed checkpoint are dropped)."""
        if not self.csv_path.is_file():
            return
        with open(self.csv_path, newline="") as fh:
            for record in csv.DictReader(fh):
                try:
                    row = LogRow(int(record["step"]), *(float(record[c] or "nan") for c in COLUMNS[1:]))
                except (KeyError, TypeError, ValueError):
                    continue
                if row.step <= step:
                    self.rows.append(row)

    def save(self) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(row).items()})
        atomic_write(self.csv_path, buffer.getvalue())
        if self.rows:
            self._plot()

    def _plot(self) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import FormatStrFormatter

        fig = Figure(figsize=(10, 4), layout="constrained")
        FigureCanvasAgg(fig)  # the Agg canvas: no GUI backend, no pyplot state
        ax_loss, ax_psnr = fig.subplots(1, 2)
        ax_loss.plot([r.step for r in self.rows], [r.loss for r in self.rows], lw=1)
        ax_loss.set(xlabel="iteration", ylabel="L1 loss (train)", yscale="log", title="training loss")
        ax_loss.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax_loss.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
        ax_loss.grid(alpha=0.3)
        val = [r for r in self.rows if not math.isnan(r.val_psnr)]
        ax_psnr.plot([r.step for r in val], [r.val_psnr for r in val], "o-", ms=3, label="RGB")
        ax_psnr.plot([r.step for r in val], [r.val_y_psnr for r in val], "s-", ms=3, label="Y")
        ax_psnr.set(xlabel="iteration", ylabel="PSNR (dB)", title="validation PSNR")
        ax_psnr.grid(alpha=0.3)
        if val:
            ax_psnr.legend()
        with atomic_path(self.png_path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
