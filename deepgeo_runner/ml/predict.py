"""Whole-scene prediction: the network over overlapping windows, blended scores, streamed outputs.

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

Several processes can share the work (``rank``/``world_size``): each predicts its share of the
window rows into a part file and rank 0 assembles them (:mod:`deepgeo_runner.ml.predict_parts`).

Three threads overlap: a reader reads the next batches of windows (each image row once: the rows a window
row shares with the next are kept) and, for raw bands, prepares them (:class:`RawInput`); the caller's
thread runs the network; a writer blends the logits, turns finished rows into the outputs and writes them.
:class:`~deepgeo_runner.core.step_clock.StepClock` says where the seconds go.

What lives here is the forward pass (batches of windows, test-time augmentation, autocast), the
accumulation of blocks and the turning of blended logits into the outputs and their encodings.
Where windows go and how they are weighted is :mod:`deepgeo_runner.geo.stitch`
(:class:`~deepgeo_runner.geo.stitch.WindowPlan`); how a raster is written (tiles, compression,
COG, temporary names) is :mod:`deepgeo_runner.geo.raster_io`; how ranks share a scene is
:mod:`deepgeo_runner.ml.predict_parts`.
"""

from __future__ import annotations

import logging
import math
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from rasterio.windows import Window as RioWindow

from deepgeo_runner.core.console import progress as progress_bar
from deepgeo_runner.core.step_clock import NO_CLOCK, StepClock
from deepgeo_runner.geo.nodata import NodataValue, read_valid
from deepgeo_runner.geo.normalize import standardize_chips
from deepgeo_runner.geo.raster_io import Grid, RowAppender, open_raster_writer, valid_mask
from deepgeo_runner.geo.rasterize import NODATA, class_colormap
from deepgeo_runner.geo.stitch import WindowPlan
from deepgeo_runner.ml.augment import dihedral
from deepgeo_runner.ml.choices import ProbabilityFormat
from deepgeo_runner.ml.predict_parts import (  # noqa: F401  (model_fingerprint: importable from here as before)
    model_fingerprint,
    parts_dir,
    read_parts,
    wait_for_parts,
    write_part,
)

log = logging.getLogger(__name__)

PROBABILITY_FORMATS = tuple(f.value for f in ProbabilityFormat)
PROBA_UINT8_SCALE = 254  # uint8 probabilities are round(254 p); 255 is nodata
_VALID_CHUNK = 2048  # columns read at a time to find the nodata of finished rows
GDAL_CACHE_MB = 64  # GDAL's block cache (5 % of RAM by default) would otherwise grow with the scene


@dataclass(frozen=True)
class SceneOutputs:
    """The files one prediction writes (absent optional outputs are None)."""

    classes: Path
    probabilities: Path | None = None
    entropy: Path | None = None


@dataclass(frozen=True)
class RawInput:
    """The windows come from the raw bands: which pixels hold data is decided like preparation decides it
    (``nodata`` overriding the file's, ``rule``, ``dates``). Without ``prepare``, the model prepares them
    itself (an exported graph, :mod:`deepgeo_runner.export.graph`): nodata pixels and the padding beyond the
    scene's far edges reach it as NaN, which the graph takes for nodata. With ``prepare`` (a checkpoint's
    network), the rows read become features first, once per pixel read, on the model's device:
    ``prepare(raw (C, h, w), valid (h, w)) → (features (F, h, w) with nodata 0, numpy or a tensor on the
    device; valid (h, w))``, and the windows are cut from them as from a prepared stack."""

    nodata: NodataValue = None
    rule: str = "gdal"
    dates: int = 1
    also: Callable[[np.ndarray], np.ndarray] | None = None  # more invalid pixels (e.g. undefined indices)
    prepare: Callable[[np.ndarray, np.ndarray], tuple[Any, np.ndarray]] | None = None

    def valid(self, src: rasterio.DatasetReader, data: np.ndarray, window: RioWindow,
              also: bool = True) -> np.ndarray:
        """The pixels of ``data`` holding data; ``also=False``: by nodata only (``prepare`` finds the rest)."""
        valid = read_valid(src, data, window, self.nodata, self.rule, dates=self.dates)
        return valid & self.also(data) if also and self.also is not None else valid


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
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        if not tta:
            return model(x).float()
        total = None
        for op in range(8):
            out = undo_dihedral(model(dihedral(x, op)).float(), op)
            total = out if total is None else total + out
        return total / 8.0


