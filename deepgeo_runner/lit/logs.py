"""Training curves that survive a relaunch (``logs/metrics.csv``)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment

from deepgeo_runner.core.atomic import write_text_atomic


class HistoryCSVLogger(CSVLogger):
    """Lightning's CSVLogger, except that a resumed run keeps the curves of its earlier part.

    Lightning's deletes ``metrics.csv`` when it finds one, so a relaunch after a kill lost the
    first epochs' curves. Set :attr:`resume_after_epoch` to the epoch of the checkpoint being
    resumed: rows up to it are kept, rows of later epochs (one cut short by the interruption,
    which runs again) are dropped; left None, a new run starts a new file as before.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.resume_after_epoch: int | None = None

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        if self._experiment is not None:
            return self._experiment
        path = Path(self.log_dir) / "metrics.csv"
        kept = None
        if self.resume_after_epoch is not None and path.is_file():
            with open(path, newline="") as f:
                kept = _rows_up_to(f.read(), self.resume_after_epoch)
        writer = super().experiment  # removes metrics.csv
        if kept is not None and kept[0]:
            header, rows = kept
            out = io.StringIO(newline="")
            table = csv.DictWriter(out, fieldnames=header)  # "\r\n" rows, like the rows Lightning appends
            table.writeheader()
            table.writerows(rows)
            write_text_atomic(path, out.getvalue())
            writer.metrics_keys = list(header)  # new rows are appended under the same header
        return writer


def _rows_up_to(text: str, last_epoch: int) -> tuple[list[str], list[dict[str, str]]]:
    """The header and the rows of ``text`` whose epoch is at most ``last_epoch`` (rows without one stay)."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = []
    for row in reader:
        epoch = row.get("epoch") or ""
        try:
            keep = not epoch or float(epoch) <= last_epoch
        except ValueError:
            keep = True
        if keep:
            rows.append(row)
    return list(reader.fieldnames or []), rows
