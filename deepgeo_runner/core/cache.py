"""Content-addressed cache of expensive stage outputs, verified when reused.

A stage output lives in ``<cache>/<stage>/<key>/`` where the key hashes the fingerprints of
the input files and the config that shaped it. Runs of a sweep that differ only in model or
trainer settings therefore share prepared rasters, label rasters and chip stores. A stage
builds into a temporary directory that is renamed into place only when complete, so a
crash never leaves a half-written entry that a later run would trust, and concurrent
builders (DDP ranks, sweep jobs) cannot corrupt each other.

An entry is complete when it holds ``_complete.json``: the payload it was built from and a
manifest of its files (size and SHA-256 of each). Reusing an entry checks the manifest, so a
damaged entry (a truncated raster, a chip file with zeroed bytes) is rebuilt rather than
trusted. The full hash runs when a file's size, mtime, ctime or inode differ from those
recorded at the last verification (``_verified.json``); otherwise the check is a ``stat``
per file. Any write through the file system changes mtime and ctime, so only damage that
bypasses it (bad sectors) goes unseen by the quick check: ``DEEPGEO_CACHE_VERIFY=full``
hashes every file on every reuse.
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

from deepgeo_runner.core.atomic import (
    output_errors,
    remove_stale_temporaries,
    temp_path,
    write_text_atomic,
)
from deepgeo_runner.core.errors import StageError

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # in every stage key; bump when a stage output format changes (2: GDAL nodata, labels on image grid)

COMPLETE = "_complete.json"
STAMP = "_verified.json"
MANIFEST_FORMAT = 2  # 1: _complete.json held the payload alone, no manifest
HASH = "sha256"  # ~1.2 GB/s with the CPU's SHA extensions, faster than blake2b on such CPUs
READ_BYTES = 8 << 20
VERIFY_ENV = "DEEPGEO_CACHE_VERIFY"  # 'stat' (default): hash files whose stat changed; 'full': always

_fingerprints: dict[tuple[str, int, int], str] = {}


def file_fingerprint(path: str | Path) -> str:
    """SHA-256 of a file's bytes (memoized per path, size and mtime within the process)."""
    path = Path(path).resolve()
    if path.is_dir():  # e.g. a shapefile given as its folder
        return hash_payload({p.name: file_fingerprint(p) for p in sorted(path.iterdir()) if p.is_file()})
    stat = path.stat()
    memo_key = (str(path), stat.st_size, stat.st_mtime_ns)
    if memo_key not in _fingerprints:
        _fingerprints[memo_key] = hash_file(path)
    return _fingerprints[memo_key]


def hash_file(path: str | Path, algorithm: str = HASH) -> str:
    """Hex digest of a file, read in large blocks into one reused buffer."""
    digest = hashlib.new(algorithm)
    buffer = bytearray(READ_BYTES)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buffer):
            digest.update(view[:n])
    return digest.hexdigest()


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


# ------------------------------------------------------------------------------- manifests


def _entry_files(entry: Path) -> list[Path]:
    """The files of an entry that its manifest covers (all but the bookkeeping ones)."""
    return sorted(p for p in entry.rglob("*") if p.is_file() and p.name not in (COMPLETE, STAMP))


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def write_manifest(folder: str | Path, payload: dict[str, Any]) -> dict[str, Any]:
    """Mark ``folder`` complete: ``_complete.json`` with the payload and each file's size and hash.

    Also records the verification stamp, so that the first reuse need not hash again.
    """
    folder = Path(folder)
    files, stamp = {}, {}
    for path in _entry_files(folder):
        rel = path.relative_to(folder).as_posix()
        st = path.stat()
        files[rel] = {"size": st.st_size, HASH: hash_file(path)}
        stamp[rel] = _stat_key(path.stat())
    record = {"format": MANIFEST_FORMAT, "payload": payload, "manifest": {"hash": HASH, "files": files}}
    (folder / COMPLETE).write_text(json.dumps(record, indent=2, sort_keys=True, default=str))
    (folder / STAMP).write_text(json.dumps({"files": stamp}))
    return record


