"""The stage cache: manifests checked on reuse, damaged entries rebuilt, leftovers of killed builders removed."""

from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from deepgeo_runner.core import cache
from deepgeo_runner.core.atomic import host_tag, temp_path
from deepgeo_runner.core.cache import cached_stage, reuse_entry, verify_entry
from deepgeo_runner.core.errors import DiskFullError, StageError

PAYLOAD = {"v": 1, "stage": "chips", "seed": 0}


def _dead_pid() -> int:
    """The pid of a child that has exited and been reaped: no process has it now."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


class _Builder:
    """A stage build that writes a small chip store and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, tmp: Path) -> None:
        self.calls += 1
        rng = np.random.default_rng(0)
        np.save(tmp / "train_image.npy", rng.standard_normal((8, 4, 32, 32)).astype(np.float32))  # 128 KiB
        (tmp / "chips.json").write_text(json.dumps({"counts": {"train": 8}}))


def _zero_bytes(path: Path, offset: int, length: int) -> None:
    """Damage a file in place, size unchanged (what a bad copy or a faulty disk does)."""
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(b"\0" * length)
    assert path.stat().st_size == size


def test_an_entry_carries_a_manifest_of_sizes_and_hashes(tmp_path):
    entry, key, reused = cached_stage(tmp_path, "chips", PAYLOAD, _Builder())
    record = json.loads((entry / "_complete.json").read_text())
    assert not reused and entry.name == key
    assert record["payload"] == PAYLOAD
    files = record["manifest"]["files"]
    assert set(files) == {"train_image.npy", "chips.json"}
    image = entry / "train_image.npy"
    assert files["train_image.npy"]["size"] == image.stat().st_size
    assert files["train_image.npy"]["sha256"] == cache.hash_file(image)
    assert verify_entry(entry) is None


def test_zeroed_bytes_inside_a_chip_file_are_detected_and_the_entry_rebuilt(tmp_path, caplog):
    build = _Builder()
    entry, _, _ = cached_stage(tmp_path, "chips", PAYLOAD, build)
    original = (entry / "train_image.npy").read_bytes()
    _zero_bytes(entry / "train_image.npy", 4096, 64 * 1024)
    with caplog.at_level(logging.WARNING, logger="deepgeo_runner.core.cache"):
        again, _, reused = cached_stage(tmp_path, "chips", PAYLOAD, build)
    assert not reused and build.calls == 2
    assert (again / "train_image.npy").read_bytes() == original
    warning = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warning) == 1
    assert str(entry) in warning[0].getMessage() and "damaged" in warning[0].getMessage()
    assert "train_image.npy" in warning[0].getMessage() and "rebuilding" in warning[0].getMessage()
    assert not [p for p in entry.parent.iterdir() if p.name.startswith(".")]  # nothing left aside


def test_damage_hidden_from_mtime_is_still_seen_through_ctime(tmp_path):
    entry, _, _ = cached_stage(tmp_path, "chips", PAYLOAD, _Builder())
    image = entry / "train_image.npy"
    before = image.stat()
    _zero_bytes(image, 4096, 64 * 1024)
    os.utime(image, ns=(before.st_atime_ns, before.st_mtime_ns))  # as a careless copy tool would
    assert "content of train_image.npy differs" in verify_entry(entry)


def test_a_truncated_raster_is_detected_by_its_size(tmp_path, caplog):
    def build(tmp: Path) -> None:
        (tmp / "prepared.tif").write_bytes(os.urandom(50_000))

    entry, _, _ = cached_stage(tmp_path, "prepare", PAYLOAD, build)
    with open(entry / "prepared.tif", "r+b") as f:
        f.truncate(20_000)
    assert "prepared.tif holds 20,000 bytes, its manifest 50,000" in verify_entry(entry)
    with caplog.at_level(logging.WARNING, logger="deepgeo_runner.core.cache"):
        _, _, reused = cached_stage(tmp_path, "prepare", PAYLOAD, build)
    assert not reused and (entry / "prepared.tif").stat().st_size == 50_000
    assert any("prepare: cache entry" in r.getMessage() and str(entry) in r.getMessage() for r in caplog.records)


def test_a_missing_file_and_an_entry_without_manifest_are_damaged(tmp_path):
    entry, _, _ = cached_stage(tmp_path, "chips", PAYLOAD, _Builder())
    (entry / "chips.json").unlink()
    assert verify_entry(entry) == "chips.json is missing"
    (entry / "_complete.json").write_text(json.dumps(PAYLOAD))  # the format of older versions
    assert "no manifest" in verify_entry(entry)
    (entry / "_complete.json").write_text("{not json")
    assert "unreadable" in verify_entry(entry)


def test_reuse_without_the_stage_names_the_entry_to_delete_and_the_stage_to_add(tmp_path):
    with pytest.raises(StageError, match=r"not in the cache .*add 'chips' to stages"):
        reuse_entry(tmp_path, "chips", PAYLOAD)
    entry, _, _ = cached_stage(tmp_path, "chips", PAYLOAD, _Builder())
    assert reuse_entry(tmp_path, "chips", PAYLOAD) == (entry, entry.name, True)
    _zero_bytes(entry / "train_image.npy", 4096, 64 * 1024)
    with pytest.raises(StageError) as info:
        reuse_entry(tmp_path, "chips", PAYLOAD)
    message = str(info.value)
    assert f"rm -r '{entry}'" in message and "add 'chips' to stages" in message and "train_image.npy" in message


