"""A new stage is one module of ``deepgeo_runner/stages/`` and one row of the stage table (its options adapter
in ``pipeline/stage_options.py``): a toy stage registered by a row alone runs through the runner."""

from __future__ import annotations

import sys
import types

import pytest

from deepgeo_runner.config import stages as table
from deepgeo_runner.config.stages import Stage
from deepgeo_runner.pipeline import stage_options
from deepgeo_runner.pipeline.artifacts import Artifacts


def count_pixels(side: int, seed: int) -> dict[str, int]:
    """The toy stage's function: plain values in, a result out."""
    return {"pixels": side * side, "seed": seed}


@pytest.fixture
def toy_row(monkeypatch):
    """The toy stage as a new stage would come: a module under deepgeo_runner.stages, an adapter, one row."""
    module = types.ModuleType("deepgeo_runner.stages.toy")
    module.count_pixels = count_pixels
    monkeypatch.setitem(sys.modules, "deepgeo_runner.stages.toy", module)
    monkeypatch.setattr(stage_options, "toy_options",
                        lambda run: {"side": int(run.opts.data.chip_size), "seed": int(run.opts.seed)}, raising=False)
    row = Stage("toy", ("prepare",), ("nothing",), cached=False, default=False,
                run="toy:count_pixels", options="toy_options")
    monkeypatch.setattr(table, "TABLE", (*table.TABLE, row))
    monkeypatch.setattr(table, "BY_NAME", {**table.BY_NAME, "toy": row})
    return row


def test_a_stage_registered_by_a_row_runs_through_the_runner(toy_row, compose, tmp_path):
    from deepgeo_runner.config.options import run_options
    from deepgeo_runner.pipeline.run_state import RunState
    from deepgeo_runner.pipeline.runner import class_table, run_tasks

    opts = run_options(compose("seed=7", "data.chip_size=32", f"paths.output_dir={tmp_path}"), tmp_path)
    assert [s.name for s in table.cycle(["toy"])][-2:] == ["prepare", "toy"]  # after what it needs
    art = Artifacts()
    run = RunState(opts, tmp_path, tmp_path / "cache", art, class_table(opts.data), ["toy"])
    run_tasks(run, [toy_row])
    assert art.stage_outputs["toy"] == {"pixels": 32 * 32, "seed": 7}
    assert "toy" in art.timings  # timed under its name, as provenance reports it
    run_tasks(RunState(opts, tmp_path, tmp_path / "cache", Artifacts(), class_table(opts.data), ["toy"], rank=1),
              [toy_row])  # not first_rank: every rank runs it


def test_a_row_stores_its_result_in_its_artifact_and_says_what_runs_it(monkeypatch):
    with pytest.raises(ValueError, match="a task .* or a run"):
        Stage("both", (), (), cached=False, task="x:y", run="a:b")
    with pytest.raises(ValueError, match="a task .* or a run"):
        Stage("neither", (), (), cached=False)
    fields = set(Artifacts.__dataclass_fields__)
    assert all(row.artifact in fields for row in table.TABLE if row.artifact)
