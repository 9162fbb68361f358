"""Every write goes to a temporary name first; a full disk or a read-only folder gives one message naming
the path and leaves nothing truncated; leftovers of killed processes are removed, those of live ones kept."""

from __future__ import annotations

import errno
import os
import subprocess
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from deepgeo_runner.core import atomic
from deepgeo_runner.core.atomic import (
    check_writable,
    host_tag,
    remove_stale_temporaries,
    temp_path,
    write_text_atomic,
)
from deepgeo_runner.core.errors import DiskFullError, NotWritableError
from deepgeo_runner.geo.raster_io import Grid, open_raster_writer, write_raster

GRID = Grid(rasterio.crs.CRS.from_epsg(32722), Affine(30, 0, 600_000, 0, -30, 9_600_000), 512, 512)


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_text_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    target = write_text_atomic(tmp_path / "metrics.json", '{"accuracy": 0.9}')
    monkeypatch.setattr(atomic.os, "fsync", _enospc)
    with pytest.raises(DiskFullError) as info:
        write_text_atomic(target, '{"accuracy": 0.95, "per_class": {}}')
    message = str(info.value)
    assert str(target) in message and "no space left" in message and "df -h" in message
    assert target.read_text() == '{"accuracy": 0.9}'  # the earlier file, whole
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary left


def test_a_raster_write_failing_on_a_full_disk_says_so_and_leaves_nothing(tmp_path, monkeypatch):
    """GDAL says only "Write failed"; the free space left on the device tells a full disk."""
    real_open = rasterio.open

    class FailingWriter:
        def __init__(self, dst):
            self.dst = dst

        def __getattr__(self, name):
            return getattr(self.dst, name)

        def write(self, *args, **kwargs):
            raise rasterio.errors.RasterioIOError("Write failed. See previous exception for details.")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.dst.close()

    def failing_open(path, mode="r", **kwargs):
        dst = real_open(path, mode, **kwargs)
        return FailingWriter(dst) if mode == "w" else dst

    monkeypatch.setattr(rasterio, "open", failing_open)
    monkeypatch.setattr(atomic, "_free_bytes", lambda where: 12_288)
    with pytest.raises(DiskFullError, match=r"prediction\.tif.*0\.0 MiB free"):
        write_raster(tmp_path / "prediction.tif", np.zeros((512, 512), np.uint8), GRID, 255)
    with pytest.raises(DiskFullError, match=r"prepared\.tif"):
        with open_raster_writer(tmp_path / "prepared.tif", GRID, 1, "float32", -9999.0) as dst:
            dst.write(np.zeros((1, 512, 512), np.float32))
    assert list(tmp_path.iterdir()) == []


def test_a_write_error_with_space_left_stays_a_bug_with_its_traceback(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_free_bytes", lambda where: 10 << 30)
    with pytest.raises(ZeroDivisionError):
        with open_raster_writer(tmp_path / "prepared.tif", GRID, 1, "float32", -9999.0):
            1 / 0  # noqa: B018
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A real 256 KiB file system (needs the right to mount; skipped otherwise)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs CAP_SYS_ADMIN)")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_a_really_full_disk_leaves_no_truncated_raster(tiny_tmpfs):
    noise = np.random.default_rng(0).random((2, 512, 512)).astype(np.float32)  # 2 MiB, incompressible
    (tiny_tmpfs / "prediction.tif").write_bytes(b"earlier")
    with pytest.raises(DiskFullError, match=str(tiny_tmpfs / "prediction.tif")):
        write_raster(tiny_tmpfs / "prediction.tif", noise, GRID, None)
    assert (tiny_tmpfs / "prediction.tif").read_bytes() == b"earlier"
    assert [p.name for p in tiny_tmpfs.iterdir()] == ["prediction.tif"]