def verify_entry(entry: str | Path, full: bool | None = None) -> str | None:
    """Check a complete cache entry against its manifest; return what is wrong, or None.

    Args:
        entry: the entry directory (holding ``_complete.json``).
        full: hash every file even when its stat matches the last verification; default from
            ``$DEEPGEO_CACHE_VERIFY`` ('full' or 'stat').
    """
    entry = Path(entry)
    if full is None:
        full = os.environ.get(VERIFY_ENV, "stat").strip().lower() == "full"
    try:
        record = json.loads((entry / COMPLETE).read_text())
    except (OSError, ValueError) as exc:
        return f"its {COMPLETE} is unreadable ({exc})"
    manifest = record.get("manifest") if isinstance(record, dict) else None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        return "it has no manifest of its files (written by an older deepgeo-runner), so it cannot be verified"
    if record.get("payload") is not None and hash_payload(record["payload"]) != entry.name:
        return f"its {COMPLETE} describes another entry ({hash_payload(record['payload'])})"
    algorithm = manifest.get("hash", HASH)
    stats: dict[str, list[int]] = {}
    for rel, expected in manifest["files"].items():
        try:
            st = (entry / rel).stat()
        except OSError:
            return f"{rel} is missing"
        if not isinstance(expected, dict) or "size" not in expected:
            return f"its manifest entry of {rel} is malformed"
        if st.st_size != expected["size"]:
            return f"{rel} holds {st.st_size:,} bytes, its manifest {expected['size']:,} (truncated or overwritten)"
        stats[rel] = _stat_key(st)
    if not full and stats == _read_stamp(entry):
        return None
    for rel, expected in manifest["files"].items():
        try:
            digest = hash_file(entry / rel, algorithm)
        except OSError as exc:  # e.g. another process is replacing this damaged entry right now
            return f"{rel} cannot be read ({exc.strerror or exc})"
        if digest != expected.get(algorithm):
            return f"the content of {rel} differs from its manifest ({algorithm} mismatch, same size)"
    _write_stamp(entry, stats)
    return None


def _read_stamp(entry: Path) -> dict[str, list[int]] | None:
    try:
        return json.loads((entry / STAMP).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_stamp(entry: Path, stats: dict[str, list[int]]) -> None:
    """Remember this verification; a read-only cache simply verifies in full next time."""
    try:
        write_text_atomic(entry / STAMP, json.dumps({"files": stats}))
    except Exception as exc:  # noqa: BLE001 - a stamp is an optimization, never a failure
        log.debug("cannot record the verification of %s: %s", entry, exc)


def _discard(entry: Path, stage: str, problem: str) -> None:
    """Move a damaged entry out of the way (atomically), then delete it."""
    aside = temp_path(entry.with_name(entry.name + ".damaged"))
    try:
        os.rename(entry, aside)
    except FileNotFoundError:  # another process discarded it first
        return
    except OSError as exc:  # e.g. a read-only shared cache
        raise StageError(f"{damage_hint(stage, entry, problem)} (this process cannot remove it: "
                         f"{exc.strerror or exc})") from exc
    shutil.rmtree(aside, ignore_errors=True)


# ------------------------------------------------------------------------------- stages


def damage_hint(stage: str, entry: Path, problem: str) -> str:
    """The message for a damaged entry that this run may not rebuild."""
    return (f"the cache entry of '{stage}' at {entry} is damaged: {problem}. Delete that directory "
            f"(rm -r '{entry}') and add '{stage}' to stages (e.g. stages=[{stage},...]) to rebuild it.")


def reuse_entry(cache_dir: str | Path, stage: str, payload: dict[str, Any]) -> tuple[Path, str, bool]:
    """The verified entry of ``payload`` when the stage may not run: StageError if absent or damaged."""
    key = hash_payload(payload)
    entry = Path(cache_dir) / stage / key
    if not (entry / COMPLETE).exists():
        raise StageError(
            f"a later stage needs the output of '{stage}', which is not in the cache "
            f"({entry}): add '{stage}' to stages, e.g. stages=[{stage},...]."
        )
    problem = verify_entry(entry)
    if problem is not None:
        raise StageError(damage_hint(stage, entry, problem))
    log.info("%s: reusing cached %s (verified)", stage, entry)
    return entry, key, True


def cached_stage(
    cache_dir: str | Path, stage: str, payload: dict[str, Any], build: Callable[[Path], None]
) -> tuple[Path, str, bool]:
    """Return the cache entry for ``payload``, building it with ``build(tmp_dir)`` if absent or damaged.

    Returns:
        (entry directory, key, whether it was reused).
    """
    key = hash_payload(payload)
    entry = Path(cache_dir) / stage / key
    remove_stale_temporaries(entry.parent)  # builds of killed processes
    if (entry / COMPLETE).exists():
        problem = verify_entry(entry)
        if problem is None:
            log.info("%s: reusing cached %s (verified)", stage, entry)
            return entry, key, True
        log.warning("%s: cache entry %s is damaged (%s): rebuilding it", stage, entry, problem)
        _discard(entry, stage, problem)
    tmp = temp_path(entry)
    try:
        with output_errors(entry, f"cache entry of stage '{stage}'"):
            entry.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            build(tmp)
            write_manifest(tmp, payload)
            try:
                os.rename(tmp, entry)
            except OSError:  # another process finished the same entry first: keep theirs
                if not (entry / COMPLETE).exists():
                    shutil.rmtree(entry, ignore_errors=True)
                    os.rename(tmp, entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("%s: built %s", stage, entry)
    return entry, key, False


def cache_entry(cache_dir: str | Path, stage: str, payload: dict[str, Any], build: Callable[[Path], None],
                run_stage: bool) -> tuple[Path, str, bool]:
    """Build (or reuse) a stage's entry; when the stage is not requested, only reuse a verified one
    (StageError naming the entry to delete and the stage to add when it is absent or damaged)."""
    if run_stage:
        return cached_stage(cache_dir, stage, payload, build)
    return reuse_entry(cache_dir, stage, payload)