def test_the_runner_entry_helper_verifies_when_it_only_reuses(tmp_path):
    from deepgeo_runner.core.cache import cache_entry

    build = _Builder()
    entry, _, _ = cache_entry(tmp_path, "chips", PAYLOAD, build, True)
    _zero_bytes(entry / "train_image.npy", 4096, 64 * 1024)
    with pytest.raises(StageError, match="damaged"):
        cache_entry(tmp_path, "chips", PAYLOAD, build, False)
    assert build.calls == 1


def test_a_reverification_is_a_stat_unless_a_file_changed_or_full_is_asked(tmp_path, monkeypatch):
    entry, _, _ = cached_stage(tmp_path, "chips", PAYLOAD, _Builder())
    hashed: list[str] = []
    real = cache.hash_file
    monkeypatch.setattr(cache, "hash_file", lambda path, *a: hashed.append(Path(path).name) or real(path, *a))
    assert verify_entry(entry) is None and hashed == []  # stamped at build time
    monkeypatch.setenv("DEEPGEO_CACHE_VERIFY", "full")
    assert verify_entry(entry) is None and sorted(hashed) == ["chips.json", "train_image.npy"]
    monkeypatch.delenv("DEEPGEO_CACHE_VERIFY")
    hashed.clear()
    (entry / "chips.json").write_text((entry / "chips.json").read_text())  # same bytes, new mtime
    assert verify_entry(entry) is None and sorted(hashed) == ["chips.json", "train_image.npy"]
    hashed.clear()
    assert verify_entry(entry) is None and hashed == []  # the new stamp holds


def test_leftovers_of_killed_builders_are_removed_and_live_ones_kept(tmp_path):
    stage_dir = tmp_path / "chips"
    stage_dir.mkdir()
    dead = stage_dir / f".0123456789abcdef.{host_tag()}-{_dead_pid()}.tmp"
    live = stage_dir / f".fedcba9876543210.{host_tag()}-{os.getpid()}.tmp"
    foreign = stage_dir / ".aaaaaaaaaaaaaaaa.otherhost-1.tmp"  # another machine's: cannot ask, keep
    for folder in (dead, live, foreign):
        folder.mkdir()
        (folder / "prepared.tif").write_bytes(b"x" * 1000)
    cached_stage(tmp_path, "chips", PAYLOAD, _Builder())
    assert not dead.exists()
    assert live.exists() and foreign.exists()


def test_a_full_disk_during_a_build_leaves_no_entry_and_says_where(tmp_path):
    def build(tmp: Path) -> None:
        (tmp / "train_image.npy").write_bytes(b"x" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp / "train_image.npy"))

    with pytest.raises(DiskFullError) as info:
        cached_stage(tmp_path, "chips", PAYLOAD, build)
    message = str(info.value)
    assert "no space left" in message and str(tmp_path / "chips") in message and "paths.cache_dir" in message
    assert list((tmp_path / "chips").iterdir()) == []  # neither the entry nor its temporary folder


def test_temporary_names_carry_host_and_pid():
    name = temp_path(Path("/x/prediction.tif")).name
    assert name == f".prediction.tif.{host_tag()}-{os.getpid()}.tmp"
    assert temp_path(Path("/x/p.gpkg"), keep_suffix=True).name.endswith(".tmp.gpkg")


def _scene_cfg(tiny_scene, tmp_path: Path, *extra: str):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from deepgeo_runner.cli import config_dir
    from deepgeo_runner.config.schema import register_configs

    GlobalHydra.instance().clear()
    register_configs()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose("config", overrides=[
            "data=scene", f"data.image={tiny_scene['image']}", f"data.labels={tiny_scene['labels']}",
            "data.classes=[forest,clearing]", "data.band_names=[blue,green,red,nir]", "preprocessing.indices=[]",
            "data.chip_size=8", "data.block_size=16", "data.split_buffer=0", "data.train_chips=20",
            f"paths.cache_dir={tmp_path / 'cache'}", f"paths.output_dir={tmp_path / 'out'}", *extra,
        ], return_hydra_config=False)


def test_a_run_rebuilds_a_damaged_chip_store_and_a_truncated_prepared_raster(tiny_scene, tmp_path, caplog):
    from deepgeo_runner.pipeline.runner import run

    cfg = _scene_cfg(tiny_scene, tmp_path, "stages=[prepare,rasterize,chips]")
    first = run(cfg, tmp_path / "run1")
    chips = first.chips.path / "train_image.npy"
    store = chips.read_bytes()
    _zero_bytes(chips, 128, min(64 * 1024, chips.stat().st_size - 128))
    prepared = first.prepared.path
    with open(prepared, "r+b") as f:
        f.truncate(prepared.stat().st_size // 2)
    with caplog.at_level(logging.WARNING, logger="deepgeo_runner.core.cache"):
        second = run(cfg, tmp_path / "run2")
    assert second.reused == {"prepare": False, "rasterize": True, "chips": False}
    assert second.cache_keys == first.cache_keys
    assert chips.read_bytes() == store  # rebuilt to the same bytes
    damaged = {r.getMessage().split(":")[0] for r in caplog.records if r.levelno == logging.WARNING}
    assert damaged == {"prepare", "chips"}


def test_a_later_stage_alone_refuses_a_damaged_entry_naming_it(tiny_scene, tmp_path):
    from deepgeo_runner.pipeline.runner import run

    first = run(_scene_cfg(tiny_scene, tmp_path, "stages=[prepare,rasterize,chips]"), tmp_path / "run1")
    with open(first.prepared.path, "r+b") as f:
        f.truncate(first.prepared.path.stat().st_size - 100)
    with pytest.raises(StageError) as info:
        run(_scene_cfg(tiny_scene, tmp_path, "stages=[chips]"), tmp_path / "run2")
    assert str(first.prepared.path.parent) in str(info.value) and "add 'prepare' to stages" in str(info.value)
