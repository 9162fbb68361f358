"""The training history file (``logs/history.csv`` in the run directory): one row per epoch.

Written by :class:`deepgeo_runner.lit.callbacks.TrainingHistory` whatever the logger (or none),
read by the report for its training curves. Columns: ``epoch``, ``step`` (optimizer steps done
at the end of the epoch), then one per epoch-level score (``train_loss``, ``val_loss``,
``val_f1_macro``, ...); a score not logged in an epoch is empty. No torch here: the report
reads it without loading the training stack.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from pathlib import Path

from deepgeo_runner.core.atomic import write_text_atomic

HISTORY_FILE = Path("logs") / "history.csv"  # under the run directory
INDEX_COLUMNS = ("epoch", "step")

Row = dict[str, float]


def write_history(path: str | Path, rows: Iterable[Mapping[str, float]]) -> Path:
    """Write ``rows`` (epoch, step and scores) as the whole file, atomically."""
    rows = list(rows)
    scores = sorted({k for row in rows for k in row} - set(INDEX_COLUMNS))
    out = io.StringIO(newline="")
    table = csv.DictWriter(out, fieldnames=[*INDEX_COLUMNS, *scores], lineterminator="\n")
    table.writeheader()
    for row in rows:
        table.writerow({k: _text(k, v) for k, v in row.items()})
    return write_text_atomic(path, out.getvalue(), what="the training history")


def _text(key: str, value: float) -> str:
    return str(int(value)) if key in INDEX_COLUMNS else repr(float(value))


def read_history(path: str | Path) -> list[Row]:
    """The rows of a history file (epoch and step as ints, scores as floats); [] without the file."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{k: int(v) if k in INDEX_COLUMNS else float(v) for k, v in row.items() if v not in ("", None)}
                for row in csv.DictReader(f)]


def history_curves(rows: Iterable[Mapping[str, float]]) -> dict[str, list[tuple[int, float]]]:
    """Score name → [(epoch, value), ...]: what :func:`deepgeo_runner.report.plots.plot_training_curves` draws."""
    curves: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        for key, value in row.items():
            if key not in INDEX_COLUMNS:
                curves.setdefault(key, []).append((int(row["epoch"]), float(value)))
    return curves