@contextmanager
def _open_outputs(outputs: SceneOutputs, grid: Grid, legend: ClassLegend,
                  formats: OutputFormats) -> Iterator[dict[str, RowAppender]]:
    """Every output opened for writing finished rows top down, keyed ``classes``, ``proba``, ``entropy``.

    Each is written under a temporary name (:func:`open_raster_writer`) and, when the block exits
    without error and every row arrived, rewritten as a COG with ``cog`` and renamed into place,
    the class map first; on any error the outputs not yet in place are removed.
    """
    class_ids, class_names, probabilities, cog = legend.ids, legend.names, formats.probabilities, formats.cog
    tags = {f"class_{i}": name for i, name in zip(class_ids, class_names, strict=True)}
    specs: list[tuple[str, Path, dict]] = [("classes", outputs.classes, dict(
        count=1, dtype="uint8", nodata=NODATA, band_names=["class"], tags=tags,
        colormap=class_colormap(legend.colors, first_id=int(class_ids[0]))))]
    if outputs.probabilities is not None:
        proba = dict(count=len(class_ids), band_names=[f"p_{n}" for n in class_names])
        if probabilities == "uint8":
            proba.update(dtype="uint8", nodata=255, scale=1.0 / PROBA_UINT8_SCALE,
                         tags={**tags, "encoding": f"probability = value / {PROBA_UINT8_SCALE}"})
        else:
            proba.update(dtype="float32", nodata=float("nan"), nbits=16, tags={**tags, "encoding": "half float"})
        specs.append(("proba", outputs.probabilities, proba))
    if outputs.entropy is not None:
        specs.append(("entropy", outputs.entropy, dict(
            count=1, dtype="float32", nodata=float("nan"), band_names=["entropy"],
            tags={"encoding": "entropy / log(n_classes), 0 certain .. 1 uniform"})))
    with ExitStack() as stack:
        writers: dict[str, RowAppender] = {}
        # the class map is opened last, so that it is committed first and that a disk error
        # while writing the rows is reported against it
        for key, path, options in reversed(specs):
            # whole tiles even on a small scene; GDAL's default zlevel (6); no compression threads (the
            # writer thread compresses). With cog the temporary file is rewritten (and compressed, on every
            # core) by the COG driver: the class map's is stored uncompressed (quicker to write and to
            # read back; the COG's bytes are the same), the larger ones deflated lightly
            zlevel = (0 if key == "classes" else 1) if cog else 6
            dst = stack.enter_context(open_raster_writer(path, grid, zlevel=zlevel, cog=cog, tiled=True,
                                                         num_threads=None, **options))
            writers[key] = RowAppender(dst, what=path.name)
        yield {key: writers[key] for key, _, _ in specs}
        for writer in writers.values():
            writer.finish()

def _read_valid(src: rasterio.DatasetReader, start: int, end: int, raw: RawInput | None = None) -> np.ndarray:
    """Where rows [start, end) of the input hold data in every band (read in column chunks)."""
    out = np.empty((end - start, src.width), dtype=bool)
    for c0 in range(0, src.width, _VALID_CHUNK):
        c1 = min(c0 + _VALID_CHUNK, src.width)
        window = RioWindow(c0, start, c1 - c0, end - start)
        data = src.read(window=window)
        out[:, c0:c1] = valid_mask(data, src.nodata) if raw is None else raw.valid(src, data, window)
    return out


def _zeros(shape: tuple[int, ...], device: torch.device):
    """Accumulation arrays: numpy on the CPU (single-threaded elementwise work, which torch's
    thread pool slows down on busy machines), torch tensors on an accelerator."""
    if device.type == "cpu":
        return np.zeros(shape, dtype=np.float32)
    return torch.zeros(shape, dtype=torch.float32, device=device)


def _to_device(array: np.ndarray, device: torch.device):
    """A float32 numpy array as :func:`_zeros` keeps it on ``device``."""
    return array if device.type == "cpu" else torch.from_numpy(array.copy()).to(device)


def _to_numpy(block) -> np.ndarray:
    return block if isinstance(block, np.ndarray) else block.cpu().numpy()


class _Accumulator:
    """The rolling sum of weighted logits and weights over ``window`` image rows."""

    def __init__(self, plan: WindowPlan, n_classes: int, device: torch.device) -> None:
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


