"""Reading finished run directories: what a comparison of runs needs from each one.

A run directory is what one ``deepgeo`` run leaves (``.hydra/``, ``metrics.json``,
``provenance.json``, ``logs/history.csv``, ``plots/``, ``report.html``); a sweep directory
holds run directories (Hydra's numbered job folders). Everything is read defensively: a run
that failed, was interrupted or never started still gives a record, with its status and
whatever it wrote, so one broken job never hides the others.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from deepgeo_runner.config.schema import monitor_direction
from deepgeo_runner.core.history import HISTORY_FILE, read_history

METRIC_KEYS = ("map_accuracy", "accuracy", "kappa", "f1_macro", "iou_macro", "auc_macro", "cross_entropy",
               "test_coverage")  # map_accuracy (assessment.json) leads where runs have it; absent keys get no column
AREA_KEYS = ("area_ha", "mapped_area_ha")  # per class, from assessment.json: adjusted and mapped area (ha)
RUN_MARKERS = (Path(".hydra") / "overrides.yaml", Path("provenance.json"), Path("metrics.json"))
NOT_STARTED = "failed before start"  # a folder Hydra made whose run wrote no provenance.json (a config error)
DAMAGED = "damaged"  # a run whose metrics.json exists but cannot be read


@dataclass
class RunRecord:
    """One run directory as a comparison sees it."""

    path: Path
    overrides: list[str] = field(default_factory=list)
    status: str = NOT_STARTED
    seed: int | None = None
    model: str | None = None
    data: str | None = None
    code_version: str | None = None
    monitor: str | None = None
    monitor_mode: str | None = None  # "max" or "min"
    best_score: float | None = None  # best validation score of ``monitor`` over the epochs
    best_epoch: int | None = None
    wall_s: float | None = None  # the sum of the stage timings in provenance.json
    metrics: dict[str, float] = field(default_factory=dict)  # flat key metrics and per-class F1/IoU
    job_num: int | None = None  # Hydra's job number (a sweep's trial number under hparams_search=optuna)
    error: str | None = None

    @property
    def report(self) -> Path | None:
        path = self.path / "report.html"
        return path if path.is_file() else None

    def plot(self, name: str) -> Path | None:
        path = self.path / "plots" / f"{name}.png"
        return path if path.is_file() else None


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` holds any file a run writes (Hydra's overrides, provenance or metrics)."""
    return path.is_dir() and any((path / marker).is_file() for marker in RUN_MARKERS)


def sweep_runs(path: Path) -> list[Path]:
    """The run directories directly inside a sweep directory, in job order (0, 1, 2, ..., 10)."""
    if not path.is_dir():
        return []
    runs = [p for p in path.iterdir() if is_run_dir(p)]
    return sorted(runs, key=lambda p: (0, int(p.name), "") if p.name.isdigit() else (1, 0, p.name))


