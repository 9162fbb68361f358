"""Reading and writing checkpoint files safely (torch only: no Lightning, no Hydra).

A ``.ckpt`` is a pickle. Unpickling with ``weights_only=False`` runs whatever callables the
file names, so a checkpoint downloaded or handed over could run code on this machine. Every
read here uses ``weights_only=True``: only tensors and plain containers (dict, list, str,
numbers) are rebuilt, anything else is refused before it is called. What this package writes
into a checkpoint is kept to those types (:func:`plain_metadata`), so its own files always load.

Writes go to a temporary name beside the file and are renamed into place when complete, so a
full disk or a kill never leaves a truncated checkpoint under the real name.
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepgeo_runner.core.atomic import temp_path
from deepgeo_runner.core.errors import DiskFullError, InputDataError, NotWritableError, OutputError

_PLAIN = (str, int, float, bool, type(None), torch.Tensor)


def load_checkpoint(path: str | Path, map_location: Any = "cpu", key: str = "checkpoint") -> dict[str, Any]:
    """The checkpoint's contents, loaded with ``weights_only=True``.

    Raises:
        InputDataError: naming the file, when it is missing, truncated, not a checkpoint, or holds
            objects other than tensors and plain data (nothing in it is executed).
    """
    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"{key} '{path}': no such file.")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        reason = f"it calls {found.group(1)}" if found else type(exc).__name__
        raise InputDataError(
            f"{key} '{path}' was refused: it holds objects other than tensors and plain data ({reason}), which "
            "loading would have to run as code; nothing in it was run. Use a checkpoint written by deepgeo "
            "(checkpoints/best.ckpt or last.ckpt of a run), or re-save the weights of a trusted file as a "
            "plain state dict."
        ) from exc
    except Exception as exc:  # a truncated zip, a text file, another format
        raise InputDataError(
            f"cannot read {key} '{path}' ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}): "
            "it is truncated or not a PyTorch checkpoint. Give a complete .ckpt written by deepgeo; a run "
            "interrupted while saving keeps its previous checkpoint under the real name."
        ) from exc
    if not isinstance(state, dict):
        raise InputDataError(f"{key} '{path}' holds a {type(state).__name__}, not a checkpoint (a dict with "
                             "'state_dict'): give a .ckpt written by deepgeo.")
    return state


def plain_metadata(value: Any, where: str = "deepgeo") -> Any:
    """``value`` with numpy numbers and arrays, tuples and paths turned into plain Python, so that
    the checkpoint loads with ``weights_only=True``; any other type is a programming error."""
    if isinstance(value, Mapping):
        return {k: plain_metadata(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_metadata(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, _PLAIN):
        return value
    raise TypeError(f"checkpoint metadata {where} holds a {type(value).__name__}: store plain values "
                    "(str, numbers, lists, dicts, tensors) so that the checkpoint loads with weights_only=True.")


def _write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and flush it to the disk (a seam for tests of a full disk)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def save_checkpoint_atomic(checkpoint: dict[str, Any], path: str | Path) -> Path:
    """``torch.save`` to a temporary name beside ``path``, then rename it into place.

    Raises:
        OutputError (DiskFullError, NotWritableError): naming ``path`` and what to do, when the disk
            is full or not writable;
            the file under the real name is then the previous one, untouched.
    """
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    data = buffer.getvalue()
    tmp = temp_path(path)  # host and pid in the name: leftovers of a killed run are recognised and removed
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_bytes(tmp, data)
        os.replace(tmp, path)
    except OSError as exc:
        size = f"{len(data) / 2**20:.1f} MiB"
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(
                f"no space left on the device to write checkpoint '{path}' ({size}). The previous checkpoint "
                "under that name is intact. Free space on that disk (or set hydra.run.dir elsewhere), then "
                "launch the same command again: it resumes from checkpoints/last.ckpt."
            ) from exc
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise NotWritableError(
                f"cannot write checkpoint '{path}': {exc.strerror}. Make '{path.parent}' writable or set "
                "hydra.run.dir to a writable folder."
            ) from exc
        raise OutputError(f"cannot write checkpoint '{path}' ({size}): {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return path
