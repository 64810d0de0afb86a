"""The training loop: config, one training step, validation, checkpoints, logs, DDP.

One :class:`Trainer` per process. Under ``torchrun`` (``WORLD_SIZE`` > 1) it joins the process
group (NCCL on CUDA, gloo on CPU), wraps the model in DistributedDataParallel and samples its own
crops (a rank-specific generator seed); ``batch_size`` is the global batch, split evenly over the
ranks, so the recipe does not change with the number of GPUs. Only rank 0 validates, logs and saves.

Every output (``out_dir``, ``cache_dir``) is checked before any work. Ctrl-C (SIGINT) and SIGTERM (a
scheduler's time limit: Slurm sends SIGTERM, then SIGKILL after its KillWait) stop a run
resumably: the first one ends it at the next iteration boundary (a validation under way is cut
short) and rank 0 writes ``last.pth``, atomically like the periodic saves; a second signal stops at
once, and writes nothing if it lands inside a training step (whose state would be half updated).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from esrkit import metrics
from esrkit.atomic import check_writable_folder
from esrkit.checkpoint import load_weights
from esrkit.cli import Terminated, interrupted_by, raise_terminated
from esrkit.datasets import open_split
from esrkit.device import device_name, pick_device
from esrkit.entry import Entry
from esrkit.errors import KitError
from esrkit.imageio import tensor_to_uint8, uint8_to_tensor
from esrkit.names import safe_name
from esrkit.paths import shared_path
from esrkit.progress import Progress
from esrkit.registry import DEFAULT_ENTRY, get_entry
from esrkit.training.checkpointing import (
    EMA,
    FORMAT,
    rng_states,
    save_checkpoint,
    save_weights,
    set_rng_states,
    try_save,
)
from esrkit.training.data import LRCache, PatchSampler, load_training_images, pick_data_device, to_model_input
from esrkit.training.records import LogRow, RunLog


def default_val_dir() -> str:
    """Set5 in the shared folder (``$ESRKIT_SHARED`` or ``../shared``)."""
    return str(shared_path("data", "benchmarks", "Set5"))


SCHEDULES = ("step", "cosine")
# Options that may differ from the checkpoint's on --resume (paths, cadence, hardware).
RESUME_OVERRIDABLE = frozenset({
    "iters", "out_dir", "device", "data_device", "workers", "cache_dir", "train_dir", "val_dir",
    "val_every", "save_every", "log_every", "progress", "channels_last", "compile",
})


@dataclass
class TrainConfig:
    """Every option of a run; defaults follow the paper (Sec. 4.2 and 4.6, MLRN-entire stage 1)."""

    model_id: str = DEFAULT_ENTRY
    train_dir: list[str] = field(default_factory=list)
    val_dir: str | None = field(default_factory=default_val_dir)
    out_dir: str | None = None
    iters: int = 1_000_000
    batch_size: int = 64
    patch_size: int = 256
    lr: float = 5e-4
    schedule: str = "step"
    lr_step: int | None = None  # None: iters // 5 (halved every 200 of 1000 epochs)
    lr_gamma: float = 0.5
    lr_min: float = 1e-7  # cosine floor
    beta1: float = 0.9
    beta2: float = 0.99
    eps: float = 1e-8
    ema: float = 0.0  # 0: off
    warm_start: str | None = None
    val_every: int = 5000
    save_every: int = 5000
    log_every: int = 100
    seed: int = 0
    device: str = "auto"
    data_device: str = "auto"
    bf16: bool = False
    channels_last: bool = False
    compile: bool = False
    workers: int = min(8, os.cpu_count() or 1)
    cache_dir: str | None = None
    progress: bool = True

    def resolved(self, entry: Entry) -> "TrainConfig":
        """A copy with the derived defaults filled in (out_dir, lr_step), checked."""
        cfg = TrainConfig(**asdict(self))
        cfg.out_dir = cfg.out_dir or str(Path("runs") / safe_name(entry.name))
        cfg.lr_step = cfg.lr_step or max(1, cfg.iters // 5)
        cfg.check()
        return cfg

    def check(self) -> None:
        positive = ("iters", "batch_size", "patch_size", "lr", "lr_step", "log_every", "save_every", "workers", "eps")
        for name in positive:
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise KitError(f"--{name} must be a positive number, got {value}")
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:  # NaN fails this too
                raise KitError(f"--{name} {value}: Adam's betas are in [0, 1) (the paper's: 0.9 and 0.99)")
        if not (math.isfinite(self.lr_min) and 0.0 <= self.lr_min <= self.lr):
            raise KitError(f"--lr_min {self.lr_min} must be between 0 and --lr {self.lr}")
        if self.val_every < 0:
            raise KitError(f"--val_every must be >= 0 (0: no validation), got {self.val_every}")
        if self.schedule not in SCHEDULES:
            raise KitError(f"--schedule {self.schedule!r}: choose one of {', '.join(SCHEDULES)}")
        if not self.train_dir:
            raise KitError("no --train_dir given: name one or more folders of HR training images")


def merge_resume_config(saved: dict[str, Any], given: dict[str, Any]) -> TrainConfig:
    """The checkpoint's config, with the options the user gave that may change on a resume.

    Any other option given with a different value is an error: it would silently break the exact
    continuation (use ``--warm_start`` for a new run from the same weights instead).
    """
    known = {f.name for f in fields(TrainConfig)}
    merged = {k: v for k, v in saved.items() if k in known}
    for key, value in given.items():
        if key in RESUME_OVERRIDABLE:
            merged[key] = value
        elif key in known and merged.get(key) != value:
            raise KitError(
                f"--{key} {value} differs from the resumed run's {merged.get(key)}: --resume continues a run "
                f"exactly; drop --{key}, or start a new run from these weights with --warm_start"
            )
    if merged.get("schedule") == "cosine" and merged.get("iters") != saved.get("iters"):
        raise KitError("--iters cannot change when resuming a cosine schedule (its length is fixed at the start)")
    return TrainConfig(**merged)


@dataclass(frozen=True)
class DistContext:
    """This process's place in the (possibly single-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(requested_device: str) -> tuple[DistContext, torch.device]:
    """Join the torchrun job if there is one (env ``WORLD_SIZE``), and pick this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    ctx = DistContext(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    device = pick_device(requested_device)
    if device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank if ctx.enabled else (device.index or 0))
        torch.cuda.set_device(device)
    if ctx.enabled and not dist.is_initialized():
        if device.type not in ("cuda", "cpu"):
            raise KitError(f"multi-process training supports CUDA (nccl) and CPU (gloo), not {device.type}")
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return ctx, device


def data_seed(seed: int, rank: int) -> int:
    """The patch sampler's seed: distinct per rank, fixed by ``seed``."""
    return seed * 1_000_003 + 7919 * (rank + 1)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """Step: ``lr * gamma ** (it // lr_step)``; cosine: from ``lr`` to ``lr_min`` over ``iters``."""
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.iters, eta_min=cfg.lr_min)
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.lr_step, gamma=cfg.lr_gamma)


