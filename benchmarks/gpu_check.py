"""One command that measures the GPU: run it first on any machine with a GPU and record its table.

    python benchmarks/gpu_check.py                      # a GPU: the full check, under 8 minutes on one H100
    python benchmarks/gpu_check.py --smoke              # the CPU: tiny sizes, well under a minute (CI runs it)
    python benchmarks/gpu_check.py --out gpu_check.json # where the JSON goes (default: gpu_check.json here)

What it measures, each side by side with its reference in the same run:

1. **training**, U-Net with ResNet-18 and ResNet-34 encoders, 8 bands, 256² chips, batch 64, in fp32 and in
   bf16-mixed with channels-last: chips/s of the bare network stepping on tensors already in device memory
   (the reference: no loader, no Lightning) and of the runner's path (chip store resident on the device,
   ``ChipDataModule`` + ``SegmentationModule`` + Lightning ``Trainer``, D4 augmentation on the device), and
   their ratio (goal ≥ 0.9);
2. **a Landsat-size scene end to end**, 7,800² px of 8 float32 bands, from the prepared stack to the class-map
   COG (prepare excluded) with U-Net/ResNet-34 in bf16: wall time, Mpx/s, and where each second goes (read,
   cut windows, forward, blend, argmax, write, COG + overviews: ``predict_scene``'s own
   :class:`~deepgeo_runner.core.step_clock.StepClock`), the network's share, and the class map's hash;
3. **2-process DDP** training (the same U-Net/ResNet-34 bf16 step, ``strategy=ddp``) where two GPUs exist:
   chips/s of both processes together, against twice the single-GPU reference.

It prints one Markdown table and writes the same rows as JSON with the card's name and the versions.
``--smoke`` runs the same code on the CPU with tiny sizes (one encoder, fp32, 32² chips, a 384² scene with the
pointwise network) so that the command itself is tested; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the sibling benchmarks: train_throughput, predict_scene

FULL = dict(chip=256, batch=64, steps=30, warmup=5, encoders=("resnet18", "resnet34"), precisions=("fp32", "bf16"),
            scene=7800, window=256, scene_model="unet34", scene_batch=32, ddp_steps=30)
SMOKE = dict(chip=32, batch=4, steps=2, warmup=1, encoders=("resnet18",), precisions=("fp32",),
             scene=384, window=64, scene_model="pointwise", scene_batch=8, ddp_steps=2)
BANDS, CLASSES = 8, 4


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------------------------- training


def training_rows(sizes: dict, device, workdir: Path) -> list[dict]:
    import train_throughput as tt

    rows = []
    for encoder in sizes["encoders"]:
        for precision in sizes["precisions"]:
            bf16 = precision == "bf16"
            args = SimpleNamespace(bands=BANDS, classes=CLASSES, chip=sizes["chip"], batch=sizes["batch"],
                                   encoder=encoder, steps=sizes["steps"], warmup=sizes["warmup"], workers=0,
                                   bf16=bf16, channels_last=bf16)
            store = workdir / f"store-{sizes['chip']}"
            if not (store / "train_image.npy").exists():
                store.mkdir(parents=True, exist_ok=True)
                tt.make_store(store, (args.warmup + args.steps + 2) * args.batch, BANDS, args.chip, CLASSES)
            ref = tt.reference(args, device)
            ours = tt.ours(args, device, store, resident=True)
            label = f"U-Net/{encoder} {precision}{' channels-last' if bf16 else ''}, {args.chip}², batch {args.batch}"
            rows.append({"section": "training", "case": label, "reference": round(ref, 1),
                         "ours": round(ours, 1), "unit": "chips/s", "ratio": round(ours / ref, 3),
                         "note": "ours: resident chip store + ChipDataModule + SegmentationModule + Trainer; "
                                 "reference: the bare step on device tensors (goal ≥ 0.9)"})
            print(f"training {label}: reference {ref:.1f}, ours {ours:.1f} chips/s", file=sys.stderr)
    return rows


# -------------------------------------------------------------------------------------------------- scene


def scene_rows(sizes: dict, device, workdir: Path, amp: bool) -> list[dict]:
    import predict_scene as ps
    import rasterio

    from deepgeo_runner.core.step_clock import StepClock
    from deepgeo_runner.ml.predict import ClassLegend, OutputFormats, WindowSettings, predict_scene

    side = sizes["scene"]
    t0 = time.perf_counter()
    with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS"):  # the test scene's deflate on every core (not timed)
        scene = ps.make_scene(workdir / f"scene-{side}.tif", side, BANDS)
    made = time.perf_counter() - t0
    net = ps.build_model(sizes["scene_model"], BANDS, CLASSES)
    out = workdir / "prediction.tif"
    clock, inside = StepClock(), {"t": 0.0, "t0": 0.0}  # the network's own time, synchronized on a GPU

    def before(module, inputs) -> None:
        _sync(device)
        inside["t0"] = time.perf_counter()

    def after(module, inputs, output) -> None:
        _sync(device)
        inside["t"] += time.perf_counter() - inside["t0"]

    net.register_forward_pre_hook(before)
    net.register_forward_hook(after)
    colors = ["#1b7837", "#d6604d", "#2166ac", "#888888"]
    _sync(device)
    start = time.perf_counter()
    predict_scene(net, scene, out, WindowSettings(sizes["window"], 0.5, sizes["scene_batch"], amp=amp),
                  ClassLegend(list(range(1, CLASSES + 1)), [f"c{i}" for i in range(CLASSES)], colors),
                  device=device, progress=False, outputs=OutputFormats(cog=True), clock=clock)
    _sync(device)
    wall = time.perf_counter() - start
    with rasterio.open(out) as src:
        digest = hashlib.sha256(src.read(1).tobytes()).hexdigest()[:16]
    mpx = side * side / 1e6
    label = (f"{side}² ({mpx:.1f} Mpx) {sizes['scene_model']} {'bf16' if amp else 'fp32'}, window "
             f"{sizes['window']}, overlap 0.5, batch {sizes['scene_batch']} → COG")
    rows = [{"section": "scene", "case": label, "reference": round(inside["t"], 2),
             "ours": round(wall, 2), "unit": "s", "ratio": round(wall / max(inside["t"], 1e-9), 3),
             "note": f"{mpx / wall:.2f} Mpx/s whole; pipeline around the network "
                     f"{mpx / max(wall - inside['t'], 1e-9):.1f} Mpx/s; class map sha256 {digest}; "
                     f"reference = the network's forward inside the run (scene written in {made:.0f} s, not counted)"}]
    threads = {"read": "reader", "cut windows": "reader", "wait for the reader": "network", "forward": "network",
               "wait for the writer": "network", "blend": "writer", "argmax, encode": "writer",
               "write rows": "writer", "close outputs (COG, overviews)": "writer, after the last batch"}
    for key, thread in threads.items():
        seconds = clock.seconds.get(key, 0.0)
        rows.append({"section": "scene step", "case": key, "reference": None, "ours": round(seconds, 2),
                     "unit": "s", "ratio": round(seconds / wall, 3), "note": f"{thread} thread (threads overlap)"})
    print(f"scene {side}²: {wall:.1f} s whole, forward {inside['t']:.1f} s", file=sys.stderr)
    return rows


# ---------------------------------------------------------------------------------------------------- DDP


def ddp_child(args) -> None:
    """One process of the 2-GPU run (Lightning relaunches this script with the same argv for rank 1)."""
    import torch
    import train_throughput as tt

    sizes = SMOKE if args.smoke else FULL
    a = SimpleNamespace(bands=BANDS, classes=CLASSES, chip=sizes["chip"], batch=sizes["batch"], encoder="resnet34",
                        steps=sizes["ddp_steps"], warmup=sizes["warmup"], workers=0, bf16=True, channels_last=True)
    import lightning.pytorch as pl

    from deepgeo_runner.lit.datamodule import AugmentPlan, ChipDataModule
    from deepgeo_runner.lit.module import SegmentationModule

    store = Path(args.ddp_store)
    start = {}

    class Timer(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, idx):
            if idx == a.warmup:
                torch.cuda.synchronize()
                start["t"] = time.perf_counter()

        def on_train_batch_end(self, trainer, module, outputs, batch, idx):
            if idx == a.warmup + a.steps - 1:
                torch.cuda.synchronize()
                start["dt"] = time.perf_counter() - start["t"]

    torch.manual_seed(0)
    net = tt.build_net(a, torch.device("cpu"))
    module = SegmentationModule(net, lambda params: torch.optim.AdamW(params, lr=1e-3), None,
                                [f"c{i}" for i in range(CLASSES)])
    dm = ChipDataModule(store, batch_size=a.batch, augmentation=AugmentPlan("d4"), resident=True)
    trainer = pl.Trainer(accelerator="gpu", devices=2, strategy="ddp", max_steps=a.warmup + a.steps,
                         precision="bf16-mixed", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, callbacks=[Timer()],
                         use_distributed_sampler=False)
    trainer.fit(module, datamodule=dm)
    if trainer.global_rank == 0:
        Path(args.ddp_out).write_text(json.dumps({"chips_per_s": 2 * a.steps * a.batch / start["dt"]}))


def ddp_rows(sizes: dict, device, workdir: Path, smoke: bool) -> list[dict]:
    import torch

    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    case = "2-process DDP, U-Net/resnet34 bf16 channels-last, resident store"
    if gpus < 2:
        return [{"section": "ddp", "case": case, "reference": None, "ours": None, "unit": "chips/s", "ratio": None,
                 "note": f"skipped: needs 2 GPUs, found {gpus}"}]
    import train_throughput as tt

    store = workdir / "store-ddp"
    store.mkdir(exist_ok=True)
    n = (sizes["warmup"] + sizes["ddp_steps"] + 2) * sizes["batch"] * 2
    tt.make_store(store, n, BANDS, sizes["chip"], CLASSES)
    out = workdir / "ddp.json"
    cmd = [sys.executable, __file__, "--ddp-child", "--ddp-store", str(store), "--ddp-out", str(out)]
    cmd += ["--smoke"] if smoke else []
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 or not out.exists():
        return [{"section": "ddp", "case": case, "reference": None, "ours": None, "unit": "chips/s", "ratio": None,
                 "note": f"failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}"}]
    a = SimpleNamespace(bands=BANDS, classes=CLASSES, chip=sizes["chip"], batch=sizes["batch"], encoder="resnet34",
                        steps=sizes["ddp_steps"], warmup=sizes["warmup"], workers=0, bf16=True, channels_last=True)
    ref = 2 * tt.reference(a, device)
    ours = json.loads(out.read_text())["chips_per_s"]
    return [{"section": "ddp", "case": case, "reference": round(ref, 1), "ours": round(ours, 1), "unit": "chips/s",
             "ratio": round(ours / ref, 3), "note": "reference: 2 × the bare step on one GPU"}]


# --------------------------------------------------------------------------------------------------- main


def environment(device) -> dict:
    import lightning
    import torch

    card = torch.cuda.get_device_name(0) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores)"
    return {"device": card, "gpus": torch.cuda.device_count(), "torch": torch.__version__,
            "lightning": lightning.__version__, "python": platform.python_version(),
            "load_average": [round(x, 2) for x in os.getloadavg()], "date": time.strftime("%Y-%m-%d %H:%M")}


def markdown(rows: list[dict], env: dict, smoke: bool) -> str:
    def cell(v):
        return "" if v is None else f"{v:,}" if isinstance(v, float | int) else str(v)

    head = (f"gpu_check{' --smoke (CPU, tiny sizes: the numbers mean nothing)' if smoke else ''}: {env['device']}, "
            f"torch {env['torch']}, lightning {env['lightning']}, load {env['load_average']}, {env['date']}\n\n")
    lines = ["| section | case | reference | ours | unit | ours / reference | note |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append("| " + " | ".join(cell(r[k]) for k in ("section", "case", "reference", "ours", "unit", "ratio",
                                                           "note")) + " |")
    return head + "\n".join(lines)


def would_measure() -> str:
    f = FULL
    return (f"On a GPU this command measures: training chips/s, U-Net/{' and '.join(f['encoders'])}, "
            f"{BANDS} bands, {f['chip']}² chips, batch {f['batch']}, fp32 and bf16-mixed + channels-last, the runner's "
            "resident chip store + Trainer vs the bare network on device tensors; a "
            f"{f['scene']}² scene from prepared stack to COG with {f['scene_model']} in bf16 and the per-step table "
            "(read, normalize, forward, blend, argmax, write, COG); 2-process DDP training where two GPUs exist.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny sizes (CI): checks the command, not the GPU")
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    parser.add_argument("--workdir", type=Path, default=None, help="scratch (default: a temporary folder)")
    parser.add_argument("--skip", nargs="*", default=(), choices=("training", "scene", "ddp"))
    parser.add_argument("--ddp-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ddp-store", help=argparse.SUPPRESS)
    parser.add_argument("--ddp-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ddp_child:
        ddp_child(args)
        return
    import torch

    device = torch.device("cpu" if args.smoke or not torch.cuda.is_available() else "cuda")
    if device.type == "cpu" and not args.smoke:
        raise SystemExit("no GPU found: this check is for a GPU machine (run with --smoke to test the command on "
                         "the CPU).\n" + would_measure())
    if args.smoke:
        torch.set_num_threads(min(2, torch.get_num_threads()))
        print(would_measure(), file=sys.stderr)
    sizes = SMOKE if args.smoke else FULL
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    started = time.perf_counter()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        if "training" not in args.skip:
            rows += training_rows(sizes, device, workdir)
        if "scene" not in args.skip:
            rows += scene_rows(sizes, device, workdir, amp=device.type == "cuda")
        if "ddp" not in args.skip:
            rows += ddp_rows(sizes, device, workdir, args.smoke)
    env = environment(device)
    env["total_s"] = round(time.perf_counter() - started, 1)
    table = markdown(rows, env, args.smoke)
    print(table)
    print(f"\ntotal {env['total_s']} s")
    if args.smoke:
        print(would_measure())
    args.out.write_text(json.dumps({"smoke": args.smoke, "environment": env, "rows": rows,
                                    "would_measure": would_measure()}, indent=1))
    print(f"written: {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
