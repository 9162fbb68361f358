"""The record of a predicted scene (``prediction_scene.json``), written last, after all the scene's
outputs (each written atomically), for its checkpoint, sources and prediction options: a relaunch
skips a scene whose record matches. What ``predict.image`` may be, and its scenes, is
:mod:`deepgeo_runner.geo.scene_sources`."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from deepgeo_runner.core.atomic import write_text_atomic
from deepgeo_runner.core.cache import file_fingerprint
from deepgeo_runner.geo.scene_sources import Scene

log = logging.getLogger(__name__)

RECORD = "prediction_scene.json"  # written last: the scene is done


def _stat(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    st = Path(path).stat()
    return {"path": str(Path(path).resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def scene_identity(scene: Scene, checkpoint: Path | None, options: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the scene's outputs depend on: its files, the checkpoint, the prediction options.
    None when the weights are not a file (they cannot be told apart on a relaunch)."""
    if checkpoint is None:
        return None
    return {
        "sources": [{"date": d or None, **_stat(p)} for d, paths in scene.groups.items() for p in paths],
        "checkpoint": _stat(checkpoint),
        "options": json.loads(json.dumps(dict(options), sort_keys=True, default=str)),
        # reference labels scored against (prediction_metrics.json): an edited file means new scores
        "labels": _stat(Path(options["labels"])) if options.get("labels") else None,
    }


def finished(scene: Scene, identity: dict[str, Any] | None) -> bool:
    """True when ``scene``'s record says its outputs were written for ``identity`` and they are all there."""
    record = scene.out_dir / RECORD
    if identity is None or not record.is_file():
        return False
    try:
        done = json.loads(record.read_text())
    except (OSError, ValueError):
        return False
    if {k: done.get(k) for k in identity} != identity:
        changed = sorted(k for k in identity if done.get(k) != identity[k])
        log.info("predicting %s again: its %s changed since %s was written", scene.name, ", ".join(changed), record)
        return False
    return all((scene.out_dir / name).exists() for name in done.get("outputs", []))


def forget_record(scene: Scene) -> None:
    """Before a scene's outputs are (re)written: its record goes first. Otherwise a redo killed
    half-way (new prediction.tif, old record) would be skipped by a later launch whose identity
    matches the old record, leaving outputs of other options or weights vouched for as done.

    The outputs the old record lists go with it: a redo with fewer outputs (probabilities off
    after uint8) must not leave the earlier run's prediction_proba.tif beside the new map."""
    record = scene.out_dir / RECORD
    try:
        listed = json.loads(record.read_text()).get("outputs", [])
    except (OSError, ValueError, AttributeError):
        listed = []
    record.unlink(missing_ok=True)
    root = scene.out_dir.resolve()
    for name in listed:
        path = (scene.out_dir / str(name)).resolve()
        if path.parent == root or root in path.parents:  # only our own files, inside the scene's folder
            path.unlink(missing_ok=True)


def write_record(scene: Scene, identity: dict[str, Any] | None, outputs: Sequence[Path]) -> Path:
    """The scene is done: its sources (with SHA-256), checkpoint, options and outputs, written last."""
    record = {"scene": scene.name, "image": scene.source, **(identity or {}),
              "sha256": {str(p): file_fingerprint(p) for p in scene.tiles},
              "outputs": [str(Path(p).relative_to(scene.out_dir)) for p in outputs]}
    return write_text_atomic(scene.out_dir / RECORD, json.dumps(record, indent=2, default=str) + "\n")
