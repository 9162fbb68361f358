"""Sharing one scene prediction between processes through part files.

Several processes (the ranks of a DDP job) can predict one scene together: window rows are dealt
out ``rank::world_size``; each rank writes the blocks of its window rows (see
:mod:`deepgeo_runner.ml.predict`), in order and padded to full window height, to its own part
file, then a marker saying it is complete. Rank 0 waits for every marker, reads the blocks back
in scene order and writes the one set of outputs. The merge goes through files only, so it needs
no process group, and a part file is named after everything that changes its content, so that
parts left by another model, scene or setting are never mixed in.

A change to how ranks share the work, name, hand over or wait for their parts goes here; what a
block holds and how blocks become rasters stays in :mod:`deepgeo_runner.ml.predict`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from deepgeo_runner.core.atomic import atomic_path, write_text_atomic
from deepgeo_runner.core.errors import StageError
from deepgeo_runner.geo.stitch import WindowPlan


def model_fingerprint(model: torch.nn.Module) -> str:
    """A short hash of the model's weights: tells one set of weights' part files from another's."""
    digest = hashlib.blake2b(digest_size=8)
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def parts_dir(out_path: Path, image_path: str | Path, model: torch.nn.Module, settings: Sequence[object]) -> Path:
    """The folder beside ``out_path`` where the ranks predicting ``image_path`` meet.

    Its name hashes the image file (path, size, modification time), ``settings`` (every other
    JSON value that changes the blocks: window, stride, blend, ..., world size) and the weights.
    """
    stat = os.stat(image_path)
    token = hashlib.blake2b(json.dumps([
        str(Path(image_path).resolve()), stat.st_size, stat.st_mtime_ns, *settings, model_fingerprint(model),
    ]).encode(), digest_size=8).hexdigest()
    return out_path.parent / f".{out_path.name}.parts-{token}"


def part_paths(folder: Path, rank: int) -> tuple[Path, Path]:
    """Rank ``rank``'s part file and the marker written once it is complete."""
    return folder / f"part-{rank}.f32", folder / f"part-{rank}.done.json"


def write_part(folder: Path, rank: int, rows: Sequence[int], blocks: Iterable[np.ndarray],
               block_shape: tuple[int, ...], what: str) -> None:
    """Write this rank's ``blocks`` (those of window rows ``rows``, in order) to its part file.

    Each block is zero-padded to ``block_shape`` (the bottom window row is shorter), so that
    block ``n`` of a part lies at a fixed offset. The part is renamed into place when complete,
    then the marker is written; ``what`` names the part in a disk error.
    """
    folder.mkdir(parents=True, exist_ok=True)
    part, marker = part_paths(folder, rank)
    with atomic_path(part, what=what) as part_tmp, open(part_tmp, "wb") as f:
        for block in blocks:
            full = np.zeros(block_shape, dtype=np.float32)
            full[:, : block.shape[1]] = block
            f.write(full.tobytes())
    write_text_atomic(marker, json.dumps({"rank": rank, "rows": list(rows), "block_shape": list(block_shape)}))


def wait_for_parts(folder: Path, world_size: int, timeout_s: float) -> None:
    """Return once every rank's marker exists; raise a StageError naming the missing ranks after
    ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    missing = list(range(world_size))
    while missing:
        missing = [r for r in missing if not part_paths(folder, r)[1].exists()]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise StageError(
                f"predict: ranks {missing} did not finish their share within {timeout_s:.0f} s "
                f"(no marker in {folder}); check those processes' logs."
            )
        time.sleep(0.2)


def read_parts(folder: Path, world_size: int, plan: WindowPlan,
               block_shape: tuple[int, ...]) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(i, block)`` for every window row ``i`` of ``plan``, in scene order, from the parts
    of all ranks; each block is cut back to the rows of the scene it covers."""
    block_bytes = int(np.prod(block_shape)) * 4
    handles = {r: open(part_paths(folder, r)[0], "rb") for r in range(world_size)}
    try:
        for i in range(len(plan.rows)):
            f = handles[i % world_size]
            f.seek((i // world_size) * block_bytes)
            block = np.frombuffer(f.read(block_bytes), dtype=np.float32).reshape(block_shape)
            yield i, block[:, : plan.block_height(i)]
    finally:
        for f in handles.values():
            f.close()
