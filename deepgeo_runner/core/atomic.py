"""Writing files so that a reader never sees half of one, and a full disk says so.

Every file the package writes goes to a temporary name beside its final one and is renamed
into place only when complete (``os.replace`` is atomic within a file system). Temporary
names carry the host and the process id, ``.<name>.<host>-<pid>.tmp``, so that the leftovers
of a killed process can be told from the files of a live one and removed
(:func:`remove_stale_temporaries`), also on a file system shared by several machines.

Write failures caused by the disk rather than by the program (no space left, a quota, a
read-only or foreign folder) become :class:`~deepgeo_runner.core.errors.DiskFullError` or
:class:`~deepgeo_runner.core.errors.NotWritableError` naming the path and the fix: the command
line prints them as one message, not a traceback. Only the standard library is imported
here: the command line uses this module before torch or GDAL is loaded.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from deepgeo_runner.core.errors import DeepGeoError, DiskFullError, NotWritableError

log = logging.getLogger(__name__)

LOW_SPACE_BYTES = 4 << 20  # a write error with less free than this is taken for a full disk
FOREIGN_GRACE_S = 7 * 24 * 3600  # another host's leftovers: its process cannot be asked if alive
LEGACY_GRACE_S = 3600  # names without a host (older versions): maybe another host's, so wait a while
_FULL = {errno.ENOSPC, errno.EDQUOT}
_DENIED = {errno.EACCES, errno.EPERM, errno.EROFS}
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<host>[A-Za-z0-9-]+)-(?P<pid>\d+)\.tmp(?P<rest>.*)$")
_LEGACY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp(?P<rest>(\.[A-Za-z0-9]+)*)$")


def host_tag() -> str:
    """This machine's name as it appears in temporary names (letters, digits and '-')."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:63] or "host"


def temp_path(path: str | Path, keep_suffix: bool = False) -> Path:
    """The temporary name of ``path`` for this process: ``.<name>.<host>-<pid>.tmp``.

    ``keep_suffix`` appends the final suffix again (``...tmp.gpkg``) for writers that choose
    the format by the extension (GDAL/OGR vector drivers).
    """
    path = Path(path)
    return path.with_name(f".{path.name}.{host_tag()}-{os.getpid()}.tmp" + (path.suffix if keep_suffix else ""))


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _free_bytes(where: Path) -> int | None:
    for folder in (where, *where.parents):
        if folder.exists():
            try:
                return shutil.disk_usage(folder).free
            except OSError:
                return None
    return None


def _inside(filename: object, where: Path) -> bool:
    if not filename:
        return True  # the OS did not say which file: the write we were doing
    try:
        Path(str(filename)).resolve().relative_to(where.resolve().parent)
        return True
    except (ValueError, OSError):
        return False


def disk_error_kind(exc: BaseException, where: str | Path) -> str | None:
    """'full' or 'denied' when ``exc``, raised while writing ``where``, comes from the disk.

    GDAL reports a full disk on stderr and raises only "Write failed", so a write error that
    leaves less than :data:`LOW_SPACE_BYTES` free on ``where``'s device counts as 'full'.
    """
    where = Path(where)
    chain = list(_chain(exc))
    for e in chain:
        if isinstance(e, OSError) and e.errno in _FULL:
            return "full"
        if "No space left on device" in str(e) or "Disk quota exceeded" in str(e):
            return "full"
    for e in chain:
        if isinstance(e, OSError) and e.errno in _DENIED and _inside(e.filename, where):
            return "denied"
    free = _free_bytes(where)
    if free is not None and free < LOW_SPACE_BYTES:
        return "full"
    return None


def output_error(exc: BaseException, path: str | Path, what: str | None = None) -> DeepGeoError | None:
    """The message-bearing error for a write of ``path`` that failed with ``exc``, or None."""
    path = Path(path)
    kind = disk_error_kind(exc, path)
    label = f"'{path}'" + (f" ({what})" if what else "")
    folder = path.parent
    if kind == "full":
        free = _free_bytes(path)
        have = f" ({free / 2**20:.1f} MiB free)" if free is not None else ""
        return DiskFullError(
            f"no space left on the device holding {label}{have}. Free some space (df -h '{folder}') or write "
            "elsewhere (hydra.run.dir=... for the run, paths.cache_dir=... for the cache), then relaunch: "
            "nothing was left half-written under a real name."
        )
    if kind == "denied":
        reason = next((e.strerror for e in _chain(exc) if isinstance(e, OSError) and e.strerror), "permission denied")
        return NotWritableError(
            f"cannot write {label}: {reason}. Make '{folder}' writable (e.g. chmod u+w '{folder}') or choose "
            "another folder (hydra.run.dir=... for the run, paths.cache_dir=... for the cache)."
        )
    return None