def _load(path: Path, reader) -> Any:
    """The parsed file, or None when it is absent or unreadable (a run killed mid-write)."""
    try:
        return reader(path.read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return None


def read_metrics(path: Path) -> tuple[dict | None, str | None]:
    """metrics.json parsed, or why it cannot be (None when absent: a run without a test stage)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"metrics.json is unreadable ({exc.strerror or exc}): {path}"
    try:
        metrics = json.loads(text)
    except ValueError as exc:
        return None, f"metrics.json is damaged (not JSON: {exc}): {path}"
    if not isinstance(metrics, dict):
        return None, f"metrics.json is damaged (a {type(metrics).__name__}, not an object of scores): {path}"
    return metrics, None


def _finite(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _data_of(data: dict) -> str | None:
    """What the run learned from: the image and labels, the demo scene, or a datamodule."""
    if not isinstance(data, dict):
        return None
    if data.get("image"):
        image = data["image"]
        image = ", ".join(map(str, image)) if isinstance(image, list) else str(image)
        return f"{image} | {data['labels']}" if data.get("labels") else image
    if isinstance(data.get("datamodule"), dict) and data["datamodule"].get("_target_"):
        return str(data["datamodule"]["_target_"])
    if data.get("name") == "demo":
        return f"demo scene ({data['demo_size']} px)" if data.get("demo_size") else "demo scene"
    return str(data["name"]) if data.get("name") else None


def _model_of(model: Any) -> str | None:
    """The model's ``_target_``, with the architecture and encoder where it names them."""
    if not isinstance(model, dict) or not model.get("_target_"):
        return None
    detail = ", ".join(str(model[k]) for k in ("arch", "encoder") if model.get(k))
    return f"{model['_target_']} ({detail})" if detail else str(model["_target_"])


def best_of_history(path: Path, monitor: str, mode: str) -> tuple[float | None, int | None]:
    """The best value of ``monitor`` in a history file, in its direction, and its epoch."""
    rows = [r for r in read_history(path) if _finite(r.get(monitor)) is not None]
    if not rows:
        return None, None
    pick = max if mode == "max" else min
    best = pick(rows, key=lambda r: r[monitor])
    return float(best[monitor]), int(best["epoch"])


def last_error(path: Path) -> str | None:
    """The last ERROR line of the job's log (``<job name>.log``): why a run stopped before provenance.json."""
    for log_file in sorted(path.glob("*.log")):
        try:
            lines = log_file.read_text(errors="replace").splitlines()
        except OSError:
            continue
        errors = [line.split("[ERROR] - ", 1)[-1] for line in lines if "[ERROR]" in line]
        if errors:
            return errors[-1].strip()
    return None


def code_text(value: Any) -> str | None:
    """A run's code version as one short text: provenance.json's ``code_version`` is a mapping
    (package, git_commit, source_sha256; see :func:`deepgeo_runner.pipeline.provenance.code_version`):
    the package version with the commit, or with the source digest's first 12 digits without one."""
    if isinstance(value, dict):
        package, commit, digest = value.get("package"), value.get("git_commit"), value.get("source_sha256")
        where = f"git {commit}" if commit else f"source {str(digest)[:12]}" if digest else None
        text = " ".join(str(v) for v in (package, f"({where})" if package and where else where) if v)
        return text or None
    return str(value) if value else None


def read_run(path: str | Path) -> RunRecord:
    """The record of one run directory; never raises for a missing or damaged file."""
    path = Path(path)
    rec = RunRecord(path=path)
    overrides = _load(path / ".hydra" / "overrides.yaml", yaml.safe_load)
    rec.overrides = [str(o) for o in overrides] if isinstance(overrides, list) else []
    config = _load(path / ".hydra" / "config.yaml", yaml.safe_load) or {}
    if not isinstance(config, dict):
        config = {}
    hydra = _load(path / ".hydra" / "hydra.yaml", yaml.safe_load) or {}
    job_num = (hydra.get("hydra", {}).get("job", {}) or {}).get("num") if isinstance(hydra, dict) else None
    rec.job_num = int(job_num) if isinstance(job_num, int) else None
    rec.seed = config.get("seed") if isinstance(config.get("seed"), int) else None
    rec.model = _model_of(config.get("model"))
    rec.data = _data_of(config.get("data"))
    train = config.get("train") if isinstance(config.get("train"), dict) else {}
    rec.monitor = str(train.get("monitor", "val_f1_macro"))
    rec.monitor_mode = monitor_direction(rec.monitor, str(train.get("monitor_mode", "auto")))
    rec.best_score, rec.best_epoch = best_of_history(path / HISTORY_FILE, rec.monitor, rec.monitor_mode)

    provenance = _load(path / "provenance.json", json.loads)
    if isinstance(provenance, dict):
        rec.status = str(provenance.get("status", "unknown"))
        rec.error = provenance.get("error")
        if rec.seed is None and isinstance(provenance.get("seed"), int):
            rec.seed = provenance["seed"]
        rec.code_version = code_text(provenance.get("code_version")) or code_text(provenance.get("git_commit"))
        timings = provenance.get("timings_s")
        if isinstance(timings, dict) and timings:
            rec.wall_s = round(sum(v for v in map(_finite, timings.values()) if v is not None), 2)
    elif rec.error is None:
        rec.error = last_error(path)
    metrics, problem = read_metrics(path / "metrics.json")
    if problem is not None:  # scores the run claims but cannot show: never a "completed" row with blanks
        rec.status, rec.error = DAMAGED, problem
    if isinstance(metrics, dict):
        rec.metrics = {k: v for k in METRIC_KEYS if (v := _finite(metrics.get(k))) is not None}
        for name, scores in (metrics.get("per_class") or {}).items():
            for key in ("f1", "iou"):
                if (v := _finite((scores or {}).get(key))) is not None:
                    rec.metrics[f"{key}[{name}]"] = v
    rec.metrics.update(map_metrics(_load(path / "assessment.json", json.loads)))
    return rec


def map_metrics(assessment: Any) -> dict[str, float]:
    """The map's own scores from ``assessment.json``: ``map_accuracy`` (overall accuracy) and, per
    class, the error-adjusted area ``area_ha[class]`` and the mapped one ``mapped_area_ha[class]``,
    plus the user's and producer's accuracies ``ua[class]``/``pa[class]``; empty without an assessment."""
    if not isinstance(assessment, dict):
        return {}
    out: dict[str, float] = {}
    oa = assessment.get("overall_accuracy")
    if isinstance(oa, dict) and (v := _finite(oa.get("estimate"))) is not None:
        out["map_accuracy"] = v
    for name, scores in (assessment.get("per_class") or {}).items():
        if not isinstance(scores, dict):
            continue
        for key, field_name in (("area_ha", "area_ha"), ("mapped_area_ha", "mapped_area_ha"),
                                ("ua", "users_accuracy"), ("pa", "producers_accuracy")):
            if (v := _finite(scores.get(field_name))) is not None:
                out[f"{key}[{name}]"] = v
    return out