def _cut_windows(data, offsets: Sequence[int], win: int, fill: float = 0):
    """(B, ..., win, win): the windows of ``data`` (..., h, w; numpy, or a tensor on its device) starting at
    column ``offsets``, ``fill`` (zero, False; NaN for a graph reading raw bands) beyond its rows and columns
    (the boundless far edges); one copy, no padded intermediate."""
    h, w = data.shape[-2:]
    shape = (len(offsets), *data.shape[:-2], win, win)
    edge = h < win or offsets[-1] + win > w
    if isinstance(data, torch.Tensor):
        out = (torch.full(shape, fill, dtype=data.dtype, device=data.device) if edge
               else torch.empty(shape, dtype=data.dtype, device=data.device))
    else:
        out = np.full(shape, fill, dtype=data.dtype) if edge else np.empty(shape, dtype=data.dtype)
    for n, o in enumerate(offsets):
        cw = min(win, w - o)
        out[n, ..., :h, :cw] = data[..., o : o + cw]
    return out


@dataclass(frozen=True)
class _KeptRows:
    """The input rows from image row ``start`` down that a batch's next window row shares with the one read,
    over columns ``cols``, and where they hold data."""

    start: int
    cols: tuple[int, int]
    data: Any
    valid: np.ndarray


def _copy(data):
    return data.clone() if isinstance(data, torch.Tensor) else data.copy()


def _join_rows(above, below):
    """Rows ``above`` then ``below`` ((C, h, w) numpy arrays or tensors)."""
    if isinstance(above, torch.Tensor):
        return torch.cat([above, below], dim=1)
    return np.concatenate([above, below], axis=1)


