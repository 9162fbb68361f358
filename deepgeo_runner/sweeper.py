"""What makes Optuna's Hydra sweeper resumable: a relaunch into the same sweep directory continues its study.

``conf/hparams_search/optuna.yaml`` stores the study in ``<sweep dir>/optuna.db`` (SQLite), and
hydra-optuna-sweeper 1.3 opens it with ``load_if_exists=True``, so the trials of earlier launches
inform the sampler. Two things it leaves undone, done here before the study is opened:

- the folder of the SQLite file must exist (Hydra makes the sweep directory only when it launches
  the first job);
- it numbers jobs from 0 on every launch, so a relaunch would write its trials into the folders
  of the first ones. Numbering them after the trials already stored keeps each trial in its own
  folder, named after its trial number (with the default ``hydra.sweep.subdir``);
- its sampler is seeded from ``seed`` again on every launch, so the random start-up trials of a
  resumed search would repeat the first launch's parameters: a resumed sampler is reseeded.

The sweeper itself lives in ``hydra_plugins/deepgeo_runner_sweeper`` (Hydra takes sweepers only from
its ``hydra_plugins`` namespace); it calls :func:`prepare_resume` before the study is opened.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SQLITE = "sqlite:///"


def sqlite_file(storage: object) -> Path | None:
    """The database file of a ``sqlite:///PATH`` storage URL (relative PATHs are to the working folder)."""
    if isinstance(storage, str) and storage.startswith(SQLITE):
        return Path(storage.removeprefix(SQLITE))
    return None


def stored_trials(storage: object, study_name: str | None) -> int:
    """How many trials the stored study already holds (0 when there is no such study yet)."""
    if storage is None or study_name is None:
        return 0
    import optuna

    try:
        return len(optuna.load_study(study_name=study_name, storage=storage).trials)
    except KeyError:  # no study of that name in the storage yet
        return 0


def next_job_folder(sweep_dir: Path) -> int:
    """One past the highest numbered job folder already in the sweep directory."""
    numbers = [int(p.name) for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()] if sweep_dir.is_dir() \
        else []
    return max(numbers, default=-1) + 1


def prepare_resume(impl: Any) -> None:
    """Ready hydra-optuna-sweeper's ``OptunaSweeperImpl`` to continue a stored study (see the module's notes)."""
    db = sqlite_file(impl.storage)
    if db is not None:
        db.expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
    done = stored_trials(impl.storage, impl.study_name)
    impl.job_idx = max(done, next_job_folder(Path(str(impl.sweep_dir))))
    if done:
        reseed = getattr(impl.sampler, "reseed_rng", None)
        if callable(reseed):
            reseed()
        log.info("resuming Optuna study %r of %s: %d trials stored, next job %d",
                 impl.study_name, impl.storage, done, impl.job_idx)
