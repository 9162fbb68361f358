"""Whole-scene prediction: overlapping windows, blended scores, georeferenced rasters, streamed.

The scene is walked one *window row* at a time (windows at a constant stride, boundless at the
far edges). The weighted logits of a window row form a *block* of ``window`` image rows; blocks
are added into a rolling buffer only ``window`` rows high, and as soon as no later window can
touch a row it is normalized, turned into outputs and written. Memory is bounded by one window
row (it grows with the scene's width, never with its height) and nothing of the size of the
scene is ever held, in memory or on disk.

Outputs, all on exactly the input grid with nodata where the input had nodata:

- ``prediction.tif``: class ids (uint8, colour table, class names in the tags);
- ``prediction_proba.tif`` (optional): per-class probabilities, the softmax of the *blended
  logits* (so that the class map is exactly their argmax), stored as half floats (GDAL Float32
  with NBITS=16, read back as float32) or as uint8 ``round(254 p)`` with 255 as nodata;
- ``prediction_entropy.tif`` (optional): Shannon entropy of those probabilities divided by
  log K (0: certain, 1: all classes equally likely), float32 with NaN as nodata.

Several processes can share the work (``rank``/``world_size``): window rows are dealt out
``rank::world_size``; each process writes its blocks to its own part file, and rank 0, once
every part is complete, adds the blocks in scene order and writes the one set of outputs.
The merge goes through files only, so it needs no process group.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.windows import Window as RioWindow
from tqdm.auto import tqdm

from deepgeo_runner.atomic import atomic_path, output_errors, temp_path, write_text_atomic
from deepgeo_runner.geo.raster_io import Grid, rewrite_as_cog, valid_mask
from deepgeo_runner.geo.rasterize import NODATA, class_colormap
from deepgeo_runner.geo.stitch import BLEND_MODES, blend_profile, stride_for, window_origins

log = logging.getLogger(__name__)

PROBABILITY_FORMATS = ("none", "float16", "uint8")
PROBA_UINT8_SCALE = 254  # uint8 probabilities are round(254 p); 255 is nodata
TILE = 256
_VALID_CHUNK = 2048  # columns read at a time to find the nodata of finished rows
GDAL_CACHE_MB = 64  # GDAL's block cache (5 % of RAM by default) would otherwise grow with the scene


@dataclass(frozen=True)
class SceneOutputs:
    """The files one prediction writes (absent optional outputs are None)."""

    classes: Path
    probabilities: Path | None = None
    entropy: Path | None = None


def output_paths(out_path: str | Path, probabilities: str = "none", entropy: bool = False) -> SceneOutputs:
    """Where the outputs of a prediction into ``out_path`` go: ``<stem>_proba.tif`` and
    ``<stem>_entropy.tif`` beside the class map."""
    out_path = Path(out_path)
    stem, suffix = out_path.stem, out_path.suffix or ".tif"
    return SceneOutputs(
        out_path,
        out_path.with_name(f"{stem}_proba{suffix}") if probabilities != "none" else None,
        out_path.with_name(f"{stem}_entropy{suffix}") if entropy else None,
    )


def undo_dihedral(x: torch.Tensor, op: int) -> torch.Tensor:
    """The inverse of :func:`deepgeo_runner.ml.augment.dihedral` (``op`` in 0..7).

    ``dihedral`` rotates by k = op % 4 quarter turns, after a transpose when op ≥ 4; undoing it
    rotates back by -k, then transposes again when op ≥ 4.
    """
    if not 0 <= op < 8:
        raise ValueError(f"D4 op must be in 0..7, got {op}")
    x = torch.rot90(x, -(op % 4), dims=(-2, -1))
    return x.transpose(-1, -2) if op >= 4 else x


def forward_windows(
    model: torch.nn.Module, x: torch.Tensor, tta: bool = False, amp: bool = False
) -> torch.Tensor:
    """Logits (float32) of a batch of square windows; with ``tta``, the mean of the logits over
    the 8 dihedral transforms, each mapped back to the window's orientation."""
    from deepgeo_runner.ml.augment import dihedral

    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        if not tta:
            return model(x).float()
        total = None
        for op in range(8):
            out = undo_dihedral(model(dihedral(x, op)).float(), op)
            total = out if total is None else total + out
        return total / 8.0