class _BlockMaker:
    """Weighted logits of window rows: windows read in batches, boundless at the far edges.

    A background thread (with its own handle on the raster) reads and assembles the next
    batches while the network runs on the current one; GDAL releases the GIL while decoding.
    """

    PREFETCH = 2  # batches read ahead

    def __init__(self, model: torch.nn.Module, image_path: str | Path, plan: WindowPlan, n_classes: int,
                 windows: WindowSettings, device: torch.device, raw: RawInput | None = None,
                 clock: StepClock = NO_CLOCK) -> None:
        self.model, self.image_path, self.plan, self.k, self.clock = model, image_path, plan, n_classes, clock
        # per-chip normalization of prepared windows: a prepared stack's, or raw bands prepared here
        self.standardize = windows.standardize and (raw is None or raw.prepare is not None)
        self.raw = raw
        self.batch_size, self.device, self.tta, self.amp = windows.batch_size, device, windows.tta, windows.amp
        self._weights: dict[tuple, object] = {}
        self._kept: dict[int, _KeptRows] = {}  # by a batch's first window: its rows the next window row shares
        # window row i → where its rows hold data, for the output's nodata (no second read of the scene);
        # the writer pops each as it goes; None: not kept (the part files of several ranks)
        self.valid_rows: dict[int, np.ndarray | None] | None = {}

    def _weight(self, i: int, j: int):
        """The weight of window (i, j) on the device; few distinct ones, cached."""
        key = self.plan.weight_kind(i, j)
        if key not in self._weights:
            self._weights[key] = _to_device(self.plan.weight(i, j), self.device)
        return self._weights[key]

    def _read_batch(self, src: rasterio.DatasetReader, i: int, js: range) -> tuple[Any, np.ndarray | None]:
        """The (B, C, window, window) input of windows ``js`` of window row ``i``, and where the rows and
        columns read hold data (None unless the raster is float32 or raw bands are prepared here: then it is
        exactly what :func:`_read_valid` would read again for the output's nodata).

        The rows that the next window row shares with this one are kept, read and prepared: each image row
        is read (and prepared) once, not once per window row that covers it."""
        plan, win = self.plan, self.plan.window
        row, h = plan.rows[i], plan.block_height(i)
        c0, c_end = plan.cols[js[0]], plan.cols[js[-1]] + win
        c1 = min(c_end, plan.width)
        kept = self._kept.pop(js[0], None)
        top = row
        if kept is not None and kept.start == row and kept.cols == (c0, c1):
            top = row + kept.valid.shape[0]
        if top == row + h:  # the bottom window row may add no row to the one above
            data, valid = kept.data, kept.valid
        else:
            data, valid = self._read_rows(src, RioWindow(c0, top, c1 - c0, row + h - top))
            if top > row:  # the rows kept from the window row above, then the new ones
                data, valid = _join_rows(kept.data, data), np.concatenate([kept.valid, valid])
        if i + 1 < len(plan.rows) and plan.rows[i + 1] < row + h:
            nxt = plan.rows[i + 1] - row
            self._kept[js[0]] = _KeptRows(plan.rows[i + 1], (c0, c1), _copy(data[:, nxt:]), valid[nxt:].copy())
        fill = np.nan if self.raw is not None and self.raw.prepare is None else 0.0
        with self.clock.step("cut windows"):
            offsets = [plan.cols[j] - c0 for j in js]
            batch = _cut_windows(data, offsets, win, fill)
            if self.standardize:  # per-chip normalization: each window on its own valid pixels
                batch = _to_numpy(batch)  # (the prepared path's numpy arithmetic, also for features on a device)
                vbatch = _cut_windows(valid, offsets, win)
                batch = np.where(vbatch[:, None], standardize_chips(batch, valid=vbatch), 0.0)
                batch = batch.astype(np.float32, copy=False)
        return batch, (valid if self._exact_valid(src) else None)

    def _exact_valid(self, src: rasterio.DatasetReader) -> bool:
        """Whether the reads' valid pixels are the output's nodata as :func:`_read_valid` finds it: a float32
        raster read as it is, or raw bands prepared here (index validity included)."""
        if self.raw is None:
            return src.dtypes[0] == "float32"
        return self.raw.prepare is not None

    def _read_rows(self, src: rasterio.DatasetReader, window: RioWindow) -> tuple[Any, np.ndarray]:
        """The model's input over ``window`` (C, h, w), nodata as the model takes it (0; NaN for a graph
        reading raw bands), and where it holds data."""
        prepare = self.raw.prepare if self.raw is not None else None
        with self.clock.step("read"):
            read = src.read(window=window)
            data = read.astype(np.float32, copy=False) if prepare is None else read
            if self.raw is None:
                valid = valid_mask(data, src.nodata)
            else:
                valid = self.raw.valid(src, read, window, also=prepare is None)
        if prepare is not None:  # a checkpoint's features, on the device, once per pixel read
            with self.clock.step("scale, indices, normalize"):
                return prepare(read, valid)
        np.copyto(data, np.nan if self.raw is not None else 0.0, where=~valid)  # in place: this read's own array
        return data, valid

    def batches(self, rows: Sequence[int], bar: Any | None = None) -> Iterator[tuple[int, range, Any, Any]]:
        """Yield ``(i, js, logits, valid)`` for each batch of windows ``js`` of the window rows ``rows``, in
        order: the network's logits (B, K, window, window) and where the rows read hold data (or None)."""
        from concurrent.futures import ThreadPoolExecutor

        plan = self.plan
        tasks = [(i, range(b0, min(b0 + self.batch_size, len(plan.cols))))
                 for i in rows for b0 in range(0, len(plan.cols), self.batch_size)]
        with rasterio.open(self.image_path) as src, ThreadPoolExecutor(1) as pool:
            pending = [pool.submit(self._read_batch, src, *t) for t in tasks[: self.PREFETCH]]
            for n_task, (i, js) in enumerate(tasks):
                with self.clock.step("wait for the reader"):
                    batch, valid = pending.pop(0).result()
                if n_task + self.PREFETCH < len(tasks):
                    pending.append(pool.submit(self._read_batch, src, *tasks[n_task + self.PREFETCH]))
                with self.clock.step("forward"):
                    x = batch if isinstance(batch, torch.Tensor) else torch.from_numpy(batch)
                    logits = forward_windows(self.model, x.to(self.device), self.tta, self.amp)
                    if self.device.type == "cpu":
                        logits = logits.numpy()
                yield i, js, logits, valid
                if bar is not None:
                    bar.update(len(js))

    def blend(self, batches: Iterable[tuple[int, range, Any, Any]]) -> Iterator[tuple[int, Any]]:
        """Yield ``(i, block)``: the weighted logits and weights (K + 1, h, width) of each whole window row, from
        :meth:`batches`' items; where its rows hold data goes to :attr:`valid_rows`."""
        plan = self.plan
        block, current = None, None
        for i, js, logits, valid in batches:
            h = plan.block_height(i)
            if i != current:
                if block is not None:
                    yield current, block
                block, current = _zeros((self.k + 1, h, plan.width), self.device), i
                if self.valid_rows is not None:  # the batches of a window row cover every column
                    self.valid_rows[i] = np.empty((h, plan.width), dtype=bool)
            with self.clock.step("blend"):
                if self.valid_rows is not None:
                    if valid is None or self.valid_rows[i] is None:
                        self.valid_rows[i] = None
                    else:
                        self.valid_rows[i][:, plan.cols[js[0]] : plan.cols[js[0]] + valid.shape[1]] = valid
                for n, j in enumerate(js):
                    c, w = plan.cols[j], plan.block_width(j)
                    weight = self._weight(i, j)
                    block[: self.k, :, c : c + w] += logits[n, :, :h, :w] * weight
                    block[self.k, :, c : c + w] += weight
        if block is not None:
            yield current, block

    def blocks(self, rows: Sequence[int], bar: Any | None = None) -> Iterator[tuple[int, Any]]:
        """Yield ``(i, block)`` for the window rows ``rows``, in order, all in the calling thread."""
        return self.blend(self.batches(rows, bar))


