"""The comparison of a set of runs as files: ``summary.csv``, ``summary.json`` and ``summary.html``.

One row per run (its folder, overrides, status, key metrics, best validation score, wall time,
report), then, for each setting repeated over folds or seeds, the mean and 95 % interval rows.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deepgeo_runner.compare.aggregate import Group, aggregate
from deepgeo_runner.compare.comparison import Comparison, relative_path
from deepgeo_runner.compare.page import summary_html
from deepgeo_runner.compare.runs import RunRecord, read_run, sweep_runs
from deepgeo_runner.compare.search import search_result
from deepgeo_runner.core.atomic import write_text_atomic

SUMMARY_NAMES = ("summary.csv", "summary.json", "summary.html")


def compare(run_dirs: Sequence[Path], out_dir: Path, sweep_dir: Path | None = None) -> Comparison:
    """Read the runs, group repeated settings and find a search's winner (in ``sweep_dir``)."""
    runs = [read_run(p) for p in run_dirs]
    comparison = Comparison(Path(out_dir), runs, aggregate(runs))
    if sweep_dir is not None:
        comparison.search = search_result(Path(sweep_dir), runs)
    return comparison


def summarize_sweep(sweep_dir: Path) -> Comparison:
    """The summary a multirun leaves in its sweep directory (summary.csv/.json/.html)."""
    sweep_dir = Path(sweep_dir)
    comparison = compare(sweep_runs(sweep_dir), sweep_dir, sweep_dir)
    write_summary(comparison)
    return comparison


def write_summary(comparison: Comparison) -> list[Path]:
    """Write the three summary files into ``comparison.out_dir``."""
    out = comparison.out_dir
    out.mkdir(parents=True, exist_ok=True)
    return [
        write_text_atomic(out / "summary.csv", summary_csv(comparison), what="the runs' summary"),
        write_text_atomic(out / "summary.json", json.dumps(summary_record(comparison), indent=2, default=str),
                          what="the runs' summary"),
        write_text_atomic(out / "summary.html", summary_html(comparison), what="the runs' summary"),
    ]


def _run_record(c: Comparison, run: RunRecord) -> dict[str, Any]:
    record = {
        "row": "run", "run": c.name(run), "status": run.status, "overrides": run.overrides,
        "seed": run.seed, "model": run.model, "data": run.data, "code_version": run.code_version,
        "monitor": run.monitor, "best_score": run.best_score, "best_epoch": run.best_epoch,
        "wall_s": run.wall_s, "report": c.link(run), **run.metrics,
    }
    if run.error:
        record["error"] = run.error
    if c.search is not None:
        record["best_trial"] = c.is_winner(run)
    return record


def _group_records(group: Group) -> list[dict[str, Any]]:
    """A mean, a ci95_low, a ci95_high and an n row (runs aggregated per metric) for the group's metrics;
    ``runs`` counts the values aggregated, not the runs of the setting (a failed one has none)."""
    rows = []
    for row, part in (("mean", "mean"), ("ci95_low", "low"), ("ci95_high", "high"), ("n", "n")):
        rows.append({"row": row, "overrides": list(group.overrides), "runs": group.counted(),
                     **{k: getattr(iv, part) for k, iv in group.intervals.items()}})
    return rows


def summary_record(c: Comparison) -> dict[str, Any]:
    """What summary.json holds: the runs, the repeated settings with intervals, the search's winner."""
    record: dict[str, Any] = {
        "runs": [_run_record(c, r) for r in c.runs],
        "groups": [
            {"overrides": list(g.overrides), "runs": [c.name(r) for r in g.runs],
             "intervals": {k: {"mean": iv.mean, "ci95": [iv.low, iv.high], "n": iv.n}
                           for k, iv in g.intervals.items()}}
            for g in c.groups
        ],
        "confidence": 0.95,
    }
    if c.search is not None:
        s = c.search
        record["search"] = {"best_params": s.best_params, "best_value": s.best_value, "trial": s.trial,
                            "folder": relative_path(s.folder, c.out_dir) if s.folder else None, "n_trials": s.n_trials,
                            "states": s.states}
    return record


def summary_csv(c: Comparison) -> str:
    """One row per run, then mean / ci95_low / ci95_high / n rows per repeated setting."""
    metrics = c.metric_names()
    columns = ["row", "run", "status", "overrides", "runs", "seed", "model", "data", "code_version",
               *metrics, "monitor", "best_score", "best_epoch", "wall_s", "report", "error"]
    if c.search is not None:
        columns.append("best_trial")
    out = io.StringIO(newline="")
    table = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    table.writeheader()
    rows = [_run_record(c, r) for r in c.runs] + [row for g in c.groups for row in _group_records(g)]
    for row in rows:
        row["overrides"] = " ".join(row.get("overrides") or [])
        table.writerow({k: "" if row.get(k) is None else row[k] for k in columns})
    return out.getvalue()
