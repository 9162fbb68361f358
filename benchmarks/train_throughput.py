"""Training throughput through our DataModule + LightningModule vs the device-resident reference.

The reference is the GPU itself: the same network trained on random chips that already sit
in device memory (no loader, no Lightning). Ours: the chip store, loaded device-resident
(``data.device_resident``) or read from disk, through ChipDataModule, SegmentationModule and
a Lightning Trainer, with the same precision and memory format. One run prints both and
their ratio (goal on an H100 with U-Net/ResNet-34, 8 bands, 256², batch 64, bf16 +
channels-last: ≥ 0.9).

    python benchmarks/train_throughput.py                       # CUDA: the issue's setting
    python benchmarks/train_throughput.py --chip 64 --batch 8 --encoder resnet18 --steps 5   # CPU smoke
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def make_store(store: Path, n: int, bands: int, chip: int, classes: int) -> None:
    rng = np.random.default_rng(0)
    images = np.lib.format.open_memmap(store / "train_image.npy", "w+", np.float32, (n, bands, chip, chip))
    masks = np.lib.format.open_memmap(store / "train_mask.npy", "w+", np.uint8, (n, chip, chip))
    for i in range(n):
        images[i] = rng.standard_normal((bands, chip, chip), dtype=np.float32)
        masks[i] = rng.integers(0, classes, (chip, chip), dtype=np.uint8)
    images.flush()
    masks.flush()
    for split in ("val", "test"):  # the DataModule expects them; tiny
        np.save(store / f"{split}_image.npy", np.asarray(images[:2]))
        np.save(store / f"{split}_mask.npy", np.asarray(masks[:2]))


def build_net(args, device):
    from deepgeo_runner.ml.models import smp_model

    net = smp_model(args.bands, args.classes, arch="Unet", encoder=args.encoder, encoder_weights=None)
    net = net.to(device)
    if args.channels_last:
        net = net.to(memory_format=torch.channels_last)
    return net


def reference(args, device) -> float:
    """Chips/s of the bare training step on tensors already on the device."""
    torch.manual_seed(0)
    net = build_net(args, device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x = torch.randn(args.batch, args.bands, args.chip, args.chip, device=device)
    y = torch.randint(0, args.classes, (args.batch, args.chip, args.chip), device=device)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    dtype = torch.bfloat16 if args.bf16 else torch.float32

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=args.bf16):
            loss = torch.nn.functional.cross_entropy(net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return args.steps * args.batch / (time.perf_counter() - start)


def ours(args, device, store: Path, resident: bool) -> float:
    import lightning.pytorch as pl

    from deepgeo_runner.lit.datamodule import AugmentPlan, ChipDataModule
    from deepgeo_runner.lit.module import SegmentationModule

    class Timer(pl.Callback):
        def __init__(self) -> None:
            self.start = None
            self.steps = 0

        def on_train_batch_start(self, trainer, module, batch, idx):
            if idx == args.warmup:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                self.start = time.perf_counter()

        def on_train_batch_end(self, trainer, module, outputs, batch, idx):
            if idx >= args.warmup:
                self.steps += 1
            if idx == args.warmup + args.steps - 1:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                self.elapsed = time.perf_counter() - self.start

    torch.manual_seed(0)
    net = build_net(args, torch.device("cpu"))
    module = SegmentationModule(net, lambda params: torch.optim.AdamW(params, lr=1e-3), None,
                                [f"c{i}" for i in range(args.classes)])
    dm = ChipDataModule(store, batch_size=args.batch, num_workers=0 if resident else args.workers,
                        augmentation=AugmentPlan("d4"), resident=resident)
    timer = Timer()
    trainer = pl.Trainer(
        accelerator=device.type, devices=1, max_steps=args.warmup + args.steps,
        precision="bf16-mixed" if args.bf16 else "32-true", logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, callbacks=[timer], use_distributed_sampler=False,
    )
    trainer.fit(module, datamodule=dm)
    return timer.steps * args.batch / timer.elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bands", type=int, default=8)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--chip", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--encoder", default="resnet34")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--no-bf16", dest="bf16", action="store_false")
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        args.bf16 = False
    n_chips = (args.warmup + args.steps + 2) * args.batch
    with tempfile.TemporaryDirectory(prefix="train-bench-") as tmp:
        store = Path(tmp)
        make_store(store, n_chips, args.bands, args.chip, args.classes)
        ref = reference(args, device)
        resident = ours(args, device, store, resident=True)
        disk = ours(args, device, store, resident=False)
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    print(f"\nU-Net/{args.encoder}, {args.bands} bands, {args.chip}^2, batch {args.batch}, "
          f"{'bf16' if args.bf16 else 'fp32'}{' channels-last' if args.channels_last else ''}, {name}")
    print(f"{'path':48s} {'chips/s':>9s} {'vs reference':>13s}")
    for label, value in (("reference: tensors already on the device", ref),
                         ("ours: DataModule resident + Lightning", resident),
                         (f"ours: DataModule from disk ({args.workers} workers) + Lightning", disk)):
        print(f"{label:48s} {value:9.1f} {value / ref:12.2f}x")


if __name__ == "__main__":
    main()