class _Aborted(Exception):
    """The network's thread failed: the writer stops, and its outputs are removed."""


class _Handoff:
    """The bounded queue from the network's thread to the writer thread (blending, the outputs' encoding and
    writing), which either side can stop: an error in the writer reaches the network's thread at its next
    :meth:`put` or at :meth:`finish`; :meth:`abort` ends the writer's iteration with an error, so that its
    half-written outputs are removed. ``size`` batches at most wait (memory bounded by the batch size)."""

    _END = object()

    def __init__(self, size: int, clock: StepClock) -> None:
        self.queue: queue.Queue = queue.Queue(size)
        self.clock, self.error, self.aborted = clock, None, False
        self.thread: threading.Thread | None = None

    def start(self, consume: Callable[[Iterator], None]) -> None:
        """Run ``consume(items)`` in the writer thread."""
        def run() -> None:
            try:
                consume(iter(self))
            except _Aborted:
                pass
            except BaseException as exc:  # handed to the network's thread
                self.error = exc

        self.thread = threading.Thread(target=run, name="predict-writer", daemon=True)
        self.thread.start()

    def put(self, item: Any) -> None:
        with self.clock.step("wait for the writer"):
            while True:
                if self.error is not None:
                    raise self.error
                try:
                    self.queue.put(item, timeout=0.05)
                    return
                except queue.Full:
                    continue

    def __iter__(self) -> Iterator:
        while True:
            try:
                item = self.queue.get(timeout=0.05)
            except queue.Empty:
                if self.aborted:
                    raise _Aborted() from None
                continue
            if self.aborted:
                raise _Aborted()
            if item is self._END:
                return
            yield item

    def finish(self) -> None:
        """Every item was put: wait for the writer, and raise its error if it failed."""
        self.put(self._END)
        with self.clock.step("wait for the writer"):
            self.thread.join()
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        self.aborted = True
        if self.thread is not None:
            self.thread.join()


def _finish_rows(logits, valid: np.ndarray, lut: np.ndarray, writers: dict[str, RowAppender],
                 probabilities: str, clock: StepClock = NO_CLOCK, offsets: np.ndarray | None = None) -> None:
    """Blended logits (K, n, W) of finished rows → class ids, probabilities, entropy → writers.

    ``offsets``: K constants added to the logits first (the scene's class priors, :mod:`.prior_shift`)."""
    with clock.step("argmax, encode"):
        if offsets is not None:
            logits = logits + (torch.as_tensor(offsets, dtype=logits.dtype, device=logits.device)
                               if isinstance(logits, torch.Tensor) else offsets.astype(logits.dtype))[:, None, None]
        if isinstance(logits, torch.Tensor):
            best = logits.argmax(dim=0).cpu().numpy()
            proba = torch.softmax(logits, dim=0).cpu().numpy() if len(writers) > 1 else None
        else:
            best = logits.argmax(axis=0)
            proba = None
            if len(writers) > 1:
                proba = np.exp(logits - logits.max(axis=0, keepdims=True))
                proba /= proba.sum(axis=0, keepdims=True)
        classes = np.where(valid, lut[best], NODATA).astype(np.uint8)[None]
    with clock.step("write rows"):
        writers["classes"].write(classes)
    if "proba" in writers:
        with clock.step("argmax, encode"):
            if probabilities == "uint8":
                out = np.rint(proba * PROBA_UINT8_SCALE).astype(np.uint8)
                out[:, ~valid] = 255
            else:
                out = proba.astype(np.float32)
                out[:, ~valid] = np.nan
        with clock.step("write rows"):
            writers["proba"].write(out)
    if "entropy" in writers:
        with clock.step("argmax, encode"):
            k = proba.shape[0]
            ent = -(proba * np.log(np.maximum(proba, 1e-12))).sum(axis=0) / max(math.log(k), 1e-12)
            ent = ent.astype(np.float32)
            ent[~valid] = np.nan
        with clock.step("write rows"):
            writers["entropy"].write(ent[None])


@dataclass(frozen=True)
class _Outputs:
    """How blended rows become the output rasters: class ids by output index, the probabilities' encoding."""

    lut: np.ndarray
    probabilities: str
    clock: StepClock = NO_CLOCK
    offsets: np.ndarray | None = None  # added to the blended logits before anything else


