"""The stage table (deepgeo_runner/config/stages.py) is what validation, the record and the runner read:
its rows name real tasks, need only stages it lists, and order a run the way the cycle goes."""

from __future__ import annotations

import inspect

import pytest

from deepgeo_runner.config.stages import BY_NAME, DEFAULT_STAGES, STAGES, TABLE, cycle, needed


@pytest.mark.parametrize("stage", TABLE, ids=lambda s: s.name)
def test_every_row_names_a_task_of_the_run_and_stages_of_the_table(stage):
    from deepgeo_runner.pipeline.runner import task_of

    task = task_of(stage)
    assert list(inspect.signature(task).parameters) == ["run"]
    assert set(stage.needs) <= set(STAGES)


def test_a_run_goes_through_what_the_listed_stages_need_in_the_cycles_order():
    assert [s.name for s in cycle(DEFAULT_STAGES)] == [
        "rasterize", "check", "prepare", "chips", "fit", "test", "predict", "report"]
    assert [s.name for s in cycle(["check"])] == ["rasterize", "check"]  # the split needs the labels
    assert [s.name for s in cycle(["test"])] == ["rasterize", "check", "prepare", "chips", "test"]
    assert [s.name for s in cycle(["predict"])] == ["rasterize", "check", "prepare", "predict"]
    assert needed(["fit"]) == {"fit", "chips", "prepare", "rasterize"}


def test_only_cached_stages_are_reused_when_not_listed():
    reused = {n for n in needed(["fit", "test"]) if n not in ("fit", "test")}
    assert all(BY_NAME[n].cached for n in reused)
