"""Which folder of a hyperparameter search won: the best trial of Optuna mapped to its run directory.

The Optuna sweeper writes ``optimization_results.yaml`` (best parameters and value) and, with
``hparams_search=optuna``, keeps the study in ``optuna.db`` in the sweep directory. A trial's
parameters are its job's overrides, so the winner is the run whose overrides carry exactly the
best parameters (its Hydra job number equals the trial number: see deepgeo_runner.sweeper).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from deepgeo_runner.compare.runs import RunRecord

RESULTS_FILE = "optimization_results.yaml"
STUDY_FILE = "optuna.db"  # where conf/hparams_search/optuna.yaml stores the study


@dataclass
class SearchResult:
    """The winner of a search and where it ran."""

    best_params: dict[str, Any]
    best_value: float | None
    folder: Path | None = None  # the winning trial's run directory
    trial: int | None = None  # its Optuna trial number, when the study is stored
    n_trials: int | None = None  # trials in the stored study (all launches together)
    states: dict[str, int] = field(default_factory=dict)  # COMPLETE / FAIL / ... → count


def _same(value: Any, wanted: Any) -> bool:
    if isinstance(value, int | float) and isinstance(wanted, int | float) and not isinstance(value, bool):
        return math.isclose(float(value), float(wanted), rel_tol=1e-9, abs_tol=0.0)
    return str(value) == str(wanted)


def has_params(run: RunRecord, params: dict[str, Any]) -> bool:
    """Whether the run's overrides set every parameter to the given value."""
    given = {}
    for override in run.overrides:
        key, sep, text = override.partition("=")
        if sep:
            try:
                given[key.lstrip("+")] = yaml.safe_load(text)
            except yaml.YAMLError:
                given[key.lstrip("+")] = text
    return all(k in given and _same(given[k], v) for k, v in params.items())


def _study_summary(db: Path) -> tuple[int, int, dict[str, Any], dict[str, int]] | None:
    """(number of trials, best trial number, its params, states) of the one study in ``db``."""
    try:
        import optuna
    except ImportError:
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{db.resolve()}"
    summaries = optuna.get_all_study_summaries(storage)
    if len(summaries) != 1:
        return None
    study = optuna.load_study(study_name=summaries[0].study_name, storage=storage)
    states: dict[str, int] = {}
    for trial in study.trials:
        states[trial.state.name] = states.get(trial.state.name, 0) + 1
    try:
        best = study.best_trial
    except ValueError:  # no completed trial
        return len(study.trials), -1, {}, states
    return len(study.trials), best.number, dict(best.params), states


def search_result(sweep_dir: Path, runs: Sequence[RunRecord]) -> SearchResult | None:
    """The search's winner and its folder, or None when ``sweep_dir`` holds no search results."""
    results_file = sweep_dir / RESULTS_FILE
    try:
        results = yaml.safe_load(results_file.read_text())
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(results, dict) or not isinstance(results.get("best_params"), dict):
        return None  # a multi-objective search keeps a Pareto front, no single winner
    result = SearchResult(dict(results["best_params"]), results.get("best_value"))
    trial = None
    if (sweep_dir / STUDY_FILE).is_file():
        summary = _study_summary(sweep_dir / STUDY_FILE)
        if summary is not None:
            result.n_trials, trial, _, result.states = summary
            result.trial = trial if trial >= 0 else None
    candidates = [r for r in runs if has_params(r, result.best_params)]
    if len(candidates) > 1 and trial is not None:  # equal parameters drawn twice: the trial number decides
        candidates = [r for r in candidates if r.job_num == trial] or candidates
    if len(candidates) > 1 and result.best_value is not None:
        candidates = [r for r in candidates if r.best_score is not None
                      and math.isclose(r.best_score, float(result.best_value), rel_tol=1e-6)] or candidates
    if candidates:
        result.folder = candidates[0].path
        if result.trial is None:
            result.trial = candidates[0].job_num
    return result