def _write_blocks(src: rasterio.DatasetReader, plan: WindowPlan, blocks: Iterable[tuple[int, Any]], n_classes: int,
                  device: torch.device, encoding: _Outputs, writers: dict[str, RowAppender],
                  raw: RawInput | None = None, valid_rows: dict[int, np.ndarray | None] | None = None) -> None:
    """Accumulate blended blocks in scene order and write each finished strip to ``writers``.

    ``valid_rows``: where each window row's rows hold data, as its reads found (filled while ``blocks``
    runs); a window row without one has its finished rows' nodata read again from ``src``."""
    acc = _Accumulator(plan, n_classes, device)
    for i, block in blocks:
        with encoding.clock.step("blend"):
            start, end, logits = acc.add_and_finish(i, block)
        valid = valid_rows.pop(i, None) if valid_rows is not None else None
        if valid is None:
            with encoding.clock.step("read"):
                valid = _read_valid(src, start, end, raw)
        _finish_rows(logits, valid[: end - start], encoding.lut, writers, encoding.probabilities, encoding.clock,
                     encoding.offsets)


@dataclass(frozen=True)
class WindowSettings:
    """How the network walks a scene: the window side, the overlap of neighbours (which sets the
    stride), windows per forward pass, how overlapping logits blend, and what each pass does."""

    window: int
    overlap: float
    batch_size: int
    blend: str = "hann"  # ``hann`` (smooth weights, seamless) or ``center`` (overlap-tile)
    tta: bool = False  # the mean logits over the 8 dihedral transforms of each window (8× the compute)
    amp: bool = False  # bfloat16 autocast around the forward pass
    standardize: bool = False  # each window on its own valid pixels (stacks prepared with per-chip normalization)


@dataclass(frozen=True)
class ClassLegend:
    """The id written for each of the K model outputs (e.g. 1..N), with its name and colour for the
    class map's colour table and metadata."""

    ids: Sequence[int]
    names: Sequence[str]
    colors: Sequence[str]

    @classmethod
    def of(cls, table: Mapping[str, Sequence[Any]]) -> ClassLegend:
        """From a checkpoint's metadata (``class_ids``, ``class_names``, ``class_colors``)."""
        return cls(table["class_ids"], table["class_names"], table["class_colors"])


@dataclass(frozen=True)
class OutputFormats:
    """Which outputs beside the class map, and how they are stored (see the module docstring)."""

    probabilities: str = "none"  # ``none``, ``float16`` or ``uint8``
    entropy: bool = False  # also the normalized entropy raster
    cog: bool = False  # rewrite the outputs as Cloud-Optimized GeoTIFFs (with overviews) at the end


@dataclass(frozen=True)
class RankShare:
    """This process's share of the window rows: every rank calls with the same arguments; ranks > 0
    return once their part file is written, rank 0 waits up to ``timeout_s`` for the others."""

    rank: int = 0
    world_size: int = 1
    timeout_s: float = 3600.0


def predict_settings(window: int, overlap: float, batch_size: int, *, blend: str = "hann",
                     probabilities: str = "none", entropy: bool = False, tta: bool = False, amp: bool = False,
                     cog: bool = False, standardize: bool = False) -> tuple[WindowSettings, OutputFormats]:
    """The ``predict`` options as a flat mapping gives them (``pipeline.stage_options.predict_options``)
    turned into the value objects that :func:`predict_scene` takes."""
    return (WindowSettings(int(window), overlap, batch_size, blend, tta, amp, standardize),
            OutputFormats(probabilities, entropy, cog))