def test_a_read_only_folder_is_named_with_the_fix(tmp_path, monkeypatch):
    def denied(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "write_bytes", denied)
    with pytest.raises(NotWritableError) as info:
        check_writable(tmp_path / "cache", "paths.cache_dir")
    message = str(info.value)
    assert message.startswith(f"paths.cache_dir: cannot write in '{tmp_path / 'cache'}': Permission denied")
    assert "chmod u+w" in message and "paths.cache_dir=..." in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_chmod_read_only_folder_is_refused(tmp_path):
    folder = tmp_path / "runs"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(NotWritableError, match="hydra.run.dir"):
            check_writable(folder / "x", "hydra.run.dir")
    finally:
        folder.chmod(0o755)


def test_leftovers_of_killed_runs_go_and_those_of_live_ones_stay(tmp_path):
    dead, me = _dead_pid(), os.getpid()
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    names = {
        "dead_raster": run_dir / f".prediction.tif.{host_tag()}-{dead}.tmp",
        "dead_cog": run_dir / f"..prediction.tif.{host_tag()}-{dead}.tmp.cog.{host_tag()}-{dead}.tmp",
        "dead_gpkg": run_dir / f".prediction_polygons.gpkg.{host_tag()}-{dead}.tmp.gpkg",
        "dead_nested": run_dir / "checkpoints" / f".metrics.json.{host_tag()}-{dead}.tmp",
        "legacy_old": run_dir / f".prediction.tif.{dead}.tmp",  # written by an older version
        "legacy_old_cog": run_dir / f".prediction.tif.{dead}.tmp.cog",
        "live": run_dir / f".prediction.tif.{host_tag()}-{me}.tmp",
        "legacy_young": run_dir / f".report.html.{dead}.tmp",  # maybe another host's: wait an hour
        "foreign": run_dir / f".prediction.tif.otherhost-{dead}.tmp",
        "user_file": run_dir / ".notes.tmp",
        "real": run_dir / "prediction.tif",
    }
    for path in names.values():
        path.write_bytes(b"")
    hour_ago = time.time() - 2 * 3600
    for key in ("legacy_old", "legacy_old_cog"):
        os.utime(names[key], (hour_ago, hour_ago))
    removed = remove_stale_temporaries(run_dir, depth=1)
    gone = {k for k, p in names.items() if not p.exists()}
    assert gone == {"dead_raster", "dead_cog", "dead_gpkg", "dead_nested", "legacy_old", "legacy_old_cog"}
    assert set(removed) == {names[k] for k in gone}


def test_another_hosts_leftovers_go_only_when_old(tmp_path):
    stale = tmp_path / f".{uuid.uuid4().hex[:16]}.otherhost-123.tmp"
    stale.mkdir()
    week_ago = time.time() - 8 * 24 * 3600
    os.utime(stale, (week_ago, week_ago))
    assert remove_stale_temporaries(tmp_path) == [stale]


def test_temporary_names_are_recognized_for_odd_host_names(monkeypatch):
    monkeypatch.setattr(atomic.socket, "gethostname", lambda: "node-7.cluster_a.example")
    name = temp_path(Path("x/prediction.tif")).name
    assert name == f".prediction.tif.node-7-cluster-a-example-{os.getpid()}.tmp"
    assert atomic.stale_reason(name, 0.0) is None  # this very process: alive


def test_a_chip_store_on_a_full_disk_fails_cleanly_not_with_sigbus(tiny_tmpfs):
    """Chips are written through a memory map; its blocks are reserved first, so a full disk is an
    error the cache reports naming the entry, not a SIGBUS that kills the process."""
    from deepgeo_runner.core.cache import cached_stage
    from deepgeo_runner.stages.chips import _new_npy

    def build(tmp: Path) -> None:
        chips = _new_npy(tmp / "train_image.npy", np.float32, (1000, 4, 32, 32))  # 16 MiB > 256 KiB
        chips[:] = 1.0

    with pytest.raises(DiskFullError, match=r"cache entry of stage 'chips'"):
        cached_stage(tiny_tmpfs, "chips", {"v": 1}, build)
    assert list((tiny_tmpfs / "chips").iterdir()) == []
