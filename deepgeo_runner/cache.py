"""Content-addressed cache of expensive stage outputs.

A stage output lives in ``<cache>/<stage>/<key>/`` where the key hashes the fingerprints of
the input files and the config that shaped it. Runs of a sweep that differ only in model or
trainer settings therefore share prepared rasters, label rasters and chip stores. A stage
builds into a temporary directory that is renamed into place only when complete, so a
crash never leaves a half-written entry that a later run would trust, and concurrent
builders (DDP ranks, sweep jobs) cannot corrupt each other.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_fingerprints: dict[tuple[str, int, int], str] = {}


def file_fingerprint(path: str | Path) -> str:
    """SHA-256 of a file's bytes (memoized per path, size and mtime within the process)."""
    path = Path(path).resolve()
    if path.is_dir():  # e.g. a shapefile given as its folder
        return hash_payload({p.name: file_fingerprint(p) for p in sorted(path.iterdir()) if p.is_file()})
    stat = path.stat()
    memo_key = (str(path), stat.st_size, stat.st_mtime_ns)
    if memo_key not in _fingerprints:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
        _fingerprints[memo_key] = digest.hexdigest()
    return _fingerprints[memo_key]


def vector_fingerprint(path: str | Path) -> str:
    """Fingerprint of a vector dataset, including a shapefile's sidecar files."""
    path = Path(path)
    if path.suffix.lower() == ".shp":
        parts = sorted(path.parent.glob(path.stem + ".*"))
        return hash_payload({p.suffix.lower(): file_fingerprint(p) for p in parts})
    return file_fingerprint(path)


def hash_payload(payload: Any) -> str:
    """Stable short hash of a JSON-serializable description of a stage's inputs."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_stage(
    cache_dir: str | Path, stage: str, payload: dict[str, Any], build: Callable[[Path], None]
) -> tuple[Path, str, bool]:
    """Return the cache entry for ``payload``, building it with ``build(tmp_dir)`` if absent.

    Returns:
        (entry directory, key, whether it was reused).
    """
    key = hash_payload(payload)
    entry = Path(cache_dir) / stage / key
    if (entry / "_complete.json").exists():
        log.info("%s: reusing cached %s", stage, entry)
        return entry, key, True
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = entry.parent / f".{key}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        build(tmp)
        (tmp / "_complete.json").write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
        try:
            os.rename(tmp, entry)
        except OSError:  # another process finished the same entry first: keep theirs
            if not (entry / "_complete.json").exists():
                shutil.rmtree(entry, ignore_errors=True)
                os.rename(tmp, entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("%s: built %s", stage, entry)
    return entry, key, False