@torch.no_grad()
def predict_scene(
    model: torch.nn.Module,
    image_path: str | Path,
    out_path: str | Path,
    windows: WindowSettings,
    legend: ClassLegend,
    device: str | torch.device = "cpu",
    progress: bool = True,
    *,
    outputs: OutputFormats = OutputFormats(),
    share: RankShare = RankShare(),
    raw_input: RawInput | None = None,
    clock: StepClock = NO_CLOCK,
    logit_offsets: Sequence[float] | None = None,
) -> Path:
    """Classify every pixel of ``image_path`` (a prepared, normalized stack) into ``out_path``.

    Three threads share the work: a reader reads (and prepares) the next batches of windows, this thread
    runs the network, and a writer blends the logits, encodes the finished rows and writes them.

    Args:
        model: maps (B, C, window, window) to logits (B, K, window, window).
        windows: window side, overlap, batch, blending, TTA, autocast (:class:`WindowSettings`).
        legend: the class ids, names and colours of the K outputs (:class:`ClassLegend`).
        outputs: probabilities, entropy, COG (:class:`OutputFormats`).
        share: this process's rank among ``world_size`` sharing the scene (:class:`RankShare`).
        raw_input: ``image_path`` holds raw bands, prepared by the model itself (an exported model: nodata
            given to it as NaN) or by ``raw_input.prepare`` on the device (a checkpoint's network), with
            nodata decided as :class:`RawInput` says.
        clock: where the seconds go, step by step (:class:`~deepgeo_runner.core.step_clock.StepClock`).
        logit_offsets: K constants added to the blended logits before the argmax and the softmax: the
            correction for the scene's class priors (:func:`sample_posteriors`, :mod:`.prior_shift`).

    Returns:
        The class map's path (the optional outputs lie beside it, see :func:`output_paths`).
    """
    if outputs.probabilities not in PROBABILITY_FORMATS:
        raise ValueError(f"probabilities must be one of {list(PROBABILITY_FORMATS)}, got '{outputs.probabilities}'")
    if not 0 <= share.rank < share.world_size:
        raise ValueError(f"rank {share.rank} outside world_size {share.world_size}")
    out_path = Path(out_path)
    offsets = None if logit_offsets is None else np.asarray(logit_offsets, dtype=np.float32)
    if offsets is not None and offsets.shape != (len(legend.ids),):
        raise ValueError(f"{offsets.size} logit offsets for {len(legend.ids)} classes")
    job = _Job(model.eval().to(torch.device(device)), Path(image_path), out_path, windows, legend, outputs,
               share, raw_input, torch.device(device), clock, offsets)
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 1024 * 1024), rasterio.open(image_path) as src:
        src.read(1, window=RioWindow(0, 0, 1, 1))  # GDAL sizes its block cache once, at first use
        plan = WindowPlan(src.height, src.width, windows.window, windows.overlap, windows.blend)
        mine = [i for i in range(len(plan.rows)) if i % share.world_size == share.rank]
        if share.world_size > 1:
            log.info("predict: rank %d of %d classifies %d of %d window rows on %s", share.rank, share.world_size,
                     len(mine), len(plan.rows), job.device)
        bar = progress_bar(total=len(mine) * len(plan.cols), desc=f"predict windows (rank {share.rank})"
                           if share.world_size > 1 else "predict windows", disable=not progress)
        if share.world_size == 1:
            _predict_alone(job, src, plan, mine, bar)
        else:
            _predict_in_parts(job, src, plan, mine, bar)
    return out_path


@dataclass(frozen=True)
class _Job:
    """One prediction's fixed inputs, so that its parts pass one object rather than a dozen values."""

    model: torch.nn.Module
    image_path: Path
    out_path: Path
    windows: WindowSettings
    legend: ClassLegend
    outputs: OutputFormats
    share: RankShare
    raw_input: RawInput | None
    device: torch.device
    clock: StepClock = NO_CLOCK
    offsets: np.ndarray | None = None

    @property
    def n_classes(self) -> int:
        return len(self.legend.ids)

    def block_maker(self, plan: WindowPlan) -> _BlockMaker:
        return _BlockMaker(self.model, self.image_path, plan, self.n_classes, self.windows, self.device,
                           self.raw_input, self.clock)

    def assemble(self, src: rasterio.DatasetReader, plan: WindowPlan, blocks: Iterable[tuple[int, Any]],
                 valid_rows: dict | None = None) -> None:
        """Blocks of window rows in scene order → the finished outputs, in place."""
        grid = Grid(src.crs, src.transform, src.width, src.height)
        paths = output_paths(self.out_path, self.outputs.probabilities, self.outputs.entropy)
        encoding = _Outputs(np.asarray(self.legend.ids, dtype=np.uint8), self.outputs.probabilities, self.clock,
                            self.offsets)
        with _open_outputs(paths, grid, self.legend, self.outputs) as writers:
            _write_blocks(src, plan, blocks, self.n_classes, self.device, encoding, writers, self.raw_input,
                          valid_rows)
            closing = time.perf_counter()
        self.clock.add("close outputs (COG, overviews)", time.perf_counter() - closing)


SAMPLE_ROW_SHARE = 0.25  # share of the window rows that the class-prior estimate classifies first
SAMPLE_MIN_ROWS = 4  # a scene of this many window rows or fewer is sampled whole
SAMPLE_MAX_PIXELS = 2_000_000  # posteriors kept for the estimate at most (every n-th beyond)


