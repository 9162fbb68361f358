"""The stage table: every stage of the cycle, what it needs and produces, whether its output is
cached, and the task that runs it. Validation (:mod:`deepgeo_runner.config.validate`), the run's
record (:mod:`deepgeo_runner.pipeline.record`) and the runner (:mod:`deepgeo_runner.pipeline.runner`)
all read it; nothing else lists the stages.

A new stage is a module of config-free functions under ``deepgeo_runner/stages/`` and one row here,
whose ``task`` names the task-layer function (``module:function`` under ``deepgeo_runner.pipeline``)
that reads the run's options and calls it: ``task(run)`` with the runner's :class:`RunState`.
The task is named, not imported: the table sits below the task layer it points up to.

Only the standard library is imported here: the config checks read the table before GDAL or torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    """One row of the stage table."""

    name: str  # as ``stages=[...]`` names it
    needs: tuple[str, ...]  # stages whose outputs it reads: they run first (a cached one not listed is reused)
    produces: tuple[str, ...]  # what it leaves in the run directory or the cache
    cached: bool  # its output is a content-addressed cache entry, built only when the stage is listed
    task: str  # "module:function" under deepgeo_runner.pipeline, called as task(run)
    default: bool = True  # part of the default cycle (``stages`` unset)
    always: bool = False  # runs in every run of a scene, listed or not (the data check comes before any data stage)
    datamodule: bool = False  # applies to the ready-made chips of a datamodule (data=torchgeo)
    weights: bool = False  # needs trained weights: ``fit`` in the same run, or ``predict.checkpoint``
    first_rank: bool = False  # rank 0 alone runs it (the others have nothing to add)


TABLE: tuple[Stage, ...] = (
    Stage("check", ("rasterize",), ("data_report.json",), cached=False, task="checking:check_task", always=True),
    Stage("prepare", ("rasterize",), ("prepared stack (cache)",), cached=True, task="cached_stages:prepare_task"),
    Stage("rasterize", (), ("labels.tif (cache)", "split map"), cached=True, task="cached_stages:rasterize_task",
          always=True),
    Stage("chips", ("prepare", "rasterize"), ("chip store (cache)",), cached=True, task="cached_stages:chips_task"),
    Stage("fit", ("chips",), ("checkpoints/", "logs/"), cached=False, task="learning:learn_task", datamodule=True),
    Stage("test", ("chips",), ("metrics.json",), cached=False, task="learning:learn_task", datamodule=True,
          weights=True),
    Stage("predict", ("prepare",), ("prediction.tif",), cached=False, task="learning:learn_task", weights=True),
    Stage("assess", ("prepare",), ("assessment.json",), cached=False, task="assess:assess_task", default=False,
          first_rank=True),
    Stage("report", ("prepare",), ("report.html", "plots/"), cached=False, task="report:report_task",
          first_rank=True),
    Stage("export", (), ("export/model.onnx", "export/model.pt2", "export/mlm.json"), cached=False,
          task="exporting:export_task", default=False, weights=True, first_rank=True),
)

BY_NAME = {stage.name: stage for stage in TABLE}
STAGES: tuple[str, ...] = tuple(stage.name for stage in TABLE)
DEFAULT_STAGES: tuple[str, ...] = tuple(stage.name for stage in TABLE if stage.default)  # assess: see run_stages
DATAMODULE_STAGES: tuple[str, ...] = tuple(stage.name for stage in TABLE if stage.datamodule)
WEIGHT_STAGES: tuple[str, ...] = tuple(stage.name for stage in TABLE if stage.weights)
ASSESS_ONLY = {"assess", "report"}  # stages that need a class map, not the scene


def needed(stages: Iterable[str]) -> set[str]:
    """The listed stages and every stage they need, directly or through another."""
    found: set[str] = set()
    todo = list(stages)
    while todo:
        name = todo.pop()
        if name not in found:
            found.add(name)
            todo.extend(BY_NAME[name].needs)
    return found


def cycle(stages: Sequence[str]) -> list[Stage]:
    """The rows a run of a scene goes through, in the order they run: each after what it needs.

    The listed stages, the stages they need (a cached one only reused) and the ones that always run."""
    wanted = needed([*stages, *(s.name for s in TABLE if s.always)])
    order: list[Stage] = []

    def visit(stage: Stage) -> None:
        if stage in order:
            return
        for name in stage.needs:
            visit(BY_NAME[name])
        order.append(stage)

    for stage in TABLE:
        if stage.name in wanted:
            visit(stage)
    return order


def is_assess_only(stages: Sequence[str]) -> bool:
    """The stages assess an existing map and nothing else (``stages=[report]`` alone is no assessment)."""
    return "assess" in stages and set(stages) <= ASSESS_ONLY