@dataclass
class RunSummary:
    """What a finished (or interrupted) run reports."""

    step: int
    last_loss: float
    best_psnr: float
    best_step: int
    out_dir: Path
    interrupted: bool = False
    stopped_by: str = "interrupted"  # or "interrupted by SIGTERM"
    checkpoint: Path | None = None  # interrupted: the checkpoint to resume from (None: there is none)
    note: str = ""  # interrupted: what was (not) written, when it is not simply ``checkpoint``


class StopOnInterrupt:
    """Ctrl-C and SIGTERM, deferred while entered: the first signal only sets ``requested`` (the loop stops at
    its next boundary, :meth:`check`); a second raises at once and sets ``forced``. What is raised tells the
    two apart: KeyboardInterrupt for Ctrl-C, its subclass :class:`~esrkit.cli.Terminated` for SIGTERM.

    It takes over only from the default handlers (Python's for SIGINT; the system's, or the command line's
    :func:`~esrkit.cli.sigterm_as_interrupt`, for SIGTERM), in the main thread (elsewhere: no change).
    """

    TAKEN_OVER = {signal.SIGINT: (signal.default_int_handler,), signal.SIGTERM: (signal.SIG_DFL, raise_terminated)}

    def __init__(self) -> None:
        self.requested = self.forced = False
        self.signum: int | None = None  # the first signal received
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopOnInterrupt":
        self.requested = self.forced = False
        self.signum = None
        if threading.current_thread() is threading.main_thread():
            for signum, defaults in self.TAKEN_OVER.items():
                if signal.getsignal(signum) in defaults:
                    self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.requested:
            self.forced = True
            raise self.exception(signum)
        self.requested, self.signum = True, signum

    def request(self, signum: int) -> None:
        """Stop at the next boundary as if ``signum`` had been received (another rank received it)."""
        self.requested, self.signum = True, self.signum or signum

    @staticmethod
    def exception(signum: int | None) -> KeyboardInterrupt:
        return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    def check(self) -> None:
        if self.requested:
            raise self.exception(self.signum)