def model_fingerprint(model: torch.nn.Module) -> str:
    """A short hash of the model's weights: tells one set of weights' part files from another's."""
    digest = hashlib.blake2b(digest_size=8)
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class _Plan:
    """Window origins, blend profiles and the shape of a block, for one scene."""

    def __init__(self, height: int, width: int, window: int, overlap: float, blend: str) -> None:
        if blend not in BLEND_MODES:
            raise ValueError(f"blend must be one of {list(BLEND_MODES)}, got '{blend}'")
        self.height, self.width, self.window = height, width, window
        self.stride = stride_for(window, overlap)
        self.rows = window_origins(height, window, self.stride)
        self.cols = window_origins(width, window, self.stride)

        def profiles(n: int) -> list[np.ndarray]:
            return [blend_profile(window, self.stride, blend, i == 0, i == n - 1) for i in range(n)]

        self.row_profiles, self.col_profiles = profiles(len(self.rows)), profiles(len(self.cols))

    def finished(self, i: int) -> tuple[int, int]:
        """Image rows that no window row after ``i`` touches: final once block ``i`` is added."""
        start = self.rows[i]
        end = self.height if i == len(self.rows) - 1 else self.rows[i + 1]
        return start, end


class _RowWriter:
    """A GeoTIFF written a band-interleaved row range at a time, in whole tile rows.

    Written under a temporary name and renamed by :meth:`close`, so an interrupted prediction
    never leaves a raster that looks complete.
    """

    def __init__(self, path: Path, grid: Grid, count: int, dtype: str, nodata: float | None,
                 band_names: Sequence[str], tags: dict | None = None, colormap: dict | None = None,
                 nbits: int | None = None, scale: float | None = None) -> None:
        self.path = path
        self.categorical = colormap is not None
        self.nbits = nbits
        self.tmp = temp_path(path)
        profile = {
            "driver": "GTiff", "width": grid.width, "height": grid.height, "count": count,
            "dtype": dtype, "crs": grid.crs, "transform": grid.transform, "nodata": nodata,
            "compress": "deflate", "tiled": True, "blockxsize": TILE, "blockysize": TILE,
            "BIGTIFF": "IF_SAFER",
        }
        if nbits:
            profile["nbits"] = nbits
        if colormap:
            profile["photometric"] = "palette"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.dst = rasterio.open(self.tmp, "w", **profile)
        if colormap:  # before the pixels: GDAL cannot change the colour model once writing
            self.dst.write_colormap(1, colormap)
        for i, name in enumerate(band_names, start=1):
            self.dst.set_band_description(i, name)
        if scale is not None:
            self.dst.scales = (scale,) * count
        if tags:
            self.dst.update_tags(**{k: str(v) for k, v in tags.items()})
        self.pending: list[np.ndarray] = []
        self.next_row = 0

    def write(self, rows: np.ndarray) -> None:
        """Append (count, n, W) rows below those written so far."""
        self.pending.append(rows)
        held = sum(p.shape[1] for p in self.pending)
        if held >= TILE or self.next_row + held == self.dst.height:
            data = np.concatenate(self.pending, axis=1) if len(self.pending) > 1 else self.pending[0]
            n = data.shape[1] if self.next_row + held == self.dst.height else (held // TILE) * TILE
            self.dst.write(data[:, :n], window=RioWindow(0, self.next_row, self.dst.width, n))
            self.next_row += n
            self.pending = [data[:, n:]] if n < data.shape[1] else []

    def close(self, cog: bool) -> Path:
        if self.next_row != self.dst.height:
            raise RuntimeError(f"{self.path.name}: {self.next_row} of {self.dst.height} rows written")
        self.dst.close()
        if cog:
            rewrite_as_cog(self.tmp, "nearest" if self.categorical else "average",
                           **({"NBITS": self.nbits} if self.nbits else {}))
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        if not self.dst.closed:
            self.dst.close()
        self.tmp.unlink(missing_ok=True)


def _open_writers(outputs: SceneOutputs, grid: Grid, class_ids: Sequence[int], class_names: Sequence[str],
                  class_colors: Sequence[str], probabilities: str) -> dict[str, _RowWriter]:
    """The writers of every output; if one cannot be opened, those already opened are aborted."""
    tags = {f"class_{i}": name for i, name in zip(class_ids, class_names, strict=True)}
    writers: dict[str, _RowWriter] = {}
    try:
        with output_errors(outputs.classes):
            writers["classes"] = _RowWriter(outputs.classes, grid, 1, "uint8", NODATA, ["class"], tags,
                                            class_colormap(class_colors, first_id=int(class_ids[0])))
            if outputs.probabilities is not None:
                names = [f"p_{n}" for n in class_names]
                if probabilities == "uint8":
                    writers["proba"] = _RowWriter(
                        outputs.probabilities, grid, len(class_ids), "uint8", 255, names,
                        {**tags, "encoding": f"probability = value / {PROBA_UINT8_SCALE}"},
                        scale=1.0 / PROBA_UINT8_SCALE)
                else:
                    writers["proba"] = _RowWriter(outputs.probabilities, grid, len(class_ids), "float32",
                                                  float("nan"), names, {**tags, "encoding": "half float"}, nbits=16)
            if outputs.entropy is not None:
                writers["entropy"] = _RowWriter(outputs.entropy, grid, 1, "float32", float("nan"), ["entropy"],
                                                {"encoding": "entropy / log(n_classes), 0 certain .. 1 uniform"})
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    return writers


def _read_valid(src: rasterio.DatasetReader, start: int, end: int) -> np.ndarray:
    """Where rows [start, end) of the input hold data in every band (read in column chunks)."""
    out = np.empty((end - start, src.width), dtype=bool)
    for c0 in range(0, src.width, _VALID_CHUNK):
        c1 = min(c0 + _VALID_CHUNK, src.width)
        out[:, c0:c1] = valid_mask(src.read(window=RioWindow(c0, start, c1 - c0, end - start)), src.nodata)
    return out


def _zeros(shape: tuple[int, ...], device: torch.device):
    """Accumulation arrays: numpy on the CPU (single-threaded elementwise work, which torch's
    thread pool slows down on busy machines), torch tensors on an accelerator."""
    if device.type == "cpu":
        return np.zeros(shape, dtype=np.float32)
    return torch.zeros(shape, dtype=torch.float32, device=device)


class _Accumulator:
    """The rolling sum of weighted logits and weights over ``window`` image rows."""

    def __init__(self, plan: _Plan, n_classes: int, device: torch.device) -> None:
        self.plan, self.k = plan, n_classes
        self.buf = _zeros((n_classes + 1, plan.window, plan.width), device)

    def add_and_finish(self, i: int, block):
        """Add block ``i``; return the finished rows and their blended logits (K, n, W)."""
        h = block.shape[1]
        self.buf[:, :h] += block
        start, end = self.plan.finished(i)
        n = end - start
        weight = self.buf[self.k, :n]
        weight = np.maximum(weight, 1e-12) if isinstance(weight, np.ndarray) else weight.clamp_min(1e-12)
        logits = self.buf[: self.k, :n] / weight
        s = self.plan.stride
        if n < self.plan.window:  # slide the buffer by one stride
            keep = self.buf[:, s:]
            keep = keep.copy() if isinstance(keep, np.ndarray) else keep.clone()
            self.buf[:, : self.plan.window - s] = keep
            self.buf[:, self.plan.window - s :] = 0
        else:
            self.buf[:] = 0
        return start, end, logits


class _BlockMaker:
    """Weighted logits of window rows: windows read in batches, boundless at the far edges.

    A background thread (with its own handle on the raster) reads and assembles the next
    batches while the network runs on the current one; GDAL releases the GIL while decoding.
    """

    PREFETCH = 2  # batches read ahead

    def __init__(self, model: torch.nn.Module, image_path: str | Path, plan: _Plan, n_classes: int,
                 batch_size: int, device: torch.device, tta: bool, amp: bool, standardize: bool) -> None:
        self.model, self.image_path, self.plan, self.k = model, image_path, plan, n_classes
        self.standardize = standardize
        self.batch_size, self.device, self.tta, self.amp = batch_size, device, tta, amp
        self._weights: dict[tuple, object] = {}

    def _weight(self, i: int, j: int, h: int, w: int):
        """The 2-D weight of window (i, j), cropped to the scene; few distinct ones, cached."""
        plan = self.plan
        key = (i == 0, i == len(plan.rows) - 1, j == 0, j == len(plan.cols) - 1, h, w)
        if key not in self._weights:
            weight = np.outer(plan.row_profiles[i][:h], plan.col_profiles[j][:w]).astype(np.float32)
            if self.device.type != "cpu":
                weight = torch.from_numpy(weight).to(self.device)
            self._weights[key] = weight
        return self._weights[key]

    def _read_batch(self, src: rasterio.DatasetReader, i: int, js: range) -> np.ndarray:
        """The (B, C, window, window) input of windows ``js`` of window row ``i``."""
        plan, win = self.plan, self.plan.window
        row = plan.rows[i]
        h = min(win, plan.height - row)
        c0, c_end = plan.cols[js[0]], plan.cols[js[-1]] + win
        c1 = min(c_end, plan.width)
        data = src.read(window=RioWindow(c0, row, c1 - c0, h)).astype(np.float32, copy=False)
        valid = valid_mask(data, src.nodata)
        padded = np.zeros((data.shape[0], win, c_end - c0), dtype=np.float32)
        padded[:, :h, : c1 - c0] = np.where(valid, data, 0.0)
        offsets = [plan.cols[j] - c0 for j in js]
        batch = np.stack([padded[:, :, o : o + win] for o in offsets])
        if self.standardize:  # per-chip normalization: each window on its own valid pixels
            from deepgeo_runner.geo.normalize import standardize_chips

            vpad = np.zeros((win, c_end - c0), dtype=bool)
            vpad[:h, : c1 - c0] = valid
            vbatch = np.stack([vpad[:, o : o + win] for o in offsets])
            batch = np.where(vbatch[:, None], standardize_chips(batch, valid=vbatch), 0.0)
            batch = batch.astype(np.float32, copy=False)
        return batch

    def blocks(self, rows: Sequence[int], bar: tqdm | None = None):
        """Yield ``(i, block)`` for the window rows ``rows``, in order."""
        from concurrent.futures import ThreadPoolExecutor

        plan, win = self.plan, self.plan.window
        tasks = [(i, range(b0, min(b0 + self.batch_size, len(plan.cols))))
                 for i in rows for b0 in range(0, len(plan.cols), self.batch_size)]
        with rasterio.open(self.image_path) as src, ThreadPoolExecutor(1) as pool:
            pending = [pool.submit(self._read_batch, src, *t) for t in tasks[: self.PREFETCH]]
            block, current = None, None
            for n_task, (i, js) in enumerate(tasks):
                batch = pending.pop(0).result()
                if n_task + self.PREFETCH < len(tasks):
                    pending.append(pool.submit(self._read_batch, src, *tasks[n_task + self.PREFETCH]))
                h = min(win, plan.height - plan.rows[i])
                if i != current:
                    if block is not None:
                        yield current, block
                    block, current = _zeros((self.k + 1, h, plan.width), self.device), i
                x = torch.from_numpy(batch).to(self.device)
                logits = forward_windows(self.model, x, self.tta, self.amp)
                if self.device.type == "cpu":
                    logits = logits.numpy()
                for n, j in enumerate(js):
                    c = plan.cols[j]
                    w = min(win, plan.width - c)
                    weight = self._weight(i, j, h, w)
                    block[: self.k, :, c : c + w] += logits[n, :, :h, :w] * weight
                    block[self.k, :, c : c + w] += weight
                if bar is not None:
                    bar.update(len(js))
            if block is not None:
                yield current, block


def _finish_rows(logits, valid: np.ndarray, lut: np.ndarray, writers: dict[str, _RowWriter],
                 probabilities: str) -> None:
    """Blended logits (K, n, W) of finished rows → class ids, probabilities, entropy → writers."""
    if isinstance(logits, torch.Tensor):
        best = logits.argmax(dim=0).cpu().numpy()
        proba = torch.softmax(logits, dim=0).cpu().numpy() if len(writers) > 1 else None
    else:
        best = logits.argmax(axis=0)
        proba = None
        if len(writers) > 1:
            proba = np.exp(logits - logits.max(axis=0, keepdims=True))
            proba /= proba.sum(axis=0, keepdims=True)
    writers["classes"].write(np.where(valid, lut[best], NODATA).astype(np.uint8)[None])
    if "proba" in writers:
        if probabilities == "uint8":
            out = np.rint(proba * PROBA_UINT8_SCALE).astype(np.uint8)
            out[:, ~valid] = 255
        else:
            out = proba.astype(np.float32)
            out[:, ~valid] = np.nan
        writers["proba"].write(out)
    if "entropy" in writers:
        k = proba.shape[0]
        ent = -(proba * np.log(np.maximum(proba, 1e-12))).sum(axis=0) / max(math.log(k), 1e-12)
        ent = ent.astype(np.float32)
        ent[~valid] = np.nan
        writers["entropy"].write(ent[None])


def _part_paths(parts_dir: Path, rank: int) -> tuple[Path, Path]:
    return parts_dir / f"part-{rank}.f32", parts_dir / f"part-{rank}.done.json"


def _wait_for_parts(parts_dir: Path, world_size: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    missing = list(range(world_size))
    while missing:
        missing = [r for r in missing if not _part_paths(parts_dir, r)[1].exists()]
        if not missing:
            return
        if time.monotonic() > deadline:
            from deepgeo_runner.errors import StageError

            raise StageError(
                f"predict: ranks {missing} did not finish their share within {timeout_s:.0f} s "
                f"(no marker in {parts_dir}); check those processes' logs."
            )
        time.sleep(0.2)


def _write_blocks(src, plan, blocks, n_classes: int, device, lut, probabilities, cog: bool, writers) -> None:
    """Accumulate blended blocks in scene order and write each finished strip to ``writers``.

    The writers are committed (renamed into place) only when every block went through;
    on any error they are aborted, so no half-written output appears.
    """
    try:
        with output_errors(writers["classes"].path):  # while the temporary files still hold the space
            acc = _Accumulator(plan, n_classes, device)
            for i, block in blocks:
                start, end, logits = acc.add_and_finish(i, block)
                _finish_rows(logits, _read_valid(src, start, end), lut, writers, probabilities)
            for w in writers.values():
                w.close(cog)
    except BaseException:
        for w in writers.values():
            w.abort()
        raise


def _part_blocks(parts_dir: Path, world_size: int, plan, block_shape: tuple[int, ...], device):
    """The blocks written by every rank's part file, back in scene order."""
    block_bytes = int(np.prod(block_shape)) * 4
    handles = {r: open(_part_paths(parts_dir, r)[0], "rb") for r in range(world_size)}
    try:
        for i in range(len(plan.rows)):
            f = handles[i % world_size]
            f.seek((i // world_size) * block_bytes)
            block = np.frombuffer(f.read(block_bytes), dtype=np.float32).reshape(block_shape)
            block_h = block[:, : min(plan.window, plan.height - plan.rows[i])]
            if device.type != "cpu":
                block_h = torch.from_numpy(block_h.copy()).to(device)
            yield i, block_h
    finally:
        for f in handles.values():
            f.close()


@torch.no_grad()
def predict_scene(
    model: torch.nn.Module,
    image_path: str | Path,
    out_path: str | Path,
    window: int,
    overlap: float,
    batch_size: int,
    class_ids: Sequence[int],
    class_names: Sequence[str],
    class_colors: Sequence[str],
    device: str | torch.device = "cpu",
    progress: bool = True,
    *,
    blend: str = "hann",
    probabilities: str = "none",
    entropy: bool = False,
    tta: bool = False,
    amp: bool = False,
    cog: bool = False,
    rank: int = 0,
    world_size: int = 1,
    parts_timeout_s: float = 3600.0,
    standardize_windows: bool = False,
) -> Path:
    """Classify every pixel of ``image_path`` (a prepared, normalized stack) into ``out_path``.

    Args:
        model: maps (B, C, window, window) to logits (B, K, window, window).
        class_ids: the id written for each of the K model outputs (e.g. 1..N).
        class_names, class_colors: for the colour table and metadata of the class map.
        blend: ``hann`` (smooth weights, seamless) or ``center`` (overlap-tile: each window
            writes only its central stride × stride square).
        probabilities: ``none``, ``float16`` or ``uint8`` (see the module docstring).
        entropy: also write the normalized entropy raster.
        tta: average the logits over the 8 dihedral transforms of each window (8× the compute).
        amp: bfloat16 autocast around the forward pass.
        cog: rewrite the outputs as Cloud-Optimized GeoTIFFs (with overviews) at the end.
        rank, world_size: this process's share of the window rows; every rank must call this
            with the same arguments. Ranks > 0 return once their part file is written; rank 0
            waits up to ``parts_timeout_s`` for the others, then writes the outputs.
        standardize_windows: standardize each window on its own valid pixels before the
            forward pass (for stacks prepared with per-chip normalization).

    Returns:
        The class map's path (the optional outputs lie beside it, see :func:`output_paths`).
    """
    if probabilities not in PROBABILITY_FORMATS:
        raise ValueError(f"probabilities must be one of {list(PROBABILITY_FORMATS)}, got '{probabilities}'")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world_size {world_size}")
    out_path = Path(out_path)
    outputs = output_paths(out_path, probabilities, entropy)
    device = torch.device(device)
    model = model.eval().to(device)
    n_classes = len(class_ids)
    lut = np.asarray(class_ids, dtype=np.uint8)
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 1024 * 1024), rasterio.open(image_path) as src:
        src.read(1, window=RioWindow(0, 0, 1, 1))  # GDAL sizes its block cache once, at first use
        grid = Grid(src.crs, src.transform, src.width, src.height)
        plan = _Plan(src.height, src.width, window, overlap, blend)
        make_block = _BlockMaker(model, image_path, plan, n_classes, batch_size, device, tta, amp,
                                 standardize_windows)
        mine = [i for i in range(len(plan.rows)) if i % world_size == rank]
        if world_size > 1:
            log.info("predict: rank %d of %d classifies %d of %d window rows on %s", rank, world_size,
                     len(mine), len(plan.rows), device)
        bar = tqdm(total=len(mine) * len(plan.cols), desc=f"predict windows (rank {rank})" if world_size > 1
                   else "predict windows", disable=not progress)
        def assemble(blocks) -> None:
            _write_blocks(src, plan, blocks, n_classes, device, lut, probabilities, cog,
                          _open_writers(outputs, grid, class_ids, class_names, class_colors, probabilities))

        if world_size == 1:
            assemble(make_block.blocks(mine, bar))
            bar.close()
            return out_path

        # several processes: blocks go to this rank's part file, full height, in order
        token = hashlib.blake2b(json.dumps([
            str(Path(image_path).resolve()), os.stat(image_path).st_size, os.stat(image_path).st_mtime_ns,
            window, plan.stride, blend, tta, amp, n_classes, world_size, model_fingerprint(model),
        ]).encode(), digest_size=8).hexdigest()
        parts_dir = out_path.parent / f".{out_path.name}.parts-{token}"
        parts_dir.mkdir(parents=True, exist_ok=True)
        part, marker = _part_paths(parts_dir, rank)
        block_shape = (n_classes + 1, plan.window, plan.width)
        with atomic_path(part, what=f"rank {rank}'s share of {out_path.name}") as part_tmp, open(part_tmp, "wb") as f:
            for _, block in make_block.blocks(mine, bar):
                block = block if isinstance(block, np.ndarray) else block.cpu().numpy()
                full = np.zeros(block_shape, dtype=np.float32)
                full[:, : block.shape[1]] = block
                f.write(full.tobytes())
        bar.close()
        write_text_atomic(marker, json.dumps({"rank": rank, "rows": mine, "block_shape": list(block_shape)}))
        if rank != 0:
            return out_path
        _wait_for_parts(parts_dir, world_size, parts_timeout_s)
        assemble(_part_blocks(parts_dir, world_size, plan, block_shape, device))
        shutil.rmtree(parts_dir, ignore_errors=True)
    return out_path