@torch.no_grad()
def sample_posteriors(model: torch.nn.Module, image_path: str | Path, windows: WindowSettings, n_classes: int,
                      device: str | torch.device = "cpu", raw_input: RawInput | None = None,
                      progress: bool = True) -> np.ndarray:
    """The network's posteriors (N, K) at the valid pixels of window rows spread evenly over the scene.

    Why a pass of its own: the scene's class priors must be known before the first row of the map is
    decided. A quarter of the window rows (all of a small scene), blended within each row as the map's
    windows are, is enough for K shares and costs a quarter of the prediction."""
    device = torch.device(device)
    model = model.eval().to(device)
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 1024 * 1024), rasterio.open(image_path) as src:
        plan = WindowPlan(src.height, src.width, windows.window, windows.overlap, windows.blend)
        n_rows = len(plan.rows)
        take = n_rows if n_rows <= SAMPLE_MIN_ROWS else max(SAMPLE_MIN_ROWS, math.ceil(n_rows * SAMPLE_ROW_SHARE))
        rows = sorted({int(round(r)) for r in np.linspace(0, n_rows - 1, take)})
        maker = _BlockMaker(model, image_path, plan, n_classes, windows, device, raw_input)
        bar = progress_bar(total=len(rows) * len(plan.cols), desc="class priors: sample windows",
                           disable=not progress)
        parts = [_block_posteriors(src, plan, i, _to_numpy(block), maker, raw_input)
                 for i, block in maker.blocks(rows, bar)]
        bar.close()
    posteriors = np.concatenate(parts) if parts else np.zeros((0, n_classes), dtype=np.float32)
    if len(posteriors) > SAMPLE_MAX_PIXELS:
        posteriors = posteriors[:: math.ceil(len(posteriors) / SAMPLE_MAX_PIXELS)]
    return posteriors


def _block_posteriors(src: rasterio.DatasetReader, plan: WindowPlan, i: int, block: np.ndarray,
                      maker: _BlockMaker, raw: RawInput | None) -> np.ndarray:
    """Softmax (n, K) of one window row's blended logits at its valid pixels that a window weighs."""
    k = block.shape[0] - 1
    valid = maker.valid_rows.pop(i, None) if maker.valid_rows is not None else None
    if valid is None:
        valid = _read_valid(src, plan.rows[i], plan.rows[i] + block.shape[1], raw)
    weight = block[k]
    keep = valid & (weight > 1e-3 * max(float(weight.max()), 1e-12))  # a window's zero-weight edge says nothing
    logits = (block[:k, keep] / weight[keep]).T.astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


WRITER_QUEUE = 4  # batches of logits waiting for the writer thread at most


def _predict_alone(job: _Job, src: rasterio.DatasetReader, plan: WindowPlan, rows: list[int], bar: Any) -> None:
    """One process: the network in this thread, blending, encoding and writing in a writer thread, so that
    the three overlap (the reader thread of :meth:`_BlockMaker.batches` reads ahead). ``src`` is the
    writer's alone while it runs."""
    make_block = job.block_maker(plan)
    handoff = _Handoff(WRITER_QUEUE, job.clock)
    handoff.start(lambda items: job.assemble(src, plan, make_block.blend(items), make_block.valid_rows))
    try:
        for item in make_block.batches(rows, bar):
            handoff.put(item)
    except BaseException:
        handoff.abort()
        raise
    handoff.finish()
    bar.close()


def _predict_in_parts(job: _Job, src: rasterio.DatasetReader, plan: WindowPlan, mine: list[int], bar: Any) -> None:
    """Several processes: each rank's blocks go to its part file, rank 0 assembles them all."""
    make_block = job.block_maker(plan)
    make_block.valid_rows = None
    windows, share = job.windows, job.share
    folder = parts_dir(job.out_path, job.image_path, job.model,
                       [windows.window, plan.stride, windows.blend, windows.tta, windows.amp, job.n_classes,
                        share.world_size])
    block_shape = (job.n_classes + 1, plan.window, plan.width)
    write_part(folder, share.rank, mine, (_to_numpy(block) for _, block in make_block.blocks(mine, bar)),
               block_shape, what=f"rank {share.rank}'s share of {job.out_path.name}")
    bar.close()
    if share.rank != 0:
        return
    wait_for_parts(folder, share.world_size, share.timeout_s)
    job.assemble(src, plan, ((i, _to_device(block, job.device))
                             for i, block in read_parts(folder, share.world_size, plan, block_shape)))
    shutil.rmtree(folder, ignore_errors=True)
