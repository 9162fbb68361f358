"""``predict.image`` as a list of scenes, each classified into outputs of its own.

What ``predict.image`` may be (the schema's comment says the same):

- a path: one scene; a glob (``scenes/*.tif``): every match is one scene;
- a list: each item one scene: a path (a glob item adds every match), a list of tiles to
  mosaic (globs allowed among them), or a mapping date → path or tiles (a time stack);
- a mapping date → path or tiles: one time-stacked scene.

One scene keeps the run directory's usual names (``prediction.tif``, ``predict_input/``, ...);
several scenes write into ``scenes/<name>/`` each, ``<name>`` being the scene's file stem
(the parent folder's name is put before a stem that two scenes share). A scene is finished
when its record was written, after all its outputs: a relaunch skips it.

Only the standard library is imported at module level: the config checks use this module
before GDAL or torch is loaded. ``image`` is plain Python (str, list, dict), as the typed options hold it.
The record that makes a relaunch skip a finished scene is the task layer's (:mod:`deepgeo_runner.pipeline.scenes`).
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepgeo_runner.core.errors import ConfigError, InputDataError

KEY = "predict.image"
SCENES_DIR = "scenes"

Source = str | list[str] | dict[str, str | list[str]]  # what prepare_like_checkpoint takes


@dataclass(frozen=True)
class Scene:
    """One scene of ``predict.image``: its name, what to prepare, and where its outputs go."""

    name: str
    source: Source
    out_dir: Path

    @property
    def groups(self) -> dict[str, list[Path]]:
        """date → tiles ('' for a scene of one date), as :func:`deepgeo_runner.geo.scene.date_groups`."""
        if isinstance(self.source, dict):
            return {d: [Path(p) for p in _as_list(t)] for d, t in self.source.items()}
        return {"": [Path(p) for p in _as_list(self.source)]}

    @property
    def tiles(self) -> list[Path]:
        return [p for paths in self.groups.values() for p in paths]


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, list | tuple) else [value]


def _glob(pattern: str, where: str) -> list[str]:
    """The sorted matches of ``pattern``, or the pattern itself when it has no wildcard."""
    if not glob.has_magic(pattern):
        return [pattern]
    matches = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
    if not matches:
        raise ConfigError(f"{where}='{pattern}' matches no file (looked in {Path.cwd()}).")
    return matches


def _tiles(value: Any, where: str) -> list[str]:
    if isinstance(value, str | Path):
        return _glob(str(value), where)
    if isinstance(value, list | tuple) and value and all(isinstance(v, str | Path) for v in value):
        return [t for v in value for t in _glob(str(v), where)]
    raise ConfigError(f"{where}={value!r} is not valid: expected a raster path or a list of tiles to mosaic.")


def scene_sources(image: Any) -> list[Source]:
    """``predict.image`` as one source per scene, globs expanded (see the module's rules)."""
    if image is None:
        return []
    if isinstance(image, str | Path):
        return list(_glob(str(image), KEY))
    if isinstance(image, Mapping):
        return [_stack(image, KEY)]
    if not isinstance(image, list | tuple) or not image:
        raise ConfigError(f"{KEY}={image!r} is not valid: expected a raster path, a glob (scenes/*.tif), "
                          "a list of scenes, or a mapping date → raster.")
    sources: list[Source] = []
    for i, item in enumerate(image):
        where = f"{KEY}[{i}]"
        if isinstance(item, str | Path):
            sources += _glob(str(item), where)
        elif isinstance(item, Mapping):
            sources.append(_stack(item, where))
        elif isinstance(item, list | tuple):
            tiles = _tiles(item, where)
            sources.append(tiles[0] if len(tiles) == 1 else tiles)
        else:
            raise ConfigError(f"{where}={item!r} is not valid: expected a raster path, a list of tiles to mosaic "
                              "([[a1.tif, a2.tif]]) or a mapping date → raster.")
    return sources


def _stack(mapping: Mapping, where: str) -> dict[str, str | list[str]]:
    if not mapping:
        raise ConfigError(f"{where} is an empty mapping: give date → raster (or tiles).")
    stack = {}
    for date, tiles in mapping.items():
        if tiles is None or (isinstance(tiles, list | tuple) and not tiles):
            raise ConfigError(f"{where}: date '{date}' names no file.")
        found = _tiles(tiles, f"{where}.{date}")
        stack[str(date)] = found[0] if len(found) == 1 else found
    return stack


def _first_tile(source: Source) -> Path:
    first = next(iter(source.values())) if isinstance(source, dict) else source
    return Path(first[0] if isinstance(first, list) else first)


def scene_names(sources: Sequence[Source]) -> list[str]:
    """A distinct folder name per scene: the first file's stem, the parent folder's name put before
    a stem two scenes share, a counter as the last resort; a scene listed twice is an error."""
    firsts = [_first_tile(s) for s in sources]
    names = [p.stem for p in firsts]
    seen: dict[str, int] = {}
    for i, source in enumerate(sources):
        key = json.dumps(source, sort_keys=True, default=str)
        if key in seen:
            raise ConfigError(f"{KEY} lists the scene {source!r} twice (items {seen[key]} and {i}).")
        seen[key] = i
    stems = list(names)
    for i, name in enumerate(stems):
        if stems.count(name) > 1:
            parent = firsts[i].resolve().parent.name
            names[i] = f"{parent}_{name}" if parent else name
    for i, name in enumerate(list(names)):
        if names[:i].count(name):
            names[i] = f"{name}-{names[:i].count(name) + 1}"
    return names


def predict_scenes(image: Any, run_dir: str | Path) -> list[Scene]:
    """The scenes of ``predict.image`` and their output folders (``run_dir`` itself for one scene)."""
    run_dir = Path(run_dir)
    sources = scene_sources(image)
    if len(sources) == 1:
        return [Scene(_first_tile(sources[0]).stem, sources[0], run_dir)]
    names = scene_names(sources)
    return [Scene(n, s, run_dir / SCENES_DIR / n) for n, s in zip(names, sources, strict=True)]


def scene_files(image: Any) -> list[Path]:
    """Every raster of every scene of ``predict.image``, globs expanded."""
    return [t for source in scene_sources(image) for t in Scene("", source, Path()).tiles]


def check_scene_files(image: Any) -> None:
    """Every file of every scene exists (config time: globs expanded, nothing opened)."""
    for i, source in enumerate(scene_sources(image)):
        scene = Scene(_first_tile(source).stem, source, Path())
        for date, tiles in scene.groups.items():
            for tile in tiles:
                if not tile.exists():
                    where = KEY if isinstance(image, str | Path) else f"{KEY} scene {i} ({scene.name})"
                    where += f", date {date}" if date else ""
                    raise ConfigError(f"{where}: '{tile}': no such file (looked in {Path.cwd()}).")


def check_scenes_fit(scenes: Sequence[Scene], meta: Mapping[str, Any]) -> None:
    """Before any scene is predicted: each opens, is georeferenced, and has the checkpoint's
    dates and bands, so a bad scene among hundreds fails the run at once, named."""
    import rasterio

    bands = list(meta.get("band_names") or [])
    dates = list(meta.get("dates") or [])
    for scene in scenes:
        groups = scene.groups
        label = f"{KEY} scene '{scene.name}'"
        if len(groups) > 1 and len(groups) != max(len(dates), 1):
            raise InputDataError(f"{label} stacks {len(groups)} dates {list(groups)} but the checkpoint was trained "
                                 f"on {max(len(dates), 1)} date(s) {dates}: give as many dates, in the same order.")
        per_file = len(bands) * (1 if len(groups) > 1 else max(len(dates), 1))
        for tile in scene.tiles:
            try:
                with rasterio.open(tile) as src:
                    count, crs = src.count, src.crs
            except rasterio.errors.RasterioIOError as exc:
                raise InputDataError(f"{label}: cannot read '{tile}' as a raster: {exc}") from exc
            if crs is None:
                raise InputDataError(f"{label}: '{tile}' has no CRS: georeference it first (gdal_edit.py -a_srs).")
            if bands and count != per_file:
                raise InputDataError(
                    f"{label}: '{tile}' has {count} bands but the checkpoint was trained on {per_file} "
                    f"({bands}{f' x {len(dates)} dates' if len(groups) == 1 and len(dates) > 1 else ''}): "
                    "give scenes of the same product."
                )
