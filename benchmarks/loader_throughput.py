"""Chip loading throughput: our chip store vs torchgeo's geo-sampler vs an in-memory ceiling.

One command, one run, the same prepared GeoTIFF (8 bands float32), 256×256 chips, batch 32:

    python benchmarks/loader_throughput.py            # --size 4096 --batches 20

Prints chips/s of
  * ours: the chip store (memory-mapped .npy) through ChipDataModule's training loader,
    with 0 and 2 workers (the default is data.num_workers);
  * torchgeo: RasterDataset + RandomGeoSampler + DataLoader (stack_samples), 2 workers;
  * ceiling: random 256² windows sliced from the scene held in RAM as one numpy array;
and the ratios ours / torchgeo and ours / ceiling.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from affine import Affine

CHIP, BANDS, BATCH = 256, 8, 32


def make_scene(path: Path, size: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    data = rng.standard_normal((BANDS, size, size), dtype=np.float32)
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=BANDS,
                       dtype="float32", crs="EPSG:32722", transform=Affine(30, 0, 6e5, 0, -30, 9.6e6),
                       tiled=True, blockxsize=256, blockysize=256) as dst:
        dst.write(data)
    return data


def make_store(store: Path, scene: np.ndarray, n: int) -> None:
    rng = np.random.default_rng(1)
    size = scene.shape[1]
    images = np.lib.format.open_memmap(store / "train_image.npy", "w+", np.float32, (n, BANDS, CHIP, CHIP))
    masks = np.lib.format.open_memmap(store / "train_mask.npy", "w+", np.uint8, (n, CHIP, CHIP))
    for i in range(n):
        r, c = rng.integers(0, size - CHIP, 2)
        images[i] = scene[:, r:r + CHIP, c:c + CHIP]
        masks[i] = (scene[0, r:r + CHIP, c:c + CHIP] > 0).astype(np.uint8)
    images.flush()
    masks.flush()


def rate(batches, n_batches: int, warmup: int = 2) -> float:
    it = iter(batches)
    for _ in range(warmup):
        next(it)
    start = time.perf_counter()
    chips = 0
    for _ in range(n_batches):
        batch = next(it)
        chips += len(batch["image"])
    return chips / (time.perf_counter() - start)


def ours(store: Path, workers: int, n_batches: int) -> float:
    from deepgeo_runner.lit.datamodule import AugmentPlan, ChipDataModule

    dm = ChipDataModule(store, batch_size=BATCH, num_workers=workers, augmentation=AugmentPlan("none"))
    dm.setup()
    loader = dm.train_dataloader()

    def forever():
        while True:
            yield from loader

    return rate(forever(), n_batches)


def torchgeo_rate(path: Path, workers: int, n_batches: int) -> float:
    from torch.utils.data import DataLoader
    from torchgeo.datasets import RasterDataset, stack_samples
    from torchgeo.samplers import RandomGeoSampler

    class Scene(RasterDataset):
        filename_glob = path.name
        is_image = True

    ds = Scene(paths=str(path.parent))
    sampler = RandomGeoSampler(ds, size=CHIP, length=(n_batches + 4) * BATCH)
    loader = DataLoader(ds, batch_size=BATCH, sampler=sampler, num_workers=workers,
                        collate_fn=stack_samples)
    return rate(loader, n_batches)


def ceiling(scene: np.ndarray, n_batches: int) -> float:
    rng = np.random.default_rng(2)
    size = scene.shape[1]

    def batches():
        while True:
            rows, cols = rng.integers(0, size - CHIP, (2, BATCH))
            yield {"image": torch.from_numpy(np.stack([scene[:, r:r + CHIP, c:c + CHIP]
                                                       for r, c in zip(rows, cols, strict=True)]))}

    return rate(batches(), n_batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=4096, help="scene side in pixels")
    parser.add_argument("--chips", type=int, default=512, help="chips in the store")
    parser.add_argument("--batches", type=int, default=20, help="timed batches per case")
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="loader-bench-") as tmp:
        tmp = Path(tmp)
        (tmp / "scene").mkdir()
        (tmp / "store").mkdir()
        scene = make_scene(tmp / "scene" / "prepared.tif", args.size)
        make_store(tmp / "store", scene, args.chips)
        results = {
            "ceiling: numpy slices in RAM": ceiling(scene, args.batches),
            "ours: chip store, 0 workers": ours(tmp / "store", 0, args.batches),
            "ours: chip store, 2 workers": ours(tmp / "store", 2, args.batches),
            "torchgeo: RandomGeoSampler, 2 workers": torchgeo_rate(
                tmp / "scene" / "prepared.tif", 2, max(3, args.batches // 4)),
        }
    best_ours = max(v for k, v in results.items() if k.startswith("ours"))
    tg = results["torchgeo: RandomGeoSampler, 2 workers"]
    top = results["ceiling: numpy slices in RAM"]
    print(f"\n{BANDS} bands float32, {CHIP}x{CHIP} chips, batch {BATCH}, scene {args.size}^2, "
          f"{torch.get_num_threads()} torch threads")
    print(f"{'loader':42s} {'chips/s':>10s} {'vs torchgeo':>12s} {'vs ceiling':>11s}")
    for name, value in results.items():
        print(f"{name:42s} {value:10.1f} {value / tg:11.1f}x {value / top:10.2f}x")
    print(f"\nbest of ours / torchgeo = {best_ours / tg:.1f}x (goal >= 10x); "
          f"best of ours / ceiling = {best_ours / top:.2f}x (goal >= 0.7x)")


if __name__ == "__main__":
    main()