class Trainer:
    """Builds everything from a :class:`TrainConfig`; ``run()`` trains, ``train_step()`` does one step."""

    def __init__(self, cfg: TrainConfig, resume_state: dict[str, Any] | None = None) -> None:
        self.ctx, self.device = init_distributed(cfg.device)
        self.entry = get_entry(cfg.model_id)
        self.cfg = cfg = cfg.resolved(self.entry)
        self.out_dir = Path(cfg.out_dir)
        if cfg.batch_size % self.ctx.world_size:
            raise KitError(f"--batch_size {cfg.batch_size} (global) must be divisible by the "
                           f"{self.ctx.world_size} processes")
        self.local_batch = cfg.batch_size // self.ctx.world_size
        if self.ctx.is_main:  # every output is checked before any work (rank 0 writes them)
            check_writable_folder(self.out_dir, "--out_dir")
            if resume_state is None and (self.out_dir / "last.pth").exists():
                raise KitError(f"{self.out_dir} already holds a run (last.pth): continue it with "
                               f"--resume {self.out_dir / 'last.pth'}, or choose another --out_dir")
        lr_cache = LRCache(cfg.cache_dir) if cfg.cache_dir else None
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.set_float32_matmul_precision("high")

        torch.manual_seed(cfg.seed)
        self.model = self._build_model()
        self.ema = EMA(self.model, cfg.ema) if cfg.ema > 0 and self.ctx.is_main else None
        fused = self.device.type == "cuda"
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                                          eps=cfg.eps, fused=fused)
        self.scheduler = build_scheduler(self.optimizer, cfg)
        self.train_model: nn.Module = self.model
        if self.ctx.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if cfg.compile:
            self.train_model = torch.compile(self.train_model)  # validation stays eager (other shapes)

        val_dir = cfg.val_dir
        self.validating = bool(val_dir) and str(val_dir).lower() != "none" and cfg.val_every > 0
        self.val_set = self._load_val_set() if self.validating and self.ctx.is_main else []
        images = load_training_images(cfg.train_dir, self.entry.scale, cfg.patch_size, cfg.workers,
                                      lr_cache, progress=cfg.progress and self.ctx.is_main)
        self.data_summary = images.summary()
        data_device = pick_data_device(images.nbytes, self.device, cfg.data_device)
        self.sampler = PatchSampler(images, cfg.patch_size, data_seed(cfg.seed, self.ctx.rank), data_device,
                                    out_device=self.device)
        del images

        self.step = 0
        self.best_psnr = -math.inf
        self.best_step = 0
        self.elapsed_s = 0.0
        self.saved_step: int | None = None  # the step last.pth was last written at by this run
        self.stop = StopOnInterrupt()
        self.log = RunLog(self.out_dir / "log.csv", self.out_dir / "curves.png")
        if resume_state is not None:
            self._load_state(resume_state)

    # -- setup -------------------------------------------------------------------------------------

    def _build_model(self) -> nn.Module:
        model = self.entry.build()
        if self.cfg.warm_start:
            try:
                load_weights(model, self.cfg.warm_start, state_key=self.entry.state_key,
                             checkpoint_filter=self.entry.checkpoint_filter)
            except KitError as exc:
                raise KitError(f"--warm_start: {exc}") from None
        model = model.to(self.device).train()
        if self.cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self._check_patch_fits(model)
        return model

    def _check_patch_fits(self, model: nn.Module) -> None:
        """Some blocks (ESA's strided conv + 7x7 max-pool) need a minimum input: fail now, clearly."""
        lr_patch = self.cfg.patch_size // self.entry.scale
        model.eval()  # no batch-norm statistics are touched
        try:
            with torch.no_grad():
                model(torch.zeros(1, 3, lr_patch, lr_patch, device=self.device))
        except RuntimeError as exc:
            raise KitError(f"{self.entry.name} cannot take {lr_patch}x{lr_patch} LR patches (--patch_size "
                           f"{self.cfg.patch_size} / scale {self.entry.scale}); use a larger --patch_size "
                           f"({str(exc).splitlines()[0]})") from None
        finally:
            model.train()

    def _load_val_set(self) -> list[tuple[str, torch.Tensor, np.ndarray]]:
        path = Path(str(self.cfg.val_dir)).expanduser()
        if not path.is_dir():
            raise KitError(f"validation folder {path} does not exist: pass --val_dir PATH (a benchmark folder "
                           f"with HR/ and LR_bicubic/X4/, an official layout, or a folder of HR images), "
                           f"or --val_dir none to train without validation")
        split = open_split(path, "valid", "auto", self.entry.scale)
        val_set = []
        for pair in split.pairs:
            hr, lr = pair.load(self.entry.scale)
            val_set.append((pair.name, uint8_to_tensor(lr, self.entry.data_range).to(self.device), hr))
        return val_set

    # -- training ----------------------------------------------------------------------------------

    def train_step(self) -> torch.Tensor:
        """Sample a batch, one forward/backward/Adam step; returns the (detached, on-device) loss."""
        cfg = self.cfg
        lr_u8, hr_u8 = self.sampler.sample(self.local_batch)
        x = to_model_input(lr_u8, self.entry.data_range, cfg.channels_last)
        target = to_model_input(hr_u8, self.entry.data_range, cfg.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            sr = self.train_model(x)
        loss = F.l1_loss(sr.float(), target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.step += 1
        return loss.detach()

    @torch.no_grad()
    def validate(self) -> tuple[float, float]:
        """Mean RGB and Y PSNR on the validation set (of the EMA weights when EMA is on)."""
        model = self.ema.model if self.ema is not None else self.model
        was_training = model.training
        model.eval()
        rgb, y = [], []
        try:
            for _, lr, hr in self.val_set:
                self.stop.check()  # a Ctrl-C or SIGTERM cuts a long validation short
                sr = tensor_to_uint8(model(lr), self.entry.data_range)
                rgb.append(metrics.psnr(sr, hr, crop_border=self.entry.scale))
                y.append(metrics.psnr(sr, hr, crop_border=self.entry.scale, test_y_channel=True))
        finally:
            model.train(was_training)
        return float(np.mean(rgb)), float(np.mean(y))

    def run(self) -> RunSummary:
        """Train until ``iters``, validating, logging and saving on the way.

        Ctrl-C or SIGTERM stops the run resumably (see the module docstring); the summary then says ``interrupted``.
        """
        cfg, main = self.cfg, self.ctx.is_main
        if main:
            self._announce()
        progress = Progress(None if cfg.progress and main else False)
        loss_sum = torch.zeros((), device=self.device)
        window_steps, window_start, last_loss, psnr = 0, time.perf_counter(), math.nan, ""
        run_start, elapsed_before = window_start, self.elapsed_s
        stepping = False
        with self.stop, progress.bar(cfg.iters, "train", unit="it", initial=self.step, mininterval=0.1) as bar:
            try:
                while self.step < cfg.iters:
                    self._stop_together()
                    lr_now = self.optimizer.param_groups[0]["lr"]
                    stepping = True
                    loss_sum += self.train_step()
                    stepping = False
                    window_steps += 1
                    bar.advance()
                    step = self.step
                    final = step == cfg.iters
                    do_val = self.validating and (step % cfg.val_every == 0 or final)
                    do_save = step % cfg.save_every == 0 or final
                    if not (step % cfg.log_every == 0 or do_val or do_save):
                        continue
                    last_loss = self._mean_over_ranks(loss_sum / window_steps)
                    if not math.isfinite(last_loss):  # every rank sees the same mean: they stop together
                        raise self._diverged(last_loss, step - window_steps + 1, step)
                    now = time.perf_counter()
                    seconds = now - window_start  # training only: validation and saving are left out
                    self.elapsed_s = elapsed_before + now - run_start
                    row = LogRow(step, last_loss, lr_now, elapsed_s=round(self.elapsed_s, 3),
                                 patches_per_s=round(window_steps * cfg.batch_size / seconds, 2))
                    improved = False
                    if do_val and main:
                        row.val_psnr, row.val_y_psnr = self.validate()
                        improved = row.val_psnr > self.best_psnr
                        if improved:
                            self.best_psnr, self.best_step = row.val_psnr, step
                        psnr = f", psnr {row.val_psnr:.2f}"
                    bar.status(f"loss {last_loss:.4g}, lr {lr_now:.3g}{psnr}")
                    if main:
                        self.log.append(row)
                    if do_save or do_val:
                        self._save(last=do_save, best=improved, final=final)
                    loss_sum.zero_()
                    window_steps, window_start = 0, time.perf_counter()
            except KeyboardInterrupt as exc:
                self.elapsed_s = elapsed_before + time.perf_counter() - run_start
                return self._interrupted(last_loss, exc, torn=stepping and self.stop.forced)
        return RunSummary(self.step, last_loss, self.best_psnr, self.best_step, self.out_dir)

    def _diverged(self, loss: float, first: int, last: int) -> KitError:
        """Training stops on a non-finite loss: nothing of the diverged weights is saved; the last good checkpoint
        (if this run or the one it resumed wrote one) is named with the command that goes on from it."""
        path = self.out_dir / "last.pth"
        kept = (f"{path} (iteration {self.saved_step}) is the last good checkpoint and was left as it was: resume it "
                f"with a lower --lr (--resume {path} --lr ...)" if path.exists() else "no checkpoint was written")
        return KitError(f"training diverged: the L1 loss became {loss} between iterations {first} and {last}; {kept}; "
                        f"check --lr ({self.cfg.lr:g}) and the training images")

    def _interrupted(self, last_loss: float, exc: KeyboardInterrupt, torn: bool) -> RunSummary:
        """After Ctrl-C or SIGTERM (``exc``): rank 0 writes last.pth of the current step, unless ``torn`` (inside
        a step).

        No collective is run (the other ranks may be gone), so a multi-process checkpoint holds rank
        0's patch stream only: resuming it re-seeds the others' (said when it happens).
        """
        summary = RunSummary(self.step, last_loss, self.best_psnr, self.best_step, self.out_dir, interrupted=True,
                             stopped_by=interrupted_by(exc))
        if not self.ctx.is_main:
            return summary
        path = self.out_dir / "last.pth"
        previous = path if path.exists() else None
        if torn:
            second = "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C"
            summary.checkpoint = previous
            summary.note = f"stopped inside a training step (second {second}), so its state was not saved" + (
                f"; {path} from before is unchanged" if previous else "; nothing was written")
        elif self.step == 0:
            summary.note = "nothing was written"
        elif self.step == self.saved_step:
            summary.checkpoint, summary.note = path, f"{path} holds this iteration"
        else:
            try:
                save_checkpoint(path, self.state_dict([self.sampler.get_state()]))
            except KitError as error:
                summary.checkpoint, summary.note = previous, f"the checkpoint was not written: {error}"
            except KeyboardInterrupt:
                summary.checkpoint = previous
                summary.note = f"interrupted again while writing {path}, which was left as it was"
            else:
                self.saved_step = self.step
                summary.checkpoint, summary.note = path, f"wrote {path}"
                with contextlib.suppress(KeyboardInterrupt):
                    self._save_log()
        return summary

    def _announce(self) -> None:
        cfg = self.cfg
        sched = (f"x{cfg.lr_gamma} every {cfg.lr_step} it" if cfg.schedule == "step"
                 else f"cosine to {cfg.lr_min:g} over {cfg.iters} it")
        precision = ("bf16 autocast" if cfg.bf16 else "fp32") + (", torch.compile" if cfg.compile else "")
        print(
            f"training {self.entry.name} (x{self.entry.scale}, data range {self.entry.data_range:g}) on "
            f"{device_name(self.device)} x{self.ctx.world_size} process(es), {precision}"
            f"{', channels_last' if cfg.channels_last else ''}\n"
            f"  data: {self.data_summary}; patches kept on {self.sampler.device}\n"
            f"  batch {cfg.batch_size} x {cfg.patch_size}px HR, Adam lr {cfg.lr:g} ({sched}), "
            f"L1 loss{f', EMA {cfg.ema}' if self.ema else ''}; iterations {self.step} -> {cfg.iters}\n"
            f"  validation: {f'{len(self.val_set)} images every {cfg.val_every} it' if self.validating else 'off'}; "
            f"output: {self.out_dir}",
            file=sys.stderr,
        )

    # -- distributed helpers -----------------------------------------------------------------------

    def _mean_over_ranks(self, value: torch.Tensor) -> float:
        if self.ctx.enabled:
            value = value.clone()
            dist.all_reduce(value, op=dist.ReduceOp.SUM)
            value /= self.ctx.world_size
        return float(value)

    def _stop_together(self) -> None:
        """At an iteration boundary: stop if Ctrl-C was pressed or SIGTERM received -- on any rank, so that all
        ranks leave the loop at the same iteration (a rank left waiting in DDP's all-reduce would hang)."""
        if self.ctx.enabled:
            flag = torch.tensor(float(self.stop.signum or 0), device=self.device)  # SIGTERM (15) over SIGINT (2)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            if flag.item():
                self.stop.request(int(flag.item()))
        self.stop.check()

    def _sampler_states(self) -> list[torch.Tensor]:
        state = self.sampler.get_state()
        if not self.ctx.enabled:
            return [state]
        states: list[Any] = [None] * self.ctx.world_size
        dist.all_gather_object(states, state)
        return states

    # -- checkpoints -------------------------------------------------------------------------------

    def state_dict(self, sampler_states: list[torch.Tensor]) -> dict[str, Any]:
        """Everything ``--resume`` needs (see :mod:`esrkit.training.checkpointing`)."""
        state: dict[str, Any] = {
            "format": FORMAT,
            "entry": self.entry.name,
            "step": self.step,
            "params": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "sampler_states": sampler_states,
            "rng": rng_states(),
            "best_psnr": self.best_psnr,
            "best_step": self.best_step,
            "elapsed_s": self.elapsed_s,
            "world_size": self.ctx.world_size,
            "config": asdict(self.cfg),
        }
        if self.ema is not None:
            state["params_ema"] = {k: v.detach().cpu() for k, v in self.ema.model.state_dict().items()}
        return state

    def _save(self, last: bool, best: bool, final: bool) -> None:
        sampler_states = self._sampler_states()  # a collective: every rank takes part
        if not self.ctx.is_main:
            return
        state = self.state_dict(sampler_states)
        if last:
            path = self.out_dir / "last.pth"
            if final:
                try:
                    save_checkpoint(path, state)
                except KitError as exc:
                    then = (f"then --resume {path} finishes the run from its previous save" if path.exists() else
                            "no earlier checkpoint of this run exists, so free space and run again")
                    raise KitError(f"final checkpoint not written, {exc}; {then}") from None
                self.saved_step = self.step
            elif try_save(path, state, "checkpoint"):
                self.saved_step = self.step
        if best and try_save(self.out_dir / "best.pth", state, "best checkpoint"):
            try:
                save_weights(self.out_dir / "best_weights.pth", self.ema.model if self.ema else self.model)
            except KitError as exc:
                print(f"warning: best weights not written: {exc}", file=sys.stderr)
        self._save_log()

    def _save_log(self) -> None:
        try:
            self.log.save()
        except (OSError, KitError) as exc:
            print(f"warning: could not write the log/curve in {self.out_dir}: {exc}", file=sys.stderr)

    def _load_state(self, state: dict[str, Any]) -> None:
        if state.get("entry") != self.entry.name:
            raise KitError(f"the checkpoint was trained as {state.get('entry')!r}, not {self.entry.name!r}")
        self.model.load_state_dict(state["params"])
        if self.ema is not None:
            if "params_ema" not in state:
                raise KitError("the resumed run had no EMA; resume without --ema")
            self.ema.model.load_state_dict(state["params_ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        self.best_psnr = float(state["best_psnr"])
        self.best_step = int(state["best_step"])
        self.elapsed_s = float(state["elapsed_s"])
        set_rng_states(state["rng"])
        samplers = state["sampler_states"]
        own = self.sampler.get_state()
        if len(samplers) == self.ctx.world_size and samplers[self.ctx.rank].shape == own.shape:
            self.sampler.set_state(samplers[self.ctx.rank])
        else:
            self.sampler.generator.manual_seed(data_seed(self.cfg.seed + self.step, self.ctx.rank))
            if self.ctx.is_main:
                print(f"note: the checkpoint holds {len(samplers)} patch stream(s) made for another process "
                      f"count or device type than this run's ({self.ctx.world_size} sampling on "
                      f"{self.sampler.device.type}): the patch stream is re-seeded (not an exact continuation)",
                      file=sys.stderr)
        if self.ctx.is_main:
            self.log.load_until(self.step)
