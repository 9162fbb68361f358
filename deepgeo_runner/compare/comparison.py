"""A comparison of runs: the runs, their repeated-setting groups and a search's winner, as the
summary files (:mod:`deepgeo_runner.compare.summary`) and the page (:mod:`deepgeo_runner.compare.page`) read it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from deepgeo_runner.compare.aggregate import Group
from deepgeo_runner.compare.runs import METRIC_KEYS, RunRecord
from deepgeo_runner.compare.search import SearchResult


@dataclass
class Comparison:
    """Runs, their repeated-setting groups and (for a search) the winner, relative to ``out_dir``."""

    out_dir: Path
    runs: list[RunRecord]
    groups: list[Group] = field(default_factory=list)
    search: SearchResult | None = None

    def name(self, run: RunRecord) -> str:
        """The run's folder as the summary names it: relative to the summary's folder when inside it."""
        return relative_path(run.path, self.out_dir)

    def link(self, run: RunRecord) -> str | None:
        """The relative path from the summary to the run's report.html, if it has one."""
        return relative_path(run.report, self.out_dir) if run.report is not None else None

    def metric_names(self) -> list[str]:
        """Key metrics first (in METRIC_KEYS order), then per-class scores as they appear."""
        present = {k for r in self.runs for k in r.metrics}
        return [k for k in METRIC_KEYS if k in present] + sorted(present - set(METRIC_KEYS))

    def is_winner(self, run: RunRecord) -> bool:
        return self.search is not None and self.search.folder is not None and self.search.folder == run.path


def relative_path(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path.resolve(), start.resolve())).as_posix()