@contextmanager
def output_errors(path: str | Path, what: str | None = None) -> Iterator[None]:
    """Turn a disk failure while writing ``path`` into DiskFullError / NotWritableError.

    Use it inside the block that still holds the temporary file (before it is removed), so
    that the free space seen is the space the failed write left.
    """
    try:
        yield
    except DeepGeoError:
        raise
    except Exception as exc:
        error = output_error(exc, path, what)
        if error is None:
            raise
        raise error from exc


@contextmanager
def atomic_path(path: str | Path, keep_suffix: bool = False, what: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place when the block succeeds.

    On any error the temporary file is removed and ``path`` keeps its earlier content (or stays
    absent); a full disk or a read-only folder is reported as an :class:`OutputError`.
    """
    path = Path(path)
    tmp = temp_path(path, keep_suffix)
    try:
        with output_errors(path, what):
            path.parent.mkdir(parents=True, exist_ok=True)
            yield tmp
            os.replace(tmp, path)
    finally:
        _remove(tmp)


def write_bytes_atomic(path: str | Path, data: bytes, what: str | None = None) -> Path:
    """Write ``data`` under a temporary name, flush it to the disk, then rename it into place."""
    path = Path(path)
    with atomic_path(path, what=what) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # the rename must not reach the disk before the bytes do
    return path


def write_text_atomic(path: str | Path, text: str, what: str | None = None) -> Path:
    """Write ``text`` (UTF-8) to a temporary name beside ``path``, then rename it into place."""
    return write_bytes_atomic(path, text.encode("utf-8"), what)


def check_writable(folder: str | Path, key: str) -> Path:
    """Create ``folder`` if needed and prove that files can be made in it, before heavy work.

    Args:
        folder: a folder the run will write into.
        key: the config key or option that chose it, named in the message.
    """
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = temp_path(folder / "write-probe")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        if disk_error_kind(exc, folder / "write-probe") == "full":
            raise output_error(exc, folder / "write-probe", key) from exc
        reason = exc.strerror or str(exc)
        raise NotWritableError(
            f"{key}: cannot write in '{folder}': {reason}. Make it writable (e.g. chmod u+w '{folder}') or "
            f"choose another folder ({key}=...)."
        ) from exc
    return folder


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (another user's counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive but not ours
        return True
    return True


def stale_reason(name: str, age_s: float) -> str | None:
    """Why the temporary file or folder ``name`` is a leftover to remove, or None to keep it."""
    match = _TEMP.match(name)
    if match:
        pid = int(match["pid"])
        if match["host"] == host_tag():
            return None if pid_alive(pid) else f"process {pid} is gone"
        return f"left by host {match['host']} {age_s / 86400:.0f} days ago" if age_s > FOREIGN_GRACE_S else None
    match = _LEGACY.match(name)
    if match and age_s > LEGACY_GRACE_S and not pid_alive(int(match["pid"])):
        return f"process {match['pid']} is gone"
    return None


def remove_stale_temporaries(folder: str | Path, depth: int = 0) -> list[Path]:
    """Remove the temporary files and folders of killed processes in ``folder``.

    Those of live processes on this host (their pid is alive) are kept, and so are another
    host's (whose processes cannot be asked) unless older than :data:`FOREIGN_GRACE_S`.

    Args:
        folder: where to look; nothing happens when it does not exist.
        depth: also look this many folder levels below (e.g. ``checkpoints/``, ``plots/``).

    Returns:
        The paths removed.
    """
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        if entry.name.startswith("."):
            try:
                age = now - entry.stat(follow_symlinks=False).st_mtime
            except OSError:
                continue
            reason = stale_reason(entry.name, age)
            if reason is not None:
                _remove(Path(entry.path))
                log.info("removed %s, the leftover of a killed run (%s)", entry.path, reason)
                removed.append(Path(entry.path))
                continue
        if depth > 0 and entry.is_dir(follow_symlinks=False) and not _TEMP.match(entry.name):
            removed += remove_stale_temporaries(entry.path, depth - 1)
    return removed


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass
