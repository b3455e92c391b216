"""Training speed: segmodels under lightning.Trainer vs the same model in a plain PyTorch loop (vs smp).

    python benchmarks/train_step.py                                  # resnet34 + unet, 256 x 256, batch 4
    python benchmarks/train_step.py --pairs resnet50:unet vgg16:fcn8s --size 512 --batch-size 8 --device cuda

For each pair, in one process and interleaved round by round, after a warm-up epoch:
  (a) lightning: ``SegmentationModule`` as ``train.py`` builds it (the composed Hydra config, its callbacks,
      the progress bar, the TensorBoard logger, a checkpoint at every epoch end) trained by ``lightning.Trainer``;
  (b) plain: the same ``nn.Module``, loss, optimiser and per-step schedule in a hand-written loop that
      also saves a checkpoint at every epoch end;
  (c) smp: ``segmentation_models_pytorch.Unet`` with the same encoder in the plain loop (``[benchmark]`` extra).
All three read the same batches from memory, so the data pipeline is out of the comparison (see
data_pipeline.py). Reports images/s, the ratio (a)/(b) of wall time per epoch (the framework's
overhead), achieved training GFLOP/s (FLOPs counted by torch.utils.flop_counter) and peak memory
(RSS on CPU, allocated on GPU). Writes JSON and prints a table.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from record import rss_mb, write_results  # noqa: E402  (benchmarks/record.py, beside this script)

from segmodels.cli.config_options import register_options  # noqa: E402
from segmodels.cli.train import build_callbacks, build_module  # noqa: E402
from segmodels.training.optimizers import build_schedule  # noqa: E402

register_options()  # as train.py does before Hydra composes


class Memory:
    """Peak RSS sampled after every step (CPU), or CUDA's peak allocation."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.peak = device, 0.0
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()

    def sample(self) -> None:
        if self.device.type != "cuda":
            self.peak = max(self.peak, rss_mb())

    def peak_mb(self) -> float:
        return torch.cuda.max_memory_allocated() / 2**20 if self.device.type == "cuda" else self.peak


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def composed(pair: str, size: int, batch: int, output: Path, device: torch.device):
    backbone, decoder = pair.split(":")
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="train", overrides=[
            f"backbone={backbone}", f"decoder={decoder}", "backbone.pretrained=false", f"output_dir={output}",
            f"dataset.crop_size={size}", f"dataset.batch_size={batch}", "callbacks.freeze.unfreeze_at_epoch=0",
            "monitor=train/loss_epoch", "monitor_mode=min",
            f"trainer.accelerator={'gpu' if device.type == 'cuda' else 'cpu'}",
            f"trainer.precision={'bf16-mixed' if device.type == 'cuda' else '32-true'}",
        ])


def batches(count: int, batch: int, size: int, classes: int) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [{"image": torch.randn(batch, 3, size, size, generator=generator),
             "mask": torch.randint(0, classes, (batch, size, size), generator=generator)} for _ in range(count)]


def within_epoch_intervals(step_ends: list[float], steps_per_epoch: int) -> list[float]:
    """Times between consecutive step ends inside one epoch (so no checkpoint or epoch hook is counted)."""
    return [b - a for i, (a, b) in enumerate(zip(step_ends, step_ends[1:])) if (i + 1) % steps_per_epoch]


def lightning_epochs(cfg, data, epochs: int, device: torch.device, output: Path,
                     memory_format: torch.memory_format) -> tuple[list[float], list[float], float]:
    """Per-epoch and per-step wall times of a Trainer built as segmodels.cli.train builds it."""
    module = build_module(cfg, num_classes=4, class_names=None)
    if memory_format == torch.channels_last:  # as model.channels_last=auto does on a CUDA GPU
        module.use_channels_last()
    memory = Memory(device)
    times: list[float] = []
    steps: list[float] = []

    class Clock(L.Callback):
        """Epoch k lasts from its start to epoch k+1's start (or the end of training): checkpoint included."""

        def __init__(self) -> None:
            self.marks: list[float] = []
            self.step_ends: list[float] = []

        def _mark(self) -> None:
            synchronize(device)
            self.marks.append(time.perf_counter())

        def on_train_epoch_start(self, trainer, pl_module):
            self._mark()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            memory.sample()
            if trainer.current_epoch > 0:  # after the warm-up epoch
                synchronize(device)
                self.step_ends.append(time.perf_counter())

        def on_train_end(self, trainer, pl_module):
            self._mark()
            times.extend(b - a for a, b in zip(self.marks, self.marks[1:]))
            steps.extend(within_epoch_intervals(self.step_ends, steps_per_epoch=len(data)))

    callbacks = build_callbacks(cfg) + [Clock()]
    trainer = L.Trainer(
        accelerator=cfg.trainer.accelerator, devices=1, precision=cfg.trainer.precision, max_epochs=epochs,
        limit_val_batches=0, callbacks=callbacks, log_every_n_steps=cfg.trainer.log_every_n_steps,
        logger=L.pytorch.loggers.TensorBoardLogger(str(output), name="tensorboard", version=""),
        enable_progress_bar=cfg.trainer.enable_progress_bar, enable_model_summary=False, num_sanity_val_steps=0,
    )
    trainer.fit(module, train_dataloaders=DataLoader(data, batch_size=None))
    return times[1:], steps, memory.peak_mb()


def plain_epochs(model: torch.nn.Module, criterion, data, epochs: int, device: torch.device, output: Path,
                 memory_format: torch.memory_format, lr: float = 1e-3,
                 weight_decay: float = 1e-4) -> tuple[list[float], list[float], float]:
    """The loop a researcher would write: forward, loss, backward, step, schedule; a checkpoint per epoch."""
    model.to(device, memory_format=memory_format).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = build_schedule(optimizer, epochs * len(data), "cosine", warmup_steps=0)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    memory, times, step_ends = Memory(device), [], []
    for epoch in range(epochs):
        synchronize(device)
        start = time.perf_counter()
        for batch in data:
            images = batch["image"].to(device, memory_format=memory_format, non_blocking=True)
            masks = batch["mask"].to(device, non_blocking=True)
            with autocast:
                loss = criterion(model(images), masks)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            memory.sample()
            if epoch > 0:
                synchronize(device)
                step_ends.append(time.perf_counter())
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, output / "plain.ckpt")
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times[1:], within_epoch_intervals(step_ends, len(data)), memory.peak_mb()


def training_gflop_per_image(model: torch.nn.Module, size: int, device: torch.device) -> float:
    x = torch.randn(2, 3, size, size, device=device)
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 2 / 1e9


def smp_model(backbone: str, classes: int) -> torch.nn.Module | None:
    try:
        import segmentation_models_pytorch as smp
    except ImportError:
        return None
    return smp.Unet(encoder_name=backbone, encoder_weights=None, classes=classes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", nargs="+", default=["resnet34:unet"])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8, help="steps per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="per round; the first is warm-up")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--channels-last", choices=["auto", "on", "off"], default="auto",
                        help="NHWC for every variant; auto: on a CUDA GPU, as train.py does")
    parser.add_argument("--out", default="benchmarks/results/train_step.json")
    args = parser.parse_args()
    device = torch.device(args.device)
    nhwc = args.channels_last == "on" or (args.channels_last == "auto" and device.type == "cuda")
    memory_format = torch.channels_last if nhwc else torch.contiguous_format
    data = batches(args.steps, args.batch_size, args.size, classes=4)
    results = []
    for pair in args.pairs:
        with tempfile.TemporaryDirectory() as folder:
            output = Path(folder)
            cfg = composed(pair, args.size, args.batch_size, output, device)
            L.seed_everything(0)
            reference = build_module(cfg, num_classes=4)
            peer = smp_model(pair.split(":")[0], 4) if pair.endswith(":unet") else None
            gflop = {"lightning": training_gflop_per_image(reference.model.to(device), args.size, device)}
            gflop["plain"] = gflop["lightning"]
            if peer is not None:
                gflop["smp"] = training_gflop_per_image(peer.to(device), args.size, device)
            walls: dict[str, list[float]] = {"lightning": [], "plain": [], "smp": []}
            steps: dict[str, list[float]] = {"lightning": [], "plain": [], "smp": []}
            peaks: dict[str, float] = {}
            for _ in range(args.rounds):  # interleaved: a drift of the machine hits every variant alike
                runs = {"lightning": lambda: lightning_epochs(cfg, data, args.epochs, device, output, memory_format),
                        "plain": lambda: plain_epochs(reference.model, reference.criterion, data, args.epochs, device,
                                                      output, memory_format)}
                if peer is not None:
                    runs["smp"] = lambda: plain_epochs(peer, reference.criterion, data, args.epochs, device, output,
                                                       memory_format)
                for name, run in runs.items():
                    epoch_times, step_times, peaks[name] = run()
                    walls[name] += epoch_times
                    steps[name] += step_times
            images = args.steps * args.batch_size
            row = {"pair": pair, "size": args.size, "batch_size": args.batch_size, "device": str(device),
                   "channels_last": nhwc,
                   "train_gflop_per_image": gflop}
            for name, epoch_times in walls.items():
                if epoch_times:
                    epoch = statistics.median(epoch_times)
                    step = statistics.median(steps[name])
                    row[name] = {"images_per_s": images / epoch, "epoch_s_median": epoch, "epoch_s_all": epoch_times,
                                 "step_s_median": step, "steps_timed": len(steps[name]),
                                 "achieved_gflop_per_s": gflop[name] * images / epoch, "peak_memory_mb": peaks[name]}
            row["overhead_lightning_over_plain"] = row["lightning"]["epoch_s_median"] / row["plain"]["epoch_s_median"]
            row["overhead_per_step"] = row["lightning"]["step_s_median"] / row["plain"]["step_s_median"]
            if "smp" in row:
                row["smp_over_plain"] = row["smp"]["epoch_s_median"] / row["plain"]["epoch_s_median"]
            results.append(row)
    write_results(args, results, device)
    print(f"{'pair':<18}{'variant':<11}{'images/s':>10}{'GFLOP/s':>10}{'peak MB':>10}  epoch/plain  step/plain")
    for row in results:
        for name in ("lightning", "plain", "smp"):
            if name in row:
                r = row[name]
                ratio = r["epoch_s_median"] / row["plain"]["epoch_s_median"]
                step_ratio = r["step_s_median"] / row["plain"]["step_s_median"]
                print(f"{row['pair']:<18}{name:<11}{r['images_per_s']:>10.2f}{r['achieved_gflop_per_s']:>10.1f}"
                      f"{r['peak_memory_mb']:>10.0f}  {ratio:>11.3f}  {step_ratio:>10.3f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
